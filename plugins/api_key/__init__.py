"""API keys for automation (API.md §11, TrueNAS 26+ names and shapes): ``api_key.*``, the
login mechanisms ``API_KEY_PLAIN`` and ``SCRAM``, the roles API_KEY_READ / API_KEY_WRITE.

A key is ``<id>-<64 letters and digits>``; it is shown by ``create`` (and ``update`` with
``reset``) and never stored: the table ``api_keys`` keeps SCRAM-SHA-512 data only (a random
salt, PBKDF2-SHA512 with 500,000 iterations, StoredKey and ServerKey; :mod:`.scram`). A key
session is ``API_KEY`` / ``LEVEL_1`` with no OTP step; it ends with ``api_key.delete``, a
``reset``, revocation, the key's expiry, and the user's role change, lock or deletion, not
with a password or secret change (API.md §9). A wrong key, a deleted one or another user's
is AUTH_ERR and counts as a failed authentication of the account (API.md §3); an expired or
revoked key is EXPIRED; a plain key sent over plaintext TCP from outside
``api_key_local_networks`` is revoked at once and answers EXPIRED, as TrueNAS does.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import string
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from middlewared_2fa.api import CallContext, Mechanism, Migration, Role, Service, api_method
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import EACCES, ENOENT, EPERM, CallError, ValidationError
from middlewared_2fa.filters import filter_list
from middlewared_2fa.log import redact
from middlewared_2fa.login import StepProof
from middlewared_2fa.roles import has_any
from middlewared_2fa.schema.api_key import (
    ApiKeyConvertRawKeyArgs,
    ApiKeyConvertRawKeyResult,
    ApiKeyCreate,
    ApiKeyCreateArgs,
    ApiKeyCreateResult,
    ApiKeyDeleteArgs,
    ApiKeyMyKeysArgs,
    ApiKeyMyKeysResult,
    ApiKeyPlain,
    ApiKeyQueryArgs,
    ApiKeyQueryResult,
    ApiKeyUpdate,
    ApiKeyUpdateArgs,
    ApiKeyUpdateResult,
    AuthLoginWithApiKeyArgs,
    Scram,
)
from middlewared_2fa.schema.common import BoolResult, QueryOptions
from middlewared_2fa.session import PendingStep

from ..auth import AuthService
from ..auth_twofactor import TwoFactorService
from ..user.crud import role_guard
from . import scram

logger = logging.getLogger(__name__)

KEY_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 64
#: A SCRAM exchange must finish this long after its client-first message (s).
SCRAM_TTL = 60.0
_DUMMY_SALT = bytes(scram.SALT_BYTES)

MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE api_keys (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            name           TEXT NOT NULL,
            user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            salt           BLOB NOT NULL,
            iterations     INTEGER NOT NULL,
            stored_key     BLOB NOT NULL,
            server_key     BLOB NOT NULL,
            created_at     REAL NOT NULL,
            expires_at     REAL,
            revoked        INTEGER NOT NULL DEFAULT 0,
            revoked_reason TEXT
        );
        CREATE INDEX api_keys_user ON api_keys (user_id);
        """,
    ),
)


class ApiKeySettings(BaseModel):
    """Settings of API keys (API.md §11)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key_local_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="client networks from which a plain API key may come over plaintext TCP "
        "(from elsewhere it is revoked)",
    )

    @field_validator("api_key_local_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad one
        return value


@dataclass(slots=True)
class KeyRow:
    id: int
    name: str
    user_id: int
    username: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes
    created_at: float
    expires_at: float | None
    revoked: bool
    revoked_reason: str | None


_SELECT = (
    "SELECT k.id, k.name, k.user_id, u.username, k.salt, k.iterations, k.stored_key, "
    "k.server_key, k.created_at, k.expires_at, k.revoked, k.revoked_reason "
    "FROM api_keys k JOIN users u ON u.id = k.user_id"
)


def _row(values: Any) -> KeyRow:
    (i, name, uid, uname, salt, iters, stored, server, created, expires, revoked, reason) = values
    return KeyRow(
        int(i),
        str(name),
        int(uid),
        str(uname),
        bytes(salt),
        int(iters),
        bytes(stored),
        bytes(server),
        float(created),
        None if expires is None else float(expires),
        bool(revoked),
        reason,
    )


def _entry(row: KeyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "username": row.username,
        "user_identifier": row.user_id,
        "iterations": row.iterations,
        "salt": scram.b64(row.salt),
        "stored_key": scram.b64(row.stored_key),
        "server_key": scram.b64(row.server_key),
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "local": False,
        "revoked": row.revoked,
        "revoked_reason": row.revoked_reason,
    }


def split_key(value: str) -> tuple[int, str] | None:
    """``(id, key material)`` of ``"<id>-<key>"``, or None when it is not one."""
    key_id, dash, material = value.partition("-")
    if not dash or not material or not key_id.isascii() or not key_id.isdigit():
        return None
    if len(key_id) > 18 or int(key_id) < 1:
        return None
    return int(key_id), material


@dataclass(slots=True)
class PendingScram(PendingStep):
    """A SCRAM exchange between its client-first and client-final messages."""

    key_id: int = 0
    client_first_bare: str = ""
    server_first: str = ""
    nonce: str = ""
    gs2_header: str = ""
    binding: bool = False


class ApiKeyService(Service):
    class Config:
        namespace = "api_key"
        role_prefix = ("API_KEY",)
        roles = (
            Role("API_KEY_READ", readonly=True),
            Role("API_KEY_WRITE", includes=("API_KEY_READ",)),
        )
        settings = ApiKeySettings
        migrations = MIGRATIONS
        mechanisms = (
            Mechanism("API_KEY_PLAIN", ApiKeyPlain, "_plain"),
            Mechanism("SCRAM", Scram, "_scram"),
        )

    def __init__(self, middleware: Any) -> None:
        super().__init__(middleware)
        settings = middleware.settings_of(ApiKeySettings)
        self.local_networks = [
            ipaddress.ip_network(n, strict=False) for n in settings.api_key_local_networks
        ]

    @property
    def _auth(self) -> AuthService:
        return self.middleware.service(AuthService)

    # -- storage -------------------------------------------------------------------------

    async def _get(self, key_id: int) -> KeyRow | None:
        found = await self.middleware.db.fetch_one(f"{_SELECT} WHERE k.id = ?", (key_id,))
        return None if found is None else _row(found)

    async def _list(self, user_id: int | None) -> list[KeyRow]:
        if user_id is None:
            rows = await self.middleware.db.fetch_all(f"{_SELECT} ORDER BY k.id")
        else:
            rows = await self.middleware.db.fetch_all(
                f"{_SELECT} WHERE k.user_id = ? ORDER BY k.id", (user_id,)
            )
        return [_row(r) for r in rows]

    def _end_sessions(self, key_id: int) -> None:
        """End the key's sessions, the token sessions derived from them and their tokens."""
        self.middleware.sessions.end_api_key(key_id)

    def _usable(self, row: KeyRow) -> bool:
        """Neither revoked nor expired."""
        now = self.middleware.clock.time()
        return not row.revoked and (row.expires_at is None or row.expires_at > now)

    # -- access --------------------------------------------------------------------------

    async def _owner(self, ctx: CallContext, username: str | None, write: bool) -> UserRow:
        """The user whose keys the caller manages: themself, or (with API_KEY_WRITE for
        changes, API_KEY_READ for reads) another user within the role guard."""
        identity = ctx.identity
        users = self.middleware.repos.users
        if username is None:
            if identity.user_id is None:
                raise ValidationError(
                    "api_key_create.username", "The Unix-socket root must name the key's user"
                )
            row = await users.get(identity.user_id)
        else:
            row = await users.get_by_name(username)
            if row is None or row.id != identity.user_id:
                # The role first, for a missing user too: EPERM either way, so a caller
                # without the role cannot tell which user names exist.
                needed = "API_KEY_WRITE" if write else "API_KEY_READ"
                if not has_any(identity.granted, [needed]):
                    raise CallError("Only the user or an API key administrator may do this", EPERM)
                if row is not None:
                    role_guard(ctx, row)
        if row is None:
            raise ValidationError("api_key_create.username", "User does not exist")
        return row

    async def _key_for_change(self, ctx: CallContext, key_id: int) -> KeyRow:
        row = await self._get(key_id)
        identity = ctx.identity
        if row is None:
            raise CallError(f"API key {key_id} does not exist", ENOENT)
        if row.user_id != identity.user_id:
            if not has_any(identity.granted, ["API_KEY_WRITE"]):
                raise CallError(f"API key {key_id} does not exist", ENOENT)
            owner = await self.middleware.repos.users.get(row.user_id)
            if owner is not None:
                role_guard(ctx, owner)
        return row

    async def _require_enforce_level(self, ctx: CallContext) -> None:
        config = await self.middleware.service(TwoFactorService).get_config()
        identity = ctx.identity
        if (
            config.enabled
            and config.enforce
            and identity.level != "LEVEL_2"
            and identity.credentials != "UNIX_SOCKET"
        ):
            raise CallError(
                "Two-factor authentication is enforced: API keys can be created only from "
                "a session that used two factors",
                EACCES,
            )

    async def _new_material(self, ctx: CallContext) -> tuple[str, scram.ScramKeys]:
        material = "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))
        redact(material)
        keys = await self.middleware.hashing.run(ctx.session.address, scram.new_keys, material)
        return material, keys

    # -- API -----------------------------------------------------------------------------

    @api_method(ApiKeyCreateArgs, ApiKeyCreateResult, roles=[], audit=True)
    async def create(self, ctx: CallContext, api_key_create: ApiKeyCreate) -> dict[str, Any]:
        """Make an API key for ``username`` (default: the caller). Anyone may make their
        own; another user's needs API_KEY_WRITE within the role guard. While ``enforce``
        is on, only a LEVEL_2 or Unix-socket session may (API.md §4).

        Returns:
            ApiKeyEntry plus ``key`` (``<id>-<64 letters and digits>``, shown only now)
            and ``client_key`` (base64).

        Raises:
            CallError: EPERM (another user's, without the role or outside the guard);
                EACCES (enforce); EBUSY (hashing queue full).
            ValidationErrors: unknown user on ``api_key_create.username``; an
                ``expires_at`` in the past on ``api_key_create.expires_at``.
        """
        await self._require_enforce_level(ctx)
        owner = await self._owner(ctx, api_key_create.username, write=True)
        now = self.middleware.clock.time()
        expires = api_key_create.expires_at.seconds if api_key_create.expires_at else None
        if expires is not None and expires <= now:
            raise ValidationError("api_key_create.expires_at", "Must be in the future")
        limit = ctx.identity.expires_at if ctx.identity.api_key is not None else None
        if limit is not None and (expires is None or expires > limit):
            # A key that expires must not outlive itself through a new key (it may not
            # extend itself either: update refuses it).
            raise ValidationError(
                "api_key_create.expires_at",
                "A session of an expiring API key may only make keys that expire no later "
                "than that key",
            )
        material, keys = await self._new_material(ctx)
        _, key_id = await self.middleware.db.write(
            "INSERT INTO api_keys (name, user_id, salt, iterations, stored_key, server_key, "
            "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                api_key_create.name,
                owner.id,
                keys.salt,
                keys.iterations,
                keys.stored_key,
                keys.server_key,
                now,
                expires,
            ),
        )
        assert key_id is not None
        row = await self._get(key_id)
        assert row is not None
        key = f"{key_id}-{material}"
        redact(key)
        logger.info("API key %d (%s) made for user %s", key_id, row.name, owner.username)
        return {**_entry(row), "key": key, "client_key": scram.b64(keys.client_key)}

    @api_method(ApiKeyUpdateArgs, ApiKeyUpdateResult, roles=[], audit=True)
    async def update(self, ctx: CallContext, id: int, api_key_update: ApiKeyUpdate) -> Any:
        """Rename, change ``expires_at`` (null: never), or ``reset`` key ``id`` (a new
        key, shown once; the old one and its sessions end; a revoked key works again).

        Raises:
            CallError: ENOENT (unknown, or another user's without API_KEY_WRITE); EPERM
                outside the role guard.
        """
        await self._key_for_change(ctx, id)
        given = api_key_update.model_fields_set
        identity = ctx.identity
        if api_key_update.reset:
            await self._require_enforce_level(ctx)  # a reset makes a new key (API.md §4)
        if (
            identity.api_key is not None
            and identity.api_key[0] == id
            and ("expires_at" in given or api_key_update.reset)
        ):
            raise CallError(
                "A key cannot reset itself or change its own expiry; use another session", EPERM
            )
        sets: dict[str, Any] = {}
        if "name" in given:
            sets["name"] = api_key_update.name
        if "expires_at" in given:
            expires = api_key_update.expires_at
            if expires is not None and expires.seconds <= self.middleware.clock.time():
                raise ValidationError("api_key_update.expires_at", "Must be in the future")
            sets["expires_at"] = expires.seconds if expires else None
        material: str | None = None
        keys: scram.ScramKeys | None = None
        if api_key_update.reset:
            material, keys = await self._new_material(ctx)
            sets.update(
                salt=keys.salt,
                iterations=keys.iterations,
                stored_key=keys.stored_key,
                server_key=keys.server_key,
                revoked=0,
                revoked_reason=None,
            )
        if sets:
            await self.middleware.db.write(
                f"UPDATE api_keys SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                (*sets.values(), id),
            )
        if api_key_update.reset or "expires_at" in given:
            self._end_sessions(id)  # they rest on the old key, or its old expiry
        new = await self._get(id)
        if new is None:
            raise CallError(f"API key {id} does not exist", ENOENT)
        if material is None or keys is None:
            return _entry(new)
        key = f"{id}-{material}"
        redact(key)
        return {**_entry(new), "key": key, "client_key": scram.b64(keys.client_key)}

    @api_method(ApiKeyDeleteArgs, BoolResult, roles=[], audit=True)
    async def delete(self, ctx: CallContext, id: int) -> bool:
        """Delete key ``id``; its sessions end (API.md §9).

        Raises:
            CallError: ENOENT; EPERM outside the role guard.
        """
        await self._key_for_change(ctx, id)
        await self.middleware.db.write("DELETE FROM api_keys WHERE id = ?", (id,))
        self._end_sessions(id)
        return True

    @api_method(ApiKeyQueryArgs, ApiKeyQueryResult, roles=[])
    async def query(self, ctx: CallContext, filters: list[list[Any]], options: QueryOptions) -> Any:
        """``[ApiKeyEntry]``: every key with API_KEY_READ, else the caller's own."""
        identity = ctx.identity
        everyone = has_any(identity.granted, ["API_KEY_READ"])
        rows = await self._list(None if everyone else (identity.user_id or -1))
        return filter_list([_entry(r) for r in rows], filters, options)

    @api_method(ApiKeyMyKeysArgs, ApiKeyMyKeysResult, roles=[])
    async def my_keys(self, ctx: CallContext) -> list[dict[str, Any]]:
        """The caller's own keys."""
        return [_entry(r) for r in await self._list(ctx.identity.user_id or -1)]

    @api_method(ApiKeyConvertRawKeyArgs, ApiKeyConvertRawKeyResult, roles=[])
    async def convert_raw_key(self, ctx: CallContext, raw_key: str) -> dict[str, Any]:
        """The SCRAM data of ``raw_key`` (``<id>-<key>``) under that key's stored salt and
        iterations: ``{api_key_id, iterations, salt, client_key, stored_key, server_key}``
        (base64), for clients that keep derived keys instead of the raw one.

        Raises:
            ValidationErrors: not ``<id>-<key>``, or no such key, on ``raw_key``.
        """
        redact(raw_key)
        parts = split_key(raw_key)
        row = await self._get(parts[0]) if parts else None
        identity = ctx.identity
        if row is not None and row.user_id != identity.user_id:
            if not has_any(identity.granted, ["API_KEY_READ"]):
                row = None  # another user's key: as if it did not exist
        if parts is None or row is None:
            raise ValidationError("raw_key", "Not the key of an existing API key")
        keys = await self.middleware.hashing.run(
            ctx.session.address, scram.derive, parts[1], row.salt, row.iterations
        )
        return {
            "api_key_id": row.id,
            "iterations": keys.iterations,
            "salt": scram.b64(keys.salt),
            "client_key": scram.b64(keys.client_key),
            "stored_key": scram.b64(keys.stored_key),
            "server_key": scram.b64(keys.server_key),
        }

    # -- login mechanisms ----------------------------------------------------------------

    def _proof(self, row: KeyRow, mechanism: str) -> StepProof:
        """``mechanism`` is said in the audit entry: ``API_KEY_PLAIN``, ``SCRAM`` or ``SCRAM
        with channel binding``."""
        return StepProof(
            "API_KEY",
            "LEVEL_1",
            f"API key login (key {row.id}, {mechanism})",
            api_key=(row.id, row.name),
            expires_at=row.expires_at,
        )

    def _plaintext_remote(self, ctx: CallContext) -> bool:
        session = ctx.session
        if session.transport != "tcp" or session.secure:
            return False
        try:
            address = ipaddress.ip_address(session.address)
        except ValueError:
            return True
        return not any(address in network for network in self.local_networks)

    async def _plain(self, ctx: CallContext, data: ApiKeyPlain) -> dict[str, Any]:
        """``API_KEY_PLAIN``: SUCCESS (``API_KEY``), AUTH_ERR or EXPIRED (API.md §11)."""
        auth = self._auth
        ctx.session.pending = None
        parts = split_key(data.api_key)
        user = await self.middleware.repos.users.get_by_name(data.username)
        attempt = auth.begin_attempt(user.id if user is not None else data.username)
        row = await self._get(parts[0]) if parts else None
        salt, iterations = (row.salt, row.iterations) if row else (_DUMMY_SALT, scram.ITERATIONS)
        try:
            keys = await self.middleware.hashing.run(
                ctx.session.address, scram.derive, parts[1] if parts else "", salt, iterations
            )
        except BaseException:
            auth.refund_attempt(attempt)
            raise
        right = (
            row is not None
            and user is not None
            and not user.locked
            and row.user_id == user.id
            and hmac.compare_digest(keys.stored_key, row.stored_key)
        )
        if not right or row is None or user is None:
            await auth.attempt_failed(ctx, attempt, user, data.username, "wrong API key")
            return {"response_type": "AUTH_ERR"}
        redact(data.api_key)
        if not self._usable(row):
            auth.refund_attempt(attempt)
            await auth.fail_quietly(ctx, user.username, f"expired or revoked API key {row.id}")
            return {"response_type": "EXPIRED"}
        if self._plaintext_remote(ctx):
            auth.refund_attempt(attempt)
            reason = f"Sent in plain text over an unencrypted connection from {ctx.session.address}"
            await self.middleware.db.write(
                "UPDATE api_keys SET revoked = 1, revoked_reason = ? WHERE id = ?",
                (reason, row.id),
            )
            self._end_sessions(row.id)
            logger.warning("API key %d of %s revoked: %s", row.id, user.username, reason)
            await auth.fail_quietly(ctx, user.username, f"API key {row.id} revoked: {reason}")
            return {"response_type": "EXPIRED"}
        return await self._establish_checked(
            ctx, user, attempt, row, data.login_options, "API_KEY_PLAIN"
        )

    async def _establish_checked(
        self,
        ctx: CallContext,
        user: UserRow,
        attempt: Any,
        row: KeyRow,
        options: Any,
        mechanism: str,
    ) -> dict[str, Any]:
        """Establish the key session, then read the key again: a delete, reset, re-dating
        or revocation that landed while the login was in flight (PBKDF2 takes time) makes
        it AUTH_ERR and ends the session, never a session on the old key (API.md §9)."""
        auth = self._auth
        fresh = await self._get(row.id)
        if not self._same(row, fresh):
            auth.refund_attempt(attempt)
            await auth.fail_quietly(ctx, user.username, f"API key {row.id} changed during login")
            return {"response_type": "AUTH_ERR"}
        done = await auth.establish(ctx, user, attempt, self._proof(row, mechanism), options)
        if done["response_type"] == "SUCCESS" and not self._same(row, await self._get(row.id)):
            self._end_sessions(row.id)
            return {"response_type": "AUTH_ERR"}
        return done

    def _same(self, row: KeyRow, fresh: KeyRow | None) -> bool:
        return (
            fresh is not None
            and fresh.stored_key == row.stored_key
            and fresh.expires_at == row.expires_at
            and not fresh.revoked
            and self._usable(fresh)
        )

    async def _scram(self, ctx: CallContext, data: Scram) -> dict[str, Any]:
        """``SCRAM``: the two steps of SCRAM-SHA-512 (API.md §11)."""
        if data.scram_type == "CLIENT_FIRST_MESSAGE":
            return await self._scram_first(ctx, data)
        return await self._scram_final(ctx, data)

    async def _scram_first(self, ctx: CallContext, data: Scram) -> dict[str, Any]:
        auth = self._auth
        session = ctx.session
        session.pending = None
        try:
            first = scram.parse_client_first(data.rfc_str)
        except scram.ScramError:
            await auth.fail_quietly(ctx, None, "malformed SCRAM client-first message")
            return {"response_type": "AUTH_ERR"}
        user = await self.middleware.repos.users.get_by_name(first.username)
        attempt = auth.begin_attempt(user.id if user is not None else first.username)
        row = await self._get(first.key_id)
        if (
            row is None
            or user is None
            or user.locked
            or row.user_id != user.id
            or (first.binding and session.tls_end_point is None)
        ):
            await auth.attempt_failed(ctx, attempt, user, first.username, "wrong API key id")
            return {"response_type": "AUTH_ERR"}
        if first.gs2_header.startswith("y") and session.tls_end_point is not None:
            # RFC 5802 §6: "y" says the client can bind but believes this server cannot.
            # Over TLS it can, so someone in the path removed the binding: refuse.
            await auth.attempt_failed(
                ctx, attempt, user, first.username, "SCRAM channel binding downgraded (y over TLS)"
            )
            return {"response_type": "AUTH_ERR"}
        auth.refund_attempt(attempt)  # the proof is what is checked, and counted
        if not self._usable(row):
            await auth.fail_quietly(ctx, user.username, f"expired or revoked API key {row.id}")
            return {"response_type": "EXPIRED"}
        server_first, nonce = scram.server_first(first, row.salt, row.iterations)
        session.pending = PendingScram(
            user.id,
            user.username,
            user.generation,
            self.middleware.clock.time() + SCRAM_TTL,
            key_id=row.id,
            client_first_bare=first.bare,
            server_first=server_first,
            nonce=nonce,
            gs2_header=first.gs2_header,
            binding=first.binding,
        )
        return {
            "response_type": "SCRAM_RESPONSE",
            "scram_type": "SERVER_FIRST_RESPONSE",
            "rfc_str": server_first,
            "user_info": None,
        }

    async def _scram_final(self, ctx: CallContext, data: Scram) -> dict[str, Any]:
        auth = self._auth
        session = ctx.session
        pending = session.pending if isinstance(session.pending, PendingScram) else None
        session.pending = None  # one final per first: a replayed one finds nothing
        if pending is None or pending.expires <= self.middleware.clock.time():
            await auth.fail_quietly(ctx, None, "SCRAM client-final without a client-first")
            return {"response_type": "AUTH_ERR"}
        attempt = auth.begin_attempt(pending.user_id)
        user = await self.middleware.repos.users.get(pending.user_id)
        row = await self._get(pending.key_id)
        proof: str | None = None
        try:
            final = scram.parse_client_final(data.rfc_str)
        except scram.ScramError:
            final = None
        if final is not None and row is not None and user is not None and not user.locked:
            binding_data = (session.tls_end_point or b"") if pending.binding else b""
            expected_binding = pending.gs2_header.encode() + binding_data
            if final.nonce == pending.nonce and hmac.compare_digest(
                final.channel_binding, expected_binding
            ):
                auth_message = (
                    f"{pending.client_first_bare},{pending.server_first},{final.without_proof}"
                )
                proof = scram.verify_final(
                    row.stored_key, row.server_key, auth_message, final.proof
                )
        if proof is None or row is None or user is None:
            await auth.attempt_failed(ctx, attempt, user, pending.username, "wrong SCRAM proof")
            return {"response_type": "AUTH_ERR"}
        if not self._usable(row):
            auth.refund_attempt(attempt)
            await auth.fail_quietly(ctx, user.username, f"expired or revoked API key {row.id}")
            return {"response_type": "EXPIRED"}
        mechanism = "SCRAM with channel binding" if pending.binding else "SCRAM"
        done = await self._establish_checked(ctx, user, attempt, row, data.login_options, mechanism)
        if done["response_type"] != "SUCCESS":
            return done
        return {
            "response_type": "SCRAM_RESPONSE",
            "scram_type": "SERVER_FINAL_RESPONSE",
            "rfc_str": proof,
            "user_info": done["user_info"],
        }


class ApiKeyLegacyLoginService(Service):
    """TrueNAS's legacy ``auth.login_with_api_key(api_key) -> bool`` (what pytruenas and
    older clients call by default): the key's id names its user, then it is checked as
    ``API_KEY_PLAIN`` is (same counting, revocation and sessions)."""

    class Config:
        namespace = "api_key_legacy"
        method_namespace = "auth"

    @api_method(AuthLoginWithApiKeyArgs, BoolResult, auth="none", rate_limit="always")
    async def login_with_api_key(self, ctx: CallContext, api_key: str) -> bool:
        """Log in with ``"<id>-<key>"``; True on success (an API_KEY session), False
        otherwise (wrong, deleted, expired or revoked key)."""
        keys = self.middleware.service(ApiKeyService)
        parts = split_key(api_key)
        row = await keys._get(parts[0]) if parts else None
        username = row.username if row is not None else ""
        done = await keys._plain(
            ctx, ApiKeyPlain(mechanism="API_KEY_PLAIN", username=username, api_key=api_key)
        )
        return bool(done["response_type"] == "SUCCESS")


__all__ = ["ApiKeyLegacyLoginService", "ApiKeyService", "ApiKeySettings", "split_key"]
