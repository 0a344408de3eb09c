"""Plugin loader: imports every module or package of each plugin folder by path and
instantiates the :class:`~middlewared_2fa.api.Service` subclasses it defines."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

from middlewared_2fa.api import Service
from middlewared_2fa.errors import StartupError

logger = logging.getLogger(__name__)

_PKG = "middlewared_2fa_plugins"


def default_plugins_dir() -> Path:
    """The top-level ``plugins/`` folder of a source checkout, else the copy shipped
    inside the installed package."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "plugins"
    return checkout if checkout.is_dir() else here / "_plugins"


def _load_module(path: Path, index: int) -> ModuleType:
    stem = path.parent.name if path.name == "__init__.py" else path.stem
    name = f"{_PKG}{index}.{stem}"
    if f"{_PKG}{index}" not in sys.modules:
        parent = ModuleType(f"{_PKG}{index}")
        parent.__path__ = []
        sys.modules[f"{_PKG}{index}"] = parent
    spec = importlib.util.spec_from_file_location(
        name,
        path,
        submodule_search_locations=[str(path.parent)] if path.name == "__init__.py" else None,
    )
    if spec is None or spec.loader is None:
        raise StartupError(f"cannot load plugin {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise StartupError(f"plugin {path} failed to load: {exc!r}") from exc
    return module


def discover(dirs: list[Path]) -> list[type[Service]]:
    """Service classes from every plugin in ``dirs`` (in order; files sorted by name).

    A plugin is a ``*.py`` file or a folder with ``__init__.py``; names starting with
    ``_`` are skipped.

    Raises:
        StartupError: a folder is missing or a plugin fails to import.
    """
    classes: list[type[Service]] = []
    for index, folder in enumerate(dirs):
        if not folder.is_dir():
            raise StartupError(f"plugin folder {folder} does not exist")
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(("_", ".")):
                continue
            if entry.is_dir() and (entry / "__init__.py").is_file():
                path = entry / "__init__.py"
            elif entry.suffix == ".py" and entry.is_file():
                path = entry
            else:
                continue
            module = _load_module(path, index)
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, Service)
                    and obj is not Service
                    and obj.__module__.startswith(module.__name__)
                ):
                    classes.append(obj)
            logger.debug("loaded plugin %s", path)
    return classes
