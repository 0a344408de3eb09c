"""One code, one use across the daemon's API and SSH (API.md §8, RFC 6238 §5.2), with the
real pam_oath (libpam-oath) driven by pamtester on the daemon's own users file.

Clock: the daemon's clock is frozen at ``NOW`` (the middle of time step ``S``) and every
pamtester run happens under ``faketime`` frozen at the daemon's current time, so both
sides compute the same step and nothing depends on the wall clock; a test moves both
forward a whole step with ``clock.advance(30)``. Codes come from oathtool, not from the
daemon's TOTP code. Nothing sleeps.

PAM set-up as in tests/e2e/test_pam_oath.py: a throw-away system account named like the
daemon user and a service under /etc/pam.d that includes the daemon's snippet (both
removed afterwards).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from middlewared_2fa.cli.client import Client
from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.oath import enable_ssh_2fa, line_of, secret_of
from tests.helpers.plugins import load_plugin

PAM_MODULE_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib")
INTERVAL = 30
#: 2023-11-14T22:13:35Z, 15 s into its time step: the frozen instant of both sides.
NOW = 1_700_000_015.0
S = int(NOW) // INTERVAL
PASSWORD = "user-test-password"
RECORD_ALERT = "SshOathRecordFailed"


def _pam_tools_present() -> bool:
    tools = ("pamtester", "oathtool", "faketime", "useradd", "userdel")
    module = any(Path(d, "security", "pam_oath.so").exists() for d in PAM_MODULE_DIRS)
    return module and all(shutil.which(tool) for tool in tools)


needs_pam = pytest.mark.skipif(
    os.geteuid() != 0 or not _pam_tools_present(),
    reason="needs root, pamtester, oathtool, faketime, useradd and pam_oath.so (libpam-oath)",
)


@pytest.fixture
def clock() -> FrozenClock:
    """The daemon's clock (overrides the shared fixture): frozen at ``NOW``."""
    return FrozenClock(NOW)


@dataclass
class Pam:
    """The PAM service of one test and the system account it authenticates."""

    user: str
    service: str
    clock: FrozenClock

    async def authenticate(self, code: str) -> bool:
        """``pamtester SERVICE USER authenticate`` with ``code`` on stdin, its clock frozen
        by faketime at the daemon's current time (local time, as faketime reads it)."""
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.clock.time()))
        proc = await asyncio.create_subprocess_exec(
            "faketime",
            at,
            "pamtester",
            self.service,
            self.user,
            "authenticate",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.wait_for(proc.communicate(f"{code}\n".encode()), 30)
        return proc.returncode == 0


@pytest.fixture
def pam(daemon: InProcessDaemon, clock: FrozenClock) -> Iterator[Pam]:
    """A system account and a PAM service that includes the daemon's snippet (what
    /etc/pam.d/sshd does), both removed afterwards."""
    tag = secrets.token_hex(4)
    user = f"m2fa{tag}"
    subprocess.run(
        ["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-c", "middlewared-2fa test", user],
        check=True,
    )
    service = Path(f"/etc/pam.d/m2fa-test-{tag}")
    try:
        service.write_text(
            f"@include {daemon.ssh.pam_snippet_path.absolute()}\naccount required pam_permit.so\n"
        )
        yield Pam(user, service.name, clock)
    finally:
        service.unlink(missing_ok=True)
        subprocess.run(["userdel", user], check=False)


async def oathtool(secret_b32: str, step: int) -> str:
    """The 6-digit code of time step ``step`` computed by oathtool from the base32 secret."""
    proc = await asyncio.create_subprocess_exec(
        "oathtool",
        "--totp",
        "--base32",
        f"--time-step-size={INTERVAL}s",
        f"--now=@{step * INTERVAL}",
        secret_b32,
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip()


async def set_up_user(daemon: InProcessDaemon, admin: Client, username: str) -> str:
    """Turn SSH 2FA on (window 1), create ``username`` with a secret; its base32 secret."""
    await enable_ssh_2fa(admin, window=1)
    await admin.call("user.create", {"username": username, "password": PASSWORD})
    renewed = await admin.call("user.renew_2fa_secret", username, {})
    assert line_of(daemon.ssh.oath_users_path, username) is not None
    return secret_of(renewed)


async def login(daemon: InProcessDaemon, username: str, code: str) -> str:
    """Password, then ``code`` in auth.login_ex_continue; the last response_type."""
    async with daemon.client() as c:
        return str((await c.login(username, PASSWORD, code))["response_type"])


async def alerts_of(admin: Client, klass: str) -> list[dict[str, object]]:
    return [a for a in await admin.call("alert.list") if a["klass"] == klass]


@needs_pam
async def test_a_code_the_daemon_accepted_is_refused_by_pam_oath(
    daemon: InProcessDaemon, pam: Pam
) -> None:
    """A code accepted by auth.login_ex_continue is written to the users file as
    liboath's record, so pam_oath refuses it and an older code of the window, while a
    newer code still passes pam_oath."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        secret = await set_up_user(daemon, admin, pam.user)
        code = await oathtool(secret, S)
        assert await login(daemon, pam.user, code) == "SUCCESS"
        line = line_of(path, pam.user)
        assert line is not None and line[4:6] == ["0", code] and line[6].endswith("L")
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert not await pam.authenticate(code)
        assert not await pam.authenticate(await oathtool(secret, S - 1))
        assert await pam.authenticate(await oathtool(secret, S + 1))


@needs_pam
async def test_a_code_pam_oath_accepted_is_refused_by_the_daemon(
    daemon: InProcessDaemon, pam: Pam
) -> None:
    """After pam_oath accepted a code, the daemon's OTP step refuses that code and an
    older code of the window (OTP_REQUIRED), and accepts a newer one."""
    async with daemon.admin() as admin:
        secret = await set_up_user(daemon, admin, pam.user)
        code = await oathtool(secret, S)
        assert await pam.authenticate(code)
        async with daemon.client() as c:
            first = await c.login(pam.user, PASSWORD, code)
            assert first["response_type"] == "OTP_REQUIRED"
            for token, expected in [
                (await oathtool(secret, S - 1), "OTP_REQUIRED"),
                (await oathtool(secret, S + 1), "SUCCESS"),
            ]:
                resp = await c.call(
                    "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": token}
                )
                assert resp["response_type"] == expected


@needs_pam
async def test_newer_codes_keep_working_on_both_channels(
    daemon: InProcessDaemon, pam: Pam, clock: FrozenClock
) -> None:
    """Alternating channels over three time steps: each side accepts a newer code and
    refuses the code the other side used last (user.verify_twofactor_token for the API),
    including a code one step ahead that pam_oath accepted."""
    async with daemon.admin() as admin:
        secret = await set_up_user(daemon, admin, pam.user)

        async def verify(step: int) -> bool:
            code = await oathtool(secret, step)
            return bool(await admin.call("user.verify_twofactor_token", pam.user, code))

        assert await verify(S)
        assert not await pam.authenticate(await oathtool(secret, S))
        clock.advance(INTERVAL)  # both sides at S + 1
        assert await pam.authenticate(await oathtool(secret, S + 1))
        assert not await verify(S + 1)
        clock.advance(INTERVAL)  # S + 2
        assert await verify(S + 2)
        assert not await pam.authenticate(await oathtool(secret, S + 2))
        assert await pam.authenticate(await oathtool(secret, S + 3))  # one step ahead
        assert not await verify(S + 3)


@needs_pam
async def test_a_pam_oath_login_between_read_and_record_refuses_the_code(
    daemon: InProcessDaemon, pam: Pam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When pam_oath accepts the code after the daemon read the users file (simulated:
    the read sees no record), the record step finds pam_oath's record under liboath's
    lock and the daemon refuses the code all the same."""
    service = daemon.ssh

    async def stale_read(*_args: object) -> None:
        return None

    async with daemon.admin() as admin:
        secret = await set_up_user(daemon, admin, pam.user)
        code = await oathtool(secret, S)
        assert await pam.authenticate(code)
        monkeypatch.setattr(service, "last_step", stale_read)
        assert await login(daemon, pam.user, code) == "OTP_REQUIRED"
        line = line_of(daemon.ssh.oath_users_path, pam.user)
        assert line is not None and line[5] == code  # pam_oath's record is left as it was


@pytest.mark.skipif(shutil.which("oathtool") is None, reason="needs oathtool")
async def test_an_unrecordable_code_still_logs_in_and_raises_an_alert(
    daemon: InProcessDaemon, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """While another process holds liboath's lock past the record timeout, a right code
    still logs in (the database is the source of truth), the file keeps no record, the
    WARNING alert SshOathRecordFailed names the user and the log never has the code;
    the next good record clears the alert."""
    path = daemon.ssh.oath_users_path.absolute()
    service = daemon.ssh
    service.RECORD_LOCK_TIMEOUT = 0.2
    # The re-check after a rewrite would wait for the held lock too: keep it out of the way.
    service.RECHECK_DELAY = 3600.0
    async with daemon.admin() as admin:
        secret = await set_up_user(daemon, admin, "alice")
        code = await oathtool(secret, S)
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(path) + '.lock'!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None and await holder.stdout.readline() == b"locked\n"
            with caplog.at_level(logging.WARNING):
                assert await login(daemon, "alice", code) == "SUCCESS"
        finally:
            await holder.communicate(b"")
        line = line_of(path, "alice")
        assert line is not None and len(line) == 4  # no record
        [alert] = await alerts_of(admin, RECORD_ALERT)
        assert alert["level"] == "WARNING" and "'alice'" in str(alert["formatted"])
        assert "alice" in caplog.text and code not in caplog.text
        assert await login(daemon, "alice", code) == "OTP_REQUIRED"  # the database refuses
        clock.advance(INTERVAL)
        newer = await oathtool(secret, S + 1)
        assert await login(daemon, "alice", newer) == "SUCCESS"
        assert await alerts_of(admin, RECORD_ALERT) == []
        line = line_of(path, "alice")
        assert line is not None and line[5] == newer


def test_a_record_is_found_by_its_own_time_and_at_the_typed_length() -> None:
    """recorded_step finds LASTOTP's step around the record's TIME when the clock has
    since gone back, reads a 6-digit LASTOTP as the tail of an 8-digit code,
    and finds nothing when the code is outside every window; TIME needs liboath's L."""
    ssh_oath = load_plugin("ssh_oath.usersfile")
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    eight = pyotp.TOTP(secret, digits=8, interval=INTERVAL).generate_otp(S)
    stamp = ssh_oath.format_stamp(NOW)
    assert ssh_oath.parse_stamp(stamp) == NOW
    earlier = NOW - 100 * INTERVAL  # the clock went back 100 steps since
    found = ssh_oath.recorded_step(
        secret, eight[2:], stamp, interval=INTERVAL, now=earlier, window=1
    )
    assert found == S
    assert (
        ssh_oath.recorded_step(secret, eight[2:], None, interval=INTERVAL, now=earlier, window=1)
        is None
    )
    assert ssh_oath.recorded_step(secret, eight, stamp, interval=INTERVAL, now=NOW, window=1) == S
    assert ssh_oath.parse_stamp("2023-11-14T22:13:35") is None  # liboath needs the L
