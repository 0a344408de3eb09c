"""The ``middlewared-2fa`` process: start-up, first-start password, key checks, shutdown."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from middlewared_2fa.cli.client import open_client
from tests.helpers.daemon import (
    ADMIN_PASSWORD,
    daemon_command,
    short_tempdir,
    start_subprocess_daemon,
)


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_daemon(
    base: Path, *args: str, env: dict[str, str] | None = None, port: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run the daemon expecting it to fail at start-up."""
    command = [
        *daemon_command(),
        "--port",
        str(port),
        "--state-dir",
        str(base / "state"),
        "--runtime-dir",
        str(base / "run"),
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


async def give_admin_a_secret(url: str) -> None:
    async with open_client(url) as c:
        await c.login("admin", ADMIN_PASSWORD)
        await c.call("user.renew_2fa_secret", "admin")


def test_generated_admin_password(base: Path) -> None:
    """Without a configured password, one is generated into a 0600 file and never logged."""
    env = {"MIDDLEWARED_2FA_ADMIN_PASSWORD": ""}
    d = start_subprocess_daemon(base, extra_env=env)
    try:
        pw_file = base / "state" / "initial-admin-password"
        password = pw_file.read_text().strip()
        assert len(password) >= 16
        assert pw_file.stat().st_mode & 0o777 == 0o600

        async def login() -> str:
            async with open_client(d.url) as c:
                return str((await c.login("admin", password))["response_type"])

        assert asyncio.run(login()) == "SUCCESS"
    finally:
        assert d.stop() == 0
    log = (base / "daemon.log").read_text()
    assert password not in log
    assert str(pw_file) in log


def test_sigterm_stops_cleanly(base: Path) -> None:
    """SIGTERM and SIGINT stop the daemon with status 0 and remove the Unix socket."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = start_subprocess_daemon(base)
        assert d.socket_path.exists()
        assert d.stop(sig) == 0
        assert not d.socket_path.exists()


def test_wrong_key_file_is_a_startup_error(base: Path) -> None:
    """A key file that does not match the database stops the start with a clear message."""
    d = start_subprocess_daemon(base)
    asyncio.run(give_admin_a_secret(d.url))
    d.stop()
    key = base / "state" / "secret.key"
    key.write_bytes(__import__("base64").b64encode(os.urandom(32)) + b"\n")
    result = run_daemon(base)
    assert result.returncode == 2
    assert "does not match the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_key_file_is_a_startup_error(base: Path) -> None:
    """A missing key file with encrypted secrets in the database is not silently replaced."""
    d = start_subprocess_daemon(base)
    asyncio.run(give_admin_a_secret(d.url))
    d.stop()
    (base / "state" / "secret.key").unlink()
    result = run_daemon(base)
    assert result.returncode == 2
    assert "is missing" in result.stderr
    assert not (base / "state" / "secret.key").exists()


def test_port_in_use(base: Path) -> None:
    """A port already in use is a one-line start-up error, not a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_daemon(base, port=port, env={"MIDDLEWARED_2FA_ADMIN_PASSWORD": "x"})
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_invalid_setting(base: Path) -> None:
    """An invalid environment setting names the key."""
    result = run_daemon(base, env={"MIDDLEWARED_2FA_AUTH_THROTTLE_MAX": "soon"})
    assert result.returncode == 2
    assert "auth_throttle_max" in result.stderr


def test_secret_not_in_database_file(base: Path) -> None:
    """The SQLite file holds no plaintext TOTP secret."""
    d = start_subprocess_daemon(base)

    async def renew() -> str:
        async with open_client(d.url) as c:
            await c.login("admin", ADMIN_PASSWORD)
            entry = await c.call("user.renew_2fa_secret", "admin")
            return str(entry["twofactor_config"]["provisioning_uri"].split("secret=")[1][:32])

    secret = asyncio.run(renew())
    d.stop()
    raw = b"".join(p.read_bytes() for p in (base / "state").glob("middlewared-2fa.db*"))
    assert secret.encode() not in raw
    assert secret.lower().encode() not in raw


def test_state_files_are_private(base: Path) -> None:
    """Everything the daemon creates in its state folder is readable by its user only."""
    env = {"MIDDLEWARED_2FA_ADMIN_PASSWORD": ""}
    d = start_subprocess_daemon(base, extra_env=env)
    try:
        asyncio.run(give_admin_a_secret_with_file(d.url, base))
    finally:
        d.stop()
    state = base / "state"
    assert state.stat().st_mode & 0o077 == 0
    # The PAM snippet is configuration meant to be read like /etc/pam.d files (0644).
    created = [p for p in state.iterdir() if p.is_file() and p.name != "pam_oath.conf"]
    assert any(p.name == "middlewared-2fa.db" for p in created)
    assert all(p.stat().st_mode & 0o077 == 0 for p in created), [
        (p.name, oct(p.stat().st_mode)) for p in created
    ]


async def give_admin_a_secret_with_file(url: str, base: Path) -> None:
    password = (base / "state" / "initial-admin-password").read_text().strip()
    async with open_client(url) as c:
        await c.login("admin", password)
        await c.call("user.renew_2fa_secret", "admin")


def test_admin_password_change_retires_the_initial_password_file(base: Path) -> None:
    """Once admin's password is changed, the generated first password file is removed."""
    d = start_subprocess_daemon(base, extra_env={"MIDDLEWARED_2FA_ADMIN_PASSWORD": ""})
    pw_file = base / "state" / "initial-admin-password"
    try:
        password = pw_file.read_text().strip()

        async def change() -> None:
            async with open_client(d.url) as c:
                await c.login("admin", password)
                await c.call("user.update", 1, {"full_name": "Admin"})
                assert pw_file.exists()
                await c.call("user.update", 1, {"password": "a-new-admin-password"})

        asyncio.run(change())
        assert not pw_file.exists()
    finally:
        d.stop()
