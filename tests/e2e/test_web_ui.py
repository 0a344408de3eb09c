"""The web UI in a real browser: Playwright drives Debian's headless chromium against the
daemon started as a separate process with its own state folder, through ``/ui/`` and the
same-origin WebSocket only, under the daemon's Content-Security-Policy.

What happens outside the browser goes through outside tools: the real ``midclt2fa`` over
the Unix socket (root, as an administrator at the console would) creates users and makes
changes "from the CLI"; ``oathtool`` plays the authenticator app and ``zbarimg`` the phone
camera. The daemon runs on the real clock: a code is computed only when enough of its
time step is left (waiting for the clock is waiting for the outside world; no test
asserts on timing). UI state is awaited with Playwright's auto-waiting ``expect``.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.helpers.daemon import (
    ADMIN_PASSWORD,
    SubprocessDaemon,
    short_tempdir,
    start_subprocess_daemon,
)
from tests.helpers.ntp import NtpResponder
from tests.helpers.outside import ZBAR_QR_ONLY

#: The login screen's answer to EBUSY: the account's cool-down or the address's limit.
TOO_MANY = (
    "Too many login attempts for this account or from this address (cool-down). "
    "Wait a few minutes, then try again."
)

if TYPE_CHECKING:
    from tests.e2e.conftest import Pages, Screenshots

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("oathtool") is None, reason="oathtool is not installed"),
    pytest.mark.skipif(shutil.which("zbarimg") is None, reason="zbarimg is not installed"),
]

#: Generous: the tests must pass on a slow, busy two-core machine.
expect.set_options(timeout=30_000)

#: Every daemon here: a short NTP timeout (enabling 2FA checks the clock and the machine
#: may have no network), and no periodic clock check in the way.
DAEMON_ENV = {"MIDDLEWARED_2FA_NTP_TIMEOUT": "1", "MIDDLEWARED_2FA_TIME_SYNC_INTERVAL": "3600"}
PASSWORD = "user-pass-123"
TOKEN_KEY = "middlewared-2fa.token"
#: A code is computed only with at least this many seconds left in its time step.
STEP_MARGIN = 3.0


# -- the daemon and the CLI --------------------------------------------------------------


@pytest.fixture
def base() -> Iterator[Path]:
    """A state folder for one daemon."""
    folder = short_tempdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_daemon(
    base: Path, *, env: dict[str, str] | None = None, **kwargs: Any
) -> SubprocessDaemon:
    return start_subprocess_daemon(base, extra_env={**DAEMON_ENV, **(env or {})}, **kwargs)


@pytest.fixture
def daemon(base: Path) -> Iterator[SubprocessDaemon]:
    """The daemon as a separate process (the console script), real clock."""
    served = start_daemon(base)
    yield served
    served.stop()


def ui_url(daemon: SubprocessDaemon) -> str:
    """http://127.0.0.1:PORT/ui/ of ``daemon`` (the same origin as its API socket)."""
    return daemon.url.replace("ws://", "http://").removesuffix("/api/current") + "/ui/"


def midclt(daemon: SubprocessDaemon, method: str, *params: Any) -> Any:
    """``midclt2fa call METHOD PARAMS...`` as root over the Unix socket; the result."""
    script = shutil.which("midclt2fa", path=str(Path(sys.executable).parent))
    assert script is not None, "midclt2fa is not installed in this environment"
    done = subprocess.run(
        [script, "-u", daemon.unix_uri, "call", method, *(json.dumps(p) for p in params)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text  # strings are printed bare


def add_user(daemon: SubprocessDaemon, username: str, **fields: Any) -> dict[str, Any]:
    return dict(
        midclt(daemon, "user.create", {"username": username, "password": PASSWORD, **fields})
    )


def secret_of(uri: str) -> str:
    return parse_qs(urlsplit(uri).query)["secret"][0]


# -- the authenticator and the camera ------------------------------------------------------


@dataclass(frozen=True)
class Authenticator:
    """``oathtool`` as the phone app: RFC 6238 codes of ``secret`` (base32)."""

    secret: str
    digits: int = 6
    period: int = 30

    def _codes(self, at: float, count: int = 1) -> list[str]:
        done = subprocess.run(
            [
                "oathtool",
                "--totp",
                "-b",
                "-d",
                str(self.digits),
                "-s",
                f"{self.period}s",
                "-w",
                str(count - 1),
                "--now",
                f"@{int(at)}",
                self.secret,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout.split()

    def code(self, *, after_step: int | None = None) -> tuple[str, int]:
        """The code the app shows now and its time step. Waits for the next step when
        fewer than STEP_MARGIN seconds are left in this one, or while the step is not
        newer than ``after_step`` (a code is accepted only once, RFC 6238 §5.2)."""
        while True:
            now = time.time()
            step = int(now // self.period)
            left = (step + 1) * self.period - now
            if left >= STEP_MARGIN and (after_step is None or step > after_step):
                return self._codes(now)[0], step
            time.sleep(left + 0.05)  # the clock, not the daemon, is what we wait for

    def wrong_code(self) -> str:
        """A well-formed code that matches none of the steps around now."""
        near = set(self._codes(time.time() - 3 * self.period, 7))
        return next(c for c in (str(d) * self.digits for d in range(10)) if c not in near)


def scan(image: Path) -> str:
    """What ``zbarimg`` reads from the QR code in ``image``."""
    done = subprocess.run(
        ["zbarimg", "--quiet", "--raw", *ZBAR_QR_ONLY, str(image)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"zbarimg found no QR code in {image}: {done.stderr}"
    return done.stdout.strip()


# -- page helpers ----------------------------------------------------------------------------


def open_ui(pages: Pages, daemon: SubprocessDaemon, **options: Any) -> Page:
    page = pages.new(**options)
    page.goto(ui_url(daemon))
    expect(page.get_by_role("heading", name="Log In")).to_be_visible()
    return page


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill in and send the password step."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log In").click()


def enter_code(page: Page, code: str) -> None:
    page.get_by_label("One-time code", exact=True).fill(code)
    page.get_by_role("button", name="Proceed").click()


def two_factor_screen(page: Page) -> Locator:
    """Wait for the Two-Factor Authentication screen; its status message."""
    expect(page.get_by_role("heading", name="Two-Factor Authentication", level=1)).to_be_visible()
    return page.get_by_role("region", name="User Two-Factor Authentication").get_by_role("status")


def open_settings(page: Page, item: str) -> None:
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("menuitem", name=item).click()
    expect(page.get_by_role("heading", name=item, level=1)).to_be_visible()


def log_out(page: Page, username: str) -> None:
    page.get_by_role("button", name=username, exact=True).click()
    page.get_by_role("menuitem", name="Log Out").click()
    expect(page.get_by_text("You have logged out.")).to_be_visible()


def field_of(page: Page, label: str) -> Locator:
    """The whole field (label, control, help, error) of the control labelled ``label``."""
    return page.locator(".field").filter(has=page.get_by_label(label, exact=True))


def session_storage(page: Page) -> dict[str, str]:
    return dict(page.evaluate("Object.fromEntries(Object.entries(sessionStorage))"))


# -- the tests --------------------------------------------------------------------------------


def test_admin_enables_2fa_then_a_user_enrols_and_logs_in_with_a_code(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """An administrator enables global 2FA in Advanced Settings; a user gets the setup
    prompt, configures a secret, confirms it with a code computed from the secret shown on
    the page, and from then on logs in with password plus code; a reload keeps the
    session through the re-login token, never the password."""
    add_user(daemon, "alice", full_name="Alice Liddell")

    admin = open_ui(pages, daemon)
    shots.page(admin, "login")
    log_in(admin, "admin", ADMIN_PASSWORD)
    two_factor_screen(admin)
    open_settings(admin, "Advanced Settings")
    enabled = admin.get_by_label("Enable Two-Factor Authentication Globally")
    expect(enabled).not_to_be_checked()
    expect(field_of(admin, "Enable Two-Factor Authentication Globally")).to_contain_text(
        "Users with a second factor (an authenticator app or a passkey) must use it at every login."
    )
    enabled.check()
    admin.get_by_label("Window", exact=True).fill("1")
    expect(field_of(admin, "Window")).to_contain_text("codes up to 30 s early or late")
    shots.page(admin, "advanced-settings")
    admin.get_by_role("button", name="Save").click()
    expect(admin.get_by_text("Global two-factor authentication settings saved.")).to_be_visible()
    assert midclt(daemon, "auth.twofactor.config")["enabled"] is True
    log_out(admin, "admin")

    page = open_ui(pages, daemon)
    log_in(page, "alice")
    prompt = page.get_by_role("dialog", name="Set Up Two-Factor Authentication")
    expect(prompt).to_be_visible()
    shots.page(page, "setup-prompt")
    prompt.get_by_role("button", name="Skip").click()
    skip = page.get_by_role("dialog", name="Skip Two-Factor Setup?")
    expect(skip).to_contain_text(
        "asked to set up two-factor authentication again at your next login"
    )
    skip.get_by_role("button", name="Go Back").click()
    page.get_by_role("dialog", name="Set Up Two-Factor Authentication").get_by_role(
        "button", name="Set Up Now"
    ).click()

    configure = page.get_by_role("dialog", name="Configure 2FA Secret")
    expect(configure.get_by_label("Interval")).to_have_value("30")
    expect(configure.get_by_label("Digits")).to_have_value("6")
    shots.page(page, "configure-dialog")
    configure.get_by_role("button", name="Configure").click()

    setup = page.get_by_role("region", name="Finish Setting Up Your Authenticator")
    expect(setup.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    secret = setup.locator(".secret").inner_text().replace(" ", "")
    # Staged enrolment (API.md §4): the secret shown is pending, not active until confirmed.
    assert not midclt(daemon, "user.query", [["username", "=", "alice"]])[0][
        "twofactor_auth_configured"
    ]
    shots.page(page, "confirm-step")
    phone = Authenticator(secret)

    code_box = setup.get_by_label("Code from your authenticator app")
    code_box.fill(phone.wrong_code())
    setup.get_by_role("button", name="Confirm").click()
    expect(setup).to_contain_text("That code is not right")
    expect(setup).to_contain_text("clock is set automatically")
    shots.page(page, "confirm-wrong-code")
    code, used_step = phone.code()
    code_box.fill(code)
    setup.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Two-factor authentication is set up.")).to_be_visible()
    expect(setup).to_have_count(0)
    status = two_factor_screen(page)
    expect(status).to_contain_text("active for your account")
    assert secret == secret_of(midclt(daemon, "user.provisioning_uri", "alice"))
    shots.page(page, "configured")
    log_out(page, "alice")

    log_in(page, "alice")
    otp = page.get_by_label("One-time code", exact=True)
    expect(otp).to_be_visible()
    expect(otp).to_have_attribute("autocomplete", "one-time-code")
    expect(otp).to_have_attribute("inputmode", "numeric")
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    shots.page(page, "login-code-step")
    enter_code(page, phone.wrong_code())
    expect(page.get_by_role("alert")).to_contain_text("Wrong or expired code. 3 attempts left.")
    shots.page(page, "login-wrong-code")
    code, _ = phone.code(after_step=used_step)  # the confirmation used up the earlier step
    enter_code(page, code)
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    expect(page.get_by_role("dialog")).to_have_count(0)  # no setup prompt any more

    page.reload()
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    stored = session_storage(page)
    assert TOKEN_KEY in stored
    assert all(PASSWORD not in value and secret not in value for value in stored.values())
    log_out(page, "alice")
    assert TOKEN_KEY not in session_storage(page)
    said = " ".join(pages.console(page).messages)
    assert all(word not in said for word in (PASSWORD, secret, code)), said


def test_show_qr_displays_a_code_that_scans_to_the_provisioning_uri(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots, tmp_path: Path
) -> None:
    """Show QR displays a QR code that zbarimg decodes to the user's provisioning URI, the
    key for manual entry (copied to the clipboard by the Copy button), which apps work and
    a warning for non-default digits and period; Escape closes it."""
    add_user(daemon, "bob")
    midclt(daemon, "user.renew_2fa_secret", "bob", {"otp_digits": 8, "interval": 60})
    uri = midclt(daemon, "user.provisioning_uri", "bob")

    page = open_ui(pages, daemon, permissions=["clipboard-read", "clipboard-write"])
    log_in(page, "bob")
    status = two_factor_screen(page)
    expect(status).to_contain_text("not enabled on this system")
    expect(status).to_contain_text("Your account has a secret")
    show = page.get_by_role("button", name="Show QR")
    show.click()
    dialog = page.get_by_role("dialog", name="Two-Factor Authentication QR Code")
    image = dialog.get_by_role("img", name=re.compile("QR code"))
    expect(image).to_be_visible()
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0
    expect(dialog).to_contain_text("RFC 6238")
    expect(dialog).to_contain_text("8-digit codes and a 60-second period")
    secret_text = dialog.locator(".secret")
    assert secret_text.inner_text().replace(" ", "") == secret_of(uri)
    shots.page(page, "qr-dialog")

    picture = shots.path("qr-image")
    image.screenshot(path=str(picture))
    assert scan(picture) == uri

    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret_of(uri)

    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(show).to_be_focused()


def test_unset_asks_for_confirmation_and_the_next_login_needs_no_code(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """Unset 2FA Secret warns that security is reduced and that setup will be offered again
    (global 2FA is on), does nothing when cancelled, removes the secret when confirmed;
    the next login needs no code and shows the setup prompt, which comes back at each
    login after being skipped."""
    add_user(daemon, "carol")
    midclt(daemon, "auth.twofactor.update", {"enabled": True, "window": 1})
    entry = midclt(daemon, "user.renew_2fa_secret", "carol", {})
    phone = Authenticator(secret_of(entry["twofactor_config"]["provisioning_uri"]))

    page = open_ui(pages, daemon)
    log_in(page, "carol")
    code, _ = phone.code()
    enter_code(page, code)
    status = two_factor_screen(page)
    expect(status).to_contain_text("active for your account")

    expect(page.locator("main .recovery-count")).to_have_text("0 of 10 left")
    unset = page.get_by_role("button", name="Unset 2FA Secret")
    unset.click()
    dialog = page.get_by_role("dialog", name="Unset 2FA Secret")
    expect(dialog).to_contain_text("reduces the security of your account")
    expect(dialog).not_to_contain_text("recovery codes")  # carol has none
    expect(dialog).to_contain_text("asked to set it up again at your next login")
    shots.page(page, "unset-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(unset).to_be_focused()
    assert midclt(daemon, "user.query", [["username", "=", "carol"]])[0][
        "twofactor_auth_configured"
    ]

    unset.click()
    page.get_by_role("dialog", name="Unset 2FA Secret").get_by_role(
        "button", name="Unset Secret"
    ).click()
    expect(status).to_contain_text("not set up for your account")
    expect(page.get_by_role("button", name="Show QR")).to_be_hidden()
    expect(page.get_by_role("button", name="Configure 2FA Secret")).to_be_visible()
    [user] = midclt(daemon, "user.query", [["username", "=", "carol"]])
    assert user["twofactor_auth_configured"] is False
    log_out(page, "carol")

    log_in(page, "carol")  # no code asked
    prompt = page.get_by_role("dialog", name="Set Up Two-Factor Authentication")
    expect(prompt).to_be_visible()
    prompt.get_by_role("button", name="Skip").click()
    page.get_by_role("dialog", name="Skip Two-Factor Setup?").get_by_role(
        "button", name="Skip Setup"
    ).click()
    expect(page.get_by_text("asked again at your next login")).to_be_visible()
    expect(status).to_contain_text("not set up for your account")
    shots.page(page, "not-configured")

    page.reload()  # the same browser session: skipped stays skipped
    expect(status).to_contain_text("not set up for your account")
    expect(page.get_by_role("dialog")).to_have_count(0)
    log_out(page, "carol")
    log_in(page, "carol")  # a new login: the prompt is back
    expect(page.get_by_role("dialog", name="Set Up Two-Factor Authentication")).to_be_visible()


def test_global_form_shows_server_validation_errors_at_their_fields(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """Window 11 and an issuer with a colon are refused by the server (-32602) and each
    message is shown at its own field, marked invalid; nothing is saved until fixed."""
    page = open_ui(pages, daemon)
    log_in(page, "admin", ADMIN_PASSWORD)
    two_factor_screen(page)
    open_settings(page, "Advanced Settings")
    window = page.get_by_label("Window", exact=True)
    expect(window).to_have_value("0")
    window.fill("11")
    page.get_by_label("Issuer").fill("bad:issuer")
    page.get_by_role("button", name="Save").click()
    expect(field_of(page, "Window").locator(".field-error")).to_have_text(
        "Input should be less than or equal to 10."
    )
    expect(window).to_have_attribute("aria-invalid", "true")
    expect(field_of(page, "Issuer").locator(".field-error")).to_contain_text("Must not contain ':'")
    expect(window).to_be_focused()
    shots.page(page, "window-11")
    assert midclt(daemon, "auth.twofactor.config")["window"] == 0

    window.fill("10")
    expect(field_of(page, "Window")).to_contain_text("up to 300 s early or late")
    page.get_by_label("Issuer").fill("Lab NAS")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Global two-factor authentication settings saved.")).to_be_visible()
    expect(window).not_to_have_attribute("aria-invalid", "true")
    config = midclt(daemon, "auth.twofactor.config")
    assert (config["window"], config["issuer"]) == (10, "Lab NAS")


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")
def test_enabling_2fa_on_a_skewed_clock_is_refused_with_the_offset(
    base: Path, pages: Pages, shots: Screenshots
) -> None:
    """With the daemon's clock 90 s ahead (faketime) of a loopback NTP server, the clock
    card says so and enabling global 2FA is refused in plain words with the offset."""
    with NtpResponder() as ntp:
        daemon = start_daemon(base, prefix=["faketime", "-f", "+90s"])
        try:
            midclt(daemon, "system.ntpserver.create", {"address": ntp.host, "port": ntp.port})
            page = open_ui(pages, daemon)
            log_in(page, "admin", ADMIN_PASSWORD)
            two_factor_screen(page)
            open_settings(page, "Advanced Settings")
            clock = page.get_by_role("region", name="Server Clock")
            expect(clock).to_contain_text("Clock skewed")
            expect(clock).to_contain_text(re.compile(r"(89|90)\.\d s ahead of NTP"))
            page.get_by_label("Enable Two-Factor Authentication Globally").check()
            page.get_by_role("button", name="Save").click()
            refusal = page.locator("form .form-error")
            expect(refusal).to_contain_text("was not enabled: the server clock is wrong")
            expect(refusal).to_contain_text(
                re.compile(r"The server clock is (89|90)\.\d s ahead of NTP")
            )
            expect(refusal).to_contain_text(f"{ntp.host}:{ntp.port}")
            expect(field_of(page, "Enable Two-Factor Authentication Globally")).to_contain_text(
                "Cannot be enabled while the server clock is wrong."
            )
            shots.page(page, "skewed-clock")
            assert midclt(daemon, "auth.twofactor.config")["enabled"] is False
        finally:
            daemon.stop()


#: Opens a WebSocket from the page and reports how that went.
OPEN_SOCKET = """(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.addEventListener('open', () => { ws.close(); resolve('open'); });
  ws.addEventListener('error', () => resolve('error'));
  ws.addEventListener('close', (event) => resolve('closed ' + event.code));
})"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """A plain page served from another loopback port: a different origin."""
    (tmp_path / "index.html").write_text(
        "<!doctype html><title>Another site</title><p>Not the daemon.</p>\n"
    )
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_page_from_another_origin_cannot_open_the_api_socket(
    daemon: SubprocessDaemon, pages: Pages, other_origin: str
) -> None:
    """A page served from another loopback port fails to open the API WebSocket (the
    daemon refuses the handshake with 403), while the UI's own origin can."""
    foreign = pages.new(allow_errors=True)
    foreign.goto(f"{other_origin}/index.html")
    assert foreign.evaluate(OPEN_SOCKET, daemon.url) == "error"
    errors = pages.console(foreign).errors
    assert any("403" in e for e in errors), errors
    log = (daemon.base / "daemon.log").read_text()
    assert f"refused WebSocket handshake from origin '{other_origin}'" in log

    own = open_ui(pages, daemon)
    assert own.evaluate(OPEN_SOCKET, daemon.url) == "open"


def test_changes_from_the_cli_show_up_without_a_reload(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """Changes made with midclt2fa reach open pages through subscriptions: the global form
    and the alerts of an administrator, and the own entry of a user without roles (whose
    other subscriptions are refused with EACCES without any error shown)."""
    add_user(daemon, "dave")
    admin = open_ui(pages, daemon)
    log_in(admin, "admin", ADMIN_PASSWORD)
    two_factor_screen(admin)
    open_settings(admin, "Advanced Settings")
    expect(admin.get_by_label("Window", exact=True)).to_have_value("0")
    expect(admin.get_by_role("button", name="Alerts: none")).to_be_visible()

    user = open_ui(pages, daemon)
    log_in(user, "dave")
    status = two_factor_screen(user)
    expect(status).to_contain_text("You can configure your personal settings now")
    expect(user.get_by_role("button", name="Settings")).to_be_visible()

    midclt(daemon, "auth.twofactor.update", {"window": 3, "issuer": "Lab NAS"})
    expect(admin.get_by_label("Window", exact=True)).to_have_value("3")
    expect(admin.get_by_label("Issuer")).to_have_value("Lab NAS")

    # Renewing dave's secret from the CLI ends dave's sessions (API.md §9): his page says
    # so and asks for the password; after it, he sees the new state.
    midclt(daemon, "user.renew_2fa_secret", "dave", {})
    expect(user.get_by_text("Your session was ended")).to_be_visible()
    midclt(daemon, "user.unset_2fa_secret", "dave")
    log_in(user, "dave")
    status = two_factor_screen(user)
    expect(status).to_contain_text("You can configure your personal settings now")

    # Enabling 2FA with no NTP server configured raises the TimeSyncUnverified alert.
    midclt(daemon, "auth.twofactor.update", {"enabled": True})
    expect(admin.get_by_label("Enable Two-Factor Authentication Globally")).to_be_checked()
    expect(admin.get_by_role("button", name="Alerts: 1")).to_be_visible()
    admin.get_by_role("button", name="Alerts: 1").click()
    expect(admin.get_by_role("dialog", name="Alerts")).to_contain_text("cannot be verified")
    shots.page(admin, "alerts")
    admin.keyboard.press("Escape")

    expect(user.get_by_role("button", name="Configure 2FA Secret")).to_be_visible()
    expect(user.locator(".toast")).to_have_count(0)  # no "live updates unavailable" warning
    expect(user.get_by_role("menuitem", name="Advanced Settings")).to_have_count(0)


def test_sign_in_explains_wrong_passwords_wrong_codes_and_the_cool_down(
    base: Path, pages: Pages, shots: Screenshots
) -> None:
    """The login screen says when the password is wrong, counts down the code retries
    (3 after the first wrong code, then back to the password), and explains the account's
    cool-down (the 5th failure: one password and four codes); Cancel leaves the code step."""
    daemon = start_daemon(base)
    try:
        add_user(daemon, "erin")
        midclt(daemon, "auth.twofactor.update", {"enabled": True, "window": 1})
        entry = midclt(daemon, "user.renew_2fa_secret", "erin", {})
        phone = Authenticator(secret_of(entry["twofactor_config"]["provisioning_uri"]))
        page = open_ui(pages, daemon)

        log_in(page, "erin", "not-the-password")
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
        shots.page(page, "wrong-password")

        log_in(page, "erin")
        expect(page.get_by_label("One-time code", exact=True)).to_be_focused()
        page.get_by_role("button", name="Cancel").click()
        expect(page.get_by_text("Login cancelled.")).to_be_visible()

        log_in(page, "erin")
        for left in ("3 attempts", "2 attempts", "1 attempt"):
            enter_code(page, phone.wrong_code())
            expect(page.get_by_role("alert")).to_contain_text(
                f"Wrong or expired code. {left} left."
            )
        enter_code(page, phone.wrong_code())
        expect(page.get_by_role("alert")).to_have_text(
            "Too many wrong codes. Log in again with your password."
        )
        expect(page.get_by_label("Password")).to_be_visible()

        log_in(page, "erin")  # the right password, refused during the cool-down
        expect(page.get_by_role("alert")).to_have_text(TOO_MANY)
        shots.page(page, "cool-down")
    finally:
        daemon.stop()


def test_a_reused_code_is_called_already_used(base: Path, pages: Pages, shots: Screenshots) -> None:
    """The code that just logged in, typed again after the right password: the login
    screen says it was already used and to wait for the next one (not "wrong"); the next
    code then logs in. Window 1 keeps the used code matching while the next step begins."""
    daemon = start_daemon(base)
    try:
        add_user(daemon, "frank")
        midclt(daemon, "auth.twofactor.update", {"enabled": True, "window": 1})
        entry = midclt(daemon, "user.renew_2fa_secret", "frank", {})
        phone = Authenticator(secret_of(entry["twofactor_config"]["provisioning_uri"]))
        page = open_ui(pages, daemon)
        log_in(page, "frank")
        code, step = phone.code()
        enter_code(page, code)
        expect(two_factor_screen(page)).to_be_visible()
        log_out(page, "frank")

        log_in(page, "frank")
        enter_code(page, code)
        expect(page.get_by_role("alert")).to_have_text(
            "This code was already used; wait for the next one. 3 attempts left."
        )
        shots.page(page, "reused-code")
        enter_code(page, phone.code(after_step=step)[0])
        expect(two_factor_screen(page)).to_be_visible()
        page.close()  # before the daemon stops: its reconnect attempts would log errors
    finally:
        daemon.stop()


def test_a_daemon_restart_ends_the_session_with_a_clear_message(
    base: Path, pages: Pages, shots: Screenshots
) -> None:
    """When the connection drops the page says it is reconnecting; the daemon back on the
    same port has forgotten the re-login token, so the page asks to log in again."""
    daemon = start_daemon(base)
    port = daemon.url.split(":")[2].split("/")[0]
    try:
        page = open_ui(pages, daemon, allow_errors=True)  # refused reconnects are logged
        log_in(page, "admin", ADMIN_PASSWORD)
        two_factor_screen(page)
        daemon.stop()
        expect(page.get_by_role("status").filter(has_text="Reconnecting")).to_be_visible()
        shots.page(page, "reconnecting", full_page=False)
        daemon = start_daemon(base, args=["--port", port])
        expect(page.get_by_text("Your session has ended")).to_be_visible()
        expect(page.get_by_role("heading", name="Log In")).to_be_visible()
        log_in(page, "admin", ADMIN_PASSWORD)
        two_factor_screen(page)
    finally:
        daemon.stop()


def test_sign_in_explains_the_rate_limit(base: Path, pages: Pages, shots: Screenshots) -> None:
    """Past the unauthenticated call limit of its address the login screen asks to wait."""
    daemon = start_daemon(base, env={"MIDDLEWARED_2FA_RATE_LIMIT_CALLS": "3"})
    try:
        page = open_ui(pages, daemon)
        for _ in range(3):
            log_in(page, "nobody", "wrong-password")
            # The answer re-renders the form with an empty password (the same message
            # as the previous attempt's would not show that the answer has arrived).
            expect(page.get_by_label("Password")).to_have_value("")
            expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
        log_in(page, "admin", ADMIN_PASSWORD)
        expect(page.get_by_role("alert")).to_have_text(TOO_MANY)
        shots.page(page, "rate-limit")
    finally:
        daemon.stop()


def test_phone_width_and_keyboard_use(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """At 375 px the screens fit without sideways scrolling; login, the Settings menu and
    the dialogs work from the keyboard (focus moves into a dialog, Escape closes it and
    focus returns to its button), and every form control has a label."""
    add_user(daemon, "frank")
    # A secret already: Show QR (the active secret) and Renew (a pending one) both apply.
    midclt(daemon, "user.renew_2fa_secret", "frank", {})
    page = open_ui(pages, daemon, width=375, height=812)
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    expect(page.get_by_label("Username")).to_be_focused()
    assert page.evaluate(fits)
    shots.page(page, "phone-login")
    page.keyboard.type("frank")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    two_factor_screen(page)
    assert page.evaluate(fits)
    shots.page(page, "phone-two-factor")

    settings = page.get_by_role("button", name="Settings")
    settings.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Two-Factor Authentication")).to_be_focused()
    page.keyboard.press("Escape")
    expect(settings).to_be_focused()
    expect(page.get_by_role("menu")).to_be_hidden()

    configure = page.get_by_role("button", name="Renew Secret")
    configure.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Renew Secret")
    expect(dialog.get_by_label("Interval")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(configure).to_be_focused()

    configure.press("Enter")
    page.get_by_role("dialog", name="Renew Secret").get_by_role("button", name="Renew").click()
    setup = page.get_by_role("region", name="Finish Setting Up Your Authenticator")
    expect(setup.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    expect(
        setup.get_by_role("heading", name="Finish Setting Up Your Authenticator")
    ).to_be_focused()
    assert page.evaluate(fits)
    shots.page(page, "phone-confirm-step")

    page.get_by_role("button", name="Show QR").press("Enter")
    dialog = page.get_by_role("dialog", name="Two-Factor Authentication QR Code")
    expect(dialog.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    shots.page(page, "phone-qr-dialog", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label'))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []
