"""``Database.write_atomic``: several statements land together or not at all, on a real
SQLite file (the staged enrolment's confirm and the recovery-code sets rely on it)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from middlewared_2fa.datastore import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "atomic.sqlite")
    await database.open()
    await database.write("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    await database.write("INSERT INTO t (id, v) VALUES (1, 'a')")
    try:
        yield database
    finally:
        await database.close()


async def values(db: Database) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in await db.fetch_all("SELECT id, v FROM t ORDER BY id")]


async def test_all_statements_land_with_their_counts(db: Database) -> None:
    done = await db.write_atomic(
        [
            ("UPDATE t SET v = 'b' WHERE id = 1", (), True),
            ("INSERT INTO t (v) VALUES (?)", ("c",), True),
        ]
    )
    assert done == [(1, 1), (1, 2)]
    assert await values(db) == [(1, "b"), (2, "c")]


async def test_a_required_statement_that_changes_nothing_undoes_the_rest(db: Database) -> None:
    done = await db.write_atomic(
        [
            ("UPDATE t SET v = 'b' WHERE id = 1", (), True),
            ("DELETE FROM t WHERE id = 99", (), True),
            ("INSERT INTO t (v) VALUES ('never')", (), True),
        ]
    )
    assert done is None
    assert await values(db) == [(1, "a")]


async def test_an_optional_statement_may_change_nothing(db: Database) -> None:
    done = await db.write_atomic(
        [
            ("DELETE FROM t WHERE id = 99", (), False),
            ("UPDATE t SET v = 'b' WHERE id = 1", (), True),
        ]
    )
    assert done is not None and [count for count, _ in done] == [0, 1]
    assert await values(db) == [(1, "b")]


async def test_a_failing_statement_undoes_the_rest_and_raises(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await db.write_atomic(
            [
                ("UPDATE t SET v = 'b' WHERE id = 1", (), True),
                ("INSERT INTO t (id, v) VALUES (1, 'duplicate')", (), True),
            ]
        )
    assert await values(db) == [(1, "a")]
    # The writer is usable afterwards (no transaction left open).
    await db.write("UPDATE t SET v = 'z' WHERE id = 1")
    assert await values(db) == [(1, "z")]
