"""Listeners: WebSocket on TCP (TLS-only with ``tls``, API.md §11) and on a Unix socket
(websockets asyncio API), the few HTTP routes (``/healthz``, ``/`` redirect, ``/ui/``
static files), the Origin check and the per-connection limits (API.md §1)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import mimetypes
import os
import resource
import socket
import stat
import struct
import time
import weakref
from collections.abc import Generator, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve, unix_serve
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING
from websockets.server import ServerProtocol

from middlewared_2fa.dispatcher import Dispatcher
from middlewared_2fa.errors import StartupError
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.session import Identity, Proof, Session
from middlewared_2fa.tls import ServerCertificate, load_server_certificate

logger = logging.getLogger(__name__)

API_PATH = "/api/current"
WEB_ROOT = Path(__file__).resolve().parent / "web"
MAX_UNAUTHENTICATED_MESSAGE = 8 * 1024
MAX_AUTHENTICATED_MESSAGE = 64 * 1024
MAX_RUNNING_CALLS = 10
MAX_QUEUED_CALLS = 20
OUTBOX_LIMIT = 1024
#: Queued after the last reply of an ended session: the writer closes with 1008 there.
_SESSION_ENDED = "\x00session ended"
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
#: Strict-Transport-Security of every answer over TLS (API.md §11; RFC 6797): a year, and
#: not includeSubDomains, since names below the machine's are not this daemon's.
HSTS = "max-age=31536000"
#: HTTP methods served (API.md §1 "HTTP methods"); any other is answered 405.
ALLOWED_METHODS = ("GET", "HEAD")
#: Descriptors kept out of the connections' budget: the SQLite connections and their WAL
#: and shared-memory files, the log file, the listeners, the lock file (API.md §1 caps).
FD_HEADROOM = 64
#: Seconds between two warnings about the same connection cap and client.
WARNING_INTERVAL = 60.0


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (API.md §1 "Connection caps").

    Returns:
        The soft limit in force afterwards, in descriptors (``resource.RLIM_INFINITY``
        when unlimited). When the kernel refuses (a hard limit above ``nr_open``), the
        old soft limit stays and a warning is logged.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        logger.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


class ConnectionLimits:
    """Open connections, counted for the caps of API.md §1 ("Connection caps").

    Two counts, each held until the socket is closed, whatever happened in between
    (answered, refused, failed handshake, closed by either side), so nothing leaks:

    * sockets: every accepted socket, counted by the listening socket's ``accept()``
      itself (:class:`_ListeningSocket`) and given back by its ``close()``. At
      ``socket_budget`` a new one is closed at once, unread: the daemon never runs out
      of descriptors (``accept()`` failing with EMFILE stalls a listener for everyone).
    * slots: connections admitted by :meth:`admit` once their HTTP request is read, per
      client key (a TCP address, or ``unix:UID``) and in all; beyond a cap the request
      is answered 503. Given back by :meth:`closed` (``connection_lost``).

    Trusted Unix peers (key ``None``) are never counted nor refused.

    Args:
        max_connections: Cap on admitted connections in all.
        max_per_address: Cap on admitted connections per client key.
    """

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        #: Accepted sockets beyond which new ones are closed unread (see :meth:`fit`).
        self.socket_budget: int | None = None
        self._sockets = 0
        self._slots: dict[object, str] = {}
        self._per_key: dict[str, int] = {}
        self._warned: dict[str, float] = {}  # tag -> time.monotonic() of its last warning

    def fit(self, soft_limit: int) -> None:
        """Size the counts to the open-files soft limit ``soft_limit`` (descriptors).

        The sockets' budget is the limit minus :data:`FD_HEADROOM`; ``max_connections``
        is lowered (with a warning) to seven eighths of that budget, so that sockets still
        in their handshake have descriptors left to be answered 503 rather than reset.
        """
        if soft_limit == resource.RLIM_INFINITY:
            self.socket_budget = None
            return
        self.socket_budget = max(1, soft_limit - FD_HEADROOM)
        ceiling = max(1, self.socket_budget - self.socket_budget // 8)
        if self.max_connections > ceiling:
            logger.warning(
                "max_connections %d lowered to %d: the open-files limit is %d",
                self.max_connections,
                ceiling,
                soft_limit,
            )
            self.max_connections = ceiling

    def take_socket(self) -> bool:
        """Count one more accepted socket; False: over the budget, close it unread."""
        if self.socket_budget is not None and self._sockets >= self.socket_budget:
            self._warn("*sockets", "closing new connections unread: %d open", self._sockets)
            return False
        self._sockets += 1
        return True

    def release_socket(self) -> None:
        """An accepted socket was closed."""
        self._sockets -= 1

    def admit(self, conn: object, key: str | None) -> bool:
        """Take a slot for ``conn`` (its request was read); False: a cap is reached."""
        if key is None:
            return True
        held = self._per_key.get(key, 0)
        if held >= self.max_per_address:
            self._warn(key, "refusing connections from %s: %d open", key, held)
            return False
        if len(self._slots) >= self.max_connections:
            self._warn("*", "refusing new connections: %d open in all", len(self._slots))
            return False
        self._slots[conn] = key
        self._per_key[key] = held + 1
        return True

    def closed(self, conn: object) -> None:
        """Free the slot of ``conn`` (its socket is closed); harmless if it had none."""
        key = self._slots.pop(conn, None)
        if key is None:
            return
        held = self._per_key[key] - 1
        if held:
            self._per_key[key] = held
        else:
            del self._per_key[key]

    def count(self, key: str | None = None) -> int:
        """Admitted connections of client ``key``, or in all when ``key`` is None."""
        return len(self._slots) if key is None else self._per_key.get(key, 0)

    @property
    def sockets(self) -> int:
        """Accepted sockets not yet closed (trusted Unix peers excepted)."""
        return self._sockets

    def _warn(self, tag: str, message: str, *args: Any) -> None:
        # At most once a minute per cap and client, not once per refused connection: a
        # flood of connections must not become a flood of log lines.
        now = time.monotonic()
        if now - self._warned.get(tag, -WARNING_INTERVAL) >= WARNING_INTERVAL:
            self._warned[tag] = now
            if len(self._warned) > 4096:  # many clients: forget the oldest
                self._warned.pop(next(iter(self._warned)))
            logger.warning(message, *args)


#: Connections closed unread by one accept() call before it lets the event loop run.
_MAX_SHED = 64


class _AcceptedSocket(socket.socket):
    """An accepted socket that gives its place in the sockets' budget back once, when it
    is closed (asyncio's transport closes it), or when it is collected should asyncio
    drop it unclosed (a failure between accept() and the protocol)."""

    #: Gives the place back; None for a socket never counted (a trusted Unix peer).
    _release: weakref.finalize[[], _AcceptedSocket] | None = None

    def close(self) -> None:
        super().close()
        if self._release is not None:
            self._release()

    def counted_in(self, limits: ConnectionLimits) -> None:
        # weakref.finalize runs its callback at most once, whichever comes first.
        self._release = weakref.finalize(self, limits.release_socket)


class _ListeningSocket(socket.socket):
    """A listening socket whose ``accept()`` counts every accepted socket in ``limits``
    and closes those beyond the sockets' budget at once, unread (API.md §1 caps).

    This must happen in ``accept()`` itself: asyncio accepts up to 100 connections per
    listener and loop iteration before any protocol sees one, so counting any later
    lets a flood run the process out of descriptors. Trusted Unix peers are neither
    counted nor closed.
    """

    limits: ConnectionLimits

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(_MAX_SHED):
            fd, addr = self._accept()  # type: ignore[attr-defined]  # none waiting: BlockingIOError
            conn = _AcceptedSocket(self.family, self.type, self.proto, fileno=fd)
            if self.family == socket.AF_UNIX and _socket_peer_uid(conn) in (0, os.getuid()):
                return conn, addr
            if self.limits.take_socket():
                conn.counted_in(self.limits)
                return conn, addr
            socket.socket.close(conn)  # never counted: nothing to give back
        # asyncio ends this round of accepts on ConnectionAbortedError; the rest of the
        # queue waits for the next iteration of the loop.
        raise ConnectionAbortedError("over the sockets' budget")


#: Bytes at the start of a request within which its method must end.
_METHOD_PEEK = 32
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class _AnyMethodServerProtocol(ServerProtocol):
    """websockets' ServerProtocol, except that a request whose method is neither GET nor
    HEAD is read even when it announces a body, so that it can be answered 405 (API.md §1
    "HTTP methods"): websockets closes such a request without an answer (a handshake has
    no body). Its body is discarded; the answer closes the connection.
    """

    def parse(self) -> Generator[None]:
        if self.state is CONNECTING:
            method = yield from self._peek_method()
            if method not in (b"", b"GET", b"HEAD"):
                yield from self._parse_other_method()
                return
        yield from super().parse()

    def _peek_method(self) -> Generator[None, None, bytes]:
        """The request's method once it has arrived, without consuming it; ``b""`` when
        the start of the data is no method (websockets' own parser rejects it then)."""
        while True:
            head = bytes(self.reader.buffer[:_METHOD_PEEK])
            if b" " in head:
                return head.split(b" ", 1)[0]
            if len(head) >= _METHOD_PEEK or b"\n" in head or self.reader.eof:
                return b""
            yield

    def _read_line_without_body_headers(
        self, limit: int, too_long: type[Exception]
    ) -> Generator[None, None, bytearray]:
        """StreamReader.read_line, skipping Content-Length and Transfer-Encoding headers
        (the only reason websockets' Request.parse refuses a request of another method)."""
        while True:
            line = yield from self.reader.read_line(limit, too_long)
            if line.split(b":", 1)[0].strip().lower() not in _BODY_HEADERS:
                return line

    def _parse_other_method(self) -> Generator[None]:
        try:
            request = yield from Request.parse(self._read_line_without_body_headers)
        except Exception as exc:
            # As websockets does with any unreadable request: no answer, close.
            self.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
            self.handshake_exc.__cause__ = exc
            self.send_eof()
            self.parser = self.discard()
            next(self.parser)
            yield
            return
        self.events.append(request)
        # Until the answer replaces this parser (send_response), drop the body; a client
        # that ends its side first gets no answer, as websockets does for a GET.
        while not (yield from self.reader.at_eof()):
            self.reader.discard()
        self.fail(CloseCode.ABNORMAL_CLOSURE, "unexpected end of stream")
        yield


def _connection_class(limits: ConnectionLimits) -> type[ServerConnection]:
    """The websockets connection class of one daemon's listeners (``create_connection``).

    It gives its slot (:meth:`ConnectionLimits.admit`) back in ``connection_lost``,
    which asyncio calls for every connection however it ends; and it reads requests of
    any method (see :class:`_AnyMethodServerProtocol`).
    """

    class CountedConnection(ServerConnection):
        def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
            # serve() builds a plain ServerProtocol; nothing has been fed to it yet, so its
            # parser can be swapped for ours.
            protocol.__class__ = _AnyMethodServerProtocol
            protocol.parser = protocol.parse()
            next(protocol.parser)
            super().__init__(protocol, server, **kwargs)

        def connection_lost(self, exc: Exception | None) -> None:
            try:
                super().connection_lost(exc)
            finally:
                limits.closed(self)

    return CountedConnection


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
        self._ender: asyncio.Future[None] | None = None
        #: Messages being handled (their replies not yet queued), and whether the session
        #: was ended: the close then waits for those replies (see :meth:`end`).
        self._handling = 0
        self._ending = False
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

    def end(self) -> None:
        """The session ended (API.md §9): close with 1008 "session ended".

        The session is logged out already (the registry did it), so nothing the connection
        sends from now on is handled. The close waits for the replies of the messages
        being handled (a login that completed just before a password change gets its
        SUCCESS, then the 1008) and goes out after everything queued before it.
        """
        if self._ending:
            return
        self._ending = True
        if self._handling == 0:
            self._close_after_outbox()

    @property
    def ending(self) -> bool:
        """The session was ended: new messages are not handled."""
        return self._ending

    def handling(self) -> None:
        """A message is being handled (its reply will be queued or dropped)."""
        self._handling += 1

    def handled(self) -> None:
        """The reply of a message is queued (or there is none)."""
        self._handling -= 1
        if self._ending and self._handling == 0:
            self._close_after_outbox()

    def _close_after_outbox(self) -> None:
        try:
            self._outbox.put_nowait(_SESSION_ENDED)
        except asyncio.QueueFull:  # the client does not read: no need to keep order
            self._ender = asyncio.ensure_future(self.ws.close(1008, "session ended"))

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
        """Send the queued texts in order until the outbox is closed, the connection
        closes, or an ended session's close marker (then close 1008 "session ended")."""
        while True:
            text = await self._outbox.get()
            if text is None:
                return
            if text is _SESSION_ENDED:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.close(1008, "session ended")
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
        self._servers: list[Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port: int | None = None
        self.limits = ConnectionLimits(
            self.settings.max_connections, self.settings.max_connections_per_address
        )
        #: (st_dev, st_ino, st_ctime_ns) of the Unix socket file this daemon created.
        self._socket_id: tuple[int, int, int] | None = None
        #: The certificate the TCP listener serves; None without ``tls`` (set by start()).
        self.tls: ServerCertificate | None = None

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/api/current``, ``wss://`` with TLS (API.md §1)."""
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "wss" if self.settings.tls else "ws"
        return f"{scheme}://{host}:{self.port}{API_PATH}"

    async def start(self) -> None:
        """Load (or generate) the TLS certificate when ``tls`` is on, raise the open-files
        limit, listen on TCP and on the Unix socket (API.md §1, §11).

        Raises:
            OSError: the TCP address cannot be listened on (port in use, no such address).
            StartupError: the TLS certificate or key cannot be used; the Unix socket
                cannot be created, or another daemon listens on it (same runtime folder,
                another state folder).
        Nothing is left listening when it raises.
        """
        if self.settings.tls:
            self.tls = load_server_certificate(self.settings, self.middleware.hostname)
        self.limits.fit(raise_open_files_limit())
        common: dict[str, Any] = {
            **CONNECTION_OPTIONS,
            "process_request": self._process_request,
            "process_response": self._process_response,
            "server_header": "middlewared-2fa",
            "create_connection": _connection_class(self.limits),
        }
        socks: list[_ListeningSocket] = []
        try:
            socks += await _tcp_listeners(self.settings.host, self.settings.port)
            self.port = socks[0].getsockname()[1]
            self.middleware.listen_port = self.port
            socks.append(self._bind_unix_socket())
            for sock in socks:
                sock.limits = self.limits
                if sock.family == socket.AF_UNIX:
                    server = await unix_serve(self._handler, sock=sock, **common)
                else:
                    # With TLS, asyncio runs the handshake before websockets sees any
                    # byte: a plaintext client's data fails it, and the connection is
                    # closed without an answer or a log line (an SSLError is an OSError,
                    # which asyncio logs in debug mode only). It is bounded by
                    # websockets' open_timeout (ssl_handshake_timeout, 10 s).
                    tls = self.tls.context if self.tls is not None else None
                    server = await serve(self._handler, sock=sock, ssl=tls, **common)
                self._servers.append(server)
        except BaseException:
            for sock in socks:  # those no server took (closing twice is harmless)
                sock.close()
            await self.stop()
            raise

    def _bind_unix_socket(self) -> _ListeningSocket:
        """Create the Unix socket file (mode 0666) and record its identity.

        A socket file that nobody listens on (left by a daemon that died) is replaced; a
        live one, or anything that is not a socket, is left alone.

        Raises:
            StartupError: the file is in use or not a socket, or cannot be created.
        """
        path = self.settings.socket_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _dir_lock(path.parent):
                sock = _ListeningSocket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    try:
                        sock.bind(str(path))
                    except OSError as exc:
                        if exc.errno != errno.EADDRINUSE:
                            raise
                        _remove_stale_socket(path)
                        sock.bind(str(path))
                    os.chmod(path, 0o666)  # everyone may connect; only root/self skip the login
                    st = os.lstat(path)
                except BaseException:
                    sock.close()
                    raise
                self._socket_id = (st.st_dev, st.st_ino, st.st_ctime_ns)
        except OSError as exc:
            raise StartupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
        return sock

    async def stop(self) -> None:
        """Stop accepting, close connections (1001), let running calls finish; remove
        the Unix socket file if it is still the one this daemon created (API.md §1)."""
        for server in self._servers:
            server.close(close_connections=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._remove_own_socket()

    def _remove_own_socket(self) -> None:
        # Under the folder's lock: another daemon replacing a stale file cannot slip in
        # between the check and the unlink.
        if self._socket_id is None:
            return
        path = self.settings.socket_path
        try:
            with _dir_lock(path.parent):
                st = os.lstat(path)
                if (st.st_dev, st.st_ino, st.st_ctime_ns) == self._socket_id:
                    path.unlink()
                else:
                    logger.warning("left %s alone: it is not this daemon's socket", path)
        except (OSError, StartupError):  # gone already, or the folder is locked up
            pass
        self._socket_id = None

    # -- HTTP -------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Caps (503), methods (405), then the routes (API.md §1); None: WebSocket."""
        if not self.limits.admit(connection, _client_key(connection)):
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections\n")
        if request.method not in ALLOWED_METHODS:
            response = connection.respond(HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed\n")
            response.headers["Allow"] = ", ".join(ALLOWED_METHODS)
            return response
        try:
            answer = self._route(connection, request)
        except MultipleValuesError:  # two Host or Origin headers: ambiguous, refuse
            answer = connection.respond(HTTPStatus.BAD_REQUEST, "Bad Request\n")
        if request.method == "HEAD":
            if answer is None:  # no WebSocket handshake over HEAD: what a plain GET gets
                answer = connection.respond(HTTPStatus.UPGRADE_REQUIRED, "Upgrade Required\n")
                answer.headers["Upgrade"] = "websocket"
            # Same status and headers (Content-Length too) as for GET, without the body.
            answer = dataclasses.replace(answer, body=b"")
        return answer

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        """HSTS on every answer over TLS (API.md §11), the 101 of a WebSocket too; never
        over plaintext, where RFC 6797 §7.2 forbids it."""
        if _is_tls(connection):
            response.headers["Strict-Transport-Security"] = HSTS

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == API_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(
                origin,
                request.headers,
                "https" if _is_tls(connection) else "http",
                _local_address(connection),
            ):
                logger.warning(
                    "refused WebSocket handshake from origin %r (a browser origin of "
                    "this daemon's UI goes into allowed_origins as scheme://host:port)",
                    origin[:200],
                )
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

    def _origin_allowed(
        self, origin: str, headers: Headers, scheme: str, local_address: str | None
    ) -> bool:
        """The Origin is the daemon's own (``scheme`` of the connection, ``https`` over
        TLS, + the Host header, and that host one of ours: a rebound DNS name would
        otherwise pass) or configured (API.md §1).

        "Ours" includes the address this connection arrived on: a browser that opened
        the UI by the machine's IP (the daemon listening on 0.0.0.0) sends that IP as
        Host and Origin, which a rebound name cannot (its Host is the name)."""
        if origin in self.settings.allowed_origins:
            return True
        if any(origin in provider() for provider in self.middleware.origin_providers):
            return True  # a plugin's origins: WebAuthn's (API.md §12)
        host = headers.get("Host", "")
        if origin != f"{scheme}://{host}":
            return False
        name = _host_name(host)
        return name in self._own_hosts() or (local_address is not None and name == local_address)

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
        end_point = self.tls.end_point if self.tls is not None else None
        session = _session_for(ws, self.middleware.clock.time(), end_point)
        conn = Connection(ws, session)
        if session.transport == "unix" and _peer_is_trusted(ws):
            conn.set_identity(
                Identity(
                    user_id=None,
                    username="root",
                    roles=["FULL_ADMIN"],
                    credentials="UNIX_SOCKET",
                    proof=Proof("UNIX_SOCKET", "LEVEL_1", session.id[:16], session.created_at),
                )
            )
        else:
            conn.set_identity(None)
        self.connections.add(conn)
        self.middleware.sessions.add(conn)
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
            self.middleware.sessions.remove(conn)
            if calls:  # open calls finish (their effects are kept); replies are dropped
                await asyncio.gather(*calls, return_exceptions=True)
            conn.close_outbox()
            writer.cancel()

    async def _serve_one(self, conn: Connection, message: str | bytes) -> None:
        if conn.ending:  # the session was ended: the connection is closing
            return
        conn.handling()
        try:
            reply = await self.dispatcher.handle(message, conn)
        except Exception:
            logger.exception("unexpected failure while handling a message")
            reply = None
        try:
            if reply is not None:
                conn.send(reply)
        finally:
            conn.handled()

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


def _local_address(ws: ServerConnection) -> str | None:
    """The IP address a TCP connection arrived on (lower case, no zone), else None."""
    sockname = ws.transport.get_extra_info("sockname")
    if not isinstance(sockname, tuple) or not sockname:
        return None
    address = str(sockname[0]).split("%", 1)[0].lower()
    return address.removeprefix("::ffff:") if "." in address else address  # IPv4-mapped


def _is_tls(ws: ServerConnection) -> bool:
    """The connection runs over TLS (only the TCP listener's can, with ``tls`` on)."""
    return ws.transport.get_extra_info("sslcontext") is not None


def _session_for(ws: ServerConnection, now: float, tls_end_point: bytes | None) -> Session:
    """The session of a new connection; ``tls_end_point``: the RFC 5929 binding data of
    the certificate the TCP listener serves (None without TLS)."""
    peer = ws.remote_address
    if isinstance(peer, tuple) and peer:
        host = str(peer[0])
        origin = f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
        secure = _is_tls(ws)
        return Session(
            address=host,
            transport="tcp",
            origin=origin,
            secure=secure,
            tls_end_point=tls_end_point if secure else None,
            created_at=now,
        )
    # Unix-socket peers are told apart by uid, so one local user cannot use up another's
    # rate limit.
    uid = _peer_uid(ws)
    return Session(
        address=f"unix:{uid}" if uid is not None else "unix",
        transport="unix",
        origin=f"UNIX_SOCKET uid {uid}" if uid is not None else "UNIX_SOCKET",
        secure=True,
        created_at=now,
    )


def _peer_uid(ws: ServerConnection) -> int | None:
    sock = ws.transport.get_extra_info("socket")
    return None if sock is None else _socket_peer_uid(sock)


def _socket_peer_uid(sock: Any) -> int | None:
    """SO_PEERCRED uid of a Unix socket's peer (a socket or asyncio's TransportSocket);
    None for other sockets."""
    if sock.family != socket.AF_UNIX:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


def _peer_is_trusted(ws: ServerConnection) -> bool:
    """SO_PEERCRED: the peer runs as root or as the daemon's own user."""
    return _peer_uid(ws) in (0, os.getuid())


def _client_key(ws: ServerConnection) -> str | None:
    """Who a connection counts against for the caps (API.md §1): its TCP address,
    ``unix:UID`` for an untrusted Unix peer, None for a trusted one (never capped)."""
    peer = ws.transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    uid = _peer_uid(ws)
    if uid in (0, os.getuid()):
        return None
    return f"unix:{uid}" if uid is not None else "unix"


async def _tcp_listeners(host: str, port: int) -> list[_ListeningSocket]:
    """Bound TCP sockets for ``host``:``port``, as ``loop.create_server`` makes them: one
    per address ``host`` resolves to (IPv6 ones v6-only), SO_REUSEADDR. With port 0 the
    port picked for the first address is used for the others.

    Raises:
        OSError: the name does not resolve, or an address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    socks: list[_ListeningSocket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = _ListeningSocket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:
                address = (address[0], socks[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


@contextlib.contextmanager
def _dir_lock(folder: Path, timeout: float = 5.0) -> Iterator[None]:
    """Hold an exclusive flock on ``folder`` itself (no file of its own needed): daemons
    sharing a runtime folder check, replace and remove the socket file one at a time.

    Raises:
        OSError: the folder cannot be opened.
        StartupError: another process held the lock for ``timeout`` seconds.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Held by another daemon for a few system calls; never for long.
                if time.monotonic() > deadline:
                    raise StartupError(f"{folder} stays locked by another process") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_stale_socket(path: Path) -> None:
    """Remove ``path`` if it is a socket file that nobody listens on.

    Raises:
        StartupError: it is not a socket, or a process listens on it.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StartupError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a full backlog answers EAGAIN at once: someone listens
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:  # left by a daemon that died: nobody listens
        path.unlink()
        logger.info("replacing the stale socket %s", path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise StartupError(
        f"socket {path} is in use by another daemon (same runtime folder, another state folder?)"
    )


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
