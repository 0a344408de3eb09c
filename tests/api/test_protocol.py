"""JSON-RPC 2.0 envelope, error shapes, limits and the HTTP side of the listener (API.md §1-2)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from middlewared_2fa.cli.client import ClientError, ConnectError, open_client
from tests.helpers.daemon import InProcessDaemon

DATA_KEYS = {"error", "errname", "reason", "trace", "extra"}


def http_url(daemon: InProcessDaemon, path: str) -> str:
    return daemon.url.replace("ws://", "http://").replace("/api/current", path)


async def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    def fetch() -> tuple[int, dict[str, str], bytes]:
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(url, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    return await asyncio.to_thread(fetch)


async def test_parse_error_has_null_id(daemon: InProcessDaemon) -> None:
    """Text that is not JSON gets -32700 with id null and the five data keys."""
    async with daemon.client() as c:
        await c.send_raw("{not json")
        reply = await c.recv_raw()
        assert reply["id"] is None
        assert reply["error"]["code"] == -32700
        assert reply["error"]["message"] == "Parse error"
        assert set(reply["error"]["data"]) == DATA_KEYS


async def test_nan_is_not_json(daemon: InProcessDaemon) -> None:
    """Python's NaN extension is refused as a parse error, not accepted as a number."""
    async with daemon.client() as c:
        await c.send_raw('{"jsonrpc":"2.0","id":1,"method":"core.ping","params":[NaN]}')
        assert (await c.recv_raw())["error"]["code"] == -32700


@pytest.mark.parametrize(
    "message",
    [
        '"just a string"',
        "42",
        '{"id":1,"method":"core.ping"}',
        '{"jsonrpc":"1.0","id":1,"method":"core.ping"}',
        '{"jsonrpc":"2.0","id":1,"method":5}',
        '{"jsonrpc":"2.0","id":1,"method":"user.query","params":"admin"}',
        '{"jsonrpc":"2.0","id":1,"method":"core.ping","params":7}',
        '{"jsonrpc":"2.0","id":{"a":1},"method":"core.ping"}',
    ],
)
async def test_invalid_request(daemon: InProcessDaemon, message: str) -> None:
    """Anything that is not a JSON-RPC 2.0 request object is -32600 (JSON-RPC 2.0 §4, §5.1)."""
    async with daemon.client() as c:
        await c.send_raw(message)
        reply = await c.recv_raw()
        assert reply["error"]["code"] == -32600
        assert reply["error"]["message"] == "Invalid Request"
        assert set(reply["error"]["data"]) == DATA_KEYS
        assert await c.call("core.ping") == "pong"


async def test_invalid_request_keeps_a_valid_id(daemon: InProcessDaemon) -> None:
    """An invalid request whose id is readable is answered with that id."""
    async with daemon.client() as c:
        await c.send_raw('{"jsonrpc":"2.0","id":"abc","method":"core.ping","params":"x"}')
        reply = await c.recv_raw()
        assert reply["id"] == "abc"
        assert reply["error"]["code"] == -32600


@pytest.mark.parametrize("request_id", [1, "1", 0, -5, 2.5, "x" * 50, None])
async def test_id_is_echoed_with_its_type(daemon: InProcessDaemon, request_id: object) -> None:
    """The reply carries the request's id exactly as received, type included."""
    async with daemon.client() as c:
        await c.send_raw(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "core.ping"}))
        reply = await c.recv_raw()
        assert reply == {"jsonrpc": "2.0", "id": request_id, "result": "pong"}
        assert type(reply["id"]) is type(request_id)


async def test_method_not_found_message(daemon: InProcessDaemon) -> None:
    """An unknown method is -32601 with exactly "Method does not exist"."""
    async with daemon.client() as c:
        with pytest.raises(ClientError) as err:
            await c.call("no.such_method")
        assert err.value.code == -32601
        assert err.value.message == "Method does not exist"
        assert set(err.value.data) == DATA_KEYS


async def test_notification_runs_without_reply(daemon: InProcessDaemon) -> None:
    """A request without id runs, and nothing is sent back (JSON-RPC 2.0 §4.1)."""
    async with daemon.admin() as c:
        await c.send_raw(
            json.dumps(
                {"jsonrpc": "2.0", "method": "auth.twofactor.update", "params": [{"window": 3}]}
            )
        )
        # The next reply on the connection is the ping's: the notification sent nothing.
        assert await c.call("core.ping") == "pong"
        assert c.unmatched.empty()

        async def updated() -> bool:
            return bool((await c.call("auth.twofactor.config"))["window"] == 3)

        for _ in range(100):
            if await updated():
                break
            await asyncio.sleep(0.02)
        assert await updated()


async def test_batch_mixed(daemon: InProcessDaemon) -> None:
    """A batch answers each request (not notifications) and marks invalid members (§6)."""
    async with daemon.client() as c:
        await c.send_raw(
            json.dumps(
                [
                    {"jsonrpc": "2.0", "id": 1, "method": "core.ping"},
                    {"jsonrpc": "2.0", "method": "core.ping"},
                    {"jsonrpc": "2.0", "id": "b", "method": "nope"},
                    5,
                    {"jsonrpc": "2.0", "id": 3, "method": "auth.me"},
                ]
            )
        )
        reply = await c.recv_raw()
        assert isinstance(reply, list)
        by_id = {r["id"]: r for r in reply if r["id"] is not None}
        assert by_id[1]["result"] == "pong"
        assert by_id["b"]["error"]["code"] == -32601
        assert by_id[3]["error"]["code"] == -32001
        assert by_id[3]["error"]["data"]["errname"] == "ENOTAUTHENTICATED"
        nulls = [r for r in reply if r["id"] is None]
        assert [r["error"]["code"] for r in nulls] == [-32600]
        assert len(reply) == 4


async def test_batch_of_notifications_gets_no_reply(daemon: InProcessDaemon) -> None:
    """A batch of only notifications gets nothing back."""
    async with daemon.client() as c:
        await c.send_raw(
            json.dumps(
                [
                    {"jsonrpc": "2.0", "method": "core.ping"},
                    {"jsonrpc": "2.0", "method": "core.ping"},
                ]
            )
        )
        assert await c.call("core.ping") == "pong"
        await asyncio.sleep(0.1)
        assert c.unmatched.empty()


async def test_empty_batch(daemon: InProcessDaemon) -> None:
    """``[]`` gets a single -32600 error, not an array."""
    async with daemon.client() as c:
        await c.send_raw("[]")
        reply = await c.recv_raw()
        assert isinstance(reply, dict)
        assert reply["error"]["code"] == -32600
        assert reply["id"] is None


async def test_by_name_params(daemon: InProcessDaemon) -> None:
    """Params given as an object are matched to parameter names (ext)."""
    async with daemon.admin() as c:
        reply = await c.request(
            "user.query", {"filters": [["username", "=", "admin"]], "options": {"get": True}}
        )
        assert reply["result"]["username"] == "admin"
        reply = await c.request("user.query", {"nope": 1})
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"]["extra"][0][0] == "nope"


async def test_too_many_positional_params(daemon: InProcessDaemon) -> None:
    """More positional params than the method has is -32602 naming the method."""
    async with daemon.client() as c:
        with pytest.raises(ClientError) as err:
            await c.call("core.ping", 1)
        assert err.value.code == -32602
        assert err.value.extra == [["core.ping", err.value.extra[0][1], 22]]


async def test_validation_error_shape(daemon: InProcessDaemon) -> None:
    """-32602 carries EINVAL, [attribute, message, errno] triples and the joined reason."""
    async with daemon.admin() as c:
        with pytest.raises(ClientError) as err:
            await c.call("auth.twofactor.update", {"window": -1})
        e = err.value
        assert e.code == -32602
        assert e.message == "Invalid params"
        assert e.errno == 22 and e.errname == "EINVAL"
        assert e.extra == [
            ["auth_twofactor_update.window", "Input should be greater than or equal to 0", 22]
        ]
        assert e.reason == (
            "[EINVAL] auth_twofactor_update.window: Input should be greater than or equal to 0"
        )
        assert e.data["trace"] is None


async def test_unauthenticated_call_error(daemon: InProcessDaemon) -> None:
    """A method that needs a login answers -32001 ENOTAUTHENTICATED (207)."""
    async with daemon.client() as c:
        with pytest.raises(ClientError) as err:
            await c.call("user.query")
        assert (err.value.code, err.value.errno, err.value.reason) == (
            -32001,
            207,
            "Not authenticated",
        )


async def test_unauthenticated_message_limit(daemon: InProcessDaemon) -> None:
    """Before login a message over 8 KiB closes the connection with 1009."""
    async with daemon.client() as c:
        await c.send_raw(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "core.ping", "params": ["x" * 9000]})
        )
        await asyncio.wait_for(c.closed.wait(), 10)
        assert c.ws.close_code == 1009
    async with daemon.client() as other:
        assert await other.call("core.ping") == "pong"


async def test_authenticated_message_limit(daemon: InProcessDaemon) -> None:
    """After login 64 KiB are allowed: 20 KiB is answered, 70 KiB closes with 1009."""
    async with daemon.admin() as c:
        reply = await c.request("core.ping", ["x" * 20000])
        assert reply["error"]["code"] == -32602
        await c.send_raw(
            json.dumps({"jsonrpc": "2.0", "id": 9, "method": "core.ping", "params": ["x" * 70000]})
        )
        await asyncio.wait_for(c.closed.wait(), 10)
        assert c.ws.close_code == 1009


@pytest.mark.settings(auth_failure_delay=3.0)
# Slow calls that stay running: wrong passwords, each hashed at once (no hashing queue)
# and delayed, not throttled.
@pytest.mark.settings(
    password_verifications=64, auth_throttle_after=100, auth_lock_after=100, auth_failure_delay=3
)
async def test_concurrency_limit(daemon: InProcessDaemon) -> None:
    """Past 10 running and 20 queued calls on one connection, a call fails with -32000."""
    async with daemon.client() as c:
        login = {"mechanism": "PASSWORD_PLAIN", "username": "nobody", "password": "x"}
        for i in range(40):
            await c.send_raw(
                json.dumps(
                    {"jsonrpc": "2.0", "id": i, "method": "auth.login_ex", "params": [login]}
                )
            )
        # Every request is answered; the ten beyond the slots, and only they, at admission.
        replies = [await c.recv_raw(timeout=60) for _ in range(40)]
        refused = [r for r in replies if r.get("error", {}).get("code") == -32000]
        assert all(r["error"]["message"] == "Too many concurrent calls" for r in refused)
        assert sorted(r["id"] for r in refused) == list(range(30, 40))
        assert sorted(r["id"] for r in replies) == list(range(40))


async def test_healthz_and_redirect(daemon: InProcessDaemon) -> None:
    """GET /healthz is 200 OK, / redirects to /ui/, unknown paths are 404."""
    status, _, body = await http_get(http_url(daemon, "/healthz"))
    assert (status, body) == (200, b"OK\n")
    status, headers, _ = await http_get(http_url(daemon, "/"))
    assert status == 302 and headers["Location"] == "/ui/"
    status, _, _ = await http_get(http_url(daemon, "/nope"))
    assert status == 404
    status, headers, _ = await http_get(http_url(daemon, "/ui"))
    assert status == 302 and headers["Location"] == "/ui/"
    status, _, _ = await http_get(http_url(daemon, "/ui/../../etc/passwd"))
    assert status == 404


async def test_websocket_on_other_path_is_404(daemon: InProcessDaemon) -> None:
    """A WebSocket upgrade anywhere but /api/current is refused with 404."""
    with pytest.raises(ConnectError, match="404"):
        async with open_client(daemon.url.replace("/api/current", "/api/v1")):
            pass


async def test_foreign_origin_is_refused(daemon: InProcessDaemon) -> None:
    """A browser Origin that is not the daemon's own is refused with 403."""
    with pytest.raises(ConnectError, match="403"):
        async with open_client(daemon.url, origin="http://evil.example"):
            pass
    own = daemon.url.replace("ws://", "http://").replace("/api/current", "")
    async with open_client(daemon.url, origin=own) as c:
        assert await c.call("core.ping") == "pong"


@pytest.mark.settings(allowed_origins=["http://127.0.0.1:9999"])
async def test_allowed_origin(daemon: InProcessDaemon) -> None:
    """An origin from allowed_origins may connect."""
    async with open_client(daemon.url, origin="http://127.0.0.1:9999") as c:
        assert await c.call("core.ping") == "pong"


async def test_get_methods_depends_on_session(daemon: InProcessDaemon) -> None:
    """core.get_methods lists only what the session may call, with JSON Schemas: root and
    FULL_ADMIN every public method of the registry, an unauthenticated session exactly
    those that need no login."""
    public = {name for name, method in daemon.mw.methods.items() if not method.spec.private}
    async with daemon.root() as root:
        everything = await root.call("core.get_methods")
    assert set(everything) == public
    before_login = {n for n, info in everything.items() if not info["authentication_required"]}
    assert {"core.ping", "auth.login_ex"} <= before_login
    async with daemon.client() as c:
        assert set(await c.call("core.get_methods")) == before_login
    async with daemon.admin() as c:
        methods = await c.call("core.get_methods")
        assert methods == everything
        update = methods["auth.twofactor.update"]
        assert update["roles"] == ["SYSTEM_SECURITY_WRITE"]
        assert update["authentication_required"] is True
        assert "auth_twofactor_update" in update["accepts"]["properties"]


async def test_set_options_is_accepted(daemon: InProcessDaemon) -> None:
    """core.set_options accepts TrueNAS client options and returns null."""
    async with daemon.client() as c:
        assert (
            await c.call("core.set_options", {"legacy_jobs": False, "py_exceptions": True}) is None
        )


FAILING_PLUGIN = '''
from __future__ import annotations
from middlewared_2fa.api import CallContext, Service, api_method
from middlewared_2fa.schema.common import NoArgs, StrResult

class BrokenService(Service):
    class Config:
        namespace = "broken"

    @api_method(NoArgs, StrResult, auth="none")
    async def explode(self, ctx: CallContext) -> str:
        """Raise an unexpected exception."""
        raise RuntimeError("internal detail 0xSECRET must not leak")
'''


@pytest.fixture
def broken_plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "broken.py").write_text(FAILING_PLUGIN)
    return folder


async def test_internal_error_hides_exception(
    daemon: InProcessDaemon, broken_plugin_dir: Path
) -> None:
    """A bug answers -32603 without exception text; --debug adds the trace."""
    await daemon.restart(plugins_dirs=[broken_plugin_dir])
    async with daemon.client() as c:
        reply = await c.request("broken.explode")
        assert reply["error"]["code"] == -32603
        assert "0xSECRET" not in json.dumps(reply)
        assert reply["error"]["data"]["trace"] is None
        assert set(reply["error"]["data"]) == DATA_KEYS
        assert await c.call("core.ping") == "pong"
    await daemon.restart(debug=True)
    async with daemon.client() as c:
        reply = await c.request("broken.explode")
        assert reply["error"]["code"] == -32603
        assert reply["error"]["data"]["trace"]["class"] == "RuntimeError"


async def test_connection_survives_binary_frames(daemon: InProcessDaemon) -> None:
    """A binary frame with bad UTF-8 is a parse error, and the connection stays open."""
    async with daemon.client() as c:
        await c.send_raw(b"\xff\xfe\x00")
        assert (await c.recv_raw())["error"]["code"] == -32700
        assert await c.call("core.ping") == "pong"


async def test_deeply_nested_json(daemon: InProcessDaemon) -> None:
    """Deeply nested JSON under the size limit does not crash the daemon."""
    async with daemon.client() as c:
        await c.send_raw("[" * 4000 + "]" * 4000)
        reply = await c.recv_raw()
        assert reply["error"]["code"] in (-32700, -32600) or isinstance(reply, list)
        assert await c.call("core.ping") == "pong"


async def test_closed_connection_during_call(daemon: InProcessDaemon) -> None:
    """A client that disconnects while its call runs does not disturb the daemon."""
    async with daemon.client() as c:
        await c.send_raw(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "auth.login_ex",
                    "params": [
                        {"mechanism": "PASSWORD_PLAIN", "username": "admin", "password": "bad"}
                    ],
                }
            )
        )
    async with daemon.client() as c:
        assert await c.call("core.ping") == "pong"


async def test_client_cannot_read_after_close(daemon: InProcessDaemon) -> None:
    """Calls on a closed connection raise ConnectionError in the client."""
    async with daemon.client() as c:
        await c.ws.close()
        with pytest.raises((ConnectionError, ConnectionClosed)):
            await c.call("core.ping")
