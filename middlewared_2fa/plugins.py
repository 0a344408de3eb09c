"""Plugin loader: imports every module or package of each plugin folder by path and
instantiates the :class:`~middlewared_2fa.api.Service` subclasses it defines."""

from __future__ import annotations

import hashlib
import importlib
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


def _package(folder: Path) -> str:
    """The import package of plugin folder ``index``: its modules import each other
    relatively (``from .auth_twofactor import TwoFactorService``), and a module imported
    that way is the one the loader finds later, so every class exists once."""
    # One package per folder (by its resolved path), so two daemons in one process that
    # load different folders never share a module; the shipped folder keeps a plain name
    # (it shows in log lines: middlewared_2fa_plugins.time_sync.check).
    resolved = folder.resolve()
    if resolved == default_plugins_dir().resolve():
        name = _PKG
    else:
        name = f"{_PKG}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:12]}"
    if name not in sys.modules:
        parent = ModuleType(name)
        parent.__path__ = [str(folder)]
        sys.modules[name] = parent
    return name


def _load_module(folder: Path, stem: str) -> ModuleType:
    name = f"{_package(folder)}.{stem}"
    try:
        return importlib.import_module(name)
    except StartupError:
        raise
    except Exception as exc:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        raise StartupError(f"plugin {folder / stem} failed to load: {exc!r}") from exc


def discover(dirs: list[Path]) -> list[type[Service]]:
    """Service classes from every plugin in ``dirs`` (in order; files sorted by name).

    A plugin is a ``*.py`` file or a folder with ``__init__.py``; names starting with
    ``_`` are skipped.

    Raises:
        StartupError: a folder is missing or a plugin fails to import.
    """
    classes: list[type[Service]] = []
    for folder in dirs:
        if not folder.exists():
            raise StartupError(f"plugin folder {folder.absolute()} does not exist")
        if not folder.is_dir():
            raise StartupError(f"plugin folder {folder.absolute()} is not a folder")
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(("_", ".")):
                continue
            if entry.is_dir() and (entry / "__init__.py").is_file():
                stem = entry.name
            elif entry.suffix == ".py" and entry.is_file():
                stem = entry.stem
            else:
                continue
            module = _load_module(folder, stem)
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, Service)
                    and obj is not Service
                    and (
                        obj.__module__ == module.__name__
                        or obj.__module__.startswith(module.__name__ + ".")
                    )
                    and obj not in classes
                ):
                    classes.append(obj)
            logger.debug("loaded plugin %s", folder / stem)
    return classes
