"""SSH two-factor with the real pam_oath (libpam-oath), driven by pamtester (API.md §8).

Each test writes PAM service files under /etc/pam.d (removed afterwards) that use the
daemon's files, creates a system account with useradd (removed with userdel) named like
a daemon user, and checks codes computed by oathtool from the secret in the provisioning
URI the real client got back from user.renew_2fa_secret.

Clock: pam_oath reads the real system clock, so codes are computed for steps relative to
the current one, ``s``, taken right before the checks. A group of checks takes well under
one time step, so pam_oath verifies at step ``v`` = s or s+1; every code is chosen so the
expected answer is the same for both (a code that must pass is at most ``window - 1``
steps in the past or at most ``window`` steps ahead; one that must fail is more than
``window`` steps in the past). Nothing sleeps.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from middlewared_2fa.cli.client import Client
from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.oath import (
    enable_ssh_2fa,
    hex_of,
    line_of,
    pam_oath_lines,
    secret_of,
    users_lines,
)

PAM_MODULE_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib")


def _tools_present() -> bool:
    tools = ("pamtester", "oathtool", "useradd", "userdel")
    module = any(Path(d, "security", "pam_oath.so").exists() for d in PAM_MODULE_DIRS)
    return module and all(shutil.which(tool) for tool in tools)


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not _tools_present(),
    reason="needs root, pamtester, oathtool, useradd and pam_oath.so (libpam-oath)",
)


@dataclass
class Pam:
    """The PAM services of one test and the system account they authenticate."""

    user: str
    #: ``@include`` of the daemon's snippet: what /etc/pam.d/sshd would do.
    service: str
    #: pam_oath on the daemon's users file directly (window 1), independent of the
    #: snippet: shows whether the users file itself still lets the user in.
    direct: str

    async def authenticate(self, code: str, *, service: str | None = None) -> bool:
        """``pamtester -v SERVICE USER authenticate`` with ``code`` on stdin."""
        proc = await asyncio.create_subprocess_exec(
            "pamtester",
            "-v",
            service or self.service,
            self.user,
            "authenticate",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        await asyncio.wait_for(proc.communicate(f"{code}\n".encode()), 30)
        return proc.returncode == 0


def current_step(interval: int = 30) -> int:
    """RFC 6238 §4.2 time step of the system clock (what pam_oath uses)."""
    return int(time.time()) // interval


async def oathtool(secret_b32: str, step: int, *, interval: int = 30, digits: int = 6) -> str:
    """The code of time step ``step`` computed by oathtool from the base32 secret."""
    proc = await asyncio.create_subprocess_exec(
        "oathtool",
        "--totp",
        "--base32",
        f"--digits={digits}",
        f"--time-step-size={interval}s",
        f"--now=@{step * interval}",
        secret_b32,
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip()


async def wrong_code(secret_b32: str, step: int) -> str:
    """A 6-digit code that matches none of steps ``step-3 .. step+3``."""
    near = {await oathtool(secret_b32, step + k) for k in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(1000000)) if c not in near)


@pytest.fixture
def pam(daemon: InProcessDaemon) -> Iterator[Pam]:
    """A system account and two PAM services on the daemon's files (all removed after)."""
    tag = secrets.token_hex(4)
    user = f"m2fa{tag}"
    subprocess.run(
        ["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-c", "middlewared-2fa test", user],
        check=True,
    )
    settings = daemon.ssh
    service = Path(f"/etc/pam.d/m2fa-test-{tag}")
    direct = Path(f"/etc/pam.d/m2fa-test-{tag}-direct")
    try:
        service.write_text(
            f"@include {settings.pam_snippet_path.absolute()}\naccount required pam_permit.so\n"
        )
        direct.write_text(
            "auth required pam_oath.so "
            f"usersfile={settings.oath_users_path.absolute()} window=1\n"
            "account required pam_permit.so\n"
        )
        yield Pam(user, service.name, direct.name)
    finally:
        service.unlink(missing_ok=True)
        direct.unlink(missing_ok=True)
        subprocess.run(["userdel", user], check=False)


async def renew(admin: Client, username: str, **options: int) -> str:
    """user.renew_2fa_secret through the client; the base32 secret of its URI."""
    return secret_of(await admin.call("user.renew_2fa_secret", username, options))


async def test_code_authenticates_once_and_a_wrong_code_fails(
    daemon: InProcessDaemon, pam: Pam
) -> None:
    """A code from oathtool for the current step passes pam_oath; the same code again is
    refused (replay), and so is a wrong code; pam_oath's write-back keeps mode 0600."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin, window=1)
        await admin.call("user.create", {"username": pam.user, "password": "pw"})
        secret = await renew(admin, pam.user)
        s = current_step()
        assert not await pam.authenticate(await wrong_code(secret, s))
        code = await oathtool(secret, s)
        assert await pam.authenticate(code)
        assert not await pam.authenticate(code)
        line = line_of(path, pam.user)
        assert line is not None and line[5] == code  # pam_oath recorded it
        assert os.stat(path).st_mode & 0o777 == 0o600


async def test_a_daemon_rewrite_keeps_pam_oath_replay_protection(
    daemon: InProcessDaemon, pam: Pam
) -> None:
    """After pam_oath accepted a code, a rewrite by the daemon (another user's renewal)
    keeps pam_oath's state, so the code is still refused; a newer code still passes."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin, window=1)
        await admin.call("user.create", {"username": pam.user, "password": "pw"})
        await admin.call("user.create", {"username": "other", "password": "pw"})
        secret = await renew(admin, pam.user)
        s = current_step()
        code = await oathtool(secret, s)
        assert await pam.authenticate(code)
        state = line_of(path, pam.user)
        await renew(admin, "other")
        assert line_of(path, "other") is not None
        assert line_of(path, pam.user) == state
        assert not await pam.authenticate(code)
        assert await pam.authenticate(await oathtool(secret, s + 1))


async def test_unset_refuses_the_user(daemon: InProcessDaemon, pam: Pam) -> None:
    """After user.unset_2fa_secret the user is no longer in the users file and pam_oath
    refuses them, with the snippet and with the users file directly."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin, window=1)
        await admin.call("user.create", {"username": pam.user, "password": "pw"})
        secret = await renew(admin, pam.user)
        s = current_step()
        assert await pam.authenticate(await oathtool(secret, s))
        await admin.call("user.unset_2fa_secret", pam.user)
        assert line_of(path, pam.user) is None
        code = await oathtool(secret, s + 1)
        assert not await pam.authenticate(code)
        assert not await pam.authenticate(code, service=pam.direct)


@pytest.mark.parametrize("switch", ["services.ssh", "enabled"])
async def test_turning_ssh_2fa_off_refuses_the_user(
    daemon: InProcessDaemon, pam: Pam, switch: str
) -> None:
    """Turning services.ssh or global 2FA off empties the users file and takes the pam_oath
    line out of the snippet: pam_oath on the users file refuses the user. Turning it on
    again lists them again and their next code passes."""
    settings = daemon.ssh
    off = {"services": {"ssh": False}} if switch == "services.ssh" else {"enabled": False}
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin, window=1)
        await admin.call("user.create", {"username": pam.user, "password": "pw"})
        secret = await renew(admin, pam.user)
        s = current_step()
        assert await pam.authenticate(await oathtool(secret, s))
        await admin.call("auth.twofactor.update", off)
        assert users_lines(settings.oath_users_path) == []
        assert pam_oath_lines(settings.pam_snippet_path) == []
        assert not await pam.authenticate(await oathtool(secret, s + 1), service=pam.direct)
        await enable_ssh_2fa(admin)
        assert await pam.authenticate(await oathtool(secret, s + 1))


async def test_interval_60_and_8_digits(daemon: InProcessDaemon, pam: Pam) -> None:
    """A secret renewed with interval 60 and 8 digits is written as HOTP/T60/8 and the
    8-digit, 60-second code from oathtool passes pam_oath (once)."""
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin, window=1)
        await admin.call("user.create", {"username": pam.user, "password": "pw"})
        secret = await renew(admin, pam.user, interval=60, otp_digits=8)
        line = line_of(daemon.ssh.oath_users_path, pam.user)
        assert line is not None and line[0] == "HOTP/T60/8"
        code = await oathtool(secret, current_step(60), interval=60, digits=8)
        assert len(code) == 8
        assert await pam.authenticate(code)
        assert not await pam.authenticate(code)


async def test_window_changes_are_honoured(daemon: InProcessDaemon, pam: Pam) -> None:
    """pam_oath's window follows auth.twofactor.update: a code from 1 step ago fails with
    window 0, one from 2 steps ago fails with window 1 and passes with window 3, and a
    code 3 steps ahead passes with window 3 (window counts steps on each side)."""
    snippet = daemon.ssh.pam_snippet_path

    async def set_window(admin: Client, window: int) -> None:
        await admin.call("auth.twofactor.update", {"window": window})
        assert pam_oath_lines(snippet)[0].endswith(f" window={window}")

    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin)
        await admin.call("user.create", {"username": pam.user, "password": "pw"})
        secret = await renew(admin, pam.user)
        s = current_step()
        await set_window(admin, 0)
        assert not await pam.authenticate(await oathtool(secret, s - 1))
        await set_window(admin, 1)
        assert not await pam.authenticate(await oathtool(secret, s - 2))
        await set_window(admin, 3)
        assert await pam.authenticate(await oathtool(secret, s - 2))
        assert await pam.authenticate(await oathtool(secret, s + 3))


async def test_staged_enrolment_switches_pam_oath_at_confirm(
    daemon: InProcessDaemon, clock: FrozenClock, pam: Pam
) -> None:
    """user.twofactor_enroll leaves the users file alone (the old secret keeps working in
    pam_oath); user.twofactor_confirm rewrites it: the old secret is refused, the code that
    confirmed is used up for pam_oath too (API.md §8), the next code of the new one passes."""
    path = daemon.ssh.oath_users_path
    # The daemon checks the confirming code at pam_oath's (the real) time.
    clock.set(time.time())
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin, window=1)
        await admin.call("user.create", {"username": pam.user, "password": "pw"})
        old = await renew(admin, pam.user)
        pending = await admin.call("user.twofactor_enroll", pam.user)
        new = secret_of(pending["provisioning_uri"])
        line = line_of(path, pam.user)
        assert line is not None and line[3] == hex_of(old)
        s = current_step()
        assert await pam.authenticate(await oathtool(old, s))
        clock.set(time.time())
        c = int(clock.time()) // 30
        confirming = await oathtool(new, c)
        await admin.call("user.twofactor_confirm", pam.user, confirming)
        line = line_of(path, pam.user)
        assert line is not None and line[3] == hex_of(new)
        assert not await pam.authenticate(await oathtool(old, c + 1))
        assert not await pam.authenticate(confirming)
        assert await pam.authenticate(await oathtool(new, c + 1))
