"""``auth.*``: the login flow with its OTP step, sessions, re-login tokens (API.md §3).

The flow: ``login_ex(PASSWORD_PLAIN)`` answers SUCCESS, or OTP_REQUIRED when global 2FA is
on and the user has a secret; then ``login_ex_continue(OTP_TOKEN)`` (or ``login_ex``)
answers SUCCESS, OTP_REQUIRED again (3 retries) or AUTH_ERR. Unknown user, wrong
password and locked account give the same AUTH_ERR after the same delay.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from middlewared_2fa.api import CallContext, Service, api_method
from middlewared_2fa.crypto import verify_password
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import EBUSY, EINVAL, CallError
from middlewared_2fa.log import redact
from middlewared_2fa.schema.auth import (
    AuthGenerateTokenArgs,
    AuthLoginArgs,
    AuthLoginExArgs,
    AuthLoginExContinueArgs,
    AuthLoginExContinueResult,
    AuthLoginExResult,
    AuthLogoutArgs,
    AuthMeArgs,
    AuthMeResult,
    OtpToken,
    PasswordPlain,
    TokenPlain,
)
from middlewared_2fa.schema.common import BoolResult, StrResult
from middlewared_2fa.session import Identity, PendingOtp

logger = logging.getLogger(__name__)

OTP_LOCKOUT_ALERT = "OTPLockout"


@dataclass(slots=True)
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass(slots=True)
class _Token:
    user_id: int | None
    username: str
    roles: list[str]
    expires: float
    session_id: str


#: Live re-login tokens one session may hold; the oldest is dropped beyond that.
TOKENS_PER_SESSION = 16


class AuthService(Service):
    class Config:
        namespace = "auth"

    def __init__(self, middleware: Any) -> None:
        super().__init__(middleware)
        self._failures: dict[int, _Failures] = {}
        self._tokens: dict[str, _Token] = {}

    # -- API -------------------------------------------------------------------------

    @api_method(AuthLoginExArgs, AuthLoginExResult, auth="none")
    async def login_ex(
        self, ctx: CallContext, login_data: PasswordPlain | OtpToken | TokenPlain
    ) -> dict[str, Any]:
        """Log in. ``login_data.mechanism``: PASSWORD_PLAIN, OTP_TOKEN or TOKEN_PLAIN.

        Returns:
            ``{response_type: "SUCCESS", user_info, authenticator: "LEVEL_1"}``,
            ``{response_type: "OTP_REQUIRED", username}`` or ``{response_type: "AUTH_ERR"}``.

        Raises:
            CallError: EINVAL for OTP_TOKEN without a pending step; EBUSY while the
                user is cooling down after too many wrong codes, or over the rate limit.
        """
        if isinstance(login_data, PasswordPlain):
            return await self._password(ctx, login_data)
        if isinstance(login_data, OtpToken):
            return await self._otp(ctx, login_data)
        return await self._token(ctx, login_data)

    @api_method(AuthLoginExContinueArgs, AuthLoginExContinueResult, auth="none")
    async def login_ex_continue(self, ctx: CallContext, login_data: OtpToken) -> dict[str, Any]:
        """The OTP step after OTP_REQUIRED: ``{mechanism: "OTP_TOKEN", otp_token}``.

        Same answers and errors as :meth:`login_ex` with OTP_TOKEN.
        """
        return await self._otp(ctx, login_data)

    @api_method(AuthLoginArgs, BoolResult, auth="none")
    async def login(
        self, ctx: CallContext, username: str, password: str, otp_token: str | None
    ) -> bool:
        """Legacy wrapper: password and (when required) the code in one call; True on success."""
        first = await self._password(
            ctx, PasswordPlain(mechanism="PASSWORD_PLAIN", username=username, password=password)
        )
        if first["response_type"] == "OTP_REQUIRED":
            if otp_token is None:
                ctx.session.pending_otp = None
                return False
            first = await self._otp(ctx, OtpToken(mechanism="OTP_TOKEN", otp_token=otp_token))
            if first["response_type"] == "OTP_REQUIRED":
                ctx.session.pending_otp = None
        return first["response_type"] == "SUCCESS"

    @api_method(AuthMeArgs, AuthMeResult, roles=[])
    async def me(self, ctx: CallContext) -> dict[str, Any]:
        """The logged-in user: ``{pw_name, full_name, roles, account_attributes,
        credentials, two_factor_config}`` (no secret, no URI)."""
        assert ctx.session.identity is not None
        return await self.me_for(ctx.session.identity)

    @api_method(AuthGenerateTokenArgs, StrResult, roles=[])
    async def generate_token(self, ctx: CallContext, ttl: int) -> str:
        """A single-use token for TOKEN_PLAIN re-login, valid ``ttl`` seconds (10..86400)."""
        identity = ctx.session.identity
        assert identity is not None
        now = self.middleware.clock.time()
        session_id = ctx.session.id
        mine = [k for k, t in self._tokens.items() if t.session_id == session_id]
        for key in mine[: max(0, len(mine) - TOKENS_PER_SESSION + 1)]:  # oldest first
            del self._tokens[key]
        if len(self._tokens) > 1024:  # expired tokens are swept now and then, not per call
            self._tokens = {k: t for k, t in self._tokens.items() if t.expires > now}
        token = secrets.token_urlsafe(32)
        redact(token)
        self._tokens[token] = _Token(
            identity.user_id, identity.username, list(identity.roles), now + ttl, session_id
        )
        return token

    @api_method(AuthLogoutArgs, BoolResult, roles=[])
    async def logout(self, ctx: CallContext) -> bool:
        """End the session's login; the connection stays open. Returns true."""
        await self.middleware.audit(
            "AUTHENTICATION", ctx.session, success=True, description="logout"
        )
        ctx.session.pending_otp = None
        # Logging out also withdraws the re-login tokens this session handed out.
        self._tokens = {k: t for k, t in self._tokens.items() if t.session_id != ctx.session.id}
        self._set_identity(ctx, None)
        return True

    # -- the steps -------------------------------------------------------------------

    async def _password(self, ctx: CallContext, data: PasswordPlain) -> dict[str, Any]:
        session = ctx.session
        if session.pending_otp is not None:
            await self.middleware.audit(
                "AUTHENTICATION",
                session,
                success=False,
                username=session.pending_otp.username,
                description="OTP step abandoned by a new password login",
            )
            session.pending_otp = None
        user = await self.middleware.repos.users.get_by_name(data.username)
        usable = user is not None and not user.locked
        ok = await asyncio.to_thread(
            verify_password, user.password_hash if usable and user else None, data.password
        )
        if not ok or user is None:
            await self._fail(ctx, data.username, "wrong username or password, or account locked")
            return {"response_type": "AUTH_ERR"}
        # Only a verified password is worth masking: registering every attempt would let
        # anyone blank out chosen words in the log (the registry is bounded and FIFO).
        redact(data.password)
        config = await self.middleware.service("auth.twofactor").get_config()
        if config.enabled and user.totp_secret is not None:
            session.pending_otp = PendingOtp(user.id, user.username)
            await self.middleware.audit(
                "AUTHENTICATION",
                session,
                success=True,
                username=user.username,
                description="password accepted; OTP required",
            )
            return {"response_type": "OTP_REQUIRED", "username": user.username}
        return await self._succeed(ctx, user, "LOGIN_PASSWORD", data.login_options.user_info)

    async def _otp(self, ctx: CallContext, data: OtpToken) -> dict[str, Any]:
        session = ctx.session
        pending = session.pending_otp
        if pending is None:
            raise CallError("OTP_TOKEN: no authentication in progress", EINVAL)
        settings = self.middleware.settings
        now = self.middleware.clock.time()
        failures = self._failures.setdefault(pending.user_id, _Failures())
        if failures.locked_until and failures.locked_until <= now:  # cool-down over
            failures.count, failures.locked_until = 0, 0.0
        if failures.locked_until > now or failures.count >= settings.otp_failure_limit:
            await self.middleware.audit(
                "AUTHENTICATION",
                session,
                success=False,
                username=pending.username,
                description="OTP refused: too many failed attempts (cool-down)",
            )
            raise CallError("Too many failed OTP attempts; try again later", EBUSY)
        # Spend this attempt before the first await: codes sent at the same time (a batch,
        # many connections) must not all pass the checks above before any is counted.
        pending.retries -= 1
        failures.count += 1
        last_try = pending.retries < 0
        if last_try:
            session.pending_otp = None
        user = await self.middleware.repos.users.get(pending.user_id)
        if user is None or user.locked or user.totp_secret is None:
            # Deleted, locked or 2FA removed meanwhile: start over.
            failures.count -= 1
            if session.pending_otp is pending:
                session.pending_otp = None
            await self._fail(ctx, pending.username, "account changed during the OTP step")
            return {"response_type": "AUTH_ERR"}
        check = await self.middleware.service("auth.twofactor").check_code(user, data.otp_token)
        if check.ok and (session.pending_otp is pending or last_try):
            self._failures.pop(user.id, None)
            session.pending_otp = None
            return await self._succeed(ctx, user, "LOGIN_TWOFACTOR", data.login_options.user_info)
        if check.ok:  # a new password step abandoned this one meanwhile
            failures.count -= 1
            await self._fail(ctx, user.username, "OTP step abandoned before it finished")
            return {"response_type": "AUTH_ERR"}
        if failures.count >= settings.otp_failure_limit and failures.locked_until <= now:
            failures.locked_until = now + settings.otp_lockout
            logger.warning("user %s: OTP cool-down after repeated failures", user.username)
            self.middleware.service("alert").raise_alert(
                OTP_LOCKOUT_ALERT,
                "WARNING",
                f"Too many failed one-time codes for user {user.username!r}; "
                f"OTP logins refused for {settings.otp_lockout:g} s.",
                key=user.username,
            )
        description = f"wrong OTP ({check.reason})"
        hint = await self._clock_hint()
        if hint:
            description += f"; {hint}"
        if last_try or session.pending_otp is not pending:
            if session.pending_otp is pending:
                session.pending_otp = None
            await self._fail(ctx, user.username, description + "; retries exhausted")
            return {"response_type": "AUTH_ERR"}
        await self._fail(ctx, user.username, description)
        return {"response_type": "OTP_REQUIRED", "username": user.username}

    async def _token(self, ctx: CallContext, data: TokenPlain) -> dict[str, Any]:
        token = self._tokens.pop(data.token, None)
        now = self.middleware.clock.time()
        if token is None or token.expires <= now:
            await self._fail(ctx, None, "invalid or expired token")
            return {"response_type": "AUTH_ERR"}
        ctx.session.pending_otp = None
        if token.user_id is None:
            identity = Identity(None, token.username, token.roles, "TOKEN")
            self._set_identity(ctx, identity)
            await self.middleware.audit(
                "AUTHENTICATION", ctx.session, success=True, description="token login"
            )
            return {
                "response_type": "SUCCESS",
                "user_info": await self.me_for(identity) if data.login_options.user_info else None,
                "authenticator": "LEVEL_1",
            }
        user = await self.middleware.repos.users.get(token.user_id)
        if user is None or user.locked:
            await self._fail(ctx, token.username, "token of a removed or locked account")
            return {"response_type": "AUTH_ERR"}
        return await self._succeed(ctx, user, "TOKEN", data.login_options.user_info)

    # -- helpers ---------------------------------------------------------------------

    async def _succeed(
        self, ctx: CallContext, user: UserRow, credentials: Any, user_info: bool
    ) -> dict[str, Any]:
        identity = Identity(user.id, user.username, list(user.roles), credentials)
        self._set_identity(ctx, identity)
        await self.middleware.audit(
            "AUTHENTICATION",
            ctx.session,
            success=True,
            description={
                "LOGIN_PASSWORD": "password login",
                "LOGIN_TWOFACTOR": "password and OTP login",
                "TOKEN": "token login",
            }[credentials],
        )
        return {
            "response_type": "SUCCESS",
            "user_info": await self.me_for(identity) if user_info else None,
            "authenticator": "LEVEL_1",
        }

    async def _fail(self, ctx: CallContext, username: str | None, description: str) -> None:
        await self.middleware.audit(
            "AUTHENTICATION",
            ctx.session,
            success=False,
            username=username,
            description=description,
        )
        await asyncio.sleep(self.middleware.settings.auth_failure_delay)

    async def _clock_hint(self) -> str | None:
        sync = self.middleware.services.get("system.time_sync")
        if sync is None:
            return None
        return await sync.skew_hint()

    def _set_identity(self, ctx: CallContext, identity: Identity | None) -> None:
        if ctx.connection is not None and hasattr(ctx.connection, "set_identity"):
            ctx.connection.set_identity(identity)
        else:
            ctx.session.identity = identity

    async def me_for(self, identity: Identity) -> dict[str, Any]:
        """``auth.me`` for ``identity``."""
        config = await self.middleware.service("auth.twofactor").get_config()
        user = (
            await self.middleware.repos.users.get(identity.user_id)
            if identity.user_id is not None
            else None
        )
        configured = bool(user and user.totp_secret)
        return {
            "pw_name": identity.username,
            "full_name": user.full_name if user else identity.username,
            "roles": list(user.roles if user else identity.roles),
            "account_attributes": ["LOCAL", "2FA"] if configured else ["LOCAL"],
            "credentials": identity.credentials,
            "two_factor_config": {
                "secret_configured": configured,
                "interval": user.totp_interval if user else 30,
                "otp_digits": user.totp_digits if user else 6,
                "global_enabled": config.enabled,
                "setup_required": config.enabled and user is not None and not configured,
            },
        }
