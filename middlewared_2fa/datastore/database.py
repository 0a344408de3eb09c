"""The aiosqlite connection: WAL, foreign keys, migrations, one writer at a time."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from middlewared_2fa.datastore.migrations import MIGRATIONS
from middlewared_2fa.errors import StartupError

logger = logging.getLogger(__name__)


class Database:
    """One aiosqlite connection shared by the daemon.

    aiosqlite runs every statement on one thread, so statements never overlap; the
    lock makes each *transaction* atomic with respect to other coroutines.

    Args:
        path: SQLite file; created with its parent folder when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the file, enable WAL and foreign keys, and apply pending migrations.

        Raises:
            StartupError: the file cannot be opened, is not a database, or was written
                by a newer version.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA busy_timeout=5000")
            async with conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
        except sqlite3.DatabaseError as exc:
            raise StartupError(f"cannot open database {self.path}: {exc}") from None
        self._conn = conn
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise StartupError(
                f"database {self.path} has schema version {version}, newer than this "
                f"daemon ({len(MIGRATIONS)}); upgrade the daemon"
            )
        for number in range(version + 1, len(MIGRATIONS) + 1):
            logger.info("applying database migration %d", number)
            # executescript commits first; run the migration and the version bump in one
            # explicit transaction so a crash never leaves a half-applied migration.
            await conn.executescript(
                "BEGIN IMMEDIATE;\n"
                + MIGRATIONS[number - 1]
                + f"\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    async def close(self) -> None:
        """Wait for the running transaction, then close the connection."""
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection for reads that must not see another coroutine's open transaction."""
        async with self._lock:
            yield self.conn
