"""The clock check against a real NTP server: chronyd on a loopback port, and the daemon
as a separate process whose clock libfaketime shifts (the whole process: TOTP, ntplib's
timestamps, audit times).

Sign convention (ntplib, API.md §6): a daemon clock 90 s *ahead* gives offset about -90.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from middlewared_2fa.cli.client import Client, ClientError, open_client
from tests.helpers.daemon import (
    ADMIN_PASSWORD,
    SubprocessDaemon,
    short_tempdir,
    start_subprocess_daemon,
    wait_until,
)
from tests.helpers.ntp import (
    chrony_server,
    chrony_unavailable,
    faketime_file_env,
    faketime_library,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chrony_unavailable() is not None, reason=str(chrony_unavailable())),
    pytest.mark.skipif(
        shutil.which("faketime") is None or faketime_library() is None,
        reason="faketime/libfaketime are not installed (Debian package faketime)",
    ),
]

#: Settings for every daemon here: a short NTP timeout, no periodic check in the way.
DAEMON_ENV = {"MIDDLEWARED_2FA_NTP_TIMEOUT": "2", "MIDDLEWARED_2FA_TIME_SYNC_INTERVAL": "3600"}


@pytest.fixture(scope="module")
def chrony() -> Iterator[tuple[str, int]]:
    """One chronyd for the module: (host, port)."""
    with chrony_server(stratum=8) as server:
        yield server


@pytest.fixture
def base() -> Iterator[Path]:
    folder = short_tempdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@asynccontextmanager
async def admin_of(daemon: SubprocessDaemon) -> AsyncIterator[Client]:
    async with open_client(daemon.url) as c:
        assert (await c.login("admin", ADMIN_PASSWORD))["response_type"] == "SUCCESS"
        yield c


async def alerts_of(admin: Client, klass: str) -> list[dict[str, Any]]:
    return [a for a in await admin.call("alert.list") if a["klass"] == klass]


def start(base: Path, **kwargs: Any) -> SubprocessDaemon:
    extra_env = {**DAEMON_ENV, **kwargs.pop("extra_env", {})}
    return start_subprocess_daemon(base, extra_env=extra_env, **kwargs)


async def test_daemon_90s_ahead_then_corrected(base: Path, chrony: tuple[str, int]) -> None:
    """A daemon clock 90 s ahead of chronyd is SKEWED with offset -90 +/- 1 s, enabling
    2FA is -32602 naming the offset and the server, TimeSkew is raised; once the clock is
    right again (same process), the check is SYNCED, the alert clears and enabling
    works."""
    host, port = chrony
    control = base / "faketime"
    control.write_text("+90s\n")
    daemon = start(base, extra_env=faketime_file_env(control))
    try:
        async with admin_of(daemon) as admin:
            await admin.call("system.ntpserver.create", {"address": host, "port": port})
            status = await admin.call("system.time_sync.check")
            assert status["state"] == "SKEWED", status
            assert status["offset"] == pytest.approx(-90.0, abs=1.0)
            [server] = status["servers"]
            assert (server["reachable"], server["stratum"], server["leap"]) == (True, 8, 0)

            with pytest.raises(ClientError) as exc:
                await admin.call("auth.twofactor.update", {"enabled": True})
            assert exc.value.code == -32602
            [(attribute, message, _errno)] = exc.value.extra
            assert attribute == "auth_twofactor_update.enabled"
            assert re.search(r"-(89|90)\.\d s \(local clock ahead of NTP\)", message), message
            assert f"{host}:{port}" in message
            [alert] = await alerts_of(admin, "TimeSkew")
            assert alert["level"] == "WARNING"

            async def state_is(state: str) -> bool:
                return bool((await admin.call("system.time_sync.check"))["state"] == state)

            control.write_text("+0s\n")
            await wait_until(lambda: state_is("SYNCED"), timeout=30, interval=0.2)
            assert abs((await admin.call("system.time_sync.status"))["offset"]) < 1.0
            assert await alerts_of(admin, "TimeSkew") == []
            assert (await admin.call("auth.twofactor.update", {"enabled": True}))["enabled"]

            control.write_text("+90s\n")
            await wait_until(lambda: state_is("SKEWED"), timeout=30, interval=0.2)
            [alert] = await alerts_of(admin, "TimeSkew")
            assert alert["level"] == "CRITICAL"  # 2FA is on now
    finally:
        daemon.stop()


async def test_daemon_45s_behind_then_restarted_right(base: Path, chrony: tuple[str, int]) -> None:
    """Under `faketime -f -45s` the offset is +45 +/- 1 s (local clock behind) and
    enabling 2FA is refused; restarted on the same state without faketime, the daemon
    finds its clock SYNCED by itself, raises no alert and allows enabling 2FA."""
    host, port = chrony
    daemon = start(base, prefix=["faketime", "-f", "-45s"])
    try:
        async with admin_of(daemon) as admin:
            await admin.call("system.ntpserver.create", {"address": host, "port": port})
            status = await admin.call("system.time_sync.check")
            assert status["state"] == "SKEWED"
            assert status["offset"] == pytest.approx(45.0, abs=1.0)
            with pytest.raises(ClientError) as exc:
                await admin.call("auth.twofactor.update", {"enabled": True})
            message = exc.value.extra[0][1]
            assert re.search(r"\+(44|45)\.\d s \(local clock behind NTP\)", message), message
            assert await alerts_of(admin, "TimeSkew")
    finally:
        daemon.stop()
    daemon = start(base)
    try:
        async with admin_of(daemon) as admin:
            status = await admin.call("system.time_sync.status")  # the start-up check
            assert status["state"] == "SYNCED"
            assert abs(status["offset"]) < 1.0
            assert await alerts_of(admin, "TimeSkew") == []
            assert (await admin.call("auth.twofactor.update", {"enabled": True}))["enabled"]
            assert await alerts_of(admin, "TimeSyncUnverified") == []
    finally:
        daemon.stop()


def midclt2fa(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI without a controlling terminal (so it never prompts)."""
    script = shutil.which("midclt2fa", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "middlewared_2fa.cli.main"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        timeout=120,
    )


async def test_failed_otp_names_the_skew(base: Path, chrony: tuple[str, int]) -> None:
    """With 2FA set up while the clock was right and the daemon then 90 s ahead, the
    phone's current code is refused; midclt2fa as root on the Unix socket names the
    skew, over TCP (not logged in) it says only "wrong one-time code"; the audit entry
    of the failed step names the skew."""
    host, port = chrony
    daemon = start(base)
    try:
        async with admin_of(daemon) as admin:
            await admin.call("system.ntpserver.create", {"address": host, "port": port})
            await admin.call("user.create", {"username": "alice", "password": "alice-pw"})
            renewed = await admin.call("user.renew_2fa_secret", "alice")
            uri = renewed["twofactor_config"]["provisioning_uri"]
            secret = parse_qs(urlsplit(uri).query)["secret"][0]
            assert (await admin.call("auth.twofactor.update", {"enabled": True}))["enabled"]
    finally:
        daemon.stop()
    control = base / "faketime"
    control.write_text("+90s\n")
    daemon = start(base, extra_env=faketime_file_env(control))
    try:
        async with admin_of(daemon) as admin:
            status = await admin.call("system.time_sync.status")
            assert status["state"] == "SKEWED", status  # servers[0].error says why not
            assert [a["level"] for a in await alerts_of(admin, "TimeSkew")] == ["CRITICAL"]
            login = ["-U", "alice", "-P", "alice-pw", "--otp"]

            phone = pyotp.TOTP(secret).now()  # the phone runs on the right time
            done = midclt2fa("-u", daemon.unix_uri, *login, phone, "ping")
            assert done.returncode == 1
            assert "wrong one-time code" in done.stderr
            skew = r"-(89|90)\.\d s \(local clock ahead of NTP"
            assert re.search("clock is off by " + skew, done.stderr), done.stderr
            assert phone not in done.stderr

            done = midclt2fa("-u", daemon.url, *login, pyotp.TOTP(secret).now(), "ping")
            assert done.returncode == 1
            assert "wrong one-time code" in done.stderr
            assert "clock" not in done.stderr

            failures = await admin.call(
                "audit.query",
                {"query-filters": [["username", "=", "alice"], ["success", "=", False]]},
            )
            assert len(failures) == 2
            for failure in failures:
                description = failure["event_data"]["description"]
                assert re.search("skewed by " + skew, description), description
    finally:
        daemon.stop()


async def test_a_check_sent_before_chronyd_serves_still_reaches_it(base: Path) -> None:
    """A check whose first request arrives before chronyd serves the port (a socket there
    takes it and never answers, as an unbound port drops it) is still SYNCED once chronyd
    starts on that port within ntp_timeout: the request is sent again, not given up."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon = start(base)
    try:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(30)
        port = sink.getsockname()[1]
        async with admin_of(daemon) as admin:
            # The new server is checked at once, in the background: its first request.
            await admin.call("system.ntpserver.create", {"address": "127.0.0.1", "port": port})
            request, _ = await asyncio.to_thread(sink.recvfrom, 512)
            assert request[0] & 0x7 == 3  # an NTP client request (RFC 5905 §7.3)
            sink.close()
            with chrony_server(stratum=8, port=port):
                status = await admin.call("system.time_sync.status")  # that same check
            assert status["state"] == "SYNCED", status
            assert status["servers"][0]["stratum"] == 8
    finally:
        sink.close()
        daemon.stop()


async def test_daemon_in_2037(base: Path, chrony: tuple[str, int]) -> None:
    """A daemon whose clock is past NTP era 0 (2037) reports 'local clock out of range'
    as an unreachable server instead of failing, and keeps serving."""
    host, port = chrony
    daemon = start(base, prefix=["faketime", "2037-01-01 00:00:00"])
    try:
        async with admin_of(daemon) as admin:
            await admin.call("system.ntpserver.create", {"address": host, "port": port})
            reply = await admin.request("system.time_sync.check", [])
            status = reply["result"]
            assert status["state"] == "UNREACHABLE"
            assert status["servers"][0]["error"].startswith("local clock out of range:")
            assert await admin.call("core.ping") == "pong"
    finally:
        daemon.stop()
