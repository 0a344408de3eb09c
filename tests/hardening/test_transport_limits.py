"""Transport limits of API.md §1 attacked on the wire: connection caps (503 before the
handshake, per address, in all, per Unix uid), the open-files limit, and HTTP methods
(405 with ``Allow: GET, HEAD``; HEAD without a body)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

import middlewared_2fa.server as server_module
from middlewared_2fa.cli.client import open_client
from tests.helpers.daemon import (
    ADMIN_PASSWORD,
    InProcessDaemon,
    SubprocessDaemon,
    short_tempdir,
    start_subprocess_daemon,
    wait_until,
)

#: Connection attempts opened at once: enough to race the daemon, few enough for a
#: slow two-core machine.
BATCH = 50
REQUEST = "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.fixture(autouse=True)
def _enough_file_descriptors() -> None:
    # The test process holds both ends of every loopback connection of the in-process
    # daemon, and the floods open about a thousand.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))


class Flood:
    """WebSocket connection attempts: the accepted ones are held open until :meth:`close`.

    ``outcomes`` counts each attempt's result: ``"open"``, the HTTP status of a refused
    handshake (e.g. ``503``), or ``"reset"`` (the connection was dropped unanswered).
    """

    def __init__(self, url: str, **connect_kwargs: Any) -> None:
        self.url = url
        self.kwargs = {"compression": None, "open_timeout": 60, **connect_kwargs}
        self.held: list[ClientConnection] = []
        self.outcomes: dict[str | int, int] = {}

    async def attempt(self) -> str | int:
        try:
            ws = await connect(self.url, **self.kwargs)
        except InvalidStatus as exc:
            outcome: str | int = exc.response.status_code
        except (InvalidHandshake, OSError, EOFError):
            outcome = "reset"
        else:
            self.held.append(ws)
            outcome = "open"
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcome

    async def run(self, attempts: int, between: Any = None, batch: int = BATCH) -> None:
        """``attempts`` attempts in concurrent batches of ``batch``; ``between()`` is
        awaited after each batch."""
        for start in range(0, attempts, batch):
            await asyncio.gather(*(self.attempt() for _ in range(min(batch, attempts - start))))
            if between is not None:
                await between()

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.held), return_exceptions=True)
        self.held.clear()


@contextlib.asynccontextmanager
async def flood(url: str, **connect_kwargs: Any) -> AsyncIterator[Flood]:
    f = Flood(url, **connect_kwargs)
    try:
        yield f
    finally:
        await f.close()


def _limits(daemon: InProcessDaemon) -> server_module.ConnectionLimits:
    assert daemon.daemon is not None
    return daemon.daemon.limits


async def test_flood_from_one_address_is_refused_with_503(
    daemon: InProcessDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 connection attempts from 127.0.0.1: those beyond the per-address cap (50)
    get 503, a logged-in client keeps being answered, and once the flood is closed new
    connections are accepted again; no descriptor runs out."""
    caplog.set_level(logging.WARNING)
    cap = daemon.settings.max_connections_per_address
    assert cap == 50  # the default of API.md §1
    async with daemon.admin() as admin, flood(daemon.url) as f:

        async def still_served() -> None:
            assert await admin.call("core.ping") == "pong"

        await f.run(1000, between=still_served)
        assert f.outcomes == {"open": cap - 1, 503: 1000 - (cap - 1)}
        await f.close()
        await wait_until(lambda: _limits(daemon).count("127.0.0.1") == 1)
        await f.run(cap)  # the slots of the refused and closed connections are free
        assert f.outcomes == {"open": 2 * (cap - 1), 503: 1000 - (cap - 1) + 1}
        await still_served()
    assert "refusing connections from 127.0.0.1" in caplog.text  # the log is captured
    assert "Too many open files" not in caplog.text


@pytest.mark.settings(max_connections=3, max_connections_per_address=2)
async def test_total_cap_across_addresses(daemon: InProcessDaemon) -> None:
    """Connections from 127.0.0.2 and 127.0.0.3 count per address and in all; beyond
    either cap the handshake is refused with 503, while root on the Unix socket is never
    capped."""
    async with (
        flood(daemon.url, local_addr=("127.0.0.2", 0)) as two,
        flood(daemon.url, local_addr=("127.0.0.3", 0)) as three,
    ):
        assert [await two.attempt() for _ in range(3)] == ["open", "open", 503]  # per address
        assert [await three.attempt() for _ in range(2)] == ["open", 503]  # 3 in all
        async with daemon.root() as root, daemon.root() as root2:
            assert await root.call("core.ping") == await root2.call("core.ping") == "pong"
        await two.held.pop().close()
        await wait_until(lambda: _limits(daemon).count() == 2)
        assert await three.attempt() == "open"
        assert await two.attempt() == 503


@pytest.mark.settings(max_connections_per_address=5)
async def test_refused_and_failed_connections_free_their_slots(daemon: InProcessDaemon) -> None:
    """Plain HTTP requests, handshakes that fail or are abandoned half-way, sockets that
    send nothing, refused and closed WebSocket connections all give their slot back."""
    port = int(daemon.url.split(":")[2].split("/")[0])
    bad_key = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")

    def misbehave() -> None:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                pass  # connects, sends nothing
            for request, wait in (
                (REQUEST.format(method="GET", path="/healthz", extra=""), True),
                (REQUEST.format(method="GET", path="/api/current", extra=bad_key), True),
                (REQUEST.format(method="GET", path="/api/current", extra=UPGRADE), False),
            ):
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(request.encode())
                    if wait:  # else: hang up before the answer
                        assert s.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.1 400"))

    async with flood(daemon.url) as f:
        await f.run(10)  # 5 held open, 5 refused
        assert f.outcomes == {"open": 5, 503: 5}
        await f.close()
        await asyncio.to_thread(misbehave)
        limits = _limits(daemon)
        await wait_until(lambda: limits.count() == 0 and limits.sockets == 0)
        await f.run(6)
        assert f.outcomes == {"open": 10, 503: 6}


@pytest.mark.settings(max_connections_per_address=2)
async def test_untrusted_unix_peers_are_capped_per_uid(
    daemon: InProcessDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Unix peer that is neither root nor the daemon's user counts against the cap of
    its uid, apart from TCP clients; the trusted peer is never capped."""
    path = str(daemon.settings.socket_path)

    async def unix_attempt(held: list[ClientConnection]) -> str | int:
        try:
            held.append(await unix_connect(path, uri="ws://localhost/api/current"))
        except InvalidStatus as exc:
            return exc.response.status_code
        return "open"

    held: list[ClientConnection] = []
    async with daemon.root() as root:  # trusted: not counted
        monkeypatch.setattr(server_module, "_peer_uid", lambda ws: 4242)
        try:
            assert [await unix_attempt(held) for _ in range(3)] == ["open", "open", 503]
            assert _limits(daemon).count("unix:4242") == 2
            async with flood(daemon.url) as tcp:
                assert [await tcp.attempt() for _ in range(2)] == ["open", "open"]
        finally:
            monkeypatch.undo()
            await asyncio.gather(*(ws.close() for ws in held))
        more = [await unix_attempt(held) for _ in range(5)]  # trusted again
        assert more == ["open"] * 5
        await asyncio.gather(*(ws.close() for ws in held))
        assert await root.call("core.ping") == "pong"


# -- the open-files limit (subprocess: its limits are its own) --------------------------

#: Runs the daemon with RLIMIT_NOFILE soft 128, hard 320 (exec: same PID, same group).
LOW_LIMIT = (
    "import os, resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 320))\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _log(d: SubprocessDaemon) -> str:
    return Path(d.base / "daemon.log").read_text()


@pytest.fixture
def low_limit_daemon() -> Iterator[SubprocessDaemon]:
    base = short_tempdir()
    d = start_subprocess_daemon(
        base,
        prefix=[sys.executable, "-c", LOW_LIMIT],
        extra_env={"MIDDLEWARED_2FA_MAX_CONNECTIONS_PER_ADDRESS": "1000"},
    )
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_flood_never_exhausts_descriptors(low_limit_daemon: SubprocessDaemon) -> None:
    """With a low open-files limit the daemon raises its soft limit to the hard one and
    keeps max_connections below it: 600 connection attempts are all answered (accepted
    and held up to the lowered cap, then refused or reset), a logged-in client is still served,
    and "Too many open files" never appears in the log."""
    d = low_limit_daemon
    lowered = re.search(r"max_connections 1000 lowered to (\d+): .* limit is (\d+)", _log(d))
    assert lowered is not None, _log(d)[-2000:]
    cap, soft = int(lowered[1]), int(lowered[2])
    assert soft == 320  # raised from 128 to the hard limit
    assert 128 < cap < soft
    async with open_client(d.url) as admin:
        assert (await admin.login("admin", ADMIN_PASSWORD))["response_type"] == "SUCCESS"
        async with flood(d.url) as f:

            async def still_served() -> None:
                assert await admin.call("core.ping") == "pong"

            # Batches of 150 beyond the cap: more sockets than the limit leaves room for.
            await f.run(600, between=still_served, batch=150)
            assert f.outcomes["open"] == cap - 1
            assert set(f.outcomes) <= {"open", 503, "reset"}
            assert f.outcomes.get(503, 0) > 0
        async with flood(d.url) as again:  # the flood's slots are freed once it closes

            async def accepted() -> bool:
                return await again.attempt() == "open"

            await wait_until(accepted)
            assert await admin.call("core.ping") == "pong"
    log = _log(d)
    assert "Too many open files" not in log, log[-4000:]


# -- HTTP methods -------------------------------------------------------------------------


async def _raw(daemon: InProcessDaemon, request: str) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` and read the whole answer (the daemon closes after it):
    (status line, headers with lower-case names, body)."""
    port = int(daemon.url.split(":")[2].split("/")[0])

    def go() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(request.encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    answer = await asyncio.to_thread(go)
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "TRACE", "OPTIONS", "PATCH"])
async def test_other_methods_are_405(daemon: InProcessDaemon, method: str) -> None:
    """Any method but GET and HEAD is answered 405 with ``Allow: GET, HEAD`` on every
    path, with or without a body, and as a WebSocket upgrade."""
    requests = [
        REQUEST.format(method=method, path=path, extra="")
        for path in ("/ui/", "/ui/index.html", "/healthz", "/", "/nowhere")
    ]
    requests += [
        REQUEST.format(method=method, path="/api/current", extra=UPGRADE),
        REQUEST.format(method=method, path="/ui/", extra="Content-Length: 7\r\n") + "a=1&b=2",
        REQUEST.format(method=method, path="/healthz", extra="Transfer-Encoding: chunked\r\n")
        + "7\r\na=1&b=2\r\n0\r\n\r\n",
    ]
    for request in requests:
        status, headers, _ = await _raw(daemon, request)
        assert status == "HTTP/1.1 405 Method Not Allowed", request
        assert headers["allow"] == "GET, HEAD", request
    async with daemon.client() as c:  # and the daemon is none the worse
        assert await c.call("core.ping") == "pong"


@pytest.mark.parametrize("path", ["/ui/", "/healthz", "/"])
async def test_head_is_get_without_a_body(daemon: InProcessDaemon, path: str) -> None:
    """HEAD answers what GET answers (status, Content-Length) with an empty body."""
    get_status, get_headers, get_body = await _raw(
        daemon, REQUEST.format(method="GET", path=path, extra="")
    )
    status, headers, body = await _raw(daemon, REQUEST.format(method="HEAD", path=path, extra=""))
    assert status == get_status
    assert status.startswith("HTTP/1.1 302" if path == "/" else "HTTP/1.1 200")
    assert body == b""
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    if path == "/ui/":
        assert len(get_body) > 0
