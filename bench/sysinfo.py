"""What /proc says about a process: resident memory and CPU time (no heavy imports, so the
load generator can read them inside a measuring window)."""

from __future__ import annotations

import os

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """``VmRSS`` of process ``pid`` (/proc/PID/status), KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat), so that a
    benchmark can tell how much of the machine other processes used meanwhile."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


def commit_latency_ms(folder: str, samples: int = 200) -> list[float]:
    """Milliseconds per durable SQLite commit (WAL, ``synchronous=FULL``, one small
    INSERT) in a scratch database in ``folder``: the floor of any call that must write
    before it answers, on this filesystem."""
    import sqlite3
    import time

    path = os.path.join(folder, "commit-probe.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        times: list[float] = []
        for i in range(samples):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass
