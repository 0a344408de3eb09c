"""The NTP client of ``system.time_sync`` (no service): queries, answer checks and the
summary of several servers that guard two-factor authentication (API.md §6,
docs/time-sync.md).

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

import logging
import math
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import ntplib

from middlewared_2fa.clock import Clock

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
