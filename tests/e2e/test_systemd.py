"""Running as a systemd service: readiness and stopping over ``$NOTIFY_SOCKET``, log lines
for the journal, and the unit file in contrib/ as systemd-analyze reads it.

The daemon is the real process; the test owns the notification socket that systemd would
own, and receives each datagram with the sender's credentials, as systemd does to check
``NotifyAccess=main``.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from middlewared_2fa.cli.client import open_client
from tests.helpers.daemon import (
    SubprocessDaemon,
    daemon_command,
    launch_subprocess_daemon,
    short_tempdir,
    start_subprocess_daemon,
)

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "middlewared-2fa.service"
#: Where README.md installs the daemon; the unit's ExecStart names it.
INSTALLED_SCRIPT = "/opt/middlewared-2fa/bin/middlewared-2fa"
#: Seconds to wait for one notification: generous, for a slow 2-core machine.
WAIT = 60.0
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
LEVELS = "DEBUG|INFO|WARNING|ERROR|CRITICAL"


@dataclass
class Notification:
    """One datagram: its assignments (``READY=1``, ...) and the PID the kernel vouches for."""

    pid: int | None
    assignments: list[str]

    def __contains__(self, assignment: str) -> bool:
        return assignment in self.assignments

    def get(self, name: str) -> str | None:
        for assignment in self.assignments:
            key, _, value = assignment.partition("=")
            if key == name:
                return value
        return None


class NotifySocket:
    """The service manager's end of ``$NOTIFY_SOCKET``: an ``AF_UNIX`` datagram socket
    that receives each sender's credentials (``SO_PASSCRED``)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)

    def close(self) -> None:
        self.sock.close()

    def receive(self, timeout: float) -> Notification | None:
        """The next datagram, or None if none comes within ``timeout`` seconds."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return None
        data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("iII", payload[:12])
        return Notification(pid, data.decode().split("\n"))

    def wait_for(self, assignment: str, process: subprocess.Popen[str]) -> list[Notification]:
        """Every datagram up to the first holding ``assignment``; fails if the process
        exits first or nothing comes within :data:`WAIT` seconds."""
        received: list[Notification] = []
        deadline = time.monotonic() + WAIT
        while True:
            # Checked first: whatever it sent before exiting is queued by now.
            exited = process.poll() is not None
            message = self.receive(0 if exited else 1.0)
            if message is not None:
                received.append(message)
                if assignment in message:
                    return received
            elif exited:
                pytest.fail(f"daemon exited ({process.returncode}) before {assignment}")
            elif time.monotonic() > deadline:
                pytest.fail(f"no {assignment} within {WAIT} s; received {received}")

    def drain(self) -> list[Notification]:
        """The datagrams already queued."""
        received = []
        while (message := self.receive(0)) is not None:
            received.append(message)
        return received


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_tempdir()  # the Unix sockets' paths stay far below 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def ping(uri: str) -> str:
    async with open_client(uri, timeout=30) as c:
        return str(await c.call("core.ping"))


def test_ready_once_both_listeners_answer_and_stopping_on_sigterm(base: Path) -> None:
    """READY=1 comes from the daemon's own PID once, when the TCP port and the Unix socket
    both answer core.ping; SIGTERM sends STOPPING=1 before the process exits with 0."""
    notify = NotifySocket(str(base / "notify"))
    # Launched without waiting for the printed URL: READY=1 alone says when to connect.
    process, env = launch_subprocess_daemon(base, extra_env={"NOTIFY_SOCKET": str(base / "notify")})
    daemon = SubprocessDaemon(base, process, "", env)
    try:
        received = notify.wait_for("READY=1", process)
        ready = received[-1]
        status = ready.get("STATUS") or ""
        match = re.search(r"ws://\S+", status)
        assert match, ready
        daemon.url = match.group()
        assert str(daemon.socket_path) in status

        async def both() -> list[str]:
            return [await ping(daemon.url), await ping(daemon.unix_uri)]

        assert asyncio.run(both()) == ["pong", "pong"]
        assert ready.pid == process.pid  # NotifyAccess=main: the main process itself
        before = received + notify.drain()
        assert [m for m in before if "STOPPING=1" in m] == []

        assert daemon.stop(signal.SIGTERM, timeout=WAIT) == 0
        after = notify.drain()  # datagrams it sent stay queued after it exits
    finally:
        daemon.stop()  # when an assertion failed before; a no-op after the stop above
        notify.close()
    stopping = [m for m in after if "STOPPING=1" in m]
    assert len(stopping) == 1, after
    assert stopping[0].pid == process.pid
    every = before + after
    assert sum("READY=1" in m for m in every) == 1, every
    assert every.index(stopping[0]) > every.index(ready)


def test_abstract_notify_socket() -> None:
    """A NOTIFY_SOCKET starting with '@' names an abstract socket, which gets READY=1
    and STOPPING=1 like a socket file."""
    name = f"m2fa-test-{os.getpid()}-{secrets.token_hex(4)}"
    notify = NotifySocket("\0" + name)
    base = short_tempdir()
    try:
        d = start_subprocess_daemon(base, extra_env={"NOTIFY_SOCKET": "@" + name})
        try:
            ready = notify.wait_for("READY=1", d.process)[-1]
            assert ready.pid == d.process.pid
            assert asyncio.run(ping(d.unix_uri)) == "pong"
        finally:
            assert d.stop(timeout=WAIT) == 0
        assert any("STOPPING=1" in m for m in notify.drain())
    finally:
        notify.close()
        shutil.rmtree(base, ignore_errors=True)


def test_unreachable_notify_socket_is_logged_once(base: Path) -> None:
    """A NOTIFY_SOCKET that nobody listens on does not stop the daemon: it serves, stops
    with 0, and the log has one warning for the failed READY=1 and STOPPING=1."""
    missing = base / "nobody-listens"
    d = start_subprocess_daemon(base, extra_env={"NOTIFY_SOCKET": str(missing)})
    try:
        assert asyncio.run(ping(d.url)) == "pong"
    finally:
        assert d.stop(timeout=WAIT) == 0
    log = (base / "daemon.log").read_text()
    warnings = [line for line in log.splitlines() if "cannot notify" in line]
    assert len(warnings) == 1, warnings
    assert str(missing) in warnings[0] and " WARNING " in warnings[0]
    assert "stopped" in log


@pytest.mark.parametrize("journal", ["stderr", "another file", "unset"])
def test_log_format_for_the_journal(
    base: Path, journal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With JOURNAL_STREAM naming the daemon's stderr, its lines there have no timestamp
    (journald adds its own) and start with the syslog priority; otherwise, and in the
    log file always, they keep the timestamped format."""
    stderr_path = base / "stderr.txt"
    other = base / "other.txt"
    stderr_path.touch()
    other.touch()
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)  # pytest itself may run in a unit
    env = {}
    if journal != "unset":
        st = os.stat(stderr_path if journal == "stderr" else other)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    d = start_subprocess_daemon(base, extra_env=env, stderr_path=stderr_path)
    try:
        assert asyncio.run(ping(d.url)) == "pong"
    finally:
        assert d.stop(timeout=WAIT) == 0
    lines = stderr_path.read_text().splitlines()
    assert any("listening on" in line for line in lines), lines
    if journal == "stderr":
        for line in lines:
            assert re.match(rf"<[2-7]>({LEVELS}) [\w.]+: ", line), line
            assert not TIMESTAMP.search(line), line
        assert any(line.startswith("<6>INFO middlewared_2fa.main: listening on ") for line in lines)
    else:
        for line in lines:
            assert re.match(rf"{TIMESTAMP.pattern},\d{{3}} ({LEVELS}) ", line), line
    for line in (base / "daemon.log").read_text().splitlines():
        assert re.match(rf"{TIMESTAMP.pattern},\d{{3}} ({LEVELS}) ", line), line


# -- the unit file --------------------------------------------------------------------


def venv_script() -> str:
    """This checkout's installed ``middlewared-2fa`` console script (scripts/test)."""
    command = daemon_command()
    assert len(command) == 1, f"middlewared-2fa is not installed next to python: {command}"
    return command[0]


def unit_for_this_machine(folder: Path) -> Path:
    """contrib/middlewared-2fa.service with only ExecStart's program changed to this
    checkout's console script.

    systemd-analyze verify checks that ExecStart's program exists and is executable. The
    unit names /opt/middlewared-2fa/bin/middlewared-2fa, where README.md installs it and
    which no test machine has; the venv's script is the same entry point (installed from
    the same pyproject.toml), so the check still covers a real program, and every other
    line is verified as shipped.
    """
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_SCRIPT} ") == 1
    path = folder / UNIT.name
    path.write_text(text.replace(f"ExecStart={INSTALLED_SCRIPT} ", f"ExecStart={venv_script()} "))
    return path


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is missing (Debian package systemd, see scripts/test)")
    return path


def test_unit_verifies(base: Path) -> None:
    """systemd-analyze verify accepts the unit: exit status 0, nothing said about it."""
    unit = unit_for_this_machine(base)
    # --man=no: the unit has no Documentation= to look up. It runs without systemd as
    # PID 1 (a container): verify loads the unit and its dependencies from files only.
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=base,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [line for line in output.splitlines() if "middlewared-2fa" in line] == []


def test_unit_sandbox_exposure(base: Path) -> None:
    """systemd-analyze security rates the unit's sandbox at most 2.0 of 10 ("OK"), so
    that losing a protection (ProtectSystem=, the system call filter...) fails here."""
    unit = unit_for_this_machine(base)
    result = subprocess.run(
        # --threshold is on a 0..100 scale: 20 is the 2.0 that the summary line shows.
        [systemd_analyze(), "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=base,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Overall exposure level for middlewared-2fa.service" in output


def exec_start_argv(environ: dict[str, str]) -> list[str]:
    """The unit's ExecStart as systemd runs it: split at spaces, each ``${NAME}`` word
    replaced by that variable (systemd.service(5), "Command lines")."""
    line = next(ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart="))
    words = line.removeprefix("ExecStart=").split()
    assert words[0] == INSTALLED_SCRIPT
    argv = [venv_script()]
    for word in words[1:]:
        argv.append(re.sub(r"\$\{(\w+)\}", lambda m: environ[m.group(1)], word))
    return argv


def test_exec_start_uses_the_service_directories(base: Path) -> None:
    """The unit's command line puts the database, the key and the SSH files in
    $STATE_DIRECTORY and the Unix socket in $RUNTIME_DIRECTORY, as StateDirectory= and
    RuntimeDirectory= set them."""
    state, runtime = base / "var-lib", base / "run-m2fa"
    state.mkdir(mode=0o700)
    runtime.mkdir()
    notify = NotifySocket(str(base / "notify"))
    env = {
        **os.environ,
        "STATE_DIRECTORY": str(state),
        "RUNTIME_DIRECTORY": str(runtime),
        "NOTIFY_SOCKET": str(base / "notify"),
        "MIDDLEWARED_2FA_PORT": "0",  # not 8642: other daemons may be running here
        "MIDDLEWARED_2FA_ADMIN_PASSWORD": "unit-test-password",
    }
    env.pop("MIDDLEWARED_2FA_RUNTIME_DIR", None)
    env.pop("MIDDLEWARED_2FA_STATE_DIR", None)
    process = subprocess.Popen(
        exec_start_argv(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=base,  # the defaults (./state, ./run) would land here
        start_new_session=True,
    )
    d = SubprocessDaemon(base, process, "", env)
    try:
        notify.wait_for("READY=1", process)
        assert asyncio.run(ping("ws+unix://" + str(runtime / "middlewared.sock"))) == "pong"
        names = {p.name for p in state.iterdir()}
        assert {"middlewared-2fa.db", "secret.key", "users.oath", "pam_oath.conf"} <= names
    finally:
        assert d.stop(timeout=WAIT) == 0
        notify.close()
    assert not (base / "state").exists() and not (base / "run").exists()
