"""The rough edges a new user hit in the web UI (issue 14), each asserted in Debian's chromium:
the clock card without an NTP server, messages (toasts) that covered what they reported on
or followed the user to other screens, the screen heading's focus box after login, the
manual key broken inside a group of four, and the "Two-Factor Authentication" menu item
wrapping on a phone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages, Screenshots
from tests.e2e.test_web_ui import (
    log_in,
    midclt,
    open_settings,
    open_ui,
    start_daemon,
    two_factor_screen,
)
from tests.helpers.daemon import ADMIN_PASSWORD, SubprocessDaemon, short_tempdir

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def daemon() -> Iterator[SubprocessDaemon]:
    base = short_tempdir()
    served = start_daemon(base)
    yield served
    served.stop()
    shutil.rmtree(base, ignore_errors=True)


def _log_in_as_admin(page: Page) -> None:
    log_in(page, "admin", ADMIN_PASSWORD)
    two_factor_screen(page)


def _rects_of_text(page: Page, selector: str) -> list[int]:
    """For each element matching ``selector``: how many line boxes its text takes."""
    counts: list[int] = page.eval_on_selector_all(
        selector,
        """els => els.map(el => {
            const range = document.createRange();
            range.selectNodeContents(el);
            const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
            return tops.size;
        })""",
    )
    return counts


@pytest.mark.parametrize("viewport", [{}, PHONE], ids=["1280", "390"])
def test_clock_card_without_an_ntp_server(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots, viewport: dict[str, int]
) -> None:
    """No NTP server configured (the default): the card says so, and no "Checked at" beside
    it (it used to read "Not checked" next to "Checked at 5:52:00 PM")."""
    assert midclt(daemon, "system.ntpserver.query") == []
    page = open_ui(pages, daemon, **viewport)
    _log_in_as_admin(page)
    open_settings(page, "Advanced Settings")
    card = page.locator(".clock-card")
    expect(card.locator(".badge")).to_have_text("No NTP server")
    expect(card).to_contain_text("No NTP server is configured")
    expect(card).not_to_contain_text("Checked at")
    expect(card).not_to_contain_text("Not checked")
    shots.page(page, "clock-card-unconfigured")


def test_heading_has_no_focus_box_after_login(daemon: SubprocessDaemon, pages: Pages) -> None:
    """After logging in with the keyboard (Enter), the screen heading has the focus (for
    screen readers) but draws no focus box: it is not a control."""
    page = open_ui(pages, daemon)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_label("Password").press("Enter")
    two_factor_screen(page)
    heading = page.get_by_role("heading", name="Two-Factor Authentication", level=1)
    expect(heading).to_be_focused()
    style = heading.evaluate(
        "el => { const s = getComputedStyle(el); return [s.boxShadow, s.outlineStyle]; }"
    )
    assert style == ["none", "none"], style


def test_messages_stay_on_their_screen_and_never_cover_the_control(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """ "Two-factor setup skipped" leaves with its screen; a message about a save, shown at
    the bottom of a phone's screen, does not cover the Save button that was pressed."""
    midclt(daemon, "auth.twofactor.update", {"enabled": True})
    page = open_ui(pages, daemon, **PHONE)
    log_in(page, "admin", ADMIN_PASSWORD)
    prompt = page.get_by_role("dialog")
    prompt.get_by_role("button", name="Skip").click()
    page.get_by_role("dialog").get_by_role("button", name="Skip Setup").click()
    skipped = page.locator(".toast", has_text="Two-factor setup skipped")
    expect(skipped).to_be_visible()
    open_settings(page, "Advanced Settings")
    expect(skipped).to_have_count(0)

    save = page.get_by_role("button", name="Save")
    save.scroll_into_view_if_needed()
    # Put the button at the very bottom of the window, where the message appears.
    save.evaluate("el => window.scrollBy(0, el.getBoundingClientRect().bottom - innerHeight + 4)")
    save.click()
    toast = page.locator(".toast", has_text="settings saved")
    expect(toast).to_be_visible()
    button_box, toast_box = save.bounding_box(), toast.bounding_box()
    assert button_box is not None and toast_box is not None
    assert button_box["y"] + button_box["height"] <= toast_box["y"], (button_box, toast_box)
    shots.page(page, "toast-below-the-control", full_page=False)
    toast.click()  # a click dismisses it
    expect(toast).to_have_count(0)


def test_manual_key_breaks_between_groups_and_the_menu_does_not_wrap(
    daemon: SubprocessDaemon, pages: Pages, shots: Screenshots
) -> None:
    """On a 390 px phone: the QR dialog's manual key wraps only between its groups of four
    (each group stays on one line), and "Two-Factor Authentication" in the menu is one line."""
    midclt(daemon, "user.renew_2fa_secret", "admin", {"otp_digits": 8, "interval": 60})
    page = open_ui(pages, daemon, **PHONE)
    _log_in_as_admin(page)
    page.get_by_role("button", name="Show QR").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".secret")).to_be_visible()
    groups = _rects_of_text(page, ".secret .secret-group")
    assert len(groups) >= 8 and set(groups) == {1}, groups
    key = dialog.locator(".secret").inner_text().replace(" ", "").replace("\n", "")
    assert key == midclt(daemon, "user.provisioning_uri", "admin").split("secret=")[1].split("&")[0]
    shots.page(page, "qr-dialog-phone", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    # Every toolbar control of a full administrator (Alerts with its count, Settings,
    # System, the user menu) is inside the 390 px window.
    expect(page.get_by_role("button", name="System")).to_be_visible()
    outside = page.eval_on_selector_all(
        ".toolbar button, .toolbar a",
        "els => els.filter(el => el.getBoundingClientRect().right > innerWidth + 0.5)"
        ".map(el => el.textContent)",
    )
    assert outside == [], outside
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")

    page.get_by_role("button", name="Settings").click()
    item = page.get_by_role("menuitem", name="Two-Factor Authentication")
    expect(item).to_be_visible()
    assert _rects_of_text(page, '.menu-item[href="#/two-factor"]') == [1]
    menu = page.get_by_role("menu").bounding_box()
    assert menu is not None and menu["x"] >= 0 and menu["x"] + menu["width"] <= PHONE["width"]
    shots.page(page, "menu-phone", full_page=False)
