"""SQLite datastore (aiosqlite): connection lifecycle, numbered migrations, repositories.

The framework's tables (accounts, audit, metadata) have their SQL here; a plugin keeps
the SQL of its own tables in its package and uses :class:`Database` directly.
"""

from __future__ import annotations

from middlewared_2fa.datastore.database import Database
from middlewared_2fa.datastore.repositories import (
    AuditRepository,
    MetaRepository,
    Repositories,
    UserRepository,
)

__all__ = [
    "AuditRepository",
    "Database",
    "MetaRepository",
    "Repositories",
    "UserRepository",
]
