"""The walk-through a user does, end to end, with outside tools on the user's side.

The daemon runs as its own process (the installed console script). An administrator
enables global 2FA and creates a user over TCP; a secret is renewed; the daemon renders the
provisioning QR code as PNG; Debian's ``zbarimg`` scans it, Debian's ``oathtool`` is the
authenticator; the login with its code succeeds once and the same code is refused after.
No project code decodes the image or computes a code here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from middlewared_2fa.cli.client import Client, open_client
from tests.helpers.daemon import ADMIN_PASSWORD, SubprocessDaemon, subprocess_daemon
from tests.helpers.outside import oathtool_totp, parse_otpauth, zbar_decode

PNG_PREFIX = "data:image/png;base64,"


@pytest.fixture
def process_daemon() -> Iterator[SubprocessDaemon]:
    # A short NTP timeout: enabling 2FA checks the clock, and a sandbox may have no network.
    with subprocess_daemon(extra_env={"MIDDLEWARED_2FA_NTP_TIMEOUT": "1"}) as daemon:
        yield daemon


@contextlib.asynccontextmanager
async def at_otp_step(url: str, username: str, password: str) -> AsyncIterator[Client]:
    """A new TCP connection whose PASSWORD_PLAIN step answered OTP_REQUIRED."""
    async with open_client(url) as client:
        step = await client.call(
            "auth.login_ex",
            {"mechanism": "PASSWORD_PLAIN", "username": username, "password": password},
        )
        assert step == {"response_type": "OTP_REQUIRED", "username": username}
        yield client


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "digits", "period", "renewer"),
    [
        pytest.param({"otp_digits": 8, "interval": 60}, 8, 60, "admin", id="8-digits-60s-by-admin"),
        pytest.param({}, 6, 30, "self", id="defaults-by-the-user"),
    ],
)
async def test_walkthrough_with_outside_tools(
    process_daemon: SubprocessDaemon,
    tmp_path: Path,
    options: dict[str, Any],
    digits: int,
    period: int,
    renewer: str,
) -> None:
    """A secret renewed with these options scans from the daemon's PNG, oathtool's code
    logs the user in (OTP_REQUIRED then SUCCESS), and the same code is refused once used."""
    url = process_daemon.url
    username, password = "walker", "walker-password"

    async with open_client(url) as admin:
        login = await admin.login("admin", ADMIN_PASSWORD)
        assert (login["response_type"], login["user_info"]["credentials"]) == (
            "SUCCESS",
            "LOGIN_PASSWORD",
        )
        config = await admin.call("auth.twofactor.update", {"enabled": True})
        assert config == {
            "id": 1,
            "enabled": True,
            "window": 0,
            "services": {"ssh": False},
            "issuer": "middlewared-2fa",
            "enforce": False,
        }
        created = await admin.call("user.create", {"username": username, "password": password})
        assert created["twofactor_auth_configured"] is False

        if renewer == "admin":
            renewed = await admin.call("user.renew_2fa_secret", username, options)
            qr = await admin.call("user.twofactor_qr", username, {"format": "png"})
        else:
            async with open_client(url) as user:
                # Global 2FA on and no secret yet: the password alone logs in, and the
                # daemon tells the user to set 2FA up.
                first = await user.login(username, password)
                assert first["response_type"] == "SUCCESS"
                assert first["user_info"]["two_factor_config"]["setup_required"] is True
                renewed = await user.call("user.renew_2fa_secret", username, options)
                qr = await user.call("user.twofactor_qr", username, {"format": "png"})

        uri = renewed["twofactor_config"]["provisioning_uri"]
        assert renewed["twofactor_config"] == {
            "provisioning_uri": uri,
            "secret_configured": True,
            "interval": period,
            "otp_digits": digits,
            "recovery_codes_remaining": 0,
        }
        assert renewed["twofactor_auth_configured"] is True

        # The daemon's PNG, scanned by zbarimg, is exactly the provisioning URI.
        assert qr["format"] == "png"
        assert qr["data_uri"].startswith(PNG_PREFIX)
        png = base64.b64decode(qr["data_uri"].removeprefix(PNG_PREFIX), validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        image = tmp_path / "provisioning.png"
        image.write_bytes(png)
        scanned = await asyncio.to_thread(zbar_decode, image)
        assert scanned == uri

        # Key URI format: digits and period appear only when they are not the defaults.
        otp = parse_otpauth(scanned)
        assert otp.label == f"middlewared-2fa:{username}@{socket.gethostname()}"
        assert re.fullmatch(r"[A-Z2-7]{32}", otp.secret), otp.secret
        assert otp.issuer == "middlewared-2fa"
        expected_keys = {"secret", "issuer"} | ({"digits", "period"} if options else set())
        assert otp.keys == expected_keys
        assert (otp.digits, otp.period) == (digits, period)

        # Real clock on both sides. The code is computed only when at least STEP_MARGIN
        # seconds are left in its step (oathtool_totp waits for the next step otherwise),
        # and the password step is done before it, so with window 0 the daemon checks the
        # code in the step oathtool computed it for.
        async with at_otp_step(url, username, password) as user:
            code = await asyncio.to_thread(
                oathtool_totp, otp.secret, digits=otp.digits, period=otp.period
            )
            done = await user.call(
                "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": code}
            )
        assert done["response_type"] == "SUCCESS"
        assert done["authenticator"] == "LEVEL_2"
        assert (done["user_info"]["pw_name"], done["user_info"]["credentials"]) == (
            username,
            "LOGIN_TWOFACTOR",
        )

        # Widen the window to one step each side first: the used code then still matches
        # the clock for a whole extra step, so its refusal below can only be the
        # once-only rule (RFC 6238 §5.2), not the step having moved on.
        widened = await admin.call("auth.twofactor.update", {"window": 1})
        assert widened["window"] == 1
        async with at_otp_step(url, username, password) as again:
            replay = await again.call(
                "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": code}
            )
        assert replay == {"response_type": "OTP_REQUIRED", "username": username}

        failures = await admin.call(
            "audit.query",
            {
                "query-filters": [
                    ["event", "=", "AUTHENTICATION"],
                    ["username", "=", username],
                    ["success", "=", False],
                ]
            },
        )
        assert [f["event_data"]["description"] for f in failures] == ["wrong OTP (replay)"]
