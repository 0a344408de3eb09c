"""``midclt2fa``: call the daemon from a shell, like TrueNAS ``midclt``.

Examples::

    midclt2fa call core.ping
    midclt2fa -u ws://127.0.0.1:8642/api/current -U admin call auth.twofactor.config
    midclt2fa call user.renew_2fa_secret alice '{"interval": 30, "otp_digits": 6}'
    echo '["alice"]' | midclt2fa call user.provisioning_uri -
    midclt2fa subscribe user.query -n 1
    midclt2fa qr alice

Exit status: 0 on success, 1 on every failure (error reply, failed login, no daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import segno

from middlewared_2fa.cli.client import Client, ClientError, ConnectError, open_client


def default_uri() -> str:
    """``$MIDCLT2FA_URI``, else the daemon's Unix socket under ``$MIDDLEWARED_2FA_RUNTIME_DIR``
    (default ``./run``)."""
    if os.environ.get("MIDCLT2FA_URI"):
        return os.environ["MIDCLT2FA_URI"]
    runtime = Path(os.environ.get("MIDDLEWARED_2FA_RUNTIME_DIR", "run"))
    return "ws+unix://" + str((runtime / "middlewared.sock").resolve())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="midclt2fa", description="Command-line client of middlewared-2fa."
    )
    parser.add_argument(
        "-u",
        "--uri",
        default=None,
        help="ws://HOST:PORT/api/current or "
        "ws+unix:///path/middlewared.sock (default: the local Unix socket)",
    )
    parser.add_argument("-U", "--username", help="log in as this user")
    parser.add_argument("-P", "--password", help="password (prompted when -U is given without it)")
    parser.add_argument("--otp", help="one-time code (prompted on a terminal when required)")
    parser.add_argument("-t", "--timeout", type=float, default=60.0, help="seconds per call")
    sub = parser.add_subparsers(dest="command", required=True)
    call = sub.add_parser("call", help="call a method")
    call.add_argument("method")
    call.add_argument(
        "args",
        nargs="*",
        help="each parsed as JSON, else taken as a string; "
        "'-' alone reads a JSON array of all parameters from stdin",
    )
    sub.add_parser("ping", help="check that the daemon answers")
    subscribe = sub.add_parser("subscribe", help="print events as they arrive")
    subscribe.add_argument("event")
    subscribe.add_argument("-n", "--number", type=int, default=0, help="stop after N events")
    qr = sub.add_parser("qr", help="print a user's provisioning QR code in the terminal")
    qr.add_argument("user")
    return parser


def parse_arg(text: str) -> Any:
    """A command-line argument as JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_result(result: Any) -> str:
    """Strings bare; everything else as one-line JSON."""
    return result if isinstance(result, str) else json.dumps(result)


def format_error(exc: ClientError) -> str:
    """The reason, with one line per invalid field path."""
    lines = [f"Error: {exc.reason}" if not exc.extra else "Error: invalid parameters"]
    if exc.extra:
        lines += [f"  {attr}: {msg}" for attr, msg, *_ in exc.extra]
    return "\n".join(lines)


class Failure(Exception):
    """A message for stderr, exit status 1."""


async def _login(client: Client, args: argparse.Namespace, stdin: TextIO) -> None:
    password = args.password
    if password is None:
        password = await asyncio.to_thread(getpass.getpass, f"Password for {args.username}: ")
    resp = await client.call(
        "auth.login_ex",
        {"mechanism": "PASSWORD_PLAIN", "username": args.username, "password": password},
        timeout=args.timeout,
    )
    while resp["response_type"] == "OTP_REQUIRED":
        code = args.otp
        args.otp = None  # a code given on the command line is tried once
        if code is None:
            if not stdin.isatty():
                raise Failure("login failed: a one-time code is required (use --otp)")
            code = await asyncio.to_thread(input, "One-time code: ")
        resp = await client.call(
            "auth.login_ex_continue",
            {"mechanism": "OTP_TOKEN", "otp_token": code},
            timeout=args.timeout,
        )
        if resp["response_type"] == "OTP_REQUIRED" and not stdin.isatty():
            raise Failure(await _otp_failure_text(client))
    if resp["response_type"] != "SUCCESS":
        raise Failure("login failed: wrong username, password or one-time code")


async def _otp_failure_text(client: Client) -> str:
    return "login failed: wrong one-time code"


async def run(args: argparse.Namespace, stdout: TextIO, stdin: TextIO) -> None:
    uri = args.uri or default_uri()
    try:
        async with open_client(uri, timeout=min(args.timeout, 10)) as client:
            if args.username:
                await _login(client, args, stdin)
            await _command(client, args, stdout, stdin)
    except ConnectError as exc:
        raise Failure(f"daemon not running (cannot connect to {uri}: {exc})") from None


async def _command(client: Client, args: argparse.Namespace, stdout: TextIO, stdin: TextIO) -> None:
    if args.command == "ping":
        print(await client.call("core.ping", timeout=args.timeout), file=stdout)
    elif args.command == "call":
        if args.args == ["-"]:
            try:
                params = json.loads(stdin.read())
            except ValueError as exc:
                raise Failure(f"stdin is not JSON: {exc}") from None
            if not isinstance(params, list):
                params = [params]
        else:
            params = [parse_arg(a) for a in args.args]
        result = await client.call(args.method, *params, timeout=args.timeout)
        print(format_result(result), file=stdout)
    elif args.command == "subscribe":
        await client.call("core.subscribe", args.event, timeout=args.timeout)
        seen = 0
        while args.number <= 0 or seen < args.number:
            get = asyncio.ensure_future(client.events.get())
            closed = asyncio.ensure_future(client.closed.wait())
            done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                raise Failure("connection closed by the daemon")
            closed.cancel()
            event = get.result()
            print(json.dumps(event.get("params", event)), file=stdout, flush=True)
            seen += 1
    elif args.command == "qr":
        uri = await client.call("user.provisioning_uri", args.user, timeout=args.timeout)
        segno.make_qr(uri, error="M", boost_error=False).terminal(out=stdout, compact=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(run(args, sys.stdout, sys.stdin))
    except Failure as exc:
        print(f"midclt2fa: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(format_error(exc), file=sys.stderr)
        return 1
    except TimeoutError:
        print("midclt2fa: no reply within the timeout", file=sys.stderr)
        return 1
    except BrokenPipeError:  # our reader (e.g. `| head`) went away
        return 1
    except ConnectionError:
        print("midclt2fa: the daemon closed the connection", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
