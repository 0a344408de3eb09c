"""One-time passwords for a user who lost their authenticator (API.md §10; TrueNAS's
``auth.generate_onetime_password``).

An administrator with ACCOUNT_WRITE (within the role guard) asks for one; the user types
it as the password of ``PASSWORD_PLAIN``. It is ``"<n>_xxxxxx-xxxxxx-xxxxxx-xxxxxx"``:
``n`` the row id, then 24 characters of the base32 alphabet (120 bits from the CSPRNG);
the table ``onetime_passwords`` keeps only the SHA-256 digest of the random part (a
secret of at least 112 bits needs no password hashing, NIST SP 800-63B §5.1.2.2), its
expiry (24 h, Unix time from the daemon's clock) and when it was used. A new one voids
the user's unused previous one. It works once (the statement that accepts it marks it
used), survives a restart, and gives a *setup-only* session (credentials
``LOGIN_ONETIME_PASSWORD``, account attributes ``OTPW``, ``PASSWORD_CHANGE_REQUIRED``,
``SETUP_ONLY``; no reconnect token) in which the user sets a new password and a new
secret. It is a :class:`~middlewared_2fa.api.Verifier` of the password step: asked only
after the password hash failed, so a wrong one costs the same time and counts the same.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from middlewared_2fa.api import CallContext, Migration, Service, Verifier, api_method
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import EBUSY, CallError, ValidationError
from middlewared_2fa.log import redact
from middlewared_2fa.login import StepProof
from middlewared_2fa.schema.common import StrResult
from middlewared_2fa.schema.onetime_password import (
    AuthGenerateOnetimePasswordArgs,
    OnetimePasswordRequest,
)

from ..user.crud import GUARDED_ATTEMPTS, after_stale_write, caller_of, role_guard

logger = logging.getLogger(__name__)

#: Lifetime of a one-time password (s, API.md §10).
TTL = 24 * 3600.0
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
GROUPS, GROUP = 4, 6
#: ``<n>`` has at most 18 digits: every such number is a valid SQLite row id (< 2**63).
_SHAPE = re.compile(r"([1-9][0-9]{0,17})_((?:[a-z2-7]{6}-){3}[a-z2-7]{6})")
#: What the attribute of an unknown or locked user is called (TrueNAS's).
ATTRIBUTE = "auth.generate_onetime_password.username"

ONETIME_PROOF = StepProof(
    "LOGIN_ONETIME_PASSWORD",
    "LEVEL_1",
    "one-time password login; setup-only session",
    setup_only=True,
    attributes=("OTPW", "PASSWORD_CHANGE_REQUIRED"),
    reconnect_token=False,
)

MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE onetime_passwords (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            digest     BLOB NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at    REAL
        );
        CREATE INDEX onetime_passwords_user ON onetime_passwords (user_id);
        """,
    ),
)


def _digest(random_part: str) -> bytes:
    return hashlib.sha256(random_part.encode()).digest()


class OnetimePasswordService(Service):
    class Config:
        namespace = "onetime_password"
        method_namespace = "auth"
        migrations = MIGRATIONS
        verifiers = (Verifier("PASSWORD_PLAIN", "ONETIME_PASSWORD", "_verify"),)

    @api_method(
        AuthGenerateOnetimePasswordArgs,
        StrResult,
        roles=["ACCOUNT_WRITE"],
        audit="Generate onetime password for user",
        audit_extended=lambda data: repr(data.username[:64]),
    )
    async def generate_onetime_password(
        self, ctx: CallContext, data: OnetimePasswordRequest
    ) -> str:
        """A one-time password for ``data.username`` (API.md §10): valid 24 h and once,
        stored hashed; it logs in to a setup-only session. The user's previous unused
        one stops working.

        Returns:
            ``"<n>_xxxxxx-xxxxxx-xxxxxx-xxxxxx"``.

        Raises:
            ValidationErrors: unknown or locked user, on
                ``auth.generate_onetime_password.username``.
            CallError: EPERM outside the role guard (API.md §3); EACCES without
                ACCOUNT_WRITE.
        """
        repos = self.middleware.repos
        for _ in range(GUARDED_ATTEMPTS):
            row = await repos.users.get_by_name(data.username)
            if row is None:
                raise ValidationError(ATTRIBUTE, "User does not exist")
            if row.locked:
                raise ValidationError(ATTRIBUTE, "The user is locked; unlock it first")
            role_guard(ctx, row)
            random_part = "-".join(
                "".join(secrets.choice(ALPHABET) for _ in range(GROUP)) for _ in range(GROUPS)
            )
            now = self.middleware.clock.time()
            guard = "UPDATE users SET generation = generation WHERE id = ? AND generation = ?"
            statements: list[tuple[str, tuple[Any, ...], bool]] = [
                (guard, (row.id, row.generation), True)
            ]
            caller = caller_of(ctx)
            if caller is not None:
                statements.append((guard, caller, True))
            statements += [
                (
                    "DELETE FROM onetime_passwords WHERE user_id = ? AND used_at IS NULL",
                    (row.id,),
                    False,
                ),
                (
                    "INSERT INTO onetime_passwords (user_id, digest, created_at, expires_at) "
                    "VALUES (?, ?, ?, ?)",
                    (row.id, _digest(random_part), now, now + TTL),
                    True,
                ),
            ]
            written = await self.middleware.db.write_atomic(statements)
            if written is not None:
                break
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        await self.middleware.db.write(
            "DELETE FROM onetime_passwords WHERE expires_at <= ? OR used_at IS NOT NULL",
            (now - TTL,),
        )
        password = f"{written[-1][1]}_{random_part}"
        redact(password)
        logger.info("a one-time password was made for user %s", row.username)
        return password

    async def _verify(self, ctx: CallContext, user: UserRow, value: str) -> StepProof | None:
        """Verifier of ``PASSWORD_PLAIN``: an unused, unexpired one-time password of
        ``user`` is used up and gives a setup-only session; anything else is None."""
        shape = _SHAPE.fullmatch(value)
        if shape is None:
            return None
        row_id, random_part = int(shape.group(1)), shape.group(2)
        now = self.middleware.clock.time()
        db = self.middleware.db
        found = await db.fetch_one(
            "SELECT digest FROM onetime_passwords WHERE id = ? AND user_id = ? "
            "AND used_at IS NULL AND expires_at > ?",
            (row_id, user.id, now),
        )
        if found is None or not hmac.compare_digest(bytes(found[0]), _digest(random_part)):
            return None
        used, _ = await db.write(
            "UPDATE onetime_passwords SET used_at = ? WHERE id = ? AND used_at IS NULL "
            "AND expires_at > ?",
            (now, row_id, now),
        )
        if used != 1:
            return None  # used by another login a moment ago
        redact(value)
        logger.info("user %s logged in with a one-time password", user.username)
        return ONETIME_PROOF
