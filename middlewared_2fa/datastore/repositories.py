"""The framework's repositories: accounts, audit log, metadata (plugins keep the SQL of
their own tables next to their services).

Values that must be secret (TOTP seeds) arrive here already encrypted; repositories
never see plaintext secrets.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from middlewared_2fa.datastore.database import Database
from middlewared_2fa.filters import SqlField, SqlQuery


@functools.lru_cache(maxsize=256)
def _parse_roles(text: str) -> tuple[str, ...]:
    """The JSON ``roles`` column; most users share one of a few values, so parsing each
    distinct text once saves a JSON parse per row of a full listing."""
    return tuple(json.loads(text))


@dataclass(slots=True)
class UserRow:
    """One row of ``users``. ``totp_secret`` is the *encrypted* seed or None."""

    id: int
    username: str
    full_name: str
    password_hash: str | None
    roles: list[str]
    locked: bool
    ssh_password_enabled: bool
    builtin: bool
    totp_secret: str | None
    totp_interval: int
    totp_digits: int
    totp_last_step: int | None
    #: Credential generation (API.md §9): bumped with every change of the password,
    #: secret, roles or lock, in the statement that makes the change.
    generation: int = 0

    @property
    def twofactor_auth_configured(self) -> bool:
        """A TOTP seed is stored (``UserEntry`` reads this, never the seed)."""
        return self.totp_secret is not None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> UserRow:
        """A row selected with :data:`_USER_SELECT` (columns by position: a lookup by
        name scans the column names, which a listing of every user pays per field)."""
        (
            id_,
            username,
            full_name,
            password_hash,
            roles,
            locked,
            ssh_password_enabled,
            builtin,
            totp_secret,
            totp_interval,
            totp_digits,
            totp_last_step,
            generation,
        ) = row
        return cls(
            id_,
            username,
            full_name,
            password_hash,
            list(_parse_roles(roles)),
            bool(locked),
            bool(ssh_password_enabled),
            bool(builtin),
            totp_secret,
            totp_interval,
            totp_digits,
            totp_last_step,
            generation,
        )


#: The columns of :class:`UserRow`, in its field order.
_USER_SELECT = (
    "SELECT id, username, full_name, password_hash, roles, locked, ssh_password_enabled, "
    "builtin, totp_secret, totp_interval, totp_digits, totp_last_step, generation FROM users"
)


_USER_COLUMNS = {
    "username",
    "full_name",
    "password_hash",
    "roles",
    "locked",
    "ssh_password_enabled",
    "builtin",
}


#: Columns whose change ends what was derived from the old credentials (API.md §9).
CREDENTIAL_COLUMNS = frozenset({"password_hash", "roles", "locked"})


def _user_values(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - _USER_COLUMNS
    if unknown:
        raise KeyError(f"not a user column: {sorted(unknown)}")
    values = dict(fields)
    if "roles" in values:
        values["roles"] = json.dumps(list(values["roles"]))
    for key in ("locked", "ssh_password_enabled", "builtin"):
        if key in values:
            values[key] = int(bool(values[key]))
    return values


class UserRepository:
    """Users, their password hashes and their (encrypted) TOTP seeds."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[UserRow]:
        """All users ordered by id."""
        rows = await self.db.fetch_all(f"{_USER_SELECT} ORDER BY id")
        return [UserRow.from_row(r) for r in rows]

    async def get(self, user_id: int) -> UserRow | None:
        """The user with ``id``, or None."""
        row = await self.db.lookup(f"{_USER_SELECT} WHERE id = ?", (user_id,))
        return UserRow.from_row(row) if row else None

    async def get_by_name(self, username: str) -> UserRow | None:
        """The user called ``username``, or None."""
        row = await self.db.lookup(f"{_USER_SELECT} WHERE username = ?", (username,))
        return UserRow.from_row(row) if row else None

    async def count(self) -> int:
        """Number of users."""
        row = await self.db.fetch_one("SELECT COUNT(*) FROM users")
        return int(row[0]) if row else 0

    async def create(self, fields: dict[str, Any]) -> int:
        """Insert a user; returns its id. Raises ``sqlite3.IntegrityError`` on a duplicate name."""
        values = _user_values(fields)
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        _, rowid = await self.db.write(
            f"INSERT INTO users ({cols}) VALUES ({marks})", tuple(values.values())
        )
        return int(rowid or 0)

    async def update(self, user_id: int, fields: dict[str, Any]) -> None:
        """Change some columns of one user."""
        values = _user_values(fields)
        if not values:
            return
        sets = ", ".join(f"{k} = ?" for k in values)
        await self.db.write(f"UPDATE users SET {sets} WHERE id = ?", (*values.values(), user_id))

    async def delete(self, user_id: int) -> None:
        """Remove one user."""
        await self.db.write("DELETE FROM users WHERE id = ?", (user_id,))

    @staticmethod
    def _guard(
        user_id: int, generation: int, caller: tuple[int, int] | None
    ) -> tuple[str, tuple[Any, ...]]:
        """WHERE clause: the row is still at ``generation`` and, when given, the caller
        ``(id, generation)`` still is too. So the checks made on what was read (the role
        guard, API.md §3) hold in the very statement that makes the change."""
        where = "WHERE id = ? AND generation = ?"
        params: tuple[Any, ...] = (user_id, generation)
        if caller is not None:
            where += " AND (SELECT generation FROM users WHERE id = ?) = ?"
            params += caller
        return where, params

    async def update_guarded(
        self,
        user_id: int,
        generation: int,
        fields: dict[str, Any],
        *,
        caller: tuple[int, int] | None = None,
        bump: bool | None = None,
    ) -> int | None:
        """Change some columns of one user if neither it nor the caller changed since
        they were read.

        Args:
            user_id: The user.
            generation: Its generation when it was read.
            fields: Columns to set (see ``_USER_COLUMNS``).
            caller: ``(id, generation)`` of the calling user, None for the Unix-socket
                root or an internal change.
            bump: Bump the generation; by default when a credential column changes.

        Returns:
            The user's generation after the change, or None when the user or the caller
            changed meanwhile (or is gone): nothing was written.
        """
        values = _user_values(fields)
        if bump is None:
            bump = bool(CREDENTIAL_COLUMNS & set(values))
        sets = [f"{k} = ?" for k in values]
        sets.append("generation = generation + ?")
        where, params = self._guard(user_id, generation, caller)
        rowcount, _ = await self.db.write(
            f"UPDATE users SET {', '.join(sets)} {where}",
            (*values.values(), int(bump), *params),
        )
        return generation + int(bump) if rowcount == 1 else None

    async def delete_guarded(
        self, user_id: int, generation: int, *, caller: tuple[int, int] | None = None
    ) -> bool:
        """Remove one user if neither it nor the caller changed since read (see
        :meth:`update_guarded`); False when nothing was deleted."""
        where, params = self._guard(user_id, generation, caller)
        rowcount, _ = await self.db.write(f"DELETE FROM users {where}", params)
        return rowcount == 1

    async def set_totp_guarded(
        self,
        user_id: int,
        generation: int,
        encrypted_secret: str | None,
        interval: int,
        digits: int,
        *,
        caller: tuple[int, int] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int | None:
        """Replace the seed (None removes it) and its parameters, forget the last used
        step and bump the generation, if neither the user nor the caller changed since
        read. ``extra`` columns are set in the same statement.

        Returns:
            The new generation, or None when nothing was written.
        """
        values = _user_values(extra or {})
        sets = "".join(f", {k} = ?" for k in values)
        where, params = self._guard(user_id, generation, caller)
        rowcount, _ = await self.db.write(
            "UPDATE users SET totp_secret = ?, totp_interval = ?, totp_digits = ?, "
            f"totp_last_step = NULL, generation = generation + 1{sets} {where}",
            (encrypted_secret, interval, digits, *values.values(), *params),
        )
        return generation + 1 if rowcount == 1 else None

    def set_totp_statement(
        self,
        user_id: int,
        generation: int,
        encrypted_secret: str,
        interval: int,
        digits: int,
        last_step: int | None,
        *,
        caller: tuple[int, int] | None = None,
    ) -> tuple[str, tuple[Any, ...]]:
        """The guarded UPDATE of :meth:`set_totp_guarded` (with ``last_step`` as the
        used step of the new seed) as ``(sql, parameters)``, for a plugin's
        ``Database.write_atomic`` transaction (``user.twofactor_confirm``)."""
        where, params = self._guard(user_id, generation, caller)
        return (
            "UPDATE users SET totp_secret = ?, totp_interval = ?, totp_digits = ?, "
            f"totp_last_step = ?, generation = generation + 1 {where}",
            (encrypted_secret, interval, digits, last_step, *params),
        )

    async def lock(self, user_id: int) -> int | None:
        """Lock the account (too many failures, API.md §3) and bump its generation.

        Returns:
            The new generation, or None when it was locked already or is gone.
        """
        row = await self.get(user_id)
        if row is None or row.locked:
            return None
        return await self.update_guarded(user_id, row.generation, {"locked": True})

    async def set_totp(
        self, user_id: int, encrypted_secret: str | None, interval: int, digits: int
    ) -> None:
        """Replace the seed (None removes it) and parameters; forgets the last used step
        and bumps the generation (unconditionally: for set-up and tests)."""
        await self.db.write(
            "UPDATE users SET totp_secret = ?, totp_interval = ?, totp_digits = ?, "
            "totp_last_step = NULL, generation = generation + 1 WHERE id = ?",
            (encrypted_secret, interval, digits, user_id),
        )

    async def accept_step(self, user_id: int, encrypted_secret: str, step: int) -> bool:
        """Record ``step`` as used, only if it is newer than the last used step of the
        same seed (RFC 6238 §5.2: a code is accepted once). Atomic across connections.

        Returns:
            True when this call recorded the step; False for a replay or a seed that
            changed meanwhile.
        """
        # One statement: the check and the update are atomic (SQLite's write lock).
        rowcount, _ = await self.db.write(
            "UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_secret = ? "
            "AND (totp_last_step IS NULL OR totp_last_step < ?)",
            (step, user_id, encrypted_secret, step),
        )
        return rowcount == 1


@dataclass(slots=True)
class AuditRow:
    """One audit entry (API.md §7)."""

    audit_id: str
    #: Unix time, seconds.
    timestamp: float
    event: str
    username: str | None
    address: str | None
    success: bool
    #: ``{description, method?, credentials?, error?}``.
    event_data: dict[str, Any] = field(default_factory=dict)
    #: Id of the session (connection) that made it (API.md §9), None for the daemon.
    session: str | None = None


_AUDIT_SELECT = "audit_id, timestamp, event, username, address, success, event_data, session"


def _audit_row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), json.loads(r[6]), r[7])


#: The keys of an entry's ``event_data`` (``Middleware.audit`` writes them).
AUDIT_EVENT_DATA_KEYS = ("method", "description", "credentials", "error")


def _event_data(key: str) -> SqlField:
    # The key is one of ours (below), never the caller's: the path is a constant.
    return SqlField(f"json_extract(event_data, '$.{key}')")


#: The fields of ``AuditEntry`` (API.md §7) that ``audit.query`` filters and orders by,
#: as SQL: the allow-list of :func:`~middlewared_2fa.filters.sql_query`. Both times
#: are the indexed ``timestamp`` column (``audit_timestamp``), ordered with ``id`` so
#: that entries of one instant keep the order they were written in.
#: :data:`AUDIT_ORDER` (oldest first) is the order of ties and of a query without
#: ``order_by``: the index's, so a time range and the order share it.
AUDIT_ORDER = ("timestamp", "id")
AUDIT_FIELDS: dict[str, SqlField] = {
    "audit_id": SqlField("audit_id"),
    "message_timestamp": SqlField("timestamp", "seconds", order=AUDIT_ORDER),
    "timestamp": SqlField("timestamp", "date", order=AUDIT_ORDER),
    "address": SqlField("address"),
    "username": SqlField("username"),
    "session": SqlField("session"),
    "service": SqlField("'MIDDLEWARE'"),
    "event": SqlField("event"),
    "success": SqlField("success", "bool"),
    **{f"event_data.{key}": _event_data(key) for key in AUDIT_EVENT_DATA_KEYS},
}

#: Rows deleted per statement by :meth:`AuditRepository.delete_older_than`, so that a
#: large purge never holds the writer (logins write audit entries) for long.
AUDIT_DELETE_BATCH = 5000


class AuditRepository:
    """Append-only audit log; queries are evaluated in SQL (API.md §7)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, entry: AuditRow) -> None:
        await self.db.write(
            f"INSERT INTO audit ({_AUDIT_SELECT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.audit_id,
                entry.timestamp,
                entry.event,
                entry.username,
                entry.address,
                int(entry.success),
                json.dumps(entry.event_data),
                entry.session,
            ),
        )

    async def query(self, query: SqlQuery) -> list[AuditRow]:
        """The entries ``query`` selects (built by ``sql_query`` over
        :data:`AUDIT_FIELDS`), in its order and page."""
        sql, params = query.select(_AUDIT_SELECT, "audit")
        return [_audit_row(r) for r in await self.db.fetch_all(sql, params)]

    async def count(self, query: SqlQuery) -> int:
        """How many entries ``query``'s filters select (paging ignored)."""
        sql, params = query.count("audit")
        row = await self.db.fetch_one(sql, params)
        return int(row[0]) if row else 0

    async def delete_older_than(self, cutoff: float) -> int:
        """Delete the entries written before ``cutoff`` (Unix time, seconds), through
        the time index, in batches of :data:`AUDIT_DELETE_BATCH`.

        Returns:
            The number of entries deleted.
        """
        deleted = 0
        while True:
            rowcount, _ = await self.db.write(
                "DELETE FROM audit WHERE id IN "
                "(SELECT id FROM audit WHERE timestamp < ? ORDER BY timestamp LIMIT ?)",
                (cutoff, AUDIT_DELETE_BATCH),
            )
            deleted += rowcount
            if rowcount < AUDIT_DELETE_BATCH:
                return deleted

    # Last: below it, "list" in an annotation would name this method.
    async def list(self) -> list[AuditRow]:
        """All entries, in the order written."""
        rows = await self.db.fetch_all(f"SELECT {_AUDIT_SELECT} FROM audit ORDER BY id")
        return [_audit_row(r) for r in rows]


class MetaRepository:
    """Small key/value facts about the database itself (e.g. the key check value)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        row = await self.db.lookup("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    async def put(self, key: str, value: str) -> None:
        await self.db.write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class Repositories:
    """All repositories over one :class:`Database`; handed to plugins."""

    def __init__(self, db: Database) -> None:
        self.users = UserRepository(db)
        self.audit = AuditRepository(db)
        self.meta = MetaRepository(db)
