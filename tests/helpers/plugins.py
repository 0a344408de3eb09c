"""Import a plugin module by path, as the daemon does, for unit tests of its pure functions."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def load_plugin(name: str) -> ModuleType:
    """The module ``plugins/<name>.py``, the package ``plugins/<name>/``, or a module of
    that package (``"ssh_oath.usersfile"``), imported once per test session (plugins
    import each other relatively, as under the daemon's loader)."""
    if "test_plugins" not in sys.modules:
        parent = ModuleType("test_plugins")
        parent.__path__ = [str(PLUGINS)]
        sys.modules["test_plugins"] = parent
    return importlib.import_module(f"test_plugins.{name}")
