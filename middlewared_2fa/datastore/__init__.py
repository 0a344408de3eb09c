"""SQLite datastore (aiosqlite): connection lifecycle, numbered migrations, repositories.

All SQL of the project lives in this package. Plugins get repositories, never a
connection.
"""

from __future__ import annotations

from middlewared_2fa.datastore.database import Database
from middlewared_2fa.datastore.repositories import (
    AuditRepository,
    MetaRepository,
    NtpServerRepository,
    Repositories,
    TwoFactorConfigRepository,
    UserRepository,
)

__all__ = [
    "AuditRepository",
    "Database",
    "MetaRepository",
    "NtpServerRepository",
    "Repositories",
    "TwoFactorConfigRepository",
    "UserRepository",
]
