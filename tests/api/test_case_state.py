"""Bug cases C18, C19, C22: login and 2FA state stay consistent: no OTP step for a user
without a secret, unsetting a secret takes effect at once and survives a restart, the SSH
password rule holds and partial updates change only what they name (API.md §3-§5).

The OATH users file (C19) and pam_oath (C22) are covered with the SSH/OATH plugin.
"""

from __future__ import annotations

import asyncio

from middlewared_2fa.cli.client import Client
from tests.api.bug_case_helpers import (
    StoredTotp,
    assert_call_error,
    assert_invalid_params,
    call_error,
    otp_step,
    password_step,
    session_of,
    stored_totp,
    totp,
    uri_params,
)
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import RFC_SECRET

T = 1234567890
NOT_CONFIGURED = "'{}' user does not have two factor authentication configured"
NOTHING_PENDING = "OTP_TOKEN: no authentication in progress"


async def assert_not_logged_in(client: Client) -> None:
    err = await call_error(client, "auth.me")
    assert_call_error(err, 207, "ENOTAUTHENTICATED")


# -- C18: global 2FA on, user without a secret ----------------------------------------------


async def test_c18_user_without_secret_logs_in_with_password_only(
    daemon: InProcessDaemon,
) -> None:
    """With global 2FA on, a user without a secret gets SUCCESS from PASSWORD_PLAIN with
    setup_required true; an OTP_TOKEN afterwards (same or fresh connection) is call error
    EINVAL and '000000' never logs anyone in."""
    async with daemon.admin() as admin, user_asset(admin, "user2"):
        config = await admin.call("auth.twofactor.update", {"enabled": True})
        assert config["enabled"] is True
        async with daemon.client() as c:
            resp = await password_step(c, "user2")
            assert resp["response_type"] == "SUCCESS"
            info = resp["user_info"]
            assert info["credentials"] == "LOGIN_PASSWORD"
            assert info["account_attributes"] == ["LOCAL"]
            assert info["two_factor_config"] == {
                "secret_configured": False,
                "interval": 30,
                "otp_digits": 6,
                "global_enabled": True,
                "setup_required": True,
            }
            assert (await c.call("auth.me"))["two_factor_config"]["setup_required"] is True
            err = await call_error(
                c, "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": "000000"}
            )
            assert_call_error(err, 22, "EINVAL")
            assert err.reason == NOTHING_PENDING

        for method in ("auth.login_ex", "auth.login_ex_continue"):
            async with daemon.client() as fresh:
                err = await call_error(
                    fresh, method, {"mechanism": "OTP_TOKEN", "otp_token": "000000"}
                )
                assert_call_error(err, 22, "EINVAL")
                assert err.reason == NOTHING_PENDING
                await assert_not_logged_in(fresh)


async def test_c18_verify_for_user_without_secret_is_einval(daemon: InProcessDaemon) -> None:
    """verify_twofactor_token for a user without a secret is call error EINVAL 'not
    configured' (never true), with global 2FA on or off, called by the user or by admin."""
    async with daemon.admin() as admin, user_asset(admin, "user2"):
        async with session_of(daemon, "user2") as user2:
            for enabled in (True, False):
                await admin.call("auth.twofactor.update", {"enabled": enabled})
                for client in (admin, user2):
                    err = await call_error(client, "user.verify_twofactor_token", "user2", "000000")
                    assert_call_error(err, 22, "EINVAL")
                    assert err.reason == NOT_CONFIGURED.format("user2")
        assert await stored_totp(daemon, "user2") == StoredTotp(None, 30, 6)


async def test_c18_verify_works_with_global_2fa_off(daemon: InProcessDaemon) -> None:
    """With global 2FA off a user with a secret can still confirm it: the right code verifies
    true, a wrong one false, and password login asks for no OTP."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        assert (await admin.call("auth.twofactor.config"))["enabled"] is False
        async with session_of(daemon, "user1") as user1:
            me = await user1.call("auth.me")
            assert me["two_factor_config"]["setup_required"] is False
            assert me["two_factor_config"]["secret_configured"] is True
            assert await user1.call("user.verify_twofactor_token", "user1", "000000") is False
            assert await user1.call("user.verify_twofactor_token", "user1", "005924") is True


# -- C19: unsetting a secret --------------------------------------------------------------


async def test_c19_unset_secret_login_without_otp_also_after_restart(
    daemon: InProcessDaemon,
) -> None:
    """After unset_2fa_secret the user logs in with the password alone and
    provisioning_uri is call error EINVAL; the secret is gone from SQLite, and both still
    hold after a daemon restart."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await admin.call("auth.twofactor.update", {"enabled": True})
        renewed = await admin.call("user.renew_2fa_secret", "user1")
        secret = uri_params(renewed["twofactor_config"]["provisioning_uri"])["secret"]
        async with daemon.client() as c:
            assert (await password_step(c, "user1"))["response_type"] == "OTP_REQUIRED"
            assert (await otp_step(c, totp(secret, T)))["response_type"] == "SUCCESS"

        assert await admin.call("user.unset_2fa_secret", "user1") is None
        entry = await admin.call("user.query", [["username", "=", "user1"]], {"get": True})
        assert entry["twofactor_auth_configured"] is False
        assert await stored_totp(daemon, "user1") == StoredTotp(None, 30, 6)
        await assert_unset_state(daemon, admin)

        # Restart on the same state folder; the old admin connection ends with it (so
        # user_asset skips its clean-up, and the daemon fixture removes the folder).
        await daemon.restart()
        await asyncio.wait_for(admin.closed.wait(), 60)
        assert await stored_totp(daemon, "user1") == StoredTotp(None, 30, 6)
        async with daemon.admin() as admin_again:
            assert (await admin_again.call("auth.twofactor.config"))["enabled"] is True
            await assert_unset_state(daemon, admin_again)


async def assert_unset_state(daemon: InProcessDaemon, admin: Client) -> None:
    """user1 logs in without OTP; its URI is EINVAL; its config says no secret."""
    async with daemon.client() as c:
        resp = await password_step(c, "user1")
        assert resp["response_type"] == "SUCCESS"
        assert resp["user_info"]["credentials"] == "LOGIN_PASSWORD"
        assert resp["user_info"]["two_factor_config"]["setup_required"] is True
    err = await call_error(admin, "user.provisioning_uri", "user1")
    assert_call_error(err, 22, "EINVAL")
    assert err.reason == NOT_CONFIGURED.format("user1")
    config = await admin.call("user.twofactor_config", "user1")
    assert config["provisioning_uri"] is None
    assert config["secret_configured"] is False


async def test_c19_user_unsets_own_secret_and_pending_otp_step_ends(
    daemon: InProcessDaemon,
) -> None:
    """A user may unset their own secret; an OTP step left pending from before cannot be
    completed with the old code, and a new password login needs no OTP."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as pending:
            assert (await password_step(pending, "user1"))["response_type"] == "OTP_REQUIRED"
            async with session_of(daemon, "user1", otp="005924") as user1:
                assert await user1.call("user.unset_2fa_secret", "user1") is None
            # The secret changed under the pending step: it was dropped (API.md §3), so
            # the old code finds no authentication in progress; nobody is logged in.
            err = await call_error(
                pending, "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": "590587"}
            )
            assert_call_error(err, 22, "EINVAL")
            assert err.reason == "OTP_TOKEN: no authentication in progress"
            await assert_not_logged_in(pending)
            assert (await password_step(pending, "user1"))["response_type"] == "SUCCESS"


# -- C22: the SSH password rule and partial updates ----------------------------------------


async def test_c22_ssh_password_needs_secret_while_ssh_2fa_required(
    daemon: InProcessDaemon,
) -> None:
    """With global 2FA and services.ssh on, ssh_password_enabled=true for a user without a
    secret is -32602 (update and create) and nothing changes; with a secret it is allowed."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "user1") as user1,
        user_asset(admin, "user2") as user2,
    ):
        config = await admin.call(
            "auth.twofactor.update", {"enabled": True, "services": {"ssh": True}}
        )
        assert (config["enabled"], config["services"]) == (True, {"ssh": True})

        err = await call_error(admin, "user.update", user2["id"], {"ssh_password_enabled": True})
        assert_invalid_params(err, "user_update.ssh_password_enabled")
        assert await admin.call("user.get_instance", user2["id"]) == user2
        assert user2["ssh_password_enabled"] is False

        err = await call_error(
            admin,
            "user.create",
            {"username": "user3", "password": "pw", "ssh_password_enabled": True},
        )
        assert_invalid_params(err, "user_create.ssh_password_enabled")
        assert await admin.call("user.query", [["username", "=", "user3"]]) == []

        await daemon.seed_secret("user1", RFC_SECRET)
        updated = await admin.call("user.update", user1["id"], {"ssh_password_enabled": True})
        assert updated["ssh_password_enabled"] is True
        assert updated["twofactor_auth_configured"] is True


async def test_c22_ssh_flag_has_no_effect_while_2fa_disabled(daemon: InProcessDaemon) -> None:
    """services.ssh=true with global 2FA off does not restrict ssh_password_enabled for a user
    without a secret."""
    async with daemon.admin() as admin, user_asset(admin, "user2") as user2:
        config = await admin.call("auth.twofactor.update", {"services": {"ssh": True}})
        assert (config["enabled"], config["services"]) == (False, {"ssh": True})
        updated = await admin.call("user.update", user2["id"], {"ssh_password_enabled": True})
        assert updated["ssh_password_enabled"] is True


async def test_c22_partial_update_keeps_other_settings_and_persists(
    daemon: InProcessDaemon,
) -> None:
    """update({'window': 2}) after enabling 2FA with services.ssh leaves enabled and
    services.ssh on (also an empty services object changes nothing), and the settings
    survive a restart."""
    async with daemon.admin() as admin:
        await admin.call(
            "auth.twofactor.update",
            {"enabled": True, "services": {"ssh": True}, "issuer": "nas-1"},
        )
        expected = {
            "id": 1,
            "enabled": True,
            "window": 2,
            "services": {"ssh": True},
            "issuer": "nas-1",
            "enforce": False,
        }
        assert await admin.call("auth.twofactor.update", {"window": 2}) == expected
        assert await admin.call("auth.twofactor.update", {"services": {}}) == expected
        assert await admin.call("auth.twofactor.update", {}) == expected
        assert await admin.call("auth.twofactor.config") == expected
    await daemon.restart()
    async with daemon.admin() as admin:
        assert await admin.call("auth.twofactor.config") == expected
