"""Passkeys (WebAuthn Level 3) as a second factor (API.md §12): ``user.webauthn_*`` and
the ``WEBAUTHN`` mechanism of the OTP step.

Verification is the ``webauthn`` library's (py_webauthn): client data (type, challenge,
origin), the rp id hash, user presence, the attestation (format ``none`` and the
attested formats it knows) and the assertion signature. This plugin keeps the state:

- the tables ``webauthn_users`` (the WebAuthn user handle of an account: 32 random
  bytes, never the name) and ``webauthn_credentials`` (credential id, COSE public key,
  sign count, name, dates);
- a registration challenge per session (single-use, 5 minutes, bound to the account and
  its credential generation), and a login challenge per pending OTP step
  (``PendingStep.factors``; every OTP_REQUIRED answer carries a fresh one, and any answer
  to the step spends it).

A registration or a deletion is a credential change (API.md §9): it bumps the account's
generation in the transaction that makes it, so the user's other sessions, tokens and
pending logins end; a user's first passkey, registered by the user, makes the session
``LEVEL_2`` (API.md §4). Sign counts follow WebAuthn L3 §7.2 step 21: a count that does
not grow (unless both are 0, as synced passkeys keep them) is refused and raises the alert
``PasskeyCloneSuspected``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    options_to_json_dict,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from middlewared_2fa.api import (
    CallContext,
    Hook,
    Mechanism,
    Migration,
    SecondFactor,
    Service,
    api_method,
)
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import EBUSY, ENOENT, EPERM, CallError, StartupError, ValidationError
from middlewared_2fa.login import StepProof
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.schema.webauthn import (
    PasskeyOptions,
    UserWebauthnDeleteArgs,
    UserWebauthnDeleteResult,
    UserWebauthnListArgs,
    UserWebauthnListResult,
    UserWebauthnRegisterBeginArgs,
    UserWebauthnRegisterBeginResult,
    UserWebauthnRegisterFinishArgs,
    UserWebauthnRegisterFinishResult,
    WebauthnAssertion,
)
from middlewared_2fa.session import PendingStep

from ..alert import AlertService
from ..auth import AuthService
from ..auth_twofactor import TwoFactorService
from ..user import UserService
from ..user.crud import GUARDED_ATTEMPTS, after_stale_write, end_derived_credentials

logger = logging.getLogger(__name__)

#: A registration or login challenge lives this long (API.md §12), seconds.
CHALLENGE_TTL = 300.0
#: Bytes of a challenge (WebAuthn L3 §13.4.3 asks for at least 16).
CHALLENGE_BYTES = 32
#: Bytes of a WebAuthn user handle (at most 64, L3 §5.4.3).
USER_HANDLE_BYTES = 32
#: Passkeys one account may hold.
MAX_PASSKEYS = 32
#: Longest credential id accepted (WebAuthn L3 §7.1 step 25: longer ones are refused).
MAX_CREDENTIAL_ID = 1023
#: COSE algorithms offered (API.md §12): ES256, EdDSA, RS256.
ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
CLONE_ALERT = "PasskeyCloneSuspected"
#: ``PendingStep.factors`` key of the login challenge.
_FACTOR = "webauthn"

MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE webauthn_users (
            user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            handle  BLOB NOT NULL UNIQUE
        );
        CREATE TABLE webauthn_credentials (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            credential_id BLOB NOT NULL UNIQUE,
            public_key    BLOB NOT NULL,
            sign_count    INTEGER NOT NULL,
            transports    TEXT NOT NULL DEFAULT '[]',
            name          TEXT NOT NULL,
            created_at    REAL NOT NULL,
            last_used_at  REAL
        );
        CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);
        """,
    ),
)


class WebauthnSettings(BaseModel):
    """Passkeys' relying party (API.md §1, §12)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webauthn_rp_id: str = Field(
        "",
        description="relying party id: the host name browsers reach the UI by, or a "
        "parent domain of it; default: localhost on a loopback listener, else the host name",
    )
    webauthn_origins: list[str] = Field(
        default_factory=list,
        description="browser origins (scheme://host[:port]) allowed in WebAuthn client "
        "data; default: the daemon's own origins for the rp id",
    )

    @field_validator("webauthn_rp_id")
    @classmethod
    def _rp_id(cls, value: str) -> str:
        if not value:
            return value
        return _host_name(value, "rp id")

    @field_validator("webauthn_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each origin in the form browsers send (lower case, punycode, no default
        port), so that the comparison with the client data and the Origin header holds."""
        normal: list[str] = []
        for origin in value:
            parts = urlsplit(origin)
            try:
                port = parts.port
            except ValueError:
                port = -1
            if (
                parts.scheme.lower() not in ("https", "http")
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
                or parts.username is not None
                or port == -1
                or parts.netloc.endswith(":")
                or f"{parts.scheme}://{parts.netloc}" != origin
            ):
                raise ValueError(
                    f"{origin[:100]!r} is not a browser origin: scheme://host[:port], "
                    "e.g. https://nas.example.com"
                )
            scheme = parts.scheme.lower()
            host = _host_name(parts.hostname, "origin host")
            if scheme == "http" and not _is_localhost(host):
                raise ValueError(
                    f"{origin[:100]!r}: browsers allow WebAuthn over http only on "
                    "localhost; use https (tls = true)"
                )
            default = {"https": 443, "http": 80}[scheme]
            normal.append(
                f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")
            )
        return normal


def _host_name(value: str, what: str) -> str:
    """``value`` as browsers compare host names: lower case, punycode (IDNA).

    Raises:
        ValueError: an IP address, or a name a browser reads as one (all-digit last
            label), or not a host name.
    """
    value = value.lower().rstrip(".")
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{value[:100]!r} is not a host name") from None
    labels = value.split(".")
    numeric = labels[-1].isdigit() or labels[-1].startswith("0x")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        numeric = True
    if numeric:
        raise ValueError(
            f"the {what} must be a host name: browsers refuse an IP address (give the NAS "
            "a name in DNS or in the clients' hosts files)"
        )
    if len(value) > 253 or not all(
        0 < len(label) <= 63
        and label.replace("-", "").isalnum()
        and label.isascii()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    ):
        raise ValueError(f"{value[:100]!r} is not a host name (no scheme, port or path)")
    return value


@dataclass(slots=True)
class _Registration:
    """A registration in progress: the options one session was given."""

    user_id: int
    generation: int
    name: str
    challenge: bytes
    expires: float


@dataclass(slots=True)
class _Challenge:
    """The login challenge one OTP_REQUIRED answer offered."""

    challenge: bytes
    expires: float


@dataclass(slots=True)
class PasskeyRow:
    id: int
    user_id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: list[str]
    name: str
    created_at: float
    last_used_at: float | None


_SELECT = (
    "SELECT id, user_id, credential_id, public_key, sign_count, transports, name, "
    "created_at, last_used_at FROM webauthn_credentials"
)


def _row(raw: Any) -> PasskeyRow:
    try:
        transports = [t for t in json.loads(raw[5]) if isinstance(t, str)]
    except (ValueError, TypeError):
        transports = []
    return PasskeyRow(
        int(raw[0]),
        int(raw[1]),
        bytes(raw[2]),
        bytes(raw[3]),
        int(raw[4]),
        transports,
        str(raw[6]),
        float(raw[7]),
        None if raw[8] is None else float(raw[8]),
    )


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5), as WebAuthn's JSON forms use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes | None:
    """The bytes of a base64url string (padding optional), or None when it is not one."""
    if not isinstance(text, str) or len(text) > 2048:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def entry(row: PasskeyRow) -> dict[str, Any]:
    """The PasskeyEntry of ``row`` (API.md §12)."""
    return {
        "id": row.id,
        "credential_id": b64url(row.credential_id),
        "name": row.name,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
    }


def _descriptor(row: PasskeyRow) -> PublicKeyCredentialDescriptor:
    transports = []
    for value in row.transports:
        try:
            transports.append(AuthenticatorTransport(value))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=row.credential_id, transports=transports or None)


def _refusal(exc: Exception) -> str:
    """What the audit log and a registration error say about a refused response: the
    library's reason (it names checks, never key material), on one line."""
    text = str(exc).replace("\n", " ").strip() or type(exc).__name__
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:200]


class WebauthnService(Service):
    class Config:
        namespace = "webauthn"
        method_namespace = "user"
        settings = WebauthnSettings
        migrations = MIGRATIONS
        hooks = (
            Hook("auth.otp_required", "_offer"),
            Hook("user.post_change", "_user_changed"),
        )
        publishes = ("user.second_factors_changed",)
        mechanisms = (Mechanism("WEBAUTHN", WebauthnAssertion, "_assertion", starts_login=False),)
        second_factors = (SecondFactor("WEBAUTHN", "has_passkey"),)

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        self.settings = middleware.settings_of(WebauthnSettings)
        #: Passkeys per user id, kept in step with the table (``has_passkey`` is asked
        #: for every row of a user listing).
        self._counts: Counter[int] = Counter()
        #: Registration in progress per session id.
        self._registrations: dict[str, _Registration] = {}
        self._check_relying_party()

    def _check_relying_party(self) -> None:
        """Refuse, at start-up, settings with which no browser could use a passkey.

        Raises:
            StartupError: an origin that is not on the (configured or derived) rp id or
                a subdomain of it (WebAuthn L3 §5.1.4.1); a ``webauthn_rp_id`` other than
                localhost whose derived origin would be plain http (browsers allow
                WebAuthn only in a secure context).
        """
        rp_id, origins = self.relying_party()
        for origin in self.settings.webauthn_origins:
            host = urlsplit(origin).hostname or ""
            if host != rp_id and not host.endswith("." + rp_id):
                raise StartupError(
                    f"invalid settings: webauthn_origins: {origin[:100]!r} is not on the rp "
                    f"id {rp_id!r} or a subdomain of it; set webauthn_rp_id to the name "
                    "users reach the UI by (docs/passkeys.md)"
                )
        if self.settings.webauthn_rp_id and not self.settings.webauthn_origins:
            if not _is_localhost(rp_id) and not self.middleware.settings.tls:
                raise StartupError(
                    f"invalid settings: webauthn_rp_id {rp_id!r} needs tls = true: browsers "
                    "allow passkeys over http only on localhost (or set webauthn_origins to "
                    "the https origin of a reverse proxy; docs/passkeys.md)"
                )

    async def setup(self) -> None:
        rows = await self.middleware.db.fetch_all(
            "SELECT user_id, count(*) FROM webauthn_credentials GROUP BY user_id"
        )
        self._counts = Counter({int(r[0]): int(r[1]) for r in rows})
        # Every WebAuthn origin, configured or derived from webauthn_rp_id, is an allowed
        # Origin for the WebSocket too (API.md §1, §12).
        self.middleware.origin_providers.append(lambda: set(self.relying_party()[1]))

    async def start(self) -> None:
        rp_id, origins = self.relying_party()
        logger.info("passkeys: rp id %s, origins %s", rp_id, ", ".join(origins))
        insecure = [
            o
            for o in origins
            if o.startswith("http://") and not _is_localhost(urlsplit(o).hostname)
        ]
        if insecure:
            logger.warning(
                "passkeys cannot work at %s: browsers allow WebAuthn over http only on "
                "localhost; turn tls on to use them by that name (docs/passkeys.md)",
                ", ".join(insecure),
            )

    # -- the relying party ---------------------------------------------------------------

    def relying_party(self) -> tuple[str, list[str]]:
        """``(rp id, allowed origins)`` (API.md §12): the settings, or from the listener:
        on a loopback listener ``localhost`` and ``http(s)://localhost:PORT``; otherwise
        the fully qualified host name (the short one without a domain) and the daemon's
        origin by that name (no port when it is the scheme's default)."""
        settings = self.middleware.settings
        port = self.middleware.listen_port or settings.port
        scheme = "https" if settings.tls else "http"
        host = settings.host.strip("[]").lower()
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if self.settings.webauthn_rp_id:
            rp_id = self.settings.webauthn_rp_id
        elif loopback:
            rp_id = "localhost"
        else:
            # The fully qualified name when there is one: a browser that opened the UI
            # by it can use an rp id it ends with, not the short name.
            fqdn = _fqdn()
            rp_id = fqdn if "." in fqdn else self.middleware.hostname.lower()
        if self.settings.webauthn_origins:
            return rp_id, list(self.settings.webauthn_origins)
        default = 443 if scheme == "https" else 80
        return rp_id, [f"{scheme}://{rp_id}" + ("" if port == default else f":{port}")]

    def has_passkey(self, user_id: int) -> bool:
        """Second-factor kind ``WEBAUTHN``: the user has at least one passkey."""
        return self._counts.get(user_id, 0) > 0

    async def passkeys(self, user_id: int) -> list[PasskeyRow]:
        """The user's passkeys, oldest first."""
        rows = await self.middleware.db.fetch_all(
            f"{_SELECT} WHERE user_id = ? ORDER BY id", (user_id,)
        )
        return [_row(r) for r in rows]

    async def _recount(self, user_id: int) -> None:
        found = await self.middleware.db.fetch_one(
            "SELECT count(*) FROM webauthn_credentials WHERE user_id = ?", (user_id,)
        )
        count = int(found[0]) if found is not None else 0
        if count:
            self._counts[user_id] = count
        else:
            self._counts.pop(user_id, None)

    async def _handle(self, user_id: int) -> bytes:
        """The account's WebAuthn user handle, made on first use."""
        db = self.middleware.db
        found = await db.fetch_one(
            "SELECT handle FROM webauthn_users WHERE user_id = ?", (user_id,)
        )
        if found is not None:
            return bytes(found[0])
        try:
            await db.write(
                "INSERT OR IGNORE INTO webauthn_users (user_id, handle) VALUES (?, ?)",
                (user_id, os.urandom(USER_HANDLE_BYTES)),
            )
        except sqlite3.IntegrityError:  # the account was deleted meanwhile (foreign key)
            raise CallError("The account was deleted", ENOENT) from None
        found = await db.fetch_one(
            "SELECT handle FROM webauthn_users WHERE user_id = ?", (user_id,)
        )
        if found is None:  # the account went away meanwhile
            raise CallError("The account was deleted", ENOENT)
        return bytes(found[0])

    # -- API: registration ----------------------------------------------------------------

    async def _own_target(self, ctx: CallContext, username: str) -> UserRow:
        """``username``'s row when it is the caller's own account, from a session that
        may change its second factors (API.md §9)."""
        users = self.middleware.service(UserService)
        row = await users.second_factor_target(ctx, username)
        if ctx.identity.user_id != row.id:
            raise CallError(
                "Only the user themself can register a passkey (it is made by their "
                "browser and authenticator)",
                EPERM,
            )
        return row

    @api_method(
        UserWebauthnRegisterBeginArgs,
        UserWebauthnRegisterBeginResult,
        roles=[],
        setup=True,
        audit="Begin passkey registration",
    )
    async def webauthn_register_begin(
        self, ctx: CallContext, username: str, options: PasskeyOptions
    ) -> dict[str, Any]:
        """Start registering a passkey for the caller's own account (API.md §12).

        Returns:
            ``{options}``: PublicKeyCredentialCreationOptions in the WebAuthn JSON form
            (base64url binary fields) for ``navigator.credentials.create()``: ES256, EdDSA
            and RS256, user verification and resident key "preferred", no attestation,
            the account's passkeys in ``excludeCredentials``, a single-use challenge
            valid 5 minutes (a new call replaces it).

        Raises:
            CallError: EPERM for another user's name; ENOENT; EACCES from a session
                without the second factor the user has (API.md §9).
            ValidationErrors: ``user_webauthn_register_begin.options.name`` (1..64
                printable characters), or the account holds the most passkeys allowed.
        """
        row = await self._own_target(ctx, username)
        existing = await self.passkeys(row.id)
        if len(existing) >= MAX_PASSKEYS:
            raise ValidationError(
                "user_webauthn_register_begin.options.name",
                f"An account holds at most {MAX_PASSKEYS} passkeys; delete one first",
            )
        rp_id, _ = self.relying_party()
        config = await self.middleware.service(TwoFactorService).get_config()
        handle = await self._handle(row.id)
        creation = generate_registration_options(
            rp_id=rp_id,
            rp_name=config.issuer,
            user_name=row.username,
            user_id=handle,
            user_display_name=row.full_name or row.username,
            challenge=os.urandom(CHALLENGE_BYTES),
            timeout=int(CHALLENGE_TTL * 1000),
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[_descriptor(p) for p in existing],
            supported_pub_key_algs=ALGORITHMS,
        )
        now = self.middleware.clock.time()
        self._purge(now)
        self._registrations[ctx.session.id] = _Registration(
            row.id,
            row.generation,
            options.name,
            creation.challenge,
            now + CHALLENGE_TTL,
        )
        return {"options": options_to_json_dict(creation)}

    def _purge(self, now: float) -> None:
        for key in [k for k, r in self._registrations.items() if r.expires <= now]:
            del self._registrations[key]

    @api_method(
        UserWebauthnRegisterFinishArgs,
        UserWebauthnRegisterFinishResult,
        roles=[],
        setup=True,
        audit="Register passkey",
    )
    async def webauthn_register_finish(
        self, ctx: CallContext, username: str, credential: dict[str, Any]
    ) -> dict[str, Any]:
        """Verify the browser's answer to :meth:`webauthn_register_begin` and store the
        passkey (API.md §12): client data type ``webauthn.create``, the challenge (used
        up by this call, right or wrong), an allowed origin, the rp id hash, user
        presence, an offered algorithm. Then the user's other sessions, tokens and
        pending logins end (API.md §9), and a user's first passkey makes this session
        ``LEVEL_2`` (API.md §4).

        Returns:
            The PasskeyEntry ``{id, credential_id, name, created_at, last_used_at}``.

        Raises:
            ValidationErrors: a bad, replayed or expired response, or a passkey
                registered already: on ``user_webauthn_register_finish.credential``.
            CallError: EPERM, ENOENT, EACCES as :meth:`webauthn_register_begin`.
        """
        attribute = "user_webauthn_register_finish.credential"
        row = await self._own_target(ctx, username)
        now = self.middleware.clock.time()
        registration = self._registrations.pop(ctx.session.id, None)
        if registration is None or registration.expires <= now or registration.user_id != row.id:
            raise ValidationError(
                attribute,
                "No passkey registration in progress (it expired, was used, or was "
                "never started): call user.webauthn_register_begin again",
            )
        rp_id, origins = self.relying_party()
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=registration.challenge,
                expected_rp_id=rp_id,
                expected_origin=origins,
                require_user_presence=True,
                supported_pub_key_algs=ALGORITHMS,
            )
        except Exception as exc:  # the library's checks, and malformed input
            logger.info("user %s: passkey registration refused: %s", row.username, _refusal(exc))
            raise ValidationError(
                attribute, f"Passkey registration refused: {_refusal(exc)}"
            ) from None
        try:
            # A key that cannot be loaded could never verify a login (attestation
            # "none" does not prove it): refuse it now rather than count it as a factor.
            decoded_public_key_to_cryptography(
                decode_credential_public_key(verified.credential_public_key)
            )
        except Exception:
            raise ValidationError(
                attribute, "Passkey registration refused: the public key is not usable"
            ) from None
        if len(verified.credential_id) > MAX_CREDENTIAL_ID:
            raise ValidationError(
                attribute,
                f"Passkey registration refused: a credential id longer than "
                f"{MAX_CREDENTIAL_ID} bytes (WebAuthn L3 §7.1)",
            )
        transports = _transports(credential)
        if row.generation != registration.generation:
            # The account's credentials changed after the options were made.
            raise ValidationError(
                attribute, "The account changed during the registration; start again"
            )
        try:
            written = await self.middleware.db.write_atomic(
                [
                    (
                        "UPDATE users SET generation = generation + 1 "
                        "WHERE id = ? AND generation = ?",
                        (row.id, row.generation),
                        True,
                    ),
                    (
                        "INSERT INTO webauthn_credentials (user_id, credential_id, "
                        "public_key, sign_count, transports, name, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            row.id,
                            verified.credential_id,
                            verified.credential_public_key,
                            verified.sign_count,
                            json.dumps(transports),
                            registration.name,
                            now,
                        ),
                        True,
                    ),
                ]
            )
        except sqlite3.IntegrityError:
            raise ValidationError(attribute, "This passkey is registered already") from None
        if written is None:
            await after_stale_write(ctx)
            raise ValidationError(
                attribute, "The account changed during the registration; start again"
            )
        passkey_id = written[1][1]
        self._counts[row.id] += 1
        end_derived_credentials(ctx, row.id, row.generation + 1, keep_own=True)
        users = self.middleware.service(UserService)
        new = await users.second_factors_changed(ctx, row)
        if ctx.identity.level != "LEVEL_2":
            users.upgrade_session(ctx, new)
        logger.info("user %s: passkey %s registered", new.username, passkey_id)
        stored = await self.middleware.db.fetch_one(f"{_SELECT} WHERE id = ?", (passkey_id,))
        if stored is None:
            raise CallError("The passkey was deleted meanwhile", ENOENT)
        return entry(_row(stored))

    # -- API: list and delete ---------------------------------------------------------------

    @api_method(UserWebauthnListArgs, UserWebauthnListResult, roles=[])
    async def webauthn_list(self, ctx: CallContext, username: str) -> list[dict[str, Any]]:
        """The user's passkeys, oldest first: PasskeyEntry list (API.md §12).

        Self, or FULL_ADMIN (API.md §12).

        Raises:
            CallError: EPERM, ENOENT, EACCES (API.md §9).
        """
        row = await self.middleware.service(UserService).second_factor_target(ctx, username)
        return [entry(p) for p in await self.passkeys(row.id)]

    @api_method(
        UserWebauthnDeleteArgs,
        UserWebauthnDeleteResult,
        roles=[],
        audit="Delete passkey",
        audit_extended=lambda username, id: f"{username[:64]} (passkey {id})",
    )
    async def webauthn_delete(self, ctx: CallContext, username: str, id: int) -> bool:
        """Delete passkey ``id`` of ``username``; the user's sessions other than the
        caller's, their tokens and pending logins end (API.md §9, §12). Self, or
        FULL_ADMIN within the role guard.

        Returns:
            true.

        Raises:
            ValidationErrors: on ``user_webauthn_delete.id`` when it is the user's last
                second factor while ``enforce`` is on (no TOTP secret, no other passkey:
                register another factor first).
            CallError: ENOENT for a passkey the user does not have; EPERM, EACCES.
        """
        users = self.middleware.service(UserService)
        for _ in range(GUARDED_ATTEMPTS):
            row = await users.second_factor_target(ctx, username)
            keys = await self.passkeys(row.id)
            if not any(k.id == id for k in keys):
                raise CallError(f"{username[:64]!r} has no passkey {id}", ENOENT)
            config = await self.middleware.service(TwoFactorService).get_config()
            # The generation guard below makes this hold in the transaction: adding or
            # deleting a passkey or changing the secret bumps the generation.
            if config.enabled and config.enforce and row.totp_secret is None and len(keys) == 1:
                raise ValidationError(
                    "user_webauthn_delete.id",
                    f"This is the last second factor of {row.username!r} and two-factor "
                    "authentication is enforced: register another passkey or a TOTP "
                    "secret first",
                )
            statements: list[tuple[str, tuple[Any, ...], bool]] = [
                (
                    "UPDATE users SET generation = generation + 1 WHERE id = ? AND generation = ?",
                    (row.id, row.generation),
                    True,
                ),
                (
                    "DELETE FROM webauthn_credentials WHERE id = ? AND user_id = ?",
                    (id, row.id),
                    True,
                ),
            ]
            caller = ctx.identity
            if caller.user_id is not None and caller.user_id != row.id:
                statements.insert(
                    0,
                    (
                        "UPDATE users SET generation = generation WHERE id = ? AND generation = ?",
                        (caller.user_id, caller.generation),
                        True,
                    ),
                )
            if await self.middleware.db.write_atomic(statements) is not None:
                break
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        await self._recount(row.id)
        end_derived_credentials(ctx, row.id, row.generation + 1, keep_own=True)
        new = await users.second_factors_changed(ctx, row)
        await self.middleware.hooks.run("user.second_factors_changed", ctx, new)
        logger.info("user %s: passkey %s deleted", row.username, id)
        return True

    # -- login ------------------------------------------------------------------------------

    async def _offer(
        self, ctx: CallContext, user: UserRow, pending: PendingStep
    ) -> dict[str, Any] | None:
        """Hook ``auth.otp_required``: ``webauthn: {options}`` with a fresh challenge
        bound to ``pending`` for a user with passkeys (API.md §12)."""
        if not self.has_passkey(user.id):
            pending.factors.pop(_FACTOR, None)
            return None
        keys = await self.passkeys(user.id)
        rp_id, _ = self.relying_party()
        request = generate_authentication_options(
            rp_id=rp_id,
            challenge=os.urandom(CHALLENGE_BYTES),
            timeout=int(CHALLENGE_TTL * 1000),
            allow_credentials=[_descriptor(k) for k in keys],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        pending.factors[_FACTOR] = _Challenge(
            request.challenge, self.middleware.clock.time() + CHALLENGE_TTL
        )
        return {"webauthn": {"options": options_to_json_dict(request)}}

    async def _assertion(self, ctx: CallContext, data: WebauthnAssertion) -> dict[str, Any]:
        """Mechanism ``WEBAUTHN``: the step after OTP_REQUIRED with a passkey."""

        async def check(
            user: UserRow, offered: dict[str, Any], current: Any
        ) -> tuple[StepProof | None, str]:
            challenge = offered.get(_FACTOR)  # taken off the step by the frame: spent
            if not isinstance(challenge, _Challenge):
                return None, (
                    "passkey assertion without a challenge (none offered, or spent by "
                    "another answer to the step)"
                )
            if challenge.expires <= self.middleware.clock.time():
                return None, "passkey assertion for an expired challenge"
            return await self._verify(user, data.credential, challenge.challenge)

        return await self.middleware.service(AuthService).second_step(
            ctx, data.login_options, check, mechanism="WEBAUTHN"
        )

    async def _verify(
        self, user: UserRow, credential: dict[str, Any], challenge: bytes
    ) -> tuple[StepProof | None, str]:
        raw_id = from_b64url(credential.get("rawId") or credential.get("id") or "")
        if raw_id is None:
            return None, "passkey assertion without a credential id"
        found = await self.middleware.db.fetch_one(
            f"{_SELECT} WHERE credential_id = ? AND user_id = ?", (raw_id, user.id)
        )
        if found is None:
            return None, "passkey assertion from an authenticator not registered for the user"
        key = _row(found)
        response = credential.get("response")
        handle = response.get("userHandle") if isinstance(response, dict) else None
        if handle is not None:
            # WebAuthn L3 §7.2 step 6: a user handle, when given, is the account's.
            if from_b64url(handle) != await self._handle(user.id):
                return None, "passkey assertion with another account's user handle"
        rp_id, origins = self.relying_party()
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origins,
                credential_public_key=key.public_key,
                # 0: the library's own count check runs before the signature; ours
                # below runs after it, so only a signed count can raise the alert.
                credential_current_sign_count=0,
                require_user_verification=False,
            )
        except Exception as exc:
            return None, f"wrong passkey assertion ({_refusal(exc)})"
        new_count = verified.new_sign_count
        if (key.sign_count > 0 or new_count > 0) and new_count <= key.sign_count:
            self._clone_suspected(user, key, new_count)
            return None, (
                f"passkey {key.id} sign count {new_count} not above {key.sign_count}: "
                "possibly a cloned authenticator"
            )
        used, _ = await self.middleware.db.write(
            "UPDATE webauthn_credentials SET sign_count = ?, last_used_at = ? "
            "WHERE id = ? AND sign_count = ?",
            (new_count, self.middleware.clock.time(), key.id, key.sign_count),
        )
        if used != 1:
            return None, f"passkey {key.id} was used by another login at the same moment"
        return (
            StepProof(
                "LOGIN_TWOFACTOR",
                "LEVEL_2",
                f"password and passkey login (passkey {key.id})",
                second_factor="WEBAUTHN",
            ),
            "ok",
        )

    def _clone_suspected(self, user: UserRow, key: PasskeyRow, count: int) -> None:
        logger.warning(
            "user %s: passkey %s answered sign count %d, not above %d: possibly cloned",
            user.username,
            key.id,
            count,
            key.sign_count,
        )
        self.middleware.service(AlertService).raise_alert(
            CLONE_ALERT,
            "CRITICAL",
            f"Passkey {key.name!r} of user {user.username!r} signed a login with a "
            f"counter that went back ({count} after {key.sign_count}): the authenticator "
            "may have been cloned. The login was refused; delete the passkey if the user "
            "did not expect this.",
            key=f"{user.username}:{key.id}",
        )

    # -- hooks -----------------------------------------------------------------------------

    async def _user_changed(
        self, ctx: CallContext, old: UserRow | None, new: UserRow | None
    ) -> None:
        """Hook ``user.post_change``: a deleted account's passkeys went with it (the
        foreign keys cascade); forget its count and its registration."""
        if old is not None and new is None:
            self._counts.pop(old.id, None)
            for key in [k for k, r in self._registrations.items() if r.user_id == old.id]:
                del self._registrations[key]


def _is_localhost(name: str | None) -> bool:
    """``localhost`` or a name under it: a secure context over plain http (W3C Secure
    Contexts §3.2, RFC 6761 §6.3), where browsers allow WebAuthn without TLS."""
    name = (name or "").lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _transports(credential: dict[str, Any]) -> list[str]:
    response = credential.get("response")
    values = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(values, list):
        return []
    known = {t.value for t in AuthenticatorTransport}
    return [v for v in values if isinstance(v, str) and v in known][:8]


def _fqdn() -> str:
    import socket

    return socket.getfqdn().lower()
