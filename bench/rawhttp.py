"""A minimal HTTP/1.1 client on asyncio streams, for load generation (the ``peer`` section).

Like :mod:`bench.rawws`, it exists so that the load generator costs little per request:
one connection per client, one request in flight (strict request/response), the
request bytes built by the caller, the reply parsed only as far as HTTP needs (status
line, headers, a ``Content-Length`` or chunked body). Connections are kept alive
(RFC 9112 §9.3); when the server answers ``Connection: close`` (gunicorn's sync workers
always do) the connection is closed and :meth:`HttpConnection.ready` opens a new one
before the next request, so the caller can keep the connect out of the timed part and
count it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes


def build_request(
    method: str,
    host: str,
    path: str,
    body: bytes = b"",
    content_type: str = "application/x-www-form-urlencoded",
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive is the HTTP/1.1 default)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body or method in ("POST", "PUT", "PATCH"):
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode("ascii") + b"\r\n" + body


class HttpError(Exception):
    """The server sent something that is not an HTTP/1.x response."""


@dataclass
class HttpConnection:
    """One client connection to ``host:port``; reopened when the server closes it."""

    host: str
    port: int
    timeout: float = 30.0
    #: Connections opened, and how long each connect took (seconds).
    connects: int = 0
    connect_s: list[float] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def ready(self) -> None:
        """Open the connection if it is not open (not timed by the callers)."""
        if self._writer is not None:
            return
        t0 = time.perf_counter()
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout
        )
        self.connect_s.append(time.perf_counter() - t0)
        self.connects += 1

    async def request(self, data: bytes) -> Response:
        """Send one request (from :func:`build_request`) and read its response."""
        await self.ready()
        assert self._reader is not None and self._writer is not None
        # One small request at a time: the write buffer never fills, so no drain().
        self._writer.write(data)
        try:
            return await asyncio.wait_for(self._read(self._reader), self.timeout)
        except BaseException:
            self.close()
            raise

    async def _read(self, reader: asyncio.StreamReader) -> Response:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.x response: {lines[0]!r}")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked(reader)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:  # delimited by the end of the connection
            body = await reader.read()
            headers["connection"] = "close"
        conn = headers.get("connection", "").lower()
        if conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive"):
            self.close()
        return Response(status, headers, body)

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def close(self) -> None:
        """Close the connection (the next :meth:`ready` opens a new one)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
