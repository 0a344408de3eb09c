"""Import a plugin module by path, as the daemon does, for unit tests of its pure functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def load_plugin(name: str) -> ModuleType:
    """The module ``plugins/<name>.py``, the package ``plugins/<name>/``, or a module of
    that package (``"ssh_oath.usersfile"``), imported once per test session."""
    key = f"test_plugins.{name}"
    if key in sys.modules:
        return sys.modules[key]
    if "." in name:
        load_plugin(name.split(".", 1)[0])
        return importlib.import_module(key)
    if "test_plugins" not in sys.modules:
        parent = ModuleType("test_plugins")
        parent.__path__ = []
        sys.modules["test_plugins"] = parent
    folder = PLUGINS / name
    if folder.is_dir():
        spec = importlib.util.spec_from_file_location(
            key, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
    else:
        spec = importlib.util.spec_from_file_location(key, PLUGINS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
