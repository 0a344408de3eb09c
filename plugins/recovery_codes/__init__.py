"""Recovery codes: look-up secrets for a lost authenticator (API.md §10, NIST SP 800-63B
§5.1.2).

``user.twofactor_recovery_codes(username)`` makes a set of :data:`CODES_PER_SET` codes of
16 characters of the base32 alphabet in four groups (``abcd-efgh-ijkl-mnop``, 80 bits from
the CSPRNG), returns them once and stores only their argon2id digests under one random
salt per set (:func:`~middlewared_2fa.crypto.lookup_secret_digest`); the previous set is
void. The OTP step accepts an unused code of the user in ``otp_token`` (a
:class:`~middlewared_2fa.api.Verifier` of ``OTP_TOKEN``): case, ASCII whitespace and
hyphens are ignored, the code is used up in the statement that accepts it, the session is
``LOGIN_TWOFACTOR`` / ``LEVEL_2`` with ``credentials_data.second_factor: "RECOVERY_CODE"``,
and the alert ``RecoveryCodeUsed`` names the user (never the code). A wrong code is a
wrong OTP (retry budget, account throttling: the auth plugin counts it).

The plugin owns the tables ``recovery_code_sets`` and ``recovery_codes`` and adds
``recovery_codes_remaining`` to ``user.twofactor_config`` (hook ``user.twofactor_config``);
a user left without a second factor loses the set (hook ``user.post_change``).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from typing import Any

from middlewared_2fa.api import CallContext, Hook, Migration, Service, Verifier, api_method
from middlewared_2fa.crypto import LOOKUP_SALT_BYTES, lookup_secret_digest
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import EBUSY, EINVAL, CallError
from middlewared_2fa.log import redact
from middlewared_2fa.login import StepProof
from middlewared_2fa.schema.user import (
    UserTwofactorRecoveryCodesArgs,
    UserTwofactorRecoveryCodesResult,
)

from ..alert import AlertService
from ..user import UserService
from ..user.crud import GUARDED_ATTEMPTS, after_stale_write, caller_of

logger = logging.getLogger(__name__)

#: Codes in one set (API.md §10).
CODES_PER_SET = 10
#: The base32 alphabet (RFC 4648 §6), lower case: 5 bits per character.
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
#: Characters of a code (16 x 5 = 80 bits), shown in groups of :data:`GROUP`.
CODE_LENGTH = 16
GROUP = 4
USED_ALERT = "RecoveryCodeUsed"
#: The proof of a login whose OTP step took a recovery code (API.md §10).
RECOVERY_PROOF = StepProof(
    "LOGIN_TWOFACTOR",
    "LEVEL_2",
    "password and recovery code login",
    second_factor="RECOVERY_CODE",
)
_IGNORED = str.maketrans("", "", " \t\n\r\x0b\x0c-")
#: Salt of the digest computed for a user without codes (its result is never compared).
_NO_SET_SALT = bytes(LOOKUP_SALT_BYTES)

MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE recovery_code_sets (
            user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            salt       BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE recovery_codes (
            user_id  INTEGER NOT NULL
                     REFERENCES recovery_code_sets (user_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            digest   BLOB NOT NULL,
            used_at  REAL,
            PRIMARY KEY (user_id, position)
        );
        """,
    ),
)


def new_code() -> str:
    """A fresh code, ``abcd-efgh-ijkl-mnop`` (80 bits from :mod:`secrets`)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + GROUP] for i in range(0, CODE_LENGTH, GROUP))


def normalize(value: str) -> str | None:
    """The 16 characters of a code as typed (case, ASCII whitespace and hyphens
    ignored), or None when ``value`` cannot be a recovery code."""
    if len(value) > 64:
        return None
    code = value.translate(_IGNORED).lower()
    if len(code) != CODE_LENGTH or not set(code) <= set(ALPHABET):
        return None
    return code


def _digests(codes: list[str], salt: bytes) -> list[bytes]:
    return [lookup_secret_digest(normalize(code) or "", salt) for code in codes]


class RecoveryCodesService(Service):
    class Config:
        namespace = "recovery_codes"
        method_namespace = "user"
        migrations = MIGRATIONS
        hooks = (
            Hook("user.twofactor_config", "_config_part"),
            Hook("user.post_change", "_user_changed"),
            Hook("user.second_factors_changed", "_factors_changed"),
        )
        verifiers = (Verifier("OTP_TOKEN", "RECOVERY_CODE", "_verify"),)

    # -- API -------------------------------------------------------------------------

    @api_method(
        UserTwofactorRecoveryCodesArgs,
        UserTwofactorRecoveryCodesResult,
        roles=[],
        audit=True,
        setup=True,
    )
    async def twofactor_recovery_codes(self, ctx: CallContext, username: str) -> list[str]:
        """Make ``username`` a new set of 10 recovery codes and return them (shown once;
        only salted argon2id digests are stored). The previous set stops working.

        Self, or FULL_ADMIN within the role guard (API.md §3, §10).

        Returns:
            10 codes ``abcd-efgh-ijkl-mnop``.

        Raises:
            CallError: EPERM; ENOENT; EACCES from a session without the second factor it
                has (API.md §9); EINVAL when the user has no second factor configured, or
                from a setup-only session whose user has a secret it has not proved
                (confirm a new secret first: docs/decisions.md); EBUSY when the hashing
                queue is full.
        """
        users = self.middleware.service(UserService)
        for _ in range(GUARDED_ATTEMPTS):
            row = await users.second_factor_target(ctx, username)
            if not self.middleware.factors.configured(row):
                raise CallError(
                    f"{username[:64]!r} has no second factor configured; set up a TOTP "
                    "secret or a passkey first",
                    EINVAL,
                )
            if ctx.identity.setup_only:
                raise CallError(
                    "Confirm a new secret first (user.twofactor_enroll, "
                    "user.twofactor_confirm): this session has not proved the current one",
                    EINVAL,
                )
            codes = [new_code() for _ in range(CODES_PER_SET)]
            for code in codes:
                redact(code)
            salt = os.urandom(LOOKUP_SALT_BYTES)
            digests = await self.middleware.hashing.run(ctx.session.address, _digests, codes, salt)
            now = self.middleware.clock.time()
            guard = "UPDATE users SET generation = generation WHERE id = ? AND generation = ?"
            guard_params: tuple[Any, ...] = (row.id, row.generation)
            caller = caller_of(ctx)
            statements: list[tuple[str, tuple[Any, ...], bool]] = [(guard, guard_params, True)]
            if caller is not None:
                statements.append((guard, caller, True))
            statements += [
                ("DELETE FROM recovery_code_sets WHERE user_id = ?", (row.id,), False),
                (
                    "INSERT INTO recovery_code_sets (user_id, salt, created_at) VALUES (?, ?, ?)",
                    (row.id, salt, now),
                    True,
                ),
                *(
                    (
                        "INSERT INTO recovery_codes (user_id, position, digest) VALUES (?, ?, ?)",
                        (row.id, position, digest),
                        True,
                    )
                    for position, digest in enumerate(digests)
                ),
            ]
            if await self.middleware.db.write_atomic(statements) is not None:
                break
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        logger.info("user %s: a new set of recovery codes was made", row.username)
        self.middleware.service(AlertService).clear_alert(USED_ALERT, row.username)
        return codes

    # -- hooks -------------------------------------------------------------------------

    async def remaining(self, user_id: int) -> int:
        """Unused codes of the user's set (0 without one)."""
        row = await self.middleware.db.fetch_one(
            "SELECT count(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
            (user_id,),
        )
        return int(row[0]) if row is not None else 0

    async def _config_part(self, row: UserRow) -> dict[str, Any]:
        """Hook ``user.twofactor_config``: ``recovery_codes_remaining``."""
        return {"recovery_codes_remaining": await self.remaining(row.id)}

    async def _user_changed(
        self, ctx: CallContext, old: UserRow | None, new: UserRow | None
    ) -> None:
        """Hook ``user.post_change``: a user left without a second factor loses the set
        (codes of a factor that is gone must not revive with a later one)."""
        if new is not None and new.totp_secret is None and (old is None or old.totp_secret):
            await self._factors_changed(ctx, new)

    async def _factors_changed(self, ctx: CallContext, row: UserRow) -> None:
        """Hook ``user.second_factors_changed`` (a passkey deleted, API.md §12), and the
        secret unset: once the user has no second factor left, the set goes."""
        if self.middleware.factors.configured(row):
            return
        await self.middleware.db.write(
            "DELETE FROM recovery_code_sets WHERE user_id = ?", (row.id,)
        )

    async def _verify(self, ctx: CallContext, user: UserRow, value: str) -> StepProof | None:
        """Verifier of ``OTP_TOKEN``: an unused recovery code of ``user`` is used up and
        proves the second factor; anything else is None (a wrong OTP for the caller)."""
        code = normalize(value)
        if code is None:
            return None
        db = self.middleware.db
        found = await db.fetch_one(
            "SELECT salt FROM recovery_code_sets WHERE user_id = ?", (user.id,)
        )
        # Hashed also without a set, so the time of a wrong code does not tell whether
        # the user has recovery codes.
        salt = bytes(found[0]) if found is not None else _NO_SET_SALT
        digest = await self.middleware.hashing.run(
            ctx.session.address, lookup_secret_digest, code, salt
        )
        if found is None:
            return None
        rows = await db.fetch_all(
            "SELECT position, digest FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
            (user.id,),
        )
        position: int | None = None
        for candidate, stored in rows:  # every one compared, in constant time each
            if hmac.compare_digest(bytes(stored), digest) and position is None:
                position = int(candidate)
        if position is None:
            return None
        if ctx.step_current is not None and not ctx.step_current():
            return None  # another answer finished the login during the hash: keep the code
        redact(value)
        used, _ = await db.write(
            "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND position = ? "
            "AND used_at IS NULL AND digest = ?",
            (self.middleware.clock.time(), user.id, position, digest),
        )
        if used != 1:
            return None  # another login used it a moment ago
        left = await self.remaining(user.id)
        logger.warning("user %s logged in with a recovery code; %d left", user.username, left)
        self.middleware.service(AlertService).raise_alert(
            USED_ALERT,
            "WARNING",
            f"User {user.username!r} logged in with a recovery code; {left} of "
            f"{CODES_PER_SET} remain. If the user did not, their password and recovery "
            "codes are known to someone else.",
            key=user.username,
        )
        return RECOVERY_PROOF
