"""Shared fixtures: a real in-process daemon per test, on loopback, with a frozen clock."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import InProcessDaemon, short_tempdir

#: Default frozen time: the RFC 6238 instant whose 6-digit code is 005924.
T0 = 1234567890


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def daemon(
    clock: FrozenClock, request: pytest.FixtureRequest
) -> AsyncIterator[InProcessDaemon]:
    """A started daemon; settings may be overridden with ``@pytest.mark.settings(...)``."""
    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    base = short_tempdir()
    d = InProcessDaemon(base, clock, overrides)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI (``CI`` set) a skipped test is a failure: CI installs every tool the tests
    need (scripts/test), so a skip there means a missing install step, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run every test: {reason}"
