"""The daemon object: settings, datastore, encryption, events, the method registry and
the services. Plugins reach everything through it (``self.middleware``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from middlewared_2fa.api import (
    Hook,
    Mechanism,
    Migration,
    RegisteredMethod,
    Role,
    SecondFactor,
    Service,
    Verifier,
    collect_methods,
)
from middlewared_2fa.clock import Clock, SystemClock
from middlewared_2fa.config import Settings, plugin_settings
from middlewared_2fa.crypto import DecryptionError, SecretBox, load_or_create_key
from middlewared_2fa.datastore import Database, Repositories
from middlewared_2fa.datastore.migrations import FRAMEWORK, LEGACY
from middlewared_2fa.datastore.repositories import AuditRow
from middlewared_2fa.errors import StartupError
from middlewared_2fa.events import EventHub
from middlewared_2fa.hashing import HashingPool
from middlewared_2fa.hooks import Hooks
from middlewared_2fa.login import MechanismError, MechanismRegistry, SecondFactors
from middlewared_2fa.plugins import default_plugins_dir, discover
from middlewared_2fa.roles import ROLES, RoleError
from middlewared_2fa.session import Session, SessionRegistry

logger = logging.getLogger(__name__)

#: Owners of the framework's own migration records (datastore/migrations.py).
RESERVED_NAMESPACES = frozenset({FRAMEWORK, LEGACY})

S = TypeVar("S", bound=Service)
M = TypeVar("M", bound=BaseModel)


def _config(cls: type[Service]) -> _PluginConfig:
    """``cls.Config`` with the defaults of :class:`Service.Config` filled in."""
    raw = cls.Config
    base = Service.Config
    return _PluginConfig(
        namespace=getattr(raw, "namespace", ""),
        role_prefix=tuple(getattr(raw, "role_prefix", base.role_prefix)),
        roles=tuple(getattr(raw, "roles", base.roles)),
        settings=getattr(raw, "settings", base.settings),
        migrations=tuple(getattr(raw, "migrations", base.migrations)),
        hooks=tuple(getattr(raw, "hooks", base.hooks)),
        publishes=tuple(getattr(raw, "publishes", base.publishes)),
        mechanisms=tuple(getattr(raw, "mechanisms", base.mechanisms)),
        verifiers=tuple(getattr(raw, "verifiers", base.verifiers)),
        second_factors=tuple(getattr(raw, "second_factors", base.second_factors)),
    )


@dataclass(slots=True, frozen=True)
class _PluginConfig:
    namespace: str
    role_prefix: tuple[str, ...]
    roles: tuple[Role, ...]
    settings: type[BaseModel] | None
    migrations: tuple[Migration, ...]
    hooks: tuple[Hook, ...]
    publishes: tuple[str, ...]
    mechanisms: tuple[Mechanism, ...]
    verifiers: tuple[Verifier, ...]
    second_factors: tuple[SecondFactor, ...]


def _register_roles(cls: type[Service], config: _PluginConfig) -> None:
    for role in config.roles:
        if not any(role.name.startswith(prefix + "_") for prefix in config.role_prefix):
            raise StartupError(
                f"{cls.__name__}: role {role.name} does not start with its role prefix "
                f"{' or '.join(config.role_prefix) or '(none declared)'}"
            )
        try:
            ROLES.register(role.name, role.includes, readonly=role.readonly)
        except RoleError as exc:
            raise StartupError(f"{cls.__name__}: {exc}") from None


def _bound(service: Service, name: str, what: str) -> Callable[..., Awaitable[Any]]:
    func = getattr(service, name, None)
    if func is None:
        raise StartupError(f"{type(service).__name__}: {what} method {name!r} does not exist")
    if not inspect.iscoroutinefunction(func):
        raise StartupError(
            f"{type(service).__name__}: {what} method {name!r} is not a coroutine method"
        )
    bound: Callable[..., Awaitable[Any]] = func
    return bound


def _bound_sync(service: Service, name: str) -> Callable[[int], bool]:
    func = getattr(service, name, None)
    if func is None or not callable(func):
        raise StartupError(
            f"{type(service).__name__}: second-factor method {name!r} does not exist"
        )
    if inspect.iscoroutinefunction(func):
        raise StartupError(
            f"{type(service).__name__}: second-factor method {name!r} must be synchronous"
        )
    bound: Callable[[int], bool] = func
    return bound


_KEY_CHECK = "key_check"


class RateLimiter:
    """Sliding-window limit of calls per client address.

    Args:
        calls: Calls allowed per ``period``.
        period: Window length in seconds.
        clock: Time source (monotonic is not needed: the window is short).
    """

    def __init__(self, calls: int, period: float, clock: Clock) -> None:
        self.calls = calls
        self.period = period
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def allow(self, address: str) -> bool:
        """Record one call from ``address``; False when it is over the limit."""
        now = self.clock.time()
        hits = self._hits.setdefault(address, deque())
        while hits and hits[0] <= now - self.period:
            hits.popleft()
        if len(hits) >= self.calls:
            return False
        hits.append(now)
        if len(self._hits) > 10000:  # forget idle addresses so memory stays bounded
            for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.period]:
                del self._hits[key]
        return True


class Middleware:
    """Everything the daemon holds.

    Args:
        settings: Effective settings.
        clock: Time source for TOTP, tokens, rate limits and audit timestamps.
    """

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.hostname = socket.gethostname() or "localhost"
        self.db = Database(settings.database_path)
        self.repos = Repositories(self.db)
        self.events = EventHub()
        self.methods: dict[str, RegisteredMethod] = {}
        #: Services by namespace, in load order.
        self.services: dict[str, Service] = {}
        self._by_class: dict[type[Service], Service] = {}
        self.rate_limiter = RateLimiter(
            settings.rate_limit_calls, settings.rate_limit_period, self.clock
        )
        self._box: SecretBox | None = None
        #: Every connection and re-login token (API.md §9); listeners register theirs.
        self.sessions = SessionRegistry(self.clock)
        #: Bounded, fair password hashing (API.md §3).
        self.hashing = HashingPool(settings.password_verifications)
        #: Named hook points that plugins publish and subscribe to.
        self.hooks = Hooks()
        #: Login mechanisms of ``auth.login_ex`` that plugins declare (API.md §3).
        self.mechanisms = MechanismRegistry()
        #: Kinds of second factor besides the TOTP secret (passkeys, API.md §12).
        self.factors = SecondFactors()
        #: The TCP listener's port once it listens (None before; ``--port 0`` picks one).
        self.listen_port: int | None = None
        #: Browser origins plugins allow besides ``allowed_origins`` (the §1 Origin
        #: check): WebAuthn origins (API.md §12). Providers are called per handshake.
        self.origin_providers: list[Callable[[], set[str]]] = []
        self._plugin_settings: dict[type[BaseModel], BaseModel] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # -- life cycle -------------------------------------------------------------------

    async def setup(self) -> None:
        """Open the database, check the key, load the plugins and set them up.

        Raises:
            StartupError: database, key file or plugin problem; the message says which.
        """
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await self.db.open()
        try:
            await self._load_plugins()
        except BaseException:
            # Nothing was set up: forget the services (stop() has none to stop) and close
            # the database, whose threads would otherwise keep the process alive.
            self.services.clear()
            self._by_class.clear()
            self.methods.clear()
            await self.db.close()
            raise
        for service in self.services.values():
            await service.setup()

    async def _load_plugins(self) -> None:
        dirs = [default_plugins_dir(), *self.settings.plugins_dirs]
        classes = discover(dirs)
        configs = [(cls, _config(cls)) for cls in classes]
        for cls, config in configs:
            _register_roles(cls, config)
        self._plugin_settings = plugin_settings(
            self.settings,
            [(c.namespace, c.settings) for _, c in configs if c.settings is not None],
        )
        for cls, config in configs:
            if config.namespace in RESERVED_NAMESPACES:
                raise StartupError(
                    f"{cls.__name__}: the namespace {config.namespace!r} is reserved"
                )
            service = cls(self)
            if config.namespace in self.services:
                raise StartupError(f"two plugins define the namespace {config.namespace!r}")
            self.services[config.namespace] = service
            self._by_class[cls] = service
            for method in collect_methods(service):
                if method.name in self.methods:
                    raise StartupError(f"{cls.__name__}: method {method.name} is defined twice")
                self.methods[method.name] = method
            for hook in config.hooks:
                self.hooks.register(
                    hook.point, _bound(service, hook.method, "hook"), order=hook.order
                )
            for mechanism in config.mechanisms:
                try:
                    self.mechanisms.register(
                        mechanism.name,
                        mechanism.model,
                        _bound(service, mechanism.method, "mechanism"),
                        starts_login=mechanism.starts_login,
                    )
                except MechanismError as exc:
                    raise StartupError(f"{cls.__name__}: {exc}") from None
            for factor in config.second_factors:
                try:
                    self.factors.register(factor.name, _bound_sync(service, factor.method))
                except MechanismError as exc:
                    raise StartupError(f"{cls.__name__}: {exc}") from None
            for verifier in config.verifiers:
                try:
                    self.mechanisms.add_verifier(
                        verifier.step,
                        verifier.name,
                        _bound(service, verifier.method, "verifier"),
                        order=verifier.order,
                    )
                except MechanismError as exc:
                    raise StartupError(f"{cls.__name__}: {exc}") from None
        published = {point for _, c in configs for point in c.publishes}
        for _, config in configs:
            for hook in config.hooks:
                if hook.point not in published:
                    logger.warning(
                        "%s subscribes to the hook point %r, which no loaded plugin "
                        "publishes (a typo, or an optional plugin that is absent)",
                        config.namespace,
                        hook.point,
                    )
        for _, config in configs:
            await self.db.migrate(config.namespace, config.migrations)
        await self._setup_key()

    async def _setup_key(self) -> None:
        check = await self.repos.meta.get(_KEY_CHECK)
        # A database that has its key check has data encrypted with the key: a missing
        # key file then is an error, never a new key.
        key = load_or_create_key(self.settings.key_path, create=check is None)
        self._box = SecretBox(key)
        if check is None:
            await self.repos.meta.put(
                _KEY_CHECK, self._box.encrypt(secrets.token_hex(16), b"key-check")
            )
            return
        try:
            self._box.decrypt(check, b"key-check")
        except DecryptionError:
            raise StartupError(
                f"key file {self.settings.key_path} does not match the database "
                f"{self.settings.database_path}: restore the right key file"
            ) from None

    async def start(self) -> None:
        """Tell services the daemon is serving (they start background tasks)."""
        for service in self.services.values():
            await service.start()

    async def stop(self) -> None:
        """Stop services and background tasks, then close the database."""
        for service in reversed(list(self.services.values())):
            try:
                await service.stop()
            except Exception:
                logger.exception("service %s failed to stop", service.Config.namespace)
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.db.close()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; exceptions are logged, the task is cancelled
        on shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("background task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # -- helpers for plugins ----------------------------------------------------------

    def service(self, cls: type[S]) -> S:
        """The loaded instance of the service class ``cls``: how a plugin reaches a plugin
        it requires (``self.middleware.service(TwoFactorService)``), typed. Optional
        collaborators subscribe to hooks instead.

        Raises:
            LookupError: no plugin defines ``cls`` (a required plugin is missing).
        """
        service = self._by_class.get(cls)
        if service is None:
            raise LookupError(f"{cls.__name__} is not loaded (its plugin is missing)")
        assert isinstance(service, cls)
        return service

    def settings_of(self, model: type[M]) -> M:
        """The validated values of a plugin's settings model (``Config.settings``).

        Raises:
            LookupError: no loaded plugin declares ``model``.
        """
        found = self._plugin_settings.get(model)
        if found is None:
            raise LookupError(f"no loaded plugin declares the settings {model.__name__}")
        assert isinstance(found, model)
        return found

    def encrypt(self, value: str, purpose: bytes) -> str:
        """Encrypt ``value`` for storage with the daemon's key (AES-GCM, crypto.py).

        Args:
            value: The plaintext (a TOTP seed, a recovery code hash's pepper...).
            purpose: Associated data naming what it is (``b"totp-secret"``): a value
                stored for one purpose does not decrypt as another.
        """
        assert self._box is not None
        return self._box.encrypt(value, purpose)

    def decrypt(self, stored: str, purpose: bytes) -> str:
        """Decrypt what :meth:`encrypt` stored for ``purpose``.

        Raises:
            DecryptionError: wrong key, wrong purpose or tampered value.
        """
        assert self._box is not None
        return self._box.decrypt(stored, purpose)

    async def audit(
        self,
        event: str,
        session: Session | None,
        *,
        success: bool,
        description: str,
        username: str | None = None,
        method: str | None = None,
        error: str | None = None,
    ) -> None:
        """Append an audit entry (API.md §7). Never pass secrets, codes or passwords.

        Args:
            event: ``AUTHENTICATION`` or ``METHOD_CALL``.
            session: The caller's session (address and username), or None.
            success: Outcome.
            description: What happened, in words.
            username: Overrides the session's username (e.g. a login attempt).
            method: Method name for METHOD_CALL.
            error: Error name or reason on failure.
        """
        data: dict[str, Any] = {"description": description}
        if method is not None:
            data["method"] = method
        if error is not None:
            data["error"] = error
        if session is not None and session.identity is not None:
            data["credentials"] = session.identity.credentials
        row = AuditRow(
            audit_id=str(uuid.uuid4()),
            timestamp=self.clock.time(),
            event=event,
            username=username if username is not None else (session.username if session else None),
            address=session.address if session else None,
            success=success,
            event_data=data,
            session=session.id if session is not None else None,
        )
        try:
            await self.repos.audit.append(row)
        except Exception:
            logger.exception("cannot write audit entry for %s", event)
