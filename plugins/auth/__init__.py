"""``auth.*``: the login flow with its OTP step, account throttling, re-login tokens and
the session methods (API.md §3, §9).

The flow: ``login_ex(PASSWORD_PLAIN)`` answers SUCCESS, or OTP_REQUIRED when global 2FA is
on and the user has a secret; then ``login_ex_continue(OTP_TOKEN)`` (or ``login_ex``)
answers SUCCESS (``LEVEL_2``), OTP_REQUIRED again (3 retries) or AUTH_ERR. Unknown user,
wrong password and locked account give the same AUTH_ERR after the same delay.

Every login ends in :meth:`AuthService._establish`, which re-reads the account and hands
the identity to the framework's session registry with the credential generation it was
checked against: a password, secret, role, lock or deletion change that landed while the
login was in flight makes it AUTH_ERR (API.md §9).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from middlewared_2fa.api import CallContext, Hook, Mechanism, Role, Service, api_method
from middlewared_2fa.crypto import verify_password
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import EINVAL, EPERM, CallError
from middlewared_2fa.filters import filter_list
from middlewared_2fa.log import redact
from middlewared_2fa.login import StepProof
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.roles import has_any, holds_all
from middlewared_2fa.schema.auth import (
    AuthGenerateTokenArgs,
    AuthLastCodeRefusalArgs,
    AuthLastCodeRefusalResult,
    AuthLoginArgs,
    AuthLoginExArgs,
    AuthLoginExContinueArgs,
    AuthLoginExContinueResult,
    AuthLoginExResult,
    AuthLogoutArgs,
    AuthMeArgs,
    AuthMechanismChoicesArgs,
    AuthMechanismChoicesResult,
    AuthMeResult,
    AuthSessionsArgs,
    AuthSessionsEntry,
    AuthSessionsResult,
    AuthTerminateOtherSessionsArgs,
    AuthTerminateSessionArgs,
    OtpToken,
    PasswordPlain,
    TokenPlain,
)
from middlewared_2fa.schema.common import BoolResult, QueryOptions, StrResult
from middlewared_2fa.session import (
    Credentials,
    Identity,
    Level,
    PendingStep,
    Proof,
    Session,
    StaleCredential,
    describe,
)

from ..alert import AlertService
from ..auth_twofactor import CodeCheck, TwoFactorService, refusal_of
from ..auth_twofactor.repository import TwoFactorConfigRow
from .throttle import MIGRATIONS, AccountThrottle, Attempt, AuthSettings

logger = logging.getLogger(__name__)

THROTTLED_ALERT = "AuthThrottled"
LOCKED_ALERT = "AccountLocked"
#: A pending OTP step lives this long after its password step (API.md §3), seconds.
PENDING_OTP_TTL = 300.0
#: Lifetime of a reconnect token (API.md §3), seconds.
RECONNECT_TOKEN_TTL = 600.0
#: The password step's proof: a password alone.
PASSWORD_ONLY = StepProof("LOGIN_PASSWORD", "LEVEL_1", "password login")
#: ... with ``enforce`` on and no second factor yet (API.md §4).
PASSWORD_SETUP_ONLY = StepProof(
    "LOGIN_PASSWORD",
    "LEVEL_1",
    "password login; setup-only session (two-factor authentication is enforced)",
    setup_only=True,
    reconnect_token=False,
)
#: The OTP step's proof with a right TOTP code.
PASSWORD_AND_TOTP = StepProof("LOGIN_TWOFACTOR", "LEVEL_2", "password and OTP login")


@dataclass(slots=True)
class PendingOtp(PendingStep):
    """A password step that succeeded and waits for the OTP step (API.md §3).

    ``retries`` counts wrong codes still allowed to answer OTP_REQUIRED (3 at first);
    it expires :data:`PENDING_OTP_TTL` after the password step.
    """

    retries: int = 3


class AuthService(Service):
    class Config:
        namespace = "auth"
        role_prefix = ("AUTH_SESSIONS",)
        roles = (
            Role("AUTH_SESSIONS_READ", readonly=True),
            Role("AUTH_SESSIONS_WRITE", includes=("AUTH_SESSIONS_READ",)),
        )
        settings = AuthSettings
        migrations = MIGRATIONS
        hooks = (
            Hook("user.post_change", "_user_changed"),
            Hook("user.unlocked", "_user_unlocked"),
            Hook("auth.twofactor.post_update", "_twofactor_updated"),
        )
        # It also runs user.post_change when it locks an account (the user plugin's point).
        publishes = ("auth.clock_hint", "auth.otp_required")
        mechanisms = (
            Mechanism("PASSWORD_PLAIN", PasswordPlain, "_password"),
            Mechanism("OTP_TOKEN", OtpToken, "_otp", starts_login=False),
            Mechanism("TOKEN_PLAIN", TokenPlain, "_token"),
        )

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        self.settings = middleware.settings_of(AuthSettings)
        self.throttle = AccountThrottle(middleware, self.settings)

    @property
    def _twofactor(self) -> TwoFactorService:
        return self.middleware.service(TwoFactorService)

    @property
    def _alerts(self) -> AlertService:
        return self.middleware.service(AlertService)

    async def setup(self) -> None:
        self.middleware.events.declare(
            "auth.sessions", ["AUTH_SESSIONS_READ"], owner_field="__owner__"
        )
        self.middleware.sessions.on_change = self._session_changed
        await self.throttle.load()

    def _session_changed(self, msg: str, session: Session) -> None:
        identity = session.identity
        if identity is None:
            return
        fields = describe(session, current=False)
        self.middleware.events.emit(
            "auth.sessions", msg, session.id, _event_fields(fields), owner=identity.user_id
        )

    # -- API: logging in -------------------------------------------------------------

    @api_method(AuthLoginExArgs, AuthLoginExResult, auth="none", rate_limit="always")
    async def login_ex(self, ctx: CallContext, login_data: dict[str, Any]) -> dict[str, Any]:
        """Log in. ``login_data.mechanism``: PASSWORD_PLAIN, OTP_TOKEN, TOKEN_PLAIN or one
        a plugin registered (``Service.Config.mechanisms``); the mechanism's model
        validates the rest of ``login_data`` (errors on ``login_data.<field>``).

        Returns:
            ``{response_type: "SUCCESS", user_info, authenticator, reconnect_token}``,
            ``{response_type: "OTP_REQUIRED", username}`` or ``{response_type: "AUTH_ERR"}``.

        Raises:
            CallError: EINVAL for OTP_TOKEN without a pending step; EBUSY while the
                account cools down after repeated failures, when the password-hashing
                queue is full, or over the per-address rate limit.
        """
        mechanism, data = self.middleware.mechanisms.parse(login_data, "login_data")
        return await mechanism.handler(ctx, data)

    @api_method(
        AuthLoginExContinueArgs, AuthLoginExContinueResult, auth="none", rate_limit="always"
    )
    async def login_ex_continue(
        self, ctx: CallContext, login_data: dict[str, Any]
    ) -> dict[str, Any]:
        """The step after OTP_REQUIRED: ``{mechanism: "OTP_TOKEN", otp_token}``, or a
        mechanism a plugin adds that continues a login (``WEBAUTHN {credential}``,
        API.md §12). Another mechanism: -32602 on ``login_data.mechanism``.

        Same answers and errors as :meth:`login_ex` with OTP_TOKEN.
        """
        mechanism, data = self.middleware.mechanisms.parse(
            login_data, "login_data", continuing=True
        )
        return await mechanism.handler(ctx, data)

    @api_method(AuthLoginArgs, BoolResult, auth="none", rate_limit="always")
    async def login(
        self, ctx: CallContext, username: str, password: str, otp_token: str | None
    ) -> bool:
        """Legacy wrapper: password and (when required) the code in one call; True on success."""
        first = await self._password(
            ctx, PasswordPlain(mechanism="PASSWORD_PLAIN", username=username, password=password)
        )
        if first["response_type"] == "OTP_REQUIRED":
            if otp_token is None:
                ctx.session.pending = None
                return False
            first = await self._otp(ctx, OtpToken(mechanism="OTP_TOKEN", otp_token=otp_token))
            if first["response_type"] == "OTP_REQUIRED":
                ctx.session.pending = None
        return bool(first["response_type"] == "SUCCESS")

    @api_method(AuthMechanismChoicesArgs, AuthMechanismChoicesResult, auth="none")
    async def mechanism_choices(self, ctx: CallContext) -> list[str]:
        """The mechanisms ``login_ex`` accepts to start a login (API.md §3), from the
        mechanism registry: ``["PASSWORD_PLAIN", "TOKEN_PLAIN", ...]`` (``OTP_TOKEN`` only
        continues one)."""
        return self.middleware.mechanisms.choices

    @api_method(AuthLastCodeRefusalArgs, AuthLastCodeRefusalResult, auth="none", setup=True)
    async def last_code_refusal(self, ctx: CallContext) -> str | None:
        """Why the last one-time code this session sent (the OTP step of ``login_ex``, or
        ``user.verify_twofactor_token``) was refused: ``"REUSED"`` when it was the right
        code of a time step already used (RFC 6238 §5.2: wait for the next code),
        ``"WRONG"`` otherwise, null when it was accepted or none was sent (API ext).

        A code is asked only after the right password, so telling that session a code was
        right but spent reveals nothing it could not learn by waiting 30 s; no other
        session can read it.
        """
        return ctx.session.code_refusal

    @api_method(AuthMeArgs, AuthMeResult, roles=[], setup=True)
    async def me(self, ctx: CallContext) -> dict[str, Any]:
        """The logged-in user: ``{id, pw_name, full_name, roles, account_attributes,
        credentials, two_factor_config}`` (no secret, no URI)."""
        return await self.me_for(ctx.identity)

    @api_method(AuthGenerateTokenArgs, StrResult, roles=[])
    async def generate_token(
        self,
        ctx: CallContext,
        ttl: int | None,
        attrs: dict[str, Any],
        match_origin: bool,
        single_use: bool,
    ) -> str:
        """A re-login token for TOKEN_PLAIN (TrueNAS shape, API.md §3, §9).

        Args:
            ttl: Lifetime in seconds, 10..86400; null means 600.
            attrs: Accepted and ignored (TrueNAS clients send it).
            match_origin: Usable only from this client address.
            single_use: Spent by its first login.

        The token descends from this session's login (a token session's token from the
        same parent login) and ends with it: at logout or termination of this session,
        and at any change of the account's credentials.
        """
        token = self.middleware.sessions.issue_token(
            ctx.session,
            600 if ttl is None else ttl,
            origin=ctx.session.address if match_origin else None,
            single_use=single_use,
        )
        redact(token)
        return token

    @api_method(AuthLogoutArgs, BoolResult, roles=[], setup=True)
    async def logout(self, ctx: CallContext) -> bool:
        """End the session's login; the connection stays open and the tokens this
        session made end. Returns true."""
        await self.middleware.audit(
            "AUTHENTICATION", ctx.session, success=True, description="logout"
        )
        ctx.logout()
        return True

    # -- API: sessions ------------------------------------------------------------------

    @api_method(AuthSessionsArgs, AuthSessionsResult, roles=[])
    async def sessions(
        self, ctx: CallContext, filters: list[list[Any]], options: QueryOptions
    ) -> Any:
        """``[AuthSessionsEntry]`` (TrueNAS shape, API.md §9): every session with
        AUTH_SESSIONS_READ, else the caller's own user's sessions. Filters and options
        as ``user.query``."""
        identity = ctx.identity
        everyone = has_any(identity.granted, ["AUTH_SESSIONS_READ"])
        entries = [
            describe(s, current=s is ctx.session)
            for s in self.middleware.sessions.sessions()
            if everyone or _same_user(s, identity)
        ]
        return filter_list(entries, filters, options)

    @api_method(AuthTerminateSessionArgs, BoolResult, roles=[], audit=True)
    async def terminate_session(self, ctx: CallContext, id: str) -> bool:
        """End session ``id`` (API.md §9): its connection is closed (1008) and the tokens
        it made end. Own sessions, or AUTH_SESSIONS_WRITE within the role guard.

        Returns:
            False for an unknown id (or another user's session without AUTH_SESSIONS_WRITE).

        Raises:
            CallError: EPERM for a session of a user whose roles the caller does not hold.
        """
        identity = ctx.identity
        target = self.middleware.sessions.get(id)
        if target is None or target.identity is None:
            return False
        if not _same_user(target, identity):
            if not has_any(identity.granted, ["AUTH_SESSIONS_WRITE"]):
                return False
            if not holds_all(identity.granted, target.identity.roles):
                raise CallError("You may end only sessions of users whose roles you hold", EPERM)
        return self.middleware.sessions.end(id)

    @api_method(AuthTerminateOtherSessionsArgs, BoolResult, roles=[], audit=True)
    async def terminate_other_sessions(self, ctx: CallContext) -> bool:
        """End every other session of the caller's user (API.md §9). Returns true."""
        identity = ctx.identity
        for session in list(self.middleware.sessions.sessions()):
            if session is not ctx.session and _same_user(session, identity):
                self.middleware.sessions.end(session.id)
        return True

    # -- the steps -------------------------------------------------------------------

    async def _password(self, ctx: CallContext, data: PasswordPlain) -> dict[str, Any]:
        session = ctx.session
        session.code_refusal = None  # a new login: the last one's code is not its business
        if session.pending is not None:
            await self.middleware.audit(
                "AUTHENTICATION",
                session,
                success=False,
                username=session.pending.username,
                description="OTP step abandoned by a new password login",
            )
            session.pending = None
        user = await self.middleware.repos.users.get_by_name(data.username)
        # Counted before the first await that follows: concurrent guesses cannot all
        # pass the cool-down check (API.md §3).
        attempt = self.throttle.begin(user.id if user is not None else data.username)
        usable = user is not None and not user.locked
        try:
            ok = await self.middleware.hashing.run(
                session.address,
                verify_password,
                user.password_hash if usable and user else None,
                data.password,
            )
        except BaseException:
            self.throttle.refund(attempt)  # the queue was full: nothing was checked
            raise
        alternative: StepProof | None = None
        if not ok and usable and user is not None:
            # A credential typed as the password (a one-time password, API.md §10):
            # asked only after the hash, so a wrong one costs the same time.
            try:
                alternative = await self._ask_verifiers(ctx, "PASSWORD_PLAIN", user, data.password)
            except BaseException:
                self.throttle.refund(attempt)
                raise
        if (not ok and alternative is None) or user is None:
            await self._failed(
                ctx, attempt, user, data.username, "wrong username or password, or account locked"
            )
            return {"response_type": "AUTH_ERR"}
        # Only a verified password is worth masking: registering every attempt would let
        # anyone blank out chosen words in the log (the registry is bounded and FIFO).
        redact(data.password)
        if alternative is not None:
            return await self._establish(
                ctx,
                user,
                attempt,
                proof=alternative,
                generation=user.generation,
                options=data.login_options,
            )
        config = await self._twofactor.get_config()
        if config.enabled and self.middleware.factors.configured(user):
            # A right password that leads to the OTP step neither counts nor resets.
            self.throttle.refund(attempt)
            pending = PendingOtp(
                user.id,
                user.username,
                user.generation,
                self.middleware.clock.time() + PENDING_OTP_TTL,
            )
            session.pending = pending
            await self.middleware.audit(
                "AUTHENTICATION",
                session,
                success=True,
                username=user.username,
                description="password accepted; OTP required",
            )
            return await self._otp_required(ctx, user, pending, data.username)
        return await self._establish(
            ctx,
            user,
            attempt,
            proof=PASSWORD_SETUP_ONLY if config.enabled and config.enforce else PASSWORD_ONLY,
            generation=user.generation,
            options=data.login_options,
        )

    async def _otp(self, ctx: CallContext, data: OtpToken) -> dict[str, Any]:
        """``OTP_TOKEN``: a TOTP code of the user, or a credential a verifier of the step
        accepts in ``otp_token`` (a recovery code, API.md §10)."""
        session = ctx.session

        async def check(
            user: UserRow, offered: dict[str, Any], current: Callable[[], bool]
        ) -> tuple[StepProof | None, str]:
            if user.totp_secret is not None:
                checked = await self._twofactor.check_code(user, data.otp_token)
            else:  # a passkey-only user: a recovery code may still come (API.md §12)
                checked = CodeCheck(False, "no TOTP secret")
            session.code_refusal = refusal_of(checked)
            if checked.ok:
                return PASSWORD_AND_TOTP, "ok"
            proof: StepProof | None = None
            if current():
                # A recovery code typed as the code (API.md §10); the verifier asks
                # current() again before it uses the code up (after its hash).
                ctx.step_current = current
                try:
                    proof = await self._ask_verifiers(ctx, "OTP_TOKEN", user, data.otp_token)
                finally:
                    ctx.step_current = None
            if proof is not None:
                session.code_refusal = None  # a recovery code, accepted
                return proof, "ok"
            description = f"wrong OTP ({checked.reason})"
            hint = await self._clock_hint()
            return None, f"{description}; {hint}" if hint else description

        return await self.second_step(ctx, data.login_options, check)

    async def second_step(
        self,
        ctx: CallContext,
        options: Any,
        check: Callable[
            [UserRow, dict[str, Any], Callable[[], bool]],
            Awaitable[tuple[StepProof | None, str]],
        ],
        *,
        mechanism: str = "OTP_TOKEN",
    ) -> dict[str, Any]:
        """The frame of every mechanism that continues a login after OTP_REQUIRED
        (``OTP_TOKEN``; a plugin's ``WEBAUTHN``, API.md §12): the pending step and its
        expiry, the retry budget (3 wrong answers answer OTP_REQUIRED, the 4th AUTH_ERR),
        account throttling (NIST SP 800-63B §5.2.2), the re-check of the account and
        :meth:`_establish`.

        Args:
            options: The mechanism's ``login_options``.
            mechanism: Its name, for the EINVAL message.
            check: ``(user, offered, current) -> (proof or None, audit description of
                a failure)``; ``offered`` is what plugins had put in ``pending.factors``
                for this step (a WebAuthn challenge), taken off the step before the check:
                every answer, of any mechanism, spends every challenge offered, and the
                next OTP_REQUIRED offers new ones. ``current()`` tells whether the step
                is still this session's (a credential that is used up when right is only
                tried then).
                It must not raise for bad input: an exception other than CallError
                (EBUSY: nothing was checked) counts as a wrong answer.

        Returns:
            The login_ex answer. OTP_REQUIRED answers carry what subscribers of the hook
            ``auth.otp_required`` add (a fresh WebAuthn challenge).

        Raises:
            CallError: EINVAL without a pending step (none, expired, or the account
                changed since the password step); EBUSY in a cool-down.
        """
        session = ctx.session
        pending = session.pending if isinstance(session.pending, PendingOtp) else None
        if pending is not None and pending.expires <= self.middleware.clock.time():
            session.pending = pending = None
        if pending is None:
            raise CallError(f"{mechanism}: no authentication in progress", EINVAL)
        attempt = self.throttle.begin(pending.user_id)  # EBUSY in a cool-down; step kept
        # Spend this answer's retry, and every challenge the step offered, before the
        # first await, for the same reason.
        pending.retries -= 1
        offered = dict(pending.factors)
        pending.factors.clear()
        last_try = pending.retries < 0
        if last_try:
            session.pending = None
        user = await self.middleware.repos.users.get(pending.user_id)
        if (
            user is None
            or user.locked
            or not self.middleware.factors.configured(user)
            or user.generation != pending.generation
        ):
            # The account changed since the password step: the step is void (API.md §3).
            self.throttle.refund(attempt)
            if session.pending is pending:
                session.pending = None
            raise CallError(f"{mechanism}: no authentication in progress", EINVAL)

        def current() -> bool:
            return session.pending is pending or last_try

        try:
            proof, description = await check(user, offered, current)
        except CallError:
            self.throttle.refund(attempt)  # the hashing queue was full: nothing checked
            raise
        except Exception:
            # A bug must not answer differently from a wrong answer: it proves nothing.
            logger.exception("the second step of user id %s failed", user.id)
            proof, description = None, "wrong second factor (internal error)"
        if proof is not None and current():
            session.pending = None
            return await self._establish(
                ctx,
                user,
                attempt,
                proof=proof,
                generation=pending.generation,
                options=options,
            )
        if proof is not None:  # a new password step abandoned this one meanwhile
            self.throttle.refund(attempt)
            await self._fail_quietly(ctx, user.username, "OTP step abandoned before it finished")
            return {"response_type": "AUTH_ERR"}
        if last_try or session.pending is not pending:
            if session.pending is pending:
                session.pending = None
            await self._failed(
                ctx, attempt, user, user.username, description + "; retries exhausted"
            )
            return {"response_type": "AUTH_ERR"}
        # Still OTP_REQUIRED when another answer ended the step during the delay: wrong
        # answers sent at once count one by one, 3 retries then AUTH_ERR (API.md §3).
        await self._failed(ctx, attempt, user, user.username, description)
        return await self._otp_required(ctx, user, pending, pending.username)

    async def _otp_required(
        self, ctx: CallContext, user: UserRow, pending: PendingOtp, username: str
    ) -> dict[str, Any]:
        """The OTP_REQUIRED answer for ``pending``; subscribers of ``auth.otp_required``
        ``(ctx, user, pending) -> dict | None`` add keys (``webauthn``, API.md §12)."""
        answer: dict[str, Any] = {"response_type": "OTP_REQUIRED", "username": username}
        parts: list[dict[str, Any]] = await self.middleware.hooks.collect(
            "auth.otp_required", ctx, user, pending
        )
        for part in parts:
            answer.update(part)
        return answer

    async def _token(self, ctx: CallContext, data: TokenPlain) -> dict[str, Any]:
        registry = self.middleware.sessions
        token = registry.redeem_token(data.token, ctx.session.address)
        if token is None:
            await self._fail_quietly(ctx, None, "invalid, expired or withdrawn token")
            return {"response_type": "AUTH_ERR"}
        ctx.session.pending = None
        if token.user_id is None:  # a token of the Unix-socket root
            identity = Identity(
                None,
                token.username,
                token.roles,
                "TOKEN",
                level=token.parent.level,
                proof=self._proof("TOKEN", token.parent.level),
                parent=token.parent,
            )
            ctx.login(identity)
            await self.middleware.audit(
                "AUTHENTICATION", ctx.session, success=True, description="token login"
            )
            return await self._success(ctx, identity, data.login_options)
        user = await self.middleware.repos.users.get(token.user_id)
        if user is None or user.locked or user.generation != token.generation:
            await self._fail_quietly(
                ctx, token.username, "token of a changed, removed or locked account"
            )
            return {"response_type": "AUTH_ERR"}
        if token.parent.level != "LEVEL_2" and await self._second_factor_applies(user):
            # The parent login no longer satisfies the user (API.md §9): e.g. a
            # password-only session from before the user had a secret under global 2FA,
            # or from before ``enforce`` (API.md §4).
            await self._fail_quietly(
                ctx, user.username, "token of a login without the second factor now required"
            )
            return {"response_type": "AUTH_ERR"}
        return await self._establish(
            ctx,
            user,
            None,
            proof=StepProof(
                "TOKEN",
                token.parent.level,
                "token login",
                api_key=token.api_key,
                expires_at=token.key_expires_at,
            ),
            generation=token.generation,
            options=data.login_options,
            parent=token.parent,
        )

    # -- helpers ---------------------------------------------------------------------

    async def _second_factor_applies(self, user: UserRow) -> bool:
        """Global 2FA is on and the user has a second factor, or ``enforce`` is on."""
        config = await self._twofactor.get_config()
        return bool(config.enabled and (self.middleware.factors.configured(user) or config.enforce))

    async def _ask_verifiers(
        self, ctx: CallContext, step: str, user: UserRow, value: str
    ) -> StepProof | None:
        """The first proof a verifier of ``step`` finds in ``value`` (which it then
        used up), or None (``Service.Config.verifiers``)."""
        for verifier in self.middleware.mechanisms.verifiers(step):
            try:
                proof = await verifier.handler(ctx, user, value)
            except CallError:
                raise  # EBUSY from the hashing queue: nothing was checked
            except Exception:
                # A verifier's bug must not answer differently from a wrong credential
                # (an oracle for which accounts exist): it proves nothing, and the attempt
                # is counted and delayed like any other failure.
                logger.exception("verifier %s of %s failed", verifier.name, step)
                continue
            if proof is not None:
                return proof
        return None

    def _proof(self, credentials: Credentials, level: Level) -> Proof:
        return Proof(credentials, level, secrets.token_hex(8), self.middleware.clock.time())

    async def _establish(
        self,
        ctx: CallContext,
        user: UserRow,
        attempt: Any,
        *,
        proof: StepProof,
        generation: int,
        options: Any,
        parent: Proof | None = None,
    ) -> dict[str, Any]:
        """Finish a login of ``user`` checked against credential ``generation``.

        The account is read again here (the checks before took hash time) and the
        registry refuses a generation older than one it has seen: a change of the
        password, secret, roles, lock or the deletion of the account that landed while
        this login was in flight gives AUTH_ERR, never a session with the old state.
        """
        fresh = await self.middleware.repos.users.get(user.id)
        identity: Identity | None = None
        if fresh is not None and not fresh.locked and fresh.generation == generation:
            identity = Identity(
                fresh.id,
                fresh.username,
                list(fresh.roles),
                proof.credentials,
                level=proof.level,
                generation=generation,
                proof=self._proof(proof.credentials, proof.level),
                parent=parent,
                setup_only=proof.setup_only,
                attributes=proof.attributes,
                second_factor=proof.second_factor,
                api_key=proof.api_key,
                expires_at=proof.expires_at,
            )
            try:
                ctx.login(identity)
            except StaleCredential:
                identity = None
        if identity is None:
            if attempt is not None:
                self.throttle.refund(attempt)
            await self._fail_quietly(ctx, user.username, "account changed during the login")
            return {"response_type": "AUTH_ERR"}
        await self.throttle.reset(user.id)
        await self.middleware.audit(
            "AUTHENTICATION", ctx.session, success=True, description=proof.description
        )
        return await self._success(ctx, identity, options, reconnect=proof.reconnect_token)

    async def _success(
        self, ctx: CallContext, identity: Identity, options: Any, *, reconnect: bool = True
    ) -> dict[str, Any]:
        """The SUCCESS answer. No reconnect token for a setup-only session or a
        one-time-password login (API.md §3, §10): it would outlive the setup."""
        token: str | None = None
        if options.reconnect_token and reconnect and not identity.setup_only:
            token = self.middleware.sessions.issue_token(
                ctx.session, RECONNECT_TOKEN_TTL, origin=ctx.session.address, single_use=True
            )
            redact(token)
        return {
            "response_type": "SUCCESS",
            "user_info": await self.me_for(identity) if options.user_info else None,
            "authenticator": identity.level,
            "reconnect_token": token,
        }

    async def _failed(
        self,
        ctx: CallContext,
        attempt: Attempt,
        user: UserRow | None,
        username: str,
        description: str,
    ) -> None:
        """A failed authentication of an account (or of a name that is not one): stays
        counted; starts a cool-down or locks the account at the thresholds (API.md §3)."""
        attempt.settled = True
        settings = self.settings
        alerts = self._alerts
        if user is not None:
            await self.throttle.persist(user.id)
            if attempt.started_cooldown:
                seconds = (attempt.set_until or 0) - self.middleware.clock.time()
                logger.warning(
                    "user %s: %d consecutive failed logins; cooling down for %.0f s",
                    user.username,
                    attempt.failures,
                    seconds,
                )
                alerts.raise_alert(
                    THROTTLED_ALERT,
                    "WARNING",
                    f"{attempt.failures} consecutive failed authentications of user "
                    f"{user.username!r}; its logins are refused for {seconds:.0f} s.",
                    key=user.username,
                )
            if attempt.failures >= settings.auth_lock_after:
                await self._lock(ctx, user, attempt.failures)
        await self._fail_quietly(ctx, username if user is None else user.username, description)

    async def _lock(self, ctx: CallContext, user: UserRow, failures: int) -> None:
        generation = await self.middleware.repos.users.lock(user.id)
        if generation is None:
            return  # locked already (or deleted)
        self.middleware.sessions.credentials_changed(user.id, generation)
        logger.warning("user %s locked after %d consecutive failures", user.username, failures)
        self._alerts.raise_alert(
            LOCKED_ALERT,
            "CRITICAL",
            f"User {user.username!r} was locked after {failures} consecutive failed "
            "authentications; an administrator can unlock it (user.update locked: false).",
            key=user.username,
        )
        await self.middleware.audit(
            "AUTHENTICATION",
            ctx.session,
            success=False,
            username=user.username,
            description=f"account locked after {failures} consecutive failures",
        )
        row = await self.middleware.repos.users.get(user.id)
        if row is not None:
            await self.middleware.hooks.run("user.post_change", ctx, user, row)

    async def _fail_quietly(self, ctx: CallContext, username: str | None, description: str) -> None:
        await self.middleware.audit(
            "AUTHENTICATION",
            ctx.session,
            success=False,
            username=username,
            description=description,
        )
        await asyncio.sleep(self.settings.auth_failure_delay)

    async def _clock_hint(self) -> str | None:
        hints: list[str] = await self.middleware.hooks.collect("auth.clock_hint")
        return "; ".join(hints) or None

    # -- for other services ----------------------------------------------------------

    async def establish(
        self,
        ctx: CallContext,
        user: UserRow,
        attempt: Attempt | None,
        proof: StepProof,
        options: Any,
    ) -> dict[str, Any]:
        """Finish a login of a plugin's mechanism (an API key): re-read the account,
        register the session with ``proof``'s credential, reset the failure count and
        answer SUCCESS; AUTH_ERR when the account changed meanwhile (API.md §9)."""
        return await self._establish(
            ctx, user, attempt, proof=proof, generation=user.generation, options=options
        )

    async def fail_quietly(self, ctx: CallContext, username: str | None, description: str) -> None:
        """Audit a failed login that no account is charged for, then the failure delay."""
        await self._fail_quietly(ctx, username, description)

    def begin_attempt(self, user_id: int | str) -> Attempt:
        """Count an authentication attempt of account ``user_id`` before checking it
        (``user.twofactor_confirm``'s code is one, API.md §4); settle it with
        :meth:`attempt_failed`, :meth:`attempt_succeeded` or :meth:`refund_attempt`.

        ``user_id`` is the account's id, or the name as sent when it is not an account
        (counted the same way, so answers do not reveal which names exist).

        Raises:
            CallError: EBUSY "Rate Limit Exceeded" while the account cools down.
        """
        return self.throttle.begin(user_id)

    def refund_attempt(self, attempt: Attempt) -> None:
        """The attempt was not checked (or proved nothing): it does not count."""
        self.throttle.refund(attempt)

    async def attempt_succeeded(self, user_id: int) -> None:
        """The user proved their factors: the failure count starts again."""
        await self.throttle.reset(user_id)

    async def attempt_failed(
        self,
        ctx: CallContext,
        attempt: Attempt,
        user: UserRow | None,
        username: str,
        description: str,
    ) -> None:
        """A failed authentication of ``user`` (None: ``username`` is not an account):
        counted, audited (``description``, never the input), a cool-down or the lock at
        the thresholds, then the failure delay."""
        await self._failed(ctx, attempt, user, user.username if user else username, description)

    async def _twofactor_updated(
        self, ctx: CallContext, old: TwoFactorConfigRow, new: TwoFactorConfigRow
    ) -> None:
        """Hook ``auth.twofactor.post_update``: turning ``enforce`` on ends the sessions
        that used one factor (password-only logins and their token sessions; API.md §4):
        their users log in again and get setup-only sessions, or the OTP step. API-key
        and setup-only sessions stay (the first are LEVEL_1 by design, the second can
        only set up)."""
        if old.enforce or not new.enforce:
            return
        registry = self.middleware.sessions
        ended = 0
        for session in list(registry.sessions()):
            identity = session.identity
            if (
                identity is not None
                and identity.user_id is not None
                and identity.level == "LEVEL_1"
                and identity.credentials in ("LOGIN_PASSWORD", "TOKEN")
                and not identity.setup_only
                and session is not ctx.session
                and registry.end(session.id)
            ):
                ended += 1
        if ended:
            logger.info("enforce turned on: %d password-only session(s) ended", ended)

    async def _user_changed(
        self, ctx: CallContext, old: UserRow | None, new: UserRow | None
    ) -> None:
        """Hook ``user.post_change``: a deleted account's failure count goes."""
        if old is not None and new is None:
            self.throttle.forget(old.id)

    async def _user_unlocked(self, ctx: CallContext, row: UserRow) -> None:
        """Hook ``user.unlocked`` (``user.update {locked: false}``): the failure count
        starts again (API.md §3)."""
        await self.throttle.reset(row.id)

    async def me_for(self, identity: Identity) -> dict[str, Any]:
        """``auth.me`` for ``identity``."""
        config = await self._twofactor.get_config()
        user = (
            await self.middleware.repos.users.get(identity.user_id)
            if identity.user_id is not None
            else None
        )
        configured = user is not None and self.middleware.factors.configured(user)
        attributes = ["LOCAL", "2FA"] if configured else ["LOCAL"]
        attributes += [a for a in identity.attributes if a not in attributes]
        if identity.setup_only:
            attributes.append("SETUP_ONLY")
        return {
            "id": identity.user_id,
            "pw_name": identity.username,
            "full_name": user.full_name if user else identity.username,
            "roles": list(user.roles if user else identity.roles),
            "account_attributes": attributes,
            "credentials": identity.credentials,
            "two_factor_config": {
                "secret_configured": bool(user and user.totp_secret),
                "interval": user.totp_interval if user else 30,
                "otp_digits": user.totp_digits if user else 6,
                "global_enabled": config.enabled,
                "setup_required": config.enabled and user is not None and not configured,
            },
        }


def _same_user(session: Session, identity: Identity) -> bool:
    other = session.identity
    return other is not None and other.user_id == identity.user_id


def _event_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """An AuthSessionsEntry as it goes on the wire (datetimes as ``{"$date": ms}``)."""
    dumped: dict[str, Any] = AuthSessionsEntry.model_validate(entry).model_dump(mode="json")
    return dumped
