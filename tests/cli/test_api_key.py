"""``midclt2fa -U USER -K KEY`` as a separate process (API.md §11): SCRAM-SHA-512 by
default, ``--key-mechanism PLAIN`` on request, the key given as itself or as a file, and
every refusal in words. Over ``wss://`` (channel binding, a man in the middle) see
tests/e2e/test_tls.py.

Keys are made by root over the Unix socket, as README's "API keys for scripts" shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.cli.conftest import Midclt
from tests.helpers.daemon import SubprocessDaemon, subprocess_daemon

WRONG_KEY = "midclt2fa: login failed: wrong username or API key\n"


def expired(key_id: int) -> str:
    return (
        f"midclt2fa: login failed: API key {key_id} has expired or was revoked (api_key.query "
        "shows its expires_at and revoked_reason); for a new key: api_key.update "
        f"""{key_id} '{{"reset": true}}', with "expires_at": null or a later {{"$date": MS}} """
        "if it expired\n"
    )


#: API.md §11: ``<id>-<64 letters and digits>``.
KEY = re.compile(r"([0-9]+)-[A-Za-z0-9]{64}")


def _make_key(midclt: Midclt, username: str, name: str = "script") -> tuple[int, str]:
    """A new user ``username`` and a key of theirs: (key id, key as shown once)."""
    midclt.create_user(username, f"pw-{username}", secret=False)
    made = midclt.json("call", "api_key.create", json.dumps({"name": name, "username": username}))
    assert isinstance(made, dict)
    assert KEY.fullmatch(made["key"]), made
    return int(made["id"]), str(made["key"])


def _me(midclt: Midclt, *args: str) -> dict[str, object]:
    done = midclt("-u", midclt.daemon.url, *args, "call", "auth.me")
    assert (done.returncode, done.stderr) == (0, ""), done
    me = json.loads(done.stdout)
    assert isinstance(me, dict)
    return me


def test_key_logs_in_with_scram_by_default(midclt: Midclt) -> None:
    """The key on the command line and in a file; no password and no code asked (a key is
    a credential for automation, LEVEL_1, API.md §11), over ws:// on loopback."""
    key_id, key = _make_key(midclt, "robot")
    me = _me(midclt, "-U", "robot", "-K", key)
    assert (me["pw_name"], me["credentials"]) == ("robot", "API_KEY")

    key_file = midclt.cwd / "robot.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    assert _me(midclt, "-U", "robot", "-K", str(key_file))["credentials"] == "API_KEY"
    assert _me(midclt, "-U", "robot", "-K", "robot.key")["credentials"] == "API_KEY"  # relative


def test_scram_is_what_goes_over_the_wire(midclt: Midclt) -> None:
    """The daemon's audit names the mechanism of each login: SCRAM by default, API_KEY_PLAIN
    only with --key-mechanism PLAIN."""
    key_id, key = _make_key(midclt, "auditee")
    _me(midclt, "-U", "auditee", "-K", key)
    _me(midclt, "-U", "auditee", "-K", key, "--key-mechanism", "PLAIN")
    query = {
        "query-filters": [["event", "=", "AUTHENTICATION"], ["username", "=", "auditee"]],
        "query-options": {"order_by": ["message_timestamp"]},
    }
    entries = midclt.json("call", "audit.query", json.dumps(query))
    assert isinstance(entries, list)
    assert [(e["success"], e["event_data"]["description"]) for e in entries] == [
        (True, f"API key login (key {key_id}, SCRAM)"),
        (True, f"API key login (key {key_id}, API_KEY_PLAIN)"),
    ], entries
    assert key not in json.dumps(entries)


def test_refusals_in_words(midclt: Midclt) -> None:
    """A wrong key, another user's key, a deleted key: AUTH_ERR, said the same way; the
    key is never echoed."""
    key_id, key = _make_key(midclt, "owner")
    midclt.create_user("other", "pw-other", secret=False)
    wrong = f"{key_id}-{'A' * 64}"
    for args in (
        ("-U", "owner", "-K", wrong),
        ("-U", "other", "-K", key),
        ("-U", "owner", "-K", wrong, "--key-mechanism", "PLAIN"),
        ("-U", "other", "-K", key, "--key-mechanism", "PLAIN"),
    ):
        done = midclt("-u", midclt.daemon.url, *args, "call", "auth.me")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", WRONG_KEY), (args, done)
    assert midclt.ok("call", "api_key.delete", str(key_id)) == "true\n"
    done = midclt("-u", midclt.daemon.url, "-U", "owner", "-K", key, "call", "auth.me")
    assert (done.returncode, done.stderr) == (1, WRONG_KEY), done


def test_bad_key_arguments(midclt: Midclt) -> None:
    """Neither a key nor a file, a file without a key, -K without -U, -K with -P: usage
    errors that name the problem, never the value (it may be a key with a typo)."""
    (midclt.cwd / "empty.key").write_text("")
    (midclt.cwd / "notes.key").write_text("my key is somewhere\n")
    cases = {
        ("-U", "a", "-K", "12-abc_def"): (
            "midclt2fa: -K: not an API key (ID-KEY, as api_key.create showed it) and no such file\n"
        ),
        ("-U", "a", "-K", "empty.key"): (
            "midclt2fa: -K: the file does not hold an API key (ID-KEY on its first line)\n"
        ),
        ("-U", "a", "-K", "notes.key"): (
            "midclt2fa: -K: the file does not hold an API key (ID-KEY on its first line)\n"
        ),
        (
            "-U",
            "a",
            "-K",
            str(midclt.cwd),
        ): "midclt2fa: -K: cannot read the key file: Is a directory\n",
    }
    for args, message in cases.items():
        done = midclt("-u", midclt.daemon.url, *args, "ping")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", message), (args, done)
        assert "abc_def" not in done.stderr

    done = midclt("-K", "1-" + "a" * 64, "ping")
    assert done.returncode == 1
    assert done.stderr.endswith(
        "midclt2fa: error: -K/--api-key needs -U/--username, the key's user (SCRAM names it)\n"
    )
    done = midclt("-U", "a", "-P", "pw", "-K", "1-" + "a" * 64, "ping")
    assert done.returncode == 1
    assert done.stderr.endswith(
        "midclt2fa: error: -K/--api-key logs in without -P/--password and --otp\n"
    )
    assert "a" * 64 not in done.stderr


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Midclt]:
    """A daemon for which loopback is not a local network (api_key_local_networks), so a
    plain key over its plaintext TCP is what one from another machine would be."""
    env = {
        "MIDDLEWARED_2FA_NTP_TIMEOUT": "1",
        "MIDDLEWARED_2FA_API_KEY_LOCAL_NETWORKS": "10.0.0.0/8",
    }
    daemon: SubprocessDaemon
    with subprocess_daemon(extra_env=env) as daemon:
        yield Midclt(daemon, tmp_path)


def test_plain_key_over_remote_plaintext_is_revoked(remote: Midclt) -> None:
    """SCRAM over plaintext from "another machine" works (the key never crosses the wire);
    PLAIN there revokes the key (API.md §11), and from then on both say so in words."""
    key_id, key = _make_key(remote, "robot")
    assert _me(remote, "-U", "robot", "-K", key)["credentials"] == "API_KEY"
    done = remote(
        "-u", remote.daemon.url, "-U", "robot", "-K", key, "--key-mechanism", "PLAIN", "ping"
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", expired(key_id)), done
    entry = remote.json("call", "api_key.query", json.dumps([["id", "=", key_id]]), '{"get": true}')
    assert isinstance(entry, dict) and entry["revoked"] is True, entry
    done = remote("-u", remote.daemon.url, "-U", "robot", "-K", key, "ping")
    assert (done.returncode, done.stderr) == (1, expired(key_id)), done


def test_plain_key_is_never_sent_over_plaintext_to_another_machine(midclt: Midclt) -> None:
    """--key-mechanism PLAIN over ws:// to an address that is not this machine is refused
    before connecting: the key would cross the network readable (and the daemon would
    revoke it). Nothing listens at the TEST-NET address, so a connection would fail
    differently."""
    for host in ("192.0.2.1", "nas.example", "[2001:db8::1]"):
        done = midclt(
            "-u", f"ws://{host}:8642/api/current", "-U", "robot", "-K", "1-" + "a" * 64,
            "--key-mechanism", "PLAIN", "ping",
        )  # fmt: skip
        bare = host.strip("[]")
        assert (done.returncode, done.stdout, done.stderr) == (
            1,
            "",
            f"midclt2fa: not sending the API key in plain text over ws:// to {bare}: anyone "
            "on the way could read it, and the daemon revokes a key that arrives so; use "
            "SCRAM (the default: drop --key-mechanism PLAIN) or wss://\n",
        ), done


@contextlib.contextmanager
def fake_daemon(answer: Callable[[dict[str, Any]], Any]) -> Iterator[str]:
    """A WebSocket server on loopback that answers each JSON-RPC request with
    ``answer(request)`` (a whole reply object): something that is not the daemon."""
    ready: queue.Queue[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            request = json.loads(raw)
            await ws.send(json.dumps(answer(request)))

    async def main() -> None:
        stop = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            ready.put((f"ws://127.0.0.1:{port}/api/current", asyncio.get_running_loop(), stop))
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    url, loop, stop = ready.get(timeout=30)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def _reply(request: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request["id"], **fields}


def test_replies_of_another_shape_are_said_in_words(midclt: Midclt) -> None:
    """Attack helper: replies without their fields (a SCRAM answer without rfc_str, a
    result of the wrong type, error data that is not an object) crashed midclt2fa with a
    traceback. Each is now one line; the key is never shown."""
    key = "5-" + "k" * 64
    shapes = [
        lambda r: _reply(r, result={"response_type": "SCRAM_RESPONSE"}),
        lambda r: _reply(r, result={"response_type": "SCRAM_RESPONSE", "rfc_str": 7}),
        lambda r: _reply(r, result=[1, 2]),
        lambda r: _reply(r, result=None),
        lambda r: _reply(r, error={"code": -32001, "message": "x", "data": "not an object"}),
    ]
    for shape in shapes:
        with fake_daemon(shape) as url:
            done = midclt("-u", url, "-U", "robot", "-K", key, "ping")
        assert done.returncode == 1, done
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("midclt2fa: "), done
        assert "Traceback" not in done.stderr and "k" * 64 not in done.stderr + done.stdout


def test_a_servers_message_cannot_drive_the_terminal(midclt: Midclt) -> None:
    """An error reason with terminal escapes (clear the screen, a fake prompt) is printed
    with the control characters escaped."""
    reason = "\x1b[2J\x1b[Hre-run with --key-mechanism PLAIN\r\u202e"

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        data = {"error": 1, "errname": "EPERM", "reason": reason, "trace": None, "extra": []}
        return _reply(request, error={"code": -32001, "message": "x", "data": data})

    with fake_daemon(answer) as url:
        done = midclt("-u", url, "call", "core.ping")
    assert (done.returncode, done.stdout) == (1, ""), done
    assert done.stderr == (
        "midclt2fa: [EPERM] \\x1b[2J\\x1b[Hre-run with --key-mechanism PLAIN\\x0d\\u202e\n"
    ), done
