"""``system.time_sync.*``: the clock check that guards enabling 2FA (API.md §6), its
periodic run and its alerts. The NTP client is :mod:`.ntp`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from middlewared_2fa.api import CallContext, Hook, Service, api_method
from middlewared_2fa.errors import ValidationErrors
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.schema.time_sync import (
    SystemTimeSyncCheckArgs,
    SystemTimeSyncCheckResult,
    SystemTimeSyncStatusArgs,
    SystemTimeSyncStatusResult,
)

from ..alert import AlertService
from ..auth_twofactor import TwoFactorService
from ..auth_twofactor.repository import TwoFactorConfigRow
from .ntp import (
    ALERT_SKEW,
    ALERT_UNVERIFIED,
    NTP_THREADS,
    SKEWED,
    THREAD_GRACE,
    UNCONFIGURED,
    UNREACHABLE,
    CheckResult,
    ServerSample,
    _servers_text,
    describe_offset,
    query_server,
    server_label,
    summarize,
)
from .repository import NtpServerRepository, TimeSyncSettings

logger = logging.getLogger(__name__)


class TimeSyncService(Service):
    """The clock check: periodic, on demand, before 2FA is enabled; alerts and hints.

    It subscribes to the hooks ``auth.twofactor.pre_update`` (the clock gate, first among
    the validations of a 2FA update, API.md §4) and ``auth.clock_hint`` (the hint after a
    wrong code).
    """

    class Config:
        namespace = "system.time_sync"
        settings = TimeSyncSettings
        hooks = (
            Hook("auth.twofactor.pre_update", "_pre_twofactor_update", order=-10),
            Hook("auth.clock_hint", "skew_hint"),
        )

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        self.settings = middleware.settings_of(TimeSyncSettings)
        self.repo = NtpServerRepository(middleware.db)
        self._last: CheckResult | None = None
        self._inflight: asyncio.Task[CheckResult] | None = None
        self._inflight_generation = -1
        self._generation = 0
        self._seq = 0
        self._periodic_task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopped = False

    async def setup(self) -> None:
        self.middleware.events.add_listener(self._on_event)

    async def _pre_twofactor_update(
        self,
        ctx: CallContext,
        errors: ValidationErrors,
        old: TwoFactorConfigRow,
        new: TwoFactorConfigRow,
    ) -> None:
        """Hook: enabling global 2FA (false -> true) first checks the clock."""
        if new.enabled and not old.enabled:
            await self.gate_enable(errors, "auth_twofactor_update.enabled")

    async def start(self) -> None:
        self._periodic_task = self.middleware.spawn(self._periodic(), "time-sync periodic check")

    async def stop(self) -> None:
        self._stopped = True
        tasks = [t for t in (self._periodic_task, self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._executor is not None:
            # Threads still waiting for a server end on their own within ntp_timeout.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- API -------------------------------------------------------------------------

    @api_method(SystemTimeSyncStatusArgs, SystemTimeSyncStatusResult, roles=[])
    async def status(self, ctx: CallContext) -> dict[str, Any]:
        """The last clock check: ``{state, offset, max_offset, checked_at, servers}``.

        ``state`` is SYNCED, SKEWED, UNREACHABLE or UNCONFIGURED; ``offset`` in seconds,
        positive when the local clock is behind (ntplib sign), null when unknown. Waits
        for a check when none has finished since the server list last changed.
        """
        return self._status(await self.latest())

    @api_method(SystemTimeSyncCheckArgs, SystemTimeSyncCheckResult, roles=["SYSTEM_SECURITY_WRITE"])
    async def check(self, ctx: CallContext) -> dict[str, Any]:
        """Check the clock now (all servers in parallel, each bounded by ``ntp_timeout``)
        and return the status, as ``system.time_sync.status``."""
        return self._status(await self.run_check())

    # -- hooks for other services ---------------------------------------------------

    async def gate_enable(self, errors: ValidationErrors, attribute: str) -> None:
        """Before global 2FA goes from disabled to enabled: check the clock now.

        A SKEWED clock adds a validation error on ``attribute`` naming the signed offset
        and the servers. An unverifiable clock (UNREACHABLE, UNCONFIGURED) is allowed;
        the TimeSyncUnverified alert follows from the ``auth.twofactor.config`` event.
        """
        result = await self.run_check()
        if result.state == SKEWED and result.offset is not None:
            errors.add(
                attribute,
                f"the system clock is off by {describe_offset(result.offset)} according "
                f"to {_servers_text(result)}, more than the "
                f"{self.settings.time_sync_max_offset:g} s allowed: one-time "
                "codes would not match. Fix the clock, then enable two-factor "
                "authentication",
            )

    async def skew_hint(self) -> str | None:
        """A short reason for a failed OTP step when the last check found the clock
        SKEWED (no new check: this runs on the login path), else None."""
        last = self._last
        if last is None or last.state != SKEWED or last.offset is None:
            return None
        return f"server clock may be skewed by {describe_offset(last.offset)}"

    def servers_changed(self) -> None:
        """The server list changed: results so far are stale; check again in the
        background so that alerts follow promptly."""
        self._generation += 1
        self._start_check()

    # -- checks ----------------------------------------------------------------------

    async def run_check(self) -> CheckResult:
        """Start a check now and wait for it. Never raises for NTP failures."""
        return await asyncio.shield(self._start_check())

    async def latest(self) -> CheckResult:
        """The last result, or a check's (running or new) when that result is missing
        or older than the server list."""
        last = self._last
        if last is not None and last.generation == self._generation:
            return last
        task = self._inflight
        if task is None or task.done() or self._inflight_generation != self._generation:
            task = self._start_check()
        return await asyncio.shield(task)

    def _start_check(self) -> asyncio.Task[CheckResult]:
        self._seq += 1
        task = self.middleware.spawn(self._do_check(self._seq, self._generation), "time-sync check")
        self._inflight, self._inflight_generation = task, self._generation
        return task

    async def _periodic(self) -> None:
        interval = self.settings.time_sync_interval
        while True:
            try:
                await self.run_check()
            except Exception:
                logger.exception("periodic time-sync check failed")
            await asyncio.sleep(interval)

    async def _do_check(self, seq: int, generation: int) -> CheckResult:
        rows = await self.repo.list()
        samples = list(await asyncio.gather(*(self._query(r.address, r.port) for r in rows)))
        state, offset = summarize(samples, self.settings.time_sync_max_offset)
        result = CheckResult(state, offset, self.middleware.clock.time(), samples, generation, seq)
        enabled = await self._twofactor_enabled()
        # No await from here on: a later-started check that finished first keeps its say.
        if self._last is None or seq > self._last.seq:
            previous, self._last = self._last, result
            self._log_change(previous, result)
            self._update_alerts(result, enabled)
        return result

    async def _query(self, address: str, port: int) -> ServerSample:
        timeout = self.settings.ntp_timeout
        if self._stopped:
            return ServerSample(address, port, error="network: the daemon is stopping")
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                NTP_THREADS, thread_name_prefix="ntp"
            )
        try:
            future = self._executor.submit(
                query_server, address, port, timeout, self.middleware.clock
            )
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout + THREAD_GRACE)
        except TimeoutError:
            return ServerSample(address, port, error=f"timeout: no answer within {timeout:g} s")
        except RuntimeError:  # the pool was shut down: the daemon is stopping
            return ServerSample(address, port, error="network: the daemon is stopping")
        except Exception as exc:  # a bug here must not turn a status call into -32603
            logger.exception("time-sync query of %s:%s failed", address, port)
            return ServerSample(
                address,
                port,
                error=f"internal: unexpected {type(exc).__name__}; the daemon log has details",
            )

    def _status(self, result: CheckResult) -> dict[str, Any]:
        return {
            "state": result.state,
            "offset": result.offset,
            "max_offset": self.settings.time_sync_max_offset,
            "checked_at": result.checked_at,
            "servers": [s.entry() for s in result.servers],
        }

    # -- alerts ----------------------------------------------------------------------

    async def _twofactor_enabled(self) -> bool:
        return (await self.middleware.service(TwoFactorService).get_config()).enabled

    def _on_event(self, name: str, msg: str, entry_id: Any, fields: dict[str, Any]) -> None:
        # Alert levels depend on whether 2FA is enabled: follow its changes at once.
        if name == "auth.twofactor.config" and self._last is not None:
            self._update_alerts(self._last, bool(fields.get("enabled")))

    def _update_alerts(self, result: CheckResult, twofactor_enabled: bool) -> None:
        """TimeSkew while SKEWED (CRITICAL with 2FA enabled, else WARNING);
        TimeSyncUnverified while 2FA is enabled and no server is usable or none is
        configured. Each is cleared when its condition ends."""
        alerts = self.middleware.service(AlertService)
        max_offset = self.settings.time_sync_max_offset
        if result.state == SKEWED and result.offset is not None:
            alerts.raise_alert(
                ALERT_SKEW,
                "CRITICAL" if twofactor_enabled else "WARNING",
                f"The system clock is off by {describe_offset(result.offset)} according to "
                f"{_servers_text(result)}; at most {max_offset:g} s is tolerated. One-time "
                "codes from authenticator apps will not match until the clock is fixed.",
            )
        else:
            alerts.clear_alert(ALERT_SKEW)
        if twofactor_enabled and result.state in (UNREACHABLE, UNCONFIGURED):
            if result.state == UNCONFIGURED:
                why = "no NTP server is configured (system.ntpserver.create)"
            else:
                why = (
                    "no NTP server gave a usable answer ("
                    + "; ".join(
                        f"{server_label(s.address, s.port)}: {s.error}" for s in result.servers[:3]
                    )
                    + ")"
                )
            alerts.raise_alert(
                ALERT_UNVERIFIED,
                "WARNING",
                f"Two-factor authentication is enabled but the system clock cannot be "
                f"verified: {why}.",
            )
        else:
            alerts.clear_alert(ALERT_UNVERIFIED)

    @staticmethod
    def _log_change(previous: CheckResult | None, result: CheckResult) -> None:
        if previous is not None and previous.state == result.state:
            return
        if result.state == SKEWED and result.offset is not None:
            logger.warning(
                "time sync: clock off by %s per %s",
                describe_offset(result.offset),
                _servers_text(result),
            )
        elif result.state == UNREACHABLE:
            logger.warning("time sync: no NTP server gave a usable answer")
        else:
            logger.info("time sync: %s", result.state)
