"""Credentials you can trust (API.md §3, §9): the role guard, credential generations that
end sessions, tokens and pending OTP steps, and the session methods. Each test performs
the attack of a security review finding on the wire against the real daemon on loopback
and asserts the contract's refusal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher

from middlewared_2fa.cli.client import Client, ClientError
from middlewared_2fa.clock import FrozenClock
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon, wait_until
from tests.helpers.rfc import RFC_SECRET

CODE = "005924"  # RFC_SECRET at the frozen T0


def code_at(clock: FrozenClock, offset: int = 0) -> str:
    """The RFC seed's code ``offset`` seconds from the frozen time (pyotp, not ours)."""
    return pyotp.TOTP(RFC_SECRET).generate_otp(int(clock.time() + offset) // 30)


async def error_of(client: Client, method: str, *params: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        await client.call(method, *params)
    return info.value


@contextlib.asynccontextmanager
async def logged_in(
    daemon: InProcessDaemon, username: str, password: str, otp: str | None = None, **kw: Any
) -> AsyncIterator[Client]:
    async with daemon.client(**kw) as c:
        resp = await c.login(username, password, otp)
        assert resp["response_type"] == "SUCCESS", resp
        yield c


async def ended(client: Client) -> bool:
    """The daemon closed ``client`` with 1008 "session ended" (API.md §9)."""
    await asyncio.wait_for(client.closed.wait(), 10)
    return (client.ws.close_code, client.ws.close_reason) == (1008, "session ended")


# -- finding 1: the role guard ---------------------------------------------------------

#: Callers and targets of the role-guard table (role lists).
CALLERS: dict[str, list[str]] = {
    "none": [],
    "account_write": ["ACCOUNT_WRITE"],
    "account_and_security_write": ["ACCOUNT_WRITE", "SYSTEM_SECURITY_WRITE"],
    "readonly_admin": ["READONLY_ADMIN"],
    "full_admin": ["FULL_ADMIN"],
}
TARGETS: dict[str, list[str]] = {
    "none": [],
    "account_read": ["ACCOUNT_READ"],
    "account_write": ["ACCOUNT_WRITE"],
    "security_write": ["SYSTEM_SECURITY_WRITE"],
    "full_admin": ["FULL_ADMIN"],
}
#: (caller, target) pairs where the caller holds every role of the target (API.md §3,
#: includes expanded: ACCOUNT_WRITE holds ACCOUNT_READ). Written out, not computed.
HOLDS = {
    ("account_write", "none"),
    ("account_write", "account_read"),
    ("account_write", "account_write"),
    ("account_and_security_write", "none"),
    ("account_and_security_write", "account_read"),
    ("account_and_security_write", "account_write"),
    ("account_and_security_write", "security_write"),
    ("readonly_admin", "none"),
    ("readonly_admin", "account_read"),
    ("full_admin", "none"),
    ("full_admin", "account_read"),
    ("full_admin", "account_write"),
    ("full_admin", "security_write"),
    ("full_admin", "full_admin"),
}
#: Callers with the method's role (ACCOUNT_WRITE, FULL_ADMIN includes everything).
WRITERS = {"account_write", "account_and_security_write", "full_admin"}
#: Every method that changes a user (or its sessions), with how a caller lacking the
#: method's role is refused: user.update/create/delete check the role first (EACCES),
#: the 2FA methods answer EPERM for "not yourself and not an administrator".
CHANGES = [
    "user.update.password",
    "user.update.full_name",
    "user.update.locked",
    "user.update.roles",
    "user.delete",
    "user.unset_2fa_secret",
    "user.renew_2fa_secret",
    "user.create.grant",
]


def expected(change: str, caller: str, target: str) -> str:
    """The contract's answer for ``caller`` doing ``change`` to a ``target`` user."""
    if change == "user.renew_2fa_secret":  # the user themself or FULL_ADMIN (API.md §4)
        return "ok" if caller == "full_admin" else "EPERM"
    if change == "user.unset_2fa_secret":  # themself or ACCOUNT_WRITE within the guard
        return "ok" if caller in WRITERS and (caller, target) in HOLDS else "EPERM"
    if caller not in WRITERS:
        return "EACCES"
    # Changing the target (user.update.roles also grants ACCOUNT_READ, which every writer
    # holds), or granting the target's roles to a new user (user.create.grant): the
    # caller must hold every role of the target.
    return "ok" if (caller, target) in HOLDS else "EPERM"


async def _do(c: Client, change: str, target: dict[str, Any]) -> str:
    calls: dict[str, tuple[str, list[Any]]] = {
        "user.update.password": ("user.update", [target["id"], {"password": "taken-over"}]),
        "user.update.full_name": ("user.update", [target["id"], {"full_name": "X"}]),
        "user.update.locked": ("user.update", [target["id"], {"locked": True}]),
        "user.update.roles": (
            "user.update",
            [target["id"], {"roles": [*target["roles"], "ACCOUNT_READ"]}],
        ),
        "user.delete": ("user.delete", [target["id"]]),
        "user.unset_2fa_secret": ("user.unset_2fa_secret", [target["username"]]),
        "user.renew_2fa_secret": ("user.renew_2fa_secret", [target["username"]]),
        "user.create.grant": (
            "user.create",
            [{"username": "granted", "password": "pw", "roles": target["roles"]}],
        ),
    }
    method, params = calls[change]
    try:
        await c.call(method, *params)
    except ClientError as exc:
        return str(exc.errname)
    return "ok"


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_role_guard_table(daemon: InProcessDaemon, caller: str) -> None:
    """Every method that changes a user, from callers of each role against targets of
    each role, answers the contract's cell: EPERM outside the guard, EACCES without the
    method's role, success inside; a refused change changes nothing."""
    async with daemon.admin() as admin:
        me = await admin.call(
            "user.create", {"username": "caller", "password": "pw-c", "roles": CALLERS[caller]}
        )
        assert me["roles"] == CALLERS[caller]
        for target_name, roles in TARGETS.items():
            for change in CHANGES:
                target = await admin.call(
                    "user.create", {"username": "target", "password": "pw-t", "roles": roles}
                )
                await daemon.seed_secret("target", RFC_SECRET)
                async with logged_in(daemon, "caller", "pw-c") as c:
                    outcome = await _do(c, change, target)
                cell = (change, caller, target_name)
                assert outcome == expected(change, caller, target_name), cell
                after = await admin.call("user.query", [["username", "=", "target"]])
                if outcome != "ok":
                    # Nothing changed: same roles, secret kept, not locked, old password.
                    assert after and after[0]["roles"] == roles, cell
                    assert after[0]["twofactor_auth_configured"] is True, cell
                    assert after[0]["locked"] is False, cell
                    async with logged_in(daemon, "target", "pw-t"):
                        pass
                for entry in await admin.call(
                    "user.query", [["username", "in", ["target", "granted"]]]
                ):
                    await admin.call("user.delete", entry["id"])


async def test_account_manager_cannot_take_over_a_security_admin(
    daemon: InProcessDaemon,
) -> None:
    """Finding 1: ACCOUNT_WRITE cannot set the password of, or unset the 2FA of, a
    SYSTEM_SECURITY_WRITE user, so it cannot become it and turn global 2FA off."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "manager", "pw-m", roles=["ACCOUNT_WRITE"]),
        user_asset(admin, "secadmin", "pw-s", roles=["SYSTEM_SECURITY_WRITE"]) as sec,
    ):
        await daemon.seed_secret("secadmin", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with logged_in(daemon, "manager", "pw-m") as m:
            err = await error_of(m, "user.update", sec["id"], {"password": "mine-now"})
            assert (err.code, err.errname) == (-32001, "EPERM")
            err = await error_of(m, "user.unset_2fa_secret", "secadmin")
            assert (err.code, err.errname) == (-32001, "EPERM")
            err = await error_of(m, "user.update", sec["id"], {"roles": []})
            assert err.errname == "EPERM"
            # Nor can it grant itself the role it lacks.
            me = (await m.call("auth.me"))["id"]
            err = await error_of(
                m, "user.update", me, {"roles": ["ACCOUNT_WRITE", "SYSTEM_SECURITY_WRITE"]}
            )
            assert err.errname == "EPERM"
        async with daemon.client() as c:
            assert (await c.login("secadmin", "mine-now"))["response_type"] == "AUTH_ERR"
            assert (await c.login("secadmin", "pw-s"))["response_type"] == "OTP_REQUIRED"
        assert (await admin.call("auth.twofactor.config"))["enabled"] is True


# -- finding 2: a change lands while logins are in flight -------------------------------


# Thirty concurrent attempts for one account: below the throttling threshold, which
# counts attempts in flight (API.md §3), and all hashing at once.
@pytest.mark.settings(password_verifications=64, auth_throttle_after=100)
@pytest.mark.parametrize("change", ["roles", "lock", "delete", "password"])
async def test_change_during_logins_in_flight(daemon: InProcessDaemon, change: str) -> None:
    """Thirty password logins that read the account before its roles, lock, password or
    existence changed all answer AUTH_ERR: none comes out with the old state."""
    async with daemon.admin() as admin:
        alice = await admin.call(
            "user.create",
            {"username": "alice", "password": "pw-a", "roles": ["SYSTEM_SECURITY_WRITE"]},
        )
        # A costlier hash of the same password (verify reads the cost from the hash): on a
        # slow machine the first logins must still be hashing when the thirtieth arrives,
        # or "all thirty in flight" below is never true at once (seen in CI: the default
        # cost let the first hashes finish first).
        slow = PasswordHasher(time_cost=6, memory_cost=65536, parallelism=1).hash("pw-a")
        await daemon.mw.repos.users.update(alice["id"], {"password_hash": slow})
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(daemon.client()) for _ in range(30)]
            logins = [asyncio.create_task(c.login("alice", "pw-a")) for c in clients]
            # Every login has read the row and is hashing when the change lands.
            await wait_until(lambda: daemon.mw.hashing._running >= 30, timeout=30)
            if change == "roles":
                await admin.call("user.update", alice["id"], {"roles": []})
            elif change == "lock":
                await admin.call("user.update", alice["id"], {"locked": True})
            elif change == "password":
                await admin.call("user.update", alice["id"], {"password": "new-pw"})
            else:
                await admin.call("user.delete", alice["id"])
            answers = await asyncio.gather(*logins)
            if change == "password":
                # The new password is hashed too, so some logins may finish first: those
                # sessions are then ended by the change (API.md §9).
                for c, answer in zip(clients, answers, strict=True):
                    if answer["response_type"] == "SUCCESS":
                        assert await ended(c)
                    else:
                        assert answer == {"response_type": "AUTH_ERR"}
                        assert (await error_of(c, "auth.me")).errname == "ENOTAUTHENTICATED"
            else:
                assert [a["response_type"] for a in answers] == ["AUTH_ERR"] * 30
                for c in clients:
                    err = await error_of(c, "auth.me")
                    assert err.errname == "ENOTAUTHENTICATED"
        if change in ("roles", "password"):
            password = "new-pw" if change == "password" else "pw-a"
            async with logged_in(daemon, "alice", password) as c:
                assert (await c.call("auth.me"))["roles"] == (
                    [] if change == "roles" else ["SYSTEM_SECURITY_WRITE"]
                )


@pytest.mark.parametrize("change", ["roles", "lock", "delete"])
async def test_change_ends_every_session_of_the_user(daemon: InProcessDaemon, change: str) -> None:
    """A role change, a lock or a deletion ends every session of the user at once (1008),
    so no session keeps the old roles and auth.me never shows a deleted user."""
    async with daemon.admin() as admin:
        bob = await admin.call(
            "user.create", {"username": "bob", "password": "pw-b", "roles": ["ACCOUNT_READ"]}
        )
        async with logged_in(daemon, "bob", "pw-b") as one, logged_in(daemon, "bob", "pw-b") as two:
            if change == "roles":
                await admin.call("user.update", bob["id"], {"roles": []})
            elif change == "lock":
                await admin.call("user.update", bob["id"], {"locked": True})
            else:
                await admin.call("user.delete", bob["id"])
            assert await ended(one) and await ended(two)
        if change != "delete":
            await admin.call("user.delete", bob["id"])


# -- finding 3: tokens -------------------------------------------------------------------


async def token_login(daemon: InProcessDaemon, token: str) -> dict[str, Any]:
    async with daemon.client() as c:
        resp: dict[str, Any] = await c.call(
            "auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token}
        )
        return resp


async def test_password_only_token_refused_once_2fa_applies(daemon: InProcessDaemon) -> None:
    """A token minted by a password-only session no longer logs in once global 2FA is on
    for its user with a secret (the parent's LEVEL_1 does not satisfy the user now)."""
    async with daemon.admin() as admin, user_asset(admin, "carol", "pw-c"):
        await daemon.seed_secret("carol", RFC_SECRET)
        async with logged_in(daemon, "carol", "pw-c") as c:
            token = await c.call("auth.generate_token", 600)
            assert (await token_login(daemon, token))["authenticator"] == "LEVEL_1"
            await admin.call("auth.twofactor.update", {"enabled": True})
            assert await token_login(daemon, token) == {"response_type": "AUTH_ERR"}


async def test_two_factor_token_keeps_level_2(daemon: InProcessDaemon) -> None:
    """A token minted by a password + OTP session logs in as TOKEN with LEVEL_2, and a
    token minted by that token session descends from the same login (no chain)."""
    async with daemon.admin() as admin, user_asset(admin, "dave", "pw-d"):
        await daemon.seed_secret("dave", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with logged_in(daemon, "dave", "pw-d", CODE) as c:
            first = await c.call("auth.generate_token", 600)
            async with daemon.client() as t:
                resp = await t.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": first})
                assert (resp["response_type"], resp["authenticator"]) == ("SUCCESS", "LEVEL_2")
                second = await t.call("auth.generate_token", 600)
                mine = [s for s in await t.call("auth.sessions") if s["current"]]
                assert mine[0]["credentials"] == "TOKEN"
                parent = mine[0]["credentials_data"]["parent"]
                assert parent["credentials"] == "LOGIN_TWOFACTOR"
            async with daemon.client() as t2:
                resp = await t2.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": second})
                assert resp["authenticator"] == "LEVEL_2"
                mine = [s for s in await t2.call("auth.sessions") if s["current"]]
                assert mine[0]["credentials_data"]["parent"]["credentials"] == "LOGIN_TWOFACTOR"


@pytest.mark.parametrize("change", ["password", "secret", "logout", "unset"])
async def test_tokens_end_with_the_credential(daemon: InProcessDaemon, change: str) -> None:
    """Tokens (and tokens minted by token sessions) stop logging in after a password
    change, a new or removed secret, or the logout of the session that made them."""
    async with daemon.admin() as admin, user_asset(admin, "erin", "pw-e") as erin:
        async with logged_in(daemon, "erin", "pw-e") as c:
            token = await c.call("auth.generate_token", 600)
            async with daemon.client() as t:
                await t.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token})
                nested = await t.call("auth.generate_token", 600)
                if change == "logout":
                    assert await t.call("auth.logout") is True
            if change == "password":
                await admin.call("user.update", erin["id"], {"password": "pw-new"})
            elif change == "secret":
                await admin.call("user.renew_2fa_secret", "erin")
            elif change == "unset":
                await daemon.seed_secret("erin", RFC_SECRET)  # seeding is a change too
                await admin.call("user.unset_2fa_secret", "erin")
            else:
                assert await c.call("auth.logout") is True
            assert await token_login(daemon, token) == {"response_type": "AUTH_ERR"}
            assert await token_login(daemon, nested) == {"response_type": "AUTH_ERR"}


async def test_token_bound_to_its_origin(daemon: InProcessDaemon) -> None:
    """A token with match_origin (the default) is refused from another client address;
    with match_origin=false it works from there."""
    async with daemon.admin() as admin, user_asset(admin, "fay", "pw-f"):
        async with logged_in(daemon, "fay", "pw-f") as c:
            bound = await c.call("auth.generate_token", 600)
            free = await c.call("auth.generate_token", 600, {}, False)
        async with daemon.client(local_addr=("127.0.0.2", 0)) as other:
            resp = await other.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": bound})
            assert resp == {"response_type": "AUTH_ERR"}
            resp = await other.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": free})
            assert resp["response_type"] == "SUCCESS"
        assert (await token_login(daemon, bound))["response_type"] == "SUCCESS"


async def test_reconnect_token_is_single_use(daemon: InProcessDaemon) -> None:
    """login_options.reconnect_token gives a token in the SUCCESS answer that logs in
    once, with the session's level."""
    async with daemon.admin() as admin, user_asset(admin, "gus", "pw-g"):
        async with daemon.client() as c:
            resp = await c.call(
                "auth.login_ex",
                {
                    "mechanism": "PASSWORD_PLAIN",
                    "username": "gus",
                    "password": "pw-g",
                    "login_options": {"reconnect_token": True},
                },
            )
            token = resp["reconnect_token"]
            assert isinstance(token, str) and len(token) >= 32
        assert (await token_login(daemon, token))["response_type"] == "SUCCESS"
        assert await token_login(daemon, token) == {"response_type": "AUTH_ERR"}


async def test_generate_token_ttl_bounds(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """ttl null means 600 s; ttl outside 10..86400 is -32602 on the ttl attribute."""
    async with daemon.admin() as admin, user_asset(admin, "hal", "pw-h"):
        async with logged_in(daemon, "hal", "pw-h") as c:
            token = await c.call("auth.generate_token", None)
            for bad in (0, 9, 86401):
                err = await error_of(c, "auth.generate_token", bad)
                assert err.code == -32602
                assert [e[0] for e in err.extra] == ["ttl"]
            clock.advance(599)
            assert (await token_login(daemon, token))["response_type"] == "SUCCESS"
            clock.advance(2)
            assert await token_login(daemon, token) == {"response_type": "AUTH_ERR"}


# -- finding 8 (first half): the pending OTP step ----------------------------------------


async def otp_call(c: Client, code: str) -> Any:
    return await c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": code})


@pytest.mark.parametrize("change", ["password", "secret", "roles", "lock"])
async def test_pending_otp_step_dropped_by_a_change(daemon: InProcessDaemon, change: str) -> None:
    """A password step waiting for its code is dropped when the user's password, secret,
    roles or lock change: the right code then gets EINVAL "no authentication in progress"."""
    async with daemon.admin() as admin, user_asset(admin, "ida", "pw-i") as ida:
        await daemon.seed_secret("ida", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as c:
            assert (await c.login("ida", "pw-i"))["response_type"] == "OTP_REQUIRED"
            if change == "password":
                await admin.call("user.update", ida["id"], {"password": "pw-new"})
            elif change == "secret":
                await daemon.seed_secret("ida", RFC_SECRET)  # same seed, new generation
            elif change == "roles":
                await admin.call("user.update", ida["id"], {"roles": ["ACCOUNT_READ"]})
            else:
                await admin.call("user.update", ida["id"], {"locked": True})
            err = await error_of(
                c, "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": CODE}
            )
            assert (err.code, err.errname) == (-32001, "EINVAL")
            assert err.reason == "OTP_TOKEN: no authentication in progress"
            await error_of(c, "auth.me")


async def test_pending_otp_step_expires(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """A pending OTP step expires 5 minutes after its password step."""
    async with daemon.admin() as admin, user_asset(admin, "jo", "pw-j"):
        await daemon.seed_secret("jo", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as c:
            assert (await c.login("jo", "pw-j"))["response_type"] == "OTP_REQUIRED"
            clock.advance(301)
            err = await error_of(
                c, "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": code_at(clock)}
            )
            assert err.errname == "EINVAL"
        async with daemon.client() as c:
            assert (await c.login("jo", "pw-j"))["response_type"] == "OTP_REQUIRED"
            clock.advance(290)
            resp = await otp_call(c, code_at(clock))
            assert (resp["response_type"], resp["authenticator"]) == ("SUCCESS", "LEVEL_2")


async def test_otp_required_echoes_the_name_as_sent(daemon: InProcessDaemon) -> None:
    """OTP_REQUIRED.username is the name as the client sent it (TrueNAS does so)."""
    async with daemon.admin() as admin, user_asset(admin, "kim", "pw-k"):
        await daemon.seed_secret("kim", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        async with daemon.client() as c:
            resp = await c.login("kim", "pw-k")
            assert resp == {"response_type": "OTP_REQUIRED", "username": "kim"}


# -- §9: sessions ----------------------------------------------------------------------


async def test_sessions_list_own_or_all(daemon: InProcessDaemon) -> None:
    """auth.sessions shows a user their own sessions (current marked) and AUTH_SESSIONS_READ
    every session, in TrueNAS's shape."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "lee", "pw-l"),
        user_asset(admin, "mon", "pw-m", roles=["AUTH_SESSIONS_READ"]),
    ):
        async with logged_in(daemon, "lee", "pw-l") as lee, logged_in(daemon, "mon", "pw-m") as mon:
            mine = await lee.call("auth.sessions")
            assert [s["credentials_data"]["username"] for s in mine] == ["lee"]
            entry = mine[0]
            assert entry["current"] is True and entry["internal"] is False
            assert entry["credentials"] == "LOGIN_PASSWORD"
            assert entry["origin"].startswith("127.0.0.1:")
            assert entry["secure_transport"] is False
            assert set(entry["created_at"]) == {"$date"}
            assert set(entry["credentials_data"]["login_at"]) == {"$date"}
            names = sorted(
                s["credentials_data"]["username"] for s in await mon.call("auth.sessions")
            )
            assert names == ["admin", "lee", "mon"]


async def test_terminate_session(daemon: InProcessDaemon) -> None:
    """A user ends one of their own sessions (closed 1008, its tokens withdrawn); another
    user's session id is unknown to them (false); AUTH_SESSIONS_WRITE ends sessions only of
    users whose roles it holds (EPERM otherwise)."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "ned", "pw-n"),
        user_asset(admin, "ops", "pw-o", roles=["AUTH_SESSIONS_WRITE"]),
    ):
        async with (
            logged_in(daemon, "ned", "pw-n") as one,
            logged_in(daemon, "ned", "pw-n") as two,
            logged_in(daemon, "ops", "pw-o") as ops,
        ):
            token = await two.call("auth.generate_token", 600)
            other = [s for s in await one.call("auth.sessions") if not s["current"]][0]["id"]
            admin_session = [s for s in await admin.call("auth.sessions") if s["current"]][0]["id"]
            assert await one.call("auth.terminate_session", admin_session) is False
            assert await one.call("auth.terminate_session", "no-such-session") is False
            assert await one.call("auth.terminate_session", other) is True
            assert await ended(two)
            assert await token_login(daemon, token) == {"response_type": "AUTH_ERR"}
            err = await error_of(ops, "auth.terminate_session", admin_session)
            assert err.errname == "EPERM"
            ned_session = [s for s in await one.call("auth.sessions")][0]["id"]
            assert await ops.call("auth.terminate_session", ned_session) is True
            assert await ended(one)
        assert await admin.call("core.ping") == "pong"


async def test_terminate_other_sessions(daemon: InProcessDaemon) -> None:
    """auth.terminate_other_sessions ends every other session of the caller's user and
    keeps the caller's."""
    async with daemon.admin() as admin, user_asset(admin, "ola", "pw-o"):
        async with (
            logged_in(daemon, "ola", "pw-o") as one,
            logged_in(daemon, "ola", "pw-o") as two,
            logged_in(daemon, "ola", "pw-o") as three,
        ):
            assert await one.call("auth.terminate_other_sessions") is True
            assert await ended(two) and await ended(three)
            assert (await one.call("auth.me"))["pw_name"] == "ola"
        assert await admin.call("core.ping") == "pong"


async def test_own_password_change_keeps_this_session_only(daemon: InProcessDaemon) -> None:
    """Changing one's own password ends one's other sessions and tokens, not this one."""
    async with daemon.admin() as admin, user_asset(admin, "pat", "pw-p") as pat:
        async with logged_in(daemon, "pat", "pw-p") as one, logged_in(daemon, "pat", "pw-p") as two:
            token = await one.call("auth.generate_token", 600)
            await one.call("user.update", pat["id"], {"password": "pw-new"})
            assert await ended(two)
            assert (await one.call("auth.me"))["pw_name"] == "pat"
            assert await token_login(daemon, token) == {"response_type": "AUTH_ERR"}


async def test_sessions_events(daemon: InProcessDaemon) -> None:
    """auth.sessions events: added when a session logs in, removed when it ends; a user
    without AUTH_SESSIONS_READ sees only their own."""
    async with daemon.admin() as admin, user_asset(admin, "quin", "pw-q"):
        await admin.call("core.subscribe", "auth.sessions")
        async with logged_in(daemon, "quin", "pw-q") as q:
            await q.call("core.subscribe", "auth.sessions")
            added = await asyncio.wait_for(admin.events.get(), 10)
            assert added["params"]["msg"] == "added"
            assert added["params"]["fields"]["credentials_data"]["username"] == "quin"
            async with logged_in(daemon, "admin", "admin-test-password"):
                pass  # another user's session: quin must not see it
            async with logged_in(daemon, "quin", "pw-q"):
                pass
            seen = [await asyncio.wait_for(q.events.get(), 10) for _ in range(2)]
            assert [e["params"]["msg"] for e in seen] == ["added", "removed"]
            assert {e["params"]["fields"]["credentials_data"]["username"] for e in seen} == {"quin"}


async def test_stolen_level_1_credential_cannot_read_the_second_factor(
    daemon: InProcessDaemon,
) -> None:
    """A LEVEL_1 session of a user to whom 2FA applies (a password-only token from before
    2FA was turned on) cannot read or replace the second factor: EACCES."""
    async with daemon.admin() as admin, user_asset(admin, "ray", "pw-r"):
        await daemon.seed_secret("ray", RFC_SECRET)
        async with logged_in(daemon, "ray", "pw-r") as c:
            await admin.call("auth.twofactor.update", {"enabled": True})
            for method, params in (
                ("user.provisioning_uri", ["ray"]),
                ("user.twofactor_qr", ["ray"]),
                ("user.twofactor_config", ["ray"]),
                ("user.renew_2fa_secret", ["ray"]),
                ("user.unset_2fa_secret", ["ray"]),
                ("user.verify_twofactor_token", ["ray", CODE]),
            ):
                err = await error_of(c, method, *params)
                assert (err.errname, err.reason) == (
                    "EACCES",
                    "This needs a session that used two-factor authentication",
                ), method
        async with logged_in(daemon, "ray", "pw-r", CODE) as c:
            assert (await c.call("user.twofactor_config", "ray"))["secret_configured"] is True


async def test_audit_entries_carry_the_session(daemon: InProcessDaemon) -> None:
    """Audit entries carry the id of the session that made them and its credentials
    (API.md §9), so an action can be tied to a session from auth.sessions."""
    async with daemon.admin() as admin, user_asset(admin, "sam", "pw-s"):
        async with logged_in(daemon, "sam", "pw-s") as sam:
            mine = [s for s in await sam.call("auth.sessions") if s["current"]][0]["id"]
            await sam.call("auth.logout")
        entries = await admin.call("audit.query", {"query-filters": [["session", "=", mine]]})
        described = [
            (e["event_data"]["description"], e["event_data"].get("credentials")) for e in entries
        ]
        assert ("password login", "LOGIN_PASSWORD") in described
        assert ("logout", "LOGIN_PASSWORD") in described
        assert all(e["username"] == "sam" for e in entries)


async def test_a_call_that_ends_its_own_session_gets_its_reply_first(
    daemon: InProcessDaemon,
) -> None:
    """A user who takes roles from themselves ends their own session (API.md §9); the
    call's reply still arrives, then the close 1008 "session ended" (the close waits for
    the replies of the calls in flight, and nothing sent after it is handled)."""
    async with daemon.root() as root:
        bob = await root.call(
            "user.create", {"username": "bob", "password": "pw-bob", "roles": ["FULL_ADMIN"]}
        )
    async with daemon.client() as c:
        assert (await c.login("bob", "pw-bob"))["response_type"] == "SUCCESS"
        entry = await c.call("user.update", bob["id"], {"roles": ["ACCOUNT_READ"]})
        assert entry["roles"] == ["ACCOUNT_READ"]
        assert await ended(c)
