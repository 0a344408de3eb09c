"""Shared fixtures: a real in-process daemon per test, on loopback, with a frozen clock."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

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
