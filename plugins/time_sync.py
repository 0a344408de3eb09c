"""``system.ntpserver.*`` and ``system.time_sync.*``: NTP servers and the clock check that
guards two-factor authentication (API.md §6, docs/time-sync.md).

Why: TOTP (RFC 6238 §4.2) compares the daemon's time step with the phone's. A daemon
clock off by more than ``window`` steps refuses every right code, and the user only sees
"wrong code". So the daemon asks the configured NTP servers how far its clock is off,
refuses to *enable* 2FA on a skewed clock, raises alerts, and names clock skew as the
likely cause in the audit entry of a failed OTP step.

Which clock is measured. TOTP uses ``middleware.clock`` (the operating system's clock in
production, a :class:`~middlewared_2fa.clock.FrozenClock` in tests). ntplib stamps its
request and the answer's arrival with ``time.time()`` (RFC 5905 §8: T1 and T4), so the
offset it computes is that of the *system* clock. We report the offset of the *TOTP*
clock instead: ``offset = ntplib_offset - (clock - system clock)``, the difference read
just before and after the request. In production the difference is zero and the value
is ntplib's own; under libfaketime both clocks are shifted alike, so the same holds; with
an injected clock the check measures the clock that codes are really checked against.

Server answers (RFC 5905): a server is usable when it answers in time with a well-formed
server-mode packet (§7.3, mode 4) that echoes our transmit timestamp (§8, bogus check),
is synchronised (stratum 1..15, leap indicator not 3, §7.3) and is not a kiss-o'-death
(stratum 0, §7.4). Each server is asked again every ``RETRANSMIT_INTERVAL`` seconds until
it answers or ``ntp_timeout`` is spent, so one lost request (or one sent while the server
was still starting) does not make it unreachable until the next periodic check. The state
uses the median offset of the usable servers. No failure of a server (timeout, DNS,
malformed answer, local clock outside NTP era 0) raises: each becomes an ``error`` text in
the server's status entry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import ntplib

from middlewared_2fa.api import CallContext, Service, api_method
from middlewared_2fa.clock import Clock
from middlewared_2fa.datastore.repositories import NtpServerRow
from middlewared_2fa.errors import ENOENT, CallError, ValidationErrors
from middlewared_2fa.filters import filter_list
from middlewared_2fa.schema.common import QueryOptions
from middlewared_2fa.schema.time_sync import (
    NtpServerCreate,
    NtpServerUpdate,
    SystemNtpserverCreateArgs,
    SystemNtpserverCreateResult,
    SystemNtpserverDeleteArgs,
    SystemNtpserverDeleteResult,
    SystemNtpserverQueryArgs,
    SystemNtpserverQueryResult,
    SystemNtpserverUpdateArgs,
    SystemNtpserverUpdateResult,
    SystemTimeSyncCheckArgs,
    SystemTimeSyncCheckResult,
    SystemTimeSyncStatusArgs,
    SystemTimeSyncStatusResult,
)

logger = logging.getLogger(__name__)

SYNCED, SKEWED, UNREACHABLE, UNCONFIGURED = "SYNCED", "SKEWED", "UNREACHABLE", "UNCONFIGURED"

#: Alert classes (API.md §7 ``alert.list``).
ALERT_SKEW = "TimeSkew"
ALERT_UNVERIFIED = "TimeSyncUnverified"

#: NTP version we send (RFC 5905).
NTP_VERSION = 4
#: NTP era 0 in Unix seconds: 1900-01-01 .. 2036-02-07T06:28:16Z. ntplib cannot encode
#: a transmit timestamp outside it (RFC 5905 §6 eras), and we refuse to guess an era.
NTP_ERA0_START = -ntplib.NTP.NTP_DELTA
NTP_ERA0_END = 2**32 - ntplib.NTP.NTP_DELTA
#: RFC 5905 §7.2 MAXDISP: a server whose root distance exceeds it is unfit (§A.5.5.2).
MAX_DISTANCE = 16.0
#: Slack for the thread running the query before the check gives up on it, seconds.
THREAD_GRACE = 1.0
#: Seconds to wait for an answer before the request is sent again (within ``ntp_timeout``).
RETRANSMIT_INTERVAL = 0.5
#: Allowed error when comparing the echoed origin timestamp with our send time, seconds.
ORIGIN_SLACK = 0.001
#: Queries running at once, daemon-wide. A separate pool, so a resolver that hangs in
#: getaddrinfo (which no timeout bounds) cannot take the default executor's few threads
#: away from password hashing.
NTP_THREADS = 16


# -- one server ----------------------------------------------------------------------


@dataclass(slots=True)
class ServerSample:
    """Outcome of querying one server (one ``servers[i]`` of the status).

    Attributes:
        address, port: As configured.
        reachable: A usable answer (see the module docstring).
        offset: Seconds, positive = TOTP clock behind the server; None unless reachable.
        delay: Round-trip delay in seconds (RFC 5905 §8, never below 0); None without
            an answer.
        stratum, leap: From the answer (RFC 5905 §7.3); None without an answer.
        error: ``"kind: detail"`` when not reachable, else None.
    """

    address: str
    port: int
    reachable: bool = False
    offset: float | None = None
    delay: float | None = None
    stratum: int | None = None
    leap: int | None = None
    error: str | None = None

    def entry(self) -> dict[str, Any]:
        """The ``servers[i]`` object of ``system.time_sync.status``."""
        return {
            "address": self.address,
            "port": self.port,
            "reachable": self.reachable,
            "offset": self.offset,
            "delay": self.delay,
            "stratum": self.stratum,
            "leap": self.leap,
            "error": self.error,
        }


def server_label(address: str, port: int) -> str:
    """``host``, ``host:port`` (port not 123) or ``[v6]:port``, for messages."""
    if port == 123:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _out_of_era(unix_time: float) -> bool:
    return not NTP_ERA0_START <= unix_time < NTP_ERA0_END


def _answer_error(stats: ntplib.NTPStats, sent_from: float, sent_until: float) -> str | None:
    """Why an answer is unusable (RFC 5905 §7.3, §7.4, §8), or None when it is fine.

    Args:
        stats: The decoded answer.
        sent_from, sent_until: System time read before and after the exchange; our
            transmit timestamp lies between them and the server must echo it back as
            the origin timestamp.
    """
    if stats.mode != 4:
        return f"malformed: mode {stats.mode} is not a server answer (RFC 5905 §7.3)"
    if stats.stratum == 0:
        code = stats.ref_id.to_bytes(4, "big").decode("ascii", "replace").strip("\0")
        return f"kiss-o'-death: the server sent {code!r} (RFC 5905 §7.4)"
    if stats.stratum >= 16:
        return f"unsynchronized: the server reports stratum {stats.stratum}"
    if stats.leap == 3:
        return "unsynchronized: the server reports leap indicator 3 (clock not synchronized)"
    if stats.tx_timestamp == 0:
        return "malformed: no transmit timestamp"
    if not sent_from - ORIGIN_SLACK <= stats.orig_time <= sent_until + ORIGIN_SLACK:
        return "bogus: the answer does not echo our request's timestamp (RFC 5905 §8)"
    distance = stats.root_delay / 2 + stats.root_dispersion
    if distance > MAX_DISTANCE:
        return f"unsynchronized: root distance {distance:.1f} s exceeds {MAX_DISTANCE:g} s"
    if not (math.isfinite(stats.offset) and math.isfinite(stats.delay)):
        return "malformed: timestamps out of range"
    return None


def query_server(address: str, port: int, timeout: float, clock: Clock) -> ServerSample:
    """Ask one server for the time with ntplib. Blocking: run it in a thread.

    Args:
        address: Host name or IP address.
        port: UDP port.
        timeout: Seconds for name resolution and the exchange together.
        clock: The TOTP clock; the offset is measured against it (module docstring).
            Must be safe to read from another thread (both clocks of
            ``middlewared_2fa.clock`` are).

    Returns:
        A sample; never raises for network, DNS or protocol failures.
    """
    sample = ServerSample(address, port)
    deadline = time.monotonic() + timeout
    if _out_of_era(time.time()) or _out_of_era(clock.time()):
        sample.error = (
            "local clock out of range: NTP era 0 ends on 2036-02-07 and ntplib cannot "
            "encode later times (RFC 5905 §6)"
        )
        return sample
    if address.rstrip(".").lower().endswith(".invalid"):
        # RFC 6761 §6.4: such names never resolve, and resolvers should not be asked.
        sample.error = f"dns: {address!r} is a reserved name that never resolves (RFC 6761)"
        return sample
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:  # ntplib does not wrap these
        sample.error = f"dns: cannot resolve {address!r} ({exc})"
        return sample
    host = str(infos[0][4][0])
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        sample.error = f"timeout: no answer within {timeout:g} s (name resolution was slow)"
        return sample
    while True:
        # Retransmit, as NTP clients do (RFC 5905's "iburst"): a request can be lost, or
        # reach a server that is still starting (a datagram to a port nobody has bound yet
        # vanishes without any error). One unanswered request must not leave the state
        # UNREACHABLE until the next periodic check. Each attempt is a new exchange on a
        # new socket, so the origin check below always matches the attempt that answered;
        # the last attempt waits for all that is left of ``timeout``.
        wait = remaining if remaining <= 2 * RETRANSMIT_INTERVAL else RETRANSMIT_INTERVAL
        try:
            system_before, clock_before = time.time(), clock.time()
            stats = ntplib.NTPClient().request(host, version=NTP_VERSION, port=port, timeout=wait)
            system_after, clock_after = time.time(), clock.time()
            break
        except ntplib.NTPException as exc:
            text = str(exc)
            if text.startswith("No response"):
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    continue
                sample.error = f"timeout: no answer within {timeout:g} s"
            elif "fields" in text:  # our own request could not be encoded
                sample.error = "local clock out of range: cannot encode an NTP timestamp"
            else:
                sample.error = "malformed: the answer is not a valid NTP packet (RFC 5905 §7.3)"
            return sample
        except ConnectionRefusedError:
            sample.error = "refused: the server's port is closed"
            return sample
        except TimeoutError:
            sample.error = f"timeout: no answer within {timeout:g} s"
            return sample
        except OSError as exc:
            sample.error = f"network: {exc.strerror or type(exc).__name__}"
            return sample
        except Exception as exc:  # a bug in the library must not become -32603
            logger.debug("NTP query of %s:%s failed", address, port, exc_info=True)
            sample.error = f"malformed: the answer could not be decoded ({type(exc).__name__})"
            return sample
    sample.stratum, sample.leap = int(stats.stratum), int(stats.leap)
    if math.isfinite(stats.delay):
        sample.delay = max(float(stats.delay), 0.0)
    sample.error = _answer_error(stats, system_before, system_after)
    if sample.error is None:
        clock_minus_system = ((clock_before - system_before) + (clock_after - system_after)) / 2
        sample.offset = float(stats.offset) - clock_minus_system
        sample.reachable = True
    return sample


# -- a whole check -------------------------------------------------------------------


@dataclass(slots=True)
class CheckResult:
    """One check of every configured server.

    Attributes:
        state: SYNCED, SKEWED, UNREACHABLE or UNCONFIGURED.
        offset: Median offset of the usable servers, seconds (positive = local clock
            behind); None when no server was usable.
        checked_at: Unix time (the TOTP clock) when the check finished.
        servers: One sample per configured server, in id order.
        generation: Server configuration the check ran against (see ``servers_changed``).
        seq: Start order of checks; a later-started check's result wins.
    """

    state: str
    offset: float | None
    checked_at: float
    servers: list[ServerSample] = field(default_factory=list)
    generation: int = 0
    seq: int = 0


def summarize(samples: list[ServerSample], max_offset: float) -> tuple[str, float | None]:
    """State and median offset of ``samples`` (API.md §6).

    Returns:
        ``(UNCONFIGURED, None)`` without samples, ``(UNREACHABLE, None)`` when none is
        usable, else ``(SKEWED or SYNCED, median)`` with SKEWED when
        ``abs(median) > max_offset``.
    """
    if not samples:
        return UNCONFIGURED, None
    offsets = [s.offset for s in samples if s.reachable and s.offset is not None]
    if not offsets:
        return UNREACHABLE, None
    median = float(statistics.median(offsets))
    return (SKEWED if abs(median) > max_offset else SYNCED), median


def describe_offset(offset: float) -> str:
    """``"+90.0 s (local clock behind NTP)"``: the signed offset and what it means."""
    side = "behind" if offset > 0 else "ahead of"
    return f"{offset:+.1f} s (local clock {side} NTP)"


def _servers_text(result: CheckResult) -> str:
    names = [server_label(s.address, s.port) for s in result.servers if s.reachable]
    text = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return ("NTP server " if len(names) == 1 else "NTP servers ") + text


# -- services ------------------------------------------------------------------------


class NtpServerService(Service):
    """The NTP servers the clock check asks (SQLite table ``ntp_servers``)."""

    class Config:
        namespace = "system.ntpserver"

    @staticmethod
    def entry(row: NtpServerRow) -> dict[str, Any]:
        """NtpServerEntry of ``row``."""
        return {
            "id": row.id,
            "address": row.address,
            "port": row.port,
            "iburst": row.iburst,
            "prefer": row.prefer,
            "minpoll": row.minpoll,
            "maxpoll": row.maxpoll,
        }

    async def _validate(
        self, errors: ValidationErrors, root: str, values: dict[str, Any], own_id: int | None
    ) -> None:
        if values["minpoll"] > values["maxpoll"]:
            errors.add(f"{root}.maxpoll", "must be greater than or equal to minpoll")
        for row in await self.middleware.repos.ntp_servers.list():
            if (
                row.id != own_id
                and row.address.rstrip(".").lower() == values["address"].rstrip(".").lower()
                and row.port == values["port"]
            ):
                errors.add(f"{root}.address", "this server (address and port) is already listed")
                break

    def _changed(self) -> None:
        sync: Any = self.middleware.services.get("system.time_sync")
        if sync is not None:
            sync.servers_changed()

    @api_method(
        SystemNtpserverQueryArgs, SystemNtpserverQueryResult, roles=["SYSTEM_SECURITY_READ"]
    )
    async def query(self, ctx: CallContext, filters: list[list[Any]], options: QueryOptions) -> Any:
        """Configured servers: ``[{id, address, port, iburst, prefer, minpoll, maxpoll}]``,
        filtered TrueNAS-style (or one entry with ``get``, or a number with ``count``)."""
        rows = await self.middleware.repos.ntp_servers.list()
        return filter_list([self.entry(r) for r in rows], filters, options)

    @api_method(
        SystemNtpserverCreateArgs,
        SystemNtpserverCreateResult,
        roles=["SYSTEM_SECURITY_WRITE"],
        audit=True,
    )
    async def create(self, ctx: CallContext, ntp_server_create: NtpServerCreate) -> dict[str, Any]:
        """Add a server; the clock is checked again in the background.

        Raises:
            ValidationErrors: ``ntp_server_create.address`` not a host name or IP address,
                or already listed with that port; ``.port`` outside 1..65535;
                ``.minpoll``/``.maxpoll`` outside 4..17 or minpoll > maxpoll.
        """
        values = ntp_server_create.model_dump()
        errors = ValidationErrors()
        await self._validate(errors, "ntp_server_create", values, None)
        errors.check()
        repo = self.middleware.repos.ntp_servers
        row = await repo.get(await repo.create(values))
        assert row is not None
        self._changed()
        return self.entry(row)

    @api_method(
        SystemNtpserverUpdateArgs,
        SystemNtpserverUpdateResult,
        roles=["SYSTEM_SECURITY_WRITE"],
        audit=True,
    )
    async def update(
        self, ctx: CallContext, id: int, ntp_server_update: NtpServerUpdate
    ) -> dict[str, Any]:
        """Change some fields of server ``id``; the clock is checked again in the background.

        Raises:
            CallError: ENOENT when there is no server ``id``.
            ValidationErrors: as for create, on ``ntp_server_update.*``, checked against
                the merged entry.
        """
        repo = self.middleware.repos.ntp_servers
        old = await repo.get(id)
        if old is None:
            raise CallError(f"NTP server id {id} does not exist", ENOENT)
        given = {k: getattr(ntp_server_update, k) for k in ntp_server_update.model_fields_set}
        merged = {**self.entry(old), **given}
        errors = ValidationErrors()
        await self._validate(errors, "ntp_server_update", merged, id)
        errors.check()
        await repo.update(id, given)
        row = await repo.get(id)
        assert row is not None
        self._changed()
        return self.entry(row)

    @api_method(
        SystemNtpserverDeleteArgs,
        SystemNtpserverDeleteResult,
        roles=["SYSTEM_SECURITY_WRITE"],
        audit=True,
    )
    async def delete(self, ctx: CallContext, id: int) -> bool:
        """Remove server ``id``; returns true. Raises CallError ENOENT when there is none."""
        repo = self.middleware.repos.ntp_servers
        if await repo.get(id) is None:
            raise CallError(f"NTP server id {id} does not exist", ENOENT)
        await repo.delete(id)
        self._changed()
        return True


class TimeSyncService(Service):
    """The clock check: periodic, on demand, before 2FA is enabled; alerts and hints.

    The hooks ``gate_enable`` and ``skew_hint`` are called by ``auth.twofactor`` and
    ``auth`` through ``middleware.services.get("system.time_sync")``.
    """

    class Config:
        namespace = "system.time_sync"

    def __init__(self, middleware: Any) -> None:
        super().__init__(middleware)
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
        # The clock gate runs first among the validations of a 2FA update (API.md §4).
        self.middleware.hooks.register(
            "auth.twofactor.pre_update", self._pre_twofactor_update, order=-10
        )

    async def _pre_twofactor_update(
        self, ctx: Any, errors: ValidationErrors, old: Any, new: Any
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
                f"{self.middleware.settings.time_sync_max_offset:g} s allowed: one-time "
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
        interval = self.middleware.settings.time_sync_interval
        while True:
            try:
                await self.run_check()
            except Exception:
                logger.exception("periodic time-sync check failed")
            await asyncio.sleep(interval)

    async def _do_check(self, seq: int, generation: int) -> CheckResult:
        rows = await self.middleware.repos.ntp_servers.list()
        samples = list(await asyncio.gather(*(self._query(r.address, r.port) for r in rows)))
        state, offset = summarize(samples, self.middleware.settings.time_sync_max_offset)
        result = CheckResult(state, offset, self.middleware.clock.time(), samples, generation, seq)
        enabled = await self._twofactor_enabled()
        # No await from here on: a later-started check that finished first keeps its say.
        if self._last is None or seq > self._last.seq:
            previous, self._last = self._last, result
            self._log_change(previous, result)
            self._update_alerts(result, enabled)
        return result

    async def _query(self, address: str, port: int) -> ServerSample:
        timeout = self.middleware.settings.ntp_timeout
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
            "max_offset": self.middleware.settings.time_sync_max_offset,
            "checked_at": result.checked_at,
            "servers": [s.entry() for s in result.servers],
        }

    # -- alerts ----------------------------------------------------------------------

    async def _twofactor_enabled(self) -> bool:
        twofactor: Any = self.middleware.services.get("auth.twofactor")
        return bool(twofactor is not None and (await twofactor.get_config()).enabled)

    def _on_event(self, name: str, msg: str, entry_id: Any, fields: dict[str, Any]) -> None:
        # Alert levels depend on whether 2FA is enabled: follow its changes at once.
        if name == "auth.twofactor.config" and self._last is not None:
            self._update_alerts(self._last, bool(fields.get("enabled")))

    def _update_alerts(self, result: CheckResult, twofactor_enabled: bool) -> None:
        """TimeSkew while SKEWED (CRITICAL with 2FA enabled, else WARNING);
        TimeSyncUnverified while 2FA is enabled and no server is usable or none is
        configured. Each is cleared when its condition ends."""
        alerts: Any = self.middleware.services.get("alert")
        if alerts is None:
            return
        max_offset = self.middleware.settings.time_sync_max_offset
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
