"""Staged enrolment of a TOTP secret: ``user.twofactor_enroll`` and
``user.twofactor_confirm`` (API.md §4), so a failed scan never locks anyone out.

``enroll`` stores a *pending* secret (encrypted like the active one, one per user, valid
:data:`PENDING_TTL` seconds) in the plugin's table ``twofactor_pending``; the active
secret keeps working. ``confirm`` checks a code of the pending secret with the login's
rules (window; the step becomes the new secret's last used step, so the code cannot log
in afterwards, RFC 6238 §5.2) and, in one transaction, makes it the active secret and
removes the pending row. The user's other sessions and tokens then end (API.md §9), the
SSH OATH users file is rewritten (``user.post_change``) and, when the user confirmed
their own secret, the session becomes ``LOGIN_TWOFACTOR`` / ``LEVEL_2``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyotp

from middlewared_2fa.api import CallContext, Migration, api_method
from middlewared_2fa.datastore import Database
from middlewared_2fa.errors import EBUSY, EINVAL, CallError, ValidationError
from middlewared_2fa.log import redact
from middlewared_2fa.schema.user import (
    TwoFactorOptions,
    UserTwofactorConfirmArgs,
    UserTwofactorConfirmResult,
    UserTwofactorEnrollArgs,
    UserTwofactorEnrollResult,
)

from ..auth import AuthService
from ..auth_twofactor import TwoFactorService, matching_step, normalize_code
from . import otpauth
from .crud import GUARDED_ATTEMPTS, after_stale_write, caller_of, end_derived_credentials

if TYPE_CHECKING:
    from middlewared_2fa.datastore.repositories import UserRow
    from middlewared_2fa.middleware import Middleware

logger = logging.getLogger(__name__)

#: A pending secret is discarded this long after ``user.twofactor_enroll`` (s, API.md §4).
PENDING_TTL = 900.0

MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE twofactor_pending (
            user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            secret     TEXT NOT NULL,
            interval   INTEGER NOT NULL CHECK (interval IN (30, 60)),
            digits     INTEGER NOT NULL CHECK (digits BETWEEN 6 AND 8),
            expires_at REAL NOT NULL
        );
        """,
    ),
)


@dataclass(slots=True, frozen=True)
class PendingSecret:
    """A row of ``twofactor_pending``; ``secret`` is encrypted, ``expires_at`` Unix time."""

    user_id: int
    secret: str
    interval: int
    digits: int
    expires_at: float


class PendingRepository:
    """The plugin's table ``twofactor_pending``: at most one staged secret per user."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: int, now: float) -> PendingSecret | None:
        """The user's pending secret unless it has expired."""
        row = await self.db.fetch_one(
            "SELECT user_id, secret, interval, digits, expires_at FROM twofactor_pending "
            "WHERE user_id = ? AND expires_at > ?",
            (user_id, now),
        )
        return None if row is None else PendingSecret(*row)

    @staticmethod
    def put_statement(pending: PendingSecret) -> tuple[str, tuple[Any, ...]]:
        """``(sql, parameters)`` storing ``pending`` in place of the user's previous one."""
        return (
            "INSERT OR REPLACE INTO twofactor_pending "
            "(user_id, secret, interval, digits, expires_at) VALUES (?, ?, ?, ?, ?)",
            (pending.user_id, pending.secret, pending.interval, pending.digits, pending.expires_at),
        )

    async def purge(self, now: float) -> int:
        """Delete expired pending secrets; returns how many."""
        count, _ = await self.db.write(
            "DELETE FROM twofactor_pending WHERE expires_at <= ?", (now,)
        )
        return count


class UserEnrolment:
    """The staged-enrolment methods of ``UserService`` (a mixin)."""

    middleware: Middleware

    if TYPE_CHECKING:

        async def _named(
            self, ctx: CallContext, username: str, *, write_role: str | None
        ) -> UserRow: ...

        async def _require_second_factor_session(self, ctx: CallContext) -> None: ...

        async def _twofactor_config(self, row: UserRow) -> dict[str, Any]: ...

        def _upgrade(self, ctx: CallContext, row: UserRow) -> None: ...

        async def _changed(self, ctx: CallContext, old: UserRow, user_id: int) -> UserRow: ...

    @property
    def pending(self) -> PendingRepository:
        return PendingRepository(self.middleware.db)

    async def pending_uri(self, row: UserRow) -> str | None:
        """The provisioning URI of ``row``'s pending secret, or None (none, or expired)."""
        pending = await self.pending.get(row.id, self.middleware.clock.time())
        if pending is None:
            return None
        twofactor = self.middleware.service(TwoFactorService)
        config = await twofactor.get_config()
        uri = otpauth.provisioning_uri(
            twofactor.unseal(pending.secret),
            username=row.username,
            host=self.middleware.hostname,
            issuer=config.issuer,
            interval=pending.interval,
            digits=pending.digits,
        )
        redact(uri)
        return uri

    @api_method(
        UserTwofactorEnrollArgs, UserTwofactorEnrollResult, roles=[], audit=True, setup=True
    )
    async def twofactor_enroll(
        self, ctx: CallContext, username: str, twofactor_options: TwoFactorOptions
    ) -> dict[str, Any]:
        """Stage a new TOTP secret for ``username`` (self or FULL_ADMIN; API.md §4): 32
        base32 characters from a CSPRNG, stored encrypted, valid 15 minutes, one per
        user (a new call replaces it). The active secret, if any, keeps working until
        :meth:`twofactor_confirm`.

        ``twofactor_options``: ``{otp_digits: 6..8, interval: 30|60}``; omitted fields
        keep the user's stored values.

        Returns:
            ``{provisioning_uri, interval (s), otp_digits, expires_at}``.

        Raises:
            CallError: EPERM unless self or FULL_ADMIN (a setup-only session: self only);
                ENOENT; EACCES from a session without the second factor it has (§9).
        """
        given = twofactor_options.model_dump(exclude_unset=True)
        twofactor = self.middleware.service(TwoFactorService)
        for attempt_no in range(GUARDED_ATTEMPTS):
            row = await self._named(ctx, username, write_role=None)
            if attempt_no == 0:
                await self._require_second_factor_session(ctx)
            secret = pyotp.random_base32(otpauth.SECRET_LENGTH)
            redact(secret)
            now = self.middleware.clock.time()
            pending = PendingSecret(
                row.id,
                twofactor.seal(secret),
                given.get("interval", row.totp_interval),
                given.get("otp_digits", row.totp_digits),
                now + PENDING_TTL,
            )
            # Staged only if neither the user nor the caller changed since the checks: a
            # session that a confirm (or a password change) is ending stages nothing.
            guard = "UPDATE users SET generation = generation WHERE id = ? AND generation = ?"
            statements: list[tuple[str, tuple[Any, ...], bool]] = [
                (guard, (row.id, row.generation), True)
            ]
            caller = caller_of(ctx)
            if caller is not None:
                statements.append((guard, caller, True))
            statements.append((*self.pending.put_statement(pending), True))
            if await self.middleware.db.write_atomic(statements) is not None:
                break
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        await self.pending.purge(now)
        uri = await self.pending_uri(row)
        assert uri is not None
        return {
            "provisioning_uri": uri,
            "interval": pending.interval,
            "otp_digits": pending.digits,
            "expires_at": pending.expires_at,
        }

    @api_method(
        UserTwofactorConfirmArgs, UserTwofactorConfirmResult, roles=[], audit=True, setup=True
    )
    async def twofactor_confirm(
        self, ctx: CallContext, username: str, token: str
    ) -> dict[str, Any]:
        """Make ``username``'s pending secret the active one when ``token`` is a right
        code of it (window as login; the code is used up). One transaction; then the
        user's other sessions and tokens end, the SSH OATH users file is rewritten, and
        a user confirming their own secret gets a ``LEVEL_2`` session (API.md §4, §9).

        Returns:
            ``{provisioning_uri, secret_configured: true, interval, otp_digits,
            recovery_codes_remaining}`` of the new active secret.

        Raises:
            ValidationErrors: a wrong code, on ``user_twofactor_confirm.token`` (it counts
                as a failed authentication of the account, API.md §3).
            CallError: EINVAL when there is no pending secret (none, expired, or
                confirmed already); EBUSY while the account cools down; EPERM; ENOENT;
                EACCES as :meth:`twofactor_enroll`.
        """
        twofactor = self.middleware.service(TwoFactorService)
        auth = self.middleware.service(AuthService)
        repos = self.middleware.repos
        for attempt_no in range(GUARDED_ATTEMPTS):
            row = await self._named(ctx, username, write_role=None)
            if attempt_no == 0:
                await self._require_second_factor_session(ctx)
            now = self.middleware.clock.time()
            pending = await self.pending.get(row.id, now)
            if pending is None:
                raise CallError(
                    f"{username[:64]!r} has no pending two-factor secret; call "
                    "user.twofactor_enroll first",
                    EINVAL,
                )
            attempt = auth.begin_attempt(row.id)  # EBUSY in a cool-down (API.md §3)
            secret = twofactor.unseal(pending.secret)
            code = normalize_code(token, pending.digits)
            config = await twofactor.get_config()
            step = (
                None
                if code is None
                else matching_step(
                    secret,
                    code,
                    now=now,
                    interval=pending.interval,
                    digits=pending.digits,
                    window=config.window,
                )
            )
            if step is None:
                await auth.attempt_failed(
                    ctx, attempt, row, row.username, "wrong code confirming a new TOTP secret"
                )
                raise ValidationError(
                    "user_twofactor_confirm.token", "Wrong code for the pending secret"
                )
            if code is not None:
                redact(code)
            sql, params = repos.users.set_totp_statement(
                row.id,
                row.generation,
                pending.secret,
                pending.interval,
                pending.digits,
                step,
                caller=caller_of(ctx),
            )
            written = await self.middleware.db.write_atomic(
                [
                    (sql, params, True),
                    (
                        "DELETE FROM twofactor_pending WHERE user_id = ? AND secret = ?",
                        (row.id, pending.secret),
                        True,
                    ),
                ]
            )
            if written is not None:
                break
            auth.refund_attempt(attempt)
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        generation = row.generation + 1
        end_derived_credentials(ctx, row.id, generation, keep_own=True)
        is_self = ctx.identity.user_id == row.id
        if is_self:
            await auth.attempt_succeeded(row.id)
        else:
            auth.refund_attempt(attempt)
        new = await self._changed(ctx, row, row.id)
        # pam_oath must refuse the code just used as well (API.md §8).
        await self.middleware.hooks.collect("auth.twofactor.record_step", new, secret, step)
        if is_self:
            self._upgrade(ctx, new)
        logger.info("user %s: a new TOTP secret was confirmed", new.username)
        return await self._twofactor_config(new)
