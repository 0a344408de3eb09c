"""A minimal WebSocket client (RFC 6455) on ``asyncio.Protocol``, for load generation.

Why not the ``websockets`` client: on a 2-core machine the load generator shares the
machine with the server under test, so it must cost much less per message than the
server, or the benchmark measures the client. This client does the opening handshake
(RFC 6455 §4.1), masks what it sends (§5.3, with the C ``apply_mask`` of websockets when
available) and parses unmasked server frames (§5.2) without copying payloads it is
not asked for. It answers pings (§5.5.2) and never compresses (no extension is offered
unless asked, to measure what permessage-deflate costs a server).

Replies are routed by arrival: the benchmarks keep at most ``depth`` requests in flight
per connection and only need counts (throughput) or one reply at a time (latency).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import ssl
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension ships with websockets wheels
    from websockets.utils import apply_mask


OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: Called with each complete text or binary message (payload bytes, or None when the
#: connection was created with ``keep_payload=False``).
MessageHandler = Callable[[bytes | None], None]


def build_frame(payload: bytes, opcode: int = OP_TEXT, mask: bytes | None = None) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2) carrying ``payload``.

    Args:
        payload: The message (UTF-8 JSON for text frames).
        opcode: Frame opcode.
        mask: 4-byte masking key; random when None.
    """
    key = mask if mask is not None else os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + key + apply_mask(payload, key)


class HandshakeError(Exception):
    """The server did not switch protocols (status other than 101)."""


class RawWebSocket(asyncio.Protocol):
    """One client connection. Create with :func:`connect`.

    Args:
        host: ``Host`` header value.
        path: Request target, e.g. ``/api/current``.
        keep_payload: Pass payloads to the handler (False: count only, no copy).
        offer_deflate: Offer permessage-deflate (RFC 7692) in the handshake.
    """

    def __init__(
        self, host: str, path: str, *, keep_payload: bool = True, offer_deflate: bool = False
    ) -> None:
        self.host = host
        self.path = path
        self.keep_payload = keep_payload
        self.offer_deflate = offer_deflate
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handler: MessageHandler | None = None
        self.received = 0
        self._buf = bytearray()
        self._open = False
        self._waiters: deque[asyncio.Future[bytes]] = deque()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.offer_deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                if not self.opened.done():
                    self.opened.set_exception(HandshakeError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self._open = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection closed"))

    # -- frames -----------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > n:
                break
            opcode = b0 & 0x0F
            if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                self.received += 1
                payload = bytes(buf[pos + head : end]) if self.keep_payload else None
                self._deliver(payload)
            elif opcode == OP_PING:
                self.send(bytes(buf[pos + head : end]), OP_PONG)
            elif opcode == OP_CLOSE:
                assert self.transport is not None
                self.transport.close()
            pos = end
        if pos:
            del buf[:pos]

    def _deliver(self, payload: bytes | None) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(payload or b"")
        elif self.handler is not None:
            self.handler(payload)

    # -- sending ----------------------------------------------------------------------

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        """Send one message (masked with a fresh key)."""
        assert self.transport is not None
        self.transport.write(build_frame(payload, opcode))

    def write_frame(self, frame: bytes) -> None:
        """Send a frame built beforehand with :func:`build_frame` (no per-call work)."""
        assert self.transport is not None
        self.transport.write(frame)

    async def request(self, payload: bytes, timeout: float = 30.0) -> bytes:
        """Send ``payload`` and wait for the next message (one call in flight at a time)."""
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.send(payload)
        return await asyncio.wait_for(waiter, timeout)

    def close(self) -> None:
        """Send a close frame (1000) and close the socket."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(build_frame(struct.pack("!H", 1000), OP_CLOSE))
            self.transport.close()


async def connect(
    host: str,
    port: int,
    path: str = "/api/current",
    *,
    keep_payload: bool = True,
    offer_deflate: bool = False,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> RawWebSocket:
    """Open a TCP connection (over TLS with ``tls``: ``wss://``) and complete the
    WebSocket handshake.

    Raises:
        HandshakeError: the server refused the upgrade.
        OSError, TimeoutError: no connection.
    """
    loop = asyncio.get_running_loop()

    def factory() -> RawWebSocket:
        return RawWebSocket(
            f"{host}:{port}", path, keep_payload=keep_payload, offer_deflate=offer_deflate
        )

    _transport, proto = await asyncio.wait_for(
        loop.create_connection(
            factory, host, port, ssl=tls, server_hostname=host if tls is not None else None
        ),
        timeout,
    )
    await asyncio.wait_for(proto.opened, timeout)
    return proto


@functools.lru_cache
def client_tls(cafile: str) -> ssl.SSLContext:
    """A client context for ``wss://`` that trusts only ``cafile`` (the server's own
    self-signed certificate) and checks the host name against it (its SANs hold
    127.0.0.1): a verified connection, as a real client makes."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def split_url(url: str) -> tuple[str, int, str]:
    """``ws://127.0.0.1:8642/api/current`` -> (host, port, path)."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port), "/" + path


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()
