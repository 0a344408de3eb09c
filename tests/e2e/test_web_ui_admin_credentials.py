"""The Users and API Keys screens in a real browser (API.md §3, §5, §10, §11): the user list
(filter, add and edit within the role guard, lock and unlock, clear 2FA, one-time password,
delete) and API keys (own keys for everyone, every key for API_KEY_READ; create, reset,
delete, the key shown once), as an administrator and as a user without roles, at 1280 px
and 390 px.

Driven as ``tests/e2e/test_web_ui.py`` does (its helpers): Playwright with Debian's chromium
against the daemon as a separate process, ``midclt2fa`` over the Unix socket for changes
"from the console" and to read the results on the server, ``midclt2fa`` over TCP for
password logins from elsewhere. Keys are tried by logging in with them (``API_KEY_PLAIN``)
straight from the test. One daemon serves the module; each test uses its own user names.
The ``pages`` fixture fails a test whose pages logged an error or broke the
Content-Security-Policy. UI state is awaited with Playwright's auto-waiting ``expect``;
nothing sleeps.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Locator, Page, expect
from websockets.sync.client import connect

from tests.e2e.test_web_ui import (
    PASSWORD,
    add_user,
    log_in,
    midclt,
    open_settings,
    open_ui,
    start_daemon,
    two_factor_screen,
)
from tests.e2e.test_web_ui_recovery import api_login, logged_in_as
from tests.helpers.daemon import ADMIN_PASSWORD, SubprocessDaemon, short_tempdir

if TYPE_CHECKING:
    from tests.e2e.conftest import Pages, Screenshots

pytestmark = [pytest.mark.slow]

#: Generous: the tests must pass on a slow, busy two-core machine.
expect.set_options(timeout=30_000)

NEW_PASSWORD = "another-pass-789"
API_KEY = re.compile(r"^[1-9][0-9]*-[A-Za-z0-9]{64}$")
ONETIME_PASSWORD = re.compile(r"^[1-9][0-9]*_[a-z2-7]{6}(-[a-z2-7]{6}){3}$")
CLIPBOARD = ["clipboard-read", "clipboard-write"]
PHONE = {"width": 390, "height": 844}
#: True when the page does not scroll sideways.
FITS = "document.documentElement.scrollWidth <= window.innerWidth"
#: The value of a datetime-local input `offset` milliseconds from now, in the page's time zone.
LOCAL_INPUT = """(offset) => {
  const d = new Date(Date.now() + offset);
  const p = (n) => String(n).padStart(2, '0');
  const day = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  return `${day}T${p(d.getHours())}:${p(d.getMinutes())}`;
}"""
DAY_MS = 86_400_000
BAD_USERNAME = "This is not a valid username (see the rule above)."


# -- the daemon and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[SubprocessDaemon]:
    """One daemon for the module. Only 127.0.0.1 counts as a local network for plain API
    keys, so a key sent from 127.0.0.2 is revoked as one sent from afar would be."""
    folder = short_tempdir()
    served = start_daemon(
        folder, env={"MIDDLEWARED_2FA_API_KEY_LOCAL_NETWORKS": '["127.0.0.1/32", "::1/128"]'}
    )
    yield served
    served.stop()
    shutil.rmtree(folder, ignore_errors=True)


def key_login(daemon: SubprocessDaemon, username: str, key: str, source: str = "127.0.0.1") -> str:
    """``auth.login_ex`` with ``API_KEY_PLAIN`` over TCP from address ``source``; the
    answer's ``response_type`` (SUCCESS, AUTH_ERR, EXPIRED)."""
    login = {"mechanism": "API_KEY_PLAIN", "username": username, "api_key": key}
    request = {"jsonrpc": "2.0", "id": 1, "method": "auth.login_ex", "params": [login]}
    with connect(daemon.url, source_address=(source, 0), proxy=None, open_timeout=60) as ws:
        ws.send(json.dumps(request))
        reply = json.loads(ws.recv(timeout=120))
    assert "result" in reply, reply
    return str(reply["result"]["response_type"])


def user_exists(daemon: SubprocessDaemon, username: str) -> bool:
    return bool(midclt(daemon, "user.query", [["username", "=", username]]))


def user_entry(daemon: SubprocessDaemon, username: str) -> dict[str, Any]:
    """The UserEntry of ``username`` on the server."""
    [found] = midclt(daemon, "user.query", [["username", "=", username]])
    return dict(found)


def key_names(daemon: SubprocessDaemon, username: str) -> list[str]:
    """Names of ``username``'s API keys on the server."""
    return sorted(k["name"] for k in midclt(daemon, "api_key.query", [["username", "=", username]]))


def user_row(page: Page, username: str) -> Locator:
    return page.locator(f'main tr[data-username="{username}"]')


def key_row(page: Page, name: str) -> Locator:
    return page.locator("main tbody tr").filter(has=page.locator("th", has_text=name))


def field_error(scope: Locator, label: str) -> Locator:
    """The error slot of the field whose control is labelled ``label``."""
    field = scope.locator(".field").filter(has=scope.page.get_by_label(label, exact=True))
    return field.locator(".field-error")


def no_dead_buttons(page: Page) -> None:
    """Actions the caller cannot perform are left out, never shown disabled."""
    expect(page.locator("main button:disabled")).to_have_count(0)


def logged_in(
    pages: Pages, daemon: SubprocessDaemon, username: str, password: str, **options: Any
) -> Page:
    page = open_ui(pages, daemon, **options)
    log_in(page, username, password)
    two_factor_screen(page)
    return page


def take_key(page: Page, title: str) -> str:
    """The key shown once in the dialog ``title``: checks the warning, copies it (the
    clipboard gets it), closes the dialog (the key is then gone from the page)."""
    shown = page.get_by_role("dialog", name=title)
    text = shown.locator(".api-key-value")
    expect(text).to_have_text(API_KEY)
    expect(shown).to_contain_text("Copy the key now: it will not be shown again.")
    key = text.inner_text()
    shown.get_by_role("button", name="Copy").click()
    expect(shown.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    shown.get_by_role("button", name="Done").click()
    expect(page.locator("dialog")).to_have_count(0)
    assert key not in page.content()
    return key


def said(pages: Pages, page: Page) -> str:
    return " ".join(pages.console(page).messages)


# -- Users --------------------------------------------------------------------------------------


def test_admin_lists_filters_and_adds_users(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """An administrator sees every user with full name, roles, 2FA, recovery codes left and
    lock state, and only the actions that apply (no Lock or Delete on the own row, Clear 2FA
    only with a secret); the filter narrows the list by name; Add User is keyboard usable
    (Tab order, Escape cancels, Enter sends), shows the server's field errors at their
    fields, and makes a user with the chosen roles who can then log in."""
    add_user(daemon, "alice", full_name="Alice Liddell", roles=["ACCOUNT_READ"])
    add_user(daemon, "carol", full_name="Carol Codes")
    midclt(daemon, "user.renew_2fa_secret", "carol", {})
    assert len(midclt(daemon, "user.twofactor_recovery_codes", "carol")) == 10

    page = logged_in(pages, daemon, "admin", ADMIN_PASSWORD)
    open_settings(page, "Users")
    card = page.get_by_role("region", name="Local Users")
    alice = user_row(page, "alice")
    expect(alice).to_contain_text("Alice Liddell")
    expect(alice).to_contain_text("ACCOUNT_READ")
    expect(alice).to_contain_text("Not configured")
    expect(alice).to_contain_text("Active")
    expect(alice.get_by_role("button", name="Clear 2FA for alice")).to_have_count(0)
    carol = user_row(page, "carol")
    expect(carol.locator(".recovery-cell")).to_have_text("10 of 10 left")
    expect(carol.locator(".twofactor-cell")).to_have_text("Configured (app)")
    expect(carol.get_by_role("button", name="Clear 2FA for carol", exact=True)).to_be_visible()
    own = user_row(page, "admin")
    expect(own).to_contain_text("FULL_ADMIN")
    expect(own.get_by_role("button")).to_have_text(["Edit"])
    no_dead_buttons(page)

    box = card.get_by_label("Filter Users")
    box.fill("LIDD")
    expect(page.locator("main tbody tr")).to_have_count(1)
    expect(alice).to_be_visible()
    expect(card.get_by_role("status")).to_have_text(re.compile(r"^1 of \d+ users$"))
    box.fill("nobody-here")
    expect(card).to_contain_text("No user matches “nobody-here”.")
    box.fill("")
    expect(carol).to_be_visible()
    shots.page(page, "users-admin")

    add = card.get_by_role("button", name="Add User")
    add.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Add User")
    expect(dialog.get_by_label("Username", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_label("Full Name", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(add).to_be_focused()

    add.click()
    name = dialog.get_by_label("Username", exact=True)
    name.fill("9 bad name")
    dialog.get_by_label("Password", exact=True).fill(PASSWORD)
    dialog.get_by_label("Confirm Password", exact=True).fill(PASSWORD)
    dialog.get_by_role("button", name="Add User").click()
    expect(field_error(dialog, "Username")).to_have_text(BAD_USERNAME)
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    shots.page(page, "add-user-error", full_page=False)
    name.fill("alice")
    dialog.get_by_role("button", name="Add User").click()
    expect(field_error(dialog, "Username")).to_have_text("A user with this name already exists.")
    assert user_entry(daemon, "alice")["full_name"] == "Alice Liddell"

    name.fill("dora")
    dialog.get_by_label("Full Name", exact=True).fill("Dora Explorer")
    again = dialog.get_by_label("Confirm Password", exact=True)
    again.fill("not-the-same")
    dialog.get_by_role("button", name="Add User").click()
    expect(field_error(dialog, "Confirm Password")).to_have_text(
        "The two passwords are not the same."
    )
    expect(name).not_to_have_attribute("aria-invalid", "true")
    expect(dialog.get_by_label("FULL_ADMIN", exact=True)).to_be_visible()  # holds them all
    dialog.get_by_label("ACCOUNT_READ", exact=True).check()
    dialog.get_by_label("API_KEY_WRITE", exact=True).check()
    again.fill(PASSWORD)
    again.press("Enter")
    expect(dialog).to_have_count(0)
    dora = user_row(page, "dora")
    expect(dora).to_contain_text("Dora Explorer")
    expect(dora).to_contain_text("ACCOUNT_READ, API_KEY_WRITE")
    entry = user_entry(daemon, "dora")
    assert (entry["full_name"], sorted(entry["roles"])) == (
        "Dora Explorer",
        ["ACCOUNT_READ", "API_KEY_WRITE"],
    )
    assert logged_in_as(api_login(daemon, "dora", PASSWORD))["pw_name"] == "dora"
    assert PASSWORD not in said(pages, page)


def test_admin_edits_locks_unlocks_and_deletes_a_user(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """Edit shows a taken name at its field and saves a new full name and role; Lock asks
    first and the user can then no longer log in, Unlock lets them in again; changes made
    from the console show up without a reload; Delete asks first (Escape keeps the user)
    and removes the account."""
    add_user(daemon, "erin", full_name="Erin")
    page = logged_in(pages, daemon, "admin", ADMIN_PASSWORD)
    open_settings(page, "Users")
    erin = user_row(page, "erin")

    edit = erin.get_by_role("button", name="Edit erin", exact=True)
    edit.click()
    dialog = page.get_by_role("dialog", name="Edit erin")
    name = dialog.get_by_label("Username", exact=True)
    expect(name).to_have_value("erin")
    expect(dialog.get_by_label("New Password", exact=True)).to_have_value("")
    name.fill("admin")
    dialog.get_by_role("button", name="Save").click()
    expect(field_error(dialog, "Username")).to_have_text("A user with this name already exists.")
    name.fill("erin")
    dialog.get_by_label("Full Name", exact=True).fill("Erin Edited")
    dialog.get_by_label("SYSTEM_AUDIT_READ", exact=True).check()
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(erin).to_contain_text("Erin Edited")
    expect(erin).to_contain_text("SYSTEM_AUDIT_READ")
    expect(erin.get_by_role("button", name="Edit erin", exact=True)).to_be_focused()
    entry = user_entry(daemon, "erin")
    assert (entry["full_name"], entry["roles"]) == ("Erin Edited", ["SYSTEM_AUDIT_READ"])
    logged_in_as(api_login(daemon, "erin", PASSWORD))  # the password did not change

    erin.get_by_role("button", name="Lock erin", exact=True).click()
    confirm = page.get_by_role("dialog", name="Lock erin?")
    expect(confirm).to_contain_text("All of their sessions end now.")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Lock", exact=True).click()
    expect(erin).to_contain_text("Locked")
    unlock = erin.get_by_role("button", name="Unlock erin", exact=True)
    expect(unlock).to_be_focused()
    expect(erin.get_by_role("button", name="One-Time Password for erin")).to_have_count(0)
    assert user_entry(daemon, "erin")["locked"] is True
    refused = api_login(daemon, "erin", PASSWORD)
    assert refused.returncode != 0
    assert "login failed" in refused.stderr
    shots.page(page, "locked")

    unlock.click()
    expect(erin).to_contain_text("Active")
    expect(erin.get_by_role("button", name="Lock erin", exact=True)).to_be_visible()
    assert user_entry(daemon, "erin")["locked"] is False
    logged_in_as(api_login(daemon, "erin", PASSWORD))

    # From the console: the user.query events update the open screen.
    midclt(daemon, "user.update", entry["id"], {"locked": True})
    expect(erin).to_contain_text("Locked")
    midclt(daemon, "user.update", entry["id"], {"locked": False})
    expect(erin).to_contain_text("Active")
    add_user(daemon, "erik", full_name="Erik From The Console")
    expect(user_row(page, "erik")).to_contain_text("Erik From The Console")

    erin.get_by_role("button", name="Delete erin", exact=True).click()
    confirm = page.get_by_role("dialog", name="Delete erin?")
    expect(confirm).to_contain_text("This cannot be undone.")
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    assert user_exists(daemon, "erin")
    erin.get_by_role("button", name="Delete erin", exact=True).click()
    confirm.get_by_role("button", name="Delete", exact=True).click()
    expect(erin).to_have_count(0)
    assert not user_exists(daemon, "erin")
    assert api_login(daemon, "erin", PASSWORD).returncode != 0


def test_admin_clears_2fa_and_makes_a_one_time_password(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """Clear 2FA asks first (Cancel keeps the secret), then removes the user's secret; One-Time
    Password shows a password once with Copy, which then logs the user in once."""
    add_user(daemon, "frank")
    midclt(daemon, "user.renew_2fa_secret", "frank", {})
    page = logged_in(pages, daemon, "admin", ADMIN_PASSWORD, permissions=CLIPBOARD)
    open_settings(page, "Users")
    frank = user_row(page, "frank")
    expect(frank).to_contain_text("Configured")
    expect(frank.locator(".recovery-cell")).to_have_text("0 of 10 left")

    clear = frank.get_by_role("button", name="Clear 2FA for frank", exact=True)
    clear.click()
    dialog = page.get_by_role("dialog", name="Clear 2FA for frank?")
    expect(dialog).to_contain_text("reduces the security of the account")
    expect(dialog.get_by_role("status")).to_have_text(
        "frank has no passkeys: logging in then needs only the password, which reduces the "
        "security of the account."
    )  # frank has no recovery codes: nothing about them
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    shots.page(page, "clear-2fa", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(clear).to_be_focused()
    assert user_entry(daemon, "frank")["twofactor_auth_configured"] is True
    clear.click()
    dialog.get_by_role("button", name="Clear 2FA", exact=True).click()
    expect(frank).to_contain_text("Not configured")
    expect(frank.locator(".recovery-cell")).to_have_text("—")
    expect(clear).to_have_count(0)
    assert user_entry(daemon, "frank")["twofactor_auth_configured"] is False

    frank.get_by_role("button", name="One-Time Password for frank").click()
    dialog = page.get_by_role("dialog", name="One-Time Password for frank")
    dialog.get_by_role("button", name="Generate").click()
    shown = dialog.locator(".onetime-password")
    expect(shown).to_have_text(ONETIME_PASSWORD)
    expect(dialog).to_contain_text("It is shown only once.")
    onetime = shown.inner_text()
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == onetime
    dialog.get_by_role("button", name="Done").click()
    expect(page.locator("dialog")).to_have_count(0)
    assert onetime not in page.content()
    me = logged_in_as(api_login(daemon, "frank", onetime))
    assert me["credentials"] == "LOGIN_ONETIME_PASSWORD"
    assert api_login(daemon, "frank", onetime).returncode != 0  # once
    assert onetime not in said(pages, page)


def test_an_account_writer_acts_only_within_the_role_guard(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """A user with ACCOUNT_WRITE gets actions only on users whose roles they hold, may give
    only their own roles, does not see recovery codes (FULL_ADMIN only); when the target
    gains a role meanwhile, the server's EPERM is shown in words and nothing changes."""
    add_user(daemon, "grace", roles=["ACCOUNT_WRITE"])
    henry = add_user(daemon, "henry")
    add_user(daemon, "ivan", roles=["SYSTEM_SECURITY_WRITE"])
    page = logged_in(pages, daemon, "grace", PASSWORD)
    open_settings(page, "Users")
    row = user_row(page, "henry")
    expect(row.get_by_role("button")).to_have_text(["Edit", "Lock", "One-Time Password", "Delete"])
    expect(user_row(page, "ivan")).to_contain_text("SYSTEM_SECURITY_WRITE")
    expect(user_row(page, "ivan").get_by_role("button")).to_have_count(0)
    expect(user_row(page, "admin").get_by_role("button")).to_have_count(0)
    expect(user_row(page, "grace").get_by_role("button")).to_have_text(["Edit"])
    expect(page.get_by_role("columnheader", name="Recovery Codes")).to_have_count(0)
    expect(page.get_by_text("Recovery codes left are shown to full administrators")).to_be_visible()
    no_dead_buttons(page)

    page.get_by_role("button", name="Add User").click()
    dialog = page.get_by_role("dialog", name="Add User")
    offered = dialog.locator(".roles-fieldset input[type=checkbox]")
    expect(offered).to_have_count(2)
    assert offered.evaluate_all("boxes => boxes.map((b) => b.value)") == [
        "ACCOUNT_READ",
        "ACCOUNT_WRITE",
    ]
    expect(dialog).to_contain_text("You can give only roles that you hold yourself.")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    row.get_by_role("button", name="Edit henry", exact=True).click()
    dialog = page.get_by_role("dialog", name="Edit henry")
    dialog.get_by_label("Full Name", exact=True).fill("Henry Changed")
    midclt(daemon, "user.update", henry["id"], {"roles": ["SYSTEM_SECURITY_READ"]})
    expect(row).to_contain_text("SYSTEM_SECURITY_READ")  # the event, behind the dialog
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_have_text(
        "You cannot change henry: they have roles that you do not hold."
    )
    shots.page(page, "eperm", full_page=False)
    assert user_entry(daemon, "henry")["full_name"] == ""
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(row.get_by_role("button")).to_have_count(0)


def test_a_user_without_roles_sees_and_changes_only_their_own_account(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """At 390 px and at 1280 px a user without roles sees only their own row, with Change
    Password as the only action (no filter, no Add User); the dialog checks that the two
    passwords match, the new password logs in and the old one does not, and the page keeps
    its session across a reload."""
    add_user(daemon, "jane", full_name="Jane Doe")
    page = logged_in(pages, daemon, "jane", PASSWORD, **PHONE)
    open_settings(page, "Users")
    card = page.get_by_role("region", name="Your Account")
    expect(page.locator("main tbody tr")).to_have_count(1)
    jane = user_row(page, "jane")
    expect(jane).to_contain_text("Jane Doe")
    expect(jane).to_contain_text("None")
    expect(jane.get_by_role("button")).to_have_text(["Change Password"])
    expect(card.get_by_label("Filter Users")).to_be_hidden()
    expect(page.get_by_role("button", name="Add User")).to_be_hidden()
    no_dead_buttons(page)
    assert page.evaluate(FITS)
    shots.page(page, "users-own-390")

    jane.get_by_role("button", name="Change Password").click()
    dialog = page.get_by_role("dialog", name="Change Your Password")
    expect(dialog.get_by_label("New Password", exact=True)).to_be_focused()
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type("not-the-same")
    page.keyboard.press("Enter")
    expect(field_error(dialog, "Confirm New Password")).to_have_text(
        "The two passwords are not the same."
    )
    dialog.get_by_label("Confirm New Password", exact=True).fill(NEW_PASSWORD)
    page.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    expect(page.get_by_text("Your new password is saved.")).to_be_visible()
    logged_in_as(api_login(daemon, "jane", NEW_PASSWORD))
    assert api_login(daemon, "jane", PASSWORD).returncode != 0
    page.reload()  # the re-login token was renewed after the change
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    expect(page.locator("main tbody tr")).to_have_count(1)

    wide = logged_in(pages, daemon, "jane", NEW_PASSWORD)
    open_settings(wide, "Users")
    expect(wide.locator("main tbody tr")).to_have_count(1)
    expect(user_row(wide, "jane").get_by_role("button")).to_have_text(["Change Password"])
    no_dead_buttons(wide)
    shots.page(wide, "users-own")
    assert NEW_PASSWORD not in said(pages, page)


# -- API keys -----------------------------------------------------------------------------------


def test_admin_makes_resets_and_deletes_api_keys(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """An administrator sees every key with its user, expiry and state (a key the daemon
    revoked shows why); Add API Key shows field errors (no name, an expiry in the past),
    makes a key for another user with an expiry, shown once with Copy, which logs in as that
    user only; Reset asks first and shows a new key once (the old one stops working, a
    revoked key works again); Delete asks first and the key no longer logs in."""
    add_user(daemon, "lena")
    leaky = midclt(daemon, "api_key.create", {"name": "leaky", "username": "lena"})
    # From 127.0.0.2, outside api_key_local_networks: the key is revoked at once.
    assert key_login(daemon, "lena", leaky["key"], source="127.0.0.2") == "EXPIRED"

    page = logged_in(pages, daemon, "admin", ADMIN_PASSWORD, permissions=CLIPBOARD)
    open_settings(page, "API Keys")
    region = page.get_by_role("region", name="All API Keys")
    revoked = key_row(page, "leaky")
    expect(revoked).to_contain_text("lena")
    expect(revoked).to_contain_text("Revoked")
    expect(revoked).to_contain_text(
        "Sent in plain text over an unencrypted connection from 127.0.0.2."
    )
    expect(revoked).to_contain_text("Never")

    add = region.get_by_role("button", name="Add API Key")
    add.click()
    dialog = page.get_by_role("dialog", name="Add API Key")
    expect(dialog.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(add).to_be_focused()
    add.click()
    dialog.get_by_role("button", name="Create").click()
    expect(field_error(dialog, "Name")).to_contain_text("at least 1 character")
    dialog.get_by_label("Name", exact=True).fill("lena-backup")
    expect(dialog.get_by_label("User", exact=True)).to_have_value("admin")
    dialog.get_by_label("User", exact=True).select_option("lena")
    expires = dialog.get_by_label("Expires", exact=True)
    expires.fill(page.evaluate(LOCAL_INPUT, -DAY_MS))
    dialog.get_by_role("button", name="Create").click()
    expect(field_error(dialog, "Expires")).to_have_text("Must be in the future.")
    assert key_names(daemon, "lena") == ["leaky"]
    later = page.evaluate(LOCAL_INPUT, 30 * DAY_MS)
    expires.fill(later)
    shots.page(page, "api-key-dialog", full_page=False)
    dialog.get_by_role("button", name="Create").click()
    shown = page.get_by_role("dialog", name="API Key Created")
    expect(shown).to_contain_text("Key “lena-backup” of lena")
    shots.page(page, "api-key-created", full_page=False)
    key = take_key(page, "API Key Created")

    row = key_row(page, "lena-backup")
    expect(row).to_contain_text("Active")
    expect(row).not_to_contain_text("Never")
    [entry] = [k for k in midclt(daemon, "api_key.query") if k["name"] == "lena-backup"]
    assert entry["username"] == "lena"
    assert entry["expires_at"]["$date"] == page.evaluate("(v) => new Date(v).getTime()", later)
    assert key.startswith(f"{entry['id']}-")
    assert key_login(daemon, "lena", key) == "SUCCESS"
    assert key_login(daemon, "admin", key) == "AUTH_ERR"  # another user's key
    shots.page(page, "api-keys")

    revoked.get_by_role("button", name="Reset leaky", exact=True).click()
    confirm = page.get_by_role("dialog", name="Reset leaky?")
    expect(confirm).to_contain_text("The key is revoked; after the reset the new key works.")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Reset", exact=True).click()
    expect(page.get_by_role("dialog", name="New Key for leaky")).to_contain_text(
        "The previous key no longer works"
    )
    renewed = take_key(page, "New Key for leaky")
    assert renewed != leaky["key"]
    expect(revoked).to_contain_text("Active")
    assert key_login(daemon, "lena", renewed) == "SUCCESS"
    assert key_login(daemon, "lena", leaky["key"]) == "AUTH_ERR"

    delete = row.get_by_role("button", name="Delete lena-backup", exact=True)
    delete.click()
    confirm = page.get_by_role("dialog", name="Delete lena-backup?")
    expect(confirm).to_contain_text("Scripts that use it can no longer log in.")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_have_count(0)
    expect(delete).to_be_focused()
    assert key_names(daemon, "lena") == ["leaky", "lena-backup"]
    delete.click()
    confirm.get_by_role("button", name="Delete", exact=True).click()
    expect(row).to_have_count(0)
    assert key_names(daemon, "lena") == ["leaky"]
    assert key_login(daemon, "lena", key) == "AUTH_ERR"
    no_dead_buttons(page)
    assert all(k not in said(pages, page) for k in (key, renewed))


def test_a_user_without_roles_manages_only_their_own_api_keys(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """At 390 px a user without roles sees only their own keys (not another user's), makes
    one for themself (no user field) shown once with Copy, which logs in; Reset shows a new
    key once and the old one stops working; Delete removes it. At 1280 px the same list."""
    add_user(daemon, "kate")
    add_user(daemon, "mona")
    midclt(daemon, "api_key.create", {"name": "mona-cron", "username": "mona"})
    page = logged_in(pages, daemon, "kate", PASSWORD, permissions=CLIPBOARD, **PHONE)
    open_settings(page, "API Keys")
    region = page.get_by_role("region", name="Your API Keys")
    expect(region).to_contain_text("You have no API keys.")
    expect(region).not_to_contain_text("mona-cron")
    assert page.evaluate(FITS)

    region.get_by_role("button", name="Add API Key").click()
    dialog = page.get_by_role("dialog", name="Add API Key")
    expect(dialog.get_by_label("User", exact=True)).to_have_count(0)
    expect(dialog).to_contain_text("The key logs in as you (kate).")
    page.keyboard.type("kate-laptop")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="API Key Created")).to_be_visible()
    assert page.evaluate(FITS)
    shots.page(page, "api-key-created-390", full_page=False)
    key = take_key(page, "API Key Created")
    row = key_row(page, "kate-laptop")
    expect(row).to_contain_text("Never")
    expect(row).to_contain_text("Active")
    expect(row.get_by_role("button")).to_have_text(["Reset", "Delete"])
    expect(page.get_by_role("columnheader", name="User")).to_have_count(0)
    assert key_login(daemon, "kate", key) == "SUCCESS"
    assert key_names(daemon, "kate") == ["kate-laptop"]
    assert page.evaluate(FITS)
    no_dead_buttons(page)
    shots.page(page, "api-keys-390")

    row.get_by_role("button", name="Reset kate-laptop", exact=True).click()
    page.get_by_role("dialog", name="Reset kate-laptop?").get_by_role(
        "button", name="Reset", exact=True
    ).click()
    renewed = take_key(page, "New Key for kate-laptop")
    assert key_login(daemon, "kate", key) == "AUTH_ERR"
    assert key_login(daemon, "kate", renewed) == "SUCCESS"

    wide = logged_in(pages, daemon, "kate", PASSWORD)
    open_settings(wide, "API Keys")
    expect(wide.locator("main tbody tr")).to_have_count(1)
    expect(key_row(wide, "kate-laptop").get_by_role("button")).to_have_text(["Reset", "Delete"])
    no_dead_buttons(wide)

    row.get_by_role("button", name="Delete kate-laptop", exact=True).click()
    page.get_by_role("dialog", name="Delete kate-laptop?").get_by_role(
        "button", name="Delete", exact=True
    ).click()
    expect(row).to_have_count(0)
    expect(region).to_contain_text("You have no API keys.")
    assert key_names(daemon, "kate") == []
    assert key_login(daemon, "kate", renewed) == "AUTH_ERR"
    assert all(k not in said(pages, page) for k in (key, renewed))


def test_an_api_key_reader_sees_every_key_and_changes_only_their_own(
    daemon: SubprocessDaemon, pages: Pages
) -> None:
    """With API_KEY_READ (and no ACCOUNT_READ) every key is listed with its user, but Reset and
    Delete are offered on the own keys only, Add API Key makes only an own key, and the Users
    screen shows only the own account."""
    add_user(daemon, "nina", roles=["API_KEY_READ"])
    midclt(daemon, "api_key.create", {"name": "nina-own", "username": "nina"})
    midclt(daemon, "api_key.create", {"name": "admin-ci", "username": "admin"})
    page = logged_in(pages, daemon, "nina", PASSWORD)
    open_settings(page, "API Keys")
    expect(page.get_by_role("region", name="All API Keys")).to_be_visible()
    expect(key_row(page, "admin-ci")).to_contain_text("admin")
    expect(key_row(page, "admin-ci").get_by_role("button")).to_have_count(0)
    expect(key_row(page, "nina-own").get_by_role("button")).to_have_text(["Reset", "Delete"])
    no_dead_buttons(page)
    page.get_by_role("button", name="Add API Key").click()
    dialog = page.get_by_role("dialog", name="Add API Key")
    expect(dialog).to_contain_text("The key logs in as you (nina).")
    expect(dialog.get_by_label("User", exact=True)).to_have_count(0)
    page.keyboard.press("Escape")

    open_settings(page, "Users")
    expect(page.locator("main tbody tr")).to_have_count(1)
    expect(user_row(page, "nina").get_by_role("button")).to_have_text(["Change Password"])


def test_admin_screens_at_phone_width_from_the_keyboard(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """At 390 px both screens fit without sideways scrolling and work from the keyboard: Lock
    and Unlock a user (Enter, Tab to the dialog's button), make a key (Enter sends, Escape
    closes the shown key) that then logs in, and delete it."""
    add_user(daemon, "oscar", full_name="Oscar Phone")
    page = logged_in(pages, daemon, "admin", ADMIN_PASSWORD, **PHONE)
    open_settings(page, "Users")
    oscar = user_row(page, "oscar")
    expect(oscar).to_contain_text("Oscar Phone")
    assert page.evaluate(FITS)
    shots.page(page, "users-admin-390")

    oscar.get_by_role("button", name="Lock oscar", exact=True).focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Lock oscar?")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(confirm.get_by_role("button", name="Lock", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(oscar).to_contain_text("Locked")
    unlock = oscar.get_by_role("button", name="Unlock oscar", exact=True)
    expect(unlock).to_be_focused()
    assert user_entry(daemon, "oscar")["locked"] is True
    page.keyboard.press("Enter")
    expect(oscar).to_contain_text("Active")
    assert user_entry(daemon, "oscar")["locked"] is False
    assert page.evaluate(FITS)

    open_settings(page, "API Keys")
    add = page.get_by_role("button", name="Add API Key")
    add.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Add API Key")
    expect(dialog.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("phone-made")
    page.keyboard.press("Enter")
    shown = page.get_by_role("dialog", name="API Key Created")
    value = shown.locator(".api-key-value")
    expect(value).to_have_text(API_KEY)
    key = value.inner_text()
    assert page.evaluate(FITS)
    page.keyboard.press("Escape")
    # The closed <dialog> leaves the DOM on its "close" event, a task after the Escape:
    # wait for the element itself, not only for the role (a closed dialog has none).
    expect(page.locator("dialog")).to_have_count(0)
    expect(add).to_be_focused()
    assert key not in page.content()
    assert key_login(daemon, "admin", key) == "SUCCESS"
    row = key_row(page, "phone-made")
    expect(row).to_contain_text("admin")
    assert page.evaluate(FITS)
    shots.page(page, "api-keys-admin-390")

    row.get_by_role("button", name="Delete phone-made", exact=True).focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Delete phone-made?")
    page.keyboard.press("Tab")
    expect(confirm.get_by_role("button", name="Delete", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(row).to_have_count(0)
    assert "phone-made" not in key_names(daemon, "admin")
    assert key_login(daemon, "admin", key) == "AUTH_ERR"
