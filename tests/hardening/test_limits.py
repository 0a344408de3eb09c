"""Connection limits under load: many connections, clients that do not read, idle ones."""

from __future__ import annotations

import asyncio
import json
import resource

import pytest
from websockets.asyncio.client import unix_connect

from middlewared_2fa.cli.client import open_client
from middlewared_2fa.server import OUTBOX_LIMIT
from tests.helpers.daemon import InProcessDaemon, wait_until


@pytest.fixture(autouse=True)
def _enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))


@pytest.mark.settings(max_connections_per_address=1000)  # all from 127.0.0.1 (§1 caps)
async def test_500_connections_held_and_served(daemon: InProcessDaemon) -> None:
    """500 simultaneous connections are accepted, each answered, and all stay open."""
    clients = []
    try:
        for _ in range(500):
            ctx = daemon.client()
            clients.append((ctx, await ctx.__aenter__()))
        replies = await asyncio.gather(*(c.call("core.ping") for _, c in clients))
        assert replies == ["pong"] * 500
        assert len(daemon.daemon.connections) >= 500  # type: ignore[union-attr]
        assert not any(c.closed.is_set() for _, c in clients)
    finally:
        for ctx, _ in clients:
            await ctx.__aexit__(None, None, None)


async def test_client_that_does_not_read_is_cut_off(daemon: InProcessDaemon) -> None:
    """A client that sends but never reads its replies is closed (1013) once its bounded
    queue is full; the daemon keeps serving others."""
    path = str(daemon.settings.socket_path)
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "core.ping"})
    async with unix_connect(
        path, uri="ws://localhost/api/current", max_queue=1, compression=None
    ) as ws:
        # The client library stops reading once its queue of one frame is full, so TCP
        # back-pressure stalls the daemon's writer; the daemon must not buffer forever.
        async def flood() -> None:
            for _ in range(400_000):
                await ws.send(request)

        sender = asyncio.create_task(flood())

        def closed_by_daemon() -> bool:
            conns = daemon.daemon.connections  # type: ignore[union-attr]
            return all(c.session.transport != "unix" for c in conns)

        await wait_until(closed_by_daemon, timeout=120)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        # The client never reads, so it may not see the close frame; the daemon has
        # dropped the connection either way, and sending fails.
        with pytest.raises(Exception):  # noqa: B017 - ConnectionClosed or OSError
            for _ in range(10_000):
                await ws.send(request)
    async with daemon.client() as other:
        assert await other.call("core.ping") == "pong"
    assert OUTBOX_LIMIT <= 4096


@pytest.mark.settings(idle_timeout=1.0)
async def test_idle_unauthenticated_connection_is_closed(daemon: InProcessDaemon) -> None:
    """An unauthenticated connection that sends nothing is closed after idle_timeout;
    a logged-in one stays open."""
    async with daemon.client() as idle, daemon.admin() as admin:
        await asyncio.wait_for(idle.closed.wait(), 30)
        assert idle.ws.close_code == 1000
        assert idle.ws.close_reason == "idle timeout"
        assert not admin.closed.is_set()
        assert await admin.call("core.ping") == "pong"


async def test_other_connections_unaffected_by_oversize(daemon: InProcessDaemon) -> None:
    """A connection closed for an oversized message does not disturb a parallel one."""
    async with daemon.admin() as admin, daemon.client() as bad:
        await bad.send_raw("x" * 20000)
        await asyncio.wait_for(bad.closed.wait(), 10)
        assert bad.ws.close_code == 1009
        assert (await admin.call("auth.twofactor.config"))["id"] == 1


async def test_origin_check_on_unix_socket_too(daemon: InProcessDaemon) -> None:
    """The Origin check applies to every listener."""
    from middlewared_2fa.cli.client import ConnectError

    with pytest.raises(ConnectError, match="403"):
        async with open_client(daemon.url, origin="null"):
            pass
