"""``middlewared-2fa``: parse the command line, set up, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from middlewared_2fa import __version__
from middlewared_2fa.config import Settings, load_settings
from middlewared_2fa.errors import StartupError
from middlewared_2fa.log import setup_logging
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.sd_notify import Notifier
from middlewared_2fa.server import Daemon
from middlewared_2fa.tls import ServerCertificate

logger = logging.getLogger(__name__)

#: The lock file in the state folder (API.md §1 "One daemon per state directory").
LOCK_FILE = "middlewared-2fa.lock"


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


def lock_state_dir(state_dir: Path) -> int:
    """Take the exclusive, non-blocking flock on ``state_dir``/:data:`LOCK_FILE` and
    write this process's PID into it (API.md §1 "One daemon per state directory").

    Returns:
        The lock file's descriptor: the lock lasts until it is closed (or the process
        ends, however it ends). The file itself stays: removing it would let a daemon
        that opened it meanwhile lock an orphan.

    Raises:
        StartupError: another daemon holds the lock (the message names its PID), or the
            state folder or lock file cannot be created.
    """
    path = state_dir / LOCK_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StartupError(
                f"another daemon (PID {holder}) is running on the state directory "
                f"{state_dir} (lock file {path})"
            ) from None
        raise StartupError(f"cannot lock {path}: {exc.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Lock the state folder, set up, listen, print the URL, and serve until SIGTERM or
    SIGINT.

    Raises:
        StartupError: the daemon cannot start (state folder locked by another daemon, bad
            database, key, plugin, port or socket in use). Everything opened until then
            is closed first: no listener, task or thread is left running (API.md §1).
    """
    lock = lock_state_dir(settings.state_dir)
    try:
        await _serve(settings, ready)
    finally:
        os.close(lock)  # last: the database is closed by now


async def _start(middleware: Middleware) -> Daemon:
    """Set up the middleware, listen, start the services; undo it all on any failure."""
    settings = middleware.settings
    try:
        await middleware.setup()
    except BaseException:
        # aiosqlite's worker threads are not daemon threads: left open, they would keep
        # the process alive after the error.
        await middleware.db.close()
        raise
    daemon = Daemon(middleware)  # after setup: its dispatcher takes the loaded methods
    try:
        try:
            await daemon.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
            ) from None
        await middleware.start()
    except BaseException:
        await daemon.stop()
        await middleware.stop()
        raise
    return daemon


async def _serve(settings: Settings, ready: asyncio.Event | None) -> None:
    middleware = Middleware(settings)
    try:
        daemon = await _start(middleware)
    except StartupError:
        raise
    except Exception as exc:  # a bug or an unforeseen condition: still one clear line
        logger.debug("start-up failed", exc_info=True)
        raise StartupError(f"start-up failed: {type(exc).__name__}: {exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("listening on %s and %s", daemon.url, settings.socket_path)
    print(f"listening on {daemon.url}", flush=True)
    if daemon.tls is not None:
        # After the URL, so that a script reading the first line for it still can.
        line = tls_line(daemon.tls)
        logger.info("%s", line)
        print(line, flush=True)
    if ready is not None:
        ready.set()
    # Last: systemd (Type=notify) starts the units ordered after this one at READY=1,
    # so both listeners must be accepting by now (Daemon.start returns after both).
    notifier = Notifier.from_environ()
    notifier.ready(f"listening on {daemon.url} and {settings.socket_path}")
    await stop.wait()
    notifier.stopping("shutting down")
    logger.info("shutting down")
    await daemon.stop()
    await middleware.stop()
    logger.info("stopped")


def tls_line(tls: ServerCertificate) -> str:
    """What the daemon prints about its certificate at start-up (API.md §11): the file
    and its SHA-256 fingerprint, as ``openssl x509 -noout -fingerprint -sha256`` shows it."""
    kind = "self-signed, generated" if tls.generated else "configured"
    return (
        f"TLS certificate {tls.cert_path.resolve()} ({kind}), SHA-256 fingerprint {tls.fingerprint}"
    )


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
        _exit_if_threads_linger(2)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def _exit_if_threads_linger(status: int, grace: float = 2.0) -> None:
    """Exit now with ``status`` if a non-daemon thread is still alive ``grace`` seconds
    after a start-up failure: the interpreter would wait for it, maybe forever (API.md
    §1: start-up failures exit promptly, nothing left running). Only a leak gets here."""
    deadline = time.monotonic() + grace
    lingering = []
    for t in threading.enumerate():
        if t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.monotonic()))  # closed ones end in microseconds
        if t.is_alive():
            lingering.append(t)
    if not lingering:
        return
    logger.warning("threads left after the start-up failure: %s", [t.name for t in lingering])
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    raise SystemExit(main())
