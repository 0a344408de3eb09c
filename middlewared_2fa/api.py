"""Service base class and the ``@api_method`` decorator; the registry is built from them.

A public method is declared once::

    class TwoFactorService(Service):
        class Config:
            namespace = "auth.twofactor"

        @api_method(TwoFactorConfigArgs, TwoFactorConfigResult, roles=["SYSTEM_SECURITY_READ"])
        async def config(self, ctx: CallContext) -> dict: ...

``Args`` models have one field per positional parameter, in order; ``Result`` models have
one field ``result``. A method without models or roles fails at load time.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel

from middlewared_2fa.errors import NotAuthenticated
from middlewared_2fa.events import Subscriber
from middlewared_2fa.roles import ROLES
from middlewared_2fa.session import Endpoint

if TYPE_CHECKING:
    from middlewared_2fa.middleware import Middleware
    from middlewared_2fa.session import Identity, Session


class CallerConnection(Endpoint, Subscriber, Protocol):
    """The caller's connection as methods see it: the session registry logs it in and
    out and ends it, the event hub sends it notifications (server.Connection)."""


@dataclass(slots=True)
class CallContext:
    """What a method gets besides its parameters.

    Attributes:
        middleware: The daemon (repositories, clock, events, settings, other services).
        session: The caller's session (identity, pending OTP step, address).
        method: Full method name, e.g. ``user.renew_2fa_secret``.
        connection: The caller's connection (the session registry logs it in, the event
            hub sends it notifications); None for internal calls.
        step_current: During a login step's verifiers: whether that step is still the
            session's. A verifier that uses a credential up asks it right before doing so
            (another answer to the same step may have logged in meanwhile). None
            elsewhere.
    """

    middleware: Middleware
    session: Session
    method: str
    connection: CallerConnection | None = None
    step_current: Callable[[], bool] | None = None

    @property
    def identity(self) -> Identity:
        """The caller's principal.

        Raises:
            NotAuthenticated: the session is not logged in.
        """
        identity = self.session.identity
        if identity is None:
            raise NotAuthenticated()
        return identity

    def login(self, identity: Identity) -> None:
        """Make ``identity`` this session's principal, through the session registry.

        Raises:
            StaleCredential: the account changed after ``identity`` was built (API.md §9).
        """
        if self.connection is not None:
            self.middleware.sessions.login(self.connection, identity)
        else:  # an internal call without a connection
            self.session.identity = identity
        self.session.code_refusal = None  # about a code of the login before, if any

    def logout(self) -> None:
        """Log this session out (the connection stays open); its tokens end."""
        if self.connection is not None:
            self.middleware.sessions.logout(self.connection)
        else:
            self.session.identity = None
        self.session.code_refusal = None


@dataclass(slots=True, frozen=True)
class MethodSpec:
    """Metadata attached by :func:`api_method`."""

    accepts: type[BaseModel]
    returns: type[BaseModel]
    roles: tuple[str, ...]
    auth: Literal["required", "none"]
    private: bool
    audit: bool | str
    description: str
    rate_limit: Literal["default", "always", "exempt"] = "default"
    setup: bool = False
    audit_extended: Callable[..., str] | None = None


@dataclass(slots=True)
class RegisteredMethod:
    """A bound method in the registry."""

    name: str
    spec: MethodSpec
    func: Callable[..., Awaitable[Any]]
    params: tuple[str, ...] = field(default=())


class ApiDefinitionError(Exception):
    """A plugin declared a method wrongly; raised when the plugin is loaded."""


def api_method(
    accepts: type[BaseModel],
    returns: type[BaseModel],
    *,
    roles: list[str] | None = None,
    auth: Literal["required", "none"] = "required",
    private: bool = False,
    audit: bool | str = False,
    rate_limit: Literal["default", "always", "exempt"] = "default",
    setup: bool = False,
    audit_extended: Callable[..., str] | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Declare a public JSON-RPC method.

    Args:
        accepts: ``<Thing><Verb>Args`` model, one field per positional parameter.
        returns: ``<Thing><Verb>Result`` model with a single field ``result``.
        roles: Roles of which the caller needs one; ``[]`` means any authenticated
            session. Required unless ``auth="none"``.
        auth: ``"none"`` for methods callable before login.
        private: Not callable over the wire (-32601); for internal calls only.
        audit: Write a METHOD_CALL audit entry for every call (parameters are never
            recorded, only the method name, the outcome and the error name). A string is
            the entry's description (TrueNAS's ``audit=``), default ``call <method>``.
        audit_extended: ``(**params) -> str`` appended to that description (TrueNAS's
            ``audit_extended``: the target's name, never a secret).
        rate_limit: ``"default"``: unauthenticated calls count against the per-address
            limit (API.md §3); ``"always"``: authenticated ones too (login methods, or a
            logged-in user could guess other users' passwords without limit);
            ``"exempt"``: never counted (``core.set_options``, which TrueNAS clients
            send first on every connection).
        setup: Callable from a *setup-only* session (API.md §4 ``enforce``, §10): the
            calls a user needs to set up a second factor (and ``core.*``, ``auth.me``,
            ``auth.logout``). Every other method answers such a session with call error
            EACCES "Two-factor authentication must be set up first". A method that allows
            it and acts on users checks itself that a setup-only caller acts only on
            their own account.
    """

    def decorate(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        func.__api_method__ = MethodSpec(  # type: ignore[attr-defined]
            accepts=accepts,
            returns=returns,
            roles=tuple(roles or ()),
            auth=auth,
            private=private,
            audit=audit,
            rate_limit=rate_limit,
            setup=setup,
            audit_extended=audit_extended,
            description=inspect.cleandoc(func.__doc__ or "").split("\n\n")[0],
        )
        func.__api_roles_given__ = roles is not None  # type: ignore[attr-defined]
        return func

    return decorate


@dataclass(slots=True, frozen=True)
class Migration:
    """One numbered schema change of a plugin, applied once per database.

    Attributes:
        version: 1, 2, ... in order; never edit one that has shipped, append.
        sql: SQL statements (run as one script inside one transaction).
        legacy: For databases from before per-plugin tracking: the global
            ``PRAGMA user_version`` from which this change was already in place
            (None for migrations added since).
    """

    version: int
    sql: str
    legacy: int | None = None


@dataclass(slots=True, frozen=True)
class Role:
    """A role a plugin brings (TrueNAS READ/WRITE pairs).

    Attributes:
        name: Upper-case, starting with one of the plugin's ``Config.role_prefix``.
        includes: Roles granted with it (``ACCOUNT_WRITE`` includes ``ACCOUNT_READ``).
        readonly: Granted by ``READONLY_ADMIN`` (read roles).
    """

    name: str
    includes: tuple[str, ...] = ()
    readonly: bool = False


@dataclass(slots=True, frozen=True)
class Hook:
    """A subscription of one of the service's methods to a hook point.

    Attributes:
        point: The hook point (``user.post_change``).
        method: Name of the service's coroutine method to call with the point's arguments.
        order: Lower runs first.
    """

    point: str
    method: str
    order: int = 0


@dataclass(slots=True, frozen=True)
class Mechanism:
    """A login mechanism a plugin brings to ``auth.login_ex`` (API.md §3).

    Attributes:
        name: The ``login_data.mechanism`` value (``PASSWORD_PLAIN``).
        model: The pydantic model of ``login_data`` for it; its ``mechanism`` field is a
            ``Literal`` of ``name``.
        method: Name of the service's coroutine ``(ctx, data) -> login_ex answer``.
        starts_login: False for a step that only continues a login in progress
            (``OTP_TOKEN``); ``auth.mechanism_choices`` lists the others.
    """

    name: str
    model: type[BaseModel]
    method: str
    starts_login: bool = True


@dataclass(slots=True, frozen=True)
class Verifier:
    """A further credential that a login step accepts in its usual field (API.md §3, §10).

    ``PASSWORD_PLAIN`` asks its verifiers when the password is wrong (a one-time password
    typed as the password); ``OTP_TOKEN`` when the TOTP code is wrong (a recovery code
    typed as the code). The method is a coroutine ``(ctx, user: UserRow, value: str) ->
    StepProof | None`` (:class:`middlewared_2fa.login.StepProof`): it answers None for a
    value that is not one of its credentials of that user, and, when it is one, uses the
    credential up (atomically: two logins never both get it) and says what the login proved.

    Attributes:
        step: ``"PASSWORD_PLAIN"`` or ``"OTP_TOKEN"``.
        name: For logs and ``credentials_data.second_factor`` (``RECOVERY_CODE``).
        method: Name of the service's coroutine.
        order: Lower is asked first.
    """

    step: Literal["PASSWORD_PLAIN", "OTP_TOKEN"]
    name: str
    method: str
    order: int = 0


@dataclass(slots=True, frozen=True)
class SecondFactor:
    """A kind of second factor a plugin stores for users besides the TOTP secret
    (passkeys, API.md §12). "A second factor configured" (``twofactor_auth_configured``,
    the ``2FA`` account attribute, ``setup_required``, whether the OTP step applies) is a
    TOTP secret or any registered kind.

    Attributes:
        name: For logs and docs (``WEBAUTHN``).
        method: Name of the service's *synchronous* method ``(user_id: int) -> bool``:
            whether the user has one. It is asked for every row of a ``user.query``, so
            it answers from memory (the plugin keeps it in step with its table).
    """

    name: str
    method: str


class Service:
    """Base of every plugin service.

    ``Config`` declares what the plugin brings; the framework loads it and names no
    plugin (docs/architecture.md):

    - ``namespace``: the plugin's name: method prefix (``auth.twofactor``), owner of its
      migrations and settings; required and unique.
    - ``method_namespace``: the method prefix when it differs from ``namespace``: a
      plugin that adds methods to another plugin's namespace (the recovery codes plugin
      adds ``user.twofactor_recovery_codes``). A method name defined twice is refused.
    - ``role_prefix``: the prefixes its role names start with (``("ACCOUNT",)``).
    - ``roles``: :class:`Role` entries.
    - ``settings``: a pydantic model of its settings; the field names are the flat keys
      of the TOML file and of ``MIDDLEWARED_2FA_<KEY>`` (API.md §1). Read it with
      ``middleware.settings_of(Model)``.
    - ``migrations``: its :class:`Migration` list, tracked per namespace.
    - ``hooks``: :class:`Hook` subscriptions, registered before any ``setup()``.
    - ``publishes``: the hook points it runs (a subscription to a point that no loaded
      plugin publishes is logged as a warning: a typo, or an absent optional plugin).
    - ``mechanisms``: :class:`Mechanism` entries for ``auth.login_ex``.
    - ``verifiers``: :class:`Verifier` entries: credentials a login step accepts besides
      its own (recovery codes in the OTP step, one-time passwords in the password step).
    - ``second_factors``: :class:`SecondFactor` entries: kinds of second factor besides
      the TOTP secret (passkeys).
    """

    class Config:
        namespace: str = ""
        method_namespace: str = ""
        role_prefix: tuple[str, ...] = ()
        roles: tuple[Role, ...] = ()
        settings: type[BaseModel] | None = None
        migrations: tuple[Migration, ...] = ()
        hooks: tuple[Hook, ...] = ()
        publishes: tuple[str, ...] = ()
        mechanisms: tuple[Mechanism, ...] = ()
        verifiers: tuple[Verifier, ...] = ()
        second_factors: tuple[SecondFactor, ...] = ()

    def __init__(self, middleware: Middleware) -> None:
        self.middleware = middleware

    async def setup(self) -> None:
        """Called once after every plugin is loaded and the database is open."""

    async def start(self) -> None:
        """Called once the listeners accept connections (start background tasks here)."""

    async def stop(self) -> None:
        """Called on shutdown, before the database closes."""


def collect_methods(service: Service) -> list[RegisteredMethod]:
    """The registry entries of one service instance.

    Raises:
        ApiDefinitionError: a method lacks roles, has a result model without a single
            ``result`` field, or parameters that differ from its Args model.
    """
    if not getattr(service.Config, "namespace", ""):
        raise ApiDefinitionError(f"{type(service).__name__}: Config.namespace is not set")
    namespace = getattr(service.Config, "method_namespace", "") or service.Config.namespace
    found: list[RegisteredMethod] = []
    for attr in dir(type(service)):
        raw = getattr(type(service), attr)
        spec: MethodSpec | None = getattr(raw, "__api_method__", None)
        if spec is None:
            continue
        name = f"{namespace}.{attr}"
        if not (isinstance(spec.accepts, type) and issubclass(spec.accepts, BaseModel)):
            raise ApiDefinitionError(f"{name}: accepts must be a pydantic model")
        if list(getattr(spec.returns, "model_fields", {})) != ["result"]:
            raise ApiDefinitionError(f"{name}: the result model must have one field 'result'")
        if spec.auth == "required" and not getattr(raw, "__api_roles_given__", False):
            raise ApiDefinitionError(f"{name}: roles are required (use [] for any user)")
        unknown = set(spec.roles) - ROLES.names
        if unknown:
            raise ApiDefinitionError(f"{name}: unknown roles {sorted(unknown)}")
        params = tuple(spec.accepts.model_fields)
        signature = inspect.signature(raw)
        declared = tuple(signature.parameters)[2:]  # self, ctx
        if declared != params:
            raise ApiDefinitionError(
                f"{name}: parameters {declared} do not match {spec.accepts.__name__} {params}"
            )
        if not inspect.iscoroutinefunction(raw):
            raise ApiDefinitionError(f"{name}: must be async")
        found.append(RegisteredMethod(name, spec, getattr(service, attr), params))
    return found
