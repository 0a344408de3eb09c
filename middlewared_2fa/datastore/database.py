"""The aiosqlite connections: WAL, foreign keys, migrations, one writer at a time, and a
separate reader so that reads never queue behind a commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from middlewared_2fa.api import Migration
from middlewared_2fa.datastore.migrations import (
    FRAMEWORK,
    FRAMEWORK_MIGRATIONS,
    LEGACY,
    LEGACY_USER_VERSION,
    TRACKING,
)
from middlewared_2fa.errors import StartupError

logger = logging.getLogger(__name__)


_Future = asyncio.Future[tuple[int, int | None]]
#: A statement waiting for the next group commit: (sql, parameters, its caller's future).
_Write = tuple[str, tuple[Any, ...], _Future]


def _settle(
    future: _Future, value: tuple[int, int | None] | None = None, exc: BaseException | None = None
) -> None:
    """Resolve a writer's future unless the writer stopped waiting (was cancelled)."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert value is not None
        future.set_result(value)


class Database:
    """Two aiosqlite connections to one SQLite file in WAL mode, shared by the daemon.

    The *writer* makes every change. aiosqlite runs its statements on one thread, so
    they never overlap; the lock makes each *transaction* atomic with respect to other
    coroutines. The *reader* (``query_only``) runs the reads on a thread of its own: in
    WAL mode a reader sees the last committed state and never waits for the writer, so
    a read does not queue behind a commit and its fsync (``synchronous=FULL``), and it
    cannot see a transaction that another coroutine has open.

    Each read is one trip to the reader's thread (:meth:`fetch_all`, :meth:`fetch_one`)
    and each single-statement change one trip to the writer's (:meth:`write`): a trip
    costs tens of microseconds of thread hand-over, more than a small indexed query, so
    reads of one row by key run on the event loop (:meth:`lookup`).

    Args:
        path: SQLite file; created with its parent folder when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the file, enable WAL and foreign keys, and apply pending migrations.

        Raises:
            StartupError: the file cannot be opened, is not a database (API.md §1: a
                corrupt file is a start-up failure), a migration fails, or the file was
                written by a newer version. Whatever was opened is closed first:
                aiosqlite's worker threads are not daemon threads, and one left running
                would keep the process alive after the error.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._open()
        except BaseException as exc:
            await self._abandon()
            if isinstance(exc, sqlite3.Error):
                raise StartupError(f"cannot open database {self.path}: {exc}") from None
            raise

    async def _abandon(self) -> None:
        """Close what a failed :meth:`open` had opened, ignoring further errors."""
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        for conn in (self._reader, self._conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._reader = self._conn = None

    async def _open(self) -> None:
        # Each connection is recorded as soon as it exists, for _abandon().
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn = conn
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")  # "file is not a database" shows here
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await self._start_tracking(conn)
        await self.migrate(FRAMEWORK, FRAMEWORK_MIGRATIONS)
        reader = await aiosqlite.connect(self.path, isolation_level=None)
        self._reader = reader
        reader.row_factory = aiosqlite.Row
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute("PRAGMA busy_timeout=5000")
        # Point reads run on the event loop itself (see lookup()); never wait for a lock.
        inline = sqlite3.connect(self.path, isolation_level=None)
        self._inline = inline
        inline.row_factory = sqlite3.Row
        inline.execute("PRAGMA query_only=ON")
        inline.execute("PRAGMA busy_timeout=0")

    async def _start_tracking(self, conn: aiosqlite.Connection) -> None:
        """Create ``schema_migrations``; a file from before per-owner tracking has its
        global version recorded as the owner ``(legacy)`` (see migrations.py)."""
        async with conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ) as cur:
            if await cur.fetchone() is not None:
                return
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > LEGACY_USER_VERSION:
            raise StartupError(
                f"database {self.path} has schema version {version}, newer than this "
                f"daemon ({LEGACY_USER_VERSION}); upgrade the daemon"
            )
        legacy = (
            f"INSERT INTO schema_migrations (owner, version) VALUES ('{LEGACY}', {version});\n"
            if version
            else ""
        )
        await conn.executescript(
            "BEGIN IMMEDIATE;\n"
            + TRACKING
            + legacy
            + f"PRAGMA user_version = {LEGACY_USER_VERSION};\nCOMMIT;"
        )

    async def migrate(self, owner: str, migrations: Sequence[Migration]) -> list[int]:
        """Apply ``owner``'s migrations that this file has not had, in order, each in
        one transaction with its record (a crash never leaves one half-applied).

        Args:
            owner: ``middlewared`` or a plugin's namespace.
            migrations: Its migrations, versions 1, 2, ... without gaps.

        Returns:
            The versions applied now (not those taken over from a legacy file).

        Raises:
            StartupError: the versions are not 1..n, the file has a version of ``owner``
                newer than the daemon knows, or a migration fails (the message names
                the owner and version).
        """
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise StartupError(f"{owner}: migrations must be numbered 1..n, got {versions}")
        conn = self.conn
        async with self._lock:
            rows = await conn.execute_fetchall(
                "SELECT owner, version FROM schema_migrations WHERE owner IN (?, ?)",
                (owner, LEGACY),
            )
            done = {int(r[1]) for r in rows if r[0] == owner}
            legacy = max((int(r[1]) for r in rows if r[0] == LEGACY), default=0)
            if done and max(done) > len(migrations):
                raise StartupError(
                    f"database {self.path} has schema version {max(done)} of {owner}, "
                    f"newer than this daemon ({len(migrations)}); upgrade the daemon"
                )
            applied: list[int] = []
            for migration in migrations:
                if migration.version in done:
                    continue
                adopt = not done and migration.legacy is not None and migration.legacy <= legacy
                record = (
                    "INSERT INTO schema_migrations (owner, version) "
                    f"VALUES ('{owner.replace(chr(39), chr(39) * 2)}', {migration.version});"
                )
                try:
                    await conn.executescript(
                        "BEGIN IMMEDIATE;\n"
                        # ";" ends a last statement written without one (an empty
                        # statement is harmless), so the record is never glued to it.
                        + ("" if adopt else migration.sql + "\n;")
                        + f"\n{record}\nCOMMIT;"
                    )
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        with contextlib.suppress(Exception):
                            await conn.execute("ROLLBACK")
                    raise StartupError(
                        f"database {self.path}: migration {migration.version} of {owner} "
                        f"failed: {exc}"
                    ) from None
                if not adopt:
                    logger.info("applied database migration %d of %s", migration.version, owner)
                    applied.append(migration.version)
            return applied

    async def close(self) -> None:
        """Wait for the running transaction, then close the connections."""
        async with self._lock:
            if self._inline is not None:
                self._inline.close()
                self._inline = None
            if self._reader is not None:
                await self._reader.close()
                self._reader = None
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @property
    def reader(self) -> aiosqlite.Connection:
        """The read-only connection (the writer until :meth:`open` has finished)."""
        return self._reader if self._reader is not None else self.conn

    async def write(self, sql: str, parameters: Iterable[Any] = ()) -> tuple[int, int | None]:
        """Run one data-changing statement; it is committed (durable) when this returns.

        Group commit: statements that arrive while a commit is in progress are committed
        together in the next transaction, one fsync for all of them, so concurrent
        callers (logins writing their audit entries and replay state) do not queue behind
        each other's fsyncs. Each statement stays atomic on its own: one that violates a
        constraint raises to its caller only (SQLite undoes that statement, not the
        transaction) and the rest of its group is committed. A statement alone runs
        outside ``BEGIN``, as its own transaction: one trip to the writer's thread
        instead of three for ``BEGIN IMMEDIATE``/statement/``COMMIT``.

        Returns:
            ``(rowcount, lastrowid)`` of the statement.

        Raises:
            sqlite3.Error: the statement failed, or its group could not be committed.
        """
        future: asyncio.Future[tuple[int, int | None]] = asyncio.get_running_loop().create_future()
        self._pending.append((sql, tuple(parameters), future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="sqlite group commit")
        return await future

    async def write_atomic(
        self, statements: Sequence[tuple[str, Sequence[Any], bool]]
    ) -> list[tuple[int, int | None]] | None:
        """Run several data-changing statements as one transaction: all or none.

        Args:
            statements: ``(sql, parameters, required)``; a ``required`` statement that
                changes no row (the row it guards moved on) rolls the whole transaction
                back.

        Returns:
            ``(rowcount, lastrowid)`` of each statement, or None when a required one
            changed nothing (nothing was written).

        Raises:
            sqlite3.Error: a statement or the commit failed (nothing was written).
        """
        async with self._lock:
            conn = self.conn
            counts: list[tuple[int, int | None]] = []
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, parameters, required in statements:
                    cursor = await conn.execute(sql, tuple(parameters))
                    if required and cursor.rowcount < 1:
                        await conn.execute("ROLLBACK")
                        return None
                    counts.append((cursor.rowcount, cursor.lastrowid))
                await conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
            return counts

    async def _flush(self) -> None:
        """Commit pending writes, group by group, until none is left."""
        try:
            async with self._lock:
                while self._pending:
                    group, self._pending = self._pending, []
                    await self._commit(group)
        finally:
            self._flusher = None

    async def _commit(self, group: list[_Write]) -> None:
        try:
            conn = self.conn
        except RuntimeError as exc:  # closed meanwhile: nothing can be written
            for _, _, future in group:
                _settle(future, exc=exc)
            return
        if len(group) == 1:
            sql, parameters, future = group[0]
            try:
                cursor = await conn.execute(sql, parameters)
            except Exception as exc:
                _settle(future, exc=exc)
            else:
                _settle(future, (cursor.rowcount, cursor.lastrowid))
            return
        outcomes: list[tuple[_Future, tuple[int, int | None] | None, Exception | None]] = []
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for sql, parameters, future in group:
                try:
                    cursor = await conn.execute(sql, parameters)
                except sqlite3.IntegrityError as exc:  # this statement was undone, only it
                    outcomes.append((future, None, exc))
                else:
                    outcomes.append((future, (cursor.rowcount, cursor.lastrowid), None))
            await conn.execute("COMMIT")
        except BaseException as exc:
            # Nothing of the group is committed (I/O error, disk full, cancelled...).
            if conn.in_transaction:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
            for _, _, future in group:
                _settle(future, exc=exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for future, value, error in outcomes:
            _settle(future, value, error)

    async def fetch_all(self, sql: str, parameters: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """All rows of a query, read from the last committed state (one trip)."""
        return list(await self.reader.execute_fetchall(sql, tuple(parameters)))

    async def fetch_one(self, sql: str, parameters: Iterable[Any] = ()) -> sqlite3.Row | None:
        """The first row of a query, or None (one trip)."""
        rows = await self.reader.execute_fetchall(sql, tuple(parameters))
        return next(iter(rows), None)

    async def lookup(self, sql: str, parameters: Iterable[Any] = ()) -> sqlite3.Row | None:
        """The row of a read by primary key or unique index, or None.

        Such a read takes a few microseconds in SQLite, less than the hand-over to and
        from a database thread (:meth:`fetch_one`), so it runs on the event loop itself,
        on a third, read-only connection. It never waits: when the file is busy (a WAL
        checkpoint or recovery holds a lock) it falls back to :meth:`fetch_one`. Use it
        only for queries that touch one row through an index.
        """
        if self._inline is not None:
            try:
                row: sqlite3.Row | None = self._inline.execute(sql, tuple(parameters)).fetchone()
                return row
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
        return await self.fetch_one(sql, parameters)
