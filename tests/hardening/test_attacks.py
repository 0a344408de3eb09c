"""Regression tests for the findings of an attack session against the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import pytest

from middlewared_2fa.cli.client import ClientError
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import AROUND_1234567890, RFC_SECRET

CODE = AROUND_1234567890[0]


def otp(code: object, i: int) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": i,
        "method": "auth.login_ex_continue",
        "params": [{"mechanism": "OTP_TOKEN", "otp_token": code}],
    }


async def test_batch_size_is_capped(daemon: InProcessDaemon) -> None:
    """A batch of more than 50 requests is one -32600, not thousands of replies."""
    async with daemon.client() as c:
        await c.send_raw("[" + ",".join(["1"] * 4000) + "]")
        reply = await c.recv_raw()
        assert isinstance(reply, dict) and reply["error"]["code"] == -32600
        assert "at most 50" in reply["error"]["data"]["reason"]


async def test_concurrent_codes_cannot_beat_the_retry_budget(daemon: InProcessDaemon) -> None:
    """Codes sent at once are counted one by one: after the fourth wrong code the right one
    no longer logs in."""
    async with daemon.admin() as admin, user_asset(admin, "bob", "bob-pw"):
        await admin.call("auth.twofactor.update", {"enabled": True})
        await daemon.seed_secret("bob", RFC_SECRET)
        async with daemon.client() as c:
            assert (await c.login("bob", "bob-pw"))["response_type"] == "OTP_REQUIRED"
            batch = [otp(f"{i:06d}", i) for i in range(1, 9)] + [otp(CODE, 99)]
            await c.send_raw(json.dumps(batch))
            replies = {r["id"]: r for r in await c.recv_raw()}
            results = [r.get("result", {}).get("response_type") for r in replies.values()]
            assert "SUCCESS" not in results
            assert results.count("OTP_REQUIRED") == 3 and results.count("AUTH_ERR") == 1
            assert sum(1 for r in replies.values() if "error" in r) == 5


@pytest.mark.settings(auth_throttle_after=5)
async def test_concurrent_connections_cannot_beat_the_cool_down(daemon: InProcessDaemon) -> None:
    """Wrong codes from many connections at once start the account's cool-down at the
    threshold (EBUSY after)."""
    async with daemon.admin() as admin, user_asset(admin, "bob", "bob-pw"):
        await admin.call("auth.twofactor.update", {"enabled": True})
        await daemon.seed_secret("bob", RFC_SECRET)
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(daemon.client()) for _ in range(6)]
            for c in clients:
                assert (await c.login("bob", "bob-pw"))["response_type"] == "OTP_REQUIRED"
            for c in clients:
                await c.send_raw(json.dumps([otp(f"{i:06d}", i) for i in range(1, 4)]))
            replies = [r for c in clients for r in await c.recv_raw()]
            checked = [r for r in replies if "result" in r]
            busy = [
                r for r in replies if r.get("error", {}).get("data", {}).get("errname") == "EBUSY"
            ]
            assert len(checked) == 5
            assert len(busy) == 13


@pytest.mark.settings(rate_limit_calls=3)
async def test_logged_in_user_cannot_guess_passwords_freely(daemon: InProcessDaemon) -> None:
    """Login attempts count against the address's limit even on a logged-in session."""
    async with daemon.root() as root, user_asset(root, "eve", "eve-pw"):
        async with daemon.client() as c:
            await c.login("eve", "eve-pw")
            for i in range(2):
                assert (
                    await c.call(
                        "auth.login_ex",
                        {
                            "mechanism": "PASSWORD_PLAIN",
                            "username": "admin",
                            "password": f"guess{i}",
                        },
                    )
                )["response_type"] == "AUTH_ERR"
            with pytest.raises(ClientError) as err:
                await c.call(
                    "auth.login_ex",
                    {"mechanism": "PASSWORD_PLAIN", "username": "admin", "password": "guess"},
                )
            assert err.value.errname == "EBUSY"


async def test_old_session_cannot_reach_a_new_account_of_the_same_name(
    daemon: InProcessDaemon,
) -> None:
    """A session of a renamed account gets EPERM for the new account with its old name."""
    async with daemon.admin() as admin, user_asset(admin, "dave", "dave-pw") as dave:
        async with daemon.client() as old:
            await old.login("dave", "dave-pw")
            await admin.call("user.update", dave["id"], {"username": "dave_old"})
            async with user_asset(admin, "dave", "new-pw"):
                await admin.call("user.renew_2fa_secret", "dave")
                for method in (
                    "user.provisioning_uri",
                    "user.twofactor_config",
                    "user.unset_2fa_secret",
                    "user.renew_2fa_secret",
                ):
                    with pytest.raises(ClientError) as err:
                        await old.call(method, "dave")
                    assert err.value.errname == "EPERM", method


async def test_account_write_cannot_make_a_full_admin(daemon: InProcessDaemon) -> None:
    """ACCOUNT_WRITE cannot grant FULL_ADMIN, to others or itself, nor change an admin."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "acw", "acw-pw", roles=["ACCOUNT_WRITE"]) as acw,
    ):
        await admin.call("user.renew_2fa_secret", "admin")
        async with daemon.client() as c:
            await c.login("acw", "acw-pw")
            attempts = [
                ("user.create", [{"username": "boss", "password": "p", "roles": ["FULL_ADMIN"]}]),
                ("user.update", [acw["id"], {"roles": ["FULL_ADMIN"]}]),
                ("user.update", [1, {"password": "taken-over"}]),
                ("user.update", [1, {"locked": True}]),
                ("user.unset_2fa_secret", ["admin"]),
            ]
            for method, params in attempts:
                with pytest.raises(ClientError) as err:
                    await c.call(method, *params)
                assert err.value.errname == "EPERM", (method, params)
            made = await c.call(
                "user.create", {"username": "helper", "password": "p", "roles": ["ACCOUNT_READ"]}
            )
            await admin.call("user.delete", made["id"])
        assert (await admin.call("user.get_instance", 1))["twofactor_auth_configured"] is True


async def test_infinite_id_is_answered(daemon: InProcessDaemon) -> None:
    """An id that parses to infinity (1e400) gets -32600 instead of no answer at all."""
    async with daemon.client() as c:
        await c.send_raw('{"jsonrpc":"2.0","id":1e400,"method":"core.ping"}')
        reply = await c.recv_raw()
        assert reply["id"] is None and reply["error"]["code"] == -32600


async def test_logout_withdraws_tokens(daemon: InProcessDaemon) -> None:
    """Re-login tokens handed out by a session stop working when it logs out."""
    async with daemon.admin() as c:
        token = await c.call("auth.generate_token")
        await c.call("auth.logout")
    async with daemon.client() as c:
        resp = await c.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": token})
        assert resp == {"response_type": "AUTH_ERR"}


async def test_subscriptions_are_bounded(daemon: InProcessDaemon) -> None:
    """Subscribing twice to an event returns the same id; subscriptions stay few."""
    async with daemon.admin() as c:
        first = await c.call("core.subscribe", "user.query")
        assert await c.call("core.subscribe", "user.query") == first


async def test_locked_or_deleted_user_is_logged_out(daemon: InProcessDaemon) -> None:
    """Locking an account ends its sessions at once: the connection is closed with 1008
    "session ended" (API.md §9)."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "gina", "gina-pw", roles=["FULL_ADMIN"]) as gina,
    ):
        async with daemon.client() as c:
            await c.login("gina", "gina-pw")
            await admin.call("user.update", gina["id"], {"locked": True})
            await asyncio.wait_for(c.closed.wait(), 10)
            assert (c.ws.close_code, c.ws.close_reason) == (1008, "session ended")
            with pytest.raises(ConnectionError):
                await c.call("audit.query")


async def _raw_http(daemon: InProcessDaemon, request: bytes) -> bytes:
    port = int(daemon.url.split(":")[2].split("/")[0])

    def go() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request)
            return s.recv(4096)

    return await asyncio.to_thread(go)


def _upgrade(host: str, origin: str, extra: str = "") -> bytes:
    return (
        f"GET /api/current HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n{extra}\r\n"
    ).encode()


async def test_dns_rebinding_origin_is_refused(daemon: InProcessDaemon) -> None:
    """An Origin that matches a foreign Host header (DNS rebinding) is refused with 403,
    while the daemon's own loopback origin is accepted."""
    port = daemon.url.split(":")[2].split("/")[0]
    evil = f"evil.example:{port}"
    refused = await _raw_http(daemon, _upgrade(evil, f"http://{evil}"))
    assert refused.startswith(b"HTTP/1.1 403")
    own = f"127.0.0.1:{port}"
    accepted = await _raw_http(daemon, _upgrade(own, f"http://{own}"))
    assert accepted.startswith(b"HTTP/1.1 101")


async def test_odd_http_requests_are_not_server_errors(daemon: InProcessDaemon) -> None:
    """Two Origin headers are 400; a NUL or an overlong name under /ui/ is 404."""
    port = daemon.url.split(":")[2].split("/")[0]
    own = f"127.0.0.1:{port}"
    dup = await _raw_http(daemon, _upgrade(own, f"http://{own}", f"Origin: http://{own}\r\n"))
    assert dup.startswith(b"HTTP/1.1 400")
    nul = await _raw_http(daemon, b"GET /ui/%00 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert nul.startswith(b"HTTP/1.1 404")
    long = await _raw_http(daemon, b"GET /ui/" + b"a" * 300 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert long.startswith(b"HTTP/1.1 404")


@pytest.mark.settings(host="0.0.0.0")
async def test_wildcard_listener_accepts_the_address_it_was_reached_on(
    daemon: InProcessDaemon,
) -> None:
    """New-user helper: with host 0.0.0.0, the UI opened by the machine's IP could not
    open its socket (Origin http://IP:PORT refused). The address the connection arrived
    on is now one of the daemon's own hosts; a rebound name reaching that same address is
    still refused (its Host is the name), and so is an IP it was not reached on."""
    port = int(daemon.url.split(":")[2].split("/")[0])

    def send(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.2", port), timeout=10) as s:
            s.sendall(request)
            return s.recv(4096)

    here = f"127.0.0.2:{port}"
    accepted = await asyncio.to_thread(send, _upgrade(here, f"http://{here}"))
    assert accepted.startswith(b"HTTP/1.1 101"), accepted
    for host in (f"evil.example:{port}", f"127.0.0.3:{port}"):
        refused = await asyncio.to_thread(send, _upgrade(host, f"http://{host}"))
        assert refused.startswith(b"HTTP/1.1 403"), (host, refused)
