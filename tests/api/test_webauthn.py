"""Passkeys (WebAuthn) as a second factor, on the wire (API.md §12): registration, the
``webauthn`` options of OTP_REQUIRED, the ``WEBAUTHN`` mechanism, and every refusal an
attacker can try with a software authenticator (tests/helpers/authenticator.py) playing
the browser and its security key."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pyotp
import pytest
from websockets.exceptions import ConnectionClosed

from middlewared_2fa.cli.client import Client, ClientError, ConnectError, open_client
from middlewared_2fa.clock import FrozenClock
from middlewared_2fa.config import load_settings, plugin_settings
from middlewared_2fa.errors import StartupError
from tests.helpers.authenticator import SoftAuthenticator, b64url, unb64url
from tests.helpers.daemon import InProcessDaemon, wait_until
from tests.helpers.plugins import load_plugin
from tests.helpers.rfc import RFC_SECRET

PASSWORD = "pw-passkey-user"


def origin(daemon: InProcessDaemon) -> str:
    return f"http://localhost:{daemon.daemon.port}"  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def logged_in(daemon: InProcessDaemon, name: str) -> AsyncIterator[Client]:
    """A client of ``name`` after the password step only (2FA must not apply yet)."""
    async with daemon.client() as c:
        answer = await c.login(name, PASSWORD)
        assert answer["response_type"] == "SUCCESS", answer
        yield c


async def make_user(admin: Client, name: str, *, enable: bool = True) -> None:
    if enable:
        await admin.call("auth.twofactor.update", {"enabled": True})
    await admin.call("user.create", {"username": name, "password": PASSWORD})


async def register(
    daemon: InProcessDaemon, client: Client, name: str, key: SoftAuthenticator, label: str = "key"
) -> dict[str, Any]:
    begun = await client.call("user.webauthn_register_begin", name, {"name": label})
    answer: dict[str, Any] = await client.call(
        "user.webauthn_register_finish",
        name,
        key.register(begun["options"], origin=origin(daemon)),
    )
    return answer


async def password_step(client: Client, name: str) -> dict[str, Any]:
    answer: dict[str, Any] = await client.call(
        "auth.login_ex",
        {"mechanism": "PASSWORD_PLAIN", "username": name, "password": PASSWORD},
    )
    assert answer["response_type"] == "OTP_REQUIRED", answer
    return answer


async def passkey_step(client: Client, credential: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await client.call(
        "auth.login_ex_continue", {"mechanism": "WEBAUTHN", "credential": credential}
    )
    return answer


async def user_with_passkey(
    daemon: InProcessDaemon, admin: Client, name: str, key: SoftAuthenticator
) -> None:
    await make_user(admin, name)
    async with logged_in(daemon, name) as c:
        await register(daemon, c, name, key)


async def test_register_then_log_in_with_the_passkey_at_level_2(
    daemon: InProcessDaemon,
) -> None:
    """The creation options are the contract's; the finished registration is a
    PasskeyEntry, upgrades the registering session to LEVEL_2, and makes 2FA apply: the
    next password step answers OTP_REQUIRED with request options naming the credential,
    and the assertion logs in as LOGIN_TWOFACTOR / LEVEL_2 / second_factor WEBAUTHN."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await make_user(admin, "pk")
        async with logged_in(daemon, "pk") as c:
            before = await c.call("auth.me")
            assert before["credentials"] == "LOGIN_PASSWORD"
            assert before["two_factor_config"]["setup_required"] is True
            begun = await c.call("user.webauthn_register_begin", "pk", {"name": "YubiKey 5"})
            options = begun["options"]
            assert options["rp"] == {"id": "localhost", "name": "middlewared-2fa"}
            assert options["user"]["name"] == "pk"
            assert len(base64.urlsafe_b64decode(options["user"]["id"] + "==")) == 32
            assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
            assert options["authenticatorSelection"]["userVerification"] == "preferred"
            assert options["authenticatorSelection"]["residentKey"] == "preferred"
            assert options["attestation"] == "none"
            assert options["excludeCredentials"] == []
            assert options["timeout"] == 300_000
            assert len(base64.urlsafe_b64decode(options["challenge"] + "==")) == 32
            created = await c.call(
                "user.webauthn_register_finish",
                "pk",
                key.register(options, origin=origin(daemon)),
            )
            assert created["credential_id"] == b64url(key.credential_id)
            assert created["name"] == "YubiKey 5"
            assert created["last_used_at"] is None
            assert set(created) == {"id", "credential_id", "name", "created_at", "last_used_at"}
            me = await c.call("auth.me")
            assert me["credentials"] == "LOGIN_TWOFACTOR"
            assert "2FA" in me["account_attributes"]
            assert me["two_factor_config"]["setup_required"] is False
            assert me["two_factor_config"]["secret_configured"] is False  # TOTP only
            again = await c.call("user.webauthn_register_begin", "pk", {"name": "second"})
            assert again["options"]["excludeCredentials"] == [
                {"type": "public-key", "id": b64url(key.credential_id), "transports": ["usb"]}
            ]
        [entry] = await admin.call("user.query", [["username", "=", "pk"]])
        assert entry["twofactor_auth_configured"] is True
    async with daemon.client() as c:
        first = await password_step(c, "pk")
        request = first["webauthn"]["options"]
        assert request["rpId"] == "localhost"
        assert request["allowCredentials"] == [
            {"type": "public-key", "id": b64url(key.credential_id), "transports": ["usb"]}
        ]
        assert request["userVerification"] == "preferred"
        answer = await passkey_step(c, key.assertion(request, origin=origin(daemon)))
        assert answer["response_type"] == "SUCCESS", answer
        assert answer["authenticator"] == "LEVEL_2"
        assert answer["user_info"]["credentials"] == "LOGIN_TWOFACTOR"
        [mine] = [s for s in await c.call("auth.sessions") if s["current"]]
        assert mine["credentials_data"]["second_factor"] == "WEBAUTHN"
        [listed] = await c.call("user.webauthn_list", "pk")
        assert listed["last_used_at"] is not None
    async with daemon.admin() as admin:
        entries = await admin.call(
            "audit.query", {"query-filters": [["username", "=", "pk"], ["success", "=", True]]}
        )
    descriptions = [e["event_data"]["description"] for e in entries]
    assert descriptions.count(f"password and passkey login (passkey {created['id']})") == 1


def _tamper(kind: str, key: SoftAuthenticator, request: dict[str, Any], good: str) -> Any:
    if kind == "wrong origin":
        return key.assertion(request, origin="http://localhost.evil.example:1")
    if kind == "wrong rp id":
        return key.assertion(request, origin=good, rp_id="evil.example")
    if kind == "wrong challenge":
        return key.assertion(request, origin=good, challenge=b64url(b"\x01" * 32))
    if kind == "bad signature":
        return key.assertion(request, origin=good, bad_signature=True)
    if kind == "no user presence":
        return key.assertion(request, origin=good, flags=0)
    if kind == "registration type":
        return key.assertion(request, origin=good, kind="webauthn.create")
    if kind == "unregistered authenticator":
        return SoftAuthenticator().assertion(request, origin=good)
    if kind == "not a credential":
        return {"id": 5, "response": "x"}
    if kind == "empty object":
        return {}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "wrong origin",
        "wrong rp id",
        "wrong challenge",
        "bad signature",
        "no user presence",
        "registration type",
        "unregistered authenticator",
        "not a credential",
        "empty object",
    ],
)
async def test_a_forged_assertion_is_a_wrong_answer(daemon: InProcessDaemon, kind: str) -> None:
    """Each forgery answers OTP_REQUIRED with a new challenge (a failed attempt spends the
    old one), counts as a failure of the account, never -32603; the right assertion for
    the new challenge still logs in."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "forge", key)
    async with daemon.client() as c:
        first = await password_step(c, "forge")
        request = first["webauthn"]["options"]
        answer = await passkey_step(c, _tamper(kind, key, request, origin(daemon)))
        assert answer["response_type"] == "OTP_REQUIRED", answer
        fresh = answer["webauthn"]["options"]
        assert fresh["challenge"] != request["challenge"]
        user = await daemon.mw.repos.users.get_by_name("forge")
        assert user is not None
        row = await daemon.mw.db.fetch_one(
            "SELECT failures FROM auth_throttle WHERE user_id = ?", (user.id,)
        )
        assert row is not None and row[0] == 1
        # The old challenge is spent even for the genuine authenticator.
        stale = await passkey_step(c, key.assertion(request, origin=origin(daemon)))
        assert stale["response_type"] == "OTP_REQUIRED"
        newest = stale["webauthn"]["options"]
        ok = await passkey_step(c, key.assertion(newest, origin=origin(daemon)))
        assert ok["response_type"] == "SUCCESS" and ok["authenticator"] == "LEVEL_2"


async def test_replayed_and_cross_step_assertions_are_refused(daemon: InProcessDaemon) -> None:
    """An assertion that logged in once does not log in again (its challenge is spent),
    and an assertion made for another pending step (a second connection's challenge) is
    refused on this one; four wrong answers end the step with AUTH_ERR."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "replay", key)
    good = origin(daemon)
    async with daemon.client() as a, daemon.client() as b:
        used = key.assertion((await password_step(a, "replay"))["webauthn"]["options"], origin=good)
        assert (await passkey_step(a, used))["response_type"] == "SUCCESS"
        other_request = (await password_step(b, "replay"))["webauthn"]["options"]
        async with daemon.client() as c:
            await password_step(c, "replay")
            answers = [
                await passkey_step(c, used),  # replayed
                await passkey_step(c, key.assertion(other_request, origin=good)),
                await passkey_step(c, used),
                await passkey_step(c, used),
            ]
            assert [x["response_type"] for x in answers] == [
                "OTP_REQUIRED",
                "OTP_REQUIRED",
                "OTP_REQUIRED",
                "AUTH_ERR",
            ]
            with pytest.raises(ClientError) as err:
                await passkey_step(c, used)
            assert err.value.errno == 22
            assert "WEBAUTHN: no authentication in progress" in err.value.reason


async def test_a_sign_count_that_goes_back_is_refused_and_alerted(
    daemon: InProcessDaemon,
) -> None:
    """WebAuthn L3 §7.2 step 21: a counter that does not grow is refused as a possible
    clone and raises PasskeyCloneSuspected; only a signed assertion can raise it (a bad
    signature with a low count is a plain wrong answer)."""
    key = SoftAuthenticator(sign_count=5)
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "clone", key)
        good = origin(daemon)
        async with daemon.client() as c:
            request = (await password_step(c, "clone"))["webauthn"]["options"]
            assert (await passkey_step(c, key.assertion(request, origin=good)))[
                "response_type"
            ] == "SUCCESS"  # count 6
        async with daemon.client() as c:
            request = (await password_step(c, "clone"))["webauthn"]["options"]
            forged = key.assertion(request, origin=good, sign_count=3, bad_signature=True)
            answer = await passkey_step(c, forged)
            assert answer["response_type"] == "OTP_REQUIRED"
            assert not [
                a for a in await admin.call("alert.list") if a["klass"] == "PasskeyCloneSuspected"
            ]
            request = answer["webauthn"]["options"]
            answer = await passkey_step(c, key.assertion(request, origin=good, sign_count=6))
            assert answer["response_type"] == "OTP_REQUIRED"
        [alert] = [
            a for a in await admin.call("alert.list") if a["klass"] == "PasskeyCloneSuspected"
        ]
        assert "clone" in alert["formatted"] and alert["level"] == "CRITICAL"
        row = await daemon.mw.db.fetch_one("SELECT sign_count FROM webauthn_credentials")
        assert row is not None and row[0] == 6


async def test_counts_that_stay_zero_are_accepted(daemon: InProcessDaemon) -> None:
    """Synced passkeys keep the counter at 0: every login is accepted."""
    key = SoftAuthenticator(sign_count=0, step=0)
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "synced", key)
    for _ in range(3):
        async with daemon.client() as c:
            request = (await password_step(c, "synced"))["webauthn"]["options"]
            answer = await passkey_step(c, key.assertion(request, origin=origin(daemon)))
            assert answer["response_type"] == "SUCCESS"


@pytest.mark.parametrize(
    "kind",
    ["wrong origin", "wrong rp id", "wrong challenge", "no user presence", "replayed", "expired"],
)
async def test_a_bad_registration_is_refused_on_the_credential(
    daemon: InProcessDaemon, clock: FrozenClock, kind: str
) -> None:
    """-32602 on ``user_webauthn_register_finish.credential``; nothing is stored and 2FA
    does not start to apply."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await make_user(admin, "badreg")
    async with logged_in(daemon, "badreg") as c:
        begun = (await c.call("user.webauthn_register_begin", "badreg", {"name": "k"}))["options"]
        good = origin(daemon)
        if kind == "wrong origin":
            response = key.register(begun, origin="https://evil.example")
        elif kind == "wrong rp id":
            response = key.register(begun, origin=good, rp_id="evil.example")
        elif kind == "wrong challenge":
            response = key.register(begun, origin=good, challenge=b64url(b"\x02" * 32))
        elif kind == "no user presence":
            response = key.register(begun, origin=good, flags=0)
        elif kind == "expired":
            clock.advance(301)
            response = key.register(begun, origin=good)
        else:
            ok = key.register(begun, origin=good)
            await c.call("user.webauthn_register_finish", "badreg", ok)
            response = ok
        with pytest.raises(ClientError) as err:
            await c.call("user.webauthn_register_finish", "badreg", response)
        assert err.value.code == -32602
        assert [e[0] for e in err.value.extra] == ["user_webauthn_register_finish.credential"]
        expected = 1 if kind == "replayed" else 0
        assert len(await c.call("user.webauthn_list", "badreg")) == expected


async def test_registration_is_bound_to_its_session_and_user(daemon: InProcessDaemon) -> None:
    """Options from one session cannot be finished on another session of the same user;
    the same authenticator twice is refused; another user's name is EPERM (even for
    FULL_ADMIN: a passkey is made by the user's own browser)."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await make_user(admin, "bound")
        with pytest.raises(ClientError) as err:
            await admin.call("user.webauthn_register_begin", "bound", {"name": "k"})
        assert err.value.errno == 1  # EPERM
    async with logged_in(daemon, "bound") as a, logged_in(daemon, "bound") as b:
        begun = (await a.call("user.webauthn_register_begin", "bound", {"name": "k"}))["options"]
        with pytest.raises(ClientError) as err:
            await b.call(
                "user.webauthn_register_finish", "bound", key.register(begun, origin=origin(daemon))
            )
        assert err.value.code == -32602
        await register(daemon, a, "bound", key)
        with pytest.raises(ClientError) as err:
            await register(daemon, a, "bound", key)
        assert err.value.code == -32602 and "registered already" in err.value.extra[0][1]
        with pytest.raises(ClientError) as err:
            await a.call("user.webauthn_register_begin", "bound", {"name": " "})
        assert [e[0] for e in err.value.extra] == ["options.name"]


async def test_totp_and_passkey_user_logs_in_with_either(daemon: InProcessDaemon) -> None:
    """A user with both: the TrueNAS flow (password, then OTP_TOKEN) still works, and so
    does the passkey; both are offered in the same OTP_REQUIRED."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "both", key)
        await daemon.seed_secret("both", RFC_SECRET)
    async with daemon.client() as c:
        first = await password_step(c, "both")
        assert "webauthn" in first
        code = pyotp.TOTP(RFC_SECRET).at(daemon.mw.clock.time())
        answer = await c.call(
            "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": code}
        )
        assert answer["response_type"] == "SUCCESS" and answer["authenticator"] == "LEVEL_2"
    async with daemon.client() as c:
        request = (await password_step(c, "both"))["webauthn"]["options"]
        answer = await passkey_step(c, key.assertion(request, origin=origin(daemon)))
        assert answer["response_type"] == "SUCCESS"


async def test_passkey_only_user_can_still_use_a_recovery_code(daemon: InProcessDaemon) -> None:
    """OTP_TOKEN for a user with a passkey and no TOTP secret: a six-digit guess is a
    wrong answer, a recovery code logs in."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await make_user(admin, "rcpk")
    async with logged_in(daemon, "rcpk") as c:
        await register(daemon, c, "rcpk", key)
        codes = await c.call("user.twofactor_recovery_codes", "rcpk")
    async with daemon.client() as c:
        await password_step(c, "rcpk")
        wrong = await c.call(
            "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": "123456"}
        )
        assert wrong["response_type"] == "OTP_REQUIRED" and "webauthn" in wrong
        answer = await c.call(
            "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": codes[0]}
        )
        assert answer["response_type"] == "SUCCESS" and answer["authenticator"] == "LEVEL_2"


async def test_deleting_a_passkey_ends_the_users_other_sessions(daemon: InProcessDaemon) -> None:
    """The other session closes (1008), a pending login of the user becomes void, the
    caller's session stays; the user's recovery codes go with their last factor."""
    first, second = SoftAuthenticator(), SoftAuthenticator()
    good = origin(daemon)
    async with daemon.admin() as admin:
        await make_user(admin, "del")
    async with logged_in(daemon, "del") as owner:
        one = await register(daemon, owner, "del", first, "one")
        two = await register(daemon, owner, "del", second, "two")
        await owner.call("user.twofactor_recovery_codes", "del")
        async with daemon.client() as other, daemon.client() as pending:
            request = (await password_step(other, "del"))["webauthn"]["options"]
            assert (await passkey_step(other, second.assertion(request, origin=good)))[
                "response_type"
            ] == "SUCCESS"
            late = (await password_step(pending, "del"))["webauthn"]["options"]
            assert await owner.call("user.webauthn_delete", "del", one["id"]) is True
            with pytest.raises((ConnectionClosed, ClientError, OSError)):
                await wait_until(lambda: other.ws.close_code is not None)
                await other.call("auth.me")
            assert other.ws.close_code == 1008
            with pytest.raises(ClientError) as err:
                await passkey_step(pending, second.assertion(late, origin=good))
            assert err.value.errno == 22
        assert [p["name"] for p in await owner.call("user.webauthn_list", "del")] == ["two"]
        assert (await owner.call("user.twofactor_config", "del"))["recovery_codes_remaining"] == 10
        await owner.call("user.webauthn_delete", "del", two["id"])
        assert (await owner.call("user.twofactor_config", "del"))["recovery_codes_remaining"] == 0
        assert (await owner.call("auth.me"))["two_factor_config"]["setup_required"] is True
        with pytest.raises(ClientError) as err:
            await owner.call("user.webauthn_delete", "del", two["id"])
        assert err.value.errno == 2  # ENOENT


async def test_the_last_factor_under_enforce_cannot_be_deleted(daemon: InProcessDaemon) -> None:
    """-32602 on user_webauthn_delete.id for the only factor under ``enforce``, by the
    user and by FULL_ADMIN (root on the Unix socket); with a TOTP secret too it can go."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "last", key)
    async with daemon.client() as c, daemon.root() as root:
        request = (await password_step(c, "last"))["webauthn"]["options"]
        await passkey_step(c, key.assertion(request, origin=origin(daemon)))
        await root.call("auth.twofactor.update", {"enforce": True})
        [passkey] = await c.call("user.webauthn_list", "last")
        for caller in (c, root):
            with pytest.raises(ClientError) as err:
                await caller.call("user.webauthn_delete", "last", passkey["id"])
            assert err.value.code == -32602
            assert [e[0] for e in err.value.extra] == ["user_webauthn_delete.id"]
        await daemon.seed_secret("last", RFC_SECRET)
        assert await root.call("user.webauthn_delete", "last", passkey["id"]) is True


async def test_who_may_list_and_delete(daemon: InProcessDaemon) -> None:
    """Self or FULL_ADMIN: a user without roles gets EPERM for another user's passkeys;
    an API-key session (LEVEL_1) of a user with a passkey gets EACCES for its own (a
    stolen key must not replace the factor it does not have, API.md §9)."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "owner", key)
        await admin.call("user.create", {"username": "nosy", "password": PASSWORD})
        assert len(await admin.call("user.webauthn_list", "owner")) == 1
    async with logged_in(daemon, "nosy") as nosy:
        for method, args in (
            ("user.webauthn_list", ("owner",)),
            ("user.webauthn_delete", ("owner", 1)),
            ("user.webauthn_register_begin", ("owner", {"name": "x"})),
        ):
            with pytest.raises(ClientError) as err:
                await nosy.call(method, *args)
            assert err.value.errno == 1, method
    async with daemon.client() as c:
        request = (await password_step(c, "owner"))["webauthn"]["options"]
        await passkey_step(c, key.assertion(request, origin=origin(daemon)))
        created = await c.call("api_key.create", {"name": "auto", "username": "owner"})
    async with daemon.client() as k:
        answer = await k.call(
            "auth.login_ex",
            {"mechanism": "API_KEY_PLAIN", "username": "owner", "api_key": created["key"]},
        )
        assert answer["response_type"] == "SUCCESS"
        for method, args in (
            ("user.webauthn_list", ("owner",)),
            ("user.webauthn_register_begin", ("owner", {"name": "x"})),
            ("user.webauthn_delete", ("owner", 1)),
        ):
            with pytest.raises(ClientError) as err:
                await k.call(method, *args)
            assert err.value.errno == 13, method  # EACCES


async def test_enforced_setup_only_session_enrols_a_passkey(daemon: InProcessDaemon) -> None:
    """Under ``enforce`` a user without a factor gets a setup-only session; registering
    a passkey there makes it LEVEL_2 and lets it call everything else."""
    key = SoftAuthenticator()
    async with daemon.root() as root:
        await root.call("auth.twofactor.update", {"enabled": True, "enforce": True})
        await root.call("user.create", {"username": "fresh", "password": PASSWORD})
    async with daemon.client() as c:
        answer = await c.login("fresh", PASSWORD)
        assert "SETUP_ONLY" in answer["user_info"]["account_attributes"]
        with pytest.raises(ClientError) as err:
            await c.call("auth.sessions")
        assert err.value.errno == 13
        await register(daemon, c, "fresh", key)
        me = await c.call("auth.me")
        assert "SETUP_ONLY" not in me["account_attributes"]
        assert me["credentials"] == "LOGIN_TWOFACTOR"
        assert len(await c.call("auth.sessions")) == 1


async def test_passkeys_survive_a_restart(daemon: InProcessDaemon) -> None:
    """After a restart the user still needs the second factor and the passkey works."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "durable", key)
    await daemon.restart()
    async with daemon.client() as c:
        request = (await password_step(c, "durable"))["webauthn"]["options"]
        answer = await passkey_step(c, key.assertion(request, origin=origin(daemon)))
        assert answer["response_type"] == "SUCCESS"


async def test_deleting_the_user_drops_their_passkeys(daemon: InProcessDaemon) -> None:
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "gone", key)
        [entry] = await admin.call("user.query", [["username", "=", "gone"]])
        await admin.call("user.delete", entry["id"])
        await admin.call("user.create", {"username": "gone", "password": PASSWORD})
        [entry] = await admin.call("user.query", [["username", "=", "gone"]])
        assert entry["twofactor_auth_configured"] is False
    rows = await daemon.mw.db.fetch_all("SELECT id FROM webauthn_credentials")
    assert rows == []


async def test_bad_webauthn_input_gets_field_errors(daemon: InProcessDaemon) -> None:
    """``login_ex_continue`` takes only continuing mechanisms; a credential that is not an
    object is -32602 on its path; WEBAUTHN without a pending step is EINVAL."""
    async with daemon.client() as c:
        with pytest.raises(ClientError) as err:
            await c.call(
                "auth.login_ex_continue",
                {"mechanism": "PASSWORD_PLAIN", "username": "a", "password": "b"},
            )
        assert err.value.code == -32602
        assert err.value.extra[0][0] == "login_data.mechanism"
        assert "'OTP_TOKEN'" in err.value.extra[0][1] and "'WEBAUTHN'" in err.value.extra[0][1]
        with pytest.raises(ClientError) as err:
            await c.call("auth.login_ex_continue", {"mechanism": "WEBAUTHN", "credential": "x"})
        assert err.value.code == -32602
        assert err.value.extra[0][0] == "login_data.credential"
        with pytest.raises(ClientError) as err:
            await c.call("auth.login_ex_continue", {"mechanism": "WEBAUTHN", "credential": {}})
        assert err.value.errno == 22
        assert "WEBAUTHN: no authentication in progress" in err.value.reason


def test_relying_party_settings_are_checked() -> None:
    """``webauthn_rp_id`` must be a host name (browsers refuse an IP address) and each of
    ``webauthn_origins`` a browser origin, https except on localhost; lists may come
    comma-separated from the environment."""
    model = load_plugin("webauthn").WebauthnSettings
    env = load_settings(
        environ={
            "MIDDLEWARED_2FA_WEBAUTHN_RP_ID": "NAS.example.com",
            "MIDDLEWARED_2FA_WEBAUTHN_ORIGINS": "https://nas.example.com:8642,https://a.nas.example.com",
        }
    )
    values = plugin_settings(env, [("webauthn", model)])[model]
    assert values.webauthn_rp_id == "nas.example.com"
    assert values.webauthn_origins == ["https://nas.example.com:8642", "https://a.nas.example.com"]
    env = load_settings(
        environ={
            "MIDDLEWARED_2FA_WEBAUTHN_RP_ID": "NAS.Example.com",
            "MIDDLEWARED_2FA_WEBAUTHN_ORIGINS": "https://NAS.example.com:443,https://bücher.nas.example.com:8443",
        }
    )
    values = plugin_settings(env, [("webauthn", model)])[model]
    # The form browsers send: lower case, no default port, punycode.
    assert values.webauthn_origins == [
        "https://nas.example.com",
        "https://xn--bcher-kva.nas.example.com:8443",
    ]
    for key, bad in (
        ("WEBAUTHN_RP_ID", "192.168.1.10"),
        ("WEBAUTHN_RP_ID", "127.1"),
        ("WEBAUTHN_RP_ID", "nas.123"),
        ("WEBAUTHN_ORIGINS", "https://nas.example.com:"),
        ("WEBAUTHN_ORIGINS", "https://nas.example.com:99999"),
        ("WEBAUTHN_RP_ID", "https://nas.example.com"),
        ("WEBAUTHN_RP_ID", "nas.example.com:8642"),
        ("WEBAUTHN_ORIGINS", "http://nas.example.com:8642"),
        ("WEBAUTHN_ORIGINS", "https://nas.example.com/ui/"),
        ("WEBAUTHN_ORIGINS", "nas.example.com"),
    ):
        env = load_settings(environ={f"MIDDLEWARED_2FA_{key}": bad})
        with pytest.raises(StartupError, match=key.lower()):
            plugin_settings(env, [("webauthn", model)])


async def test_an_origin_off_the_rp_id_stops_the_start(tmp_path: Path, clock: FrozenClock) -> None:
    """An origin that is neither the rp id nor under it could never pass a browser's
    check: the daemon refuses to start and names it."""
    daemon = InProcessDaemon(
        tmp_path,
        clock,
        {"webauthn_rp_id": "nas.example.com", "webauthn_origins": ["https://evil.example"]},
    )
    with pytest.raises(StartupError, match="evil.example"):
        await daemon.start()
    await daemon.stop()


@pytest.mark.settings(webauthn_rp_id="localhost", webauthn_origins=["https://proxy.localhost:8443"])
async def test_configured_origins_are_used_and_allowed(daemon: InProcessDaemon) -> None:
    """A configured WebAuthn origin (a reverse proxy's) may open the WebSocket (API.md §1)
    and is the origin registrations must come from; the daemon's own is then refused."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await make_user(admin, "proxied")
    async with open_client(daemon.url, origin="https://proxy.localhost:8443") as c:
        assert (await c.login("proxied", PASSWORD))["response_type"] == "SUCCESS"
        begun = (await c.call("user.webauthn_register_begin", "proxied", {"name": "k"}))["options"]
        with pytest.raises(ClientError) as err:
            await c.call(
                "user.webauthn_register_finish",
                "proxied",
                key.register(begun, origin=origin(daemon)),
            )
        assert err.value.code == -32602
        begun = (await c.call("user.webauthn_register_begin", "proxied", {"name": "k"}))["options"]
        await c.call(
            "user.webauthn_register_finish",
            "proxied",
            key.register(begun, origin="https://proxy.localhost:8443"),
        )
    with pytest.raises(ConnectError, match="403"):
        async with open_client(daemon.url, origin="https://other.localhost:8443"):
            pass


async def test_unsetting_the_secret_under_enforce_keeps_a_passkey_users_session(
    daemon: InProcessDaemon,
) -> None:
    """Under ``enforce`` a user who unsets their TOTP secret but keeps a passkey still has
    a second factor: the session stays LEVEL_2, not setup-only (found in the UI work)."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "keeper", key)
        await daemon.seed_secret("keeper", RFC_SECRET)
    async with daemon.client() as c, daemon.root() as root:
        request = (await password_step(c, "keeper"))["webauthn"]["options"]
        assert (await passkey_step(c, key.assertion(request, origin=origin(daemon))))[
            "authenticator"
        ] == "LEVEL_2"
        await root.call("auth.twofactor.update", {"enforce": True})
        await c.call("user.unset_2fa_secret", "keeper")
        me = await c.call("auth.me")
        assert "SETUP_ONLY" not in me["account_attributes"]
        assert me["credentials"] == "LOGIN_TWOFACTOR"
        assert len(await c.call("auth.sessions")) == 1


@pytest.mark.settings(auth_failure_delay=0.5)
async def test_a_code_spends_the_passkey_challenge_at_once(daemon: InProcessDaemon) -> None:
    """Any answer to the step spends the challenge it was offered, before its failure
    delay: an assertion for that challenge sent while a wrong code is being answered is
    refused (found by the attack pass: it logged in)."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "spent", key)
    async with daemon.client() as c:
        request = (await password_step(c, "spent"))["webauthn"]["options"]
        wrong = asyncio.create_task(
            c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": "000000"})
        )
        await asyncio.sleep(0)  # the code leaves first; the daemon takes frames in order
        late = await passkey_step(c, key.assertion(request, origin=origin(daemon)))
        assert late["response_type"] == "OTP_REQUIRED", late
        assert (await wrong)["response_type"] == "OTP_REQUIRED"
        with pytest.raises(ClientError) as err:
            await c.call("auth.me")
        assert err.value.errname == "ENOTAUTHENTICATED"


@pytest.mark.settings(webauthn_rp_id="nas.localhost")
async def test_origins_derived_from_the_rp_id_may_open_the_websocket(
    daemon: InProcessDaemon,
) -> None:
    """With only ``webauthn_rp_id`` set, its origin (http://nas.localhost:PORT) is the
    WebAuthn origin and an allowed Origin of the handshake (API.md §1, §12); another
    subdomain is not."""
    own = f"http://nas.localhost:{daemon.daemon.port}"  # type: ignore[union-attr]
    async with open_client(daemon.url, origin=own) as c:
        assert await c.call("core.ping") == "pong"
    with pytest.raises(ConnectError, match="403"):
        async with open_client(daemon.url, origin=f"http://x.nas.localhost:{daemon.daemon.port}"):  # type: ignore[union-attr]
            pass


async def test_a_credential_id_over_1023_bytes_is_refused(daemon: InProcessDaemon) -> None:
    """WebAuthn L3 §7.1: such a registration fails (it would bloat every OTP_REQUIRED
    and could never be used under the frame limit of unauthenticated calls)."""
    async with daemon.admin() as admin:
        await make_user(admin, "longid")
    async with logged_in(daemon, "longid") as c:
        with pytest.raises(ClientError) as err:
            await register(daemon, c, "longid", SoftAuthenticator(credential_id=b"\x07" * 1024))
        assert err.value.code == -32602 and "1023" in err.value.extra[0][1]
        await register(daemon, c, "longid", SoftAuthenticator(credential_id=b"\x07" * 1023))


async def test_unsetting_an_absent_secret_ends_no_session(daemon: InProcessDaemon) -> None:
    """``user.unset_2fa_secret`` of a passkey-only user removes nothing and ends nothing
    (it logged the user out before: found in the UI work)."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await user_with_passkey(daemon, admin, "nosecret", key)
        async with daemon.client() as c:
            request = (await password_step(c, "nosecret"))["webauthn"]["options"]
            await passkey_step(c, key.assertion(request, origin=origin(daemon)))
            assert await admin.call("user.unset_2fa_secret", "nosecret") is None
            assert (await c.call("auth.me"))["pw_name"] == "nosecret"
            assert len(await c.call("user.webauthn_list", "nosecret")) == 1


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"webauthn_origins": ["https://nas.example.com"]}, "not on the rp id 'localhost'"),
        ({"webauthn_rp_id": "nas.example.com"}, "needs tls = true"),
    ],
)
async def test_settings_no_browser_could_use_stop_the_start(
    tmp_path: Path, clock: FrozenClock, overrides: dict[str, Any], match: str
) -> None:
    """Found in the new-user trial: an origin off the derived rp id (only
    ``webauthn_origins`` set), and an rp id other than localhost without TLS (its origin
    would be plain http), started and left passkeys unusable; now the start fails and
    says what to set."""
    daemon = InProcessDaemon(tmp_path, clock, overrides)
    with pytest.raises(StartupError, match=match):
        await daemon.start()
    await daemon.stop()


async def test_the_relying_party_in_effect_is_logged(
    daemon: InProcessDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    """Start-up names the rp id and origins in effect (an administrator debugging a
    refused passkey needs them)."""
    caplog.set_level("INFO")
    await daemon.restart()
    port = daemon.daemon.port  # type: ignore[union-attr]
    assert f"passkeys: rp id localhost, origins http://localhost:{port}" in caplog.messages


async def test_a_recovery_code_raced_by_a_passkey_login_is_not_spent(
    daemon: InProcessDaemon,
) -> None:
    """The assertion and a recovery code answer the same step at once; the assertion
    wins while the code is being hashed: the code stays unused and no RecoveryCodeUsed
    alert says the codes are known to someone else (second attack pass)."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await make_user(admin, "race")
    async with logged_in(daemon, "race") as c:
        await register(daemon, c, "race", key)
        codes = await c.call("user.twofactor_recovery_codes", "race")
    async with daemon.client() as c:
        request = (await password_step(c, "race"))["webauthn"]["options"]
        assertion = key.assertion(request, origin=origin(daemon))
        won, lost = await asyncio.gather(
            passkey_step(c, assertion),
            c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": codes[0]}),
        )
        assert won["response_type"] == "SUCCESS"
        assert lost["response_type"] == "AUTH_ERR"
        assert (await c.call("user.twofactor_config", "race"))["recovery_codes_remaining"] == 10
    async with daemon.admin() as admin:
        alerts = [a for a in await admin.call("alert.list") if a["klass"] == "RecoveryCodeUsed"]
    assert alerts == []


async def test_a_public_key_that_cannot_verify_is_refused(daemon: InProcessDaemon) -> None:
    """Attestation "none" proves nothing about the key: a P-256 point off the curve would
    count as a factor (and upgrade a setup-only session) yet never verify a login."""
    key = SoftAuthenticator()
    async with daemon.admin() as admin:
        await make_user(admin, "offcurve")
    async with logged_in(daemon, "offcurve") as c:
        begun = (await c.call("user.webauthn_register_begin", "offcurve", {"name": "k"}))["options"]
        response = key.register(begun, origin=origin(daemon))
        attestation = cbor2.loads(unb64url(response["response"]["attestationObject"]))
        auth_data = bytearray(attestation["authData"])
        auth_data[-1] ^= 0x01  # the last byte of y: the point leaves the curve
        attestation["authData"] = bytes(auth_data)
        response["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
        with pytest.raises(ClientError) as err:
            await c.call("user.webauthn_register_finish", "offcurve", response)
        assert err.value.code == -32602 and "public key" in err.value.extra[0][1]
        assert await c.call("user.webauthn_list", "offcurve") == []
