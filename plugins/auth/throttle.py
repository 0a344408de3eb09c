"""Account throttling: consecutive failed authentications per account, stored in the
plugin's table ``auth_throttle`` (NIST SP 800-63B §5.2.2, API.md §3)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from middlewared_2fa.api import Migration
from middlewared_2fa.datastore import Database
from middlewared_2fa.errors import EBUSY, CallError

if TYPE_CHECKING:
    from middlewared_2fa.middleware import Middleware

logger = logging.getLogger(__name__)

#: Names that are not accounts whose failures are remembered. When full, the oldest that
#: is not cooling down is forgotten, so a flood of fresh names cannot push out a name
#: in a cool-down (which would then answer differently from an account, API.md §3).
UNKNOWN_NAMES = 16384
#: Entries looked at for one that is not cooling down before the oldest goes anyway.
_EVICTION_SCAN = 32
#: First cool-down (s); it doubles with every further failure (API.md §3).
BASE_COOLDOWN = 30.0


#: The plugin's tables. ``legacy``: the table came with the global schema version 2.
MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE auth_throttle (
            user_id        INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            failures       INTEGER NOT NULL CHECK (failures >= 0),
            cooldown_until REAL NOT NULL DEFAULT 0
        );
        """,
        legacy=2,
    ),
)


class AuthSettings(BaseModel):
    """Settings of logins (API.md §1, §3); times in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_failure_delay: float = Field(1.0, ge=0, le=30, description="delay per failure (s)")
    auth_throttle_after: int = Field(
        5, ge=1, le=100, description="consecutive failures of an account before a cool-down"
    )
    auth_throttle_max: float = Field(
        900.0, ge=1, le=86400, description="longest account cool-down (s)"
    )
    auth_lock_after: int = Field(
        100, ge=1, le=100, description="consecutive failures that lock an account"
    )

    @model_validator(mode="after")
    def _lock_after_throttle(self) -> AuthSettings:
        # API.md §3: auth_lock_after is auth_throttle_after..100.
        if self.auth_lock_after < self.auth_throttle_after:
            raise ValueError(
                f"auth_lock_after must be at least auth_throttle_after ({self.auth_throttle_after})"
            )
        return self


@dataclass(slots=True)
class ThrottleRow:
    """Consecutive failed authentications of one account (API.md §3)."""

    user_id: int
    failures: int
    cooldown_until: float


class ThrottleRepository:
    """Account throttling counters, one row per account with failures."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[ThrottleRow]:
        rows = await self.db.fetch_all(
            "SELECT user_id, failures, cooldown_until FROM auth_throttle"
        )
        return [ThrottleRow(int(r[0]), int(r[1]), float(r[2])) for r in rows]

    async def put(self, row: ThrottleRow) -> None:
        """Store the count (a count of 0 deletes the row). A user deleted meanwhile is
        ignored (the foreign key refuses the row)."""
        if row.failures <= 0:
            await self.db.write("DELETE FROM auth_throttle WHERE user_id = ?", (row.user_id,))
            return
        await self.db.write(
            "INSERT INTO auth_throttle (user_id, failures, cooldown_until) "
            "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?) "
            "ON CONFLICT(user_id) DO UPDATE SET failures = excluded.failures, "
            "cooldown_until = excluded.cooldown_until",
            (row.user_id, row.failures, row.cooldown_until, row.user_id),
        )


@dataclass(slots=True)
class _Count:
    failures: int = 0
    cooldown_until: float = 0.0
    #: What the database holds: a write is needed only when it differs.
    stored: tuple[int, float] = (0, 0.0)


@dataclass(slots=True)
class Attempt:
    """One authentication attempt, counted as a failure from the moment it starts
    (so that concurrent attempts cannot all pass the cool-down check before any is
    counted) until :meth:`AccountThrottle.refund` or :meth:`AccountThrottle.reset`."""

    key: int | str
    count: _Count
    failures: int
    previous_until: float
    set_until: float | None
    settled: bool = False

    @property
    def started_cooldown(self) -> bool:
        return self.set_until is not None


class AccountThrottle:
    """Consecutive failed authentications per account (NIST SP 800-63B §5.2.2, API.md §3).

    Accounts (keyed by user id) are counted in memory and stored in the ``auth_throttle``
    table after each change, so the count is shared by every connection and address
    and survives a restart; names that are not accounts are counted the same way in a
    bounded in-memory table, so the answers do not tell which names exist.

    From the ``after``-th consecutive failure on, the account cools down for
    ``min(30 s * 2^(n - after), longest)``; during a cool-down every attempt is refused
    (EBUSY) without being checked or counted.
    """

    def __init__(self, middleware: Middleware, settings: AuthSettings) -> None:
        self.middleware = middleware
        self.settings = settings
        self.repo = ThrottleRepository(middleware.db)
        self._accounts: dict[int, _Count] = {}
        self._names: OrderedDict[str, _Count] = OrderedDict()

    async def load(self) -> None:
        """Read the stored counts (at start-up)."""
        for row in await self.repo.list():
            stored = (row.failures, row.cooldown_until)
            self._accounts[row.user_id] = _Count(row.failures, row.cooldown_until, stored)

    def failures(self, key: int | str) -> int:
        """Consecutive failures counted for ``key`` (a user id or an unknown name)."""
        count = self._accounts.get(key) if isinstance(key, int) else self._names.get(key)
        return count.failures if count else 0

    def _count(self, key: int | str) -> _Count:
        if isinstance(key, int):
            return self._accounts.setdefault(key, _Count())
        count = self._names.pop(key, None) or _Count()
        self._names[key] = count  # most recent last
        if len(self._names) > UNKNOWN_NAMES:
            self._evict_name()
        return count

    def _evict_name(self) -> None:
        now = self.middleware.clock.time()
        for _ in range(_EVICTION_SCAN):
            name, count = next(iter(self._names.items()))
            if count.cooldown_until <= now:
                del self._names[name]
                return
            self._names.move_to_end(name)  # cooling down: keep it, look at the next
        self._names.popitem(last=False)

    def begin(self, key: int | str) -> Attempt:
        """Start an attempt for ``key``: refused during a cool-down, else counted now.

        Raises:
            CallError: EBUSY "Rate Limit Exceeded" while ``key`` cools down.
        """
        settings = self.settings
        now = self.middleware.clock.time()
        count = self._count(key)
        if count.cooldown_until > now:
            raise CallError("Rate Limit Exceeded", EBUSY)
        previous = count.cooldown_until
        count.failures += 1
        set_until: float | None = None
        if count.failures >= settings.auth_throttle_after:
            exponent = min(count.failures - settings.auth_throttle_after, 32)
            set_until = now + min(BASE_COOLDOWN * 2**exponent, settings.auth_throttle_max)
            count.cooldown_until = set_until
        return Attempt(key, count, count.failures, previous, set_until)

    def refund(self, attempt: Attempt) -> None:
        """The attempt was not a failure after all (a right password that leads to the
        OTP step, or one that could not be checked): take it back."""
        if attempt.settled:
            return
        attempt.settled = True
        count = attempt.count
        count.failures = max(0, count.failures - 1)
        if attempt.set_until is not None and count.cooldown_until == attempt.set_until:
            count.cooldown_until = attempt.previous_until
        key = attempt.key
        if isinstance(key, str) and count.failures == 0 and count.cooldown_until == 0:
            # An attempt refused unchecked (a full hashing queue) leaves no trace: it must
            # not take a place in the table of names that are not accounts.
            if self._names.get(key) is count:
                del self._names[key]
        self._persist_soon(key)

    async def reset(self, key: int | str) -> None:
        """A completed login (or an administrator's unlock): the count starts again."""
        count = self._count(key)
        count.failures, count.cooldown_until = 0, 0.0
        await self.persist(key)
        if isinstance(key, int) and count.stored == (0, 0.0):
            self._accounts.pop(key, None)

    async def persist(self, key: int | str) -> None:
        """Store the count of an account (names that are not accounts stay in memory)."""
        if not isinstance(key, int):
            return
        count = self._accounts.get(key)
        if count is None:
            return
        values = (count.failures, count.cooldown_until)
        if values == count.stored:  # nothing new (a login that had no failures before)
            return
        count.stored = values
        try:
            await self.repo.put(ThrottleRow(key, *values))
        except Exception:
            count.stored = (-1, -1.0)  # unknown: write again next time
            logger.exception("cannot store the failure count of user id %s", key)

    def _persist_soon(self, key: int | str) -> None:
        count = self._accounts.get(key) if isinstance(key, int) else None
        if count is not None and (count.failures, count.cooldown_until) != count.stored:
            self.middleware.spawn(self.persist(key), "store failure count")

    def forget(self, user_id: int) -> None:
        """The account was deleted."""
        self._accounts.pop(user_id, None)
