"""``midclt2fa`` run as a separate process against the daemon process: the walk-through of
the issue (enable 2FA, create a user, renew, scan, log in with a code) from a shell, plus
its output and failure conventions.

Codes come from Debian's ``oathtool`` and QR codes are read by ``zbarimg``: nothing on the
user's side is computed by project code.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from pathlib import Path

from middlewared_2fa.cli.client import open_client
from tests.cli.conftest import Midclt, midclt_path
from tests.cli.terminal import HANG_GUARD
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.daemon import ADMIN_PASSWORD
from tests.helpers.outside import (
    oathtool_totp,
    parse_otpauth,
    terminal_qr_to_png,
    zbar_decode,
)

NOT_AUTHENTICATED = (
    "midclt2fa: [ENOTAUTHENTICATED] Not authenticated "
    "(log in with -U USER, or use the Unix socket as root)\n"
)


WRONG_PASSWORD = "midclt2fa: login failed: wrong username or password, or the account is locked\n"
REUSED = "midclt2fa: login failed: this code was already used; wait for the next one\n"


def _code_for(midclt: Midclt, username: str) -> str:
    """The user's current code, read the way a user would: URI -> secret -> oathtool."""
    uri = midclt.ok("call", "user.provisioning_uri", username).removesuffix("\n")
    otp = parse_otpauth(uri)
    return oathtool_totp(otp.secret, digits=otp.digits, period=otp.period)


def _user_entry(user_id: object, username: str, *, configured: bool) -> dict[str, object]:
    return {
        "id": user_id,
        "username": username,
        "full_name": "",
        "roles": [],
        "locked": False,
        "ssh_password_enabled": False,
        "twofactor_auth_configured": configured,
        "builtin": False,
    }


# -- the walk-through ------------------------------------------------------------------


def test_walkthrough_from_the_shell(midclt: Midclt, tmp_path: Path) -> None:
    """Root enables 2FA and creates a user; the user renews an 8-digit/60 s secret over TCP,
    scans `qr`, logs in with oathtool's code, and cannot log in with it a second time."""
    config = midclt.json("call", "auth.twofactor.update", '{"enabled": true}')
    assert config == {
        "id": 1,
        "enabled": True,
        "window": 0,
        "services": {"ssh": False},
        "issuer": "middlewared-2fa",
        "enforce": False,
    }
    midclt.create_user("cli_walk", "pw-walk", secret=False)
    as_user = ["-u", midclt.daemon.url, "-U", "cli_walk", "-P", "pw-walk"]
    # No secret yet: the password alone logs in, and the user sets up 2FA themself.
    renewed = midclt.json(
        *as_user, "call", "user.renew_2fa_secret", "cli_walk", '{"otp_digits": 8, "interval": 60}'
    )
    assert isinstance(renewed, dict)
    assert renewed["twofactor_auth_configured"] is True
    assert (renewed["twofactor_config"]["otp_digits"], renewed["twofactor_config"]["interval"]) == (
        8,
        60,
    )
    png = tmp_path / "qr.png"
    terminal_qr_to_png(midclt.ok("qr", "cli_walk"), png)
    scanned = zbar_decode(png)
    assert scanned == renewed["twofactor_config"]["provisioning_uri"]
    otp = parse_otpauth(scanned)
    assert (otp.digits, otp.period) == (8, 60)
    code = oathtool_totp(otp.secret, digits=otp.digits, period=otp.period)
    me = midclt.json(*as_user, "--otp", code, "call", "auth.me")
    assert isinstance(me, dict)
    assert (me["pw_name"], me["credentials"]) == ("cli_walk", "LOGIN_TWOFACTOR")
    again = midclt(*as_user, "--otp", code, "call", "auth.me")
    assert (again.returncode, again.stdout) == (1, "")
    # Used up: "already used" while its 60 s step lasts (window 0), "wrong" after it.
    assert again.stderr == REUSED or again.stderr.startswith(
        "midclt2fa: login failed: wrong one-time code"
    ), again.stderr


# -- where it connects -----------------------------------------------------------------


def test_ping_over_default_unix_socket(midclt: Midclt) -> None:
    """`ping` with no -u uses middlewared.sock in $MIDDLEWARED_2FA_RUNTIME_DIR and prints pong."""
    done = midclt("ping")
    assert (done.returncode, done.stdout, done.stderr) == (0, "pong\n", "")


def test_default_socket_is_run_under_current_directory(midclt: Midclt) -> None:
    """Without $MIDDLEWARED_2FA_RUNTIME_DIR the socket is ./run/middlewared.sock."""
    env = midclt.env(MIDDLEWARED_2FA_RUNTIME_DIR=None)
    done = midclt("call", "core.ping", env=env, cwd=midclt.daemon.base)
    assert (done.returncode, done.stdout, done.stderr) == (0, "pong\n", "")


def test_midclt2fa_uri_environment_selects_the_daemon(midclt: Midclt) -> None:
    """$MIDCLT2FA_URI overrides the socket: over TCP an anonymous auth.me is refused."""
    done = midclt("call", "auth.me", env=midclt.env(MIDCLT2FA_URI=midclt.daemon.url))
    assert (done.returncode, done.stdout, done.stderr) == (1, "", NOT_AUTHENTICATED)


def test_root_on_unix_socket_needs_no_login(midclt: Midclt) -> None:
    """As root on the Unix socket the CLI is the built-in full administrator, no login."""
    me = midclt.json("call", "auth.me")
    assert isinstance(me, dict)
    assert (me["credentials"], me["roles"]) == ("UNIX_SOCKET", ["FULL_ADMIN"])


def test_daemon_not_running_on_tcp(midclt: Midclt) -> None:
    """Nothing listening on the TCP port: exit 1 and "daemon not running" on stderr."""
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        uri = f"ws://127.0.0.1:{bound.getsockname()[1]}/api/current"
        done = midclt("-u", uri, "ping")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"midclt2fa: daemon not running (cannot connect to {uri}: ")
    assert done.stderr.count("\n") == 1


def test_daemon_not_running_on_unix_socket(midclt: Midclt, tmp_path: Path) -> None:
    """No socket file in the runtime directory: exit 1, "daemon not running", the path."""
    sock = tmp_path / "middlewared.sock"
    done = midclt("call", "core.ping", env=midclt.env(MIDDLEWARED_2FA_RUNTIME_DIR=str(tmp_path)))
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"midclt2fa: daemon not running (cannot connect to ws+unix://{sock}: "
        "[Errno 2] No such file or directory)\n",
    )


def test_wrong_url_path_is_not_called_daemon_not_running(midclt: Midclt) -> None:
    """A daemon that refuses the WebSocket path gets its HTTP status, not "not running"."""
    uri = midclt.daemon.url.replace("/api/current", "/api/v1")
    done = midclt("-u", uri, "ping")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"midclt2fa: cannot connect to {uri}: server rejected WebSocket connection: "
        "HTTP 404 (is this the /api/current URL?)\n",
    )


def test_invalid_uri_is_named(midclt: Midclt) -> None:
    """A -u that is no WebSocket URI is reported as such, exit 1."""
    done = midclt("-u", "localhost:8642", "ping")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: invalid URI 'localhost:8642': "
        "expected ws://HOST:PORT/api/current or ws+unix:///PATH\n",
    )


# -- call: arguments and output --------------------------------------------------------


def test_call_parses_json_arguments(midclt: Midclt) -> None:
    """A JSON argument is sent as JSON; a dict result prints as one line of JSON."""
    entry = midclt.json(
        "call", "user.create", '{"username": "cli_json", "password": "pw-json", "full_name": "J"}'
    )
    assert isinstance(entry, dict)
    assert entry == {**_user_entry(entry["id"], "cli_json", configured=False), "full_name": "J"}
    found = midclt.json("call", "user.query", '[["username", "=", "cli_json"]]', '{"get": true}')
    assert found == entry


def test_call_takes_other_arguments_as_strings_and_prints_strings_bare(midclt: Midclt) -> None:
    """A non-JSON argument is a string parameter; a string result prints without quotes."""
    midclt.create_user("cli_str", "pw-str", secret=True)
    out = midclt.ok("call", "user.provisioning_uri", "cli_str")
    host = socket.gethostname()
    assert re.fullmatch(
        rf"otpauth://totp/middlewared-2fa:cli_str%40{re.escape(host)}"
        r"\?secret=[A-Z2-7]{32}&issuer=middlewared-2fa\n",
        out,
    ), out


def test_nan_argument_is_a_string(midclt: Midclt) -> None:
    """`NaN` is not JSON (RFC 8259): it goes out as the string "NaN", not as a bad request."""
    done = midclt("call", "user.provisioning_uri", "NaN")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: [ENOENT] User 'NaN' does not exist\n",
    )


def test_scalar_results_print_bare(midclt: Midclt) -> None:
    """Numbers and booleans print as bare JSON scalars, one per line; null prints nothing."""
    entry = midclt.create_user("cli_scalar", "pw-scalar", secret=True)
    assert (
        midclt.ok("call", "user.query", '[["username", "=", "cli_scalar"]]', '{"count": true}')
        == "1\n"
    )
    assert midclt.ok("call", "user.unset_2fa_secret", "cli_scalar") == ""
    assert midclt.ok("call", "user.delete", str(entry["id"])) == "true\n"


def test_call_reads_the_parameter_list_from_stdin(midclt: Midclt) -> None:
    """`call METHOD -` takes a JSON array from stdin as the whole parameter list."""
    midclt.create_user("cli_stdin", "pw-stdin", secret=False)
    config = midclt.json("call", "user.twofactor_config", "-", stdin='["cli_stdin"]\n')
    assert config == {
        "provisioning_uri": None,
        "secret_configured": False,
        "interval": 30,
        "otp_digits": 6,
        "recovery_codes_remaining": 0,
    }


def test_call_reads_one_parameter_from_stdin_in_place_of_dash(midclt: Midclt) -> None:
    """`call METHOD ARG -` puts the JSON value read from stdin where the `-` stands."""
    midclt.create_user("cli_dash", "pw-dash", secret=False)
    renewed = midclt.json(
        "call", "user.renew_2fa_secret", "cli_dash", "-", stdin='{"otp_digits": 8, "interval": 60}'
    )
    assert isinstance(renewed, dict)
    config = renewed["twofactor_config"]
    assert (config["otp_digits"], config["interval"]) == (8, 60)
    otp = parse_otpauth(config["provisioning_uri"])
    assert (otp.digits, otp.period) == (8, 60)


def test_stdin_that_is_not_json_fails(midclt: Midclt) -> None:
    """Non-JSON stdin for `-` is exit 1 with the parser's reason."""
    done = midclt("call", "core.ping", "-", stdin="not json")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: stdin is not JSON: Expecting value: line 1 column 1 (char 0)\n",
    )


def test_invalid_params_show_field_paths(midclt: Midclt) -> None:
    """A -32602 reply prints each invalid field's dotted path and message to stderr, exit 1."""
    done = midclt("call", "auth.twofactor.update", '{"window": 11}')
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: invalid parameters\n"
        "  auth_twofactor_update.window: Input should be less than or equal to 10\n",
    )


def test_call_error_shows_errname_and_reason(midclt: Midclt) -> None:
    """A call error prints `[ERRNAME] reason` to stderr and exits 1."""
    midclt.create_user("cli_nosecret", "pw-nosecret", secret=False)
    done = midclt("call", "user.provisioning_uri", "cli_nosecret")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: [EINVAL] 'cli_nosecret' user does not have two factor "
        "authentication configured\n",
    )


def test_unknown_method_fails(midclt: Midclt) -> None:
    """An unknown method is exit 1 with the daemon's reason."""
    done = midclt("call", "no.such_method")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: Method 'no.such_method' does not exist\n",
    )


def test_usage_errors_exit_1(midclt: Midclt) -> None:
    """A command-line mistake is a failure like any other: exit status 1, not argparse's 2."""
    missing = midclt("call")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("usage: midclt2fa call "), missing.stderr
    lonely = midclt("-P", "secret", "ping")
    assert (lonely.returncode, lonely.stdout) == (1, "")
    assert lonely.stderr.endswith("midclt2fa: error: -P/--password and --otp need -U/--username\n")


# -- logging in ------------------------------------------------------------------------


def test_tcp_login_with_username_and_password(midclt: Midclt) -> None:
    """-U/-P over TCP log in with PASSWORD_PLAIN before the call."""
    me = midclt.json(
        "-u", midclt.daemon.url, "-U", "admin", "-P", ADMIN_PASSWORD, "call", "auth.me"
    )
    assert isinstance(me, dict)
    assert (me["pw_name"], me["credentials"], me["roles"]) == (
        "admin",
        "LOGIN_PASSWORD",
        ["FULL_ADMIN"],
    )


def test_failed_login_exits_1(midclt: Midclt) -> None:
    """A wrong password is exit 1 with one line on stderr and nothing on stdout."""
    done = midclt("-u", midclt.daemon.url, "-U", "admin", "-P", "wrong", "call", "auth.me")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        WRONG_PASSWORD,
    )


def test_login_with_otp_option(midclt: Midclt) -> None:
    """--otp answers OTP_REQUIRED: the session is LOGIN_TWOFACTOR."""
    midclt.create_user("cli_otp", "pw-otp", secret=True)
    code = _code_for(midclt, "cli_otp")
    me = midclt.json(
        "-u", midclt.daemon.url, "-U", "cli_otp", "-P", "pw-otp", "--otp", code, "call", "auth.me"
    )
    assert isinstance(me, dict)
    assert (me["pw_name"], me["credentials"]) == ("cli_otp", "LOGIN_TWOFACTOR")


def test_wrong_otp_option_exits_1(midclt: Midclt) -> None:
    """A wrong --otp without a terminal to ask again on is exit 1, "wrong one-time code"."""
    midclt.create_user("cli_badotp", "pw-badotp", secret=True)
    done = midclt(
        "-u", midclt.daemon.url, "-U", "cli_badotp", "-P", "pw-badotp", "--otp", "12345",
        "call", "auth.me",
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    # Only the start is fixed: the message may go on with a hint about the daemon's clock.
    assert done.stderr.startswith("midclt2fa: login failed: wrong one-time code"), done.stderr


def test_account_cool_down_is_explained(midclt: Midclt) -> None:
    """After five wrong passwords the account cools down: even the right password is exit
    1 with a message that says so (not a bare "[EBUSY] Rate Limit Exceeded")."""
    midclt.create_user("cli_throttled", "pw-throttled", secret=False)
    url = midclt.daemon.url
    for _ in range(5):
        done = midclt("-u", url, "-U", "cli_throttled", "-P", "wrong", "ping")
        assert done.stderr == WRONG_PASSWORD
    done = midclt("-u", url, "-U", "cli_throttled", "-P", "pw-throttled", "ping")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "midclt2fa: login refused: too many calls before login from this address (the "
        "daemon's rate_limit_calls per rate_limit_period; each login takes two), or a "
        "cool-down of this account after failed logins; wait a minute, then try again\n"
    )


def test_missing_otp_without_terminal_exits_1(midclt: Midclt) -> None:
    """OTP_REQUIRED with no --otp and no terminal: exit 1, asking for --otp."""
    midclt.create_user("cli_nootp", "pw-nootp", secret=True)
    done = midclt("-u", midclt.daemon.url, "-U", "cli_nootp", "-P", "pw-nootp", "ping")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: login failed: a one-time code or recovery code is required (use --otp)\n",
    )


def test_missing_password_without_terminal_exits_1(midclt: Midclt) -> None:
    """-U without -P and no terminal: exit 1 asking for -P (stdin is never read for it)."""
    done = midclt("-u", midclt.daemon.url, "-U", "admin", "ping", stdin=ADMIN_PASSWORD + "\n")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: a password is required and there is no terminal to ask on (use -P)\n",
    )


def test_password_prompt_on_terminal_does_not_echo(midclt: Midclt) -> None:
    """-U without -P asks on the terminal with echo off, then logs in."""
    term = midclt.terminal("-u", midclt.daemon.url, "-U", "admin", "call", "auth.me")
    try:
        assert term.expect("Password for admin: ") == "Password for admin: "
        assert term.echo_enabled() is False
        term.send(ADMIN_PASSWORD + "\n")
        status, rest = term.finish()
        assert status == 0, rest
        assert ADMIN_PASSWORD not in term.output
        assert rest.startswith("\r\n")  # the Enter the terminal did not echo
        me = json.loads(rest)
        assert (me["pw_name"], me["credentials"]) == ("admin", "LOGIN_PASSWORD")
        assert term.echo_enabled() is True
    finally:
        term.close()


def test_ctrl_c_at_password_prompt_exits_1_and_restores_echo(midclt: Midclt) -> None:
    """Ctrl-C at the password prompt ends the CLI at once with status 1, echo back on."""
    term = midclt.terminal("-u", midclt.daemon.url, "-U", "admin", "ping")
    try:
        term.expect("Password for admin: ")
        term.send("\x03")
        status, rest = term.finish()
        assert (status, rest) == (1, "\r\nmidclt2fa: interrupted\r\n")
        assert term.echo_enabled() is True
    finally:
        term.close()


def test_otp_prompt_on_terminal_asks_again_after_a_wrong_code(midclt: Midclt) -> None:
    """Without --otp the code is asked on the terminal; a wrong one is asked for again."""
    midclt.create_user("cli_tty", "pw-tty", secret=True)
    term = midclt.terminal(
        "-u", midclt.daemon.url, "-U", "cli_tty", "-P", "pw-tty", "call", "auth.me"
    )
    try:
        term.expect("One-time code or recovery code: ")
        term.send("12345\n")  # too short: a wrong code, never a right one by chance
        retry = term.expect("One-time code or recovery code: ")
        assert retry.startswith("12345\r\nmidclt2fa: wrong one-time code"), retry
        assert retry.endswith("; try again\r\nOne-time code or recovery code: "), retry
        code = _code_for(midclt, "cli_tty")
        term.send(code + "\n")
        status, rest = term.finish()
        assert status == 0, rest
        assert rest.startswith(code + "\r\n")  # a code is echoed, unlike a password
        me = json.loads(rest.removeprefix(code + "\r\n"))
        assert (me["pw_name"], me["credentials"]) == ("cli_tty", "LOGIN_TWOFACTOR")
    finally:
        term.close()


async def _passkey_and_recovery_codes(url: str, username: str, password: str, code: str) -> str:
    """Log in with the code, register a passkey (a software authenticator playing the
    browser, origin http://localhost:PORT, API.md §12) and return a recovery code."""
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    async with open_client(url) as c:
        assert (await c.login(username, password, code))["authenticator"] == "LEVEL_2"
        begun = await c.call("user.webauthn_register_begin", username, {"name": "key"})
        response = SoftAuthenticator().register(begun["options"], origin=f"http://localhost:{port}")
        await c.call("user.webauthn_register_finish", username, response)
        codes: list[str] = await c.call("user.twofactor_recovery_codes", username)
    return codes[0]


def test_otp_prompt_says_passkeys_need_a_browser(midclt: Midclt) -> None:
    """For an account with passkeys the CLI says once, before the code prompt, that only
    a browser can use them; a recovery code still logs in."""
    midclt.create_user("cli_pk", "pw-pk", secret=True)
    recovery = asyncio.run(
        _passkey_and_recovery_codes(
            midclt.daemon.url, "cli_pk", "pw-pk", _code_for(midclt, "cli_pk")
        )
    )
    term = midclt.terminal(
        "-u", midclt.daemon.url, "-U", "cli_pk", "-P", "pw-pk", "call", "auth.me"
    )
    try:
        first = term.expect("One-time code or recovery code: ")
        assert first == (
            "midclt2fa: this account has passkeys, which only a browser can use; enter a "
            "code from the authenticator app or a recovery code (scripts log in with an "
            "API key: -K)\r\n"
            "One-time code or recovery code: "
        ), first
        term.send(recovery + "\n")
        status, rest = term.finish()
        assert status == 0, rest
        me = json.loads(rest.removeprefix(recovery + "\r\n"))
        assert (me["pw_name"], me["credentials"]) == ("cli_pk", "LOGIN_TWOFACTOR")
    finally:
        term.close()
    # Without a terminal the failure says the same.
    done = midclt("-u", midclt.daemon.url, "-U", "cli_pk", "-P", "pw-pk", "call", "auth.me")
    assert done.returncode == 1
    assert done.stderr == (
        "midclt2fa: login failed: a one-time code or recovery code is required (use --otp); "
        "this account has passkeys, which only a browser can use; enter a code from the "
        "authenticator app or a recovery code (scripts log in with an API key: -K)\n"
    )


# -- subscribe and qr ------------------------------------------------------------------


def test_subscribe_prints_one_event_and_stops(midclt: Midclt) -> None:
    """`subscribe user.query -n 1` prints the next change as one JSON line and exits 0."""
    entry = midclt.create_user("cli_watch", "pw-watch", secret=False)
    watcher = subprocess.Popen(
        [midclt_path(), "subscribe", "user.query", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=midclt.env(),
        start_new_session=True,
    )
    changed: object = None
    try:
        # The subscription is live some time after start; the same change is repeated until
        # the watcher has seen one (each repeat emits an identical event).
        deadline = time.monotonic() + HANG_GUARD
        while watcher.poll() is None:
            assert time.monotonic() < deadline, "the watcher never saw an event"
            changed = midclt.json("call", "user.update", str(entry["id"]), '{"full_name": "W"}')
            try:
                watcher.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        out, err = watcher.communicate(timeout=HANG_GUARD)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert (watcher.returncode, err) == (0, "")
    assert changed == {**_user_entry(entry["id"], "cli_watch", configured=False), "full_name": "W"}
    assert out.count("\n") == 1
    assert json.loads(out) == {
        "msg": "changed",
        "collection": "user.query",
        "id": entry["id"],
        "fields": changed,
    }


def test_qr_prints_a_code_that_scans_to_the_provisioning_uri(
    midclt: Midclt, tmp_path: Path
) -> None:
    """`qr USER` prints a square block-character QR code that zbarimg reads as the URI."""
    midclt.create_user("cli_qr", "pw-qr", secret=True)
    uri = midclt.ok("call", "user.provisioning_uri", "cli_qr").removesuffix("\n")
    out = midclt.ok("qr", "cli_qr")
    lines = out.splitlines()
    width = len(lines[0])
    # 4v+17 modules for version v, plus a 4-module quiet zone on each side; two rows per
    # line, so the odd last row shares its line with the terminal's background.
    assert (width - 25) % 4 == 0 and 1 <= (width - 25) // 4 <= 40, width
    assert len(lines) == (width + 1) // 2
    assert lines[-1] == "▀" * width
    png = tmp_path / "terminal-qr.png"
    terminal_qr_to_png(out, png)
    assert zbar_decode(png) == uri


def test_qr_for_user_without_secret_fails(midclt: Midclt) -> None:
    """`qr USER` for a user without a secret prints nothing, gives the reason, exits 1."""
    midclt.create_user("cli_qr_none", "pw-qr-none", secret=False)
    done = midclt("qr", "cli_qr_none")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: [EINVAL] 'cli_qr_none' user does not have two factor "
        "authentication configured\n",
    )


def test_wrong_password_says_nothing_about_a_code(midclt: Midclt) -> None:
    """A wrong password for a user with a secret: no code was asked, so the message is
    about the password (and the account), never "or one-time code"."""
    midclt.create_user("cli_pwonly", "pw-right", secret=True)
    done = midclt("-u", midclt.daemon.url, "-U", "cli_pwonly", "-P", "pw-wrong", "ping")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", WRONG_PASSWORD)


def test_a_reused_code_is_called_reused(midclt: Midclt) -> None:
    """The right password and a code that was just accepted: the login says the code was
    already used (the window keeps the code matching, RFC 6238 §5.2 refuses its step), and
    so does user.verify_twofactor_token's note; a wrong code still says wrong."""
    midclt.create_user("cli_reuse", "pw-reuse", secret=True)
    # A window of one step: the code still matches when the next step begins meanwhile.
    midclt.ok("call", "auth.twofactor.update", '{"window": 1}')
    try:
        _reused_code(midclt)
    finally:
        midclt.ok("call", "auth.twofactor.update", '{"window": 0}')


def _reused_code(midclt: Midclt) -> None:
    code = _code_for(midclt, "cli_reuse")
    login = ("-u", midclt.daemon.url, "-U", "cli_reuse", "-P", "pw-reuse")
    first = midclt(*login, "--otp", code, "ping")
    assert (first.returncode, first.stdout, first.stderr) == (0, "pong\n", ""), first
    again = midclt(*login, "--otp", code, "ping")
    assert (again.returncode, again.stdout, again.stderr) == (1, "", REUSED), again

    checked = midclt("call", "user.verify_twofactor_token", "cli_reuse", json.dumps(code))
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0,
        "false\n",
        "midclt2fa: note: this code was already used; wait for the next one\n",
    ), checked
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    checked = midclt("call", "user.verify_twofactor_token", "cli_reuse", json.dumps(wrong))
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "false\n", ""), checked


def test_call_without_a_method_names_the_method(midclt: Midclt) -> None:
    done = midclt("call")
    assert done.returncode == 1
    assert done.stderr.endswith(
        "midclt2fa call: error: a METHOD is needed, e.g. midclt2fa call core.ping "
        "(its parameters follow it)\n"
    ), done.stderr
    assert "required" not in done.stderr  # argparse's claim that the parameters are


def test_a_null_result_prints_nothing(midclt: Midclt) -> None:
    """auth.last_code_refusal of a session that sent no code is null: exit 0, no output."""
    done = midclt("call", "auth.last_code_refusal")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done


def test_broken_json_argument_says_where(midclt: Midclt) -> None:
    """An argument that starts like JSON but does not parse is refused before anything is
    sent, saying why and where (never echoing it: it may hold a password); the daemon's
    own validation never names an internal class."""
    done = midclt("call", "user.create", '{"username": "bob", password: "x"}')
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "midclt2fa: argument 1 looks like JSON but is not valid JSON: Expecting property name "
        "enclosed in double quotes (line 1, column 21); quote names and strings with double "
        """quotes: '{"username": "bob"}'\n""",
    ), done
    done = midclt("call", "user.update", "1", "[1,")
    assert done.stderr == (
        "midclt2fa: argument 2 looks like JSON but is not valid JSON: Expecting value "
        "(line 1, column 4)\n"
    ), done
    assert midclt.ok("call", "user.query", '[["username", "=", "bob"]]') == "[]\n"

    done = midclt("call", "user.create", "bob")  # a string where an object belongs
    assert (done.returncode, done.stdout) == (1, ""), done
    assert (
        done.stderr == "midclt2fa: invalid parameters\n  user_create: Input should be an object\n"
    )
