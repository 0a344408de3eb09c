"""``system.ntpserver.*`` and ``system.time_sync.*`` (API.md §6): the configured NTP
servers (:mod:`.servers`, table in :mod:`.repository`) and the clock check that guards
enabling 2FA, with its alerts (:mod:`.check`). The NTP client (queries, answer checks,
the summary of several servers) is :mod:`.ntp`, whose docstring describes the rules.
"""

from __future__ import annotations

from .check import TimeSyncService
from .servers import NtpServerService

__all__ = ["NtpServerService", "TimeSyncService"]
