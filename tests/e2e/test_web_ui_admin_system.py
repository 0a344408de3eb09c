"""The web UI's Sessions, System > Time and System > Audit screens in a real browser
(API.md §6, §7, §9), as an administrator, a read-only administrator and a user without
roles, at 1280 px and at a phone's 390 px.

Driven as ``tests/e2e/test_web_ui.py`` does (its fixtures and helpers): Playwright with
Debian's chromium against the daemon as a separate process. Other clients are blocking
JSON-RPC clients over TCP (a command-line client logged in elsewhere, whose connection
the page ends) and the built-in administrator over the Unix socket, which checks every
result through the API: the sessions left, the NTP servers stored, the audit entries of
the same filter. The clock is checked against a loopback NTP responder that answers with
real NTP packets. UI state is awaited with Playwright's auto-waiting ``expect``; nothing
sleeps to synchronise.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Locator, Page, expect
from websockets.exceptions import ConnectionClosed

from tests.e2e.test_web_ui import (
    PASSWORD,
    add_user,
    field_of,
    log_in,
    midclt,
    open_settings,
    open_ui,
    start_daemon,
    two_factor_screen,
)
from tests.helpers.daemon import ADMIN_PASSWORD, SubprocessDaemon, short_tempdir
from tests.helpers.ntp import NtpResponder
from tests.helpers.threaded import SyncClient, sync_client

if TYPE_CHECKING:
    from tests.e2e.conftest import Pages, Screenshots

pytestmark = [pytest.mark.slow]

#: Generous: the tests must pass on a slow, busy two-core machine.
expect.set_options(timeout=30_000)

PHONE = {"width": 390, "height": 844}
#: The page fits its width: nothing scrolls sideways.
FITS = "document.documentElement.scrollWidth <= window.innerWidth"
#: A user name that a spreadsheet would run as a formula (CSV injection).
FORMULA_NAME = '=HYPERLINK("http://example.invalid","x")'


# -- the daemon and other clients ----------------------------------------------------------


@pytest.fixture
def daemon() -> Iterator[SubprocessDaemon]:
    """The daemon as a separate process with its own state folder (as in test_web_ui)."""
    folder = short_tempdir()
    served = start_daemon(folder)
    yield served
    served.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def clients(daemon: SubprocessDaemon) -> Iterator[ExitStack]:
    """Holds the blocking clients a test opens; closes them at the end."""
    with ExitStack() as stack:
        yield stack


def root_client(stack: ExitStack, daemon: SubprocessDaemon) -> SyncClient:
    """The built-in administrator over the Unix socket (no login): checks through the API."""
    return stack.enter_context(sync_client(daemon.unix_uri))


def login_client(
    stack: ExitStack, daemon: SubprocessDaemon, username: str, password: str
) -> SyncClient:
    """A client logged in over TCP (like midclt2fa elsewhere); stays connected."""
    client = stack.enter_context(sync_client(daemon.url))
    reply = client.call(
        "auth.login_ex", {"mechanism": "PASSWORD_PLAIN", "username": username, "password": password}
    )
    assert reply["response_type"] == "SUCCESS", reply
    return client


def own_session_id(client: SyncClient) -> str:
    [entry] = client.call("auth.sessions", [["current", "=", True]])
    return str(entry["id"])


def session_ids(root: SyncClient) -> set[str]:
    return {str(entry["id"]) for entry in root.call("auth.sessions")}


def close_code(client: SyncClient) -> int:
    """Wait until the server closes the client's connection; its close code."""
    try:
        while True:
            client.ws.recv(timeout=90)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code


def audit(root: SyncClient, filters: list[list[Any]], **options: Any) -> Any:
    """audit.query over the API: the entries (or their number) for ``filters``."""
    return root.call("audit.query", {"query-filters": filters, "query-options": options})


# -- page helpers --------------------------------------------------------------------------


def open_system(page: Page, item: str) -> None:
    page.get_by_role("button", name="System", exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()
    expect(page.get_by_role("heading", name=item, level=1)).to_be_visible()


def row_of(table: Locator, attribute: str, value: str) -> Locator:
    return table.locator(f'tr[{attribute}="{value}"]')


def shown_audit_ids(page: Page) -> list[str]:
    rows = page.get_by_role("table", name="Audit entries").locator("tbody tr")
    return [str(rows.nth(i).get_attribute("data-audit-id")) for i in range(rows.count())]


def assert_clean(pages: Pages, page: Page) -> None:
    """No uncaught error, console error or Content-Security-Policy violation so far."""
    assert page.evaluate("window.__cspViolations") == []
    assert pages.console(page).errors == []


def skip_setup_prompt(page: Page) -> None:
    """Global 2FA is on and the user has no secret: skip the setup prompt of the login."""
    page.get_by_role("dialog", name="Set Up Two-Factor Authentication").get_by_role(
        "button", name="Skip"
    ).click()
    page.get_by_role("dialog", name="Skip Two-Factor Setup?").get_by_role(
        "button", name="Skip Setup"
    ).click()
    expect(page.get_by_role("dialog")).to_have_count(0)


def screenshot(shots: Screenshots, page: Page, label: str, *, full_page: bool = True) -> None:
    """A screenshot without the toasts of earlier actions (they fade after 7 s)."""
    page.evaluate("document.getElementById('toasts').replaceChildren()")
    shots.page(page, label, full_page=full_page)


def try_hash(page: Page, screen: str) -> None:
    """Open ``#/screen`` by URL: a screen the user may not open goes back to 2FA."""
    page.evaluate(f"window.location.hash = '#/{screen}'")
    expect(page).to_have_url(re.compile(r"#/two-factor$"))
    expect(page.get_by_role("heading", name="Two-Factor Authentication", level=1)).to_be_visible()


# -- sessions ------------------------------------------------------------------------------


def test_administrator_ends_one_session_then_the_other_own_sessions(
    daemon: SubprocessDaemon, clients: ExitStack, pages: Pages, shots: Screenshots
) -> None:
    """An administrator sees every session with its user, credential, origin, secure
    transport and age, the current one marked and without End; a new login elsewhere
    appears live; End (after a confirmation that Escape cancels) closes that client's
    connection with 1008 and the API no longer lists it; End My Other Sessions ends the
    administrator's other session only."""
    add_user(daemon, "alice")
    root = root_client(clients, daemon)
    alice = login_client(clients, daemon, "alice", PASSWORD)
    alice_id = own_session_id(alice)
    elsewhere = login_client(clients, daemon, "admin", ADMIN_PASSWORD)
    elsewhere_id = own_session_id(elsewhere)

    page = open_ui(pages, daemon)
    log_in(page, "admin", ADMIN_PASSWORD)
    two_factor_screen(page)
    open_settings(page, "Sessions")
    table = page.get_by_role("table", name="Sessions")
    headers = table.get_by_role("columnheader")
    expect(headers).to_have_text(
        ["User", "Signed In With", "Origin", "Secure Transport", "Age", "Actions"]
    )
    current = table.locator("tr.row-current")
    expect(current).to_have_count(1)
    expect(current).to_contain_text("This session")
    expect(current.get_by_role("button")).to_have_count(0)
    page_id = str(current.get_attribute("data-session"))
    [entry] = [e for e in root.call("auth.sessions") if e["id"] == page_id]
    assert entry["credentials_data"]["username"] == "admin"

    alice_row = row_of(table, "data-session", alice_id)
    expect(alice_row).to_contain_text("alice")
    expect(alice_row).to_contain_text("Password")
    expect(alice_row).to_contain_text(re.compile(r"127\.0\.0\.1:\d+"))
    expect(alice_row.get_by_role("cell").nth(2)).to_have_text("No")  # Secure Transport
    expect(alice_row.get_by_role("cell").nth(3)).to_have_text(
        re.compile(r"^(under a minute|\d+ min)$")
    )
    root_row = table.locator("tr").filter(has_text="Unix socket, uid")
    expect(root_row.first.get_by_role("cell").nth(2)).to_have_text("Yes")
    expect(row_of(table, "data-session", elsewhere_id)).to_contain_text("admin")

    # A login elsewhere shows up without a reload (the auth.sessions event).
    again = login_client(clients, daemon, "alice", PASSWORD)
    again_id = own_session_id(again)
    expect(row_of(table, "data-session", again_id)).to_be_visible()
    screenshot(shots, page, "sessions")

    end = alice_row.get_by_role("button", name=re.compile(r"^End the session of alice from"))
    end.click()
    dialog = page.get_by_role("dialog", name="End Session?")
    expect(dialog).to_contain_text("alice’s session from 127.0.0.1:")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(end).to_be_focused()
    assert alice_id in session_ids(root)

    end.click()
    dialog.get_by_role("button", name="End Session").click()
    expect(page.get_by_text("The session was ended.")).to_be_visible()
    expect(alice_row).to_have_count(0)
    assert close_code(alice) == 1008
    left = session_ids(root)
    assert alice_id not in left
    assert {again_id, elsewhere_id, page_id} <= left

    ours = page.get_by_role("button", name="End My Other Sessions")
    ours.click()
    dialog = page.get_by_role("dialog", name="End Your Other Sessions?")
    expect(dialog).to_contain_text("Your 1 other session logged in as admin")
    dialog.get_by_role("button", name="End Other Sessions").click()
    expect(page.get_by_text("Your other sessions were ended.")).to_be_visible()
    assert close_code(elsewhere) == 1008
    left = session_ids(root)
    assert elsewhere_id not in left
    assert {again_id, page_id} <= left  # alice's is not the administrator's own
    expect(ours).to_be_hidden()
    expect(row_of(table, "data-session", elsewhere_id)).to_have_count(0)
    expect(current).to_have_count(1)
    assert_clean(pages, page)


def test_a_user_without_roles_sees_and_ends_only_their_own_sessions_on_a_phone(
    daemon: SubprocessDaemon, clients: ExitStack, pages: Pages, shots: Screenshots
) -> None:
    """At 390 px, from the keyboard, a user without roles finds Sessions in the Settings
    menu and no System menu (Time and Audit by URL go back to 2FA); the list holds only
    their own sessions (no User column), End and End My Other Sessions close those
    clients' connections, and the administrator's session elsewhere stays."""
    add_user(daemon, "bob")
    root = root_client(clients, daemon)
    first = login_client(clients, daemon, "bob", PASSWORD)
    first_id = own_session_id(first)
    second = login_client(clients, daemon, "bob", PASSWORD)
    second_id = own_session_id(second)
    admin = login_client(clients, daemon, "admin", ADMIN_PASSWORD)
    admin_id = own_session_id(admin)

    page = open_ui(pages, daemon, **PHONE)
    log_in(page, "bob")
    two_factor_screen(page)
    expect(page.get_by_role("button", name="System", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Alerts"))).to_have_count(0)
    try_hash(page, "time")
    try_hash(page, "audit")

    settings = page.get_by_role("button", name="Settings")
    settings.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Two-Factor Authentication")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Sessions")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sessions", level=1)).to_be_visible()

    table = page.get_by_role("table", name="Sessions")
    expect(table.get_by_role("columnheader")).to_have_text(
        ["Signed In With", "Origin", "Secure Transport", "Age", "Actions"]
    )
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(row_of(table, "data-session", admin_id)).to_have_count(0)
    expect(table.locator("tr.row-current")).to_contain_text("This session")
    assert page.evaluate(FITS)
    screenshot(shots, page, "sessions-phone")

    end = row_of(table, "data-session", first_id).get_by_role("button", name=re.compile("^End"))
    end.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="End Session?")
    expect(dialog).to_contain_text("Your session from 127.0.0.1:")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="End Session")).to_be_focused()
    page.keyboard.press("Enter")
    expect(row_of(table, "data-session", first_id)).to_have_count(0)
    assert close_code(first) == 1008
    assert first_id not in session_ids(root)

    page.get_by_role("button", name="End My Other Sessions").click()
    page.get_by_role("dialog", name="End Your Other Sessions?").get_by_role(
        "button", name="End Other Sessions"
    ).click()
    expect(table.locator("tbody tr")).to_have_count(1)
    assert close_code(second) == 1008
    left = session_ids(root)
    assert second_id not in left
    assert admin_id in left  # another user's session: not bob's to end
    assert admin.call("core.ping") == "pong"
    expect(page.get_by_role("button", name="End My Other Sessions")).to_be_hidden()
    assert page.evaluate(FITS)
    assert_clean(pages, page)


# -- time ----------------------------------------------------------------------------------


def test_time_screen_adds_edits_checks_and_deletes_ntp_servers(
    daemon: SubprocessDaemon, clients: ExitStack, pages: Pages, shots: Screenshots
) -> None:
    """The unverifiable-clock alert links to System > Time; there an administrator adds
    an NTP server (the server's field errors shown at their fields, Enter saves, Escape
    cancels), sees each server's offset and stratum from real NTP packets, Check Now
    asks the server again, Edit and Delete change what system.ntpserver.query returns."""
    root = root_client(clients, daemon)
    with NtpResponder(offset=2.5, stratum=3) as ntp:
        page = open_ui(pages, daemon)
        log_in(page, "admin", ADMIN_PASSWORD)
        two_factor_screen(page)

        # 2FA on without any NTP server: the TimeSyncUnverified alert, linked to the screen.
        midclt(daemon, "auth.twofactor.update", {"enabled": True})
        page.get_by_role("button", name="Alerts: 1").click()
        alerts = page.get_by_role("dialog", name="Alerts")
        expect(alerts).to_contain_text("no NTP server is configured (system.ntpserver.create)")
        alerts.get_by_role("link", name="Set up NTP servers in System → Time").click()
        expect(alerts).to_have_count(0)
        expect(page.get_by_role("heading", name="Time", level=1)).to_be_visible()
        expect(page).to_have_url(re.compile(r"#/time$"))

        status = page.get_by_role("region", name="Clock Status")
        servers = page.get_by_role("region", name="NTP Servers")
        expect(status).to_contain_text("No NTP server is configured")
        expect(servers).to_contain_text("No NTP server is configured")

        add = servers.get_by_role("button", name="Add NTP Server")
        add.focus()
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Add NTP Server")
        address = dialog.get_by_label("Address")
        expect(address).to_be_focused()
        expect(dialog.get_by_label("Port")).to_have_value("123")
        page.keyboard.type("bad_host!")
        dialog.get_by_label("Port").fill("70000")
        dialog.get_by_label("Port").press("Enter")
        expect(field_of(page, "Address").locator(".field-error")).to_have_text(
            "Must be a host name or an IP address."
        )
        expect(field_of(page, "Port").locator(".field-error")).to_have_text(
            "Input should be less than or equal to 65535."
        )
        expect(address).to_have_attribute("aria-invalid", "true")
        expect(address).to_be_focused()

        address.fill(ntp.host)
        dialog.get_by_label("Port").fill(str(ntp.port))
        dialog.get_by_label("Min Poll").fill("10")
        dialog.get_by_label("Max Poll").fill("6")
        dialog.get_by_label("Max Poll").press("Enter")
        expect(field_of(page, "Max Poll").locator(".field-error")).to_have_text(
            "Must be greater than or equal to minpoll."
        )
        expect(field_of(page, "Address").locator(".field-error")).to_be_hidden()
        assert root.call("system.ntpserver.query") == []
        dialog.get_by_label("Max Poll").fill("12")
        dialog.get_by_role("button", name="Save").click()
        expect(page.get_by_text(f"NTP server {ntp.host}:{ntp.port} added.")).to_be_visible()
        expect(dialog).to_have_count(0)
        [stored] = root.call("system.ntpserver.query")
        assert (stored["address"], stored["port"], stored["minpoll"], stored["maxpoll"]) == (
            ntp.host,
            ntp.port,
            10,
            12,
        )
        assert (stored["iburst"], stored["prefer"]) == (True, False)
        row = row_of(servers, "data-server-id", str(stored["id"]))
        expect(row).to_contain_text("iburst")
        expect(row).to_contain_text("17 min to 68 min (10–12)")

        answer = row_of(status, "data-server", f"{ntp.host}:{ntp.port}")
        expect(status.locator(".badge").first).to_have_text("Synchronized")
        expect(answer).to_contain_text("Usable")
        expect(answer.get_by_role("cell").nth(3)).to_have_text("3")  # stratum
        expect(answer).to_contain_text(re.compile(r"2\.[45]\d\d s behind"))
        assert ntp.requests > 0

        # The same server again: refused at the address; Escape leaves the dialog.
        add.click()
        dialog = page.get_by_role("dialog", name="Add NTP Server")
        dialog.get_by_label("Address").fill(ntp.host)
        dialog.get_by_label("Port").fill(str(ntp.port))
        dialog.get_by_role("button", name="Save").click()
        expect(field_of(page, "Address").locator(".field-error")).to_have_text(
            "This server (address and port) is already listed."
        )
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0)
        expect(add).to_be_focused()
        assert len(root.call("system.ntpserver.query")) == 1

        # Check Now asks the server again: its new answer is shown.
        asked = ntp.requests
        ntp.offset, ntp.stratum = -4.0, 4
        status.get_by_role("button", name="Check Now").click()
        expect(answer.get_by_role("cell").nth(3)).to_have_text("4")
        expect(answer).to_contain_text(re.compile(r"(3\.9\d\d|4\.0\d\d) s ahead"))
        expect(status).to_contain_text(re.compile(r"(3\.9|4\.0) s ahead of NTP"))
        assert ntp.requests > asked
        screenshot(shots, page, "time")

        row.get_by_role("button", name=f"Edit {ntp.host}:{ntp.port}").click()
        dialog = page.get_by_role("dialog", name=f"Edit NTP Server {ntp.host}:{ntp.port}")
        expect(dialog.get_by_label("Min Poll")).to_have_value("10")
        dialog.get_by_label("iburst").uncheck()
        dialog.get_by_label("Prefer").check()
        dialog.get_by_role("button", name="Save").click()
        expect(page.get_by_text(f"NTP server {ntp.host}:{ntp.port} saved.")).to_be_visible()
        expect(row.get_by_role("cell").nth(1)).to_have_text("prefer")
        [stored] = root.call("system.ntpserver.query")
        assert (stored["iburst"], stored["prefer"], stored["maxpoll"]) == (False, True, 12)

        row.get_by_role("button", name=f"Delete {ntp.host}:{ntp.port}").click()
        dialog = page.get_by_role("dialog", name="Delete NTP Server?")
        expect(dialog).to_contain_text("It is the last one")
        expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
        dialog.get_by_role("button", name="Delete").click()
        expect(page.get_by_text(f"NTP server {ntp.host}:{ntp.port} deleted.")).to_be_visible()
        expect(servers).to_contain_text("No NTP server is configured")
        assert root.call("system.ntpserver.query") == []
        expect(status).to_contain_text("No NTP server is configured")
        assert_clean(pages, page)


def test_a_read_only_administrator_reads_time_audit_and_sessions_on_a_phone(
    daemon: SubprocessDaemon, clients: ExitStack, pages: Pages, shots: Screenshots
) -> None:
    """A READONLY_ADMIN at 390 px gets System > Time and Audit without any button that
    changes something (no Add, Edit, Delete, Check Now, no alert link to fix NTP), every
    session without End for other users, and screens that fit the phone's width."""
    add_user(daemon, "rita", roles=["READONLY_ADMIN"])
    root = root_client(clients, daemon)
    admin = login_client(clients, daemon, "admin", ADMIN_PASSWORD)
    admin_id = own_session_id(admin)
    midclt(daemon, "auth.twofactor.update", {"enabled": True})
    with NtpResponder(stratum=2) as ntp:
        page = open_ui(pages, daemon, **PHONE)
        log_in(page, "rita")
        skip_setup_prompt(page)
        two_factor_screen(page)
        page.get_by_role("button", name="Alerts: 1").click()
        alerts = page.get_by_role("dialog", name="Alerts")
        expect(alerts).to_contain_text("cannot be verified")
        expect(alerts.get_by_role("link")).to_have_count(0)
        page.keyboard.press("Escape")
        expect(alerts).to_have_count(0)

        root.call("system.ntpserver.create", {"address": ntp.host, "port": ntp.port})
        open_system(page, "Time")
        status = page.get_by_role("region", name="Clock Status")
        servers = page.get_by_role("region", name="NTP Servers")
        expect(status.locator(".badge").first).to_have_text("Synchronized")
        expect(row_of(status, "data-server", f"{ntp.host}:{ntp.port}")).to_contain_text("Usable")
        expect(servers.get_by_role("table", name="NTP servers")).to_contain_text(str(ntp.port))
        expect(page.locator("main").get_by_role("button")).to_have_count(0)
        expect(servers.get_by_role("columnheader")).to_have_text(
            ["Address", "Port", "Options", "Poll Interval"]
        )
        assert page.evaluate(FITS)
        screenshot(shots, page, "time-phone")

        open_system(page, "Audit")
        table = page.get_by_role("table", name="Audit entries")
        expect(table.locator("tbody tr").first).to_be_visible()
        expect(page.get_by_role("button", name="Export CSV")).to_be_enabled()
        assert page.evaluate(FITS)
        screenshot(shots, page, "audit-phone", full_page=False)

        open_settings(page, "Sessions")
        sessions = page.get_by_role("table", name="Sessions")
        admin_row = row_of(sessions, "data-session", admin_id)
        expect(admin_row).to_contain_text("admin")
        expect(admin_row.get_by_role("button")).to_have_count(0)
        expect(sessions.get_by_role("button")).to_have_count(0)
        assert page.evaluate(FITS)
        assert_clean(pages, page)


# -- audit ---------------------------------------------------------------------------------


def test_audit_log_filters_pages_and_exports_csv_and_json(
    daemon: SubprocessDaemon, clients: ExitStack, pages: Pages, shots: Screenshots
) -> None:
    """System > Audit lists audit.query's entries newest first, paged in the server (the
    total from a count); the filters (event, user, result, time range) ask the server for
    the same entries as audit.query over the API; CSV and JSON exports of the applied
    filters download, parse and match those entries, with a formula-like user name
    defused in the CSV."""
    add_user(daemon, "alice")
    root = root_client(clients, daemon)
    wrong = clients.enter_context(sync_client(daemon.url))
    for username, password in (("alice", "not-her-password"), (FORMULA_NAME, "nothing")):
        reply = wrong.call(
            "auth.login_ex",
            {"mechanism": "PASSWORD_PLAIN", "username": username, "password": password},
        )
        assert reply["response_type"] == "AUTH_ERR"
    alice = login_client(clients, daemon, "alice", PASSWORD)
    for _ in range(60):  # audited METHOD_CALL entries of alice's session
        assert alice.call("auth.terminate_session", "no-such-session") is False

    page = open_ui(pages, daemon, timezone_id="UTC")
    log_in(page, "admin", ADMIN_PASSWORD)
    two_factor_screen(page)
    open_system(page, "Audit")
    table = page.get_by_role("table", name="Audit entries")
    total = audit(root, [], count=True)
    assert total > 60
    range_text = page.locator(".pager-range")
    expect(range_text).to_have_text(f"Showing 1–50 of {total}")
    newest = [e["audit_id"] for e in audit(root, [], order_by=["-timestamp"], limit=50)]
    expect(table.locator("tbody tr")).to_have_count(50)
    assert shown_audit_ids(page) == newest
    first_row = table.locator("tbody tr").first
    expect(first_row).to_contain_text("admin")
    screenshot(shots, page, "audit", full_page=False)

    page.get_by_label("Entries per page").select_option("25")
    expect(range_text).to_have_text(f"Showing 1–25 of {total}")
    next_page = page.get_by_role("button", name="Next")
    next_page.click()
    expect(range_text).to_have_text(f"Showing 26–50 of {total}")
    second = [e["audit_id"] for e in audit(root, [], order_by=["-timestamp"], offset=25, limit=25)]
    assert shown_audit_ids(page) == second
    page.get_by_role("button", name="Previous").click()
    expect(range_text).to_have_text(f"Showing 1–25 of {total}")
    assert shown_audit_ids(page) == newest[:25]

    # Event, user and result: the failed password of alice only.
    page.get_by_label("Event").select_option("AUTHENTICATION")
    page.get_by_label("Result").select_option("false")
    page.get_by_label("User", exact=True).fill("alice")
    page.get_by_label("User", exact=True).press("Enter")
    failed = audit(
        root,
        [["event", "=", "AUTHENTICATION"], ["username", "=", "alice"], ["success", "=", False]],
        order_by=["-timestamp"],
    )
    assert len(failed) == 1
    expect(range_text).to_have_text("Showing 1–1 of 1")
    assert shown_audit_ids(page) == [failed[0]["audit_id"]]
    expect(table).to_contain_text("Failed")

    # Exports of the user filter: every entry, not only the page shown.
    page.get_by_label("Event").select_option("")
    page.get_by_label("Result").select_option("")
    page.get_by_role("button", name="Apply").click()
    of_alice = audit(root, [["username", "=", "alice"]], order_by=["-timestamp"])
    assert len(of_alice) > 25
    expect(range_text).to_have_text(f"Showing 1–25 of {len(of_alice)}")
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Export JSON").click()
    download = downloading.value
    assert re.fullmatch(r"middlewared-2fa-audit-\d{8}T\d{6}Z\.json", download.suggested_filename)
    assert json.loads(Path(download.path()).read_text()) == of_alice
    expect(page.get_by_role("status").filter(has_text="Exported")).to_have_text(
        f"Exported {len(of_alice)} entries as JSON."
    )
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Export CSV").click()
    download = downloading.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(
        csv.DictReader(io.StringIO(Path(download.path()).read_bytes().decode(), newline=""))
    )
    assert [r["audit_id"] for r in rows] == [e["audit_id"] for e in of_alice]
    for row, entry in zip(rows, of_alice, strict=True):
        whole, milli = divmod(entry["timestamp"]["$date"], 1000)
        moment = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert row["timestamp"] == f"{moment}.{milli:03d}Z"
        assert row["message_timestamp"] == str(entry["message_timestamp"])
        assert row["username"] == "alice"
        assert row["event"] == entry["event"]
        assert row["success"] == ("true" if entry["success"] else "false")
        assert row["description"] == entry["event_data"]["description"]
        assert row["method"] == entry["event_data"].get("method", "")
        assert row["session"] == (entry["session"] or "")

    # A formula-like user name is written with a leading apostrophe.
    page.get_by_label("User", exact=True).fill(FORMULA_NAME)
    page.get_by_role("button", name="Apply").click()
    expect(range_text).to_have_text("Showing 1–1 of 1")
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Export CSV").click()
    [row] = list(csv.DictReader(io.StringIO(Path(downloading.value.path()).read_bytes().decode())))
    assert row["username"] == "'" + FORMULA_NAME

    # The time range, in the page's time zone (UTC here): To includes its whole minute.
    page.get_by_role("button", name="Clear").click()
    expect(range_text).to_have_text(re.compile(r"^Showing 1–25 of \d+$"))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    page.get_by_label("From", exact=True).fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("To", exact=True).fill(today.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Apply").click()
    expect(field_of(page, "To").locator(".field-error")).to_have_text("Must not be before From.")
    page.get_by_label("To", exact=True).fill("")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No audit entries match these filters.")).to_be_visible()
    expect(range_text).to_have_text("No entries")
    yesterday = today - timedelta(days=1)
    page.get_by_label("From", exact=True).fill(yesterday.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("To", exact=True).fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Apply").click()
    window = [
        ["timestamp", ">=", {"$date": int(yesterday.timestamp() * 1000)}],
        ["timestamp", "<", {"$date": int(tomorrow.timestamp() * 1000) + 60_000}],
    ]
    in_window = audit(root, window, count=True)
    assert in_window == audit(root, [], count=True)
    expect(range_text).to_have_text(f"Showing 1–25 of {in_window}")
    assert shown_audit_ids(page) == [
        e["audit_id"] for e in audit(root, window, order_by=["-timestamp"], limit=25)
    ]
    assert_clean(pages, page)
