"""The reference server: a bare ``websockets`` echo server with the daemon's options.

Run as ``python -m bench.echo [--compression deflate] [--tls CERT KEY]``; prints
``listening on URL`` like the daemon. It uses the same websockets version and the same
connection options as ``middlewared_2fa.server.Daemon`` (read from it, so the two cannot
drift apart), so its figures are the ceiling of any Python service built on websockets
on this machine.

One extension for the large-reply reference: a message ``size:N`` is answered with a
text message of N bytes (so the cost of moving a reply as large as ``user.query`` of
10,000 users can be measured without the daemon's work).

``--tls CERT KEY`` serves ``wss://`` with the daemon's own server context
(``middlewared_2fa.tls.server_context``: TLS 1.2 and newer, no renegotiation, ALPN
http/1.1), the ceiling of the daemon with ``tls`` on.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

_big: dict[int, str] = {}


def daemon_options() -> dict[str, Any]:
    """The connection options the daemon passes to ``serve`` (without its callbacks)."""
    from middlewared_2fa.server import CONNECTION_OPTIONS

    return dict(CONNECTION_OPTIONS)


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        if isinstance(message, str) and message.startswith("size:"):
            size = int(message[5:])
            reply = _big.get(size)
            if reply is None:
                reply = _big[size] = "x" * size
            await ws.send(reply)
        else:
            await ws.send(message)


async def _main(compression: str | None, tls: list[str] | None = None) -> None:
    options = daemon_options()
    options["compression"] = compression
    context = None
    if tls is not None:
        from middlewared_2fa.tls import server_context

        context = server_context(Path(tls[0]), Path(tls[1]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(_echo, "127.0.0.1", 0, ssl=context, **options) as server:
        port = server.sockets[0].getsockname()[1]
        scheme = "wss" if context is not None else "ws"
        print(f"listening on {scheme}://127.0.0.1:{port}/", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo")
    parser.add_argument("--compression", choices=["none", "deflate"], default="none")
    parser.add_argument(
        "--tls", nargs=2, metavar=("CERT", "KEY"), help="serve wss:// with this PEM pair"
    )
    args = parser.parse_args()
    asyncio.run(_main(None if args.compression == "none" else "deflate", args.tls))


if __name__ == "__main__":
    main()
