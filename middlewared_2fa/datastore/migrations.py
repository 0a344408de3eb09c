"""Numbered schema migrations, tracked per owner: the framework (``middlewared``) and
each plugin (its ``Config.namespace``) in the table ``schema_migrations``.

Append new migrations; never edit one that has shipped. Databases from before per-owner
tracking kept one global ``PRAGMA user_version``: when ``schema_migrations`` is created
in such a file the number is recorded once as the owner ``(legacy)``, and an owner
without rows takes its migrations whose ``legacy`` is at most that number as already
applied (the tables exist).
"""

from __future__ import annotations

from middlewared_2fa.api import Migration

#: The owner name of the framework's own tables.
FRAMEWORK = "middlewared"
#: The owner under which the old global schema version is recorded.
LEGACY = "(legacy)"
#: The last global ``PRAGMA user_version`` (before per-owner tracking). A file that
#: tracks per owner keeps this number there, so a daemon from before opens a file with
#: the tables it knows instead of creating them again (the benchmarks compare the two
#: on one seeded state); newer files are refused only by version per owner.
LEGACY_USER_VERSION = 2

#: Creates the tracking table; runs before any migration.
TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    owner   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (owner, version)
);
"""

#: The framework's tables: metadata (the key check), the accounts that sessions and
#: their credential generations refer to (API.md §9), and the audit log it writes for
#: every audited call (API.md §7).
FRAMEWORK_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        """
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE users (
            id                   INTEGER PRIMARY KEY AUTOINCREMENT,
            username             TEXT NOT NULL UNIQUE,
            full_name            TEXT NOT NULL DEFAULT '',
            password_hash        TEXT,
            roles                TEXT NOT NULL DEFAULT '[]',
            locked               INTEGER NOT NULL DEFAULT 0,
            ssh_password_enabled INTEGER NOT NULL DEFAULT 0,
            builtin              INTEGER NOT NULL DEFAULT 0,
            totp_secret          TEXT,
            totp_interval        INTEGER NOT NULL DEFAULT 30 CHECK (totp_interval IN (30, 60)),
            totp_digits          INTEGER NOT NULL DEFAULT 6 CHECK (totp_digits BETWEEN 6 AND 8),
            totp_last_step       INTEGER
        );
        CREATE TABLE audit (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            audit_id   TEXT NOT NULL UNIQUE,
            timestamp  REAL NOT NULL,
            event      TEXT NOT NULL,
            username   TEXT,
            address    TEXT,
            success    INTEGER NOT NULL,
            event_data TEXT NOT NULL
        );
        CREATE INDEX audit_timestamp ON audit (timestamp);
        """,
        legacy=1,
    ),
    # Credential generations (API.md §9) and the session of an audit entry.
    Migration(
        2,
        """
        ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE audit ADD COLUMN session TEXT;
        """,
        legacy=2,
    ),
    # audit.query by user (the web UI's filter, TrueNAS's username filter) reads that
    # user's entries in time order instead of the whole table (bench "growth": 115 ms at
    # 10^6 rows before).
    Migration(
        3,
        """
        CREATE INDEX audit_username ON audit (username, timestamp);
        """,
    ),
)
