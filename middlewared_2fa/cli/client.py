"""Async JSON-RPC 2.0 client over WebSocket (TCP ``ws://``, TLS ``wss://`` or Unix
``ws+unix://``).

Used by ``midclt2fa`` and by the tests, so that tests talk to the daemon through the
same code path as the CLI.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed


class ClientError(Exception):
    """A JSON-RPC error reply.

    Attributes:
        code: JSON-RPC error code (-32602, -32001, ...).
        message: JSON-RPC error message.
        data: ``{error, errname, reason, trace, extra}`` (may be None for foreign servers).
    """

    def __init__(self, code: int, message: str, data: dict[str, Any] | None) -> None:
        self.code = code
        self.message = message
        self.data = data or {}
        super().__init__(self.reason)

    @property
    def errno(self) -> int | None:
        return self.data.get("error")

    @property
    def errname(self) -> str | None:
        return self.data.get("errname")

    @property
    def reason(self) -> str:
        return str(self.data.get("reason") or self.message)

    @property
    def extra(self) -> list[Any]:
        return list(self.data.get("extra") or [])


class ConnectError(Exception):
    """The daemon cannot be reached."""


class Client:
    """One connection. Replies are routed by id; notifications go to :attr:`events`.

    Use :func:`open_client` (an async context manager) to create one.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.unmatched: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if isinstance(message, dict) and message.get("id") in self._pending:
                    future = self._pending.pop(message["id"])
                    if not future.done():
                        future.set_result(message)
                elif isinstance(message, dict) and "method" in message:
                    await self.events.put(message)
                else:  # batch replies, id-less errors: for send_raw/recv_raw users
                    await self.unmatched.put(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self._pending.clear()

    async def request(
        self, method: str, params: Any = None, *, timeout: float = 60
    ) -> dict[str, Any]:
        """Send one request and return the raw reply object (result or error)."""
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            raise ConnectionError("connection closed") from exc
        return await asyncio.wait_for(future, timeout)

    async def call(self, method: str, *params: Any, timeout: float = 60) -> Any:
        """Call ``method`` with positional ``params``; returns the result.

        Raises:
            ClientError: the daemon answered with an error.
            ConnectionError: the connection closed before the reply.
            TimeoutError: no reply within ``timeout`` seconds.
        """
        reply = await self.request(method, list(params), timeout=timeout)
        if "error" in reply:
            err = reply["error"]
            raise ClientError(err.get("code"), err.get("message"), err.get("data"))
        return reply.get("result")

    async def send_raw(self, text: str | bytes) -> None:
        """Send a frame as is (for protocol tests)."""
        await self.ws.send(text)

    async def recv_raw(self, timeout: float = 30) -> Any:
        """The next frame that answers no :meth:`call` (for protocol tests), parsed."""
        return await asyncio.wait_for(self.unmatched.get(), timeout)

    async def login(self, username: str, password: str, otp: str | None = None) -> dict[str, Any]:
        """``auth.login_ex`` with PASSWORD_PLAIN, then the OTP step if asked and ``otp``
        is given. Returns the last response object."""
        resp = await self.call(
            "auth.login_ex",
            {"mechanism": "PASSWORD_PLAIN", "username": username, "password": password},
        )
        if resp["response_type"] == "OTP_REQUIRED" and otp is not None:
            resp = await self.call(
                "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": otp}
            )
        return dict(resp)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def tls_context(*, cafile: Path | None = None, insecure: bool = False) -> ssl.SSLContext:
    """The client SSLContext of a ``wss://`` connection (pass it as ``ssl=``).

    Args:
        cafile: Trust only the certificates in this PEM file (e.g. the daemon's generated
            ``tls-cert.pem``) instead of the system's CAs; the host name is still checked.
        insecure: Verify nothing (neither the certificate nor the host name): the
            connection is encrypted but anyone in the path could impersonate the daemon.

    Raises:
        OSError: ``cafile`` cannot be read.
        ssl.SSLError: ``cafile`` holds no certificate.
    """
    context = ssl.create_default_context(cafile=None if cafile is None else str(cafile))
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _split_unix(uri: str) -> tuple[str, str]:
    """``ws+unix:///run/x.sock`` -> (socket path, request path)."""
    parts = urlsplit(uri)
    path = unquote(parts.path) or "/"
    # The socket path is the URI's path; the HTTP path is always /api/current.
    return path, "/api/current"


@asynccontextmanager
async def open_client(
    uri: str, *, timeout: float = 10, origin: str | None = None, **kwargs: Any
) -> AsyncIterator[Client]:
    """Connect to ``uri`` (``ws://host:port/api/current``, ``wss://...`` or
    ``ws+unix:///path.sock``). For ``wss://``, ``ssl=`` (see :func:`tls_context`) says
    what to trust; the system's CAs by default.

    Raises:
        ConnectError: nothing listens there, or the handshake was refused.
    """
    try:
        if uri.startswith("ws+unix://"):
            sock, path = _split_unix(uri)
            ws = await asyncio.wait_for(
                unix_connect(
                    sock, uri=f"ws://localhost{path}", max_size=2**24, compression=None, **kwargs
                ),
                timeout,
            )
        else:
            if origin:
                kwargs["origin"] = origin
            ws = await asyncio.wait_for(
                connect(uri, max_size=2**24, compression=None, **kwargs), timeout
            )
    except (OSError, TimeoutError) as exc:
        raise ConnectError(str(exc) or type(exc).__name__) from exc
    except Exception as exc:  # handshake refused (InvalidStatus), bad URI...
        raise ConnectError(str(exc)) from exc
    client = Client(ws)
    try:
        yield client
    finally:
        await client.close()
