"""Other users' passkeys on the Users screen in a real browser (API.md §5, §12): a full
administrator's Passkeys action (list, remove after a confirmation, the daemon's refusal
under ``enforce`` in words) and a truthful Clear 2FA, which removes the TOTP secret only
(passkeys stay, and the dialog says so), at 1280 px and 390 px.

Driven as ``tests/e2e/test_web_ui_admin_credentials.py`` does (its helpers): Playwright with
Debian's chromium against the daemon as a separate process, ``midclt2fa`` over the Unix
socket for changes "from the console" and to read the results on the server. Registration
is only by the user themself, so a user's passkeys are given over the wire: the user logs in
over TCP and registers keys of the software authenticator (``tests/helpers/authenticator``)
with the origin ``http://localhost:PORT``, as a browser there would. The ``pages`` fixture
fails a test whose pages logged an error or broke the Content-Security-Policy. UI state is
awaited with Playwright's auto-waiting ``expect``; nothing sleeps.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Locator, Page, expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.test_web_ui import (
    PASSWORD,
    Authenticator,
    add_user,
    enter_code,
    log_in,
    midclt,
    open_settings,
    open_ui,
    secret_of,
    start_daemon,
    two_factor_screen,
)
from tests.e2e.test_web_ui_admin_credentials import (
    FITS,
    PHONE,
    logged_in,
    no_dead_buttons,
    user_entry,
    user_row,
)
from tests.e2e.test_web_ui_passkeys import passkeys_of, port_of
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.daemon import ADMIN_PASSWORD, SubprocessDaemon, short_tempdir

if TYPE_CHECKING:
    from tests.e2e.conftest import Pages, Screenshots

pytestmark = [pytest.mark.slow]

#: Generous: the tests must pass on a slow, busy two-core machine.
expect.set_options(timeout=30_000)

#: True when the open dialog does not scroll sideways.
DIALOG_FITS = (
    "(d) => d.scrollWidth <= d.clientWidth && d.getBoundingClientRect().right <= innerWidth"
)
NOT_FULL_ADMIN = "Passkeys, if any, stay; only a full administrator or the user can remove them."


# -- the daemon and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[SubprocessDaemon]:
    """One daemon for the module (global 2FA off unless a test turns it on and back off);
    each test uses its own user names."""
    folder = short_tempdir()
    served = start_daemon(folder)
    yield served
    served.stop()
    shutil.rmtree(folder, ignore_errors=True)


class Wire:
    """A session of a user over TCP, from another client: JSON-RPC calls one at a time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.last_id = 0

    def call(self, method: str, *params: Any) -> Any:
        self.last_id += 1
        request = {"jsonrpc": "2.0", "id": self.last_id, "method": method, "params": params}
        self.ws.send(json.dumps(request))
        while True:
            reply = json.loads(self.ws.recv(timeout=120))
            if reply.get("id") == self.last_id:
                break
        assert "result" in reply, reply
        return reply["result"]


@contextmanager
def session_of(daemon: SubprocessDaemon, username: str) -> Iterator[Wire]:
    """``username`` logged in with the password only (no second factor asked: global 2FA
    is off, or the user has none yet)."""
    with connect(daemon.url, proxy=None, open_timeout=60) as ws:
        wire = Wire(ws)
        login = {"mechanism": "PASSWORD_PLAIN", "username": username, "password": PASSWORD}
        answer = wire.call("auth.login_ex", login)
        assert answer["response_type"] == "SUCCESS", answer
        yield wire


def give_passkeys(daemon: SubprocessDaemon, username: str, *names: str) -> list[dict[str, Any]]:
    """``username`` registers a passkey of a software security key for each name, in one
    session (the first one makes it a two-factor session); the server's list afterwards."""
    origin = f"http://localhost:{port_of(daemon)}"
    with session_of(daemon, username) as wire:
        for name in names:
            begun = wire.call("user.webauthn_register_begin", username, {"name": name})
            key = SoftAuthenticator()
            wire.call(
                "user.webauthn_register_finish",
                username,
                key.register(begun["options"], origin=origin),
            )
    listed = passkeys_of(daemon, username)
    assert [p["name"] for p in listed] == list(names)
    return listed


def secret_configured(daemon: SubprocessDaemon, username: str) -> bool:
    return bool(midclt(daemon, "user.twofactor_config", username)["secret_configured"])


def no_dialog(page: Page) -> None:
    """A closed <dialog> leaves the DOM on its "close" event, a task later: wait for it."""
    expect(page.locator("dialog")).to_have_count(0)


def passkey_row(dialog: Locator, name: str) -> Locator:
    return dialog.locator("tbody tr").filter(has=dialog.page.locator("th", has_text=name))


def codes_loaded(row: Locator) -> None:
    """user.twofactor_config answered for the row (which also tells whether there is a
    TOTP secret, and so whether Clear 2FA applies)."""
    expect(row.locator(".recovery-cell")).to_have_text("0 of 10 left")


# -- the tests --------------------------------------------------------------------------------


def test_admin_sees_and_removes_a_users_passkeys(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """A full administrator gets Passkeys on users with 2FA, and Clear 2FA only where
    there is a TOTP secret. The dialog lists the passkeys (name, added, last used; "No
    passkeys." for a user with a secret only) and is keyboard usable: Remove asks first in
    the same dialog (Escape goes back to the list), says the user's sessions end, which
    they do; removing the last one warns first and leaves the account without 2FA, and
    the Users table shows it after the dialog closes."""
    add_user(daemon, "rosa", full_name="Rosa Passkey")
    give_passkeys(daemon, "rosa", "Laptop", "YubiKey")
    add_user(daemon, "sam")
    midclt(daemon, "user.renew_2fa_secret", "sam", {})
    assert user_entry(daemon, "rosa")["twofactor_auth_configured"] is True

    page = logged_in(pages, daemon, "admin", ADMIN_PASSWORD)
    open_settings(page, "Users")
    rosa = user_row(page, "rosa")
    sam = user_row(page, "sam")
    codes_loaded(rosa)
    codes_loaded(sam)
    # Which kind of second factor: Passkeys, or Clear 2FA, applies.
    expect(rosa.locator(".twofactor-cell")).to_have_text("Configured (passkey)")
    expect(sam.locator(".twofactor-cell")).to_have_text("Configured (app)")
    expect(rosa.get_by_role("button")).to_have_text(
        ["Edit", "Lock", "Passkeys", "One-Time Password", "Delete"]
    )
    expect(sam.get_by_role("button")).to_have_text(
        ["Edit", "Lock", "Clear 2FA", "Passkeys", "One-Time Password", "Delete"]
    )
    expect(user_row(page, "admin").get_by_role("button")).to_have_text(["Edit"])
    no_dead_buttons(page)

    sam.get_by_role("button", name="Passkeys of sam", exact=True).click()
    dialog = page.get_by_role("dialog", name="Passkeys of sam")
    expect(dialog).to_contain_text("No passkeys.")
    expect(dialog).to_contain_text("Only sam can add one")
    page.keyboard.press("Escape")
    no_dialog(page)

    # From the keyboard: the dialog opens on Close, the passkeys are before it.
    opener = rosa.get_by_role("button", name="Passkeys of rosa", exact=True)
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Passkeys of rosa")
    laptop = passkey_row(dialog, "Laptop")
    yubikey = passkey_row(dialog, "YubiKey")
    expect(laptop).to_contain_text("Never")
    expect(yubikey).to_contain_text("Never")
    expect(dialog.get_by_role("columnheader")).to_have_text(
        ["Name", "Added", "Last used", "Actions"]
    )
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    shots.page(page, "passkeys-dialog", full_page=False)

    page.keyboard.press("Shift+Tab")
    expect(dialog.get_by_role("button", name="Remove YubiKey")).to_be_focused()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Remove YubiKey?")
    expect(confirm).to_contain_text("The passkey “YubiKey” will no longer log rosa in.")
    expect(confirm).to_contain_text("All sessions of rosa end now")
    expect(confirm).not_to_contain_text("last second factor")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")  # back to the list, on the same passkey
    expect(dialog.get_by_role("button", name="Remove YubiKey")).to_be_focused()
    assert len(passkeys_of(daemon, "rosa")) == 2

    with session_of(daemon, "rosa") as elsewhere:
        page.keyboard.press("Enter")
        expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
        page.keyboard.press("Tab")
        expect(confirm.get_by_role("button", name="Remove", exact=True)).to_be_focused()
        page.keyboard.press("Enter")
        expect(dialog.get_by_role("status")).to_have_text(
            "Passkey “YubiKey” removed. The sessions of rosa have ended."
        )
        expect(yubikey).to_have_count(0)
        expect(dialog.get_by_role("button", name="Remove Laptop")).to_be_focused()
        with pytest.raises(ConnectionClosed) as ended:
            elsewhere.ws.recv(timeout=60)
        assert ended.value.rcvd is not None and ended.value.rcvd.code == 1008
    assert [p["name"] for p in passkeys_of(daemon, "rosa")] == ["Laptop"]

    dialog.get_by_role("button", name="Remove Laptop").click()
    confirm = page.get_by_role("dialog", name="Remove Laptop?")
    expect(confirm.get_by_role("note")).to_have_text(
        "It is the last second factor of rosa: logging in will need only the password."
    )  # rosa has no recovery codes: nothing about them
    shots.page(page, "remove-last-passkey", full_page=False)
    confirm.get_by_role("button", name="Remove", exact=True).click()
    expect(dialog).to_contain_text("No passkeys.")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    assert passkeys_of(daemon, "rosa") == []
    assert user_entry(daemon, "rosa")["twofactor_auth_configured"] is False

    page.keyboard.press("Enter")
    no_dialog(page)
    expect(rosa.locator(".twofactor-cell")).to_have_text("Not configured")
    expect(rosa.locator(".recovery-cell")).to_have_text("—")
    expect(opener).to_have_count(0)
    expect(rosa.get_by_role("button", name="Edit rosa", exact=True)).to_be_focused()
    no_dead_buttons(page)


def test_clear_2fa_removes_the_secret_and_says_that_passkeys_stay(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """At 390 px, for a user with a TOTP secret and a passkey, Clear 2FA says that it
    removes the TOTP secret and that the passkey stays (pointing to Passkeys); it removes
    only the secret, after which the row offers Passkeys but no Clear 2FA. The Passkeys
    dialog fits the phone's width too."""
    add_user(daemon, "tess")
    give_passkeys(daemon, "tess", "Phone")
    midclt(daemon, "user.renew_2fa_secret", "tess", {})
    page = logged_in(pages, daemon, "admin", ADMIN_PASSWORD, **PHONE)
    open_settings(page, "Users")
    tess = user_row(page, "tess")
    codes_loaded(tess)
    clear = tess.get_by_role("button", name="Clear 2FA for tess", exact=True)
    clear.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Clear 2FA for tess?")
    expect(dialog).to_contain_text("This removes the TOTP secret of tess")
    expect(dialog.get_by_role("status")).to_have_text(
        "tess keeps a passkey (“Phone”): logging in still needs the password and a passkey. "
        "To remove passkeys, use Passkeys in the row of tess."
    )  # tess has no recovery codes and keeps a second factor: neither is spoken of
    expect(dialog).not_to_contain_text("reduces the security")
    expect(dialog).not_to_contain_text("recovery codes")
    expect(dialog).not_to_contain_text("set one up")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    assert page.evaluate(FITS)
    assert dialog.evaluate(DIALOG_FITS)
    shots.page(page, "clear-2fa-with-passkey-390", full_page=False)
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Clear 2FA", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    no_dialog(page)
    expect(
        page.get_by_text("The TOTP secret of tess is removed; their passkeys stay.")
    ).to_be_visible()
    expect(clear).to_have_count(0)
    passkeys = tess.get_by_role("button", name="Passkeys of tess", exact=True)
    expect(passkeys).to_be_focused()
    expect(tess.locator(".twofactor-cell")).to_have_text("Configured (passkey)")
    assert secret_configured(daemon, "tess") is False
    assert [p["name"] for p in passkeys_of(daemon, "tess")] == ["Phone"]
    assert user_entry(daemon, "tess")["twofactor_auth_configured"] is True

    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Passkeys of tess")
    expect(passkey_row(dialog, "Phone")).to_contain_text("Never")
    assert page.evaluate(FITS)
    assert dialog.evaluate(DIALOG_FITS)
    shots.page(page, "passkeys-dialog-390", full_page=False)
    page.keyboard.press("Escape")
    no_dialog(page)
    expect(passkeys).to_be_focused()
    assert page.evaluate(FITS)


def test_an_account_writer_gets_no_passkeys_action(daemon: SubprocessDaemon, pages: Pages) -> None:
    """With ACCOUNT_WRITE only, a user whose second factor is a passkey gets no Passkeys
    action (the daemon would refuse the list), and Clear 2FA, offered since the secret
    cannot be read, says that passkeys, if any, stay."""
    add_user(daemon, "uma", roles=["ACCOUNT_WRITE"])
    add_user(daemon, "vic")
    give_passkeys(daemon, "vic", "Key")
    page = logged_in(pages, daemon, "uma", PASSWORD)
    open_settings(page, "Users")
    vic = user_row(page, "vic")
    expect(vic.locator(".twofactor-cell")).to_have_text("Configured")  # the kind is not known
    expect(vic.get_by_role("button")).to_have_text(
        ["Edit", "Lock", "Clear 2FA", "One-Time Password", "Delete"]
    )
    expect(page.get_by_role("button", name="Passkeys of vic")).to_have_count(0)
    no_dead_buttons(page)

    vic.get_by_role("button", name="Clear 2FA for vic", exact=True).click()
    dialog = page.get_by_role("dialog", name="Clear 2FA for vic?")
    expect(dialog).to_contain_text("This removes the TOTP secret of vic")
    expect(dialog.get_by_role("status")).to_contain_text(NOT_FULL_ADMIN)
    # Neither recovery codes nor passkeys can be read here: "if any".
    expect(dialog.get_by_role("status")).to_contain_text(
        "which reduces the security of the account, and their recovery codes, if any, stop working."
    )
    dialog.get_by_role("button", name="Cancel").click()
    no_dialog(page)
    assert len(passkeys_of(daemon, "vic")) == 1


def test_the_refusal_to_remove_the_last_factor_under_enforce_is_shown(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """While ``enforce`` is on, removing a user's only second factor is refused by the
    daemon (-32602); the confirmation shows its message in words and the passkey stays."""
    add_user(daemon, "fay", roles=["FULL_ADMIN"])
    entry = midclt(daemon, "user.renew_2fa_secret", "fay", {})
    phone = Authenticator(secret_of(entry["twofactor_config"]["provisioning_uri"]))
    add_user(daemon, "walt")
    give_passkeys(daemon, "walt", "Only Key")
    midclt(daemon, "auth.twofactor.update", {"enabled": True, "enforce": True})
    try:
        page = open_ui(pages, daemon)
        log_in(page, "fay")
        enter_code(page, phone.code()[0])  # enforce: a full administrator with two factors
        two_factor_screen(page)
        open_settings(page, "Users")
        walt = user_row(page, "walt")
        walt.get_by_role("button", name="Passkeys of walt", exact=True).click()
        dialog = page.get_by_role("dialog", name="Passkeys of walt")
        dialog.get_by_role("button", name="Remove Only Key").click()
        confirm = page.get_by_role("dialog", name="Remove Only Key?")
        expect(confirm.get_by_role("note")).to_contain_text("It is the last second factor")
        confirm.get_by_role("button", name="Remove", exact=True).click()
        expect(confirm.get_by_role("alert")).to_have_text(
            "This is the last second factor of 'walt' and two-factor authentication is "
            "enforced: register another passkey or a TOTP secret first. To stop walt from "
            "logging in meanwhile, lock the account instead."
        )
        shots.page(page, "enforce-refusal", full_page=False)
        assert len(passkeys_of(daemon, "walt")) == 1
        page.keyboard.press("Escape")
        expect(dialog.get_by_role("button", name="Remove Only Key")).to_be_focused()
        page.keyboard.press("Escape")
        no_dialog(page)
        expect(walt).to_contain_text("Configured")
    finally:
        midclt(daemon, "auth.twofactor.update", {"enabled": False, "enforce": False})
