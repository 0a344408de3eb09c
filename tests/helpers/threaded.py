"""A real in-process daemon on its own event loop in a thread, for synchronous tests
(hypothesis drives synchronous test functions) and a blocking client for them."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect, unix_connect

from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import InProcessDaemon


class ThreadedDaemon:
    """Runs :class:`InProcessDaemon` on a private loop in a background thread."""

    def __init__(self, base: Path, **overrides: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.daemon = InProcessDaemon(base, FrozenClock(1234567890), dict(overrides))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedDaemon:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.daemon.start(), self.loop).result(60)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        """Run ``coro`` on the daemon's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class SyncClient:
    """Blocking JSON-RPC client: one request, one reply (no notifications expected)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    def request(self, method: str, params: Any = None, timeout: float = 60) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            message["params"] = params
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout))
            if isinstance(reply, dict) and reply.get("id") == message["id"]:
                return reply

    def call(self, method: str, *params: Any) -> Any:
        reply = self.request(method, list(params))
        assert "error" not in reply, reply
        return reply["result"]


@contextmanager
def sync_client(uri: str, origin: str | None = None) -> Iterator[SyncClient]:
    """Connect to ``ws://...`` or ``ws+unix:///path``."""
    if uri.startswith("ws+unix://"):
        opened = unix_connect(
            uri[len("ws+unix://") :],
            uri="ws://localhost/api/current",
            max_size=2**24,
            compression=None,
        )
    else:
        opened = connect(
            uri, max_size=2**24, compression=None, **({"origin": origin} if origin else {})
        )  # type: ignore[arg-type]
    with opened as ws:
        yield SyncClient(ws)
