"""``system.ntpserver.*`` and ``system.time_sync.*`` models (API.md §6).

Times and offsets are in seconds. ``offset`` follows the ntplib (and RFC 5905 §8) sign:
positive means the local clock is *behind* the NTP server.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator

from middlewared_2fa.schema.common import (
    EntryId,
    Model,
    Out,
    QueryArgs,
)

#: One DNS label of a host name: letters, digits and hyphens, 1..63 characters, no hyphen
#: at either end (RFC 1123 §2.1, RFC 952).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")

#: ``minpoll`` / ``maxpoll`` are log2 seconds: 4 = 16 s .. 17 = 36.4 h (RFC 5905 §7.3,
#: the bounds chrony and TrueNAS accept).
POLL_MIN, POLL_MAX = 4, 17

TimeSyncState = Literal["SYNCED", "SKEWED", "UNREACHABLE", "UNCONFIGURED"]


def check_address(value: str) -> str:
    """Accept an IPv4/IPv6 address or a host name; return it unchanged.

    Host names follow RFC 1123 §2.1: dot-separated labels of letters, digits and hyphens
    (1..63 characters, no hyphen first or last), at most 253 characters, one trailing dot
    allowed. A name whose last label is all digits is refused: it can only be a mistyped
    IPv4 address (RFC 3696 §2).

    Raises:
        ValueError: neither an IP address nor a host name (pydantic reports it at the
            ``address`` attribute).
    """
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return value
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")):
        raise ValueError("must be a host name or an IP address")
    if name.rsplit(".", 1)[-1].isdigit():
        raise ValueError("is neither a valid IP address nor a host name")
    return value


class NtpServerEntry(Out):
    """One configured NTP server."""

    id: int = Field(description="entry id")
    address: str = Field(description="host name or IP address")
    port: int = Field(description="UDP port (123 unless the server listens elsewhere)")
    iburst: bool = Field(description="send a burst of packets at start (chrony/ntpd option)")
    prefer: bool = Field(description="prefer this server over the others (chrony/ntpd option)")
    minpoll: int = Field(description="shortest poll interval, log2 seconds (4..17)")
    maxpoll: int = Field(description="longest poll interval, log2 seconds (4..17)")


class _NtpServerFields(Model):
    address: str = Field(
        "", min_length=1, max_length=253, description="host name (RFC 1123) or IP address"
    )
    port: int = Field(123, ge=1, le=65535, description="UDP port, 1..65535")
    iburst: bool = Field(True, description="send a burst of packets at start")
    prefer: bool = Field(False, description="prefer this server over the others")
    minpoll: int = Field(
        6, ge=POLL_MIN, le=POLL_MAX, description="shortest poll interval, log2 s (4..17)"
    )
    maxpoll: int = Field(
        10, ge=POLL_MIN, le=POLL_MAX, description="longest poll interval, log2 s (4..17)"
    )

    _address = field_validator("address")(classmethod(lambda cls, v: check_address(v)))


class NtpServerCreate(_NtpServerFields):
    """A new server; ``address`` is required, the rest have defaults.

    ``minpoll <= maxpoll`` is checked by the service (attribute ``...maxpoll``).
    """

    address: str = Field(
        min_length=1, max_length=253, description="host name (RFC 1123) or IP address"
    )


class NtpServerUpdate(_NtpServerFields):
    """Partial update: only the keys given change."""


class SystemNtpserverQueryArgs(QueryArgs):
    """``(filters, options)``: see :class:`QueryArgs`."""


class SystemNtpserverQueryResult(Out):
    result: list[NtpServerEntry] | NtpServerEntry | int = Field(
        description="entries, one entry (options.get) or a number (options.count)"
    )


class SystemNtpserverCreateArgs(Model):
    ntp_server_create: NtpServerCreate


class SystemNtpserverCreateResult(Out):
    result: NtpServerEntry = Field(description="the new entry")


class SystemNtpserverUpdateArgs(Model):
    id: EntryId
    ntp_server_update: NtpServerUpdate


class SystemNtpserverUpdateResult(Out):
    result: NtpServerEntry = Field(description="the changed entry")


class SystemNtpserverDeleteArgs(Model):
    id: EntryId


class SystemNtpserverDeleteResult(Out):
    result: bool = Field(description="true")


class TimeSyncServerStatus(Out):
    """What one server answered in the last check."""

    address: str = Field(description="host name or IP address as configured")
    port: int = Field(description="UDP port")
    reachable: bool = Field(
        description="answered with a usable time (not stratum 16, not leap 3, not malformed)"
    )
    offset: float | None = Field(
        description="seconds; positive = local clock behind this server; null when unusable"
    )
    delay: float | None = Field(description="round-trip delay, seconds; null without an answer")
    stratum: int | None = Field(description="server stratum (RFC 5905 §7.3); null without one")
    leap: int | None = Field(description="leap indicator 0..3 (3 = unsynchronized)")
    error: str | None = Field(
        description="why the server is unusable: 'kind: detail' with kind one of timeout, "
        "dns, refused, network, malformed, bogus, unsynchronized, kiss-o'-death, "
        "local clock out of range, internal; null when reachable"
    )


class TimeSyncStatus(Out):
    """Result of the last clock check."""

    state: TimeSyncState = Field(
        description="SYNCED, SKEWED (|offset| > max_offset), UNREACHABLE (no usable "
        "answer) or UNCONFIGURED (no server)"
    )
    offset: float | None = Field(
        description="median offset of the usable servers, seconds; positive = local clock "
        "behind; null when unknown"
    )
    max_offset: float = Field(description="largest tolerated |offset|, seconds")
    checked_at: float = Field(description="Unix time of the check (the daemon's clock), seconds")
    servers: list[TimeSyncServerStatus] = Field(description="one entry per configured server")


class SystemTimeSyncStatusArgs(Model):
    """No parameters."""


class SystemTimeSyncStatusResult(Out):
    result: TimeSyncStatus


class SystemTimeSyncCheckArgs(Model):
    """No parameters."""


class SystemTimeSyncCheckResult(Out):
    result: TimeSyncStatus
