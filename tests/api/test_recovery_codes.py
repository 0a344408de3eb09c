"""Recovery codes (API.md §10): 10 look-up secrets of 80 bits, stored salted and hashed,
each accepted once in the OTP step as a second factor (LEVEL_2)."""

from __future__ import annotations

import asyncio
import re

import pytest

from middlewared_2fa.cli.client import Client, ClientError
from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import RFC_SECRET

CODE = re.compile(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}")


async def user_with_secret(daemon: InProcessDaemon, admin: Client, name: str) -> None:
    await admin.call("auth.twofactor.update", {"enabled": True})
    await admin.call("user.create", {"username": name, "password": "pw-" + name})
    await daemon.seed_secret(name, RFC_SECRET)


async def otp_step(daemon: InProcessDaemon, client: Client, name: str, token: str) -> dict:
    first = await client.call(
        "auth.login_ex",
        {"mechanism": "PASSWORD_PLAIN", "username": name, "password": "pw-" + name},
    )
    assert first["response_type"] == "OTP_REQUIRED"
    answer: dict = await client.call(
        "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": token}
    )
    return answer


async def test_codes_are_80_bits_stored_only_as_salted_hashes(daemon: InProcessDaemon) -> None:
    """10 distinct codes of 16 base32 characters in four groups; neither the codes nor
    their bare 16 characters appear anywhere in the database file (or its WAL)."""
    async with daemon.admin() as admin:
        await user_with_secret(daemon, admin, "rc")
        codes = await admin.call("user.twofactor_recovery_codes", "rc")
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(CODE.fullmatch(c) for c in codes), codes
    db = daemon.settings.database_path
    blobs = b"".join(
        p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)
    ).lower()
    for code in codes:
        assert code.encode() not in blobs
        assert code.replace("-", "").encode() not in blobs
    rows = await daemon.mw.db.fetch_all("SELECT digest FROM recovery_codes")
    assert len(rows) == 10 and all(len(bytes(r[0])) == 32 for r in rows)
    [salt] = await daemon.mw.db.fetch_all("SELECT salt FROM recovery_code_sets")
    assert len(bytes(salt[0])) == 16


async def test_each_code_logs_in_once_as_level_2(daemon: InProcessDaemon) -> None:
    """A code in the OTP step (in capitals, with spaces instead of hyphens) gives a
    LOGIN_TWOFACTOR / LEVEL_2 session with second_factor RECOVERY_CODE; the same code again
    is a wrong OTP; the count goes down; the alert names the user and never the code."""
    async with daemon.admin() as admin:
        await user_with_secret(daemon, admin, "rc")
        codes = await admin.call("user.twofactor_recovery_codes", "rc")
        assert (await admin.call("user.twofactor_config", "rc"))["recovery_codes_remaining"] == 10
        typed = codes[0].upper().replace("-", " ")
        async with daemon.client() as c:
            done = await otp_step(daemon, c, "rc", typed)
            assert done["response_type"] == "SUCCESS"
            assert done["authenticator"] == "LEVEL_2"
            assert done["user_info"]["credentials"] == "LOGIN_TWOFACTOR"
            [mine] = [s for s in await c.call("auth.sessions") if s["current"]]
            assert mine["credentials_data"]["second_factor"] == "RECOVERY_CODE"
        async with daemon.client() as c:
            again = await otp_step(daemon, c, "rc", codes[0])
            assert again == {"response_type": "OTP_REQUIRED", "username": "rc"}
            assert (
                await c.call(
                    "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": codes[1]}
                )
            )["response_type"] == "SUCCESS"
        config = await admin.call("user.twofactor_config", "rc")
        assert config["recovery_codes_remaining"] == 8
        alerts = [a for a in await admin.call("alert.list") if a["klass"] == "RecoveryCodeUsed"]
        assert len(alerts) == 1
        assert "'rc'" in alerts[0]["formatted"] and "8 of 10 remain" in alerts[0]["formatted"]
        for code in codes:
            assert code not in alerts[0]["formatted"]
            assert code.replace("-", "") not in alerts[0]["formatted"].lower()
        audit = await admin.call(
            "audit.query",
            {"query-filters": [["username", "=", "rc"], ["success", "=", True]]},
        )
        descriptions = [a["event_data"]["description"] for a in audit]
        assert descriptions.count("password and recovery code login") == 2


async def test_regeneration_voids_the_old_set(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        await user_with_secret(daemon, admin, "rc")
        old = await admin.call("user.twofactor_recovery_codes", "rc")
        new = await admin.call("user.twofactor_recovery_codes", "rc")
        assert not set(old) & set(new)
        async with daemon.client() as c:
            assert (await otp_step(daemon, c, "rc", old[3]))["response_type"] == "OTP_REQUIRED"
            assert (
                await c.call(
                    "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": new[3]}
                )
            )["response_type"] == "SUCCESS"


@pytest.mark.settings(auth_failure_delay=0)
async def test_a_wrong_code_is_a_wrong_otp(daemon: InProcessDaemon) -> None:
    """A code of another user, or a made-up one, uses the retry budget like a wrong TOTP
    code: the 4th wrong answer is AUTH_ERR, and it counts as an account failure."""
    async with daemon.admin() as admin:
        await user_with_secret(daemon, admin, "rc")
        await admin.call("user.create", {"username": "other", "password": "pw-other"})
        await daemon.seed_secret("other", RFC_SECRET)
        theirs = await admin.call("user.twofactor_recovery_codes", "other")
        await admin.call("user.twofactor_recovery_codes", "rc")
        async with daemon.client() as c:
            assert (await otp_step(daemon, c, "rc", theirs[0]))["response_type"] == "OTP_REQUIRED"
            for token in ["aaaa-bbbb-cccc-dddd", theirs[1]]:
                answer = await c.call(
                    "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": token}
                )
                assert answer["response_type"] == "OTP_REQUIRED"
            last = await c.call(
                "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": theirs[2]}
            )
            assert last == {"response_type": "AUTH_ERR"}
        user = await daemon.mw.repos.users.get_by_name("rc")
        assert user is not None
        assert daemon.mw.services["auth"].throttle.failures(user.id) == 4  # type: ignore[attr-defined]
        # The other user's codes were not spent by being tried against rc.
        assert (await admin.call("user.twofactor_config", "other"))[
            "recovery_codes_remaining"
        ] == 10


async def test_codes_need_a_second_factor_and_go_with_it(daemon: InProcessDaemon) -> None:
    """No secret: EINVAL. Unsetting the secret deletes the set, so a later secret does not
    bring old codes back."""
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "bare", "password": "pw-bare"})
        with pytest.raises(ClientError) as err:
            await admin.call("user.twofactor_recovery_codes", "bare")
        assert err.value.errname == "EINVAL"
        await user_with_secret(daemon, admin, "rc")
        codes = await admin.call("user.twofactor_recovery_codes", "rc")
        await admin.call("user.unset_2fa_secret", "rc")
        assert (await admin.call("user.twofactor_config", "rc"))["recovery_codes_remaining"] == 0
        await daemon.seed_secret("rc", RFC_SECRET)
        async with daemon.client() as c:
            assert (await otp_step(daemon, c, "rc", codes[0]))["response_type"] == "OTP_REQUIRED"


async def test_only_self_or_full_admin_within_the_guard(daemon: InProcessDaemon) -> None:
    """ACCOUNT_WRITE cannot make another user's codes (EPERM), a user can make their own
    (from a LEVEL_2 session) and cannot from a password-only one while 2FA applies."""
    async with daemon.admin() as admin:
        await user_with_secret(daemon, admin, "rc")
        await admin.call(
            "user.create", {"username": "mgr", "password": "pw-mgr", "roles": ["ACCOUNT_WRITE"]}
        )
    async with daemon.client() as mgr:
        await mgr.login("mgr", "pw-mgr")
        with pytest.raises(ClientError) as err:
            await mgr.call("user.twofactor_recovery_codes", "rc")
        assert err.value.errname == "EPERM"
    async with daemon.client() as me:
        assert (await me.login("rc", "pw-rc", "005924"))["response_type"] == "SUCCESS"
        assert len(await me.call("user.twofactor_recovery_codes", "rc")) == 10


async def test_codes_survive_a_restart(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    async with daemon.admin() as admin:
        await user_with_secret(daemon, admin, "rc")
        codes = await admin.call("user.twofactor_recovery_codes", "rc")
    await daemon.restart()
    async with daemon.client() as c:
        assert (await otp_step(daemon, c, "rc", codes[9]))["response_type"] == "SUCCESS"


async def test_one_code_two_connections_one_login(daemon: InProcessDaemon) -> None:
    """The same code sent at once on two connections (both at the OTP step) logs in
    exactly one of them."""
    async with daemon.admin() as admin:
        await user_with_secret(daemon, admin, "rc")
        codes = await admin.call("user.twofactor_recovery_codes", "rc")
    async with daemon.client() as a, daemon.client() as b:
        for c in (a, b):
            first = await c.call(
                "auth.login_ex",
                {"mechanism": "PASSWORD_PLAIN", "username": "rc", "password": "pw-rc"},
            )
            assert first["response_type"] == "OTP_REQUIRED"
        answers = await asyncio.gather(
            *(
                c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": codes[0]})
                for c in (a, b)
            )
        )
    assert sorted(x["response_type"] for x in answers) == ["OTP_REQUIRED", "SUCCESS"]
