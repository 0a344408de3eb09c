"""Bug cases C11, C12, C15, C21: per-user TOTP options, the provisioning URI, secret
generation and renewal (API.md §4).

Expected codes for secrets the daemon generates are computed with the test-side oracle
(``bug_case_helpers.totp``, RFC 6238 written independently of the daemon's pyotp).
"""

from __future__ import annotations

import re

import pytest

from middlewared_2fa.cli.client import Client
from middlewared_2fa.clock import FrozenClock
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
from tests.helpers.rfc import RFC_INTERVAL_60_8, RFC_SECRET

T = 1234567890
BASE32_SECRET = re.compile(r"[A-Z2-7]{32}")
LEGACY_SECRET = "S46SQCPPTCNPROMHWYBDCTBZXV"  # 26 characters: 130 bits, not a multiple of 8


async def verify(client: Client, username: str, token: str) -> bool:
    result = await client.call("user.verify_twofactor_token", username, token)
    assert isinstance(result, bool)
    return result


# -- C11: interval must be 30 or 60 ----------------------------------------------------------


async def test_c11_interval_other_than_30_or_60_is_rejected(daemon: InProcessDaemon) -> None:
    """renew_2fa_secret with interval 45, 0 (or any value but 30/60, or a non-integer) is
    -32602 on twofactor_options.interval and the stored secret stays as it was."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        uri = await admin.call("user.provisioning_uri", "user1")
        for interval in (45, 0, 15, 90, -30, "30", True, None):
            err = await call_error(
                admin, "user.renew_2fa_secret", "user1", {"interval": interval, "otp_digits": 6}
            )
            assert_invalid_params(err, "twofactor_options.interval")
            assert await stored_totp(daemon, "user1") == StoredTotp(RFC_SECRET, 30, 6), interval
        assert await admin.call("user.provisioning_uri", "user1") == uri
        assert await verify(admin, "user1", "005924") is True


async def test_c11_interval_60_with_eight_digits(daemon: InProcessDaemon) -> None:
    """renew with {interval 60, otp_digits 8} succeeds: the result and the URI carry
    digits=8 and period=60, and the stored row says 60 s / 8 digits."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        entry = await admin.call(
            "user.renew_2fa_secret", "user1", {"interval": 60, "otp_digits": 8}
        )
        config = entry["twofactor_config"]
        assert (config["interval"], config["otp_digits"]) == (60, 8)
        assert config["secret_configured"] is True
        uri = await admin.call("user.provisioning_uri", "user1")
        assert uri == config["provisioning_uri"]
        assert uri.endswith("&digits=8&period=60")
        params = uri_params(uri)
        assert (params["digits"], params["period"]) == ("8", "60")
        stored = await stored_totp(daemon, "user1")
        assert (stored.interval, stored.digits) == (60, 8)
        assert stored.secret == params["secret"]
        # The daemon really uses 60 s steps and 8 digits for the new secret.
        assert await verify(admin, "user1", totp(params["secret"], T, interval=60, digits=8))


async def test_c11_rfc_secret_with_interval_60(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """With the RFC seed and interval 60: t=59 -> 84755224 / 755224, t=1111111109 ->
    19360094 / 360094, t=1234567890 -> 55713351 / 713351."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        for digits in (8, 6):
            # A new seed per digit count forgets the steps accepted in the previous round.
            await daemon.seed_secret("user1", RFC_SECRET, digits=digits, interval=60)
            results: dict[int, bool] = {}
            for t, code in sorted(RFC_INTERVAL_60_8.items()):  # increasing: steps get newer
                clock.set(t)
                results[t] = await verify(admin, "user1", code[-digits:])
            assert results == dict.fromkeys(RFC_INTERVAL_60_8, True), digits


# -- C12: digits in the URI, 6..8 only -------------------------------------------------------


async def test_c12_otp_digits_outside_6_to_8_is_rejected(daemon: InProcessDaemon) -> None:
    """renew with otp_digits 5 or 9 (or any non-integer) is -32602 on
    twofactor_options.otp_digits and nothing changes."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        for digits in (5, 9, 0, 10, "8", 8.5, True):
            err = await call_error(
                admin, "user.renew_2fa_secret", "user1", {"interval": 30, "otp_digits": digits}
            )
            assert_invalid_params(err, "twofactor_options.otp_digits")
            assert await stored_totp(daemon, "user1") == StoredTotp(RFC_SECRET, 30, 6), digits


@pytest.mark.parametrize(("digits", "suffix"), [(6, ""), (7, "&digits=7"), (8, "&digits=8")])
async def test_c12_digits_in_uri_and_sha1_codes(
    daemon: InProcessDaemon, digits: int, suffix: str
) -> None:
    """The URI carries digits=N exactly when N != 6, never an algorithm other than SHA1,
    and the daemon accepts the N-digit HMAC-SHA1 code of the new secret."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        entry = await admin.call(
            "user.renew_2fa_secret", "user1", {"interval": 30, "otp_digits": digits}
        )
        uri = entry["twofactor_config"]["provisioning_uri"]
        assert uri == await admin.call("user.provisioning_uri", "user1")
        params = uri_params(uri)
        assert re.fullmatch(
            rf"otpauth://totp/middlewared-2fa:user1%40[^?]+\?secret=[A-Z2-7]{{32}}"
            rf"&issuer=middlewared-2fa{re.escape(suffix)}",
            uri,
        ), uri
        assert params.get("algorithm", "SHA1") == "SHA1"
        assert "period" not in params
        wrong_length = totp(params["secret"], T, digits=6 if digits != 6 else 8)
        assert await verify(admin, "user1", wrong_length) is False
        assert await verify(admin, "user1", totp(params["secret"], T, digits=digits)) is True


# -- C15: secret format, stable URI ----------------------------------------------------------


async def test_c15_renewed_secrets_are_32_base32_characters(daemon: InProcessDaemon) -> None:
    """Two renewals give two different 32-character A-Z2-7 secrets with no '=' anywhere,
    stored as given in the URI."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        secrets: list[str] = []
        for _ in range(2):
            entry = await admin.call("user.renew_2fa_secret", "user1")
            uri = entry["twofactor_config"]["provisioning_uri"]
            assert "%3D" not in uri.upper() and "==" not in uri
            secret = uri_params(uri)["secret"]
            assert BASE32_SECRET.fullmatch(secret), secret
            assert (await stored_totp(daemon, "user1")).secret == secret
            secrets.append(secret)
        assert secrets[0] != secrets[1]


async def test_c15_uri_identical_before_and_after_verify(daemon: InProcessDaemon) -> None:
    """provisioning_uri and twofactor_config are identical before and after a wrong and a
    right verify."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await admin.call("user.renew_2fa_secret", "user1")
        uri = await admin.call("user.provisioning_uri", "user1")
        config = await admin.call("user.twofactor_config", "user1")
        secret = uri_params(uri)["secret"]
        right = totp(secret, T)
        wrong = f"{(int(right) + 1) % 10**6:06d}"
        assert await verify(admin, "user1", wrong) is False
        assert await admin.call("user.provisioning_uri", "user1") == uri
        assert await verify(admin, "user1", right) is True
        assert await admin.call("user.provisioning_uri", "user1") == uri
        assert await admin.call("user.twofactor_config", "user1") == config


async def test_c15_legacy_26_character_secret(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """A stored 26-character legacy secret appears in the URI as is, without '=' padding,
    the URI does not change across verifies, and its codes verify and log in."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", LEGACY_SECRET)
        uri = await admin.call("user.provisioning_uri", "user1")
        assert uri_params(uri)["secret"] == LEGACY_SECRET
        assert "=" not in uri.split("secret=", 1)[1].split("&", 1)[0]
        assert "%3D" not in uri.upper()

        code = totp(LEGACY_SECRET, T)
        assert await verify(admin, "user1", code) is True
        assert await admin.call("user.provisioning_uri", "user1") == uri
        assert (await stored_totp(daemon, "user1")).secret == LEGACY_SECRET

        # The code of step T is used up; the login takes the next step's code.
        clock.set(T + 30)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as c:
            assert (await password_step(c, "user1"))["response_type"] == "OTP_REQUIRED"
            resp = await otp_step(c, totp(LEGACY_SECRET, T + 30))
            assert resp["response_type"] == "SUCCESS"
        assert await admin.call("user.provisioning_uri", "user1") == uri


# -- C21: renewal replaces one user's secret, nobody else's ----------------------------------


async def test_c21_renewal_replaces_secret_and_returns_new_config(
    daemon: InProcessDaemon,
) -> None:
    """Each renewal returns the new configuration; the old secret's current code is refused
    at once, the new one accepted, and renewing with {60, 8} gives a URI with period=60
    and digits=8; user2's secret is untouched throughout."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "user1"),
        user_asset(admin, "user2"),
    ):
        uri_b = (await admin.call("user.renew_2fa_secret", "user2"))["twofactor_config"][
            "provisioning_uri"
        ]
        stored_b = await stored_totp(daemon, "user2")

        first = await admin.call("user.renew_2fa_secret", "user1")
        uri1 = first["twofactor_config"]["provisioning_uri"]
        assert first["twofactor_auth_configured"] is True
        assert first["username"] == "user1"
        assert first["twofactor_config"] == {
            "provisioning_uri": uri1,
            "secret_configured": True,
            "interval": 30,
            "otp_digits": 6,
            "recovery_codes_remaining": 0,
        }
        assert await admin.call("user.provisioning_uri", "user1") == uri1

        # Same options again: a new secret, and the old one's current code no longer works.
        second = await admin.call("user.renew_2fa_secret", "user1", {})
        uri1b = second["twofactor_config"]["provisioning_uri"]
        old, new = uri_params(uri1)["secret"], uri_params(uri1b)["secret"]
        assert old != new
        assert totp(old, T) != totp(new, T)  # else the next check would prove nothing
        assert await verify(admin, "user1", totp(old, T)) is False
        assert await verify(admin, "user1", totp(new, T)) is True

        third = await admin.call(
            "user.renew_2fa_secret", "user1", {"interval": 60, "otp_digits": 8}
        )
        uri2 = third["twofactor_config"]["provisioning_uri"]
        assert uri2 != uri1b
        assert uri_params(uri2)["secret"] not in (old, new)
        assert (uri_params(uri2)["period"], uri_params(uri2)["digits"]) == ("60", "8")
        assert await admin.call("user.provisioning_uri", "user1") == uri2

        assert await admin.call("user.provisioning_uri", "user2") == uri_b
        assert await stored_totp(daemon, "user2") == stored_b
        assert await verify(admin, "user2", totp(uri_params(uri_b)["secret"], T)) is True


async def test_c21_renew_keeps_stored_options_when_omitted(daemon: InProcessDaemon) -> None:
    """Options omitted from a renewal keep the stored values: after {60, 8}, renewing with
    {otp_digits: 7} keeps interval 60, and renewing with no options keeps both."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await admin.call("user.renew_2fa_secret", "user1", {"interval": 60, "otp_digits": 8})
        entry = await admin.call("user.renew_2fa_secret", "user1", {"otp_digits": 7})
        assert (entry["twofactor_config"]["interval"], entry["twofactor_config"]["otp_digits"]) == (
            60,
            7,
        )
        entry = await admin.call("user.renew_2fa_secret", "user1")
        assert (entry["twofactor_config"]["interval"], entry["twofactor_config"]["otp_digits"]) == (
            60,
            7,
        )
        stored = await stored_totp(daemon, "user1")
        assert (stored.interval, stored.digits) == (60, 7)


async def test_c21_other_user_cannot_renew_and_nothing_changes(daemon: InProcessDaemon) -> None:
    """user2 (no roles) renewing, unsetting, reading or verifying user1's secret gets call
    error EPERM (errno 1); user1's secret and URI stay as they were; user2 may renew its own."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "user1"),
        user_asset(admin, "user2"),
    ):
        await daemon.seed_secret("user1", RFC_SECRET)
        uri1 = await admin.call("user.provisioning_uri", "user1")
        async with session_of(daemon, "user2") as user2:
            for method, params in (
                ("user.renew_2fa_secret", ("user1",)),
                ("user.renew_2fa_secret", ("user1", {"interval": 60, "otp_digits": 8})),
                ("user.unset_2fa_secret", ("user1",)),
                ("user.provisioning_uri", ("user1",)),
                ("user.twofactor_config", ("user1",)),
                ("user.twofactor_qr", ("user1",)),
                ("user.verify_twofactor_token", ("user1", "005924")),
            ):
                err = await call_error(user2, method, *params)
                assert_call_error(err, 1, "EPERM")
                assert "005924" not in err.reason
            own = await user2.call("user.renew_2fa_secret", "user2")
            assert own["username"] == "user2"
        assert await stored_totp(daemon, "user1") == StoredTotp(RFC_SECRET, 30, 6)
        assert await admin.call("user.provisioning_uri", "user1") == uri1
        # user2's verify attempt did not use up user1's code.
        assert await verify(admin, "user1", "005924") is True


async def test_c21_account_write_is_not_enough_to_renew(daemon: InProcessDaemon) -> None:
    """A user with ACCOUNT_WRITE and SYSTEM_SECURITY_WRITE but not FULL_ADMIN gets EPERM
    renewing or reading user1's secret (renew needs the user or FULL_ADMIN), while
    unset_2fa_secret, which ACCOUNT_WRITE allows, works."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "user1"),
        user_asset(admin, "user2", roles=["ACCOUNT_WRITE", "SYSTEM_SECURITY_WRITE"]),
    ):
        await daemon.seed_secret("user1", RFC_SECRET)
        async with session_of(daemon, "user2") as user2:
            for method in ("user.renew_2fa_secret", "user.provisioning_uri"):
                err = await call_error(user2, method, "user1")
                assert_call_error(err, 1, "EPERM")
            assert await stored_totp(daemon, "user1") == StoredTotp(RFC_SECRET, 30, 6)
            assert await user2.call("user.unset_2fa_secret", "user1") is None
        assert await stored_totp(daemon, "user1") == StoredTotp(None, 30, 6)
