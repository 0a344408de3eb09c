"""Schema migrations tracked per owner (the framework and each plugin), and databases
from before, which kept one global ``PRAGMA user_version``."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from middlewared_2fa.clock import FrozenClock
from middlewared_2fa.errors import StartupError
from tests.helpers.daemon import InProcessDaemon, short_tempdir

#: The schema a daemon from before per-owner tracking created (global version 2), as a
#: fact about the files in the field: users, 2FA settings, audit, meta, NTP servers,
#: throttling.
LEGACY_V2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE,
    full_name TEXT NOT NULL DEFAULT '', password_hash TEXT, roles TEXT NOT NULL DEFAULT '[]',
    locked INTEGER NOT NULL DEFAULT 0, ssh_password_enabled INTEGER NOT NULL DEFAULT 0,
    builtin INTEGER NOT NULL DEFAULT 0, totp_secret TEXT,
    totp_interval INTEGER NOT NULL DEFAULT 30 CHECK (totp_interval IN (30, 60)),
    totp_digits INTEGER NOT NULL DEFAULT 6 CHECK (totp_digits BETWEEN 6 AND 8),
    totp_last_step INTEGER, generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE twofactor_config (
    id INTEGER PRIMARY KEY CHECK (id = 1), enabled INTEGER NOT NULL DEFAULT 0,
    window INTEGER NOT NULL DEFAULT 0 CHECK (window BETWEEN 0 AND 10),
    ssh INTEGER NOT NULL DEFAULT 0, issuer TEXT NOT NULL DEFAULT 'middlewared-2fa'
);
INSERT INTO twofactor_config (id, window, issuer) VALUES (1, 3, 'legacy-box');
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, audit_id TEXT NOT NULL UNIQUE,
    timestamp REAL NOT NULL, event TEXT NOT NULL, username TEXT, address TEXT,
    success INTEGER NOT NULL, event_data TEXT NOT NULL, session TEXT
);
CREATE INDEX audit_timestamp ON audit (timestamp);
CREATE TABLE ntp_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, address TEXT NOT NULL,
    port INTEGER NOT NULL DEFAULT 123, iburst INTEGER NOT NULL DEFAULT 1,
    prefer INTEGER NOT NULL DEFAULT 0, minpoll INTEGER NOT NULL DEFAULT 6,
    maxpoll INTEGER NOT NULL DEFAULT 10
);
INSERT INTO ntp_servers (address) VALUES ('ntp.legacy.example');
CREATE TABLE auth_throttle (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failures INTEGER NOT NULL CHECK (failures >= 0), cooldown_until REAL NOT NULL DEFAULT 0
);
INSERT INTO users (username, full_name, roles) VALUES ('carol', 'Carol from before', '[]');
PRAGMA user_version = 2;
"""

SHIPPED_OWNERS = {
    ("middlewared", 1),
    ("middlewared", 2),
    ("middlewared", 3),
    ("auth", 1),
    ("auth.twofactor", 1),
    ("system.ntpserver", 1),
}


@pytest.fixture
def base() -> Iterator[Path]:
    folder = short_tempdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return [tuple(r) for r in conn.execute(sql)]


async def test_fresh_database_tracks_every_owner(base: Path) -> None:
    """A new file gets every owner's migrations, recorded per owner, no legacy row."""
    daemon = InProcessDaemon(base, FrozenClock(1234567890))
    await daemon.start()
    try:
        async with daemon.root() as root:
            assert (await root.call("auth.twofactor.config"))["window"] == 0
    finally:
        await daemon.stop()
    path = daemon.settings.database_path
    tracked = set(_rows(path, "SELECT owner, version FROM schema_migrations"))
    assert SHIPPED_OWNERS <= tracked
    assert not any(owner == "(legacy)" for owner, _ in tracked)
    assert _rows(path, "PRAGMA user_version") == [(2,)]


async def test_legacy_database_is_taken_over_with_its_data(base: Path) -> None:
    """A file of the global schema version 2 opens with its data: every owner takes
    the migrations that were in it as applied, none runs again."""
    state = base / "state"
    state.mkdir()
    with sqlite3.connect(state / "middlewared-2fa.db") as conn:
        conn.executescript(LEGACY_V2)
    daemon = InProcessDaemon(base, FrozenClock(1234567890))
    await daemon.start()
    try:
        async with daemon.root() as root:
            config = await root.call("auth.twofactor.config")
            assert (config["window"], config["issuer"]) == (3, "legacy-box")
            servers = await root.call("system.ntpserver.query")
            assert [s["address"] for s in servers] == ["ntp.legacy.example"]
            users = await root.call("user.query", [["username", "=", "carol"]])
            assert [u["full_name"] for u in users] == ["Carol from before"]
    finally:
        await daemon.stop()
    path = state / "middlewared-2fa.db"
    tracked = set(_rows(path, "SELECT owner, version FROM schema_migrations"))
    assert SHIPPED_OWNERS | {("(legacy)", 2)} <= tracked


async def test_a_newer_owner_version_is_refused(base: Path) -> None:
    """A file with a migration of an owner that this daemon does not know (written by a
    newer daemon) is a start-up error naming the owner, and is left as it is."""
    daemon = InProcessDaemon(base, FrozenClock(1234567890))
    await daemon.start()
    await daemon.stop()
    path = daemon.settings.database_path
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations (owner, version) VALUES ('auth', 9)")
    with pytest.raises(StartupError, match="version 9 of auth, newer than this daemon"):
        await daemon.start()
    await daemon.stop()
    assert ("auth", 9) in set(_rows(path, "SELECT owner, version FROM schema_migrations"))
