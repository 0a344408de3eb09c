"""``middlewared-2fa``: parse the command line, set up, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from middlewared_2fa import __version__
from middlewared_2fa.config import Settings, load_settings
from middlewared_2fa.errors import StartupError
from middlewared_2fa.log import setup_logging
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.server import Daemon

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="middlewared-2fa",
        description="Two-factor authentication daemon: JSON-RPC 2.0 over WebSocket.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--host", help="TCP listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8642; 0 picks a free one)")
    parser.add_argument("--state-dir", type=Path, help="SQLite file and key file (default ./state)")
    parser.add_argument("--runtime-dir", type=Path, help="Unix socket folder (default ./run)")
    parser.add_argument(
        "--plugins-dir",
        type=Path,
        action="append",
        dest="plugins_dirs",
        help="extra plugin folder, loaded after plugins/ (repeatable)",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--log-file", type=Path, help="also write the log to this file")
    parser.add_argument(
        "--debug", action="store_true", default=None, help="include tracebacks in error replies"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Set up, listen, print the URL, and serve until SIGTERM or SIGINT.

    Raises:
        StartupError: the daemon cannot start (bad database, key, plugin, port in use).
    """
    middleware = Middleware(settings)
    try:
        await middleware.setup()
    except BaseException:
        # aiosqlite's worker thread would keep the process alive after the error.
        await middleware.db.close()
        raise
    daemon = Daemon(middleware)
    try:
        await daemon.start()
    except OSError as exc:
        await middleware.stop()
        raise StartupError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await middleware.start()
    logger.info("listening on %s and %s", daemon.url, settings.socket_path)
    print(f"listening on {daemon.url}", flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    logger.info("shutting down")
    await daemon.stop()
    await middleware.stop()
    logger.info("stopped")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 after a clean stop, 2 on a start-up error)."""
    args = build_parser().parse_args(argv)
    overrides = {
        "host": args.host,
        "port": args.port,
        "state_dir": args.state_dir,
        "runtime_dir": args.runtime_dir,
        "plugins_dirs": args.plugins_dirs,
        "log_level": args.log_level,
        "log_file": args.log_file,
        "debug": args.debug,
    }
    # The state folder holds password hashes and the audit log: nothing the daemon
    # creates is readable by other users (the Unix socket is opened up explicitly).
    os.umask(0o077)
    try:
        settings = load_settings(args.config, overrides)
        setup_logging(settings.log_level, settings.log_file)
        asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"middlewared-2fa: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
