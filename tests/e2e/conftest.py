"""Browser fixtures for the web UI tests (Playwright driving Debian's chromium, never a
downloaded browser) and the list of screenshots shown at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = "/usr/bin/chromium"
#: The machine has no internet: without the background-networking flags chromium keeps
#: trying (and failing) to reach Google services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = ROOT / "artifacts" / "screenshots"
_SCREENSHOTS = pytest.StashKey[list[Path]]()

#: Recorded in every page before its own scripts run: Content-Security-Policy violations
#: as the browser reports them to the page (the console shows them too).
_CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push(event.violatedDirective + ' ' + (event.blockedURI || 'inline'));
});
"""


def chromium_unavailable() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (Debian package chromium, see scripts/test)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (the project's test extra)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SCREENSHOTS] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """List the screenshots the web UI tests saved, so that CI logs show where they are."""
    paths = config.stash.get(_SCREENSHOTS, [])
    if paths:
        terminalreporter.write_sep("-", f"web UI screenshots ({len(paths)})")
        for path in paths:
            terminalreporter.write_line(str(path))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per module: Playwright's sync API runs an event loop of its
    own, which must be gone before the asyncio tests of other modules start."""
    reason = chromium_unavailable()
    if reason is not None:
        if os.environ.get("CI"):  # CI installs chromium; never count a skip as a pass there
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Console:
    """What a page reported: console errors and warnings (also in ``messages`` with every
    other console message), uncaught exceptions."""

    allow_errors: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        self.messages.append(message.text)
        if message.type == "error":
            self.errors.append(message.text)
        elif message.type == "warning":
            self.warnings.append(message.text)


@dataclass
class Pages:
    """Opens browser pages (each in its own context, as a separate visitor would) and
    checks at the end that none logged an error or broke the Content-Security-Policy."""

    browser: Browser
    opened: list[tuple[Page, Console]] = field(default_factory=list)

    def new(
        self, *, width: int = 1280, height: int = 800, allow_errors: bool = False, **options: Any
    ) -> Page:
        """A page in a new context. ``allow_errors``: console errors are expected (a
        refused connection); CSP violations still fail the test."""
        context = self.browser.new_context(
            **{"viewport": {"width": width, "height": height}, "device_scale_factor": 1, **options}
        )
        context.set_default_timeout(30_000)
        context.add_init_script(_CSP_RECORDER)
        page = context.new_page()
        console = Console(allow_errors=allow_errors)
        page.on("console", console.record)
        page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
        self.opened.append((page, console))
        return page

    def console(self, page: Page) -> Console:
        return next(c for p, c in self.opened if p is page)

    def close(self) -> None:
        problems: list[str] = []
        for page, console in self.opened:
            if not page.is_closed():
                try:
                    problems += [f"CSP: {v}" for v in page.evaluate("window.__cspViolations")]
                except Exception:  # a page that navigated away or crashed: console covers it
                    pass
            texts = console.errors + console.warnings
            problems += [t for t in texts if "Content Security Policy" in t]
            if not console.allow_errors:
                problems += console.errors
            page.context.close()
        assert problems == [], problems


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """A factory of fresh browser pages; fails the test if a page logged an error. When
    the test fails, each open page is saved as a ``...-failure-N.png`` screenshot."""
    opened = Pages(browser)
    yield opened
    if request.node.stash.get(_FAILED, False):
        saver = Screenshots(_test_name(request), request.config.stash[_SCREENSHOTS], 90)
        for number, (page, _console) in enumerate(opened.opened, 1):
            if not page.is_closed():
                try:
                    saver.page(page, f"failure-{number}")
                except Exception:  # a crashed page has nothing to show
                    pass
    opened.close()


@dataclass
class Screenshots:
    """Saves screenshots as ``artifacts/screenshots/<test>-<n>-<label>.png``."""

    test_name: str
    registry: list[Path]
    count: int = 0

    def path(self, label: str) -> Path:
        self.count += 1
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{self.test_name}-{self.count:02d}-{label}.png"
        self.registry.append(path)
        print(f"screenshot: {path}")
        return path

    def page(self, page: Page, label: str, *, full_page: bool = True) -> Path:
        path = self.path(label)
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    """Screenshot saver for this test; the paths are listed in the run's summary."""
    name = _test_name(request)
    for old in SCREENSHOT_DIR.glob(f"{name}-*.png"):
        old.unlink()
    return Screenshots(name, request.config.stash[_SCREENSHOTS])


def _test_name(request: pytest.FixtureRequest) -> str:
    return request.node.name.removeprefix("test_").replace("[", "-").rstrip("]")
