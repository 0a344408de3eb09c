"""Processes under test: the daemon (its console script) and the reference echo server,
each a real subprocess, optionally pinned to one core; and what /proc says about them."""

from __future__ import annotations

import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.seed import ADMIN_PASSWORD
from bench.sysinfo import rss_kib

#: Core the server under test runs on, and the core the load generator runs on.
SERVER_CPU = 1
CLIENT_CPU = 0


def pinning_available() -> bool:
    """True on a machine with at least two usable cores."""
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return False


def raise_nofile(wanted: int = 8192) -> int:
    """Raise this process's open-files soft limit towards ``wanted`` (children inherit it).

    Returns:
        The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


#: Niceness for the server under test and the load generator (``--nice``; negative values
#: need root). Both sides and every variant get the same, so ratios stay fair.
NICE = 0


def _preexec(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if NICE:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)


def preexec(cpu: int | None) -> Any:
    """A ``preexec_fn`` that pins to ``cpu`` (None: no pinning) and applies :data:`NICE`."""
    return lambda: _preexec(cpu)


@dataclass
class Server:
    """A server subprocess that printed ``listening on URL``."""

    process: subprocess.Popen[str]
    url: str
    started_in: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, wait; SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def rss_kib(self) -> int:
        """Resident memory (``VmRSS`` of /proc/PID/status), KiB."""
        return rss_kib(self.pid)


def _start(
    cmd: list[str], env: dict[str, str], cpu: int | None, timeout: float, cwd: Path | None = None
) -> Server:
    t0 = time.perf_counter()
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
        preexec_fn=preexec(cpu),
    )
    assert process.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(process.stdout, selectors.EVENT_READ)
    line = ""
    if sel.select(timeout):
        line = process.stdout.readline()
    elapsed = time.perf_counter() - t0
    sel.close()
    if not line.startswith("listening on "):
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return Server(process, line.split()[2], elapsed)


def _knows_setting(tree: Path | None, key: str) -> bool:
    """Whether the daemon of ``tree`` (None: this checkout) has the setting ``key``."""
    root = tree if tree is not None else Path(__file__).resolve().parent.parent
    try:
        return key in (root / "middlewared_2fa" / "config.py").read_text()
    except OSError:
        return False


def daemon_command() -> list[str]:
    """The installed console script next to this interpreter (as tests/helpers do)."""
    script = shutil.which("middlewared-2fa", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "middlewared_2fa"]


def start_daemon(
    base: Path,
    *,
    cpu: int | None,
    tree: Path | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Server:
    """``middlewared-2fa --port 0`` on the state in ``base``; waits for ``listening on``.

    The environment lifts the unauthenticated rate limit (the load comes from one
    address) and removes the failure delay (the benchmark never fails on purpose).

    Args:
        tree: Run the code of this folder (holding ``middlewared_2fa/`` and ``plugins/``)
            instead of the installed checkout, with the same interpreter and packages:
            the "before" side of a before/after comparison.
    """
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    env.update(
        {
            "MIDDLEWARED_2FA_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MIDDLEWARED_2FA_RATE_LIMIT_CALLS": "1000000000",
            "MIDDLEWARED_2FA_AUTH_FAILURE_DELAY": "0",
            "MIDDLEWARED_2FA_RUNTIME_DIR": str(base / "run"),
            # Every benchmark client comes from 127.0.0.1 and logs in as a few users: lift
            # the per-address cap and the concurrent-attempt throttle (a "before" tree
            # older than these settings would refuse them, so only where they exist).
            **(
                {
                    "MIDDLEWARED_2FA_MAX_CONNECTIONS_PER_ADDRESS": "1000",
                    "MIDDLEWARED_2FA_AUTH_THROTTLE_AFTER": "100",
                }
                if _knows_setting(tree, "max_connections_per_address")
                else {}
            ),
        }
    )
    env.update(extra_env or {})
    cmd = [
        *(daemon_command() if tree is None else [sys.executable, "-m", "middlewared_2fa"]),
        "--port",
        "0",
        "--state-dir",
        str(base / "state"),
        "--runtime-dir",
        str(base / "run"),
        "--log-file",
        str(base / "daemon.log"),
    ]
    # python -m puts the working folder first on sys.path: run the "before" tree from it.
    return _start(cmd, env, cpu, timeout, cwd=tree)


def start_echo(
    *,
    cpu: int | None,
    compression: str = "none",
    timeout: float = 60,
    tls: tuple[Path, Path] | None = None,
) -> Server:
    """The reference echo server (``python -m bench.echo``); ``wss://`` with ``tls``
    (certificate and key files)."""
    cmd = [sys.executable, "-m", "bench.echo", "--compression", compression]
    if tls is not None:
        cmd += ["--tls", str(tls[0]), str(tls[1])]
    return _start(cmd, dict(os.environ), cpu, timeout)


def python_startup(cpu: int | None, code: str = "pass", tree: Path | None = None) -> float:
    """Seconds for this interpreter to run ``code`` and exit (a start-up reference)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env=env,
        cwd=tree,
        preexec_fn=preexec(cpu),
    )
    return time.perf_counter() - t0
