"""One daemon per state directory, sockets that belong to someone else, and start-up
failures that must end the process promptly (API.md §1), with real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from middlewared_2fa.cli.client import open_client
from tests.e2e.test_daemon_process import run_daemon
from tests.helpers.daemon import (
    ADMIN_PASSWORD,
    SubprocessDaemon,
    daemon_command,
    short_tempdir,
    start_subprocess_daemon,
)

#: Seconds a failing start may take before the test calls it a hang (API.md §1: "within
#: a few seconds"; generous for a slow two-core machine).
HANG = 20


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def first(base: Path) -> Iterator[SubprocessDaemon]:
    d = start_subprocess_daemon(base)
    try:
        yield d
    finally:
        d.stop()


def _identity(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_dev, st.st_ino


def _ping(uri: str) -> str:
    async def go() -> str:
        async with open_client(uri) as c:
            return str(await c.call("core.ping"))

    return asyncio.run(go())


def _messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("middlewared-2fa:")]


def _fail_to_start(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a daemon that must fail at start-up; asserts it ends within :data:`HANG`
    seconds and leaves no process of its group (its own session) behind."""
    process = subprocess.Popen(
        [
            *daemon_command(),
            "--port",
            "0",
            "--state-dir",
            str(base / "state"),
            "--runtime-dir",
            str(base / "run"),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MIDDLEWARED_2FA_ADMIN_PASSWORD": ADMIN_PASSWORD},
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"the daemon did not exit within {HANG} s") from None
    with pytest.raises(ProcessLookupError):  # nothing of it is left running
        os.killpg(process.pid, 0)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_second_daemon_on_the_same_state_dir_exits_2(base: Path, first: SubprocessDaemon) -> None:
    """A second daemon on the same state directory exits 2 naming the first's PID,
    without touching its socket, which keeps working."""
    before = _identity(first.socket_path)
    result = run_daemon(base, env={"MIDDLEWARED_2FA_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert result.returncode == 2
    assert _messages(result.stderr) == [
        f"middlewared-2fa: another daemon (PID {first.process.pid}) is running on the state "
        f"directory {base / 'state'} (lock file {base / 'state' / 'middlewared-2fa.lock'})"
    ]
    assert "listening on" not in result.stdout
    assert _identity(first.socket_path) == before
    assert _ping(first.unix_uri) == "pong"
    assert (base / "state" / "middlewared-2fa.lock").read_text().strip() == str(first.process.pid)


def test_second_daemon_sharing_only_the_runtime_dir_keeps_the_first_socket(
    first: SubprocessDaemon,
) -> None:
    """A daemon with another state directory but the same runtime directory finds the
    first one's live socket: it exits 2 and the socket stays the first's."""
    before = _identity(first.socket_path)
    other = short_tempdir()
    try:
        result = _fail_to_start(other, "--runtime-dir", str(first.base / "run"))
    finally:
        shutil.rmtree(other, ignore_errors=True)
    assert result.returncode == 2
    [message] = _messages(result.stderr)
    assert f"socket {first.socket_path} is in use" in message
    assert _identity(first.socket_path) == before
    assert _ping(first.unix_uri) == "pong"


def test_stale_socket_of_a_killed_daemon_is_replaced(base: Path) -> None:
    """After a daemon is killed (lock released by the kernel, socket file left behind),
    a new one on the same folders starts, replaces the dead socket and serves on it."""
    dead = start_subprocess_daemon(base)
    dead.stop(signal.SIGKILL)
    assert dead.socket_path.is_socket()  # left behind, nobody listening
    d = start_subprocess_daemon(base)
    try:
        assert _ping(d.unix_uri) == "pong"
    finally:
        assert d.stop() == 0
    assert not d.socket_path.exists()


def test_socket_replaced_behind_the_daemon_is_not_removed(first: SubprocessDaemon) -> None:
    """At stop the daemon removes only the socket file it created (same inode): one that
    replaced it meanwhile stays."""
    first.socket_path.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as someone_else:
        someone_else.bind(str(first.socket_path))
        someone_else.listen()
        theirs = _identity(first.socket_path)
        assert first.stop() == 0
        assert _identity(first.socket_path) == theirs


def test_not_a_socket_is_not_replaced(base: Path) -> None:
    """A file that is not a socket where the socket should be is never deleted: the
    daemon exits 2 saying so."""
    (base / "run").mkdir()
    squatter = base / "run" / "middlewared.sock"
    squatter.write_text("not a socket")
    result = _fail_to_start(base)
    assert result.returncode == 2
    [message] = _messages(result.stderr)
    assert "exists and is not a socket" in message
    assert squatter.read_text() == "not a socket"


def _valid_header_then_garbage(path: Path) -> None:
    """A SQLite header (so the file opens) followed by pages of garbage."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 100,) for _ in range(200)])
        conn.commit()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * (len(data) - 100))


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda db: db.write_bytes(os.urandom(8192)), "file is not a database"),
        (_valid_header_then_garbage, "database disk image is malformed"),
    ],
    ids=["random-bytes", "garbage-pages"],
)
def test_corrupt_database_exits_2_promptly(
    base: Path, corrupt: Callable[[Path], object], reason: str
) -> None:
    """A corrupt database file ends the start with exit status 2 and one message naming
    the database, promptly, with nothing left running."""
    (base / "state").mkdir()
    db = base / "state" / "middlewared-2fa.db"
    corrupt(db)
    result = _fail_to_start(base)
    assert result.returncode == 2
    assert _messages(result.stderr) == [f"middlewared-2fa: cannot open database {db}: {reason}"]
    assert "Traceback" not in result.stderr
    assert "threads left" not in result.stderr  # closed at the root, not by the safety net
    assert not (base / "run" / "middlewared.sock").exists()


def test_port_in_use_exits_2_promptly(base: Path) -> None:
    """A TCP port in use ends the start with status 2 and nothing left running; the
    database opened before is closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = _fail_to_start(base, "--port", str(port))
    assert result.returncode == 2
    assert _messages(result.stderr) == [
        f"middlewared-2fa: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert "threads left" not in result.stderr
    assert not (base / "run" / "middlewared.sock").exists()
