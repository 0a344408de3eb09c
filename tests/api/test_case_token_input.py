"""Bug cases C03, C04, C05: how a typed code is read, by ``user.verify_twofactor_token`` and
by the OTP_TOKEN login step alike (API.md §3: codes are strings; ASCII whitespace is
ignored; anything else that is not exactly otp_digits ASCII digits is a wrong code; a
non-string is -32602).

Replay rule: a right code is used up, so each test tries the wrong spellings first (a
refused code uses nothing up) and re-seeds the secret before each further right spelling.
"""

from __future__ import annotations

from typing import Any

import pytest

from middlewared_2fa.cli.client import Client
from middlewared_2fa.clock import FrozenClock
from tests.api.bug_case_helpers import (
    USER_PASSWORD,
    assert_call_error,
    assert_invalid_params,
    call_error,
    otp_step,
    password_step,
)
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import RFC_SECRET

#: The 6-digit code at the fixture time 1234567890.
CODE = "005924"
OTP_METHODS = ("auth.login_ex", "auth.login_ex_continue")


async def verify(admin: Client, token: Any) -> bool:
    result = await admin.call("user.verify_twofactor_token", "user1", token)
    assert isinstance(result, bool)
    return result


async def otp_answer(daemon: InProcessDaemon, token: Any) -> str:
    """response_type of the OTP step with ``token`` after a fresh password step."""
    async with daemon.client() as c:
        assert (await password_step(c, "user1"))["response_type"] == "OTP_REQUIRED"
        return str((await otp_step(c, token))["response_type"])


# -- C03: codes are fixed-width digit strings -----------------------------------------------


async def test_c03_verify_leading_zero_and_integer_tokens(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """'005924' verifies; '5924' is false (wrong length); JSON integers 5924 and, at t=59,
    287082 are -32602 on 'token' even though 287082 is the right value."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        assert await verify(admin, "5924") is False
        err = await call_error(admin, "user.verify_twofactor_token", "user1", 5924)
        assert_invalid_params(err, "token")
        assert await verify(admin, CODE) is True

        # Going back to t=59 would be refused as a replay of an older step; re-seed so
        # only the token's type decides.
        await daemon.seed_secret("user1", RFC_SECRET)
        clock.set(59)
        err = await call_error(admin, "user.verify_twofactor_token", "user1", 287082)
        assert_invalid_params(err, "token")
        assert await verify(admin, "287082") is True


@pytest.mark.parametrize("method", OTP_METHODS)
async def test_c03_otp_login_step_integer_and_short_tokens(
    daemon: InProcessDaemon, method: str
) -> None:
    """In the OTP login step an integer code is -32602 on 'login_data.otp_token' (the
    pending step survives it), '5924' answers OTP_REQUIRED, and '005924' logs in."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as c:
            assert (await password_step(c, "user1"))["response_type"] == "OTP_REQUIRED"
            for integer in (5924, 287082):
                err = await call_error(c, method, {"mechanism": "OTP_TOKEN", "otp_token": integer})
                assert_invalid_params(err, "login_data.otp_token")
            assert (await otp_step(c, "5924", method=method))["response_type"] == "OTP_REQUIRED"
            resp = await otp_step(c, CODE, method=method)
            assert resp["response_type"] == "SUCCESS"
            assert resp["user_info"]["credentials"] == "LOGIN_TWOFACTOR"


# -- C04: spaces and newlines -----------------------------------------------------------------

WHITESPACE_SPELLINGS = ("005 924", " 005924", "005924\n", "\t00 59 24\r\n")
WRONG_SPELLINGS = ("005-924", "005\u00a0924", "005924.", "+005924")


async def test_c04_verify_ignores_ascii_whitespace(daemon: InProcessDaemon) -> None:
    """verify ignores ASCII whitespace anywhere ('005 924', ' 005924', '005924\\n') but a
    hyphen, a no-break space or other punctuation makes the code wrong."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        assert {t: await verify(admin, t) for t in WRONG_SPELLINGS} == dict.fromkeys(
            WRONG_SPELLINGS, False
        )
        accepted: dict[str, bool] = {}
        for token in WHITESPACE_SPELLINGS:
            # Each spelling is the same step's code: re-seed so an earlier acceptance
            # does not use it up.
            await daemon.seed_secret("user1", RFC_SECRET)
            accepted[token] = await verify(admin, token)
        assert accepted == dict.fromkeys(WHITESPACE_SPELLINGS, True)


async def test_c04_otp_login_ignores_ascii_whitespace(daemon: InProcessDaemon) -> None:
    """The OTP login step applies the same rule: whitespace spellings log in, '005-924'
    answers OTP_REQUIRED."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        wrong = {t: await otp_answer(daemon, t) for t in WRONG_SPELLINGS}
        assert wrong == dict.fromkeys(WRONG_SPELLINGS, "OTP_REQUIRED")
        answers: dict[str, str] = {}
        for token in WHITESPACE_SPELLINGS:
            await daemon.seed_secret("user1", RFC_SECRET)  # a fresh step for each login
            answers[token] = await otp_answer(daemon, token)
        assert answers == dict.fromkeys(WHITESPACE_SPELLINGS, "SUCCESS")


# -- C05: odd input never breaks the check ----------------------------------------------------

ODD_TOKENS = (
    "",
    "\u25cf" * 6,  # '●●●●●●', a browser's autofill mask
    "\uff10\uff10\uff15\uff19\uff12\uff14",  # full-width '００５９２４' (NFKC would give 005924)
    "\u0660\u0660\u0665\u0669\u0662\u0664",  # Arabic-Indic digits 005924 (str.isdigit is true)
    "0000000",  # 7 digits
    "0059240",  # the right code plus a digit
    "00592",  # 5 digits
    "   ",  # nothing but whitespace
    "\x00" * 6,
)


async def test_c05_verify_odd_tokens_are_false_never_internal_errors(
    daemon: InProcessDaemon,
) -> None:
    """Empty, '●●●●●●', full-width or other non-ASCII digits, 7 digits and a 10 kB string
    verify false; null is -32602 on 'token'; the right code still verifies afterwards."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        tokens = (*ODD_TOKENS, "0" * 10_000, CODE * 2000)
        results = {i: await verify(admin, t) for i, t in enumerate(tokens)}
        assert results == dict.fromkeys(range(len(tokens)), False)
        err = await call_error(admin, "user.verify_twofactor_token", "user1", None)
        assert_invalid_params(err, "token")
        for other in ([CODE], {"code": CODE}, 5.924, True):
            err = await call_error(admin, "user.verify_twofactor_token", "user1", other)
            assert_invalid_params(err, "token")
        assert await verify(admin, CODE) is True


# Five wrong codes in a row would start the account's cool-down (auth_throttle_after 5),
# which is not what this case is about.
@pytest.mark.settings(auth_throttle_after=100)
async def test_c05_otp_login_odd_tokens(daemon: InProcessDaemon) -> None:
    """In the OTP login step the same odd codes (and a 4000-digit one, under the 8 KiB
    unauthenticated limit) answer OTP_REQUIRED, null is -32602, and '005924' still logs in."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        tokens = (*ODD_TOKENS, "0" * 4000)
        # A fresh password step per token keeps each within the 3-retry budget.
        answers = {i: await otp_answer(daemon, t) for i, t in enumerate(tokens)}
        assert answers == dict.fromkeys(range(len(tokens)), "OTP_REQUIRED")
        async with daemon.client() as c:
            assert (await password_step(c, "user1"))["response_type"] == "OTP_REQUIRED"
            for method in OTP_METHODS:
                err = await call_error(c, method, {"mechanism": "OTP_TOKEN", "otp_token": None})
                assert_invalid_params(err, "login_data.otp_token")
            assert (await otp_step(c, CODE))["response_type"] == "SUCCESS"


async def test_c05_otp_token_without_pending_step_is_einval(daemon: InProcessDaemon) -> None:
    """An odd OTP_TOKEN on a connection with no pending step is still the call error EINVAL
    'OTP_TOKEN: no authentication in progress', not an internal error."""
    async with daemon.client() as c:
        for method in OTP_METHODS:
            for token in ("", "\u25cf" * 6):
                err = await call_error(c, method, {"mechanism": "OTP_TOKEN", "otp_token": token})
                assert_call_error(err, 22, "EINVAL")
                assert err.reason == "OTP_TOKEN: no authentication in progress"


async def test_c03_c04_c05_legacy_login_applies_the_same_rules(daemon: InProcessDaemon) -> None:
    """The legacy auth.login(username, password, otp_token) reads codes the same way: an
    integer is -32602 on 'otp_token', '5924', '005-924' and full-width digits are false,
    and '005 924' logs in."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as c:
            err = await call_error(c, "auth.login", "user1", USER_PASSWORD, 5924)
            assert_invalid_params(err, "otp_token")
            for wrong in ("5924", "005-924", "\uff10\uff10\uff15\uff19\uff12\uff14", ""):
                assert await c.call("auth.login", "user1", USER_PASSWORD, wrong) is False
            assert await c.call("auth.login", "user1", USER_PASSWORD, "005 924") is True
            assert (await c.call("auth.me"))["credentials"] == "LOGIN_TWOFACTOR"
