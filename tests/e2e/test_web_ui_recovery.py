"""The web UI's recovery features in a real browser (API.md §4, §10): staged enrolment
(enrol, scan, confirm), recovery codes (shown once, copied, downloaded, counted, used at
login), the setup-only session with ``enforce`` on, and the one-time password an
administrator makes for a user who lost their authenticator.

Driven as ``tests/e2e/test_web_ui.py`` does (its fixtures and helpers): Playwright with
Debian's chromium against the daemon as a separate process; ``midclt2fa`` over the Unix
socket for changes "from the console" and over TCP for logins "from elsewhere";
``oathtool`` and ``pyotp`` as the authenticator app, ``zbarimg`` as the phone camera. UI
state is awaited with Playwright's auto-waiting ``expect``; nothing sleeps to synchronise.
With ``window`` 1 a code of the *next* time step is accepted already, so a test that needs
a fresh step (a code is accepted once, RFC 6238 §5.2) takes that one instead of waiting.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyotp
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.test_web_ui import (
    PASSWORD,
    Authenticator,
    add_user,
    enter_code,
    log_in,
    log_out,
    midclt,
    open_settings,
    open_ui,
    scan,
    secret_of,
    start_daemon,
    two_factor_screen,
)
from tests.helpers.daemon import ADMIN_PASSWORD, SubprocessDaemon, short_tempdir

if TYPE_CHECKING:
    from tests.e2e.conftest import Pages, Screenshots

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("oathtool") is None, reason="oathtool is not installed"),
    pytest.mark.skipif(shutil.which("zbarimg") is None, reason="zbarimg is not installed"),
]

#: Generous: the tests must pass on a slow, busy two-core machine.
expect.set_options(timeout=30_000)

NEW_PASSWORD = "brand-new-pass-456"
RECOVERY_CODE = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){3}$")
ONETIME_PASSWORD = re.compile(r"^[1-9][0-9]*_[a-z2-7]{6}(-[a-z2-7]{6}){3}$")
CLIPBOARD = ["clipboard-read", "clipboard-write"]
#: Changes the URL to the Users screen and resolves once the page's own hashchange
#: listener (registered at start-up, so it runs first) has handled it.
GO_TO_USERS = """() => new Promise((resolve) => {
  window.addEventListener('hashchange', () => resolve(), { once: true });
  window.location.hash = '#/users';
})"""


# -- the daemon and helpers -------------------------------------------------------------------


@pytest.fixture
def daemon() -> Iterator[SubprocessDaemon]:
    """The daemon as a separate process with its own state folder (as in test_web_ui)."""
    folder = short_tempdir()
    served = start_daemon(folder)
    yield served
    served.stop()
    shutil.rmtree(folder, ignore_errors=True)


def next_step_code(secret: str, period: int = 30) -> str:
    """The code of the time step after the current one: accepted with ``window`` >= 1
    and newer than any code accepted in the current step."""
    return str(pyotp.TOTP(secret, interval=period).at(time.time() + period))


def api_login(
    daemon: SubprocessDaemon, username: str, password: str, otp: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``midclt2fa -U USER -P PASSWORD [--otp CODE] call auth.me`` over TCP: a login from
    another client. The code is tried once; returncode 0 means the login succeeded."""
    script = shutil.which("midclt2fa", path=str(Path(sys.executable).parent))
    assert script is not None, "midclt2fa is not installed in this environment"
    otp_args = ["--otp", otp] if otp is not None else []
    return subprocess.run(
        [script, "-u", daemon.url, "-U", username, "-P", password, *otp_args, "call", "auth.me"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def logged_in_as(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def enable_2fa(daemon: SubprocessDaemon) -> None:
    midclt(daemon, "auth.twofactor.update", {"enabled": True, "window": 1})


def setup_screen(page: Page) -> Locator:
    """Wait for the setup screen of a setup-only session; its introduction."""
    heading = page.get_by_role("heading", name="Set Up Two-Factor Authentication", level=1)
    expect(heading).to_be_visible()
    return page.locator("main").get_by_role("status").first


def user_region(page: Page) -> Locator:
    return page.get_by_role("region", name="User Two-Factor Authentication")


def recovery_count(page: Page) -> Locator:
    """The "Recovery codes" fact of the Two-Factor Authentication screen."""
    return user_region(page).locator("dd.recovery-count")


def confirm_new_secret(page: Page) -> tuple[Locator, str]:
    """Wait for the enrolment card; its locator and the pending secret it shows."""
    setup = page.get_by_role("region", name="Finish Setting Up Your Authenticator")
    expect(setup.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    return setup, setup.locator(".secret").inner_text().replace(" ", "")


def codes_in_dialog(page: Page) -> tuple[Locator, list[str]]:
    """The recovery codes dialog and the 10 codes it lists."""
    dialog = page.get_by_role("dialog", name="Your Recovery Codes")
    items = dialog.get_by_role("list", name="Recovery codes").get_by_role("listitem")
    expect(items).to_have_count(10)
    codes = [text.strip() for text in items.all_inner_texts()]
    assert all(RECOVERY_CODE.match(code) for code in codes), codes
    assert len(set(codes)) == 10
    return dialog, codes


def remaining_codes(daemon: SubprocessDaemon, username: str) -> int:
    return int(midclt(daemon, "user.twofactor_config", username)["recovery_codes_remaining"])


def said(pages: Pages, page: Page) -> str:
    return " ".join(pages.console(page).messages)


# -- the tests --------------------------------------------------------------------------------


def test_renewing_stages_a_new_secret_that_a_code_confirms(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """Renew Secret enrols a pending secret: its QR code (scanned) and key are shown with
    the expiry, the old secret still logs in meanwhile, a wrong code is refused at the
    code field and may be retried, and a right code makes the new secret the active one
    (the old one then fails)."""
    add_user(daemon, "bob")
    enable_2fa(daemon)
    entry = midclt(daemon, "user.renew_2fa_secret", "bob", {})
    old_uri = entry["twofactor_config"]["provisioning_uri"]
    old_phone = Authenticator(secret_of(old_uri))

    page = open_ui(pages, daemon)
    log_in(page, "bob")
    code, _ = old_phone.code()
    enter_code(page, code)
    expect(two_factor_screen(page)).to_contain_text("active for your account")

    page.get_by_role("button", name="Renew Secret").click()
    dialog = page.get_by_role("dialog", name="Renew Secret")
    expect(dialog).to_contain_text("your current secret keeps working")
    expect(dialog).not_to_contain_text("replaces the current one at once")
    dialog.get_by_role("button", name="Renew").click()

    setup, secret = confirm_new_secret(page)
    expect(
        setup.get_by_role("heading", name="Finish Setting Up Your Authenticator")
    ).to_be_focused()
    expect(setup).to_contain_text(
        "Your current secret keeps working until you confirm this new one"
    )
    expect(setup).to_contain_text(re.compile(r"Confirm it by \S+"))
    status = two_factor_screen(page)
    expect(status).to_have_attribute("data-status", "confirming")
    expect(status).to_contain_text("current secret keeps working")
    expect(page.get_by_text("logging in already needs a code")).to_have_count(0)
    picture = shots.path("pending-qr")
    setup.get_by_role("img", name=re.compile("QR code")).screenshot(path=str(picture))
    scanned = scan(picture)
    assert secret_of(scanned) == secret != secret_of(old_uri)
    assert setup.locator(".uri").text_content() == scanned
    shots.page(page, "pending")

    # Until the confirmation, the old secret is the one that logs in (API.md §4).
    assert midclt(daemon, "user.provisioning_uri", "bob") == old_uri
    me = logged_in_as(api_login(daemon, "bob", PASSWORD, next_step_code(old_phone.secret)))
    assert me["credentials"] == "LOGIN_TWOFACTOR"

    new_phone = Authenticator(secret)
    code_box = setup.get_by_label("Code from your authenticator app")
    code_box.fill(new_phone.wrong_code())
    setup.get_by_role("button", name="Confirm").click()
    field = setup.locator(".field").filter(
        has=page.get_by_label("Code from your authenticator app")
    )
    expect(field.locator(".field-error")).to_contain_text("That code is not right")
    expect(code_box).to_have_attribute("aria-invalid", "true")
    expect(code_box).to_be_focused()
    expect(code_box).to_have_value("")
    shots.page(page, "wrong-code")
    assert midclt(daemon, "user.provisioning_uri", "bob") == old_uri

    code, _ = new_phone.code()
    code_box.fill(code)
    setup.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Two-factor authentication is set up.")).to_be_visible()
    expect(setup).to_have_count(0)
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    expect(page.get_by_role("region", name="Save Recovery Codes")).to_be_visible()
    assert secret_of(midclt(daemon, "user.provisioning_uri", "bob")) == secret

    refused = api_login(daemon, "bob", PASSWORD, old_phone.code()[0])
    assert refused.returncode != 0
    assert "wrong one-time code" in refused.stderr
    logged_in_as(api_login(daemon, "bob", PASSWORD, next_step_code(secret)))
    assert all(word not in said(pages, page) for word in (secret, code))


def test_recovery_codes_are_shown_once_copied_downloaded_and_counted(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """Make Recovery Codes shows 10 codes once, with Copy (the clipboard gets all 10) and
    Download (a .txt file with all 10); the screen counts the unused codes and warns
    when 2 or fewer are left, and when none are."""
    add_user(daemon, "carol")
    enable_2fa(daemon)
    entry = midclt(daemon, "user.renew_2fa_secret", "carol", {})
    phone = Authenticator(secret_of(entry["twofactor_config"]["provisioning_uri"]))

    page = open_ui(pages, daemon, permissions=CLIPBOARD)
    log_in(page, "carol")
    enter_code(page, phone.code()[0])
    two_factor_screen(page)
    region = user_region(page)
    expect(recovery_count(page)).to_have_text("0 of 10 left")
    expect(region).to_contain_text("You have no recovery codes.")

    region.get_by_role("button", name="Make Recovery Codes").click()
    dialog, codes = codes_in_dialog(page)
    expect(dialog).to_contain_text("These codes are shown only once.")
    shots.page(page, "codes-dialog", full_page=False)

    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()").split() == codes

    with page.expect_download() as downloading:
        dialog.get_by_role("button", name="Download").click()
    download = downloading.value
    assert download.suggested_filename == "middlewared-2fa-recovery-codes-carol.txt"
    saved = Path(download.path()).read_text()
    assert [line for line in saved.splitlines() if RECOVERY_CODE.match(line)] == codes
    assert "carol" in saved
    expect(
        dialog.get_by_text("Downloaded as middlewared-2fa-recovery-codes-carol.txt")
    ).to_be_visible()

    dialog.get_by_role("button", name="Done").click()
    expect(page.locator("dialog")).to_have_count(0)  # closed and removed from the page
    html = page.content()
    assert all(code not in html for code in codes)  # shown once: gone from the page
    expect(recovery_count(page)).to_have_text("10 of 10 left")
    expect(region.locator(".recovery-note")).to_be_hidden()
    assert remaining_codes(daemon, "carol") == 10

    # A new set asks first: the current codes would stop working.
    region.get_by_role("button", name="New Recovery Codes").click()
    replace = page.get_by_role("dialog", name="Make New Recovery Codes")
    expect(replace).to_contain_text("You have 10 unused recovery codes")
    replace.get_by_role("button", name="Cancel").click()
    expect(replace).to_have_count(0)

    for code in codes[:8]:  # logins from elsewhere use them up
        me = logged_in_as(api_login(daemon, "carol", PASSWORD, code))
        assert me["credentials"] == "LOGIN_TWOFACTOR"
    page.reload()  # the re-login token; the count is read again
    two_factor_screen(page)
    expect(recovery_count(page)).to_have_text("2 of 10 left")
    expect(region.locator(".recovery-note")).to_have_text(
        re.compile(r"^Only 2 recovery codes are left\.")
    )
    shots.page(page, "two-left")

    for code in codes[8:]:
        logged_in_as(api_login(daemon, "carol", PASSWORD, code))
    page.reload()
    two_factor_screen(page)
    expect(recovery_count(page)).to_have_text("0 of 10 left")
    expect(region.locator(".recovery-note")).to_contain_text("You have no recovery codes.")
    assert remaining_codes(daemon, "carol") == 0
    assert all(code not in said(pages, page) for code in codes)


def test_logging_in_with_a_recovery_code(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """The code step's "Use a recovery code" switches to a text field for a recovery
    code; a wrong one counts as a wrong code, a right one (any case, spaces for hyphens)
    logs in once, a used one is refused, and the switch back takes an app code."""
    add_user(daemon, "dave")
    enable_2fa(daemon)
    entry = midclt(daemon, "user.renew_2fa_secret", "dave", {})
    phone = Authenticator(secret_of(entry["twofactor_config"]["provisioning_uri"]))
    codes = midclt(daemon, "user.twofactor_recovery_codes", "dave")
    assert len(codes) == 10

    page = open_ui(pages, daemon)
    log_in(page, "dave")
    expect(page.get_by_label("One-time code", exact=True)).to_be_focused()
    page.get_by_role("button", name="Use a recovery code").click()
    expect(page.get_by_role("heading", name="Recovery Code")).to_be_visible()
    box = page.get_by_label("Recovery code", exact=True)
    expect(box).to_be_focused()
    expect(box).to_have_attribute("type", "text")
    expect(box).to_have_attribute("inputmode", "text")
    expect(box).to_have_attribute("placeholder", "abcd-efgh-ijkl-mnop")
    expect(box).not_to_have_attribute("autocomplete", "one-time-code")
    expect(page.get_by_label("One-time code", exact=True)).to_have_count(0)
    shots.page(page, "recovery-step")

    box.fill("aaaa-bbbb-cccc-dddd")
    page.get_by_role("button", name="Proceed").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Wrong or already used recovery code. 3 attempts left."
    )
    box = page.get_by_label("Recovery code", exact=True)  # still the recovery field
    box.fill(codes[0].upper().replace("-", " "))
    page.get_by_role("button", name="Proceed").click()
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    expect(recovery_count(page)).to_have_text("9 of 10 left")
    assert remaining_codes(daemon, "dave") == 9
    [session] = [
        s
        for s in midclt(daemon, "auth.sessions")
        if s["credentials_data"].get("username") == "dave"
    ]
    assert session["credentials"] == "LOGIN_TWOFACTOR"
    log_out(page, "dave")

    log_in(page, "dave")
    page.get_by_role("button", name="Use a recovery code").click()
    page.get_by_label("Recovery code", exact=True).fill(codes[0])  # used already
    page.get_by_role("button", name="Proceed").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Wrong or already used recovery code. 3 attempts left."
    )
    page.get_by_role("button", name="Use a code from your authenticator app").click()
    otp = page.get_by_label("One-time code", exact=True)
    expect(otp).to_be_focused()
    expect(otp).to_have_attribute("inputmode", "numeric")
    expect(page.get_by_role("alert")).to_have_count(0)
    enter_code(page, phone.code()[0])
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    assert remaining_codes(daemon, "dave") == 9
    assert all(code not in said(pages, page) for code in codes)


def test_enforce_walks_a_password_only_user_through_setup(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """The enforce switch is refused (at its field, the server's words) for an
    administrator who logged in with a password only, and saved after they set up their
    own secret; a user without one then gets a setup-only session that shows only the
    setup (and Log Out) until a confirmed code makes it a full session, which offers
    recovery codes and the normal screens."""
    add_user(daemon, "erin")
    enable_2fa(daemon)

    admin = open_ui(pages, daemon)
    log_in(admin, "admin", ADMIN_PASSWORD)
    prompt = admin.get_by_role("dialog", name="Set Up Two-Factor Authentication")
    prompt.get_by_role("button", name="Skip").click()
    admin.get_by_role("dialog", name="Skip Two-Factor Setup?").get_by_role(
        "button", name="Skip Setup"
    ).click()
    two_factor_screen(admin)
    open_settings(admin, "Advanced Settings")
    enforce = admin.get_by_label("Enforce Two-Factor Authentication")
    expect(enforce).not_to_be_checked()
    enforce_field = admin.locator(".field").filter(has=enforce)
    expect(enforce_field).to_contain_text("Every user must use two factors")
    enforce.check()
    admin.get_by_role("button", name="Save").click()
    expect(enforce_field.locator(".field-error")).to_contain_text("Log in with two factors first")
    expect(enforce).to_have_attribute("aria-invalid", "true")
    shots.page(admin, "enforce-refused")
    assert midclt(daemon, "auth.twofactor.config")["enforce"] is False

    open_settings(admin, "Two-Factor Authentication")
    admin.get_by_role("button", name="Configure 2FA Secret").click()
    admin.get_by_role("dialog", name="Configure 2FA Secret").get_by_role(
        "button", name="Configure"
    ).click()
    setup, admin_secret = confirm_new_secret(admin)
    setup.get_by_label("Code from your authenticator app").fill(
        Authenticator(admin_secret).code()[0]
    )
    setup.get_by_role("button", name="Confirm").click()
    expect(two_factor_screen(admin)).to_contain_text("active for your account")
    open_settings(admin, "Advanced Settings")  # this session is LEVEL_2 now
    enforce.check()
    admin.get_by_role("button", name="Save").click()
    expect(admin.get_by_text("Global two-factor authentication settings saved.")).to_be_visible()
    assert midclt(daemon, "auth.twofactor.config")["enforce"] is True

    page = open_ui(pages, daemon)
    log_in(page, "erin")
    expect(setup_screen(page)).to_contain_text("This system requires two-factor authentication")
    setup, secret = confirm_new_secret(page)
    expect(page.get_by_role("button", name="Settings")).to_be_hidden()
    expect(page.get_by_role("button", name=re.compile("^Alerts"))).to_be_hidden()
    expect(setup.get_by_role("button", name="Cancel Setup")).to_have_count(0)
    shots.page(page, "setup-only")
    page.evaluate(GO_TO_USERS)  # no other screen opens
    expect(page).to_have_url(re.compile(r"#/users$"))
    setup_screen(page)
    expect(page.get_by_role("heading", name="Users")).to_have_count(0)
    page.get_by_role("button", name="erin", exact=True).click()
    expect(page.get_by_role("menuitem", name="Log Out")).to_be_visible()
    page.keyboard.press("Escape")
    [session] = [
        s
        for s in midclt(daemon, "auth.sessions")
        if s["credentials_data"].get("username") == "erin"
    ]
    assert session["credentials"] == "LOGIN_PASSWORD"

    code, _ = Authenticator(secret).code()
    setup.get_by_label("Code from your authenticator app").fill(code)
    setup.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Two-factor authentication is set up.")).to_be_visible()
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    expect(page.get_by_role("button", name="Settings")).to_be_visible()
    offer = page.get_by_role("region", name="Save Recovery Codes")
    expect(offer.get_by_role("heading", name="Save Recovery Codes")).to_be_focused()
    shots.page(page, "setup-done")
    offer.get_by_role("button", name="Make Recovery Codes").click()
    dialog, codes = codes_in_dialog(page)
    dialog.get_by_role("button", name="Done").click()
    expect(offer).to_have_count(0)
    expect(recovery_count(page)).to_have_text("10 of 10 left")
    assert secret_of(midclt(daemon, "user.provisioning_uri", "erin")) == secret
    [session] = [
        s
        for s in midclt(daemon, "auth.sessions")
        if s["credentials_data"].get("username") == "erin"
    ]
    assert session["credentials"] == "LOGIN_TWOFACTOR"

    page.reload()  # a full session keeps a re-login token
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    open_settings(page, "Two-Factor Authentication")
    log_out(page, "erin")
    assert all(word not in said(pages, page) for word in (secret, code, *codes))


def test_a_one_time_password_lets_a_user_reset_password_and_secret(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """An administrator makes a one-time password for a user from the Users screen (shown
    once, with Copy, valid 24 hours and once); the user logs in with it, must choose a new
    password and set up a new secret first, and ends in the normal screens; afterwards the
    new password and secret log in, the one-time and old passwords do not."""
    add_user(daemon, "frank", full_name="Frank Lost-Phone")
    enable_2fa(daemon)
    midclt(daemon, "user.renew_2fa_secret", "frank", {})  # the phone frank lost
    admin_entry = midclt(daemon, "user.renew_2fa_secret", "admin", {})
    admin_phone = Authenticator(secret_of(admin_entry["twofactor_config"]["provisioning_uri"]))

    admin = open_ui(pages, daemon, permissions=CLIPBOARD)
    log_in(admin, "admin", ADMIN_PASSWORD)
    enter_code(admin, admin_phone.code()[0])
    two_factor_screen(admin)
    open_settings(admin, "Users")
    row = admin.get_by_role("row").filter(has_text="frank")
    expect(row).to_contain_text("Frank Lost-Phone")
    expect(row).to_contain_text("Configured")
    row.get_by_role("button", name="One-Time Password for frank").click()
    dialog = admin.get_by_role("dialog", name="One-Time Password for frank")
    expect(dialog).to_contain_text("valid for 24 hours and for one login")
    dialog.get_by_role("button", name="Generate").click()
    shown = dialog.locator(".onetime-password")
    expect(shown).to_have_text(ONETIME_PASSWORD)
    expect(dialog).to_contain_text("It is shown only once.")
    onetime = shown.inner_text()
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert admin.evaluate("navigator.clipboard.readText()") == onetime
    shots.page(admin, "onetime-password", full_page=False)
    dialog.get_by_role("button", name="Done").click()
    expect(admin.locator("dialog")).to_have_count(0)  # closed and removed from the page
    assert onetime not in admin.content()

    page = open_ui(pages, daemon)
    log_in(page, "frank", onetime)
    expect(setup_screen(page)).to_contain_text("one-time password from an administrator")
    expect(page.get_by_role("button", name="Settings")).to_be_hidden()
    card = page.get_by_role("region", name="Choose a New Password")
    new_box = card.get_by_label("New password", exact=True)
    again_box = card.get_by_label("Confirm new password", exact=True)
    expect(new_box).to_be_focused()
    new_box.fill(NEW_PASSWORD)
    again_box.fill("something-else")
    card.get_by_role("button", name="Save Password").click()
    expect(card).to_contain_text("The two passwords are not the same.")
    expect(again_box).to_be_focused()
    shots.page(page, "new-password")
    again_box.fill(NEW_PASSWORD)
    card.get_by_role("button", name="Save Password").click()
    expect(page.get_by_text("Your new password is saved.")).to_be_visible()

    setup, secret = confirm_new_secret(page)
    expect(setup).to_contain_text("Your current secret keeps working until you confirm")
    phone = Authenticator(secret)
    setup.get_by_label("Code from your authenticator app").fill(phone.code()[0])
    setup.get_by_role("button", name="Confirm").click()
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    expect(page.get_by_role("button", name="Settings")).to_be_visible()
    offer = page.get_by_role("region", name="Save Recovery Codes")
    offer.get_by_role("button", name="Not Now").click()
    expect(offer).to_have_count(0)
    shots.page(page, "reset-done")
    log_out(page, "frank")

    log_in(page, "frank", NEW_PASSWORD)
    enter_code(page, next_step_code(secret))
    expect(two_factor_screen(page)).to_contain_text("active for your account")
    assert secret_of(midclt(daemon, "user.provisioning_uri", "frank")) == secret
    for password in (onetime, PASSWORD):
        refused = api_login(daemon, "frank", password)
        assert refused.returncode != 0
        assert "login failed" in refused.stderr
    assert all(word not in said(pages, page) for word in (onetime, NEW_PASSWORD, secret))
    assert onetime not in said(pages, admin)
