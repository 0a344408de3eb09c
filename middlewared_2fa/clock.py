"""Injectable wall clock. TOTP (RFC 6238 §4) is computed from this clock only, so tests
can freeze time instead of sleeping across time steps."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of Unix time."""

    def time(self) -> float:
        """Seconds since the Unix epoch (float, UTC)."""
        ...


class SystemClock:
    """The operating system's clock (``time.time()``)."""

    def time(self) -> float:
        return time.time()


class FrozenClock:
    """A clock that only moves when told to; for tests.

    Args:
        now: Initial Unix time in seconds.
    """

    def __init__(self, now: float) -> None:
        self.now = float(now)

    def time(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        """Jump to ``now`` (seconds)."""
        self.now = float(now)

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        self.now += seconds
