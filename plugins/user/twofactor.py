"""The per-user second factor: ``user.renew_2fa_secret``, ``unset_2fa_secret``,
``provisioning_uri``, ``twofactor_config``, ``twofactor_qr`` and
``verify_twofactor_token`` (API.md §4, §9).

Codes are checked by the TOTP engine of ``auth.twofactor`` (a required plugin, reached
by type); the URI and QR helpers are in :mod:`.otpauth`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pyotp

from middlewared_2fa.api import CallContext, api_method
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import EACCES, EBUSY, EINVAL, ENOENT, EPERM, CallError, SetupRequired
from middlewared_2fa.log import redact
from middlewared_2fa.roles import has_any
from middlewared_2fa.schema.common import BoolResult, NullResult, StrResult
from middlewared_2fa.schema.user import (
    QrOptions,
    TwoFactorOptions,
    UserProvisioningUriArgs,
    UserRenew2faSecretArgs,
    UserRenew2faSecretResult,
    UserTwofactorConfigArgs,
    UserTwofactorConfigResult,
    UserTwofactorQrArgs,
    UserTwofactorQrResult,
    UserUnset2faSecretArgs,
    UserVerifyTwofactorTokenArgs,
)
from middlewared_2fa.session import Credentials, Identity, Level, Proof, StaleCredential

from ..auth import AuthService
from ..auth_twofactor import TwoFactorService, refusal_of
from . import otpauth
from .crud import (
    GUARDED_ATTEMPTS,
    after_stale_write,
    caller_of,
    end_derived_credentials,
    role_guard,
    run_post_change,
    user_entry,
)

if TYPE_CHECKING:
    from middlewared_2fa.middleware import Middleware

logger = logging.getLogger(__name__)

#: What a secret change stores: ``(encrypted secret or None, interval, digits, extra
#: columns)``, computed from the row read for that attempt.
SecretChange = tuple[str | None, int, int, dict[str, Any]]


class UserTwoFactor:
    """The second-factor methods of ``UserService`` (a mixin, like
    :class:`~.crud.UserCrud`)."""

    middleware: Middleware

    if TYPE_CHECKING:

        async def pending_uri(self, row: UserRow) -> str | None: ...

    async def _named(self, ctx: CallContext, username: str, *, write_role: str | None) -> UserRow:
        """The user called ``username`` if the caller is that user (same id, so a session
        of a renamed or deleted account never reaches a new account of the same name),
        FULL_ADMIN, or holds ``write_role`` and every role of that user (role guard).

        A setup-only session (API.md §4) acts on its own user only, whatever its roles.

        Raises:
            CallError: EPERM when not allowed (checked before existence, so names cannot
                be probed), ENOENT when there is no such user; EACCES from a setup-only
                session naming another user.
        """
        identity = ctx.identity
        row = await self.middleware.repos.users.get_by_name(username)
        is_self = row is not None and identity.user_id == row.id
        if identity.setup_only and not is_self:
            raise SetupRequired()
        delegated = write_role is not None and has_any(identity.granted, [write_role])
        if not (is_self or identity.is_full_admin or delegated):
            raise CallError("Only the user themself or an administrator may do this", EPERM)
        if row is None:
            raise CallError(f"User {username[:64]!r} does not exist", ENOENT)
        role_guard(ctx, row)
        return row

    async def second_factor_target(self, ctx: CallContext, username: str) -> UserRow:
        """The user whose second factors the caller may read or change (self, or
        FULL_ADMIN within the role guard; a setup-only session: itself only) from a
        session that satisfies its own second factor (API.md §9). For plugins that add
        second factors (recovery codes, passkeys).

        Raises:
            CallError: EPERM, ENOENT, EACCES.
        """
        row = await self._named(ctx, username, write_role=None)
        await self._require_second_factor_session(ctx)
        return row

    async def second_factors_changed(self, ctx: CallContext, old: UserRow) -> UserRow:
        """For plugins that add second factors (passkeys): after their guarded write
        bumped ``old``'s generation, run ``user.post_change`` (the ``user.query`` event:
        ``twofactor_auth_configured`` may have changed) and return the new row.

        Raises:
            CallError: ENOENT when the user is gone meanwhile.
        """
        return await self._changed(ctx, old, old.id)

    def upgrade_session(self, ctx: CallContext, row: UserRow) -> None:
        """The caller just proved a second factor of its own account ``row`` (a first
        passkey registered, API.md §4): its session becomes ``LOGIN_TWOFACTOR`` /
        ``LEVEL_2``, no longer setup-only (API-key and token sessions stay as they are)."""
        self._upgrade(ctx, row)

    async def _require_second_factor_session(self, ctx: CallContext) -> None:
        """A session reads or changes second factors only when it satisfies its own
        user's 2FA: LEVEL_2, the Unix socket, 2FA not applying to the caller (global 2FA
        off or no secret yet), or the secret was set by this very session and nothing
        changed since (API.md §9). So a stolen password or token cannot read or replace
        a second factor it does not have.

        Raises:
            CallError: EACCES.
        """
        identity = ctx.identity
        if identity.credentials == "UNIX_SOCKET" or identity.level == "LEVEL_2":
            return
        if identity.setup_only:  # its methods are its own user's enrolment (API.md §9)
            return
        if identity.user_id is None:
            return
        config = await self.middleware.service(TwoFactorService).get_config()
        if not config.enabled:
            return
        me = await self.middleware.repos.users.get(identity.user_id)
        if me is None or not self.middleware.factors.configured(me):
            return
        if ctx.session.enrolled_generation == me.generation:
            return
        raise CallError("This needs a session that used two-factor authentication", EACCES)

    def _uri(self, row: UserRow, issuer: str) -> str | None:
        if row.totp_secret is None:
            return None
        secret = self.middleware.service(TwoFactorService).unseal(row.totp_secret)
        uri = otpauth.provisioning_uri(
            secret,
            username=row.username,
            host=self.middleware.hostname,
            issuer=issuer,
            interval=row.totp_interval,
            digits=row.totp_digits,
        )
        redact(uri)
        return uri

    async def _twofactor_config(self, row: UserRow) -> dict[str, Any]:
        """``user.twofactor_config`` of ``row``; subscribers of the hook
        ``user.twofactor_config`` add their keys (``recovery_codes_remaining``)."""
        config = await self.middleware.service(TwoFactorService).get_config()
        out: dict[str, Any] = {
            "provisioning_uri": self._uri(row, config.issuer),
            "secret_configured": row.totp_secret is not None,
            "interval": row.totp_interval,
            "otp_digits": row.totp_digits,
            "recovery_codes_remaining": 0,
        }
        extra: list[dict[str, Any]] = await self.middleware.hooks.collect(
            "user.twofactor_config", row
        )
        for part in extra:
            out.update(part)
        return out

    async def _changed(self, ctx: CallContext, old: UserRow, user_id: int) -> UserRow:
        """The row of ``user_id`` after a change of ``old``, with ``user.post_change``
        run (events, the SSH OATH users file).

        Raises:
            CallError: ENOENT when the user is gone; what a subscriber raises (EIO).
        """
        new = await self.middleware.repos.users.get(user_id)
        if new is None:
            raise CallError(f"User {old.username[:64]!r} does not exist", ENOENT)
        await run_post_change(ctx, old, new)
        return new

    async def _set_secret(
        self,
        ctx: CallContext,
        username: str,
        *,
        write_role: str | None,
        make: Callable[[UserRow], Awaitable[SecretChange]],
    ) -> UserRow:
        """Replace ``username``'s secret with what ``make(row)`` returns (a
        :data:`SecretChange`), guarded, ending the user's other sessions and tokens
        (API.md §9)."""
        repos = self.middleware.repos
        for attempt in range(GUARDED_ATTEMPTS):
            row = await self._named(ctx, username, write_role=write_role)
            if attempt == 0:
                await self._require_second_factor_session(ctx)
            encrypted, interval, digits, extra = await make(row)
            generation = await repos.users.set_totp_guarded(
                row.id,
                row.generation,
                encrypted,
                interval,
                digits,
                caller=caller_of(ctx),
                extra=extra,
            )
            if generation is not None:
                break
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        end_derived_credentials(ctx, row.id, generation, keep_own=True)
        if ctx.identity.user_id == row.id:
            ctx.session.enrolled_generation = generation if encrypted is not None else None
        return await self._changed(ctx, row, row.id)

    @api_method(UserRenew2faSecretArgs, UserRenew2faSecretResult, roles=[], audit=True)
    async def renew_2fa_secret(
        self, ctx: CallContext, username: str, twofactor_options: TwoFactorOptions
    ) -> dict[str, Any]:
        """Give ``username`` a new TOTP secret (32 base32 characters from a CSPRNG); the
        old one stops working at once, and the user's other sessions and tokens end.

        ``twofactor_options``: ``{otp_digits: 6..8, interval: 30|60}``; omitted fields keep
        the stored values. Returns the UserEntry plus ``twofactor_config``.

        Raises:
            CallError: EPERM unless the caller is the user or FULL_ADMIN; ENOENT; EACCES
                from a session without the second factor it has (API.md §9); EIO when
                the SSH OATH users file cannot be rewritten (the new secret is saved).
            ValidationErrors: ``twofactor_options.interval`` / ``.otp_digits`` (schema).
        """
        given = twofactor_options.model_dump(exclude_unset=True)

        async def make(row: UserRow) -> SecretChange:
            interval: int = given.get("interval", row.totp_interval)
            digits: int = given.get("otp_digits", row.totp_digits)
            secret = pyotp.random_base32(otpauth.SECRET_LENGTH)
            redact(secret)
            sealed = self.middleware.service(TwoFactorService).seal(secret)
            return sealed, interval, digits, {}

        new = await self._set_secret(ctx, username, write_role=None, make=make)
        return {
            **user_entry(new, self.middleware.factors),
            "twofactor_config": await self._twofactor_config(new),
        }

    @api_method(UserUnset2faSecretArgs, NullResult, roles=[], audit=True)
    async def unset_2fa_secret(self, ctx: CallContext, username: str) -> None:
        """Remove ``username``'s secret; the next login needs no OTP; the user's other
        sessions and tokens end. While global 2FA and ``services.ssh`` are on,
        ``ssh_password_enabled`` is turned off with it (API.md §5) and the user leaves
        the SSH OATH users file.

        While ``enforce`` is on, a user who removes their own secret keeps a setup-only
        session (API.md §4): what a password login would give them now.

        Raises:
            CallError: EPERM unless the caller is the user or has ACCOUNT_WRITE and every
                role of the user; ENOENT; EACCES from a session without the second factor
                it has; EIO when the OATH users file cannot be rewritten (the secret is
                removed).
        """
        config = await self.middleware.service(TwoFactorService).get_config()
        current = await self._named(ctx, username, write_role="ACCOUNT_WRITE")
        if current.totp_secret is None:
            # Nothing to remove: no credential changes, so no session ends (a passkey-only
            # user must not be logged out by an administrator's "Clear 2FA").
            await self._require_second_factor_session(ctx)
            return

        async def make(row: UserRow) -> SecretChange:
            extra: dict[str, Any] = {}
            if row.ssh_password_enabled and config.enabled and config.ssh:
                # No password SSH without a secret while SSH 2FA is on (API.md §5).
                extra["ssh_password_enabled"] = False
            return None, row.totp_interval, row.totp_digits, extra

        row = await self._set_secret(ctx, username, write_role="ACCOUNT_WRITE", make=make)
        if (
            config.enabled
            and config.enforce
            and ctx.identity.user_id == row.id
            and not self.middleware.factors.configured(row)
        ):
            # Enforced, and the caller gave up its own last second factor (a passkey
            # may remain, API.md §12): its session keeps only what a password login
            # would get now, setup (API.md §4).
            self._to_setup_only(ctx, row)

    @api_method(UserProvisioningUriArgs, StrResult, roles=[])
    async def provisioning_uri(self, ctx: CallContext, username: str) -> str:
        """The ``otpauth://`` URI of ``username``'s secret.

        Raises:
            CallError: EPERM; ENOENT; EACCES from a session without the second factor
                it has (API.md §9); EINVAL when the user has no secret.
        """
        row = await self._named(ctx, username, write_role=None)
        await self._require_second_factor_session(ctx)
        config = await self._twofactor_config(row)
        if config["provisioning_uri"] is None:
            raise CallError(
                f"{username!r} user does not have two factor authentication configured", EINVAL
            )
        return str(config["provisioning_uri"])

    @api_method(UserTwofactorConfigArgs, UserTwofactorConfigResult, roles=[])
    async def twofactor_config(self, ctx: CallContext, username: str) -> dict[str, Any]:
        """``{provisioning_uri|null, secret_configured, interval (s), otp_digits}``.

        Raises:
            CallError: EPERM; ENOENT; EACCES from a session without the second factor
                it has (API.md §9).
        """
        row = await self._named(ctx, username, write_role=None)
        await self._require_second_factor_session(ctx)
        return await self._twofactor_config(row)

    @api_method(UserTwofactorQrArgs, UserTwofactorQrResult, roles=[], setup=True)
    async def twofactor_qr(
        self, ctx: CallContext, username: str, options: QrOptions
    ) -> dict[str, Any]:
        """QR code of the provisioning URI: a regular QR code (never Micro QR), error
        correction M, as an SVG or PNG ``data:`` URI. ``options.pending``: of the
        pending secret of ``user.twofactor_enroll`` (API.md §4).

        Raises:
            CallError: EPERM; ENOENT; EACCES; EINVAL when the user has no secret (no
                pending one with ``pending``).
        """
        if options.pending:
            row = await self._named(ctx, username, write_role=None)
            await self._require_second_factor_session(ctx)
            pending_uri: str | None = await self.pending_uri(row)
            if pending_uri is None:
                raise CallError(
                    f"{username[:64]!r} has no pending two-factor secret; call "
                    "user.twofactor_enroll first",
                    EINVAL,
                )
            uri = pending_uri
        else:
            if ctx.identity.setup_only:
                raise SetupRequired()  # a setup-only session sees only what it enrols
            uri = await self.provisioning_uri(ctx, username)
        data_uri = await asyncio.to_thread(
            otpauth.qr_data_uri, uri, fmt=options.format, scale=options.scale
        )
        return {"format": options.format, "data_uri": data_uri}

    @api_method(UserVerifyTwofactorTokenArgs, BoolResult, roles=[])
    async def verify_twofactor_token(self, ctx: CallContext, username: str, token: str) -> bool:
        """Check ``token`` against ``username``'s secret with the login rules (window,
        whitespace, replay: a right code is used up). Works whether or not global 2FA
        is enabled, so that a freshly scanned secret can be confirmed first. A right
        code of the caller's own secret makes the session LEVEL_2 (``LOGIN_TWOFACTOR``):
        it has just proved both factors (API.md §4, §9).

        A wrong code of one's own secret counts as a failed authentication of the account
        (cool-down, lock, failure delay: API.md §3); an administrator checking another
        user's code does not count against them.

        Raises:
            CallError: EPERM; ENOENT; EACCES from a session without the second factor
                it has; EINVAL when the user has no secret; EBUSY while one's own account
                cools down.
        """
        row = await self._named(ctx, username, write_role=None)
        await self._require_second_factor_session(ctx)
        if row.totp_secret is None:
            raise CallError(
                f"{username!r} user does not have two factor authentication configured", EINVAL
            )
        identity = ctx.identity
        is_self = identity.user_id == row.id
        # One's own code is an authentication (it can make the session LEVEL_2): counted
        # per account, cooled down and delayed like the OTP step (API.md §3).
        auth = self.middleware.service(AuthService)
        attempt = auth.begin_attempt(row.id) if is_self else None  # EBUSY in a cool-down
        try:
            check = await self.middleware.service(TwoFactorService).check_code(row, token)
        except BaseException:
            if attempt is not None:
                auth.refund_attempt(attempt)
            raise
        ctx.session.code_refusal = refusal_of(check)
        if attempt is not None:
            if check.ok:
                await auth.attempt_succeeded(row.id)
            else:
                await auth.attempt_failed(
                    ctx, attempt, row, row.username, f"wrong OTP verified ({check.reason})"
                )
        if check.ok and is_self and identity.level != "LEVEL_2":
            self._upgrade(ctx, row)
        return check.ok

    def _to_setup_only(self, ctx: CallContext, row: UserRow) -> None:
        """Make the caller's session a setup-only, LEVEL_1 one (same account and
        generation), as a password login of ``row`` under ``enforce`` would be. Logged
        out if the account changed meanwhile."""
        if ctx.identity.api_key is not None:
            return  # a key session stays what it is: keys are for automation (API.md §11)
        if not self._relogin(ctx, row, "LOGIN_PASSWORD", "LEVEL_1", setup_only=True):
            ctx.logout()

    def _upgrade(self, ctx: CallContext, row: UserRow) -> None:
        """Make the caller's session LEVEL_2 and no longer setup-only (``LOGIN_TWOFACTOR``;
        API.md §4, §9). ``PASSWORD_CHANGE_REQUIRED`` stays until the session sets a new
        password."""
        if ctx.identity.api_key is not None or ctx.identity.parent is not None:
            # An API-key or token session stays bound to its key or parent (their end,
            # expiry and revocation end it, API.md §9): a code does not turn it into a
            # password login of its own.
            return
        if not self._relogin(ctx, row, "LOGIN_TWOFACTOR", "LEVEL_2", setup_only=False):
            logger.warning("session of user id %s could not be upgraded", row.id)

    def _relogin(
        self,
        ctx: CallContext,
        row: UserRow,
        credentials: Credentials,
        level: Level,
        *,
        setup_only: bool,
    ) -> bool:
        """Replace the caller's identity with a new login of the same account and
        generation (so a credential change in the meantime still ends it, API.md §9).

        Returns:
            False when the caller is not ``row``'s user at its generation, or the
            registry refused the login as stale; True when the session was replaced.
        """
        identity = ctx.session.identity
        if (
            identity is None
            or identity.user_id != row.id
            or identity.generation != row.generation
            or ctx.connection is None
            or identity.api_key is not None  # see _upgrade: never detached from its key
            or identity.parent is not None
        ):
            return False
        proof = Proof(credentials, level, secrets.token_hex(8), self.middleware.clock.time())
        replaced = Identity(
            identity.user_id,
            identity.username,
            list(identity.roles),
            credentials,
            level=level,
            generation=identity.generation,
            proof=proof,
            setup_only=setup_only,
            attributes=() if setup_only else tuple(a for a in identity.attributes if a != "OTPW"),
        )
        try:
            ctx.login(replaced)
        except StaleCredential:
            return False
        return True
