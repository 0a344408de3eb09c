"""Bug case C25: by-position and by-name params, wrong argument counts and params that are
neither (API.md §2): array and object both work, a wrong count is -32602, params that are
not an array or an object are -32600; never -32603 and never a closed connection.
"""

from __future__ import annotations

import json
from typing import Any

from middlewared_2fa.cli.client import Client
from tests.api.bug_case_helpers import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    StoredTotp,
    stored_totp,
)
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import RFC_SECRET

OPTIONS = {"interval": 30, "otp_digits": 6}


def error_of(reply: dict[str, Any]) -> dict[str, Any]:
    """The ``error`` member of a reply, after checking its shape (API.md §2)."""
    assert "result" not in reply, reply
    error = reply["error"]
    assert set(error["data"]) == {"error", "errname", "reason", "trace", "extra"}, error
    assert error["data"]["trace"] is None
    return dict(error)


def invalid_params_attributes(reply: dict[str, Any]) -> list[str]:
    error = error_of(reply)
    assert (error["code"], error["message"]) == (INVALID_PARAMS, "Invalid params"), error
    assert (error["data"]["error"], error["data"]["errname"]) == (22, "EINVAL")
    return [e[0] for e in error["data"]["extra"]]


async def raw_request(client: Client, request_id: str, method: str, params: Any) -> dict[str, Any]:
    """Send one request frame with any ``params`` value as is; the reply frame."""
    await client.send_raw(
        json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    )
    reply = await client.recv_raw()
    assert isinstance(reply, dict) and reply.get("id") == request_id, reply
    return reply


async def test_c25_verify_with_array_and_object_params(daemon: InProcessDaemon) -> None:
    """verify_twofactor_token gives the same answer with params ['user1', '005924'] and
    {'username': 'user1', 'token': '005924'}: true."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        by_position = await admin.request("user.verify_twofactor_token", ["user1", "005924"])
        assert by_position["result"] is True
        # '005924' is used up now; re-seed so the by-name call is judged on its own.
        await daemon.seed_secret("user1", RFC_SECRET)
        by_name = await admin.request(
            "user.verify_twofactor_token", {"username": "user1", "token": "005924"}
        )
        assert by_name["result"] is True


async def test_c25_renew_array_object_and_defaults(daemon: InProcessDaemon) -> None:
    """renew_2fa_secret works with ['user1', options], with ['user1'] (options default to
    the stored values) and with {'username', 'twofactor_options'} by name."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        replies = [
            await admin.request("user.renew_2fa_secret", ["user1", OPTIONS]),
            await admin.request("user.renew_2fa_secret", ["user1"]),
            await admin.request(
                "user.renew_2fa_secret", {"username": "user1", "twofactor_options": OPTIONS}
            ),
            await admin.request("user.renew_2fa_secret", {"username": "user1"}),
        ]
        uris = set()
        for reply in replies:
            config = reply["result"]["twofactor_config"]
            assert (config["interval"], config["otp_digits"]) == (30, 6)
            uris.add(config["provisioning_uri"])
        assert len(uris) == 4  # each call renewed the secret


async def test_c25_wrong_argument_counts_are_invalid_params(daemon: InProcessDaemon) -> None:
    """Too many positional params (['user1', {}, 'extra']), too few (verify with ['user1'])
    and unknown or missing names are -32602; nothing is renewed."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        renew, verify = "user.renew_2fa_secret", "user.verify_twofactor_token"
        # Too many positional params are reported on the method itself (no parameter
        # name to root them at); everything else on the parameter concerned.
        cases: list[tuple[str, Any, list[str]]] = [
            (renew, ["user1", {}, "extra"], [renew]),
            (renew, ["user1", OPTIONS, None, None], [renew]),
            (renew, [], ["username"]),
            (renew, {"username": "user1", "extra": 1}, ["extra"]),
            (renew, {"twofactor_options": OPTIONS}, ["username"]),
            (verify, ["user1"], ["token"]),
            (verify, ["user1", "005924", "x"], [verify]),
            (verify, {"username": "user1"}, ["token"]),
        ]
        for method, params, attributes in cases:
            reply = await admin.request(method, params)
            assert invalid_params_attributes(reply) == attributes, (method, params)
        assert await stored_totp(daemon, "user1") == StoredTotp(RFC_SECRET, 30, 6)
        # No verify ran: the code is still unused.
        assert await admin.call("user.verify_twofactor_token", "user1", "005924") is True


async def test_c25_params_not_array_or_object_are_invalid_request(
    daemon: InProcessDaemon,
) -> None:
    """params given as a bare string "user1" (or a number, true or null) is -32600 with the
    request's id echoed, and the connection keeps working."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET)
        for i, params in enumerate(("user1", 42, True, None)):
            for method in ("user.renew_2fa_secret", "user.verify_twofactor_token"):
                request_id = f"c25-{method}-{i}"
                error = error_of(await raw_request(admin, request_id, method, params))
                assert (error["code"], error["message"]) == (INVALID_REQUEST, "Invalid Request")
                assert error["data"]["error"] == 22
        assert await admin.call("core.ping") == "pong"
        assert await stored_totp(daemon, "user1") == StoredTotp(RFC_SECRET, 30, 6)
        assert await admin.call("user.verify_twofactor_token", "user1", "005924") is True
