"""Staged enrolment (API.md §4): ``user.twofactor_enroll`` makes a pending secret, the
active one keeps working until ``user.twofactor_confirm`` gets a right code of the pending
one; then it switches in one transaction and what derived from the old state ends (§9).

The user's side is played by outside tools: the pending QR code is read by Debian's
``zbarimg`` and the codes come from ``oathtool`` at the daemon's (frozen) time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from middlewared_2fa.cli.client import Client, ClientError, open_client
from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.outside import ZBAR_QR_ONLY, parse_otpauth
from tests.helpers.rfc import RFC_SECRET

PNG_PREFIX = "data:image/png;base64,"


def oathtool_at(secret: str, now: float, *, digits: int = 6, period: int = 30) -> str:
    """The code ``oathtool`` computes for ``secret`` at Unix time ``now``."""
    done = subprocess.run(
        [
            "oathtool",
            "--totp",
            "--base32",
            f"--digits={digits}",
            f"--time-step-size={period}s",
            f"--now=@{int(now)}",
            secret,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def zbar(png: bytes, folder: Path) -> str:
    path = folder / "pending.png"
    path.write_bytes(png)
    done = subprocess.run(
        ["zbarimg", "--raw", "-q", *ZBAR_QR_ONLY, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.removesuffix("\n")


async def make_user(admin: Client, name: str, password: str = "pw-user") -> dict[str, object]:
    entry: dict[str, object] = await admin.call(
        "user.create", {"username": name, "password": password}
    )
    return entry


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    """Closes the test's extra connections at its end."""
    async with contextlib.AsyncExitStack() as exits:
        yield exits


async def logged_in(
    stack: contextlib.AsyncExitStack,
    daemon: InProcessDaemon,
    name: str,
    password: str,
    otp: str | None,
) -> Client:
    """A new TCP session of ``name``, closed at the end of the test."""
    client = await stack.enter_async_context(open_client(daemon.url))
    answer = await client.login(name, password, otp)
    assert answer["response_type"] == "SUCCESS", answer
    return client


async def scanned_pending_secret(client: Client, name: str, folder: Path) -> str:
    """The base32 secret of ``name``'s pending QR code, as zbarimg reads it."""
    qr = await client.call("user.twofactor_qr", name, {"pending": True, "format": "png"})
    png = base64.b64decode(qr["data_uri"].removeprefix(PNG_PREFIX), validate=True)
    uri = await asyncio.to_thread(zbar, png, folder)
    return parse_otpauth(uri).secret


async def test_enrol_scan_confirm_with_outside_tools(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock, tmp_path: Path
) -> None:
    """The pending QR (zbarimg) gives a secret whose oathtool code confirms it; the old
    secret keeps logging in until then and stops after; the confirming code is used up."""
    async with daemon.admin() as admin:
        await admin.call("auth.twofactor.update", {"enabled": True})
        await make_user(admin, "enrol")
    await daemon.seed_secret("enrol", RFC_SECRET)
    user = await logged_in(stack, daemon, "enrol", "pw-user", oathtool_at(RFC_SECRET, clock.time()))
    try:
        pending = await user.call("user.twofactor_enroll", "enrol", {})
        assert pending["interval"] == 30 and pending["otp_digits"] == 6
        assert pending["expires_at"] == {"$date": int((clock.time() + 900) * 1000)}
        new_secret = await scanned_pending_secret(user, "enrol", tmp_path)
        assert parse_otpauth(pending["provisioning_uri"]).secret == new_secret
        assert new_secret != RFC_SECRET

        # Before confirm: the active secret is still the old one.
        clock.advance(30)
        config = await user.call("user.twofactor_config", "enrol")
        assert parse_otpauth(config["provisioning_uri"]).secret == RFC_SECRET
        old_code = oathtool_at(RFC_SECRET, clock.time())
        other = await logged_in(stack, daemon, "enrol", "pw-user", old_code)

        clock.advance(30)
        confirm_code = oathtool_at(new_secret, clock.time())
        confirmed = await user.call("user.twofactor_confirm", "enrol", confirm_code)
        assert parse_otpauth(confirmed["provisioning_uri"]).secret == new_secret
        assert confirmed["secret_configured"] is True
        # The other session ended with the old secret (1008 "session ended").
        with pytest.raises((ConnectionClosed, ClientError, OSError)):
            await other.call("auth.me", timeout=10)
        # The confirming code cannot log in (used); the old secret no longer does.
        async with daemon.client() as c:
            assert (await c.login("enrol", "pw-user", confirm_code))["response_type"] == (
                "OTP_REQUIRED"
            )
        async with daemon.client() as c:
            stale = oathtool_at(RFC_SECRET, clock.time())
            assert (await c.login("enrol", "pw-user", stale))["response_type"] == ("OTP_REQUIRED")
        clock.advance(30)
        async with daemon.client() as c:
            fresh = oathtool_at(new_secret, clock.time())
            answer = await c.login("enrol", "pw-user", fresh)
            assert answer["response_type"] == "SUCCESS"
        # The pending secret is gone: a second confirm has nothing to confirm.
        with pytest.raises(ClientError) as err:
            await user.call("user.twofactor_confirm", "enrol", fresh)
        assert (err.value.code, err.value.errname) == (-32001, "EINVAL")
        await other.close()
    finally:
        await user.close()


@pytest.mark.settings(auth_throttle_after=2, auth_failure_delay=0)
async def test_a_wrong_confirm_code_is_32602_and_an_account_failure(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """A wrong code is -32602 on user_twofactor_confirm.token and counts as a failed
    authentication: two of them start the account's cool-down (EBUSY), which refuses a
    right code too; the pending secret stays pending."""
    async with daemon.admin() as admin:
        await make_user(admin, "wrong")
    user = await logged_in(stack, daemon, "wrong", "pw-user", None)
    try:
        pending = await user.call("user.twofactor_enroll", "wrong")
        secret = parse_otpauth(pending["provisioning_uri"]).secret
        right = oathtool_at(secret, clock.time())
        wrong = "000000" if right != "000000" else "111111"
        for _ in range(2):
            with pytest.raises(ClientError) as err:
                await user.call("user.twofactor_confirm", "wrong", wrong)
            assert err.value.code == -32602
            assert err.value.extra == [
                ["user_twofactor_confirm.token", "Wrong code for the pending secret", 22]
            ]
        with pytest.raises(ClientError) as err:
            await user.call("user.twofactor_confirm", "wrong", right)
        assert (err.value.errname, err.value.reason) == ("EBUSY", "Rate Limit Exceeded")
        async with daemon.client() as c, daemon.admin():
            with pytest.raises(ClientError) as err:
                await c.login("wrong", "pw-user")
            assert err.value.errname == "EBUSY"
        audit = await daemon.mw.repos.audit.list()
        assert [
            a.event_data["description"]
            for a in audit
            if a.username == "wrong" and a.event == "AUTHENTICATION" and not a.success
        ][:2] == ["wrong code confirming a new TOTP secret"] * 2
        clock.advance(31)  # the cool-down (30 s) is over; the pending secret is not
        confirmed = await user.call(
            "user.twofactor_confirm", "wrong", oathtool_at(secret, clock.time())
        )
        assert confirmed["secret_configured"] is True
    finally:
        await user.close()


async def test_a_pending_secret_expires(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """15 minutes after enrol the pending secret is gone: confirm and the pending QR
    answer EINVAL, and the user still has no secret."""
    async with daemon.admin() as admin:
        await make_user(admin, "late")
        pending = await admin.call("user.twofactor_enroll", "late")
        secret = parse_otpauth(pending["provisioning_uri"]).secret
        clock.advance(899)
        assert (await admin.call("user.twofactor_qr", "late", {"pending": True}))["format"] == "svg"
        clock.advance(2)
        with pytest.raises(ClientError) as err:
            await admin.call("user.twofactor_confirm", "late", oathtool_at(secret, clock.time()))
        assert (err.value.code, err.value.errname) == (-32001, "EINVAL")
        assert "no pending two-factor secret" in err.value.reason
        with pytest.raises(ClientError) as err:
            await admin.call("user.twofactor_qr", "late", {"pending": True})
        assert err.value.errname == "EINVAL"
        entry = await admin.call("user.query", [["username", "=", "late"]], {"get": True})
        assert entry["twofactor_auth_configured"] is False


async def test_a_new_enrol_replaces_the_pending_secret(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """One pending secret per user: after a second enrol, a code of the first is wrong."""
    async with daemon.admin() as admin:
        await make_user(admin, "twice")
        first = parse_otpauth(
            (await admin.call("user.twofactor_enroll", "twice"))["provisioning_uri"]
        ).secret
        second = parse_otpauth(
            (await admin.call("user.twofactor_enroll", "twice", {"otp_digits": 8}))[
                "provisioning_uri"
            ]
        ).secret
        assert first != second
        with pytest.raises(ClientError) as err:
            await admin.call("user.twofactor_confirm", "twice", oathtool_at(first, clock.time()))
        assert err.value.code == -32602
        done = await admin.call(
            "user.twofactor_confirm", "twice", oathtool_at(second, clock.time(), digits=8)
        )
        assert (done["otp_digits"], done["secret_configured"]) == (8, True)


async def test_confirm_by_the_user_makes_the_session_level_2(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """A password-only session (global 2FA on, no secret yet) that confirms its own new
    secret is LOGIN_TWOFACTOR / LEVEL_2 afterwards; its sessions list says so."""
    async with daemon.admin() as admin:
        await admin.call("auth.twofactor.update", {"enabled": True})
        await make_user(admin, "selfie")
    user = await logged_in(stack, daemon, "selfie", "pw-user", None)
    try:
        assert (await user.call("auth.me"))["credentials"] == "LOGIN_PASSWORD"
        secret = parse_otpauth(
            (await user.call("user.twofactor_enroll", "selfie"))["provisioning_uri"]
        ).secret
        await user.call("user.twofactor_confirm", "selfie", oathtool_at(secret, clock.time()))
        me = await user.call("auth.me")
        assert me["credentials"] == "LOGIN_TWOFACTOR"
        assert "2FA" in me["account_attributes"]
        [mine] = [s for s in await user.call("auth.sessions") if s["current"]]
        assert mine["credentials"] == "LOGIN_TWOFACTOR"
    finally:
        await user.close()


async def test_enrol_needs_a_session_with_the_second_factor(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """A password-only session of a user whose 2FA applies cannot stage a replacement
    secret (EACCES, API.md §9): a stolen password must not replace the second factor.
    A token login from such a session is refused too (its parent lacks the factor)."""
    async with daemon.admin() as admin:
        await make_user(admin, "victim")
        await daemon.seed_secret("victim", RFC_SECRET)
        # 2FA off: a password-only login exists, then 2FA comes on.
        user = await logged_in(stack, daemon, "victim", "pw-user", None)
        await admin.call("auth.twofactor.update", {"enabled": True})
    try:
        for method, params in [
            ("user.twofactor_enroll", ["victim"]),
            ("user.twofactor_confirm", ["victim", "123456"]),
            ("user.twofactor_qr", ["victim", {"pending": True}]),
        ]:
            with pytest.raises(ClientError) as err:
                await user.call(method, *params)
            assert err.value.errname == "EACCES", method
            assert "two-factor authentication" in err.value.reason
    finally:
        await user.close()


async def test_another_user_cannot_enrol_or_confirm(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    """Enrol and confirm are self or FULL_ADMIN (EPERM otherwise, also with ACCOUNT_WRITE)."""
    async with daemon.admin() as admin:
        await make_user(admin, "target")
        await admin.call(
            "user.create",
            {"username": "manager", "password": "pw-m", "roles": ["ACCOUNT_WRITE"]},
        )
        await admin.call("user.twofactor_enroll", "target")
    manager = await logged_in(stack, daemon, "manager", "pw-m", None)
    try:
        for method, params in [
            ("user.twofactor_enroll", ["target"]),
            ("user.twofactor_confirm", ["target", "123456"]),
            ("user.twofactor_qr", ["target", {"pending": True}]),
        ]:
            with pytest.raises(ClientError) as err:
                await manager.call(method, *params)
            assert err.value.errname == "EPERM", method
    finally:
        await manager.close()


@pytest.mark.parametrize("token", [123456, None, ["123456"]])
async def test_confirm_token_must_be_a_string(daemon: InProcessDaemon, token: object) -> None:
    async with daemon.admin() as admin:
        await make_user(admin, "typed")
        await admin.call("user.twofactor_enroll", "typed")
        with pytest.raises(ClientError) as err:
            await admin.call("user.twofactor_confirm", "typed", token)
        assert err.value.code == -32602
        assert err.value.extra[0][0] == "token"  # rooted at the parameter (API.md §2)
