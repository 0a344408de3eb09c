"""NTP servers for tests: a small scriptable responder on a loopback UDP port (RFC 5905
§7.3 packet format), a real chronyd, and libfaketime to shift a daemon's clock.

The responder answers each client request (mode 3) with a server packet (mode 4) whose receive and
transmit timestamps come from ``now() + offset``, and can misbehave on purpose: say
stratum 16 or leap 3, send a kiss-o'-death, truncate the packet, not echo the client's
timestamp, or stay silent. It runs in its own thread, so it answers whether or not the
test's event loop is busy, and works for in-process and subprocess daemons alike.

Example::

    with NtpResponder(now=lambda: clock.time() + 90) as ntp:
        await admin.call("system.ntpserver.create", {"address": ntp.host, "port": ntp.port})
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import ntplib

#: Seconds from 1900-01-01 (NTP epoch, RFC 5905 §6) to 1970-01-01 (Unix epoch).
NTP_UNIX_DELTA = 2208988800
PACKET_SIZE = 48


def to_ntp(unix_time: float) -> bytes:
    """A 64-bit NTP timestamp (32-bit seconds since 1900 modulo 2**32, 32-bit fraction)."""
    seconds = int(unix_time // 1)
    fraction = min(int((unix_time - seconds) * 2**32), 2**32 - 1)
    return struct.pack("!II", (seconds + NTP_UNIX_DELTA) % 2**32, fraction)


class NtpResponder:
    """The server. Attributes may be changed while it runs; the next answer uses them.

    Args:
        now: Unix time source of the server's clock (default ``time.time``).
        offset: Seconds added to ``now()``: the server is that much ahead.
        stratum: 1..15 synchronised, 16 unsynchronised, 0 kiss-o'-death.
        leap: Leap indicator 0..3 (3 = clock not synchronised).
        kiss_code: Reference id sent with stratum 0 (e.g. ``"RATE"``, ``"DENY"``).
        truncate: Send only this many bytes of the answer (None: the whole 48).
        silent: Read requests but never answer.
        echo_origin: Copy the client's transmit timestamp into the origin timestamp
            (False sends a wrong one: a "bogus" packet, RFC 5905 §8).

    Attributes:
        host, port: Where it listens (127.0.0.1, a free port).
        requests: Number of requests received so far.
    """

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.time,
        offset: float = 0.0,
        stratum: int = 2,
        leap: int = 0,
        kiss_code: str = "RATE",
        truncate: int | None = None,
        silent: bool = False,
        echo_origin: bool = True,
    ) -> None:
        self.now = now
        self.offset = offset
        self.stratum = stratum
        self.leap = leap
        self.kiss_code = kiss_code
        self.truncate = truncate
        self.silent = silent
        self.echo_origin = echo_origin
        self.requests = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.host, self.port = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ntp-responder", daemon=True)

    def start(self) -> NtpResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> NtpResponder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def answer(self, request: bytes) -> bytes | None:
        """The reply to ``request`` (None: do not answer). RFC 5905 §7.3 layout:
        LI|VN|Mode, stratum, poll, precision, root delay, root dispersion, reference id,
        reference, origin, receive and transmit timestamps."""
        if len(request) < PACKET_SIZE or request[0] & 0x7 != 3:
            return None
        received = to_ntp(self.now() + self.offset)
        version = (request[0] >> 3) & 0x7
        if self.stratum == 0:
            ref_id = self.kiss_code.encode("ascii")[:4].ljust(4, b"\0")
        else:
            ref_id = b"LOCL" if self.stratum == 1 else b"\x7f\x00\x00\x01"
        origin = request[40:48] if self.echo_origin else to_ntp(12345.0)
        header = struct.pack(
            "!BBbbII4s",
            (self.leap & 0x3) << 6 | version << 3 | 4,
            self.stratum,
            6,  # poll: 64 s
            -20,  # precision: about 1 microsecond
            0,  # root delay
            0x00000100,  # root dispersion: 1/256 s
            ref_id,
        )
        reference = to_ntp(self.now() + self.offset - 10)
        packet = header + reference + origin + received + to_ntp(self.now() + self.offset)
        return packet[: self.truncate] if self.truncate is not None else packet

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            self.requests += 1
            if self.silent:
                continue
            reply = self.answer(request)
            if reply is not None:
                try:
                    self._sock.sendto(reply, peer)
                except OSError:
                    pass


# -- chrony: a real NTP server -----------------------------------------------------------

CHRONYD = shutil.which("chronyd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def chrony_unavailable() -> str | None:
    """Why chronyd cannot serve here (None when it can): it must be installed (Debian
    package chrony, see scripts/test) and refuses to start unless run as root."""
    if CHRONYD is None:
        return "chronyd is not installed (Debian package chrony)"
    if os.geteuid() != 0:
        return "chronyd starts only as root"
    return None


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def chrony_server(
    *, stratum: int = 8, timeout: float = 30, port: int | None = None
) -> Iterator[tuple[str, int]]:
    """chronyd serving its own clock as ``stratum`` on 127.0.0.1 ``port`` (default: a free
    one); yields ``(host, port)`` once it answers.

    ``local stratum N`` with no upstream sources makes chronyd serve the system clock;
    ``-x`` keeps it from ever adjusting that clock; ``-d`` keeps it in the foreground;
    ``cmdport 0`` opens no control socket; pid and drift files stay in a temp folder.

    Raises:
        RuntimeError: chronyd exited or did not answer within ``timeout`` seconds (the
            message carries its output).
    """
    assert CHRONYD is not None, chrony_unavailable()
    folder = Path(tempfile.mkdtemp(prefix="chrony-", dir="/tmp"))
    port = free_udp_port() if port is None else port
    conf = folder / "chrony.conf"
    conf.write_text(
        f"local stratum {stratum}\n"
        f"port {port}\n"
        "bindaddress 127.0.0.1\n"
        "allow 127.0.0.1\n"
        "cmdport 0\n"
        f"pidfile {folder / 'chronyd.pid'}\n"
        f"driftfile {folder / 'chrony.drift'}\n"
    )
    log = folder / "chronyd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [CHRONYD, "-x", "-d", "-u", "root", "-f", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"chronyd exited: {log.read_text()[-2000:]}")
            try:
                stats = ntplib.NTPClient().request("127.0.0.1", version=4, port=port, timeout=0.5)
                if stats.stratum == stratum and stats.leap != 3:
                    break
            except ntplib.NTPException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"chronyd did not answer: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


# -- libfaketime: a shifted clock for a daemon process ----------------------------------


def faketime_library() -> str | None:
    """Path of the multi-threaded libfaketime (Debian package libfaketime), or None."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


def faketime_file_env(control: Path) -> dict[str, str]:
    """Environment that runs a process under libfaketime with the shift read from
    ``control`` (e.g. ``+90s``) at every clock read, so a test can change it live.

    Only the wall clock is shifted (``FAKETIME_DONT_FAKE_MONOTONIC``): a monotonic clock
    that jumps with the file would stall asyncio's timers. libfaketime 0.9.10 then fails
    ``time.sleep`` with EINVAL, which the daemon never calls.
    """
    library = faketime_library()
    assert library is not None, "libfaketime is not installed"
    return {
        "LD_PRELOAD": library,
        "FAKETIME_TIMESTAMP_FILE": str(control),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
