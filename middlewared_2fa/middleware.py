"""The daemon object: settings, datastore, encryption, events, the method registry and
the services. Plugins reach everything through it (``self.middleware``)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import uuid
from collections import deque
from typing import Any

from middlewared_2fa.api import RegisteredMethod, collect_methods
from middlewared_2fa.clock import Clock, SystemClock
from middlewared_2fa.config import Settings
from middlewared_2fa.crypto import DecryptionError, SecretBox, load_or_create_key
from middlewared_2fa.datastore import Database, Repositories
from middlewared_2fa.datastore.repositories import AuditRow
from middlewared_2fa.errors import StartupError
from middlewared_2fa.events import EventHub
from middlewared_2fa.hashing import HashingPool
from middlewared_2fa.hooks import Hooks
from middlewared_2fa.plugins import default_plugins_dir, discover
from middlewared_2fa.session import Session, SessionRegistry

logger = logging.getLogger(__name__)

_KEY_CHECK = "key_check"
_SECRET_PURPOSE = b"totp-secret"


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
        # Any: services call each other's plain Python methods by namespace (duck typing).
        self.services: dict[str, Any] = {}
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
        self._background: set[asyncio.Task[Any]] = set()

    # -- life cycle -------------------------------------------------------------------

    async def setup(self) -> None:
        """Open the database, check the key, load the plugins and set them up.

        Raises:
            StartupError: database, key file or plugin problem; the message says which.
        """
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await self.db.open()
        await self._setup_key()
        dirs = [default_plugins_dir(), *self.settings.plugins_dirs]
        for cls in discover(dirs):
            service = cls(self)
            namespace = cls.Config.namespace
            if namespace in self.services:
                raise StartupError(f"two plugins define the namespace {namespace!r}")
            self.services[namespace] = service
            for method in collect_methods(service):
                self.methods[method.name] = method
        for service in self.services.values():
            await service.setup()

    async def _setup_key(self) -> None:
        check = await self.repos.meta.get(_KEY_CHECK)
        has_data = check is not None or await self.repos.users.count_secrets() > 0
        key = load_or_create_key(self.settings.key_path, create=not has_data)
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

    def service(self, namespace: str) -> Any:
        """The service of ``namespace`` (e.g. ``"auth.twofactor"``)."""
        return self.services[namespace]

    def encrypt_secret(self, secret: str) -> str:
        """Encrypt a TOTP seed for storage."""
        assert self._box is not None
        return self._box.encrypt(secret, _SECRET_PURPOSE)

    def decrypt_secret(self, stored: str) -> str:
        """Decrypt a stored TOTP seed. Raises DecryptionError on a wrong key."""
        assert self._box is not None
        return self._box.decrypt(stored, _SECRET_PURPOSE)

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
