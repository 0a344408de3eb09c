"""Listeners: WebSocket on TCP and on a Unix socket (websockets asyncio API), the few
HTTP routes (``/healthz``, ``/`` redirect, ``/ui/`` static files), the Origin check and
the per-connection limits (API.md §1)."""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import os
import socket
import struct
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve, unix_serve
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from middlewared_2fa.dispatcher import Dispatcher
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.session import Identity, Session

logger = logging.getLogger(__name__)

API_PATH = "/api/current"
WEB_ROOT = Path(__file__).resolve().parent / "web"
MAX_UNAUTHENTICATED_MESSAGE = 8 * 1024
MAX_AUTHENTICATED_MESSAGE = 64 * 1024
MAX_RUNNING_CALLS = 10
MAX_QUEUED_CALLS = 20
OUTBOX_LIMIT = 1024
#: Characters of replies and events queued for one connection before it is cut off.
OUTBOX_BYTES = 4 * 1024 * 1024
#: websockets options of every connection (also used by bench/echo.py, the reference
#: server of the benchmarks). permessage-deflate is off: the zlib state costs ~32 KiB per
#: connection even when idle (measured, bench/results.md).
CONNECTION_OPTIONS: dict[str, Any] = {
    "max_size": MAX_AUTHENTICATED_MESSAGE,
    "compression": None,
    "ping_interval": 30,
    "ping_timeout": 30,
    "max_queue": 32,
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Connection:
    """One WebSocket connection: its session, its limits and its outgoing queue.

    Replies and event notifications go through one bounded queue drained by a writer
    task, so a client that stops reading cannot make the daemon buffer without bound:
    when the queue is full the connection is closed (1013).
    """

    def __init__(self, ws: ServerConnection, session: Session) -> None:
        self.ws = ws
        self.session = session
        self._slots = 0
        self._run_slots = asyncio.Semaphore(MAX_RUNNING_CALLS)
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(OUTBOX_LIMIT)
        self._cut_off = False
        self._queued_bytes = 0
        self._cutter: asyncio.Future[None] | None = None
        self.last_activity = asyncio.get_running_loop().time()

    # -- dispatcher.Caller ----------------------------------------------------------
    def try_admit(self) -> bool:
        if self._slots >= MAX_RUNNING_CALLS + MAX_QUEUED_CALLS:
            return False
        self._slots += 1
        return True

    def release(self) -> None:
        self._slots -= 1

    @property
    def run_slots(self) -> asyncio.Semaphore:
        return self._run_slots

    # -- session changes ----------------------------------------------------------------
    def set_identity(self, identity: Identity | None) -> None:
        """Log the session in (raises the message limit to 64 KiB) or out (8 KiB)."""
        self.session.identity = identity
        limit = MAX_AUTHENTICATED_MESSAGE if identity else MAX_UNAUTHENTICATED_MESSAGE
        self.ws.protocol.max_message_size = limit

    # -- sending --------------------------------------------------------------------------
    def send(self, text: str) -> None:
        """Queue ``text`` for sending; closes the connection if the client does not read."""
        if self._cut_off:
            return
        try:
            if self._queued_bytes + len(text) > OUTBOX_BYTES:
                raise asyncio.QueueFull
            self._outbox.put_nowait(text)
            self._queued_bytes += len(text)
        except asyncio.QueueFull:
            self._cut_off = True
            logger.warning("closing connection %s: client does not read", self.session.id)
            self._cutter = asyncio.ensure_future(self._cut())

    async def _cut(self) -> None:
        # The close frame queues behind unread data, so it may never leave: after a short
        # wait the transport is aborted, which also ends the read loop and frees the queue.
        try:
            await asyncio.wait_for(self.ws.close(1013, "client is not reading its messages"), 5)
        except (TimeoutError, ConnectionClosed):
            pass
        finally:
            self.ws.transport.abort()

    def close_outbox(self) -> None:
        """Stop the writer after what is queued."""
        try:
            self._outbox.put_nowait(None)
        except asyncio.QueueFull:
            pass

    def notify(self, message: dict[str, Any]) -> None:
        """events.Subscriber: queue a notification."""
        self.send(json.dumps(message, separators=(",", ":")))

    async def writer(self) -> None:
        while True:
            text = await self._outbox.get()
            if text is None:
                return
            self._queued_bytes -= len(text)
            try:
                await self.ws.send(text)
            except ConnectionClosed:
                return


class Daemon:
    """The listeners around one :class:`Middleware`.

    Args:
        middleware: Set up (database open, plugins loaded).
    """

    def __init__(self, middleware: Middleware) -> None:
        self.middleware = middleware
        self.settings = middleware.settings
        self.dispatcher = Dispatcher(middleware)
        self.connections: set[Connection] = set()
        middleware.end_sessions = self.end_sessions
        self._servers: list[Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port: int | None = None

    def end_sessions(self, user_id: int) -> int:
        """Log out every connection of user ``user_id`` (locked, deleted, roles changed);
        the connections stay open. Returns how many were logged out."""
        ended = 0
        for conn in list(self.connections):
            identity = conn.session.identity
            if identity is not None and identity.user_id == user_id:
                conn.session.pending_otp = None
                conn.set_identity(None)
                ended += 1
        return ended

    @property
    def url(self) -> str:
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}{API_PATH}"

    async def start(self) -> None:
        """Listen on TCP and on the Unix socket."""
        common: dict[str, Any] = {
            **CONNECTION_OPTIONS,
            "process_request": self._process_request,
            "server_header": "middlewared-2fa",
        }
        tcp = await serve(self._handler, self.settings.host, self.settings.port, **common)
        self._servers.append(tcp)
        self.port = tcp.sockets[0].getsockname()[1]
        sock_path = self.settings.socket_path
        sock_path.parent.mkdir(parents=True, exist_ok=True)
        if sock_path.is_socket() or sock_path.exists():
            sock_path.unlink()
        unix = await unix_serve(self._handler, str(sock_path), **common)
        os.chmod(sock_path, 0o666)  # everyone may connect; only root/self skip the login
        self._servers.append(unix)

    async def stop(self) -> None:
        """Stop accepting, close connections (1001), let running calls finish."""
        for server in self._servers:
            server.close(close_connections=True)
        for server in self._servers:
            await server.wait_closed()
        try:
            self.settings.socket_path.unlink()
        except OSError:
            pass

    # -- HTTP -------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            return self._route(connection, request)
        except MultipleValuesError:  # two Host or Origin headers: ambiguous, refuse
            return connection.respond(HTTPStatus.BAD_REQUEST, "Bad Request\n")

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == API_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, request.headers):
                logger.warning("refused WebSocket handshake from origin %r", origin[:200])
                return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden origin\n")
            return None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "OK\n")
        if path in ("/", "/ui"):  # /ui needs the slash: the page's links are relative
            return _response(HTTPStatus.FOUND, b"", {"Location": "/ui/"})
        if path.startswith("/ui/"):
            return _static(path)
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    def _origin_allowed(self, origin: str, headers: Headers) -> bool:
        """The Origin is the daemon's own (same scheme-less host:port as Host, and that
        host one of ours: a rebound DNS name would otherwise pass) or configured."""
        if origin in self.settings.allowed_origins:
            return True
        host = headers.get("Host", "")
        if origin not in (f"http://{host}", f"https://{host}"):
            return False
        return _host_name(host) in self._own_hosts()

    def _own_hosts(self) -> set[str]:
        names = {
            "localhost",
            "127.0.0.1",
            "::1",
            self.settings.host.lower(),
            self.middleware.hostname.lower(),
            socket.getfqdn().lower(),
        }
        for origin in self.settings.allowed_origins:
            names.add(_host_name(urlsplit(origin).netloc))
        return names

    # -- WebSocket ----------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        session = _session_for(ws)
        conn = Connection(ws, session)
        if session.transport == "unix" and _peer_is_trusted(ws):
            conn.set_identity(
                Identity(
                    user_id=None, username="root", roles=["FULL_ADMIN"], credentials="UNIX_SOCKET"
                )
            )
        else:
            conn.set_identity(None)
        self.connections.add(conn)
        writer = asyncio.create_task(conn.writer())
        calls: set[asyncio.Task[Any]] = set()
        idle = asyncio.create_task(self._idle_watch(conn))
        try:
            async for message in ws:
                conn.last_activity = asyncio.get_running_loop().time()
                task = asyncio.create_task(self._serve_one(conn, message))
                calls.add(task)
                task.add_done_callback(calls.discard)
        except ConnectionClosed:
            pass
        finally:
            idle.cancel()
            self.middleware.events.drop(conn)
            self.connections.discard(conn)
            if calls:  # open calls finish (their effects are kept); replies are dropped
                await asyncio.gather(*calls, return_exceptions=True)
            conn.close_outbox()
            writer.cancel()

    async def _serve_one(self, conn: Connection, message: str | bytes) -> None:
        try:
            reply = await self.dispatcher.handle(message, conn)
        except Exception:
            logger.exception("unexpected failure while handling a message")
            return
        if reply is not None:
            conn.send(reply)

    async def _idle_watch(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.settings.idle_timeout
        while True:
            await asyncio.sleep(min(timeout, 30.0))
            if conn.session.authenticated:
                continue
            if loop.time() - conn.last_activity >= timeout:
                await conn.ws.close(1000, "idle timeout")
                return


def _host_name(host: str) -> str:
    """``HOST[:PORT]`` or ``[V6]:PORT`` -> lower-case host without the port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _session_for(ws: ServerConnection) -> Session:
    peer = ws.remote_address
    if isinstance(peer, tuple) and peer:
        return Session(address=str(peer[0]), transport="tcp")
    # Unix-socket peers are told apart by uid, so one local user cannot use up another's
    # rate limit.
    uid = _peer_uid(ws)
    return Session(address=f"unix:{uid}" if uid is not None else "unix", transport="unix")


def _peer_uid(ws: ServerConnection) -> int | None:
    sock = ws.transport.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


def _peer_is_trusted(ws: ServerConnection) -> bool:
    """SO_PEERCRED: the peer runs as root or as the daemon's own user."""
    return _peer_uid(ws) in (0, os.getuid())


def _response(status: HTTPStatus, body: bytes, headers: dict[str, str]) -> Response:
    h = Headers()
    for key, value in headers.items():
        h[key] = value
    h["Content-Length"] = str(len(body))
    h["X-Content-Type-Options"] = "nosniff"
    return Response(status.value, status.phrase, h, body)


def _static(path: str) -> Response:
    rel = unquote(path[len("/ui") :]).lstrip("/") or "index.html"
    if rel.endswith("/"):
        rel += "index.html"
    root = WEB_ROOT.resolve()
    not_found = _response(HTTPStatus.NOT_FOUND, b"Not Found\n", {"Content-Type": "text/plain"})
    try:
        target = (root / rel).resolve()
        if root not in target.parents or not target.is_file():
            return not_found
        body = target.read_bytes()
    except (OSError, ValueError):  # NUL in the path, a name too long for the file system
        return not_found
    ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript",):
        ctype += "; charset=utf-8"
    if target.suffix == ".js":
        ctype = "text/javascript; charset=utf-8"
    return _response(
        HTTPStatus.OK,
        body,
        {
            "Content-Type": ctype,
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        },
    )
