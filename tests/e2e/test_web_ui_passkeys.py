"""Passkeys in a real browser (API.md §12): the Passkeys card of the Two-Factor
Authentication screen (add with a name, list, remove after a confirmation) and the
"Use a passkey" choice of the login's second step.

Driven as ``tests/e2e/test_web_ui.py`` does (its fixtures and helpers): Playwright with
Debian's chromium against the daemon as a separate process, ``midclt2fa`` over the Unix
socket for changes "from the console" and to read the results on the server. The
security key is Chromium's virtual authenticator (DevTools protocol, domain ``WebAuthn``):
CTAP2, internal transport, user verification and presence answered automatically. The
page is opened at ``http://localhost:PORT/ui/``: the daemon's rp id on a loopback listener
is ``localhost``, and browsers refuse an IP address as rp id. UI state is awaited with
Playwright's auto-waiting ``expect``; nothing sleeps.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import CDPSession, Locator, Page, ViewportSize, expect

from tests.e2e.test_web_ui import (
    add_user,
    log_in,
    log_out,
    midclt,
    start_daemon,
    two_factor_screen,
    ui_url,
)
from tests.helpers.daemon import SubprocessDaemon, short_tempdir

if TYPE_CHECKING:
    from tests.e2e.conftest import Pages, Screenshots

pytestmark = [pytest.mark.slow]

#: Generous: the tests must pass on a slow, busy two-core machine.
expect.set_options(timeout=30_000)

PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
#: True when the page does not scroll sideways.
FITS = "document.documentElement.scrollWidth <= window.innerWidth"
#: True when the open dialog does not scroll sideways.
DIALOG_FITS = (
    "(d) => d.scrollWidth <= d.clientWidth && d.getBoundingClientRect().right <= innerWidth"
)
#: A security key with a built-in PIN or fingerprint that always says yes.
VIRTUAL_KEY = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}
#: Run before the page's scripts: a browser without the WebAuthn L3 JSON helpers, so the
#: page converts options and credentials by hand (js/webauthn.js).
WITHOUT_JSON_HELPERS = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""
#: The card's (and the login step's) words for a page at an IP address; the address is a link.
HOST_NAME_NOTE = (
    "Passkeys don't work when this page is opened by IP address (browsers refuse them). "
    "Open http://localhost:{port}/ui/ instead."
)
#: Above the code field of a login step that offers a passkey.
CODE_TOO = "Or, if you also use an authenticator app or have recovery codes:"


# -- the daemon and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[SubprocessDaemon]:
    """One daemon for the module with global 2FA enabled; each test uses its own users."""
    folder = short_tempdir()
    served = start_daemon(folder)
    midclt(served, "auth.twofactor.update", {"enabled": True})
    yield served
    served.stop()
    shutil.rmtree(folder, ignore_errors=True)


def port_of(daemon: SubprocessDaemon) -> int:
    match = re.search(r":(\d+)/", daemon.url)
    assert match is not None, daemon.url
    return int(match.group(1))


def localhost_url(daemon: SubprocessDaemon) -> str:
    """http://localhost:PORT/ui/: the address passkeys work at (rp id ``localhost``)."""
    return f"http://localhost:{port_of(daemon)}/ui/"


def open_page(
    pages: Pages,
    daemon: SubprocessDaemon,
    *,
    url: str | None = None,
    old_browser: bool = False,
    **options: Any,
) -> tuple[Page, CDPSession]:
    """A page at ``url`` (localhost by default) with the WebAuthn virtual environment on
    (no authenticator yet); ``old_browser``: without the L3 JSON helpers."""
    page = pages.new(**options)
    if old_browser:
        page.context.add_init_script(WITHOUT_JSON_HELPERS)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    page.goto(url or localhost_url(daemon))
    expect(page.get_by_role("heading", name="Log In")).to_be_visible()
    return page, cdp


def add_key(cdp: CDPSession) -> str:
    """Plug in a new virtual security key; its id."""
    answer = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_KEY})
    return str(answer["authenticatorId"])


def credentials_on(cdp: CDPSession, key: str) -> list[dict[str, Any]]:
    return list(cdp.send("WebAuthn.getCredentials", {"authenticatorId": key})["credentials"])


def std_to_b64url(text: str) -> str:
    """The DevTools protocol's base64 as the daemon's base64url without padding."""
    return text.replace("+", "-").replace("/", "_").rstrip("=")


def forged_copy(credential: dict[str, Any]) -> dict[str, Any]:
    """The credential's id, user and rp with a private key of its own: what a cloned id
    without the key would sign."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {**kept_fields(credential), "privateKey": base64.b64encode(der).decode()}


def kept_fields(credential: dict[str, Any]) -> dict[str, Any]:
    """The fields WebAuthn.addCredential takes back from WebAuthn.getCredentials."""
    names = (
        "credentialId",
        "isResidentCredential",
        "rpId",
        "privateKey",
        "userHandle",
        "signCount",
    )
    return {name: credential[name] for name in names if name in credential}


def passkeys_of(daemon: SubprocessDaemon, username: str) -> list[dict[str, Any]]:
    return list(midclt(daemon, "user.webauthn_list", username))


def sessions_of(daemon: SubprocessDaemon, username: str) -> list[dict[str, Any]]:
    return [
        s
        for s in midclt(daemon, "auth.sessions")
        if s["credentials_data"].get("username") == username
    ]


def passkeys_card(page: Page) -> Locator:
    return page.get_by_role("region", name="Passkeys")


def passkey_row(page: Page, name: str) -> Locator:
    return passkeys_card(page).locator("tbody tr").filter(has=page.locator("th", has_text=name))


def no_dialog(page: Page) -> None:
    """A closed <dialog> leaves the DOM on its "close" event, a task later: wait for it."""
    expect(page.locator("dialog")).to_have_count(0)


def skip_setup_prompt(page: Page) -> None:
    prompt = page.get_by_role("dialog", name="Set Up Two-Factor Authentication")
    expect(prompt).to_contain_text(re.compile("passkey", re.IGNORECASE))
    prompt.get_by_role("button", name="Skip").click()
    page.get_by_role("dialog", name="Skip Two-Factor Setup?").get_by_role(
        "button", name="Skip Setup"
    ).click()
    no_dialog(page)


def add_passkey(page: Page, name: str) -> None:
    """Add Passkey with ``name``, through to the toast."""
    passkeys_card(page).get_by_role("button", name="Add Passkey").click()
    dialog = page.get_by_role("dialog", name="Add Passkey")
    dialog.get_by_label("Name", exact=True).fill(name)
    dialog.get_by_role("button", name="Continue").click()
    expect(page.get_by_text(f"Passkey added: {name}.")).to_be_visible()
    no_dialog(page)


def use_passkey(page: Page) -> None:
    """The second step with a passkey offered: check it leads, then press it."""
    expect(page.get_by_role("heading", name="Passkey", exact=True)).to_be_visible()
    expect(page.locator(".card-subtitle")).to_contain_text("Use your passkey.")
    expect(page.locator(".card-subtitle")).not_to_contain_text("authenticator app")
    button = page.get_by_role("button", name="Use a passkey")
    expect(button).to_be_focused()
    expect(page.get_by_text(CODE_TOO)).to_be_visible()  # the code stays, as the second way
    expect(page.get_by_label("One-time code", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Use a recovery code")).to_be_visible()
    button.click()


def said(pages: Pages, page: Page) -> str:
    return " ".join(pages.console(page).messages)


# -- the tests --------------------------------------------------------------------------------


def test_a_user_adds_logs_in_with_and_removes_a_passkey(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """A user without a second factor is offered a passkey by the setup prompt (Add a
    Passkey opens the card's dialog) and adds one (a bad name is refused at its field,
    the same key twice in the dialog), which makes 2FA apply: the next login offers "Use
    a passkey" and ends in a LOGIN_TWOFACTOR session with second factor WEBAUTHN. A key
    that does not hold the passkey gets nothing from the browser; one that holds its id
    with another key pair is refused by the server (an attempt used, no session). The
    screen fits 390 px, and removing the passkey from the keyboard asks first, is refused
    while ``enforce`` makes it the last factor, and then leaves the account without 2FA."""
    add_user(daemon, "pat", full_name="Pat Passkey")
    page, cdp = open_page(pages, daemon)
    first_key = add_key(cdp)
    log_in(page, "pat")
    # The prompt offers a passkey at once: Add a Passkey opens the card's dialog.
    prompt = page.get_by_role("dialog", name="Set Up Two-Factor Authentication")
    expect(prompt).to_contain_text("an authenticator app on your phone or computer")
    expect(prompt).to_contain_text("or a passkey")
    expect(prompt.get_by_role("button")).to_have_text(["Skip", "Add a Passkey", "Set Up Now"])
    page.set_viewport_size(PHONE)  # three buttons fit a phone
    assert page.evaluate(FITS)
    assert prompt.evaluate(DIALOG_FITS)
    shots.page(page, "setup-prompt-390", full_page=False)
    page.set_viewport_size(DESKTOP)
    prompt.get_by_role("button", name="Add a Passkey").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Add Passkey")
    expect(dialog.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    no_dialog(page)
    expect(passkeys_card(page).get_by_role("button", name="Add Passkey")).to_be_focused()
    status = two_factor_screen(page)
    expect(status).to_have_attribute("data-status", "not-configured")
    expect(status).to_contain_text("Configure a secret or add a passkey")
    card = passkeys_card(page)
    expect(card).to_contain_text("You have no passkeys.")
    expect(card.locator(".passkey-host-note")).to_be_hidden()
    expect(page.locator("main .passkey-count")).to_have_text("None")

    # The name: empty is caught by the page, a tab by the server (not printable).
    card.get_by_role("button", name="Add Passkey").click()
    dialog = page.get_by_role("dialog", name="Add Passkey")
    name_box = dialog.get_by_label("Name", exact=True)
    expect(name_box).to_be_focused()
    dialog.get_by_role("button", name="Continue").click()
    name_field = dialog.locator(".field").filter(has=page.get_by_label("Name", exact=True))
    expect(name_field.locator(".field-error")).to_have_text("Enter a name for the passkey.")
    name_box.fill("Lap\ttop")
    dialog.get_by_role("button", name="Continue").click()
    expect(name_field.locator(".field-error")).to_have_text("Must be printable.")
    expect(name_box).to_have_attribute("aria-invalid", "true")
    assert passkeys_of(daemon, "pat") == []
    name_box.fill("Laptop")
    dialog.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("Passkey added: Laptop.")).to_be_visible()
    no_dialog(page)

    row = passkey_row(page, "Laptop")
    expect(row).to_contain_text("Never")  # not used to log in yet
    expect(status).to_have_attribute("data-status", "configured")
    expect(status).to_contain_text("logging in needs your password and one of your passkeys")
    expect(page.locator("main .passkey-count")).to_have_text("1 passkey")
    expect(page.get_by_role("region", name="Save Recovery Codes")).to_be_visible()
    [stored] = passkeys_of(daemon, "pat")
    assert stored["name"] == "Laptop" and stored["last_used_at"] is None
    [made] = credentials_on(cdp, first_key)
    assert stored["credential_id"] == std_to_b64url(made["credentialId"])
    assert made["rpId"] == "localhost"
    [session] = sessions_of(daemon, "pat")
    assert session["credentials"] == "LOGIN_TWOFACTOR"  # the first factor upgraded it
    shots.page(page, "passkey-added")

    # The same key again: the browser refuses it (excludeCredentials), the dialog says so.
    card.get_by_role("button", name="Add Passkey").click()
    dialog = page.get_by_role("dialog", name="Add Passkey")
    dialog.get_by_label("Name", exact=True).fill("Laptop again")
    dialog.get_by_role("button", name="Continue").click()
    expect(dialog.locator(".form-error")).to_contain_text(
        "This authenticator is registered already"
    )
    dialog.get_by_role("button", name="Cancel").click()
    no_dialog(page)
    assert len(passkeys_of(daemon, "pat")) == 1

    page.reload()  # the registration ended the old re-login token; the page took a new one
    two_factor_screen(page)
    expect(passkey_row(page, "Laptop")).to_be_visible()
    log_out(page, "pat")

    # Password, then the passkey.
    log_in(page, "pat")
    use_passkey(page)
    expect(two_factor_screen(page)).to_have_attribute("data-status", "configured")
    expect(passkey_row(page, "Laptop")).not_to_contain_text("Never")
    [session] = sessions_of(daemon, "pat")
    assert session["credentials"] == "LOGIN_TWOFACTOR"
    assert session["credentials_data"]["second_factor"] == "WEBAUTHN"
    assert passkeys_of(daemon, "pat")[0]["last_used_at"] is not None
    log_out(page, "pat")

    # Another key, without the passkey: the browser has no assertion to give.
    [held] = credentials_on(cdp, first_key)  # its private key and counter now
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": first_key})
    other_key = add_key(cdp)
    log_in(page, "pat")
    use_passkey(page)
    expect(page.get_by_role("alert")).to_have_text(
        "The passkey request was cancelled or timed out. If this device or security key has "
        "no passkey for this account, use another one or enter a code."
    )
    expect(page.get_by_role("button", name="Use a passkey")).to_be_enabled()
    assert sessions_of(daemon, "pat") == []

    # The passkey's id with another key pair: the server refuses the signature.
    cdp.send(
        "WebAuthn.addCredential",
        {"authenticatorId": other_key, "credential": forged_copy(held)},
    )
    page.get_by_role("button", name="Use a passkey").click()
    expect(page.get_by_role("alert")).to_have_text("The passkey was not accepted. 3 attempts left.")
    expect(page.get_by_role("heading", name="Passkey", exact=True)).to_be_visible()
    assert sessions_of(daemon, "pat") == []
    shots.page(page, "passkey-refused")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Login cancelled.")).to_be_visible()

    # The real key back (its private key and counter, as the first key held them).
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": other_key})
    third_key = add_key(cdp)
    cdp.send(
        "WebAuthn.addCredential", {"authenticatorId": third_key, "credential": kept_fields(held)}
    )
    log_in(page, "pat")
    use_passkey(page)
    two_factor_screen(page)

    # At 390 px: the screen and the dialog fit; removal works from the keyboard.
    page.set_viewport_size(PHONE)
    row = passkey_row(page, "Laptop")
    expect(row).to_be_visible()
    assert page.evaluate(FITS)
    shots.page(page, "passkeys-390")
    add = passkeys_card(page).get_by_role("button", name="Add Passkey")
    add.focus()
    page.keyboard.press("Enter")
    expect(
        page.get_by_role("dialog", name="Add Passkey").get_by_label("Name", exact=True)
    ).to_be_focused()
    assert page.evaluate(FITS)
    page.keyboard.press("Escape")
    no_dialog(page)
    expect(add).to_be_focused()

    midclt(daemon, "auth.twofactor.update", {"enforce": True})
    try:
        remove = row.get_by_role("button", name="Remove Laptop", exact=True)
        remove.focus()
        page.keyboard.press("Enter")
        confirm = page.get_by_role("dialog", name="Remove Laptop?")
        expect(confirm).to_contain_text("Your other sessions will end; this one stays.")
        # No recovery codes were made: the warning does not speak of them.
        expect(confirm.get_by_role("note")).to_have_text(
            "It is your only second factor: logging in will need only your password."
        )
        expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
        page.keyboard.press("Tab")
        expect(confirm.get_by_role("button", name="Remove", exact=True)).to_be_focused()
        page.keyboard.press("Enter")
        expect(confirm.locator(".form-error")).to_contain_text(
            "two-factor authentication is enforced"
        )
        assert page.evaluate(FITS)
        shots.page(page, "remove-refused-390", full_page=False)
        page.keyboard.press("Escape")
        no_dialog(page)
        assert len(passkeys_of(daemon, "pat")) == 1
    finally:
        midclt(daemon, "auth.twofactor.update", {"enforce": False})

    remove.focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Remove Laptop?")
    confirm.get_by_role("button", name="Remove", exact=True).click()
    expect(page.get_by_text("Passkey removed: Laptop.")).to_be_visible()
    no_dialog(page)
    expect(passkeys_card(page)).to_contain_text("You have no passkeys.")
    expect(add).to_be_focused()
    expect(two_factor_screen(page)).to_have_attribute("data-status", "not-configured")
    assert page.evaluate(FITS)
    assert passkeys_of(daemon, "pat") == []
    [entry] = midclt(daemon, "user.query", [["username", "=", "pat"]])
    assert entry["twofactor_auth_configured"] is False
    page.reload()  # the removal, too, ended the old token; the page has a new one
    skip_setup_prompt(page)  # no second factor left: the prompt is back
    two_factor_screen(page)
    log_out(page, "pat")
    log_in(page, "pat")  # no second factor left: the password alone logs in
    skip_setup_prompt(page)
    two_factor_screen(page)


def test_without_the_json_helpers_and_at_an_ip_address(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """A browser without PublicKeyCredential.parse*FromJSON and toJSON(): the page's own
    conversion registers and logs in. At http://127.0.0.1 (an IP address cannot be an rp
    id) the card and the login step say to open the UI at localhost instead."""
    add_user(daemon, "quinn")
    page, cdp = open_page(pages, daemon, old_browser=True)
    assert page.evaluate("typeof PublicKeyCredential.parseCreationOptionsFromJSON") == "undefined"
    assert page.evaluate("'toJSON' in PublicKeyCredential.prototype") is False
    add_key(cdp)
    log_in(page, "quinn")
    skip_setup_prompt(page)
    two_factor_screen(page)
    add_passkey(page, "Old browser key")
    expect(passkey_row(page, "Old browser key")).to_contain_text("Never")
    log_out(page, "quinn")
    log_in(page, "quinn")
    use_passkey(page)
    expect(two_factor_screen(page)).to_have_attribute("data-status", "configured")
    [session] = sessions_of(daemon, "quinn")
    assert session["credentials_data"]["second_factor"] == "WEBAUTHN"

    note = HOST_NAME_NOTE.format(port=port_of(daemon))
    link = localhost_url(daemon)
    at_ip, _ = open_page(pages, daemon, url=ui_url(daemon))
    log_in(at_ip, "quinn")
    expect(at_ip.get_by_role("heading", name="Passkey or Code")).to_be_visible()
    expect(at_ip.locator(".card-subtitle")).not_to_contain_text("Use your passkey")
    expect(at_ip.get_by_role("note")).to_have_text(note)
    expect(at_ip.get_by_role("note").get_by_role("link", name=link)).to_have_attribute("href", link)
    expect(at_ip.get_by_text(CODE_TOO)).to_be_visible()
    expect(at_ip.get_by_role("button", name="Use a passkey")).to_have_count(0)
    expect(at_ip.get_by_label("One-time code", exact=True)).to_be_focused()
    shots.page(at_ip, "login-at-ip")

    add_user(daemon, "rosa")
    phone, _ = open_page(pages, daemon, url=ui_url(daemon), width=390, height=844)
    log_in(phone, "rosa")
    prompt = phone.get_by_role("dialog", name="Set Up Two-Factor Authentication")
    expect(prompt).to_contain_text("Passkeys (a security key")
    expect(prompt.get_by_role("button")).to_have_text(["Skip", "Set Up Now"])  # no passkey here
    skip_setup_prompt(phone)
    two_factor_screen(phone)
    card = passkeys_card(phone)
    expect(card.locator(".passkey-host-note")).to_have_text(note)
    expect(card.get_by_role("link", name=link)).to_have_attribute("href", link)
    expect(card.get_by_role("button", name="Add Passkey")).to_be_hidden()
    expect(card).to_contain_text("You have no passkeys.")
    assert phone.evaluate(FITS)
    shots.page(phone, "card-at-ip-390")
    assert all("challenge" not in text for text in (said(pages, page), said(pages, phone)))


def test_a_setup_only_session_sets_up_a_passkey_instead_of_an_app(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """With ``enforce`` on, a user without a second factor gets the setup screen only; a
    passkey added there instead of the app makes the session a full two-factor one (no
    pending secret left to confirm), which keeps a re-login token."""
    add_user(daemon, "sam")
    midclt(daemon, "auth.twofactor.update", {"enforce": True})
    try:
        page, cdp = open_page(pages, daemon)
        add_key(cdp)
        log_in(page, "sam")
        expect(
            page.get_by_role("heading", name="Set Up Two-Factor Authentication", level=1)
        ).to_be_visible()
        expect(page.locator("main").get_by_role("status").first).to_contain_text("or add a passkey")
        expect(
            page.get_by_role("region", name="Finish Setting Up Your Authenticator")
        ).to_be_visible()
        instead = page.get_by_role("region", name="Or Use a Passkey")
        assert page.evaluate(FITS)
        shots.page(page, "setup-only")
        [session] = sessions_of(daemon, "sam")
        assert session["credentials"] == "LOGIN_PASSWORD"

        instead.get_by_role("button", name="Add a Passkey").click()
        dialog = page.get_by_role("dialog", name="Add Passkey")
        dialog.get_by_label("Name", exact=True).fill("Phone")
        dialog.get_by_role("button", name="Continue").click()
        expect(
            page.get_by_text(
                "Two-factor authentication is set up. From now on, logging in asks for your "
                "passkey."
            )
        ).to_be_visible()
        no_dialog(page)
        expect(two_factor_screen(page)).to_have_attribute("data-status", "configured")
        expect(page.get_by_role("button", name="Settings")).to_be_visible()
        expect(page.get_by_role("region", name="Save Recovery Codes")).to_be_visible()
        expect(
            page.get_by_role("region", name="Finish Setting Up Your Authenticator")
        ).to_have_count(0)
        expect(passkey_row(page, "Phone")).to_contain_text("Never")
        [session] = sessions_of(daemon, "sam")
        assert session["credentials"] == "LOGIN_TWOFACTOR"
        assert [p["name"] for p in passkeys_of(daemon, "sam")] == ["Phone"]
        page.reload()  # a full session: the re-login token works
        expect(two_factor_screen(page)).to_have_attribute("data-status", "configured")
    finally:
        midclt(daemon, "auth.twofactor.update", {"enforce": False})
