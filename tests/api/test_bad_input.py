"""Bad input to every registered method never crashes the daemon or answers -32603."""

from __future__ import annotations

import json
from typing import Any

from middlewared_2fa.cli.client import Client
from tests.helpers.daemon import InProcessDaemon

#: Values of every JSON type, plus awkward ones.
BAD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    "",
    "x",
    "☃" * 300,
    "\x00",
    [],
    [None],
    {},
    {"a": None},
    {"mechanism": "PASSWORD_PLAIN"},
    [["id", "=", "x"]],
    [["id", "~", 1]],
    {"get": "yes"},
]
#: Methods that end the session (checked separately) are called last on their connection.
SESSION_ENDING = {"auth.logout", "auth.login_ex", "auth.login", "auth.login_ex_continue"}
ALLOWED_CODES = {-32602, -32001, -32600}


async def _assert_answers(c: Client, method: str, params: Any) -> None:
    reply = await c.request(method, params, timeout=60)
    if "error" in reply:
        code = reply["error"]["code"]
        assert code in ALLOWED_CODES, (method, params, reply)
        data = reply["error"]["data"]
        assert set(data) == {"error", "errname", "reason", "trace", "extra"}
        assert isinstance(data["reason"], str) and data["reason"]
        # pydantic's "Input should be a valid dictionary or instance of UserCreate" named
        # our classes; a user sees the wire's terms only.
        assert "instance of" not in json.dumps(reply["error"]), (method, params, reply)


async def test_wrong_types_for_every_parameter(daemon: InProcessDaemon) -> None:
    """Each parameter of each method, given each JSON type, gets a result or a clean error,
    and the daemon still answers afterwards."""
    async with daemon.root() as root:
        methods = await root.call("core.get_methods")
    # Root is shown every public method of the registry, so every one gets bad input.
    public = {name for name, method in daemon.mw.methods.items() if not method.spec.private}
    assert set(methods) == public
    assert SESSION_ENDING <= public, sorted(SESSION_ENDING - public)
    for name, info in sorted(methods.items()):
        params = list(info["accepts"].get("properties", {}))
        async with daemon.root() as c:
            for bad in BAD_VALUES:
                for position in range(len(params) + 1):
                    if name == "auth.logout":  # as root it would end this connection's session
                        continue
                    positional = [{} for _ in range(position)] + [bad]
                    await _assert_answers(c, name, positional)
                for pname in params:
                    await _assert_answers(c, name, {pname: bad})
            if name not in SESSION_ENDING:
                assert await c.call("core.ping") == "pong"
    async with daemon.admin() as c:
        assert (await c.call("auth.twofactor.config"))["id"] == 1


async def test_garbage_frames(daemon: InProcessDaemon) -> None:
    """Frames that are not requests get -32700/-32600 and the connection stays usable."""
    frames: list[str | bytes] = [
        "",
        " ",
        "null",
        "true",
        "[[]]",
        '{"jsonrpc":"2.0"}',
        "[" * 10 + "]" * 10,
        '{"jsonrpc":"2.0","id":1,"method":"core.ping","params":[],"extra":1}',
        json.dumps({"jsonrpc": "2.0", "id": [1], "method": "core.ping"}),
        b"\x00\x01",
        "\ud800".encode("utf-8", "surrogatepass"),
    ]
    async with daemon.client() as c:
        for frame in frames:
            await c.send_raw(frame)
        replies = [await c.recv_raw() for _ in range(len(frames) - 1)]
        assert await c.call("core.ping") == "pong"
    flat = [r for reply in replies for r in (reply if isinstance(reply, list) else [reply])]
    assert all("error" in r or r.get("result") == "pong" for r in flat)
    assert all(r["error"]["code"] in (-32700, -32600) for r in flat if "error" in r)
