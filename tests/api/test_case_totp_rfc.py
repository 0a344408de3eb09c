"""Bug cases C01, C02, C07, C08: TOTP arithmetic against RFC 6238 / RFC 4226 vectors, step
boundaries and the window, all through ``user.verify_twofactor_token`` with a frozen clock.

Replay rule (API.md §3): an accepted code is used up, and so is every older step. The RFC
times below are visited in increasing order, so each accepted step is newer than the last;
where a test must accept the same or an older step again it re-seeds the secret first
(``seed_secret`` forgets the last accepted step), and says so.
"""

from __future__ import annotations

import hashlib
import hmac

from middlewared_2fa.cli.client import Client
from middlewared_2fa.clock import FrozenClock
from tests.api.bug_case_helpers import (
    assert_invalid_params,
    call_error,
    hotp,
    otp_step,
    password_step,
    totp,
    truncate,
)
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import AROUND_1234567890, RFC4226_HOTP, RFC6238_SHA1_8, RFC_SECRET

T = 1234567890


async def verify(admin: Client, username: str, token: str) -> bool:
    result = await admin.call("user.verify_twofactor_token", username, token)
    assert isinstance(result, bool)
    return result


# -- C01: RFC 6238 Appendix B -------------------------------------------------------------


def test_c01_c02_oracle_matches_rfc_vectors() -> None:
    """The test-side HOTP/TOTP oracle reproduces RFC 4226 Appendix D and RFC 6238 Appendix B
    (including the 31-bit truncated values), so it can be trusted where the RFC has no vector."""
    key = b"12345678901234567890"
    macs = [hmac.new(key, c.to_bytes(8, "big"), hashlib.sha1).digest() for c in range(10)]
    assert [f"{truncate(m):x}" for m in macs] == [
        "4c93cf18",
        "41397eea",
        "82fef30",
        "66ef7655",
        "61c5938a",
        "33c083d4",
        "7256c032",
        "4e5b397",
        "2823443f",
        "2679dc69",
    ]
    assert [hotp(RFC_SECRET, c) for c in range(10)] == RFC4226_HOTP
    assert {t: totp(RFC_SECRET, t, digits=8) for t in RFC6238_SHA1_8} == RFC6238_SHA1_8


async def test_c01_rfc6238_eight_digit_codes_verify(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """With the RFC seed, 8 digits, interval 30 and window 0, every RFC 6238 Appendix B code
    verifies at its time, including t=20000000000 (past 2**32, so time must be 64-bit)."""
    assert max(RFC6238_SHA1_8) > 2**32
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET, digits=8, interval=30)
        results: dict[int, tuple[bool, bool, bool]] = {}
        for t, code in sorted(RFC6238_SHA1_8.items()):  # increasing: each step is newer
            clock.set(t)
            # Wrong codes first: a refused code uses nothing up.
            six_digit = await verify(admin, "user1", code[2:])
            next_step = await verify(admin, "user1", totp(RFC_SECRET, t + 30, digits=8))
            results[t] = (await verify(admin, "user1", code), six_digit, next_step)
        assert results == {t: (True, False, False) for t in RFC6238_SHA1_8}


async def test_c01_rfc6238_six_digit_equivalents_verify(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """With 6 digits the last six digits of each RFC 6238 code verify at its time, leading
    zeros kept ('081804', '050471', '005924')."""
    expected = {
        59: "287082",
        1111111109: "081804",
        1111111111: "050471",
        1234567890: "005924",
        2000000000: "279037",
        20000000000: "353130",
    }
    assert expected == {t: c[2:] for t, c in RFC6238_SHA1_8.items()}
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET, digits=6, interval=30)
        results: dict[int, tuple[bool, bool]] = {}
        for t, code in sorted(expected.items()):  # increasing: each step is newer
            clock.set(t)
            eight_digit = await verify(admin, "user1", RFC6238_SHA1_8[t])
            results[t] = (await verify(admin, "user1", code), eight_digit)
        assert results == {t: (True, False) for t in expected}


async def test_c01_otp_login_past_2038(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """The OTP login step uses the same 64-bit time: at t=20000000000 '65353130' logs in."""
    clock.set(20000000000)
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET, digits=8, interval=30)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as c:
            assert (await password_step(c, "user1"))["response_type"] == "OTP_REQUIRED"
            resp = await otp_step(c, "65353130")
            assert resp["response_type"] == "SUCCESS"
            assert resp["user_info"]["credentials"] == "LOGIN_TWOFACTOR"


# -- C02: RFC 4226 Appendix D via TOTP at t = 30*c -----------------------------------------


async def test_c02_hotp_counters_through_totp(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """TOTP with interval 30 at t=30*c equals RFC 4226 HOTP(c) for c = 0..9, and t=59 (step 1)
    gives HOTP(1) = '287082'."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET, digits=6, interval=30)
        results: dict[int, bool] = {}
        for c, code in enumerate(RFC4226_HOTP):  # increasing counters: each step is newer
            clock.set(30 * c)
            results[c] = await verify(admin, "user1", code)
        assert results == dict.fromkeys(range(10), True)

        # Step 1 was used up above (and step 9 is newer); re-seed so t=59 is checked on
        # its own rather than refused as a replay.
        await daemon.seed_secret("user1", RFC_SECRET, digits=6, interval=30)
        clock.set(59)
        assert await verify(admin, "user1", RFC4226_HOTP[1]) is True


# -- C07: step boundaries -------------------------------------------------------------------


async def test_c07_step_boundaries_and_window(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """'005924' (step starting at 1234567890) verifies 29 s later with window 0, not 30 s later
    with window 0, 30 s later with window 1, and not 60 s later with window 1."""
    code = AROUND_1234567890[0]
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        assert (await admin.call("auth.twofactor.config"))["window"] == 0

        clock.set(T - 1)  # last second of the previous step
        assert await verify(admin, "user1", code) is False
        clock.set(T + 29)
        assert await verify(admin, "user1", code) is True

        # The code was accepted at T+29 and is now used up; re-seed so each later check
        # is about the window, not the replay rule.
        await daemon.seed_secret("user1", RFC_SECRET)
        clock.set(T + 30)
        assert await verify(admin, "user1", code) is False

        await admin.call("auth.twofactor.update", {"window": 1})
        assert await verify(admin, "user1", code) is True

        await daemon.seed_secret("user1", RFC_SECRET)  # same reason: forget the accepted step
        clock.set(T + 60)
        assert await verify(admin, "user1", code) is False


# -- C08: window semantics and validation ---------------------------------------------------


async def test_c08_window_counts_steps_on_each_side(daemon: InProcessDaemon) -> None:
    """Window 1 at t=1234567890 accepts steps -1, 0, +1 ('980357', '005924', '590587') and
    refuses -2 and +2 ('186057', '240500'): 2w+1 codes in all."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        entry = await admin.call("auth.twofactor.update", {"window": 1})
        assert entry["window"] == 1
        config = await admin.call("auth.twofactor.config")
        assert type(config["window"]) is int and config["window"] == 1

        results: dict[int, bool] = {}
        for offset in (-2, -1, 0, 1, 2):
            # A fresh seed before every code: each is judged by the window alone, never
            # refused because a newer step was accepted just before.
            await daemon.seed_secret("user1", RFC_SECRET)
            results[offset] = await verify(admin, "user1", AROUND_1234567890[offset])
        assert results == {-2: False, -1: True, 0: True, 1: True, 2: False}


async def test_c08_window_out_of_range_or_not_integer_is_rejected(daemon: InProcessDaemon) -> None:
    """window -1, 11, 30 (seconds, not steps), 'abc', true and 1.5 are -32602 on
    auth_twofactor_update.window and leave the configuration unchanged."""
    async with daemon.admin() as admin:
        before = await admin.call("auth.twofactor.update", {"window": 1})
        for bad in (-1, 11, 30, "abc", True, 1.5, None):
            err = await call_error(admin, "auth.twofactor.update", {"window": bad})
            assert_invalid_params(err, "auth_twofactor_update.window")
        assert await admin.call("auth.twofactor.config") == before
        assert before["window"] == 1
