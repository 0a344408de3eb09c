"""After a full walk-through with debug logging, no secret, password, code or provisioning
URI appears in the log, the audit table or any error message."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from middlewared_2fa.cli.client import ClientError, open_client
from tests.helpers.daemon import ADMIN_PASSWORD, short_tempdir, start_subprocess_daemon

USER_PASSWORD = "Leaky-Passw0rd-xyz"
WRONG_PASSWORD = "Wrong-Passw0rd-abc"


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def walk_through(url: str, unix_uri: str) -> tuple[list[str], list[Any]]:
    """Do everything a user and an administrator do; return the sensitive values and every
    error reply seen."""
    errors: list[Any] = []

    async def expect_error(coro: Any) -> None:
        try:
            await coro
        except ClientError as exc:
            errors.append({"code": exc.code, "message": exc.message, "data": exc.data})
        else:  # pragma: no cover - the test below needs an error here
            raise AssertionError("expected an error")

    async with open_client(url) as admin:
        await admin.login("admin", ADMIN_PASSWORD)
        await admin.call("user.create", {"username": "leaky", "password": USER_PASSWORD})
        await admin.call("auth.twofactor.update", {"enabled": True, "window": 1})
        entry = await admin.call("user.renew_2fa_secret", "leaky", {"otp_digits": 8})
        uri = entry["twofactor_config"]["provisioning_uri"]
        secret = uri.split("secret=")[1].split("&")[0]
        await admin.call("user.twofactor_qr", "leaky", {"format": "png"})
        await expect_error(
            admin.call("user.create", {"username": "leaky", "password": USER_PASSWORD})
        )
        await expect_error(admin.call("user.create", {"username": "x y", "password": "p" * 5000}))
        await expect_error(admin.call("user.verify_twofactor_token", "admin", "12345678"))
        await expect_error(admin.call("user.provisioning_uri", "admin"))
    code = pyotp.TOTP(secret, digits=8).now()
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    async with open_client(url) as c:
        assert (
            await c.call(
                "auth.login_ex",
                {"mechanism": "PASSWORD_PLAIN", "username": "leaky", "password": WRONG_PASSWORD},
            )
        )["response_type"] == "AUTH_ERR"
        await c.login("leaky", USER_PASSWORD)
        await c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": wrong})
        await expect_error(
            c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": int(code)})
        )
        resp = await c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": code})
        if resp["response_type"] != "SUCCESS":  # the step turned over meanwhile
            code = pyotp.TOTP(secret, digits=8).now()
            resp = await c.call(
                "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": code}
            )
        assert resp["response_type"] == "SUCCESS"
        token = await c.call("auth.generate_token")
        await expect_error(c.call("user.renew_2fa_secret", "admin"))
    async with open_client(url) as c:
        await c.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token})
        await c.call("auth.login", "leaky", USER_PASSWORD, code)  # replayed code
    # Staged enrolment, recovery codes and a one-time password (API.md §4, §10).
    async with open_client(url) as admin:
        await admin.login("admin", ADMIN_PASSWORD)
        pending = await admin.call("user.twofactor_enroll", "leaky")
        pending_uri = pending["provisioning_uri"]
        pending_secret = pending_uri.split("secret=")[1].split("&")[0]
        await admin.call("user.twofactor_qr", "leaky", {"pending": True})
        digits = pending["otp_digits"]  # kept from the active secret: 8
        pending_code = pyotp.TOTP(pending_secret, digits=digits).now()
        await expect_error(
            admin.call(
                "user.twofactor_confirm",
                "leaky",
                str((int(pending_code) + 1) % 10**digits).zfill(digits),
            )
        )
        await admin.call("user.twofactor_confirm", "leaky", pending_code)
        recovery = await admin.call("user.twofactor_recovery_codes", "leaky")
        onetime = await admin.call("auth.generate_onetime_password", {"username": "leaky"})
    async with open_client(url) as c:
        await c.login("leaky", USER_PASSWORD)
        await c.call(
            "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": "zzzz-zzzz-zzzz-zzzz"}
        )
        done = await c.call(
            "auth.login_ex_continue",
            {"mechanism": "OTP_TOKEN", "otp_token": recovery[0].upper()},
        )
        assert done["response_type"] == "SUCCESS"
    async with open_client(url) as c:
        done = await c.login("leaky", onetime)
        assert "SETUP_ONLY" in done["user_info"]["account_attributes"]
        await expect_error(c.call("user.query"))
    async with open_client(unix_uri) as root:
        audit = await root.call("audit.query")
    return [
        pending_uri,
        pending_secret,
        pending_secret.lower(),
        pending_code,
        onetime,
        onetime.split("_", 1)[1],
        *recovery,
        *(r.replace("-", "") for r in recovery),
        recovery[0].upper(),
        USER_PASSWORD,
        WRONG_PASSWORD,
        ADMIN_PASSWORD,
        secret,
        secret.lower(),
        uri,
        code,
        wrong,
        token,
    ], [errors, audit]


def test_no_secrets_anywhere(base: Path) -> None:
    """Log file (debug), audit entries and error replies hold none of the sensitive values."""
    d = start_subprocess_daemon(base, args=["--log-level", "DEBUG", "--debug"])
    try:
        sensitive, (errors, audit) = asyncio.run(walk_through(d.url, d.unix_uri))
    finally:
        d.stop()
    log = (base / "daemon.log").read_text()
    assert "DEBUG" in log or "INFO" in log
    assert len(errors) == 8
    replies = json.dumps(errors)
    audit_text = json.dumps(audit)
    assert any(e["event_data"]["description"].startswith("wrong OTP") for e in audit)
    for value in sensitive:
        assert value not in log, "a sensitive value is in the daemon log"
        assert value not in replies, "a sensitive value is in an error reply"
        assert value not in audit_text, "a sensitive value is in the audit log"
    assert "otpauth://" not in log + replies + audit_text
