"""``midclt2fa``: call the daemon from a shell, like TrueNAS ``midclt``.

Examples::

    midclt2fa call core.ping
    midclt2fa -u ws://127.0.0.1:8642/api/current -U admin call auth.twofactor.config
    midclt2fa -u wss://127.0.0.1:8642/api/current --cafile state/tls-cert.pem ping
    midclt2fa -u wss://nas:8642/api/current --cafile nas.pem -U backup -K ~/.backup.key call auth.me
    midclt2fa call user.renew_2fa_secret alice '{"interval": 30, "otp_digits": 6}'
    echo '["alice"]' | midclt2fa call user.provisioning_uri -
    echo '{"otp_digits": 8}' | midclt2fa call user.renew_2fa_secret alice -
    midclt2fa subscribe user.query -n 1
    midclt2fa qr alice

Results go to stdout: strings, numbers and booleans bare, everything else as one line of
JSON; a method that returns null prints nothing. Errors go to stderr as ``midclt2fa:
REASON`` (one indented line per invalid field).
Password and code prompts appear on the controlling terminal (``/dev/tty``, as ``getpass``
does), so stdin stays free for ``-``; without a terminal, ``-P``/``--otp`` are needed. The
code of the OTP step is the authenticator app's one-time code or one of the user's
recovery codes (API.md §10), sent as typed. ``-K`` logs in with an API key instead
(API.md §11): SCRAM-SHA-512 by default, bound to the TLS certificate over ``wss://``, so
the key itself never crosses the wire; ``--key-mechanism PLAIN`` sends it as it is. A
login that lands in a setup-only session (``enforce``, or a one-time password from an
administrator: API.md §4, §10) prints a note on stderr saying which calls that session may
make.

Exit status: 0 on success, 1 on every failure (usage error, error reply, failed login, no
daemon, interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import locale
import os
import re
import shlex
import ssl
import sys
import termios
import textwrap
import unicodedata
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

import segno
from cryptography import x509
from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidURI

from middlewared_2fa.cli.client import Client, ClientError, ConnectError, open_client, tls_context
from middlewared_2fa.cli.scram import ScramClientError, ScramExchange
from middlewared_2fa.tls import tls_server_end_point

#: JSON-RPC code of a call error (API.md §2) and errno of "Not authenticated".
_CALL_ERROR = -32001
_ENOTAUTHENTICATED = 207
#: Columns the setup-only note is wrapped to.
_NOTE_WIDTH = 88


def default_uri() -> str:
    """``$MIDCLT2FA_URI``, else the daemon's Unix socket under ``$MIDDLEWARED_2FA_RUNTIME_DIR``
    (default ``./run``)."""
    if os.environ.get("MIDCLT2FA_URI"):
        return os.environ["MIDCLT2FA_URI"]
    runtime = Path(os.environ.get("MIDDLEWARED_2FA_RUNTIME_DIR", "run"))
    return "ws+unix://" + str((runtime / "middlewared.sock").resolve())


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with status 1 like every other failure (argparse uses 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _timeout(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="midclt2fa", description="Command-line client of middlewared-2fa.")
    parser.add_argument(
        "-u",
        "--uri",
        default=None,
        help="ws://HOST:PORT/api/current, wss://HOST:PORT/api/current (TLS) or "
        "ws+unix:///path/middlewared.sock (default: $MIDCLT2FA_URI, else middlewared.sock "
        "in $MIDDLEWARED_2FA_RUNTIME_DIR or ./run)",
    )
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument(
        "--cafile",
        type=Path,
        metavar="FILE",
        help="wss:// only: trust the certificates in this PEM file instead of the system's "
        "CAs (e.g. the daemon's generated state/tls-cert.pem)",
    )
    trust.add_argument(
        "--insecure",
        action="store_true",
        help="wss:// only: do not verify the daemon's certificate (a self-signed one); "
        "anyone in the path could then impersonate the daemon",
    )
    parser.add_argument("-U", "--username", help="log in as this user")
    parser.add_argument(
        "-P",
        "--password",
        help="password, or a one-time password from an administrator (asked on the terminal "
        "when -U is given without it)",
    )
    parser.add_argument(
        "--otp",
        metavar="CODE",
        help="one-time code or recovery code (asked on the terminal when the daemon requires one)",
    )
    parser.add_argument(
        "-K",
        "--api-key",
        metavar="KEY",
        help="log in as -U's user with this API key: ID-KEY as api_key.create showed it, or a "
        "file holding it (better: a key on the command line is visible to other local users)",
    )
    parser.add_argument(
        "--key-mechanism",
        choices=("SCRAM", "PLAIN"),
        default="SCRAM",
        help="how -K logs in: SCRAM (default: the key never crosses the wire, and over wss:// "
        "the exchange is bound to the certificate) or PLAIN (the key is sent; over plaintext "
        "TCP from outside the daemon's local networks the daemon revokes it at once)",
    )
    parser.add_argument(
        "-t", "--timeout", type=_timeout, default=60.0, help="seconds per call (default 60)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    call = sub.add_parser("call", help="call a method")
    # Optional for argparse only: its own message would call the parameters required too.
    call.add_argument("method", nargs="?", help="e.g. core.ping, auth.me, user.query")
    call.add_argument(
        "args",
        nargs="*",
        help="each parsed as JSON, else taken as a string; '-' reads one JSON value from "
        "stdin in its place ('-' alone: a JSON array read from stdin is the whole parameter list)",
    )
    parser.call_parser = call  # type: ignore[attr-defined]
    sub.add_parser("ping", help="check that the daemon answers")
    subscribe = sub.add_parser("subscribe", help="print events as they arrive, one JSON per line")
    subscribe.add_argument("event")
    subscribe.add_argument("-n", "--number", type=int, default=0, help="stop after N events")
    qr = sub.add_parser("qr", help="print a user's provisioning QR code in the terminal")
    qr.add_argument("user")
    return parser


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 §6); the daemon refuses a request holding them.
    raise ValueError(f"{name} is not valid JSON")


def parse_arg(text: str, number: int = 1) -> Any:
    """A command-line argument as JSON when it parses, else the text itself.

    Raises:
        Failure: the argument (``number``, counted after the method) starts with ``{`` or
            ``[``, so it was meant as JSON, and does not parse: the message says why and
            where, never the text (it may hold a password).
    """
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith(("{", "[")):
            hint = ""
            if "double quotes" in exc.msg:
                hint = """; quote names and strings with double quotes: '{"username": "bob"}'"""
            raise Failure(
                f"argument {number} looks like JSON but is not valid JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno}){hint}"
            ) from None
        return text
    except ValueError:
        return text


def format_result(result: Any) -> str:
    """Strings bare; everything else as one-line JSON (so scalars print bare too)."""
    return result if isinstance(result, str) else json.dumps(result)


def format_error(exc: ClientError) -> str:
    """``midclt2fa: REASON``; for invalid parameters one indented line per field path.

    Call errors (-32001) carry their errno name, TrueNAS style: ``[ENOENT] ...``.
    """
    if exc.extra:
        lines = ["midclt2fa: invalid parameters"]
        lines += [f"  {attr}: {msg}" for attr, msg, *_ in exc.extra]
        return "\n".join(lines)
    if exc.code == _CALL_ERROR and exc.errname:
        return f"midclt2fa: [{exc.errname}] {exc.reason}"
    return f"midclt2fa: {exc.reason}"


def printable(text: str) -> str:
    """``text`` with control and format characters (but the line ends) as escapes: an
    error message from a server must not drive the terminal (clear it, fake a prompt)."""
    return "".join(
        ch
        if ch == "\n" or unicodedata.category(ch)[0] != "C"
        else (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        for ch in text
    )


class Failure(Exception):
    """A message for stderr, exit status 1."""


class NoTerminal(Exception):
    """There is no controlling terminal to ask on."""


async def prompt(text: str, *, echo: bool) -> str | None:
    """Ask on the controlling terminal; returns the line without its end, None on end of
    input (Ctrl-D).

    Reads ``/dev/tty`` like :func:`getpass.getpass`, but on the event loop: the connection
    keeps answering the daemon's keepalive pings while the user types, and Ctrl-C cancels
    at once (a thread blocked in ``read`` would keep the process alive until Enter).

    Args:
        text: The prompt.
        echo: False for a password (echo is switched off and restored, also on Ctrl-C).

    Raises:
        NoTerminal: The process has no controlling terminal.
    """
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise NoTerminal() from None
    try:
        saved = termios.tcgetattr(fd)
        if not echo:
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            os.write(fd, text.encode(locale.getpreferredencoding(False), "replace"))
            line = await _read_line(fd)
        finally:
            if not echo:
                termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
                os.write(fd, b"\n")  # the user's Enter was not echoed
    except termios.error:
        raise NoTerminal() from None
    finally:
        os.close(fd)
    if line is None:
        return None
    return line.decode(locale.getpreferredencoding(False), "replace").rstrip("\r")


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _read_line(fd: int) -> bytes | None:
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buffer = b""
    while b"\n" not in buffer:
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 1024)
        except BlockingIOError:
            continue
        except OSError:  # EIO: the terminal hung up
            chunk = b""
        if not chunk:
            return None
        buffer += chunk
    return buffer.split(b"\n", 1)[0]


#: Said for EBUSY during a login: the account's cool-down after repeated failures and the
#: address's rate limit give the same answer (API.md §3).
THROTTLED = (
    "login refused: too many calls before login from this address (the daemon's "
    "rate_limit_calls per rate_limit_period; each login takes two), or a cool-down of this "
    "account after failed logins; wait a minute, then try again"
)


#: Said for AUTH_ERR after the password step (no code was asked): wrong password, unknown
#: user and locked account are one answer by design (API.md §3).
WRONG_PASSWORD = "login failed: wrong username or password, or the account is locked"
#: Said when the right code of a time step already used was sent (auth.last_code_refusal).
REUSED_CODE = "login failed: this code was already used; wait for the next one"


async def _login(client: Client, args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    """Log in as ``args.username``; returns the SUCCESS answer of ``auth.login_ex``."""
    try:
        if args.api_key is not None:
            return await _login_with_key(client, args)
        return await _login_steps(client, args, stdin)
    except ClientError as exc:
        if exc.errname == "EBUSY":
            raise Failure(THROTTLED) from None
        raise


_KEY_SHAPE = re.compile(r"[0-9]+-[A-Za-z0-9]+")


def read_api_key(value: str) -> tuple[int, str]:
    """``-K``'s value as (key id, key material): the key itself (``ID-KEY``), or the first
    line of the file it names.

    Raises:
        Failure: neither a key nor a readable file holding one (the value is not repeated:
            it may be a key with a typo).
    """
    text = value.strip()
    if not _KEY_SHAPE.fullmatch(text):
        try:
            lines = Path(value).expanduser().read_text(encoding="utf-8").splitlines()
        except RuntimeError:  # "~someone/...": no such user to expand
            raise Failure("-K: no such file (its ~ names no user)") from None
        except FileNotFoundError:
            raise Failure(
                "-K: not an API key (ID-KEY, as api_key.create showed it) and no such file"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not text"
            raise Failure(f"-K: cannot read the key file: {why}") from None
        text = lines[0].strip() if lines else ""
        if not _KEY_SHAPE.fullmatch(text):
            raise Failure("-K: the file does not hold an API key (ID-KEY on its first line)")
    key_id, material = text.split("-", 1)
    return int(key_id), material


def _channel_binding(client: Client) -> bytes | None:
    """Over TLS: RFC 5929 ``tls-server-end-point`` of the certificate the daemon served."""
    ssl_object = client.ws.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return None if der is None else tls_server_end_point(x509.load_der_x509_certificate(der))


def _key_failure(resp: dict[str, Any], key_id: int) -> Failure:
    if resp.get("response_type") == "EXPIRED":
        return Failure(
            f"login failed: API key {key_id} has expired or was revoked (api_key.query "
            "shows its expires_at and revoked_reason); for a new key: api_key.update "
            + str(key_id)
            + """ '{"reset": true}', with "expires_at": null or a later {"$date": MS} """
            "if it expired"
        )
    return Failure("login failed: wrong username or API key")


def _plaintext_remote(uri: str) -> str | None:
    """The host of a ``ws://`` URI that is not this machine (a loopback address or
    ``localhost``), else None: a plain key sent there crosses the network unencrypted."""
    if not uri.startswith("ws://"):
        return None
    host = (urlsplit(uri).hostname or "").lower()
    if host == "localhost":
        return None
    try:
        return None if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host


def _reply_field(resp: Any, name: str) -> Any:
    """``resp[name]`` of a login answer; a reply of another shape is not the daemon's."""
    if not isinstance(resp, dict) or name not in resp:
        raise Failure(
            "login failed: the daemon's reply has an unexpected shape (is this middlewared-2fa?)"
        )
    return resp[name]


async def _login_with_key(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """Log in as ``args.username`` with the API key ``args.api_key`` (API.md §11)."""
    key_id, material = read_api_key(args.api_key)
    if args.key_mechanism == "PLAIN":
        resp = await client.call(
            "auth.login_ex",
            {
                "mechanism": "API_KEY_PLAIN",
                "username": args.username,
                "api_key": f"{key_id}-{material}",
            },
            timeout=args.timeout,
        )
        if _reply_field(resp, "response_type") != "SUCCESS":
            raise _key_failure(resp, key_id)
        return dict(resp)
    binding = _channel_binding(client)
    if binding is None and args.insecure:
        # With --insecure nothing but the binding tells the daemon from a proxy in the
        # path; without it, such a proxy would be handed the logged-in session.
        raise Failure(
            "login refused: the daemon's TLS certificate allows no channel binding (RFC "
            "5929: e.g. an Ed25519 key), and with --insecure nothing else shows that this "
            "is the daemon; trust its certificate with --cafile FILE instead"
        )
    scram = ScramExchange(args.username, key_id, material, binding)
    resp = await client.call(
        "auth.login_ex",
        {"mechanism": "SCRAM", "scram_type": "CLIENT_FIRST_MESSAGE", "rfc_str": scram.first()},
        timeout=args.timeout,
    )
    if _reply_field(resp, "response_type") != "SCRAM_RESPONSE":
        raise _key_failure(resp, key_id)
    server_first = _reply_field(resp, "rfc_str")
    if not isinstance(server_first, str):
        raise Failure("login failed: the daemon's SCRAM answer is not acceptable (not a string)")
    try:
        # PBKDF2 with the key's iteration count (500,000): off the loop, which keeps
        # answering the daemon's keepalive pings.
        final = await asyncio.to_thread(scram.final, server_first)
    except ScramClientError as exc:
        raise Failure(
            f"login failed: the daemon's SCRAM answer is not acceptable ({exc})"
        ) from None
    resp = await client.call(
        "auth.login_ex",
        {"mechanism": "SCRAM", "scram_type": "CLIENT_FINAL_MESSAGE", "rfc_str": final},
        timeout=args.timeout,
    )
    if _reply_field(resp, "response_type") != "SCRAM_RESPONSE":
        raise _key_failure(resp, key_id)
    try:
        server_final = _reply_field(resp, "rfc_str")
        if not isinstance(server_final, str):
            raise ScramClientError("not a string")
        scram.verify(server_final)
    except ScramClientError:
        # The daemon accepted us but could not prove it holds the key's server key.
        raise Failure(
            "login failed: the daemon's SCRAM signature is wrong: it is not the daemon that "
            "holds this key (someone in the path?)"
        ) from None
    return dict(resp)


async def _login_steps(client: Client, args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    password = args.password
    if password is None:
        try:
            password = await prompt(f"Password for {args.username}: ", echo=False)
        except NoTerminal:
            raise Failure(
                "a password is required and there is no terminal to ask on (use -P)"
            ) from None
        if password is None:
            raise Failure("login cancelled: no password given")
    resp = await client.call(
        "auth.login_ex",
        {"mechanism": "PASSWORD_PLAIN", "username": args.username, "password": password},
        timeout=args.timeout,
    )
    if resp["response_type"] != "OTP_REQUIRED" and resp["response_type"] != "SUCCESS":
        # No code was asked: only the password (or the account) can be the reason.
        raise Failure(WRONG_PASSWORD)
    failure: str | None = None  # why the last code was refused
    # A passkey needs a browser (API.md §12): say so once, before the first prompt.
    passkeys = "webauthn" in resp
    while resp["response_type"] == "OTP_REQUIRED":
        code = args.otp
        args.otp = None  # a code given on the command line is tried once
        if code is None:
            notice = ""
            if passkeys:
                notice = PASSKEY_NOTICE + "\n"
                passkeys = False
            if failure is not None:
                why = failure.removeprefix("login failed: ")
                again = "" if failure == REUSED_CODE else "; try again"
                notice = f"midclt2fa: {why}{again}\n"
            try:
                code = await prompt(notice + "One-time code or recovery code: ", echo=True)
            except NoTerminal:
                needed = "login failed: a one-time code or recovery code is required (use --otp)"
                if "webauthn" in resp:
                    needed += "; " + PASSKEY_NOTICE.removeprefix("midclt2fa: ")
                raise Failure(failure or needed) from None
            if code is None:
                raise Failure(failure or "login cancelled: no one-time code given")
        resp = await client.call(
            "auth.login_ex_continue",
            {"mechanism": "OTP_TOKEN", "otp_token": code},
            timeout=args.timeout,
        )
        if resp["response_type"] == "OTP_REQUIRED":
            failure = await _otp_failure_text(client)
    if resp["response_type"] != "SUCCESS":
        # The fourth wrong code ends the OTP step (API.md §3).
        reason = (failure or "login failed: wrong one-time code or recovery code").removeprefix(
            "login failed: "
        )
        raise Failure(f"login failed: {reason}, too many times; log in again from the password")
    return dict(resp)


#: Said once for an account with passkeys (API.md §12), which need a browser.
PASSKEY_NOTICE = (
    "midclt2fa: this account has passkeys, which only a browser can use; enter a code from "
    "the authenticator app or a recovery code (scripts log in with an API key: -K)"
)


async def _otp_failure_text(client: Client) -> str:
    """Why a code was refused: ``login failed: wrong one-time code or recovery code``,
    plus the clock skew when the daemon's last clock check found its clock SKEWED.

    ``system.time_sync.status`` needs an authenticated session (API.md §6), and a session
    whose OTP step failed is not logged in, except on the Unix socket for root or the
    daemon's own user: that session is the built-in administrator from the start (API.md
    §1) and stays so during a login attempt. So the skew is shown exactly where the
    caller may read the status anyway; anyone else learns nothing more than "wrong code"
    (administrators see the TimeSkew alert, and the audit entry of the failed step names
    the skew), and the wire contract is unchanged.
    """
    # A recovery code is checked in the same step (API.md §10): a wrong or used one lands
    # here too.
    text = "login failed: wrong one-time code or recovery code"
    try:
        refusal = await client.call("auth.last_code_refusal", timeout=15)
    except (ClientError, ConnectionError, TimeoutError):
        refusal = None
    if refusal == "REUSED":
        return REUSED_CODE
    try:
        status = await client.call("system.time_sync.status", timeout=15)
    except (ClientError, ConnectionError, TimeoutError):
        return text
    if not isinstance(status, dict) or status.get("state") != "SKEWED":
        return text
    offset = status.get("offset")
    if not isinstance(offset, int | float):
        return text
    side = "behind" if offset > 0 else "ahead of"
    return (
        f"{text}; the daemon's clock is off by {offset:+.1f} s (local clock {side} NTP, "
        f"more than {status.get('max_offset', 30):g} s), so codes from an authenticator "
        "app cannot match until the clock is fixed (a recovery code still works)"
    )


def setup_only_note(info: dict[str, Any]) -> str | None:
    """The note for stderr when ``info`` (the login's ``auth.me``) is a setup-only
    session (API.md §4 ``enforce``, §10 one-time password), else None.

    Such a session answers every call but its own 2FA setup with EACCES "Two-factor
    authentication must be set up first"; the note names the calls it may make, as
    ``midclt2fa call`` arguments. One run of ``midclt2fa`` is one session making one
    call, so the steps are told one per run.
    """
    attributes = info.get("account_attributes") or []
    if "SETUP_ONLY" not in attributes:
        return None
    user = shlex.quote(str(info.get("pw_name", "USER")))
    user_id = info.get("id")
    new_password = f"call user.update {user_id if user_id is not None else 'ID'} "
    new_password += """'{"password": "NEW"}'"""
    secret = bool((info.get("two_factor_config") or {}).get("secret_configured"))
    if "OTPW" in attributes:
        paragraphs = [
            "logged in with a one-time password, now used up: this session may only set a "
            "new password and set up two-factor authentication (other calls fail with "
            "[EACCES]), and it ends with this run. Set the new password in it:",
            f"  {new_password}",
            (
                "A new secret takes user.twofactor_enroll and user.twofactor_confirm in one "
                "session, and each midclt2fa run is a session of its own: set it up in the web "
                "UI, or have an administrator remove the current one "
                f"(user.unset_2fa_secret {user}). Until then the current secret and recovery "
                "codes keep working."
                if secret
                else "Then log in with the new password and set up two-factor authentication."
            ),
        ]
    else:
        paragraphs = [
            f"two-factor authentication is enforced and {user} has none yet, so this session "
            "may only set it up (other calls fail with [EACCES]). One call per midclt2fa run, "
            "in turn:",
            f"  1. call user.twofactor_enroll {user}: add its provisioning_uri to an "
            "authenticator app",
            f"  2. call user.twofactor_confirm {user} '\"CODE\"' with the app's current code",
            "  3. log in with --otp CODE as usual",
            "It may also call auth.me and core.*, and set a new password:",
            f"  {new_password}",
        ]
    lines = []
    for number, paragraph in enumerate(paragraphs):
        if paragraph.startswith("  "):  # a command: never broken
            lines.append("  " + paragraph)
            continue
        lines.append(
            textwrap.fill(
                paragraph,
                width=_NOTE_WIDTH,
                initial_indent="midclt2fa: note: " if number == 0 else "  ",
                subsequent_indent="  ",
                break_on_hyphens=False,
                break_long_words=False,
            )
        )
    return "\n".join(lines)


def _connect_failure(uri: str, exc: ConnectError) -> Failure:
    """Plain words for why ``uri`` cannot be reached."""
    cause = exc.__cause__
    if isinstance(cause, InvalidURI):
        return Failure(
            f"invalid URI {uri!r}: expected ws://HOST:PORT/api/current or ws+unix:///PATH"
        )
    if isinstance(cause, PermissionError):
        return Failure(f"cannot connect to {uri}: permission denied")
    if isinstance(cause, ssl.SSLCertVerificationError) and "mismatch" in str(cause.verify_message):
        return Failure(
            f"cannot connect to {uri}: the daemon's TLS certificate is not for this "
            f"address ({cause.verify_message}); connect by a name or address the "
            "certificate holds (the generated one: the host name, localhost, 127.0.0.1, "
            "::1), or give the daemon a certificate for it (tls_cert_file)"
        )
    if isinstance(cause, TimeoutError):
        return Failure(f"no answer from {uri} within the timeout (-t)")
    if isinstance(cause, ssl.SSLCertVerificationError):
        return Failure(
            f"cannot connect to {uri}: the daemon's TLS certificate is not trusted "
            f"({cause.verify_message}); give its certificate with --cafile FILE, or skip "
            "the check with --insecure"
        )
    secure = uri.startswith("wss://")
    if secure and isinstance(cause, ssl.SSLError | ConnectionResetError):
        # What a plaintext listener does with a TLS handshake: it resets, or answers
        # with something that is not TLS.
        why = f" ({cause.reason})" if isinstance(cause, ssl.SSLError) and cause.reason else ""
        return Failure(
            f"cannot connect to {uri}: the TLS handshake failed{why}; is TLS on in the "
            "daemon (tls = true)? Without it, use ws://"
        )
    if not secure and isinstance(cause, InvalidMessage):
        # A TLS listener closes a plaintext connection without an answer.
        return Failure(
            f"cannot connect to {uri}: {exc} (with tls = true the daemon speaks wss:// only)"
        )
    if isinstance(cause, InvalidHandshake):
        # Something answers there, but it is not the daemon's WebSocket endpoint.
        return Failure(f"cannot connect to {uri}: {exc} (is this the /api/current URL?)")
    return Failure(f"daemon not running (cannot connect to {uri}: {exc})")


async def run(
    args: argparse.Namespace, stdout: TextIO, stdin: TextIO, stderr: TextIO | None = None
) -> None:
    uri = args.uri or default_uri()
    remote = _plaintext_remote(uri)
    if args.api_key is not None and args.key_mechanism == "PLAIN" and remote is not None:
        # The daemon would revoke the key on arrival (API.md §11), and anyone on the way
        # would have read it: it is not even connected for.
        raise Failure(
            f"not sending the API key in plain text over ws:// to {remote}: anyone on the "
            "way could read it, and the daemon revokes a key that arrives so; use SCRAM "
            "(the default: drop --key-mechanism PLAIN) or wss://"
        )
    if args.command == "call":
        # Bad parameters are said before anything is sent (or a password asked for).
        args.params = _call_params(args.args, stdin)
    options: dict[str, Any] = {}
    if args.cafile is not None or args.insecure:
        if not uri.startswith("wss://"):
            raise Failure("--cafile and --insecure apply to wss:// URIs only")
        try:
            options["ssl"] = tls_context(cafile=args.cafile, insecure=args.insecure)
        except ssl.SSLError:
            raise Failure(f"--cafile {args.cafile} holds no PEM certificate") from None
        except OSError as exc:
            raise Failure(f"cannot read --cafile {args.cafile}: {exc.strerror}") from None
    try:
        async with open_client(uri, timeout=min(args.timeout, 10), **options) as client:
            if args.username:
                success = await _login(client, args, stdin)
                info = success.get("user_info")
                if not isinstance(info, dict):
                    info = await client.call("auth.me", timeout=args.timeout)
                note = setup_only_note(info)
                if note is not None:
                    print(note, file=stderr or sys.stderr, flush=True)
            await _command(client, args, stdout, stdin, stderr or sys.stderr)
    except ConnectError as exc:
        raise _connect_failure(uri, exc) from None


def _read_stdin_json(stdin: TextIO) -> Any:
    try:
        return json.loads(stdin.read(), parse_constant=_no_constants)
    except ValueError as exc:
        raise Failure(f"stdin is not JSON: {exc}") from None


def _call_params(args: list[str], stdin: TextIO) -> list[Any]:
    """The positional parameters of ``call`` (see the ``args`` help)."""
    if args == ["-"]:
        params = _read_stdin_json(stdin)
        return params if isinstance(params, list) else [params]
    if args.count("-") > 1:
        raise Failure("'-' (read stdin) may be given only once")
    return [
        _read_stdin_json(stdin) if a == "-" else parse_arg(a, number)
        for number, a in enumerate(args, 1)
    ]


async def _command(
    client: Client, args: argparse.Namespace, stdout: TextIO, stdin: TextIO, stderr: TextIO
) -> None:
    if args.command == "ping":
        print(await client.call("core.ping", timeout=args.timeout), file=stdout)
    elif args.command == "call":
        result = await client.call(args.method, *args.params, timeout=args.timeout)
        if result is not None:  # a method that returns nothing prints nothing
            print(format_result(result), file=stdout)
        if args.method == "user.verify_twofactor_token" and result is False:
            # false for a wrong code and for a spent one alike; say which (stderr).
            if await client.call("auth.last_code_refusal", timeout=args.timeout) == "REUSED":
                print(
                    "midclt2fa: note: this code was already used; wait for the next one",
                    file=stderr,
                )
    elif args.command == "subscribe":
        await client.call("core.subscribe", args.event, timeout=args.timeout)
        seen = 0
        while args.number <= 0 or seen < args.number:
            get = asyncio.ensure_future(client.events.get())
            closed = asyncio.ensure_future(client.closed.wait())
            done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                reason = client.ws.close_reason
                raise Failure(
                    "connection closed by the daemon" + (f" ({reason})" if reason else "")
                )
            closed.cancel()
            event = get.result()
            print(json.dumps(event.get("params", event)), file=stdout, flush=True)
            seen += 1
    elif args.command == "qr":
        uri = await client.call("user.provisioning_uri", args.user, timeout=args.timeout)
        segno.make_qr(uri, error="M", boost_error=False).terminal(out=stdout, compact=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.username is None and (args.password is not None or args.otp is not None):
        parser.error("-P/--password and --otp need -U/--username")
    if args.command == "call" and args.method is None:
        parser.call_parser.error(  # type: ignore[attr-defined]
            "a METHOD is needed, e.g. midclt2fa call core.ping (its parameters follow it)"
        )
    if args.api_key is not None and args.username is None:
        parser.error("-K/--api-key needs -U/--username, the key's user (SCRAM names it)")
    if args.api_key is not None and (args.password is not None or args.otp is not None):
        parser.error("-K/--api-key logs in without -P/--password and --otp")
    try:
        asyncio.run(run(args, sys.stdout, sys.stdin, sys.stderr))
    except Failure as exc:
        print(printable(f"midclt2fa: {exc}"), file=sys.stderr)
        return 1
    except ClientError as exc:
        text = format_error(exc)
        if exc.errno == _ENOTAUTHENTICATED and not args.username:
            text += " (log in with -U USER, or use the Unix socket as root)"
        print(printable(text), file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError):
        # A reply without the fields of its kind (API.md): not the daemon, or a broken one.
        print(
            "midclt2fa: the reply has an unexpected shape (is this middlewared-2fa's "
            "/api/current?)",
            file=sys.stderr,
        )
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
        print("midclt2fa: interrupted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
