"""``auth.twofactor.*``: global 2FA settings, and the TOTP engine every other service
uses to check codes (RFC 6238 on the HOTP core of RFC 4226, through pyotp).

Rules (API.md §3, §4, §8):
- time step ``T = floor(unix_time / interval)`` (RFC 6238 §4.2, T0 = 0), 64-bit;
- ``window`` w accepts steps T-w .. T+w (2w+1 codes);
- a code is accepted once: its step must be newer than the user's last accepted step,
  which is stored in SQLite and so survives restarts (RFC 6238 §5.2), and, while SSH 2FA
  is on, newer than the step pam_oath last accepted (``ssh.oath``, API.md §8);
- codes are strings; ASCII whitespace is removed; the rest must be exactly
  ``otp_digits`` ASCII digits (full-width digits are *not* digits here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from middlewared_2fa.api import CallContext, Role, Service, api_method
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import ValidationErrors
from middlewared_2fa.log import redact
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.schema.twofactor import (
    AuthTwofactorConfigArgs,
    AuthTwofactorConfigResult,
    AuthTwofactorUpdateArgs,
    AuthTwofactorUpdateResult,
    TwoFactorAuthUpdate,
)
from middlewared_2fa.session import Identity

from .repository import MIGRATIONS, TwoFactorConfigRepository, TwoFactorConfigRow
from .totp import matching_step, normalize_code

__all__ = ["CodeCheck", "TwoFactorService", "matching_step", "normalize_code"]

logger = logging.getLogger(__name__)

#: Associated data of an encrypted TOTP seed (``Middleware.encrypt``).
SECRET_PURPOSE = b"totp-secret"


@dataclass(slots=True)
class CodeCheck:
    """Outcome of :meth:`TwoFactorService.check_code`.

    ``reason`` is ``ok``, ``malformed``, ``mismatch`` or ``replay`` (never the code).
    """

    ok: bool
    reason: str


class TwoFactorService(Service):
    class Config:
        namespace = "auth.twofactor"
        role_prefix = ("SYSTEM_SECURITY",)
        roles = (
            Role("SYSTEM_SECURITY_READ", readonly=True),
            Role("SYSTEM_SECURITY_WRITE", includes=("SYSTEM_SECURITY_READ",)),
        )
        migrations = MIGRATIONS
        publishes = (
            "auth.twofactor.pre_update",
            "auth.twofactor.post_update",
            "auth.twofactor.used_step",
            "auth.twofactor.record_step",
        )

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        self.repo = TwoFactorConfigRepository(middleware.db)
        self._config_cache: TwoFactorConfigRow | None = None

    async def setup(self) -> None:
        self.middleware.events.declare("auth.twofactor.config", ["SYSTEM_SECURITY_READ"])

    # -- TOTP seeds at rest ----------------------------------------------------------

    def seal(self, secret: str) -> str:
        """A TOTP seed (base32) encrypted for ``users.totp_secret``."""
        return self.middleware.encrypt(secret, SECRET_PURPOSE)

    def unseal(self, stored: str) -> str:
        """The TOTP seed of an encrypted ``users.totp_secret``.

        Raises:
            DecryptionError: the key file does not match.
        """
        return self.middleware.decrypt(stored, SECRET_PURPOSE)

    # -- API -------------------------------------------------------------------------

    @api_method(AuthTwofactorConfigArgs, AuthTwofactorConfigResult, roles=["SYSTEM_SECURITY_READ"])
    async def config(self, ctx: CallContext) -> dict[str, Any]:
        """Global 2FA: ``{id: 1, enabled, window (steps), services: {ssh}, issuer, enforce}``."""
        return self.entry(await self.get_config())

    @api_method(
        AuthTwofactorUpdateArgs,
        AuthTwofactorUpdateResult,
        roles=["SYSTEM_SECURITY_WRITE"],
        audit=True,
    )
    async def update(
        self, ctx: CallContext, auth_twofactor_update: TwoFactorAuthUpdate
    ) -> dict[str, Any]:
        """Change some of ``enabled``, ``window`` (0..10 steps), ``services.ssh``,
        ``issuer``, ``enforce``.

        ``enforce`` (API.md §4) needs ``enabled`` (``enabled`` cannot go off without
        ``enforce`` going off in the same call), and turning it on needs the caller's own
        session to be LEVEL_2 or the Unix socket, so an administrator cannot lock
        themself out. Subscribers of the hook ``auth.twofactor.pre_update`` validate the
        change first (the clock check when enabling, API.md §4; the SSH password rule,
        §5); those of
        ``auth.twofactor.post_update`` follow it (the SSH files, §8).

        Raises:
            ValidationErrors: invalid values (schema), the clock gate, or the
                ``enforce`` rules (on ``auth_twofactor_update.enabled`` / ``.enforce``).
        """
        given = auth_twofactor_update.model_fields_set
        old = await self.get_config()
        new = TwoFactorConfigRow(old.enabled, old.window, old.ssh, old.issuer, old.enforce)
        if "enabled" in given:
            new.enabled = auth_twofactor_update.enabled
        if "window" in given:
            new.window = auth_twofactor_update.window
        if "services" in given and "ssh" in auth_twofactor_update.services.model_fields_set:
            new.ssh = auth_twofactor_update.services.ssh
        if "issuer" in given:
            new.issuer = auth_twofactor_update.issuer
        if "enforce" in given:
            new.enforce = auth_twofactor_update.enforce
        errors = ValidationErrors()
        if new.enforce and not new.enabled:
            if old.enforce:  # enforced already: it is enabled that is turned off
                errors.add(
                    "auth_twofactor_update.enabled",
                    "Two-factor authentication is enforced; turn enforce off in the same call",
                )
            else:
                errors.add(
                    "auth_twofactor_update.enforce",
                    "Enforcing two-factor authentication needs it enabled",
                )
        if new.enforce and not old.enforce and not _two_factor_session(ctx.identity):
            errors.add(
                "auth_twofactor_update.enforce",
                "Log in with two factors first: enforcing two-factor authentication from "
                "a session without them could lock you out",
            )
        await self.middleware.hooks.run("auth.twofactor.pre_update", ctx, errors, old, new)
        errors.check()
        await self.repo.put(new)
        self._config_cache = new
        entry = self.entry(new)
        self.middleware.events.emit("auth.twofactor.config", "changed", 1, entry)
        await self.middleware.hooks.run("auth.twofactor.post_update", ctx, old, new)
        return entry

    # -- for other services ----------------------------------------------------------

    async def get_config(self) -> TwoFactorConfigRow:
        """The stored global configuration (cached; the cache is replaced on update)."""
        if self._config_cache is None:
            self._config_cache = await self.repo.get()
        return self._config_cache

    @staticmethod
    def entry(config: TwoFactorConfigRow) -> dict[str, Any]:
        return {
            "id": 1,
            "enabled": config.enabled,
            "window": config.window,
            "services": {"ssh": config.ssh},
            "issuer": config.issuer,
            "enforce": config.enforce,
        }

    async def check_code(self, user: UserRow, token: str) -> CodeCheck:
        """Check ``token`` for ``user`` and use it up when it is right.

        One code, one use across channels (API.md §8, RFC 6238 §5.2): while SSH 2FA is
        on, the step pam_oath last accepted (recorded in the OATH users file) counts as
        used too, so a code is refused unless its step is newer than both that step and
        ``users.totp_last_step``; an accepted step is then written to the users file so
        that pam_oath refuses it. The database stays the source of truth: a users file
        that cannot be read or written never fails a right code (``ssh.oath`` reports it).

        Args:
            user: Row with an encrypted seed (``user.totp_secret`` not None).
            token: The code as typed (whitespace allowed).

        Returns:
            ``CodeCheck(ok, reason)``.
        """
        assert user.totp_secret is not None
        code = normalize_code(token, user.totp_digits)
        if code is None:
            return CodeCheck(False, "malformed")
        redact(code)
        config = await self.get_config()
        secret = self.unseal(user.totp_secret)
        hooks = self.middleware.hooks
        # Other verifiers of the same secret (pam_oath, API.md §8) answer the newest step
        # they accepted; read before the comparison, so a wrong code costs the same.
        used: list[int] = await hooks.collect("auth.twofactor.used_step", user, secret)
        ssh_step = max(used, default=None)
        step = matching_step(
            secret,
            code,
            now=self.middleware.clock.time(),
            interval=user.totp_interval,
            digits=user.totp_digits,
            window=config.window,
        )
        if step is None:
            return CodeCheck(False, "mismatch")
        if ssh_step is not None and step <= ssh_step:  # pam_oath used this step or a newer one
            return CodeCheck(False, "replay")
        if not await self.middleware.repos.users.accept_step(user.id, user.totp_secret, step):
            return CodeCheck(False, "replay")
        # pam_oath may have accepted this code between the read above and now: its
        # record_step looks again under liboath's lock and then says so.
        recorded: list[bool] = await hooks.collect("auth.twofactor.record_step", user, secret, step)
        if not all(recorded):
            return CodeCheck(False, "replay")
        return CodeCheck(True, "ok")


def refusal_of(check: CodeCheck) -> Literal["REUSED", "WRONG"] | None:
    """``Session.code_refusal`` for the outcome ``check`` of a code (None: accepted)."""
    if check.ok:
        return None
    return "REUSED" if check.reason == "replay" else "WRONG"


def _two_factor_session(identity: Identity) -> bool:
    """A LEVEL_2 session (it proved two factors) or the Unix socket (API.md §4)."""
    return identity.level == "LEVEL_2" or identity.credentials == "UNIX_SOCKET"
