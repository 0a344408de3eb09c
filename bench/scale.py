"""Sections ``storm`` (many password + OTP logins at once, real argon2id parameters, next
to bare argon2-cffi on the same core) and ``growth`` (the OTP step, ``user.query`` by name
and ``audit.query`` at growing table sizes). Registered in :data:`bench.main.SECTIONS`;
the method is in bench/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.main import ROOT, Bench, Row, Section, _child_env, _log, _ping_request, run_load
from bench.procs import preexec
from bench.seed import (
    AUDIT_RARE_USER,
    AUDIT_SPACING,
    BENCH_ADMIN,
    BENCH_PASSWORD,
    seed_audit,
    user_name,
)
from bench.stats import fmt, median, percentile, spread
from bench.sysinfo import cpu_seconds

# -- storm --------------------------------------------------------------------------------

#: Logins arriving at once in each run.
STORM_LOGINS = 200
#: Source addresses of the storm's clients: 127.0.0.2 ... 127.0.0.60 (59 "hosts").
STORM_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 61)]
#: Mean pause before a login answered EBUSY is sent again (x0.5..1.5, random).
STORM_RETRY_PAUSE = 1.0
#: Seconds of bare argon2-cffi verifications per ceiling measurement.
CEILING_SECONDS = 3.0


def _ceiling(b: Bench, password_hash: str, threads: int, daemon_pid: int) -> dict[str, Any]:
    """Bare argon2-cffi verifications/s in a process pinned like the server (and the CPU
    the idle daemon used meanwhile)."""
    d0 = cpu_seconds(daemon_pid)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.storm",
            "ceiling",
            "--threads",
            str(threads),
            "--seconds",
            str(CEILING_SECONDS),
        ],
        input=json.dumps({"hash": password_hash, "password": BENCH_PASSWORD}) + "\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=_child_env(),
        preexec_fn=preexec(b.server_cpu),
    )
    result: dict[str, Any] = json.loads(out.stdout)
    result["daemon_cpu"] = (cpu_seconds(daemon_pid) - d0) / result["elapsed"]
    return result


def section_storm(b: Bench) -> Section:
    """200 password + OTP logins at once from 59 source addresses, argon2id at the
    daemon's real parameters, next to bare argon2-cffi verifications of the same hash;
    ``core.ping`` latency of an authenticated client throughout."""
    from middlewared_2fa.config import Settings
    from middlewared_2fa.crypto import hash_password

    plan = b.plan
    section = Section("storm")
    threads = Settings.model_fields["password_verifications"].get_default(call_default_factory=True)
    real_hash = hash_password(BENCH_PASSWORD)
    needed = plan.runs * STORM_LOGINS
    _log(f"storm: seeding {needed} users (one real-parameter argon2id hash), global 2FA on")
    base, users = b.state(
        "storm",
        b.current,
        users=needed,
        with_secrets=True,
        twofactor=True,
        password_hash=real_hash,
    )
    runs: list[dict[str, Any]] = []
    for run in range(plan.runs):
        daemon = b.daemon(base, b.current)
        try:
            _log(f"storm run {run + 1}/{plan.runs}: ceiling ({threads} threads), then the storm")
            ceil = _ceiling(b, real_hash, threads, daemon.pid)
            out = run_load(
                {
                    "mode": "storm",
                    "cpu": b.client_cpu,
                    "url": daemon.url,
                    "pid": daemon.pid,
                    "login": {"username": BENCH_ADMIN, "password": BENCH_PASSWORD},
                    "users": users[run * STORM_LOGINS : (run + 1) * STORM_LOGINS],
                    "password": BENCH_PASSWORD,
                    "addresses": STORM_ADDRESSES,
                    "retry_pause": STORM_RETRY_PAUSE,
                    "ping_gap": 0.005,
                }
            )
            after = _ceiling(b, real_hash, threads, daemon.pid)
        finally:
            daemon.stop()
        out.pop("phase", None)
        # The ceiling brackets the storm: measured just before and just after it.
        both = [ceil, after]
        ceil = {
            "per_s": (ceil["per_s"] + after["per_s"]) / 2,
            "per_cpu_s": (ceil["per_cpu_s"] + after["per_cpu_s"]) / 2,
            "cpu": (ceil["cpu"] + after["cpu"]) / 2,
            "other_cpu": (ceil["other_cpu"] + after["other_cpu"]) / 2,
            "daemon_cpu": (ceil["daemon_cpu"] + after["daemon_cpu"]) / 2,
            "measured": both,
        }
        runs.append({"run": run, "ceiling": ceil, **out})
    section.raw.update(runs=runs, hash=real_hash.split("$")[3], threads=threads)
    rates = [r["logins"] / r["wall_s"] for r in runs]
    ceilings = [r["ceiling"]["per_s"] for r in runs]
    ratios = [x / y for x, y in zip(rates, ceilings, strict=True)]
    # Per CPU second: logins per second of the daemon's CPU over verifications per second
    # of the ceiling process's CPU (robust to other load on the machine).
    cpu_ratios = [
        r["logins"] / r["server_cpu_s"] / r["ceiling"]["per_cpu_s"] if r["server_cpu_s"] else 0.0
        for r in runs
    ]
    ping99 = [percentile(r["ping_ms"], 99) for r in runs]
    failures = sum(r["failure_count"] for r in runs)
    params = real_hash.split("$")[3]
    section.rows += [
        Row(
            f"{STORM_LOGINS} password + OTP logins at once from {len(STORM_ADDRESSES)} "
            f"addresses, argon2id {params}: logins/s",
            fmt(median(rates)),
            f"bare argon2-cffi, {threads} threads, same core: {fmt(median(ceilings))} "
            "verifications/s",
            f"{median(ratios):.2f} (per CPU second {median(cpu_ratios):.2f})",
            ">= 0.8 of bare argon2 (both)",
            min(median(ratios), median(cpu_ratios)) >= 0.8 and failures == 0,
        ),
        Row(
            f"core.ping of an authenticated client during the storm "
            f"({len(STORM_ADDRESSES)} addresses)",
            f"p50 {median([percentile(r['ping_ms'], 50) for r in runs]):.1f} ms, "
            f"p99 {median(ping99):.1f} ms",
            "-",
            "-",
            "p99 < 50 ms",
            median(ping99) < 50,
        ),
    ]
    section.details += [
        "| run | logins | wall s | logins/s | ceiling verif./s (before, after) | ratio | "
        "ratio per CPU second | daemon CPU | ceiling CPU (idle daemon meanwhile) | other "
        "processes (cores, storm / ceiling) | EBUSY answers (retried) | login p50 / p99 s | "
        "pings | ping p50 / p99 / max ms | client CPU | step-boundary retries | failures |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for r, rate, ratio, cpu_ratio in zip(runs, rates, ratios, cpu_ratios, strict=True):
        pm = r["ping_ms"]
        c = r["ceiling"]
        section.details.append(
            f"| {r['run'] + 1} | {r['logins']} | {r['wall_s']:.2f} | {fmt(rate)} | "
            f"{fmt(c['per_s'])} ({', '.join(fmt(m['per_s']) for m in c['measured'])}) | "
            f"{ratio:.2f} | {cpu_ratio:.2f} | {r['server_cpu'] * 100:.0f}% | "
            f"{c['cpu'] * 100:.0f}% ({c['daemon_cpu'] * 100:.0f}%) | "
            f"{r['other_cpu']:.2f} / {c['other_cpu']:.2f} | "
            f"{r['busy']} | {percentile(r['login_ms'], 50) / 1000:.2f} / "
            f"{percentile(r['login_ms'], 99) / 1000:.2f} | {len(pm)} | "
            f"{percentile(pm, 50):.1f} / {percentile(pm, 99):.1f} / "
            f"{max(pm) if pm else float('nan'):.1f} | {r['client_cpu'] * 100:.0f}% | "
            f"{r['boundary_retries']} | {r['failure_count']} |"
        )
    section.details.append(
        f"\nRatio runs min..max {spread(ratios)} (per CPU second {spread(cpu_ratios)}); "
        f"ping p99 runs min..max {spread(ping99)} ms. "
        f"Login latency is from the storm's start to the OTP step's SUCCESS. "
        f"EBUSY answers are retried after {STORM_RETRY_PAUSE} s x0.5..1.5 (random)."
    )
    for r in runs:
        for failure in r["failures"][:1]:
            section.details.append(f"\nFailure: `{failure}`")
    return section


# -- growth -------------------------------------------------------------------------------

GROWTH_USERS = (100, 10_000, 100_000)
GROWTH_AUDIT = (10_000, 100_000, 1_000_000)
#: OTP logins per run and size (distinct users; the smallest size has 100 users).
GROWTH_LOGINS = 20
#: Timed calls per run and size (a quarter of it for the scanning audit filter).
GROWTH_SAMPLES = 100


def _lat(b: Bench, url: str, payload: dict[str, Any], samples: int) -> list[float]:
    out = run_load(
        {
            "mode": "latency",
            "cpu": b.client_cpu,
            "url": url,
            "login": {"username": BENCH_ADMIN, "password": BENCH_PASSWORD},
            "payload": payload,
            "warmup": 5,
            "samples": samples,
        }
    )
    ms: list[float] = out["ms"]
    return ms


def section_growth(b: Bench) -> Section:
    """The OTP step and ``user.query`` by name at 100, 10^4 and 10^5 users;
    ``audit.query`` with a filter at 10^4, 10^5 and 10^6 audit rows."""
    plan = b.plan
    section = Section("growth")
    logins = min(GROWTH_LOGINS, GROWTH_USERS[0] // plan.runs)
    samples: dict[str, dict[int, list[float]]] = {
        "otp": {n: [] for n in GROWTH_USERS},
        "user.query": {n: [] for n in GROWTH_USERS},
        "audit time": {n: [] for n in GROWTH_AUDIT},
        "audit user": {n: [] for n in GROWTH_AUDIT},
    }
    user_states: dict[int, tuple[Any, list[Any]]] = {}
    for n in GROWTH_USERS:
        _log(f"growth: seeding {n:,} users with TOTP secrets, global 2FA on")
        user_states[n] = b.state(
            f"growth-u{n}", b.current, users=n, with_secrets=True, twofactor=True
        )
    audit_states: dict[int, tuple[Any, list[list[Any]]]] = {}
    for n in GROWTH_AUDIT:
        kind = f"growth-a{n}"
        fresh = not (b.tmp / kind / "state").exists()
        base, _ = b.state(kind, b.current, users=10)
        if fresh:
            _log(f"growth: seeding {n:,} audit rows")
            (base / "audit.json").write_text(json.dumps(seed_audit(base, n)))
        first, last = json.loads((base / "audit.json").read_text())
        middle = (first + last) / 2
        # 50 entries (5 s at one every 0.1 s) in the middle of the table: the time index.
        audit_states[n] = (
            base,
            [
                ["message_timestamp", ">=", middle],
                ["message_timestamp", "<", middle + 50 * AUDIT_SPACING],
            ],
        )
    # Every run measures every size back to back (drift hits all sizes alike).
    for run in range(plan.runs):
        for n, (base, users) in user_states.items():
            _log(f"growth run {run + 1}/{plan.runs}: {n:,} users")
            daemon = b.daemon(base, b.current)
            try:
                out = run_load(
                    {
                        "mode": "otp",
                        "cpu": b.client_cpu,
                        "url": daemon.url,
                        "users": users[run * logins : (run + 1) * logins],
                        "password": BENCH_PASSWORD,
                        "rounds": [{"clients": 1, "logins": logins}],
                        "runs": 1,
                        "pings": 1,
                    }
                )
                probe = user_name(n // 2 + 1)
                samples["user.query"][n] += _lat(
                    b,
                    daemon.url,
                    _ping_request("user.query", [[["username", "=", probe]]]),
                    GROWTH_SAMPLES,
                )
            finally:
                daemon.stop()
            for r in out["rounds"]:
                if r["failure_count"]:
                    raise RuntimeError(f"growth: OTP logins failed: {r['failures']}")
                samples["otp"][n] += r["otp_ms"]
        for n, (base, time_filter) in audit_states.items():
            _log(f"growth run {run + 1}/{plan.runs}: {n:,} audit rows")
            daemon = b.daemon(base, b.current)
            try:
                for key, filters, count in (
                    ("audit time", time_filter, GROWTH_SAMPLES),
                    ("audit user", [["username", "=", AUDIT_RARE_USER]], GROWTH_SAMPLES // 4),
                ):
                    payload = _ping_request(
                        "audit.query",
                        [{"services": ["MIDDLEWARE"], "query-filters": filters}],
                    )
                    samples[key][n] += _lat(b, daemon.url, payload, count)
            finally:
                daemon.stop()
    section.raw["samples_ms"] = {k: {str(n): v for n, v in d.items()} for k, d in samples.items()}
    labels = {
        "otp": ("OTP step (auth.login_ex_continue)", "users"),
        "user.query": ('user.query [["username","=",X]]', "users"),
        "audit time": ("audit.query, 5 s time range (50 entries)", "audit rows"),
        "audit user": ('audit.query [["username","=",X]] (1 entry)', "audit rows"),
    }
    for key, (what, unit) in labels.items():
        sizes = sorted(samples[key])
        small, big = sizes[0], sizes[-1]
        p_small = percentile(samples[key][small], 50)
        p_big = percentile(samples[key][big], 50)
        r = p_big / p_small
        section.rows.append(
            Row(
                f"{what} latency p50 at {big:,} {unit}",
                f"{p_big:.2f} ms",
                f"at {small:,} {unit}: {p_small:.2f} ms",
                f"{r:.2f}x",
                "flat: <= 1.5x",
                r <= 1.5,
            )
        )
    section.details += [
        "| measure | size | samples | p50 ms | p90 ms | p99 ms | p50 / smallest size |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, (what, unit) in labels.items():
        base_p50 = percentile(samples[key][min(samples[key])], 50)
        for n in sorted(samples[key]):
            ms = samples[key][n]
            section.details.append(
                f"| {what} | {n:,} {unit} | {len(ms)} | {percentile(ms, 50):.2f} | "
                f"{percentile(ms, 90):.2f} | {percentile(ms, 99):.2f} | "
                f"{percentile(ms, 50) / base_p50:.2f}x |"
            )
    return section
