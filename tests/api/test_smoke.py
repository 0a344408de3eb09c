"""The daemon answers over TCP and the Unix socket."""

from __future__ import annotations

from tests.helpers.daemon import InProcessDaemon


async def test_ping_over_tcp(daemon: InProcessDaemon) -> None:
    """core.ping answers "pong" before any login."""
    async with daemon.client() as c:
        assert await c.call("core.ping") == "pong"


async def test_unix_socket_root_is_full_admin(daemon: InProcessDaemon) -> None:
    """A root peer on the Unix socket is the built-in full administrator without a login."""
    async with daemon.root() as c:
        me = await c.call("auth.me")
        assert me["credentials"] == "UNIX_SOCKET"
        assert me["roles"] == ["FULL_ADMIN"]
