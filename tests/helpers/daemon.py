"""Real daemons for tests: in-process (same event loop, injectable clock) and subprocess
(the installed console script, for the CLI and outside tools)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from middlewared_2fa.cli.client import Client, open_client, tls_context
from middlewared_2fa.clock import FrozenClock
from middlewared_2fa.config import Settings
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.server import Daemon

ADMIN_PASSWORD = "admin-test-password"

#: Settings that keep tests quick; tests about a limit set that limit themselves.
TEST_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "admin_password": ADMIN_PASSWORD,
    "auth_failure_delay": 0.01,
    "rate_limit_calls": 100000,
}


def short_tempdir() -> Path:
    """A fresh folder with a short path (Unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="m2fa-", dir="/tmp"))


@dataclass
class InProcessDaemon:
    """A real daemon (listeners, SQLite file, plugins) running in the test's event loop."""

    base: Path
    clock: FrozenClock
    overrides: dict[str, Any] = field(default_factory=dict)
    middleware: Middleware | None = None
    daemon: Daemon | None = None

    @property
    def settings(self) -> Settings:
        values = {
            **TEST_DEFAULTS,
            "state_dir": self.base / "state",
            "runtime_dir": self.base / "run",
            **self.overrides,
        }
        return Settings.model_validate(values)

    @property
    def url(self) -> str:
        assert self.daemon is not None
        return self.daemon.url

    @property
    def unix_uri(self) -> str:
        return "ws+unix://" + str(self.settings.socket_path)

    @property
    def tls_client_context(self) -> ssl.SSLContext | None:
        """With ``tls``: a client context that trusts only the certificate this daemon
        serves (generated or configured); None without TLS."""
        if not self.settings.tls:
            return None
        return tls_context(cafile=self.settings.tls_cert_path)

    def _connect_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.url.startswith("wss://"):
            kwargs.setdefault("ssl", self.tls_client_context)
        return kwargs

    @property
    def mw(self) -> Middleware:
        assert self.middleware is not None
        return self.middleware

    @property
    def ssh(self) -> Any:
        """The ``ssh.oath`` service (``oath_users_path``, ``pam_snippet_path``)."""
        return self.mw.services["ssh.oath"]

    async def start(self) -> None:
        self.middleware = Middleware(self.settings, clock=self.clock)
        await self.middleware.setup()
        self.daemon = Daemon(self.middleware)
        await self.daemon.start()
        await self.middleware.start()

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()
        if self.middleware is not None:
            await self.middleware.stop()
        self.daemon = self.middleware = None

    async def restart(self, **overrides: Any) -> None:
        """Stop and start again on the same state folder (port may change)."""
        await self.stop()
        self.overrides.update(overrides)
        await self.start()

    @contextlib.asynccontextmanager
    async def client(self, **kwargs: Any) -> AsyncIterator[Client]:
        """An unauthenticated TCP client (over TLS, trusting the daemon's certificate,
        when ``tls`` is on)."""
        async with open_client(self.url, **self._connect_options(kwargs)) as c:
            yield c

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[Client]:
        """A TCP client logged in as ``admin`` (password only; admin has no secret)."""
        async with open_client(self.url, **self._connect_options({})) as c:
            resp = await c.login("admin", ADMIN_PASSWORD)
            assert resp["response_type"] == "SUCCESS", resp
            yield c

    @contextlib.asynccontextmanager
    async def root(self) -> AsyncIterator[Client]:
        """The built-in administrator over the Unix socket (no login)."""
        async with open_client(self.unix_uri) as c:
            yield c

    async def seed_secret(
        self, username: str, secret: str, *, digits: int = 6, interval: int = 30
    ) -> None:
        """Store a known TOTP seed for ``username`` (the RFC test seed), as renew would."""
        user = await self.mw.repos.users.get_by_name(username)
        assert user is not None, username
        await self.mw.repos.users.set_totp(
            user.id, self.mw.encrypt(secret, b"totp-secret"), interval, digits
        )


@dataclass
class SubprocessDaemon:
    """``middlewared-2fa`` started as a separate process (the console script)."""

    base: Path
    process: subprocess.Popen[str]
    url: str
    env: dict[str, str]
    #: With TLS: the start-up line about the certificate (path and SHA-256 fingerprint).
    tls_line: str | None = None

    @property
    def fingerprint(self) -> str | None:
        """With TLS: the SHA-256 fingerprint the daemon printed at start-up."""
        return None if self.tls_line is None else self.tls_line.rsplit(" ", 1)[1]

    @property
    def socket_path(self) -> Path:
        return self.base / "run" / "middlewared.sock"

    @property
    def unix_uri(self) -> str:
        return "ws+unix://" + str(self.socket_path)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        # The daemon leads its own process group: a wrapper such as faketime does not
        # pass signals on, so the whole group is signalled, never just the wrapper.
        if self.process.poll() is None:
            _signal_group(self.process, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
        _signal_group(self.process, signal.SIGKILL)  # stragglers of a wrapped daemon
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def _signal_group(process: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` to the process group that ``process`` leads (gone already: nothing)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def daemon_command() -> list[str]:
    script = shutil.which("middlewared-2fa", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "middlewared_2fa"]


def launch_subprocess_daemon(
    base: Path,
    *,
    extra_env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
    args: list[str] | None = None,
    stderr_path: Path | None = None,
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start the daemon on a free port with state under ``base``, without waiting.

    Args:
        prefix: Command to wrap the daemon in (e.g. ``["faketime", "-f", "+90s"]``).
        stderr_path: File that gets the daemon's stderr (appended to); default: none.

    Returns:
        The process (stdout a pipe; it leads its own process group) and its environment.
    """
    env = dict(os.environ)
    env.update(
        {
            "MIDDLEWARED_2FA_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MIDDLEWARED_2FA_AUTH_FAILURE_DELAY": "0.01",
            "MIDDLEWARED_2FA_RATE_LIMIT_CALLS": "100000",
            "MIDDLEWARED_2FA_RUNTIME_DIR": str(base / "run"),
        }
    )
    env.update(extra_env or {})
    cmd = [
        *(prefix or []),
        *daemon_command(),
        "--port",
        "0",
        "--state-dir",
        str(base / "state"),
        "--runtime-dir",
        str(base / "run"),
        "--log-file",
        str(base / "daemon.log"),
        *(args or []),
    ]
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(stderr_path.open("ab")) if stderr_path else None
        process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=stderr or subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
    return process, env


def start_subprocess_daemon(
    base: Path,
    *,
    extra_env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
    args: list[str] | None = None,
    stderr_path: Path | None = None,
    timeout: float = 60,
) -> SubprocessDaemon:
    """Start the daemon on a free port with state under ``base``; wait for 'listening on'.

    Args:
        prefix: Command to wrap the daemon in (e.g. ``["faketime", "-f", "+90s"]``).
        stderr_path: File that gets the daemon's stderr (appended to); default: none.
    """
    process, env = launch_subprocess_daemon(
        base, extra_env=extra_env, prefix=prefix, args=args, stderr_path=stderr_path
    )
    assert process.stdout is not None
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(process.stdout, selectors.EVENT_READ)
    line = tls_line = ""
    if sel.select(timeout):
        line = process.stdout.readline()
    sel.close()
    if line.startswith("listening on wss://"):
        # Printed right after the URL (so no select: it may be buffered already).
        tls_line = process.stdout.readline().strip()
    if not line.startswith("listening on ") or (" wss://" in line and not tls_line):
        _signal_group(process, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        log = (base / "daemon.log").read_text() if (base / "daemon.log").exists() else ""
        raise RuntimeError(f"daemon did not start: {line!r}\n{log[-2000:]}")
    return SubprocessDaemon(base, process, line.split()[2], env, tls_line or None)


@contextlib.contextmanager
def subprocess_daemon(**kwargs: Any) -> Iterator[SubprocessDaemon]:
    base = short_tempdir()
    d = start_subprocess_daemon(base, **kwargs)
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


async def wait_until(predicate: Any, timeout: float = 10, interval: float = 0.02) -> None:
    """Poll ``predicate()`` (sync or async) until true; fails after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
