"""Account throttling (API.md §3, NIST SP 800-63B §5.2.2) and bounded password hashing,
attacked on the wire: guesses spread over connections, addresses, mechanisms and a
restart; the cool-down refusing a right password; the lock at the threshold and an
administrator's unlock; names that are not accounts; a wrong-password flood."""

from __future__ import annotations

import asyncio
import secrets
import sys
from typing import Any

import pyotp
import pytest

from middlewared_2fa.cli.client import ClientError
from middlewared_2fa.clock import FrozenClock
from tests.helpers.assets import user_asset
from tests.helpers.daemon import ADMIN_PASSWORD, InProcessDaemon
from tests.helpers.rfc import RFC_SECRET


def _now_at(totp: pyotp.TOTP, clock: FrozenClock) -> str:
    return totp.generate_otp(int(clock.time()) // 30)


ADDRESSES = [f"127.0.0.{i}" for i in range(2, 12)]


async def attempt(
    daemon: InProcessDaemon, username: str, password: str, address: str = "127.0.0.1"
) -> str:
    """One password login from ``address``: its response_type, or the call error's name."""
    async with daemon.client(local_addr=(address, 0)) as c:
        try:
            resp = await c.login(username, password)
        except ClientError as exc:
            assert exc.code == -32001 and exc.reason == "Rate Limit Exceeded", exc
            return str(exc.errname)
        return str(resp["response_type"])


async def test_cool_down_doubles_and_refuses_the_right_password(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """From the 5th consecutive failure on, the account cools down 30 s, then 60 s...:
    during it even the right password is EBUSY; failures come from any address."""
    async with daemon.admin() as admin, user_asset(admin, "alice", "right-pw"):
        for i in range(4):
            assert await attempt(daemon, "alice", "wrong", ADDRESSES[i]) == "AUTH_ERR"
        assert await attempt(daemon, "alice", "wrong", ADDRESSES[4]) == "AUTH_ERR"  # 5th
        assert await attempt(daemon, "alice", "right-pw", ADDRESSES[5]) == "EBUSY"
        clock.advance(29)
        assert await attempt(daemon, "alice", "right-pw") == "EBUSY"
        clock.advance(2)
        assert await attempt(daemon, "alice", "wrong", ADDRESSES[6]) == "AUTH_ERR"  # 6th
        clock.advance(59)
        assert await attempt(daemon, "alice", "right-pw") == "EBUSY"
        clock.advance(2)
        # Attempts refused during the cool-down were not counted: this is the 7th.
        assert await attempt(daemon, "alice", "wrong") == "AUTH_ERR"
        clock.advance(119)
        assert await attempt(daemon, "alice", "right-pw") == "EBUSY"
        clock.advance(2)
        assert await attempt(daemon, "alice", "right-pw") == "SUCCESS"
        # A completed login resets the count.
        assert await attempt(daemon, "alice", "wrong") == "AUTH_ERR"
        assert await attempt(daemon, "alice", "right-pw") == "SUCCESS"
        alerts = [a for a in await admin.call("alert.list") if a["klass"] == "AuthThrottled"]
        assert len(alerts) == 1 and "'alice'" in alerts[0]["formatted"]
        assert "wrong" not in alerts[0]["formatted"]


async def test_count_survives_a_restart(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """The count and the cool-down are in the database: after a restart the account is
    still cooling down and the next failure continues the sequence (8th: 240 s)."""
    async with daemon.admin() as admin, user_asset(admin, "bob", "right-pw"):
        for _ in range(7):
            clock.advance(600)  # past any cool-down
            assert await attempt(daemon, "bob", "wrong") == "AUTH_ERR"
        await daemon.restart()
        assert await attempt(daemon, "bob", "right-pw") == "EBUSY"  # 120 s after the 7th
        clock.advance(121)
        assert await attempt(daemon, "bob", "wrong") == "AUTH_ERR"  # 8th: 30 * 2^3 s
        clock.advance(239)
        assert await attempt(daemon, "bob", "right-pw") == "EBUSY"
        clock.advance(2)
        assert await attempt(daemon, "bob", "right-pw") == "SUCCESS"
        async with daemon.admin() as admin2:
            bob = await admin2.call("user.query", [["username", "=", "bob"]])
            await admin2.call("user.delete", bob[0]["id"])


async def test_wrong_codes_count_with_wrong_passwords(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """Wrong passwords and wrong OTP codes add up to one count per account (API.md §3);
    a right password that leads to the OTP step neither counts nor resets."""
    async with daemon.admin() as admin, user_asset(admin, "carol", "right-pw"):
        await daemon.seed_secret("carol", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        for _ in range(3):
            assert await attempt(daemon, "carol", "wrong") == "AUTH_ERR"
        async with daemon.client() as c:
            assert (await c.login("carol", "right-pw"))["response_type"] == "OTP_REQUIRED"
            step = {"mechanism": "OTP_TOKEN", "otp_token": "000000"}
            assert (await c.call("auth.login_ex_continue", step))["response_type"] == "OTP_REQUIRED"
            # The 5th failure.
            assert (await c.call("auth.login_ex_continue", step))["response_type"] == "OTP_REQUIRED"
            with pytest.raises(ClientError) as err:  # the right code, during the cool-down
                await c.call("auth.login_ex_continue", {**step, "otp_token": "005924"})
            assert err.value.errname == "EBUSY"
        clock.advance(31)
        async with daemon.client() as c:
            resp = await c.login("carol", "right-pw", _now_at(pyotp.TOTP(RFC_SECRET), clock))
            assert resp["response_type"] == "SUCCESS"


def sequence_settings() -> Any:
    return pytest.mark.settings(auth_throttle_after=3, auth_throttle_max=60, auth_lock_after=6)


@sequence_settings()
async def test_lock_at_the_threshold_and_admin_unlock(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """At auth_lock_after consecutive failures the account is locked (locked: true, alert
    AccountLocked naming it, its sessions end); the right password then gets AUTH_ERR
    until an administrator unlocks it, which also resets the count."""
    async with daemon.admin() as admin, user_asset(admin, "dan", "right-pw") as dan:
        async with daemon.client() as session:
            assert (await session.login("dan", "right-pw"))["response_type"] == "SUCCESS"
            for _ in range(6):
                clock.advance(61)
                assert await attempt(daemon, "dan", "wrong") == "AUTH_ERR"
            await asyncio.wait_for(session.closed.wait(), 10)
            assert session.ws.close_code == 1008
        entry = (await admin.call("user.query", [["id", "=", dan["id"]]]))[0]
        assert entry["locked"] is True
        alerts = [a for a in await admin.call("alert.list") if a["klass"] == "AccountLocked"]
        assert len(alerts) == 1 and "'dan'" in alerts[0]["formatted"]
        clock.advance(61)
        assert await attempt(daemon, "dan", "right-pw") == "AUTH_ERR"
        await admin.call("user.update", dan["id"], {"locked": False})
        assert await attempt(daemon, "dan", "wrong") == "AUTH_ERR"  # count 1: no cool-down
        assert await attempt(daemon, "dan", "right-pw") == "SUCCESS"


async def test_locked_false_ends_a_cool_down(daemon: InProcessDaemon) -> None:
    """user.update {locked: false} resets the count (API.md §3) also for an account that
    only cools down: the right password, refused during the cool-down, then logs in."""
    async with daemon.admin() as admin, user_asset(admin, "erin", "right-pw") as erin:
        for _ in range(5):  # auth_throttle_after: the fifth failure starts the cool-down
            assert await attempt(daemon, "erin", "wrong") == "AUTH_ERR"
        assert await attempt(daemon, "erin", "right-pw") == "EBUSY"
        await admin.call("user.update", erin["id"], {"full_name": "no unlock"})
        assert await attempt(daemon, "erin", "right-pw") == "EBUSY"
        await admin.call("user.update", erin["id"], {"locked": False})
        assert await attempt(daemon, "erin", "right-pw") == "SUCCESS"


async def test_no_end_to_guessing_is_refused(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """Finding 5: 120 wrong passwords for admin from ten addresses (waiting out every
    cool-down), then the right one: never SUCCESS; admin is locked at the 100th failure
    (NIST SP 800-63B §5.2.2) and the Unix-socket root, never throttled, unlocks it."""
    answers: list[str] = []
    failures = 0
    for i in range(120):
        answer = await attempt(daemon, "admin", f"guess-{i}", ADDRESSES[i % 10])
        if answer == "EBUSY":
            clock.advance(901)
            answer = await attempt(daemon, "admin", f"guess-{i}", ADDRESSES[i % 10])
        answers.append(answer)
        failures += answer == "AUTH_ERR"
    assert "SUCCESS" not in answers and failures == 120
    clock.advance(901)
    assert await attempt(daemon, "admin", ADMIN_PASSWORD) == "AUTH_ERR"
    async with daemon.root() as root:
        admin = (await root.call("user.query", [["username", "=", "admin"]]))[0]
        assert admin["locked"] is True
        await root.call("user.update", admin["id"], {"locked": False})
    assert await attempt(daemon, "admin", ADMIN_PASSWORD) == "SUCCESS"


@sequence_settings()
async def test_unknown_names_answer_the_same_sequence(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """A name that is not an account answers the same sequence of AUTH_ERR and EBUSY as
    a real account under the same guesses, so the answers do not tell which exists."""

    async def run(name: str) -> list[str]:
        out = []
        for step in range(10):
            out.append(await attempt(daemon, name, "wrong", ADDRESSES[step % 10]))
            clock.advance(20 if step % 2 else 45)
        return out

    async with daemon.admin() as admin, user_asset(admin, "erin", "right-pw"):
        real = await run("erin")
        ghost = await run("nobody-" + secrets.token_hex(4))
    assert real == ghost
    assert real.count("EBUSY") >= 2 and real.count("AUTH_ERR") >= 6


@pytest.mark.settings(rate_limit_calls=20, rate_limit_period=60, password_verifications=2)
async def test_wrong_password_flood_never_starves_a_login(daemon: InProcessDaemon) -> None:
    """Finding 6: 200 wrong passwords from ten addresses (each within its rate limit)
    while an authenticated client pings and the admin logs in from another address: the
    pings are answered, and the admin login completes (the flooders' share of the hashing
    queue makes room for it) instead of hanging or being refused."""

    async def flood(address: str) -> list[str]:
        async with daemon.client(local_addr=(address, 0)) as c:

            async def one(n: int) -> str:
                try:
                    resp = await c.login(f"ghost-{address}-{n}", "wrong")
                except ClientError as exc:
                    return str(exc.errname)
                return str(resp["response_type"])

            return list(await asyncio.gather(*(one(n) for n in range(20))))

    async with daemon.admin() as pinger:
        floods = [asyncio.create_task(flood(a)) for a in ADDRESSES]
        await asyncio.sleep(0)  # let the floods start first
        for _ in range(5):
            assert await asyncio.wait_for(pinger.call("core.ping"), 30) == "pong"
        async with daemon.client(local_addr=("127.0.0.12", 0)) as c:
            # A fair share of the hashing queue: the flooders' waiters make room for it.
            resp = await asyncio.wait_for(c.login("admin", ADMIN_PASSWORD), 120)
            assert resp["response_type"] == "SUCCESS"
        results = [r for f in await asyncio.gather(*floods) for r in f]
    assert len(results) == 200
    assert set(results) <= {"AUTH_ERR", "EBUSY"}
    # The queue is bounded: most of the flood was refused at once, not queued.
    assert results.count("EBUSY") >= 100
    assert daemon.mw.hashing.queued == 0


@sequence_settings()
async def test_fresh_names_cannot_push_a_cooling_name_out(
    daemon: InProcessDaemon, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack F1 of the review: flooding fresh names (more than the table of names that
    are not accounts holds) does not make a cooling unknown name answer differently from
    a cooling account; attempts refused unchecked take no place in the table."""
    throttle: Any = daemon.mw.services["auth"].throttle  # type: ignore[attr-defined]
    # The size of the table of names that are not accounts, made small.
    monkeypatch.setattr(sys.modules[type(throttle).__module__], "UNKNOWN_NAMES", 8)
    async with daemon.admin() as admin, user_asset(admin, "fred", "right-pw"):
        for _ in range(3):
            assert await attempt(daemon, "fred", "wrong") == "AUTH_ERR"
            assert await attempt(daemon, "ghost-fred", "wrong") == "AUTH_ERR"
        for i in range(20):  # each a real, hashed failure of a fresh name
            assert await attempt(daemon, f"fresh-{i}", "wrong", ADDRESSES[i % 10]) == "AUTH_ERR"
        assert await attempt(daemon, "fred", "right-pw") == "EBUSY"
        assert await attempt(daemon, "ghost-fred", "wrong") == "EBUSY"
        assert len(throttle._names) <= 8


@sequence_settings()
async def test_guessing_through_verify_twofactor_token_is_counted(
    daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """Attack helper: from a password-only session (global 2FA off), user.verify_twofactor_token
    took 3,800 guesses a second, uncounted, and a right one made the session LEVEL_2. Wrong
    codes of one's own secret now count like the OTP step: the 3rd starts a cool-down in
    which even the right code is EBUSY, and the account's password logins cool down too."""
    async with daemon.admin() as admin, user_asset(admin, "gina", "right-pw"):
        await daemon.seed_secret("gina", RFC_SECRET)
        totp = pyotp.TOTP(RFC_SECRET)
        async with daemon.client() as c:
            assert (await c.login("gina", "right-pw"))["response_type"] == "SUCCESS"
            for guess in ("000000", "111111", "222222"):
                assert await c.call("user.verify_twofactor_token", "gina", guess) is False
            with pytest.raises(ClientError) as err:
                await c.call("user.verify_twofactor_token", "gina", _now_at(totp, clock))
            assert err.value.errname == "EBUSY"
            assert await attempt(daemon, "gina", "right-pw") == "EBUSY"
            assert (await c.call("auth.me"))["credentials"] == "LOGIN_PASSWORD"
            clock.advance(31)
            assert await c.call("user.verify_twofactor_token", "gina", _now_at(totp, clock))
            assert (await c.call("auth.me"))["credentials"] == "LOGIN_TWOFACTOR"
            # The right code reset the count: one more wrong one is no cool-down.
            assert await c.call("user.verify_twofactor_token", "gina", "333333") is False
            assert await attempt(daemon, "gina", "right-pw") == "SUCCESS"
        # An administrator checking someone else's code does not count against them.
        for _ in range(4):
            assert await admin.call("user.verify_twofactor_token", "gina", "444444") is False
        assert await attempt(daemon, "gina", "right-pw") == "SUCCESS"
