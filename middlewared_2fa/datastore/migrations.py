"""Numbered schema migrations. ``PRAGMA user_version`` holds the last one applied.

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: users, global 2FA configuration, audit log, metadata, NTP servers.
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
    CREATE TABLE twofactor_config (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        enabled INTEGER NOT NULL DEFAULT 0,
        window  INTEGER NOT NULL DEFAULT 0 CHECK (window BETWEEN 0 AND 10),
        ssh     INTEGER NOT NULL DEFAULT 0,
        issuer  TEXT NOT NULL DEFAULT 'middlewared-2fa'
    );
    INSERT INTO twofactor_config (id) VALUES (1);
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
    CREATE TABLE ntp_servers (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        address TEXT NOT NULL,
        port    INTEGER NOT NULL DEFAULT 123,
        iburst  INTEGER NOT NULL DEFAULT 1,
        prefer  INTEGER NOT NULL DEFAULT 0,
        minpoll INTEGER NOT NULL DEFAULT 6,
        maxpoll INTEGER NOT NULL DEFAULT 10
    );
    """,
    # 2: credential generations (API.md §9) and account throttling (API.md §3).
    """
    ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE audit ADD COLUMN session TEXT;
    CREATE TABLE auth_throttle (
        user_id        INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        failures       INTEGER NOT NULL CHECK (failures >= 0),
        cooldown_until REAL NOT NULL DEFAULT 0
    );
    """,
]
