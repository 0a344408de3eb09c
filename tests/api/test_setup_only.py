"""One-time passwords (API.md §10), ``enforce`` (§4) and the setup-only sessions both give:
every refusal is tried on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pyotp
import pytest
from websockets.exceptions import ConnectionClosed

from middlewared_2fa.cli.client import Client, ClientError, open_client
from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import ADMIN_PASSWORD, InProcessDaemon
from tests.helpers.outside import parse_otpauth
from tests.helpers.rfc import RFC_SECRET

OTPW = re.compile(r"[1-9][0-9]*_[a-z2-7]{6}-[a-z2-7]{6}-[a-z2-7]{6}-[a-z2-7]{6}")
SETUP_MESSAGE = "Two-factor authentication must be set up first"
#: What a setup-only session may call (API.md §4), besides the methods of no session.
SETUP_CALLS = {
    "auth.me",
    "auth.logout",
    "core.get_methods",
    "core.ping",
    "core.set_options",
    "core.subscribe",
    "core.unsubscribe",
    "user.twofactor_enroll",
    "user.twofactor_confirm",
    "user.twofactor_qr",
    "user.twofactor_recovery_codes",
    "user.webauthn_register_begin",
    "user.webauthn_register_finish",
    "user.update",
    "auth.login_ex",
    "auth.login_ex_continue",
    "auth.login",
    "auth.login_with_api_key",
    "auth.mechanism_choices",
    "auth.last_code_refusal",
}


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as exits:
        yield exits


async def connect(stack: contextlib.AsyncExitStack, daemon: InProcessDaemon) -> Client:
    client: Client = await stack.enter_async_context(open_client(daemon.url))
    return client


async def password_login(client: Client, name: str, password: str, **options: Any) -> dict:
    answer: dict = await client.call(
        "auth.login_ex",
        {
            "mechanism": "PASSWORD_PLAIN",
            "username": name,
            "password": password,
            "login_options": {"reconnect_token": True, **options},
        },
    )
    return answer


def code(secret: str, clock: FrozenClock) -> str:
    return pyotp.TOTP(secret).at(clock.time())


# -- one-time passwords ------------------------------------------------------------------


async def test_a_onetime_password_works_once_within_24_hours_across_a_restart(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """Made by an administrator, stored hashed; after a restart and 24 h minus a second
    it logs in once to a setup-only LOGIN_ONETIME_PASSWORD session without a reconnect
    token; a second use, and one used after 24 h, are AUTH_ERR."""
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "lost", "password": "pw-lost"})
        await daemon.seed_secret("lost", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        otpw = await admin.call("auth.generate_onetime_password", {"username": "lost"})
    assert OTPW.fullmatch(otpw), otpw
    db = daemon.settings.database_path
    stored = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    assert otpw.split("_")[1].encode() not in stored
    await daemon.restart()
    clock.advance(24 * 3600 - 1)
    c = await connect(stack, daemon)
    done = await password_login(c, "lost", otpw)
    assert done["response_type"] == "SUCCESS"  # no OTP step: the phone is lost
    assert done["authenticator"] == "LEVEL_1"
    assert done["reconnect_token"] is None
    me = done["user_info"]
    assert me["credentials"] == "LOGIN_ONETIME_PASSWORD"
    assert {"OTPW", "PASSWORD_CHANGE_REQUIRED", "SETUP_ONLY"} <= set(me["account_attributes"])
    async with daemon.client() as again:
        assert (await password_login(again, "lost", otpw)) == {"response_type": "AUTH_ERR"}

    async with daemon.admin() as admin:
        late = await admin.call("auth.generate_onetime_password", {"username": "lost"})
    clock.advance(24 * 3600 + 1)
    async with daemon.client() as c2:
        assert (await password_login(c2, "lost", late)) == {"response_type": "AUTH_ERR"}


async def test_a_new_onetime_password_voids_the_previous_one(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "lost", "password": "pw-lost"})
        first = await admin.call("auth.generate_onetime_password", {"username": "lost"})
        second = await admin.call("auth.generate_onetime_password", {"username": "lost"})
    async with daemon.client() as c:
        assert (await password_login(c, "lost", first)) == {"response_type": "AUTH_ERR"}
    async with daemon.client() as c:
        assert (await password_login(c, "lost", second))["response_type"] == "SUCCESS"


async def test_a_onetime_password_is_bound_to_its_user(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        for name in ("lost", "bystander"):
            await admin.call("user.create", {"username": name, "password": "pw-" + name})
        otpw = await admin.call("auth.generate_onetime_password", {"username": "lost"})
    async with daemon.client() as c:
        assert (await password_login(c, "bystander", otpw)) == {"response_type": "AUTH_ERR"}
    async with daemon.client() as c:
        assert (await password_login(c, "lost", otpw))["response_type"] == "SUCCESS"


async def test_generate_onetime_password_refusals(daemon: InProcessDaemon) -> None:
    """Unknown or locked user: -32602 on auth.generate_onetime_password.username; outside
    the role guard: EPERM; the audit entry names the user, never the password."""
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "locked", "password": "p", "locked": True})
        await admin.call(
            "user.create", {"username": "boss", "password": "p", "roles": ["FULL_ADMIN"]}
        )
        await admin.call(
            "user.create", {"username": "mgr", "password": "pw-mgr", "roles": ["ACCOUNT_WRITE"]}
        )
        for name in ("nobody", "locked"):
            with pytest.raises(ClientError) as err:
                await admin.call("auth.generate_onetime_password", {"username": name})
            assert err.value.code == -32602
            assert err.value.extra[0][0] == "auth.generate_onetime_password.username"
        otpw = await admin.call("auth.generate_onetime_password", {"username": "mgr"})
        entries = await admin.call(
            "audit.query", {"query-filters": [["event", "=", "METHOD_CALL"]]}
        )
        descriptions = [e["event_data"]["description"] for e in entries]
        assert "Generate onetime password for user 'mgr'" in descriptions
        assert not any(otpw in str(e) for e in entries)
    async with daemon.client() as mgr:
        await mgr.login("mgr", "pw-mgr")
        with pytest.raises(ClientError) as err:
            await mgr.call("auth.generate_onetime_password", {"username": "boss"})
        assert err.value.errname == "EPERM"


async def test_the_user_sets_a_new_password_and_secret_in_the_setup_session(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """In the one-time-password session: a new password (PASSWORD_CHANGE_REQUIRED goes,
    SETUP_ONLY stays), then enrol + confirm: the same session is LOGIN_TWOFACTOR,
    LEVEL_2 and may call everything its roles allow; the new factors log in."""
    async with daemon.admin() as admin:
        user = await admin.call(
            "user.create", {"username": "lost", "password": "old-pw", "roles": ["ACCOUNT_READ"]}
        )
        await daemon.seed_secret("lost", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
        otpw = await admin.call("auth.generate_onetime_password", {"username": "lost"})
    c = await connect(stack, daemon)
    assert (await password_login(c, "lost", otpw))["response_type"] == "SUCCESS"
    with pytest.raises(ClientError) as err:
        await c.call("user.query")
    assert (err.value.errname, err.value.reason) == ("EACCES", SETUP_MESSAGE)
    await c.call("user.update", user["id"], {"password": "new-pw"})
    attributes = (await c.call("auth.me"))["account_attributes"]
    assert "PASSWORD_CHANGE_REQUIRED" not in attributes and "SETUP_ONLY" in attributes
    # The active (lost) secret is not shown to this session; it stages a new one.
    with pytest.raises(ClientError) as err:
        await c.call("user.twofactor_qr", "lost")
    assert err.value.errname == "EACCES"
    secret = parse_otpauth(
        (await c.call("user.twofactor_enroll", "lost"))["provisioning_uri"]
    ).secret
    await c.call("user.twofactor_qr", "lost", {"pending": True})
    await c.call("user.twofactor_confirm", "lost", code(secret, clock))
    me = await c.call("auth.me")
    assert me["credentials"] == "LOGIN_TWOFACTOR"
    assert "SETUP_ONLY" not in me["account_attributes"]
    assert len(await c.call("user.query")) >= 2  # ACCOUNT_READ works now
    clock.advance(30)
    async with daemon.client() as fresh:
        assert (await fresh.login("lost", "old-pw")) == {"response_type": "AUTH_ERR"}
    async with daemon.client() as fresh:
        done = await fresh.login("lost", "new-pw", code(secret, clock))
        assert done["response_type"] == "SUCCESS" and done["authenticator"] == "LEVEL_2"


# -- the setup-only gate -------------------------------------------------------------


def sample_params(method: str, own_id: int) -> list[Any]:
    """Parameters that get past schema validation for the setup calls tried below."""
    return {
        "user.update": [own_id, {"password": "another-pw"}],
        "user.twofactor_enroll": ["lost"],
        "user.twofactor_qr": ["lost", {"pending": True}],
        "user.twofactor_confirm": ["lost", "000000"],
        "user.twofactor_recovery_codes": ["lost"],
        "user.webauthn_register_begin": ["lost", {"name": "laptop"}],
        "user.webauthn_register_finish": ["lost", {}],
        "core.subscribe": ["user.query"],
        "core.unsubscribe": ["nothing"],
        "core.set_options": [{}],
    }.get(method, [])


async def test_a_setup_only_session_may_call_exactly_the_setup_calls(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    """Every registered method is called from a setup-only session of a FULL_ADMIN: each
    one outside API.md §4's list answers EACCES "Two-factor authentication must be set
    up first" (before the roles are looked at), each one on it does not; get_methods
    lists exactly the list. Setup calls that name another user are refused too."""
    async with daemon.root() as root:
        every = set(await root.call("core.get_methods"))
        admin_id = (await root.call("user.query", [["username", "=", "admin"]], {"get": True}))[
            "id"
        ]
        lost = await root.call(
            "user.create", {"username": "lost", "password": "pw", "roles": ["FULL_ADMIN"]}
        )
        otpw = await root.call("auth.generate_onetime_password", {"username": "lost"})
    c = await connect(stack, daemon)
    assert (await password_login(c, "lost", otpw))["response_type"] == "SUCCESS"
    listed = set(await c.call("core.get_methods"))
    assert listed == SETUP_CALLS & every
    outcomes: dict[str, str] = {}
    for method in sorted(every - {"auth.logout", "auth.login_ex", "auth.login"}):
        try:
            await c.call(method, *sample_params(method, lost["id"]))
            outcomes[method] = "ok"
        except ClientError as exc:
            outcomes[method] = exc.reason if exc.errname == "EACCES" else str(exc.errname)
    refused = {m for m, outcome in outcomes.items() if outcome == SETUP_MESSAGE}
    assert refused == every - SETUP_CALLS, outcomes
    # Within the setup calls: only its own account, and only the password of it.
    for method, params in [
        ("user.update", [lost["id"], {"full_name": "x"}]),
        ("user.update", [lost["id"], {"password": "p", "roles": []}]),
        ("user.update", [admin_id, {"password": "taken-over"}]),
        ("user.twofactor_enroll", ["admin"]),
        ("user.twofactor_qr", ["admin", {"pending": True}]),
        ("user.twofactor_recovery_codes", ["admin"]),
        ("user.webauthn_register_begin", ["admin", {"name": "x"}]),
        ("user.webauthn_register_finish", ["admin", {}]),
    ]:
        with pytest.raises(ClientError) as err:
            await c.call(method, *params)
        assert (err.value.errname, err.value.reason) == ("EACCES", SETUP_MESSAGE), method
    with pytest.raises(ClientError) as err:
        await c.call("auth.generate_token")
    assert err.value.reason == SETUP_MESSAGE
    assert await c.call("auth.logout") is True


# -- enforce -----------------------------------------------------------------------------


async def test_enforce_needs_a_two_factor_session_and_enabled(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    """Turning enforce on from a LEVEL_1 session is -32602 on auth_twofactor_update.enforce;
    without enabled too; enabled cannot go off alone while enforced; the Unix socket can
    turn it on, and off (both in one call)."""
    async with daemon.admin() as admin:
        await admin.call("auth.twofactor.update", {"enabled": True})
        with pytest.raises(ClientError) as err:
            await admin.call("auth.twofactor.update", {"enforce": True})
        assert err.value.code == -32602
        assert err.value.extra[0][0] == "auth_twofactor_update.enforce"
        assert "two factors" in err.value.extra[0][1]
        assert (await admin.call("auth.twofactor.config"))["enforce"] is False
    async with daemon.root() as root:
        with pytest.raises(ClientError) as err:
            await root.call("auth.twofactor.update", {"enabled": False, "enforce": True})
        assert err.value.extra[0][0] == "auth_twofactor_update.enforce"
        assert (await root.call("auth.twofactor.update", {"enforce": True}))["enforce"] is True
        with pytest.raises(ClientError) as err:
            await root.call("auth.twofactor.update", {"enabled": False})
        assert err.value.extra[0][0] == "auth_twofactor_update.enabled"
        off = await root.call("auth.twofactor.update", {"enabled": False, "enforce": False})
        assert (off["enabled"], off["enforce"]) == (False, False)


async def test_enforce_gives_password_only_users_setup_sessions(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """With enforce on: a user without a secret gets SUCCESS with SETUP_ONLY (no reconnect
    token), is refused everything else, and after confirm the same session is LEVEL_2;
    a user with a secret still gets the OTP step; even the admin is setup-only, and root
    on the Unix socket can always turn enforce off."""
    async with daemon.root() as root:
        await root.call("auth.twofactor.update", {"enabled": True})
        await root.call("user.create", {"username": "plain", "password": "pw-plain"})
        await root.call("user.create", {"username": "ready", "password": "pw-ready"})
        await daemon.seed_secret("ready", RFC_SECRET)
        await root.call("auth.twofactor.update", {"enforce": True})
    c = await connect(stack, daemon)
    done = await password_login(c, "plain", "pw-plain")
    assert done["response_type"] == "SUCCESS" and done["reconnect_token"] is None
    assert done["user_info"]["credentials"] == "LOGIN_PASSWORD"
    assert "SETUP_ONLY" in done["user_info"]["account_attributes"]
    with pytest.raises(ClientError) as err:
        await c.call("auth.sessions")
    assert err.value.reason == SETUP_MESSAGE
    secret = parse_otpauth(
        (await c.call("user.twofactor_enroll", "plain"))["provisioning_uri"]
    ).secret
    await c.call("user.twofactor_confirm", "plain", code(secret, clock))
    me = await c.call("auth.me")
    assert me["credentials"] == "LOGIN_TWOFACTOR" and "SETUP_ONLY" not in me["account_attributes"]
    assert len(await c.call("auth.sessions")) == 1
    async with daemon.client() as r:
        assert (await password_login(r, "ready", "pw-ready"))["response_type"] == "OTP_REQUIRED"
    async with daemon.client() as admin:
        first = await password_login(admin, "admin", ADMIN_PASSWORD)
        assert "SETUP_ONLY" in first["user_info"]["account_attributes"]
        with pytest.raises(ClientError) as err:
            await admin.call("auth.twofactor.update", {"enabled": False, "enforce": False})
        assert err.value.reason == SETUP_MESSAGE
    async with daemon.root() as root:
        off = await root.call("auth.twofactor.update", {"enforce": False})
        assert off["enforce"] is False
    async with daemon.client() as admin:
        again = await password_login(admin, "admin", ADMIN_PASSWORD)
        assert "SETUP_ONLY" not in again["user_info"]["account_attributes"]


async def test_turning_enforce_on_ends_password_only_sessions(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    """Sessions that used one factor end (1008) when enforce comes on, and their tokens
    no longer log in; the two-factor session that turned it on stays."""
    async with daemon.admin() as admin:
        await admin.call("auth.twofactor.update", {"enabled": True})
        await admin.call("user.create", {"username": "plain", "password": "pw-plain"})
    plain = await connect(stack, daemon)
    assert (await password_login(plain, "plain", "pw-plain"))["response_type"] == "SUCCESS"
    token = await plain.call("auth.generate_token", 600, {}, False)
    keeper = await stack.enter_async_context(open_client(daemon.unix_uri))
    await keeper.call("auth.twofactor.update", {"enforce": True})
    with pytest.raises((ConnectionClosed, ClientError, ConnectionError, OSError)):
        await plain.call("auth.me", timeout=10)
    async with daemon.client() as c:
        answer = await c.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token})
        assert answer == {"response_type": "AUTH_ERR"}
    assert (await keeper.call("auth.me"))["credentials"] == "UNIX_SOCKET"


async def test_a_setup_only_administrator_receives_only_their_own_events(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    """core.subscribe is a setup call, but the session holds no roles until a second
    factor is set up: a FULL_ADMIN in a one-time-password session cannot subscribe to
    alerts or sessions of others, and its user.query subscription carries only its own
    entry (another user's creation is not seen, its own password change is)."""
    async with daemon.root() as root:
        lost = await root.call(
            "user.create", {"username": "lost", "password": "pw", "roles": ["FULL_ADMIN"]}
        )
        otpw = await root.call("auth.generate_onetime_password", {"username": "lost"})
        c = await connect(stack, daemon)
        assert (await password_login(c, "lost", otpw))["response_type"] == "SUCCESS"
        for event in ("alert.list", "auth.twofactor.config"):
            with pytest.raises(ClientError) as err:
                await c.call("core.subscribe", event)
            assert err.value.errname == "EACCES", event
        await c.call("core.subscribe", "user.query")
        await root.call("user.create", {"username": "unseen", "password": "pw"})
        await c.call("user.update", lost["id"], {"password": "mine-now"})
        event = await asyncio.wait_for(c.events.get(), 10)
        assert (event["params"]["msg"], event["params"]["id"]) == ("changed", lost["id"])
        assert c.events.empty()


async def test_one_onetime_password_two_connections_one_login(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "lost", "password": "pw-lost"})
        otpw = await admin.call("auth.generate_onetime_password", {"username": "lost"})
    async with daemon.client() as a, daemon.client() as b:
        answers = await asyncio.gather(*(password_login(c, "lost", otpw) for c in (a, b)))
    assert sorted(x["response_type"] for x in answers) == ["AUTH_ERR", "SUCCESS"]


@pytest.mark.settings(auth_failure_delay=0)
@pytest.mark.parametrize("row_id", ["9223372036854775808", "999999999999999999"])
async def test_a_onetime_password_shaped_guess_is_a_wrong_password(
    daemon: InProcessDaemon, row_id: str
) -> None:
    """A password shaped like a one-time password with a huge or unknown id is a wrong
    password (counted against the account), never -32603: an internal error would tell
    which accounts exist (an unknown name gets AUTH_ERR)."""
    guess = f"{row_id}_aaaaaa-aaaaaa-aaaaaa-aaaaaa"
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "real", "password": "pw-real"})
    for name in ("real", "nobody"):
        async with daemon.client() as c:
            assert await password_login(c, name, guess) == {"response_type": "AUTH_ERR"}
    user = await daemon.mw.repos.users.get_by_name("real")
    assert user is not None
    assert daemon.mw.services["auth"].throttle.failures(user.id) == 1  # type: ignore[attr-defined]


async def test_unsetting_the_own_secret_under_enforce_leaves_a_setup_only_session(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """A LEVEL_2 user who removes their own secret while enforce is on keeps only a
    setup-only session (found in the new-user trial: the session stayed full)."""
    async with daemon.root() as root:
        await root.call("auth.twofactor.update", {"enabled": True})
        await root.call(
            "user.create", {"username": "carol", "password": "pw-carol", "roles": ["ACCOUNT_READ"]}
        )
        await daemon.seed_secret("carol", RFC_SECRET)
        await root.call("auth.twofactor.update", {"enforce": True})
    c = await connect(stack, daemon)
    assert (await c.login("carol", "pw-carol", code(RFC_SECRET, clock)))["response_type"] == (
        "SUCCESS"
    )
    assert len(await c.call("user.query")) >= 2
    await c.call("user.unset_2fa_secret", "carol")
    me = await c.call("auth.me")
    assert me["credentials"] == "LOGIN_PASSWORD" and "SETUP_ONLY" in me["account_attributes"]
    with pytest.raises(ClientError) as err:
        await c.call("user.query")
    assert err.value.reason == SETUP_MESSAGE
    secret = parse_otpauth(
        (await c.call("user.twofactor_enroll", "carol"))["provisioning_uri"]
    ).secret
    clock.advance(30)
    await c.call("user.twofactor_confirm", "carol", code(secret, clock))
    assert len(await c.call("user.query")) >= 2
