"""Bug cases C09 (clock skew) and C10 (NTP failure handling) from
../shared/cases/bug-cases.md, with the values its 'Contract pins' lines give.

The daemon's TOTP clock is frozen at 1234567890; the loopback NTP responder plays the
"true time" the case describes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pyotp
import pytest

from middlewared_2fa.cli.client import Client, ClientError
from middlewared_2fa.clock import FrozenClock
from tests.conftest import T0
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.ntp import NtpResponder
from tests.helpers.rfc import AROUND_1234567890, RFC_SECRET

#: C10 (d): 2037-01-01T00:00:00Z, past the end of NTP era 0 (2036-02-07).
Y2037 = 2114380800


@pytest.fixture
async def admin(daemon: InProcessDaemon) -> AsyncIterator[Client]:
    async with daemon.admin() as c:
        yield c


async def test_c09_clock_90s_behind(
    daemon: InProcessDaemon, admin: Client, clock: FrozenClock
) -> None:
    """C09: with the server clock 90 s behind (1234567890 vs 1234567980) and window 1,
    the phone's code ('992085', step +3) is refused; the check reports SKEWED with offset
    about +90 (local clock behind); enabling 2FA is -32602 on
    auth_twofactor_update.enabled naming the offset; a failed OTP login is audited with
    the skew as the likely reason, and widening the window is not the fix."""
    phone_code = AROUND_1234567890[3]
    assert phone_code == "992085"
    with NtpResponder(now=clock.time) as ntp:
        await admin.call("system.ntpserver.create", {"address": ntp.host, "port": ntp.port})
        async with user_asset(admin, "user1"):
            await daemon.seed_secret("user1", RFC_SECRET)
            # While the clock is right, 2FA may be enabled (window 1).
            await admin.call("auth.twofactor.update", {"enabled": True, "window": 1})
            ntp.offset = 90.0  # true time 1234567980: the server is 90 s slow
            status = await admin.call("system.time_sync.check")
            assert status["state"] == "SKEWED"
            assert status["offset"] == pytest.approx(90.0, abs=0.5)
            assert status["max_offset"] == 30
            [alert] = [a for a in await admin.call("alert.list") if a["klass"] == "TimeSkew"]
            assert alert["level"] == "CRITICAL"

            assert await admin.call("user.verify_twofactor_token", "user1", phone_code) is False
            async with daemon.client() as c:
                first = await c.login("user1", "user-password")
                assert first["response_type"] == "OTP_REQUIRED"
                again = await c.call(
                    "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": phone_code}
                )
                assert again["response_type"] == "OTP_REQUIRED"
            failures = await admin.call(
                "audit.query",
                {"query-filters": [["event", "=", "AUTHENTICATION"], ["success", "=", False]]},
            )
            [failure] = [f for f in failures if f["username"] == "user1"]
            description = failure["event_data"]["description"]
            assert "skewed by +90.0 s (local clock behind NTP)" in description
            assert phone_code not in description

            await admin.call("auth.twofactor.update", {"enabled": False})
            with pytest.raises(ClientError) as exc:
                await admin.call("auth.twofactor.update", {"enabled": True})
            assert exc.value.code == -32602
            [(attribute, message, errno)] = exc.value.extra
            assert (attribute, errno) == ("auth_twofactor_update.enabled", 22)
            assert "+90.0 s" in message and "behind" in message
            assert f"{ntp.host}:{ntp.port}" in message

            # Only a window of 3 steps would take the code: the clock is the fix.
            await admin.call("auth.twofactor.update", {"window": 3})
            assert await admin.call("user.verify_twofactor_token", "user1", phone_code) is True


def _failure_setup(kind: str) -> tuple[dict[str, Any] | None, str, float]:
    """(responder behaviour or None for a host name, the error kind, TOTP clock)."""
    return {
        "a": ({"silent": True}, "timeout", T0),
        "b": (None, "dns", T0),
        "c": ({"stratum": 16}, "unsynchronized", T0),
        "d": ({}, "local clock out of range", Y2037),
    }[kind]


@pytest.mark.settings(ntp_timeout=1.0)
@pytest.mark.parametrize("kind", ["a", "b", "c", "d"])
async def test_c10_ntp_failures_are_status_entries(
    daemon: InProcessDaemon, admin: Client, clock: FrozenClock, kind: str
) -> None:
    """C10: (a) a server that never answers (timeout 1 s), (b) 'ntp.invalid', (c) a
    server answering stratum 16, (d) the local clock at 2037-01-01: each gives state
    UNREACHABLE with the server unreachable and an error text, within about the timeout,
    never -32603; the daemon keeps serving, tokens are still checked against the local
    clock, and enabling 2FA is allowed with the TimeSyncUnverified warning."""
    behaviour, error_kind, now = _failure_setup(kind)
    clock.set(now)
    loop = asyncio.get_running_loop()
    with NtpResponder(now=clock.time, **(behaviour or {})) as ntp:
        address = {"address": "ntp.invalid"} if behaviour is None else {"address": ntp.host}
        await admin.call("system.ntpserver.create", {**address, "port": ntp.port})
        started = loop.time()
        reply = await admin.request("system.time_sync.check", [])
        elapsed = loop.time() - started
        assert "result" in reply, reply
        status = reply["result"]
        assert (status["state"], status["offset"]) == ("UNREACHABLE", None)
        [server] = status["servers"]
        assert server["reachable"] is False
        assert server["error"].startswith(error_kind + ":"), server["error"]
        assert elapsed < 15  # about the 1 s timeout, with room for a slow machine
        if kind == "a":
            assert elapsed >= 0.8

        assert await admin.call("core.ping") == "pong"
        async with user_asset(admin, "user1"):
            await daemon.seed_secret("user1", RFC_SECRET)
            code = pyotp.TOTP(RFC_SECRET).at(int(now))
            assert await admin.call("user.verify_twofactor_token", "user1", code) is True
        entry = await admin.call("auth.twofactor.update", {"enabled": True})
        assert entry["enabled"] is True
        alerts = await admin.call("alert.list")
        [alert] = [a for a in alerts if a["klass"] == "TimeSyncUnverified"]
        assert alert["level"] == "WARNING"
        assert error_kind in alert["formatted"]
        assert (await admin.call("system.time_sync.status"))["state"] == "UNREACHABLE"
