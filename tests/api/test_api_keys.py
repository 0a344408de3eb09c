"""API keys (API.md §11): shown once and never stored, API_KEY_PLAIN and SCRAM-SHA-512 by
hand, the answers for wrong, deleted, expired, revoked and other users' keys, revocation of
a plain key sent over plaintext from afar, and the sessions they make (§9)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.exceptions import ConnectionClosed

from middlewared_2fa.cli.client import Client, ClientError, open_client
from middlewared_2fa.clock import FrozenClock
from tests.helpers.certs import rfc5929_end_point
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import AROUND_1234567890, RFC_SECRET
from tests.helpers.scram_client import ScramClient

KEY = re.compile(r"([1-9][0-9]*)-([A-Za-z0-9]{64})")


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as exits:
        yield exits


async def plain(client: Client, username: str, key: str) -> dict[str, Any]:
    answer: dict[str, Any] = await client.call(
        "auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": username, "api_key": key}
    )
    return answer


async def scram_login(client: Client, scram: ScramClient, **final: bool) -> dict[str, Any]:
    first = await client.call(
        "auth.login_ex",
        {"mechanism": "SCRAM", "scram_type": "CLIENT_FIRST_MESSAGE", "rfc_str": scram.first()},
    )
    if first["response_type"] != "SCRAM_RESPONSE":
        return dict(first)
    assert first["scram_type"] == "SERVER_FIRST_RESPONSE"
    answer: dict[str, Any] = await client.call(
        "auth.login_ex",
        {
            "mechanism": "SCRAM",
            "scram_type": "CLIENT_FINAL_MESSAGE",
            "rfc_str": scram.final(first["rfc_str"], **final),
        },
    )
    return answer


async def bob_with_key(daemon: InProcessDaemon, admin: Client, **fields: Any) -> dict[str, Any]:
    await admin.call("user.create", {"username": "bob", "password": "pw-bob"})
    made: dict[str, Any] = await admin.call(
        "api_key.create", {"name": "backup script", "username": "bob", **fields}
    )
    return made


async def test_a_key_is_shown_once_and_never_stored(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
        match = KEY.fullmatch(made["key"])
        assert match and int(match.group(1)) == made["id"]
        assert (made["username"], made["iterations"], made["revoked"]) == ("bob", 500000, False)
        assert made["local"] is False and made["expires_at"] is None
        [listed] = await admin.call("api_key.query", [["id", "=", made["id"]]])
        assert "key" not in listed and "client_key" not in listed
        assert listed["stored_key"] == made["stored_key"]
    db = daemon.settings.database_path
    stored = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    assert match.group(2).encode() not in stored


async def test_plain_key_logs_in_as_api_key_without_the_otp_step(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    """A key is a credential for automation: LEVEL_1, API_KEY, no OTP step even for a
    user with a secret under global 2FA; the session names the key (API.md §9)."""
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
        await daemon.seed_secret("bob", RFC_SECRET)
        await admin.call("auth.twofactor.update", {"enabled": True})
    c = await stack.enter_async_context(open_client(daemon.url))
    done = await plain(c, "bob", made["key"])
    assert done["response_type"] == "SUCCESS" and done["authenticator"] == "LEVEL_1"
    assert done["user_info"]["credentials"] == "API_KEY"
    [mine] = [s for s in await c.call("auth.sessions") if s["current"]]
    assert mine["credentials"] == "API_KEY"
    assert mine["credentials_data"]["api_key"] == {"id": made["id"], "name": "backup script"}
    assert [k["id"] for k in await c.call("api_key.my_keys")] == [made["id"]]


@pytest.mark.settings(auth_failure_delay=0)
async def test_wrong_deleted_and_other_users_keys_are_auth_err_and_counted(
    daemon: InProcessDaemon,
) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
        await admin.call("user.create", {"username": "eve", "password": "pw-eve"})
        theirs = await admin.call("api_key.create", {"name": "eve's", "username": "eve"})
        gone = await admin.call("api_key.create", {"name": "old", "username": "bob"})
        assert await admin.call("api_key.delete", gone["id"]) is True
        key_id = made["id"]
        for key in (f"{key_id}-{'x' * 64}", theirs["key"], gone["key"], "not a key"):
            async with daemon.client() as c:
                assert await plain(c, "bob", key) == {"response_type": "AUTH_ERR"}, key[:4]
    bob = await daemon.mw.repos.users.get_by_name("bob")
    assert bob is not None
    assert daemon.mw.services["auth"].throttle.failures(bob.id) == 4  # type: ignore[attr-defined]
    async with daemon.client() as c:
        assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
    assert daemon.mw.services["auth"].throttle.failures(bob.id) == 0  # type: ignore[attr-defined]


async def test_an_expired_key_is_expired_and_its_session_ends(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    async with daemon.admin() as admin:
        expires = {"$date": int((clock.time() + 3600) * 1000)}
        made = await bob_with_key(daemon, admin, expires_at=expires)
        assert made["expires_at"] == expires
    c = await stack.enter_async_context(open_client(daemon.url))
    assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
    clock.advance(3601)
    with pytest.raises((ClientError, ConnectionClosed, ConnectionError)):
        await c.call("auth.me")
    async with daemon.client() as again:
        assert await plain(again, "bob", made["key"]) == {"response_type": "EXPIRED"}


@pytest.mark.settings(api_key_local_networks=["127.0.0.1/32"])
async def test_a_plain_key_over_plaintext_from_afar_is_revoked(daemon: InProcessDaemon) -> None:
    """From 127.0.0.2 (outside api_key_local_networks here) over ws://, a right plain key
    is revoked at once and answers EXPIRED, then also from 127.0.0.1; SCRAM, which does not
    send the key, would not have revoked it; reset makes it work again."""
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
    async with open_client(daemon.url, local_addr=("127.0.0.2", 0)) as far:
        assert await plain(far, "bob", made["key"]) == {"response_type": "EXPIRED"}
    async with daemon.admin() as admin:
        [entry] = await admin.call("api_key.query", [["id", "=", made["id"]]])
        assert entry["revoked"] is True
        assert "127.0.0.2" in entry["revoked_reason"]
        async with daemon.client() as near:
            assert await plain(near, "bob", made["key"]) == {"response_type": "EXPIRED"}
        reset = await admin.call("api_key.update", made["id"], {"reset": True})
        assert reset["revoked"] is False and reset["key"] != made["key"]
        async with daemon.client() as near:
            assert await plain(near, "bob", made["key"]) == {"response_type": "AUTH_ERR"}
        async with daemon.client() as near:
            assert (await plain(near, "bob", reset["key"]))["response_type"] == "SUCCESS"


async def test_scram_by_hand(stack: contextlib.AsyncExitStack, daemon: InProcessDaemon) -> None:
    """The exchange as §11 describes it: the nonce is one base64 value of client + server
    bytes, the server signature verifies; a wrong proof, a wrong key id, another user's key
    id and a replayed client-final are AUTH_ERR."""
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
        await admin.call("user.create", {"username": "eve", "password": "pw-eve"})
        theirs = await admin.call("api_key.create", {"name": "eve's", "username": "eve"})
    key_id, material = made["key"].split("-", 1)
    c = await stack.enter_async_context(open_client(daemon.url))
    client = ScramClient("bob", int(key_id), material)
    done = await scram_login(c, client)
    assert done["response_type"] == "SCRAM_RESPONSE"
    assert done["scram_type"] == "SERVER_FINAL_RESPONSE"
    assert client.verify(done["rfc_str"])
    assert done["user_info"]["credentials"] == "API_KEY"
    assert (await c.call("auth.me"))["pw_name"] == "bob"
    # A client-final with no exchange in progress (the real replay is tested below).
    stray = await c.call(
        "auth.login_ex",
        {
            "mechanism": "SCRAM",
            "scram_type": "CLIENT_FINAL_MESSAGE",
            "rfc_str": "c=biws,r=AAAA,p=AAAA",
        },
    )
    assert stray == {"response_type": "AUTH_ERR"}
    for scram in (
        ScramClient("bob", int(key_id), "y" * 64),
        ScramClient("bob", int(key_id) + 1000, material),
        ScramClient("bob", theirs["id"], theirs["key"].split("-", 1)[1]),
    ):
        async with daemon.client() as other:
            assert await scram_login(other, scram) == {"response_type": "AUTH_ERR"}
    async with daemon.client() as other:
        answer = await scram_login(
            other, ScramClient("bob", int(key_id), material), tamper_proof=True
        )
        assert answer == {"response_type": "AUTH_ERR"}


async def test_a_replayed_client_final_is_auth_err(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
    key_id, material = made["key"].split("-", 1)
    client = ScramClient("bob", int(key_id), material)
    async with daemon.client() as c:
        first = await c.call(
            "auth.login_ex",
            {"mechanism": "SCRAM", "scram_type": "CLIENT_FIRST_MESSAGE", "rfc_str": client.first()},
        )
        final = client.final(first["rfc_str"])
        message = {"mechanism": "SCRAM", "scram_type": "CLIENT_FINAL_MESSAGE", "rfc_str": final}
        assert (await c.call("auth.login_ex", message))["response_type"] == "SCRAM_RESPONSE"
        assert await c.call("auth.login_ex", message) == {"response_type": "AUTH_ERR"}
    async with daemon.client() as elsewhere:
        assert await elsewhere.call("auth.login_ex", message) == {"response_type": "AUTH_ERR"}


async def test_key_sessions_outlive_a_password_change_not_a_lock_or_delete(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
        bob = await admin.call("user.query", [["username", "=", "bob"]], {"get": True})
        c = await stack.enter_async_context(open_client(daemon.url))
        assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
        await admin.call("user.update", bob["id"], {"password": "new-pw-bob"})
        assert (await c.call("auth.me"))["credentials"] == "API_KEY"
        await admin.call("api_key.delete", made["id"])
        with pytest.raises((ClientError, ConnectionClosed, ConnectionError)):
            await c.call("auth.me", timeout=10)
        second = await admin.call("api_key.create", {"name": "again", "username": "bob"})
        d = await stack.enter_async_context(open_client(daemon.url))
        assert (await plain(d, "bob", second["key"]))["response_type"] == "SUCCESS"
        await admin.call("user.update", bob["id"], {"locked": True})
        with pytest.raises((ClientError, ConnectionClosed, ConnectionError)):
            await d.call("auth.me", timeout=10)


async def test_keys_of_others_need_the_role_and_the_guard(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        await admin.call("user.create", {"username": "plainuser", "password": "pw-p"})
        await admin.call(
            "user.create", {"username": "keyadmin", "password": "pw-k", "roles": ["API_KEY_WRITE"]}
        )
        boss = await admin.call("api_key.create", {"name": "admin's"})
        assert boss["username"] == "admin"
    async with daemon.client() as p:
        await p.login("plainuser", "pw-p")
        mine = await p.call("api_key.create", {"name": "mine"})
        assert mine["username"] == "plainuser"
        assert [k["id"] for k in await p.call("api_key.query")] == [mine["id"]]
        with pytest.raises(ClientError) as err:
            await p.call("api_key.create", {"name": "x", "username": "keyadmin"})
        assert err.value.errname == "EPERM"
        # A name that does not exist gets the same answer: no oracle of user names.
        with pytest.raises(ClientError) as missing:
            await p.call("api_key.create", {"name": "x", "username": "nobody-here"})
        assert (missing.value.errname, missing.value.reason) == ("EPERM", err.value.reason)
        with pytest.raises(ClientError) as err:
            await p.call("api_key.delete", boss["id"])
        assert err.value.errname == "ENOENT"
    async with daemon.client() as k:
        await k.login("keyadmin", "pw-k")
        other = await k.call("api_key.create", {"name": "for p", "username": "plainuser"})
        assert other["username"] == "plainuser"
        with pytest.raises(ClientError) as err:
            await k.call("api_key.create", {"name": "x", "username": "admin"})
        assert err.value.errname == "EPERM"
        with pytest.raises(ClientError) as err:
            await k.call("api_key.delete", boss["id"])
        assert err.value.errname == "EPERM"
        assert {e["username"] for e in await k.call("api_key.query")} == {
            "admin",
            "plainuser",
        }


async def test_enforce_allows_keys_only_from_two_factor_sessions(daemon: InProcessDaemon) -> None:
    async with daemon.root() as root:
        await root.call("auth.twofactor.update", {"enabled": True})
        await root.call("user.create", {"username": "ops", "password": "pw-ops"})
        await daemon.seed_secret("ops", RFC_SECRET)
        await root.call("auth.twofactor.update", {"enforce": True})
        made = await root.call("api_key.create", {"name": "by root", "username": "ops"})
        assert made["username"] == "ops"
    async with daemon.client() as c:
        assert (await plain(c, "ops", made["key"]))["response_type"] == "SUCCESS"
        with pytest.raises(ClientError) as err:
            await c.call("api_key.create", {"name": "from a key session"})
        assert err.value.errname == "EACCES"
    async with daemon.client() as c:
        assert (await c.login("ops", "pw-ops", "005924"))["authenticator"] == "LEVEL_2"
        assert (await c.call("api_key.create", {"name": "level 2"}))["username"] == "ops"


async def test_mechanism_choices_list_the_key_mechanisms(daemon: InProcessDaemon) -> None:
    async with daemon.client() as c:
        choices = await c.call("auth.mechanism_choices")
    assert {"API_KEY_PLAIN", "SCRAM", "PASSWORD_PLAIN", "TOKEN_PLAIN"} <= set(choices)
    assert "OTP_TOKEN" not in choices


async def test_convert_raw_key_gives_the_stored_scram_data(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
        data = await admin.call("api_key.convert_raw_key", made["key"])
        assert data["api_key_id"] == made["id"]
        assert (data["salt"], data["stored_key"], data["server_key"]) == (
            made["salt"],
            made["stored_key"],
            made["server_key"],
        )
        assert data["client_key"] == made["client_key"]
        with pytest.raises(ClientError) as err:
            await admin.call("api_key.convert_raw_key", "nonsense")
        assert err.value.code == -32602 and err.value.extra[0][0] == "raw_key"


@pytest.mark.settings(tls=True)
async def test_scram_with_channel_binding_over_tls(daemon: InProcessDaemon) -> None:
    """Over wss://, ``p=tls-server-end-point`` with the RFC 5929 hash of the certificate
    the client was served logs in; a wrong binding (another hash, or none while the
    header asks for one) is AUTH_ERR; a plain key over TLS is not revoked."""
    cert = x509.load_pem_x509_certificate(daemon.settings.tls_cert_path.read_bytes())
    served = rfc5929_end_point(cert.public_bytes(serialization.Encoding.DER))
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
    key_id, material = made["key"].split("-", 1)
    async with daemon.client() as c:
        client = ScramClient(
            "bob", int(key_id), material, gs2_header="p=tls-server-end-point,,", binding_data=served
        )
        done = await scram_login(c, client)
        assert done["scram_type"] == "SERVER_FINAL_RESPONSE" and client.verify(done["rfc_str"])
        [mine] = [s for s in await c.call("auth.sessions") if s["current"]]
        assert mine["secure_transport"] is True and mine["credentials"] == "API_KEY"
    for binding in (bytes(len(served)), b""):
        async with daemon.client() as c:
            wrong = ScramClient(
                "bob",
                int(key_id),
                material,
                gs2_header="p=tls-server-end-point,,",
                binding_data=binding,
            )
            assert await scram_login(c, wrong) == {"response_type": "AUTH_ERR"}
    # RFC 5802 §6: "y,," (I could bind, but you can't) over TLS is a stripped binding.
    async with daemon.client() as c:
        downgraded = ScramClient("bob", int(key_id), material, gs2_header="y,,")
        assert await scram_login(c, downgraded) == {"response_type": "AUTH_ERR"}
    # "n,," (a client that cannot bind) still logs in over TLS.
    async with daemon.client() as c:
        unbound = ScramClient("bob", int(key_id), material)
        assert (await scram_login(c, unbound))["scram_type"] == "SERVER_FINAL_RESPONSE"
    async with daemon.client() as c:
        assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
    async with daemon.admin() as admin:
        query = {"query-filters": [["success", "=", False]]}
        failures = [e["event_data"]["description"] for e in await admin.call("audit.query", query)]
    assert "SCRAM channel binding downgraded (y over TLS)" in failures


async def test_channel_binding_over_plaintext_is_auth_err(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
    key_id, material = made["key"].split("-", 1)
    async with daemon.client() as c:
        asking = ScramClient(
            "bob", int(key_id), material, gs2_header="p=tls-server-end-point,,", binding_data=b"x"
        )
        assert await scram_login(c, asking) == {"response_type": "AUTH_ERR"}


async def test_tokens_of_a_key_session_end_with_the_key(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """A token made by a key session, and the session it logs in, rest on the key: they
    end when it is deleted, and a token never outlives the key's expiry (attack helper:
    they used to)."""
    async with daemon.admin() as admin:
        expires = {"$date": int((clock.time() + 600) * 1000)}
        made = await bob_with_key(daemon, admin, expires_at=expires)
        c = await stack.enter_async_context(open_client(daemon.url))
        assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
        late = await c.call("auth.generate_token", 86400, {}, False)
        kept = await c.call("auth.generate_token", 86400, {}, False)
        t = await stack.enter_async_context(open_client(daemon.url))
        done = await t.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": kept})
        assert done["response_type"] == "SUCCESS"
        [mine] = [s for s in await t.call("auth.sessions") if s["current"]]
        assert mine["credentials_data"]["api_key"]["id"] == made["id"]
        clock.advance(601)
        async with daemon.client() as x:
            answer = await x.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": late})
            assert answer == {"response_type": "AUTH_ERR"}
        second = await admin.call("api_key.create", {"name": "two", "username": "bob"})
        d = await stack.enter_async_context(open_client(daemon.url))
        assert (await plain(d, "bob", second["key"]))["response_type"] == "SUCCESS"
        token = await d.call("auth.generate_token", 86400, {}, False)
        e = await stack.enter_async_context(open_client(daemon.url))
        assert (await e.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token}))[
            "response_type"
        ] == "SUCCESS"
        spare = await d.call("auth.generate_token", 86400, {}, False)
        await admin.call("api_key.delete", second["id"])
        for session in (d, e):
            with pytest.raises((ClientError, ConnectionClosed, ConnectionError)):
                await session.call("auth.me", timeout=10)
        async with daemon.client() as x:
            answer = await x.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": spare})
            assert answer == {"response_type": "AUTH_ERR"}


async def test_a_key_session_cannot_extend_or_reset_its_own_key(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
    async with daemon.client() as c:
        assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
        for change in ({"expires_at": None}, {"reset": True}):
            with pytest.raises(ClientError) as err:
                await c.call("api_key.update", made["id"], change)
            assert err.value.errname == "EPERM"
        renamed = await c.call("api_key.update", made["id"], {"name": "renamed"})
        assert renamed["name"] == "renamed"


async def test_enforce_also_guards_reset(daemon: InProcessDaemon) -> None:
    async with daemon.root() as root:
        await root.call("auth.twofactor.update", {"enabled": True})
        await root.call("user.create", {"username": "ops", "password": "pw-ops"})
        await daemon.seed_secret("ops", RFC_SECRET)
        first = await root.call("api_key.create", {"name": "a", "username": "ops"})
        other = await root.call("api_key.create", {"name": "b", "username": "ops"})
        await root.call("auth.twofactor.update", {"enforce": True})
    async with daemon.client() as c:
        assert (await plain(c, "ops", first["key"]))["response_type"] == "SUCCESS"
        with pytest.raises(ClientError) as err:
            await c.call("api_key.update", other["id"], {"reset": True})
        assert err.value.errname == "EACCES"


@pytest.mark.parametrize("name", ["two\nlines", "nul\x00", "rtl\u202eoverride"])
async def test_key_names_are_printable(daemon: InProcessDaemon, name: str) -> None:
    async with daemon.admin() as admin:
        with pytest.raises(ClientError) as err:
            await admin.call("api_key.create", {"name": name})
        assert err.value.code == -32602
        assert err.value.extra[0][0] == "api_key_create.name"


async def test_convert_raw_key_of_another_user_is_as_unknown(daemon: InProcessDaemon) -> None:
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
        await admin.call("user.create", {"username": "nosy", "password": "pw-nosy"})
    async with daemon.client() as c:
        await c.login("nosy", "pw-nosy")
        with pytest.raises(ClientError) as err:
            await c.call("api_key.convert_raw_key", made["key"])
        assert err.value.code == -32602


async def test_a_code_does_not_cut_a_key_session_loose_from_its_key(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon
) -> None:
    """Attack helper: user.verify_twofactor_token (or confirming a new secret) from an API
    key session turned it into a LOGIN_TWOFACTOR session without the key, which then
    outlived the key's deletion and could re-date its own key. It stays an API_KEY
    session now, bound to its key."""
    async with daemon.admin() as admin:
        made = await bob_with_key(daemon, admin)
    await daemon.seed_secret("bob", RFC_SECRET)
    c = await stack.enter_async_context(open_client(daemon.url))
    assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
    assert await c.call("user.verify_twofactor_token", "bob", AROUND_1234567890[0]) is True
    me = await c.call("auth.me")
    assert me["credentials"] == "API_KEY"
    [mine] = [s for s in await c.call("auth.sessions") if s["current"]]
    assert mine["credentials_data"]["api_key"]["id"] == made["id"]
    with pytest.raises(ClientError) as err:
        await c.call("api_key.update", made["id"], {"expires_at": None})
    assert err.value.errname == "EPERM"
    async with daemon.admin() as admin:
        assert await admin.call("api_key.delete", made["id"]) is True
    with pytest.raises((ConnectionClosed, ConnectionError)):  # ended: closed with 1008
        await c.call("auth.me")
    assert c.ws.close_code == 1008


async def test_an_expiring_key_cannot_make_a_key_that_outlives_it(
    stack: contextlib.AsyncExitStack, daemon: InProcessDaemon, clock: FrozenClock
) -> None:
    """Attack helper: a session of a key expiring in 10 minutes made a key that never
    expires. A key session's new keys now expire no later than its own key."""
    async with daemon.admin() as admin:
        expires = int((clock.time() + 600) * 1000)
        made = await bob_with_key(daemon, admin, expires_at={"$date": expires})
    c = await stack.enter_async_context(open_client(daemon.url))
    assert (await plain(c, "bob", made["key"]))["response_type"] == "SUCCESS"
    for later in (None, {"$date": expires + 1000}):
        with pytest.raises(ClientError) as err:
            await c.call("api_key.create", {"name": "escape", "expires_at": later})
        assert err.value.code == -32602
        assert err.value.extra[0][0] == "api_key_create.expires_at", err.value.extra
    kept = await c.call("api_key.create", {"name": "shorter", "expires_at": {"$date": expires}})
    assert kept["expires_at"] == {"$date": expires}
    # A key without expiry may make keys without one (nothing to outlive).
    async with daemon.admin() as admin:
        forever = await admin.call("api_key.create", {"name": "forever", "username": "bob"})
    f = await stack.enter_async_context(open_client(daemon.url))
    assert (await plain(f, "bob", forever["key"]))["response_type"] == "SUCCESS"
    assert (await f.call("api_key.create", {"name": "also forever"}))["expires_at"] is None
