"""The login flow with its OTP step (API.md §3), with a frozen clock at t=1234567890."""

from __future__ import annotations

import asyncio
import json

import pyotp
import pytest

from middlewared_2fa.cli.client import Client, ClientError
from middlewared_2fa.clock import FrozenClock
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import AROUND_1234567890, RFC_SECRET

CODE = AROUND_1234567890[0]  # '005924', the code of the current step
PASSWORD = "alice-password"


def password_step(username: str = "alice", password: str = PASSWORD) -> dict[str, str]:
    return {"mechanism": "PASSWORD_PLAIN", "username": username, "password": password}


def otp_step(code: object) -> dict[str, object]:
    return {"mechanism": "OTP_TOKEN", "otp_token": code}


async def enable_2fa(admin: Client, window: int = 0) -> None:
    await admin.call("auth.twofactor.update", {"enabled": True, "window": window})


async def alice_with_secret(daemon: InProcessDaemon, admin: Client) -> None:
    await enable_2fa(admin)
    await daemon.seed_secret("alice", RFC_SECRET)


async def test_password_only_without_2fa(daemon: InProcessDaemon) -> None:
    """With global 2FA off, the password step answers SUCCESS with auth.me as user_info."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        async with daemon.client() as c:
            resp = await c.call("auth.login_ex", password_step())
            assert resp["response_type"] == "SUCCESS"
            assert resp["authenticator"] == "LEVEL_1"
            assert resp["user_info"]["pw_name"] == "alice"
            assert resp["user_info"]["credentials"] == "LOGIN_PASSWORD"
            assert resp["user_info"]["two_factor_config"] == {
                "secret_configured": False,
                "interval": 30,
                "otp_digits": 6,
                "global_enabled": False,
                "setup_required": False,
            }


async def test_user_info_can_be_omitted(daemon: InProcessDaemon) -> None:
    """login_options.user_info=false gives user_info null."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        async with daemon.client() as c:
            data = {**password_step(), "login_options": {"user_info": False}}
            resp = await c.call("auth.login_ex", data)
            assert resp == {
                "response_type": "SUCCESS",
                "user_info": None,
                "authenticator": "LEVEL_1",
                "reconnect_token": None,
            }


async def test_otp_required_then_success(daemon: InProcessDaemon) -> None:
    """Global 2FA plus a secret: OTP_REQUIRED, then the right code gives LOGIN_TWOFACTOR."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            resp = await c.call("auth.login_ex", password_step())
            assert resp == {"response_type": "OTP_REQUIRED", "username": "alice"}
            with pytest.raises(ClientError) as err:
                await c.call("auth.me")
            assert err.value.errno == 207
            resp = await c.call("auth.login_ex_continue", otp_step(CODE))
            assert resp["response_type"] == "SUCCESS"
            me = await c.call("auth.me")
            assert me["credentials"] == "LOGIN_TWOFACTOR"
            assert me["account_attributes"] == ["LOCAL", "2FA"]
            assert me["two_factor_config"]["secret_configured"] is True


async def test_otp_token_through_login_ex(daemon: InProcessDaemon) -> None:
    """The OTP step may also be sent to auth.login_ex."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            await c.call("auth.login_ex", password_step())
            assert (await c.call("auth.login_ex", otp_step(CODE)))["response_type"] == "SUCCESS"


async def test_retry_budget(daemon: InProcessDaemon) -> None:
    """Three wrong codes answer OTP_REQUIRED, the fourth AUTH_ERR, and the step is gone."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            await c.call("auth.login_ex", password_step())
            for _ in range(3):
                resp = await c.call("auth.login_ex_continue", otp_step("000000"))
                assert resp == {"response_type": "OTP_REQUIRED", "username": "alice"}
            resp = await c.call("auth.login_ex_continue", otp_step("000000"))
            assert resp == {"response_type": "AUTH_ERR"}
            with pytest.raises(ClientError) as err:
                await c.call("auth.login_ex_continue", otp_step(CODE))
            assert err.value.code == -32001 and err.value.errname == "EINVAL"
            assert err.value.reason == "OTP_TOKEN: no authentication in progress"
            with pytest.raises(ClientError):
                await c.call("auth.me")


async def test_otp_without_pending_step(daemon: InProcessDaemon) -> None:
    """OTP_TOKEN with nothing pending is call error EINVAL."""
    async with daemon.client() as c:
        with pytest.raises(ClientError) as err:
            await c.call("auth.login_ex", otp_step("123456"))
        assert (err.value.code, err.value.errno) == (-32001, 22)


async def test_pending_step_is_per_connection(daemon: InProcessDaemon) -> None:
    """A pending OTP step cannot be completed on another connection."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as first, daemon.client() as second:
            await first.call("auth.login_ex", password_step())
            with pytest.raises(ClientError) as err:
                await second.call("auth.login_ex_continue", otp_step(CODE))
            assert err.value.errname == "EINVAL"
            assert (await first.call("auth.login_ex_continue", otp_step(CODE)))[
                "response_type"
            ] == "SUCCESS"


async def test_code_is_single_use_across_restart(daemon: InProcessDaemon) -> None:
    """An accepted code is refused afterwards, also after a daemon restart (RFC 6238 §5.2)."""
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "alice", "password": PASSWORD})
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            assert (await c.login("alice", PASSWORD, CODE))["response_type"] == "SUCCESS"
        async with daemon.client() as c:
            resp = await c.login("alice", PASSWORD, CODE)
            assert resp == {"response_type": "OTP_REQUIRED", "username": "alice"}
    await daemon.restart()
    async with daemon.client() as c:
        assert (await c.login("alice", PASSWORD, CODE))["response_type"] == "OTP_REQUIRED"


async def test_last_code_refusal_tells_a_spent_code_from_a_wrong_one(
    daemon: InProcessDaemon,
) -> None:
    """auth.last_code_refusal (API ext) after the OTP step: REUSED for the right code of a
    used step, WRONG for another code, null after an accepted one or before any; it is the
    sending session's own (another connection reads null), and the OTP_REQUIRED answer
    itself is unchanged."""
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "alice", "password": PASSWORD})
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            assert await c.call("auth.last_code_refusal") is None
            assert (await c.login("alice", PASSWORD, CODE))["response_type"] == "SUCCESS"
            assert await c.call("auth.last_code_refusal") is None
        async with daemon.client() as c, daemon.client() as other:
            resp = await c.login("alice", PASSWORD, CODE)
            assert resp == {"response_type": "OTP_REQUIRED", "username": "alice"}
            assert await c.call("auth.last_code_refusal") == "REUSED"
            assert await other.call("auth.last_code_refusal") is None
            resp = await c.call("auth.login_ex_continue", otp_step("000000"))
            assert resp == {"response_type": "OTP_REQUIRED", "username": "alice"}
            assert await c.call("auth.last_code_refusal") == "WRONG"
            # A new login on the connection starts without the last one's answer.
            resp = await c.call("auth.login_ex", password_step())
            assert resp["response_type"] == "OTP_REQUIRED"
            assert await c.call("auth.last_code_refusal") is None
        # user.verify_twofactor_token sets it too.
        assert await admin.call("user.verify_twofactor_token", "alice", CODE) is False
        assert await admin.call("auth.last_code_refusal") == "REUSED"


async def test_older_step_refused_after_newer(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """With window 1, once step T was used, the code of T-1 is refused even though in window."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        await enable_2fa(admin, window=1)
        async with daemon.client() as c:
            assert (await c.login("alice", PASSWORD, CODE))["response_type"] == "SUCCESS"
        async with daemon.client() as c:
            resp = await c.login("alice", PASSWORD, AROUND_1234567890[-1])
            assert resp["response_type"] == "OTP_REQUIRED"
            resp = await c.call("auth.login_ex_continue", otp_step(AROUND_1234567890[1]))
            assert resp["response_type"] == "SUCCESS"


@pytest.mark.parametrize("spelling", ["005 924", " 005924", "005924\n", "\t005 924 "])
async def test_whitespace_in_code(daemon: InProcessDaemon, spelling: str) -> None:
    """ASCII whitespace in the OTP step is ignored."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            assert (await c.login("alice", PASSWORD, spelling))["response_type"] == "SUCCESS"


@pytest.mark.parametrize("bad", ["005-924", "5924", "００５９２４", "0059245", "x" * 5000, ""])
async def test_malformed_codes_are_wrong_codes(daemon: InProcessDaemon, bad: str) -> None:
    """A code that is not exactly six ASCII digits is a wrong code, not an error."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            resp = await c.login("alice", PASSWORD, bad)
            assert resp == {"response_type": "OTP_REQUIRED", "username": "alice"}


@pytest.mark.parametrize("bad", [5924, None, 5.5, ["005924"], {"a": 1}, True])
async def test_non_string_code_is_invalid_params(daemon: InProcessDaemon, bad: object) -> None:
    """A non-string otp_token is -32602, and the pending step survives it."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            await c.call("auth.login_ex", password_step())
            with pytest.raises(ClientError) as err:
                await c.call("auth.login_ex_continue", otp_step(bad))
            assert err.value.code == -32602
            assert err.value.extra[0][0] == "login_data.otp_token"
            assert (await c.call("auth.login_ex_continue", otp_step(CODE)))[
                "response_type"
            ] == "SUCCESS"


async def test_failures_look_the_same(daemon: InProcessDaemon) -> None:
    """Unknown user, wrong password and locked account all answer just AUTH_ERR."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "alice", PASSWORD),
        user_asset(admin, "bob", "bob-password", locked=True),
    ):
        async with daemon.client() as c:
            for data in (
                password_step("nobody"),
                password_step("alice", "wrong"),
                password_step("bob", "bob-password"),
            ):
                assert await c.call("auth.login_ex", data) == {"response_type": "AUTH_ERR"}


@pytest.mark.settings(auth_failure_delay=0.4)
async def test_failure_is_delayed(daemon: InProcessDaemon) -> None:
    """A failed password or OTP attempt is answered no sooner than auth_failure_delay."""
    loop = asyncio.get_running_loop()
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            start = loop.time()
            await c.call("auth.login_ex", password_step("alice", "wrong"))
            assert loop.time() - start >= 0.4
            await c.call("auth.login_ex", password_step())
            start = loop.time()
            await c.call("auth.login_ex_continue", otp_step("111111"))
            assert loop.time() - start >= 0.4


async def test_new_password_step_abandons_pending(daemon: InProcessDaemon) -> None:
    """A new PASSWORD_PLAIN while an OTP step is pending starts over, and it is audited."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            await c.call("auth.login_ex", password_step())
            for _ in range(3):
                await c.call("auth.login_ex_continue", otp_step("000000"))
            # Starting over gives a fresh retry budget.
            assert (await c.call("auth.login_ex", password_step()))["response_type"] == (
                "OTP_REQUIRED"
            )
            resp = await c.call("auth.login_ex_continue", otp_step("000000"))
            assert resp["response_type"] == "OTP_REQUIRED"
        entries = await admin.call(
            "audit.query",
            {"query-filters": [["event", "=", "AUTHENTICATION"], ["username", "=", "alice"]]},
        )
        descriptions = [e["event_data"]["description"] for e in entries]
        assert "OTP step abandoned by a new password login" in descriptions


async def test_setup_required_without_secret(daemon: InProcessDaemon) -> None:
    """Global 2FA on and no secret: SUCCESS at once with setup_required true."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await enable_2fa(admin)
        async with daemon.client() as c:
            resp = await c.call("auth.login_ex", password_step())
            assert resp["response_type"] == "SUCCESS"
            tfc = resp["user_info"]["two_factor_config"]
            assert tfc["setup_required"] is True and tfc["global_enabled"] is True


@pytest.mark.settings(auth_throttle_after=3)
async def test_per_user_cool_down(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """Consecutive OTP failures across connections start the account's cool-down: every
    attempt (the right password too) is EBUSY and AuthThrottled names the user, until
    30 s later."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        for _ in range(3):
            async with daemon.client() as c:
                await c.call("auth.login_ex", password_step())
                await c.call("auth.login_ex_continue", otp_step("000000"))
        async with daemon.client() as c:
            with pytest.raises(ClientError) as err:
                await c.call("auth.login_ex", password_step())
            assert (err.value.code, err.value.errname) == (-32001, "EBUSY")
            assert err.value.reason == "Rate Limit Exceeded"
        # Only this class: 2FA on without NTP servers also raises TimeSyncUnverified (§4).
        alerts = [a for a in await admin.call("alert.list") if a["klass"] == "AuthThrottled"]
        assert len(alerts) == 1
        assert "alice" in alerts[0]["formatted"]
        clock.advance(31)
        # 31 s later is step +1; its code comes from pyotp, independently of the daemon.
        code_now = pyotp.TOTP(RFC_SECRET).generate_otp(int(clock.time()) // 30)
        async with daemon.client() as c:
            assert (await c.login("alice", PASSWORD, code_now))["response_type"] == "SUCCESS"


@pytest.mark.settings(rate_limit_calls=5, rate_limit_period=60)
async def test_rate_limit_per_address(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """Unauthenticated calls past the limit fail with EBUSY "Rate Limit Exceeded";
    core.set_options is exempt, authenticated sessions are not limited."""
    async with daemon.client() as c:
        for _ in range(3):
            await c.call("core.set_options", {})
        for _ in range(5):
            assert await c.call("core.ping") == "pong"
        with pytest.raises(ClientError) as err:
            await c.call("core.ping")
        assert (err.value.code, err.value.errname, err.value.reason) == (
            -32001,
            "EBUSY",
            "Rate Limit Exceeded",
        )
    async with daemon.client() as other:  # same address, new connection: still limited
        with pytest.raises(ClientError):
            await other.call("core.ping")
    async with daemon.root() as root:
        for _ in range(10):
            assert await root.call("core.ping") == "pong"
    clock.advance(61)
    async with daemon.client() as c:
        assert await c.call("core.ping") == "pong"


async def test_token_login_until_expiry_and_single_use(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """A generated token logs in (credentials TOKEN) until its ttl runs out (TrueNAS's
    default, single_use=false); a single_use token logs in once; expiry gives AUTH_ERR."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        async with daemon.client() as c:
            await c.login("alice", PASSWORD)
            token = await c.call("auth.generate_token", 60)
            once = await c.call("auth.generate_token", 60, {}, True, True)
            for _ in range(2):
                async with daemon.client() as c2:
                    resp = await c2.call(
                        "auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token}
                    )
                    assert resp["response_type"] == "SUCCESS"
                    assert (await c2.call("auth.me"))["credentials"] == "TOKEN"
            async with daemon.client() as c2:
                resp = await c2.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": once})
                assert resp["response_type"] == "SUCCESS"
            async with daemon.client() as c2:
                resp = await c2.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": once})
                assert resp == {"response_type": "AUTH_ERR"}
            clock.advance(61)
            async with daemon.client() as c2:
                resp = await c2.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token})
                assert resp == {"response_type": "AUTH_ERR"}


async def test_legacy_login(daemon: InProcessDaemon) -> None:
    """auth.login returns true/false and takes the code as third parameter."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        await alice_with_secret(daemon, admin)
        async with daemon.client() as c:
            assert await c.call("auth.login", "alice", PASSWORD) is False
            assert await c.call("auth.login", "alice", "wrong", CODE) is False
            assert await c.call("auth.login", "alice", PASSWORD, CODE) is True
            assert (await c.call("auth.me"))["pw_name"] == "alice"


async def test_logout(daemon: InProcessDaemon) -> None:
    """After auth.logout the session is unauthenticated again."""
    async with daemon.admin() as c:
        assert await c.call("auth.logout") is True
        with pytest.raises(ClientError) as err:
            await c.call("auth.me")
        assert err.value.errno == 207


async def test_logins_are_audited(daemon: InProcessDaemon) -> None:
    """Every login attempt is in the audit log, with the address and without the password."""
    async with daemon.admin() as admin, user_asset(admin, "alice", PASSWORD):
        async with daemon.client() as c:
            await c.call("auth.login_ex", password_step("alice", "wrong-pw-123"))
            await c.call("auth.login_ex", password_step())
        entries = await admin.call(
            "audit.query",
            {"query-filters": [["username", "=", "alice"], ["event", "=", "AUTHENTICATION"]]},
        )
        assert [e["success"] for e in entries] == [False, True]
        assert all(e["address"] == "127.0.0.1" for e in entries)
        assert "wrong-pw-123" not in json.dumps(entries)
        assert PASSWORD not in json.dumps(entries)


async def test_mechanism_choices_lists_what_starts_a_login(daemon: InProcessDaemon) -> None:
    """auth.mechanism_choices (API.md §3, no auth) lists the registered mechanisms that
    start a login, not OTP_TOKEN (it only continues one); each is accepted by login_ex."""
    async with daemon.client() as c:
        choices = await c.call("auth.mechanism_choices")
        assert sorted(choices) == ["API_KEY_PLAIN", "PASSWORD_PLAIN", "SCRAM", "TOKEN_PLAIN"]
        reply = await c.call(
            "auth.login_ex",
            {"mechanism": "TOKEN_PLAIN", "token": "not-a-token"},
        )
        assert reply["response_type"] == "AUTH_ERR"
