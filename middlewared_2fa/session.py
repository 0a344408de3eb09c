"""Sessions and the session registry (API.md §9).

Every connection has a :class:`Session`; an authenticated one has an :class:`Identity`
(who, with which credential, at which assurance level, from which *credential
generation*). The :class:`SessionRegistry` is the framework's single list of connections
and re-login tokens. A change of a user's password, secret, roles, lock or existence
bumps the user's generation in the same database transaction; the registry then ends
every session and token of an older generation (:meth:`SessionRegistry.credentials_changed`),
and a login that read the account before the change is refused when it registers
(:meth:`SessionRegistry.login`): one mechanism, whatever the order of events.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from middlewared_2fa import roles as _roles
from middlewared_2fa.clock import Clock

logger = logging.getLogger(__name__)

Credentials = Literal[
    "LOGIN_PASSWORD",
    "LOGIN_TWOFACTOR",
    "LOGIN_ONETIME_PASSWORD",
    "API_KEY",
    "TOKEN",
    "UNIX_SOCKET",
]
Level = Literal["LEVEL_1", "LEVEL_2"]

#: Live re-login tokens one session may hold; the oldest is dropped beyond that.
TOKENS_PER_SESSION = 16
#: Live tokens in all; expired ones are swept when this is reached, then the oldest go.
MAX_TOKENS = 10000


@dataclass(slots=True, frozen=True)
class Proof:
    """How a principal proved who it is: the credential of a login (API.md §9).

    Attributes:
        credentials: Credential type of the login that made it.
        level: ``LEVEL_2`` after two factors (password + OTP), else ``LEVEL_1``.
        login_id: Random id of that login (shown in ``credentials_data``).
        login_at: Unix time of that login (s).
    """

    credentials: Credentials
    level: Level
    login_id: str
    login_at: float


@dataclass(slots=True)
class Identity:
    """An authenticated principal.

    Attributes:
        user_id: The account's id; None for the built-in root of the Unix socket.
        username: The account's name when the session began.
        roles: The account's roles when the session began (a role change ends it).
        credentials: Credential type of this session (``TOKEN`` for a token login).
        level: Assurance level (a token inherits its parent's).
        generation: The account's credential generation the login was checked against.
        proof: This session's own login.
        parent: For ``TOKEN``: the login the token descends from (never a token itself).
        setup_only: The session may only set up a second factor (API.md §4 ``enforce``,
            §10): the dispatcher refuses every method not declared ``setup=True``.
        attributes: ``account_attributes`` of this session besides the account's own
            (``OTPW``, ``PASSWORD_CHANGE_REQUIRED``).
        second_factor: ``credentials_data.second_factor`` (``RECOVERY_CODE``), or None.
        api_key: ``(id, name)`` of the API key of an ``API_KEY`` session (API.md §9, §11).
        expires_at: Unix time after which the session's credential is void (an API key's
            ``expires_at``); the dispatcher ends the session at its next call.
    """

    user_id: int | None
    username: str
    roles: list[str]
    credentials: Credentials
    level: Level = "LEVEL_1"
    generation: int = 0
    proof: Proof | None = None
    parent: Proof | None = None
    setup_only: bool = False
    attributes: tuple[str, ...] = ()
    second_factor: str | None = None
    api_key: tuple[int, str] | None = None
    expires_at: float | None = None
    _granted: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked on every call and every forwarded event: expand once.
        self._granted = _roles.expand(self.roles)
        if self.proof is None:
            self.proof = Proof(self.credentials, self.level, secrets.token_hex(8), 0.0)

    @property
    def granted(self) -> frozenset[str]:
        """Roles with their inclusions expanded."""
        return self._granted

    @property
    def is_full_admin(self) -> bool:
        return _roles.FULL_ADMIN in self.roles

    @property
    def root(self) -> Proof:
        """The login this identity ultimately rests on (the parent of a token session)."""
        assert self.proof is not None
        return self.parent or self.proof


@dataclass(slots=True)
class PendingStep:
    """A login that is half done: its first step succeeded and the session waits for the
    next (the OTP step after a password, API.md §3). A login mechanism keeps its own
    state in a subclass; the registry only drops it.

    ``generation`` is the account's credential generation at the first step: a change of
    the account's credentials drops the step (API.md §9). ``expires`` is the Unix time
    after which the step is gone. ``factors`` holds second-factor plugins' state of this
    very step (the WebAuthn challenge it was offered, API.md §12), by plugin name.
    """

    user_id: int
    username: str
    generation: int
    expires: float
    factors: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Session:
    """State of one WebSocket connection.

    Args:
        address: Client address used for rate limiting (IP for TCP, ``unix:UID`` otherwise).
        transport: ``"tcp"`` or ``"unix"``.
        origin: ``"127.0.0.1:PORT"`` or ``"UNIX_SOCKET uid N"`` (API.md §9).
        secure: TLS or the Unix socket.
        created_at: Unix time the connection was accepted (s).
    """

    address: str
    transport: Literal["tcp", "unix"]
    origin: str = ""
    secure: bool = False
    #: The RFC 5929 tls-server-end-point channel-binding data of the certificate served
    #: on this TLS connection: the certificate's hash with its signature's hash
    #: algorithm, SHA-256 when that is MD5/SHA-1; None for plaintext and the Unix socket.
    tls_end_point: bytes | None = None
    created_at: float = 0.0
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    identity: Identity | None = None
    pending: PendingStep | None = None
    #: The generation of the secret this session set itself (user.renew_2fa_secret):
    #: it may show that secret's QR code until anything else changes (API.md §9).
    enrolled_generation: int | None = None
    #: Why the last one-time code sent in this session was refused: "REUSED" (right, but
    #: its time step was used already) or "WRONG"; None after an accepted one. Read by
    #: ``auth.last_code_refusal``: only the session that sent the code learns it.
    code_refusal: Literal["REUSED", "WRONG"] | None = None

    @property
    def authenticated(self) -> bool:
        return self.identity is not None

    @property
    def granted(self) -> frozenset[str]:
        """The session's roles, expanded. A setup-only session holds none (API.md §4): a
        FULL_ADMIN who logged in with a one-time password neither calls nor receives
        (events) anything of others until a second factor is set up."""
        identity = self.identity
        if identity is None or identity.setup_only:
            return frozenset()
        return identity.granted

    @property
    def username(self) -> str | None:
        return self.identity.username if self.identity else None

    @property
    def setup_only(self) -> bool:
        """Logged in, but only to set up a second factor (API.md §4 ``enforce``, §10)."""
        return self.identity is not None and self.identity.setup_only


class Endpoint(Protocol):
    """What the registry needs from a connection (server.Connection)."""

    session: Session

    def set_identity(self, identity: Identity | None) -> None:
        """Log the session in or out (the listener adjusts its limits)."""

    def end(self) -> None:
        """Close the connection: WebSocket close 1008 "session ended" (API.md §9)."""


@dataclass(slots=True)
class Token:
    """A re-login token (``auth.generate_token`` or a reconnect token; API.md §3, §9).

    Attributes:
        user_id: The account (None: the Unix-socket root).
        username: Its name when the token was made.
        roles: Its roles then (a role change ends the token).
        generation: The account's credential generation then.
        parent: The login the token descends from; its level is the token's.
        expires: Unix time after which it is void (s).
        origin: Client address the token is bound to, or None (``match_origin=false``).
        single_use: Spent by its first login.
        session_id: The session that made it (its logout ends the token).
        api_key: ``(id, name)`` of the API key the parent login used, or None: the token
            and its sessions end with that key (API.md §9, §11).
        key_expires_at: That key's expiry (Unix time), or None.
    """

    user_id: int | None
    username: str
    roles: list[str]
    generation: int
    parent: Proof
    expires: float
    origin: str | None
    single_use: bool
    session_id: str
    api_key: tuple[int, str] | None = None
    key_expires_at: float | None = None


class StaleCredential(Exception):
    """The account changed after the login read it: the login must answer AUTH_ERR."""


class SessionRegistry:
    """All connections and re-login tokens of the daemon (API.md §9).

    Args:
        clock: Time source (token expiry).
        on_change: Called with ``("added"|"removed", session)`` when a session logs in
            or ends (the ``auth.sessions`` event).
    """

    def __init__(
        self, clock: Clock, on_change: Callable[[str, Session], None] | None = None
    ) -> None:
        self.clock = clock
        self._endpoints: dict[str, Endpoint] = {}
        self._tokens: dict[str, Token] = {}
        #: user id -> the newest credential generation the registry was told about.
        self._generations: dict[int, int] = {}
        self.on_change = on_change

    # -- connections -------------------------------------------------------------------

    def add(self, endpoint: Endpoint) -> None:
        """A new connection (not logged in yet, or the Unix-socket root)."""
        self._endpoints[endpoint.session.id] = endpoint
        if endpoint.session.identity is not None:
            self._changed("added", endpoint.session)

    def remove(self, endpoint: Endpoint) -> None:
        """A closed connection. Its tokens stay (they exist to survive a reload)."""
        if self._endpoints.pop(endpoint.session.id, None) is None:
            return
        if endpoint.session.identity is not None:
            self._changed("removed", endpoint.session)

    def sessions(self) -> Iterator[Session]:
        """Every authenticated session."""
        for endpoint in list(self._endpoints.values()):
            if endpoint.session.identity is not None:
                yield endpoint.session

    def get(self, session_id: str) -> Session | None:
        """The authenticated session ``session_id``, or None."""
        endpoint = self._endpoints.get(session_id)
        if endpoint is None or endpoint.session.identity is None:
            return None
        return endpoint.session

    # -- logging in and out ------------------------------------------------------------

    def login(self, endpoint: Endpoint, identity: Identity) -> None:
        """Make ``identity`` the session's principal.

        Raises:
            StaleCredential: the account's credentials changed after ``identity`` was
                built (its generation is older than one the registry has seen).
        """
        user_id = identity.user_id
        if user_id is not None and identity.generation < self._generations.get(user_id, -1):
            raise StaleCredential()
        was = endpoint.session.identity
        endpoint.session.pending = None
        endpoint.set_identity(identity)
        if was is not None:
            self._changed("removed", endpoint.session, was)
        self._changed("added", endpoint.session)

    def logout(self, endpoint: Endpoint) -> None:
        """Log the session out (connection stays open); its tokens end."""
        self.withdraw_tokens(endpoint.session.id)
        was = endpoint.session.identity
        endpoint.session.pending = None
        endpoint.set_identity(None)
        if was is not None:
            self._changed("removed", endpoint.session, was)

    def end(self, session_id: str) -> bool:
        """End session ``session_id``: logged out, its tokens withdrawn, its connection
        closed (1008 "session ended"). False when there is no such session."""
        endpoint = self._endpoints.get(session_id)
        if endpoint is None or endpoint.session.identity is None:
            return False
        self.logout(endpoint)
        endpoint.end()
        return True

    # -- credential changes ------------------------------------------------------------

    def generation(self, user_id: int) -> int | None:
        """The newest generation the registry was told about for ``user_id``, or None."""
        return self._generations.get(user_id)

    def credentials_changed(
        self,
        user_id: int,
        generation: int,
        *,
        keep: Session | None = None,
        spare_api_keys: bool = False,
    ) -> int:
        """The account ``user_id`` is now at ``generation`` (bumped in the database,
        already committed): every session, pending OTP step and token of an older
        generation ends, except the session ``keep`` (the caller changing its own
        password or secret), which moves to the new generation.

        Use ``generation`` = a very large number for a deleted account.

        ``spare_api_keys``: the change was of the password or the second factor, which API
        keys do not derive from (API.md §9): ``API_KEY`` sessions move to the new
        generation instead of ending (a role change, a lock or a deletion ends them).

        Returns:
            How many sessions were ended.
        """
        known = self._generations.get(user_id, -1)
        self._generations[user_id] = max(known, generation)
        generation = self._generations[user_id]
        ended = 0
        for endpoint in list(self._endpoints.values()):
            session = endpoint.session
            pending = session.pending
            if (
                pending is not None
                and pending.user_id == user_id
                and pending.generation < generation
            ):
                session.pending = None
            identity = session.identity
            if identity is None or identity.user_id != user_id or identity.generation >= generation:
                continue
            if (keep is not None and session is keep) or (
                spare_api_keys and identity.credentials == "API_KEY"
            ):
                identity.generation = generation
                continue
            self.logout(endpoint)
            endpoint.end()
            ended += 1
        for key in [
            k for k, t in self._tokens.items() if t.user_id == user_id and t.generation < generation
        ]:
            del self._tokens[key]
        if ended:
            logger.info("user id %s: %d session(s) ended by a credential change", user_id, ended)
        return ended

    # -- tokens ------------------------------------------------------------------------

    def issue_token(
        self,
        session: Session,
        ttl: float,
        *,
        origin: str | None,
        single_use: bool,
    ) -> str:
        """A new re-login token for ``session``'s principal, valid ``ttl`` seconds.

        A token made by a token session descends from the same parent login (tokens
        never chain to tokens), with the same generation, so it ends with it.
        """
        identity = session.identity
        assert identity is not None
        now = self.clock.time()
        mine = [k for k, t in self._tokens.items() if t.session_id == session.id]
        for key in mine[: max(0, len(mine) - TOKENS_PER_SESSION + 1)]:  # oldest first
            del self._tokens[key]
        if len(self._tokens) >= MAX_TOKENS:
            self._tokens = {k: t for k, t in self._tokens.items() if t.expires > now}
            while len(self._tokens) >= MAX_TOKENS:
                del self._tokens[next(iter(self._tokens))]
        value = secrets.token_urlsafe(32)
        expires = now + ttl
        if identity.expires_at is not None:
            expires = min(expires, identity.expires_at)  # never outlives its credential
        self._tokens[value] = Token(
            user_id=identity.user_id,
            username=identity.username,
            roles=list(identity.roles),
            generation=identity.generation,
            parent=identity.root,
            expires=expires,
            origin=origin,
            single_use=single_use,
            session_id=session.id,
            api_key=identity.api_key,
            key_expires_at=identity.expires_at,
        )
        return value

    def redeem_token(self, value: str, address: str) -> Token | None:
        """The live token ``value`` usable from ``address`` (a single-use one is spent);
        None when unknown, expired, withdrawn or bound to another address."""
        token = self._tokens.get(value)
        if token is None:
            return None
        if token.expires <= self.clock.time():
            del self._tokens[value]
            return None
        if token.origin is not None and token.origin != address:
            return None
        if token.single_use:
            del self._tokens[value]
        return token

    def end_api_key(self, key_id: int) -> int:
        """API key ``key_id`` was deleted, reset, re-dated or revoked: every session that
        rests on it (its own logins and the token sessions derived from them) and every
        token made from them end. Returns how many sessions ended."""
        ended = 0
        for endpoint in list(self._endpoints.values()):
            identity = endpoint.session.identity
            if identity is not None and identity.api_key and identity.api_key[0] == key_id:
                self.logout(endpoint)
                endpoint.end()
                ended += 1
        for key in [k for k, t in self._tokens.items() if t.api_key and t.api_key[0] == key_id]:
            del self._tokens[key]
        return ended

    def withdraw_tokens(self, session_id: str) -> None:
        """End every token made by session ``session_id``."""
        for key in [k for k, t in self._tokens.items() if t.session_id == session_id]:
            del self._tokens[key]

    # -- internals ---------------------------------------------------------------------

    def _changed(self, msg: str, session: Session, identity: Identity | None = None) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(msg, session if identity is None else _snapshot(session, identity))
        except Exception:
            logger.exception("auth.sessions listener failed")


def _snapshot(session: Session, identity: Identity) -> Session:
    """A copy of ``session`` as it was with ``identity`` (for a "removed" event)."""
    copy = Session(
        address=session.address,
        transport=session.transport,
        origin=session.origin,
        secure=session.secure,
        created_at=session.created_at,
        id=session.id,
    )
    copy.identity = identity
    return copy


def describe(session: Session, *, current: bool) -> dict[str, Any]:
    """``AuthSessionsEntry`` of an authenticated ``session`` (API.md §9); datetimes are
    Unix seconds here (the result model turns them into ``{"$date": ms}``)."""
    identity = session.identity
    assert identity is not None and identity.proof is not None
    data: dict[str, Any] = {
        "username": identity.username,
        "login_id": identity.proof.login_id,
        "login_at": identity.proof.login_at,
    }
    if identity.second_factor is not None:
        data["second_factor"] = identity.second_factor
    if identity.api_key is not None:
        data["api_key"] = {"id": identity.api_key[0], "name": identity.api_key[1]}
    if identity.credentials == "TOKEN" and identity.parent is not None:
        data["parent"] = {
            "credentials": identity.parent.credentials,
            "credentials_data": {
                "username": identity.username,
                "login_id": identity.parent.login_id,
                "login_at": identity.parent.login_at,
            },
        }
    return {
        "id": session.id,
        "current": current,
        "internal": False,
        "origin": session.origin,
        "credentials": identity.credentials,
        "credentials_data": data,
        "created_at": session.created_at,
        "secure_transport": session.secure,
    }
