"""``python -m bench``: measure the daemon on this machine, each figure next to a
reference measured in the same run, and write the table to ``bench/results.md``.

Sections (``--only`` picks some):

- ``rpc``: round trips per second of ``core.ping`` next to a bare websockets echo server,
  and of ``auth.twofactor.config`` / ``user.query`` next to ``core.ping``; 1 and 50
  connections.
- ``otp``: latency of the OTP step of the login, 1 and 10 clients, next to ``core.ping``.
- ``memory``: resident memory per idle authenticated connection, next to the echo server.
- ``startup``: start-up to ``listening`` with 10,000 users and ``user.query`` of all of
  them, next to the interpreter's own start-up and to the echo server sending a reply of
  the same size.
- ``peer``: the OTP step next to privacyIDEA 3.14's ``/validate/check`` (a real peer,
  installed and configured by :mod:`bench.privacyidea`), verifications/s and latency.
- ``storm``: 200 password + OTP logins at once at the real argon2id parameters, next to
  bare argon2-cffi verifications on the same core; ``core.ping`` latency meanwhile.
- ``growth``: the OTP step, ``user.query`` by name and ``audit.query`` at growing table
  sizes (:mod:`bench.scale`).
- ``tls``: ``core.ping`` round trips/s over ``wss://`` next to ``ws://`` and next to the
  echo server serving the daemon's certificate with the daemon's TLS context.
- ``apikey``: SCRAM and ``API_KEY_PLAIN`` logins/s next to bare PBKDF2-SHA512 at 500,000
  iterations on the server's core (:mod:`bench.apikey`).

See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import procs
from bench.seed import BENCH_ADMIN, BENCH_PASSWORD, seed_state, user_name
from bench.stats import fmt, median, percentile, spread
from bench.sysinfo import commit_latency_ms

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.md"
ARTIFACTS = ROOT / "artifacts" / "bench"
#: Everything below this line in results.md is hand-written and kept across runs.
KEEP_MARKER = "<!-- everything below this line is kept when scripts/bench rewrites the file -->"


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    runs: int
    warmup: float
    duration: float
    rpc_users: int
    otp_logins_1: int
    otp_logins_10: int
    otp_pings: int
    hold: int
    big_users: int
    query_samples: int
    #: ``peer``: verifications per round, daemon and privacyIDEA, at 1 and 10 clients.
    peer_daemon_1: int
    peer_daemon_10: int
    peer_pi_1: int
    peer_pi_10: int
    peer_warmup: int


FULL = Plan(
    runs=5,
    warmup=0.5,
    duration=2.0,
    rpc_users=300,
    otp_logins_1=200,
    otp_logins_10=400,
    otp_pings=40,
    hold=1000,
    big_users=10_000,
    query_samples=5,
    peer_daemon_1=200,
    peer_daemon_10=600,
    peer_pi_1=100,
    peer_pi_10=200,
    peer_warmup=40,
)
QUICK = Plan(
    runs=3,
    warmup=0.3,
    duration=1.0,
    rpc_users=300,
    otp_logins_1=100,
    otp_logins_10=200,
    otp_pings=20,
    hold=1000,
    big_users=10_000,
    query_samples=3,
    peer_daemon_1=100,
    peer_daemon_10=300,
    peer_pi_1=50,
    peer_pi_10=100,
    peer_warmup=20,
)


@dataclass
class Row:
    """One line of the main table."""

    measure: str
    value: str
    reference: str
    ratio: str
    target: str
    ok: bool | None


@dataclass
class Section:
    """What one section measured: table rows, detail lines and the raw samples."""

    name: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    #: (measure, before, after, change) when a "before" tree was given.
    compare: list[tuple[str, str, str, str]] = field(default_factory=list)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_load(
    job: dict[str, Any],
    on_phase: Callable[[dict[str, Any], subprocess.Popen[str]], None] | None = None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Run one job in a separate load-generator process; returns its result.

    Raises:
        RuntimeError: the load generator failed or ran past ``timeout`` seconds.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.load"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_child_env(),
        preexec_fn=procs.preexec(None),  # pinned by the job itself
    )
    assert proc.stdin is not None and proc.stdout is not None
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        result: dict[str, Any] | None = None
        for line in proc.stdout:
            message = json.loads(line)
            if message.get("phase") == "result":
                result = message
                break
            if on_phase is not None:
                on_phase(message, proc)
        proc.stdin.close()
        proc.wait(30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if result is None or proc.returncode != 0:
        raise RuntimeError(f"load generator failed (exit {proc.returncode}) on {job['mode']}")
    return result


def _ping_request(method: str = "core.ping", params: list[Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        message["params"] = params
    return message


def _verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


# -- what runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One daemon build to measure: the checkout (``tree`` None) or a "before" tree."""

    label: str
    tree: Path | None

    def name(self, what: str) -> str:
        return f"{what} ({self.label})" if self.label else what


@dataclass(frozen=True)
class Bench:
    """What every section gets."""

    plan: Plan
    tmp: Path
    server_cpu: int | None
    client_cpu: int | None
    variants: tuple[Variant, ...]

    @property
    def current(self) -> Variant:
        return self.variants[0]

    @property
    def before(self) -> Variant | None:
        return self.variants[1] if len(self.variants) > 1 else None

    def state(self, kind: str, variant: Variant, **seed: Any) -> tuple[Path, list[Any]]:
        """A seeded folder for ``kind`` and ``variant`` (seeded once per kind, copied
        for the other variants so both measure the same data)."""
        first = self.tmp / kind
        if not (first / "state").exists():
            users = seed_state(first, **seed)
            (first / "users.json").write_text(json.dumps([[u.username, u.secret] for u in users]))
            # Copy before any daemon runs: a daemon changes its state (used OTP steps).
            for other_variant in self.variants[1:]:
                other = self.tmp / f"{kind}-{other_variant.label}"
                shutil.copytree(first / "state", other / "state")
                shutil.copy(first / "users.json", other / "users.json")
        folder = first if variant is self.current else self.tmp / f"{kind}-{variant.label}"
        return folder, json.loads((folder / "users.json").read_text())

    def daemon(self, base: Path, variant: Variant) -> procs.Server:
        return procs.start_daemon(base, cpu=self.server_cpu, tree=variant.tree)


def _change(after: float, before: float, higher_is_better: bool = True) -> str:
    if not before:
        return "-"
    r = after / before
    better = abs(r - 1) > 0.02 and (r > 1) == higher_is_better
    return f"{r:.2f}x" + (" (better)" if better else "")


# -- rpc ----------------------------------------------------------------------------------

RPC_METHODS = ("core.ping", "auth.twofactor.config", "auth.me", "user.query")


def section_rpc(b: Bench) -> Section:
    """Round trips per second, daemon vs echo server and DB-reading methods vs ping."""
    plan = b.plan
    section = Section("rpc")
    _log(f"rpc: seeding {plan.rpc_users} users")
    login = {"username": BENCH_ADMIN, "password": BENCH_PASSWORD}
    probe = user_name(plan.rpc_users // 2)
    payloads = {
        "core.ping": _ping_request(),
        "auth.twofactor.config": _ping_request("auth.twofactor.config"),
        "auth.me": _ping_request("auth.me"),
        "user.query": _ping_request("user.query", [[["username", "=", probe]]]),
    }
    servers: list[procs.Server] = []
    targets: list[dict[str, Any]] = []
    try:
        echo = procs.start_echo(cpu=b.server_cpu)
        servers.append(echo)
        targets.append(
            {"name": "echo", "url": echo.url, "pid": echo.pid, "payload": _ping_request()}
        )
        for variant in b.variants:
            base, _ = b.state("rpc", variant, users=plan.rpc_users, with_secrets=True)
            daemon = b.daemon(base, variant)
            servers.append(daemon)
            for method in RPC_METHODS:
                targets.append(
                    {
                        "name": variant.name(method),
                        "url": daemon.url,
                        "pid": daemon.pid,
                        "payload": payloads[method],
                        "login": login,
                    }
                )
        job = {
            "mode": "throughput",
            "cpu": b.client_cpu,
            "runs": plan.runs,
            "warmup": plan.warmup,
            "duration": plan.duration,
            "depth": 1,
            "conns": [1, 50],
            "targets": targets,
        }
        _log("rpc: measuring round trips (" + ", ".join(t["name"] for t in targets) + ")")
        samples = run_load(job)["samples"]
    finally:
        for server in servers:
            server.stop()
    section.raw["samples"] = samples

    def series(target: str, conns: int, key: str = "rps") -> list[float]:
        return [
            s[key]
            for s in sorted(samples, key=lambda s: s["run"])
            if s["target"] == target and s["conns"] == conns
        ]

    def ratios(a: str, b_: str, conns: int, key: str = "rps") -> list[float]:
        return [x / y for x, y in zip(series(a, conns, key), series(b_, conns, key), strict=True)]

    for conns, goal in ((1, 0.6), (50, 0.4)):
        r = median(ratios("core.ping", "echo", conns))
        section.rows.append(
            Row(
                f"core.ping round trips/s, {conns} connection{'s' if conns > 1 else ''}",
                fmt(median(series("core.ping", conns))),
                f"echo server {fmt(median(series('echo', conns)))}",
                f"{r:.2f}",
                f">= {goal} of echo",
                r >= goal,
            )
        )
    for method, note in (
        ("auth.twofactor.config", "cached in memory"),
        ("auth.me", "reads its user row from SQLite"),
        ("user.query", f"filter on username, {plan.rpc_users + 2} users in SQLite"),
    ):
        for conns in (1, 50):
            r = median(ratios(method, "core.ping", conns))
            section.rows.append(
                Row(
                    f"{method} ({note}) round trips/s, {conns} conn{'s' if conns > 1 else ''}",
                    fmt(median(series(method, conns))),
                    f"core.ping {fmt(median(series('core.ping', conns)))}",
                    f"{r:.2f}",
                    ">= 0.7 of core.ping",
                    r >= 0.7,
                )
            )
    section.details.append(
        "| target | conns | round trips/s (median) | runs min..max | server CPU | "
        "server CPU µs/call | client CPU | other processes (cores) | errors |"
    )
    section.details.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for target in targets:
        name = target["name"]
        for conns in (1, 50):
            errors = sum(
                s["errors"] for s in samples if s["target"] == name and s["conns"] == conns
            )
            section.details.append(
                f"| {name} | {conns} | {fmt(median(series(name, conns)))} | "
                f"{spread(series(name, conns))} | "
                f"{median(series(name, conns, 'server_cpu')) * 100:.0f}% | "
                f"{fmt(median(series(name, conns, 'server_us_per_call')))} | "
                f"{median(series(name, conns, 'client_cpu')) * 100:.0f}% | "
                f"{median(series(name, conns, 'other_cpu')):.2f} | {errors} |"
            )
    if b.before is not None:
        for method in RPC_METHODS:
            old = b.before.name(method)
            for conns in (1, 50):
                cpu_new = median(series(method, conns, "server_us_per_call"))
                cpu_old = median(series(old, conns, "server_us_per_call"))
                section.compare.append(
                    (
                        f"{method} round trips/s, {conns} conn{'s' if conns > 1 else ''} "
                        f"(server CPU µs/call)",
                        f"{fmt(median(series(old, conns)))} ({fmt(cpu_old)})",
                        f"{fmt(median(series(method, conns)))} ({fmt(cpu_new)})",
                        f"{median(ratios(method, old, conns)):.2f}x "
                        f"(CPU/call {cpu_new / cpu_old:.2f}x)",
                    )
                )
    return section


# -- otp ----------------------------------------------------------------------------------


def section_otp(b: Bench) -> Section:
    """Latency of the OTP step with 1 and 10 clients logging in at once."""
    plan = b.plan
    section = Section("otp")
    needed = plan.runs * (plan.otp_logins_1 + plan.otp_logins_10)
    _log(f"otp: seeding {needed} users with TOTP secrets, global 2FA on")
    rounds: dict[str, list[dict[str, Any]]] = {v.label: [] for v in b.variants}
    per_run = plan.otp_logins_1 + plan.otp_logins_10
    for run in range(plan.runs):
        for variant in b.variants:
            base, users = b.state("otp", variant, users=needed, with_secrets=True, twofactor=True)
            _log(
                f"otp run {run + 1}/{plan.runs}{' ' + variant.label if variant.label else ''}: "
                "logging in (password step untimed, OTP step timed)"
            )
            daemon = b.daemon(base, variant)
            try:
                out = run_load(
                    {
                        "mode": "otp",
                        "cpu": b.client_cpu,
                        "url": daemon.url,
                        "users": users[run * per_run : (run + 1) * per_run],
                        "password": BENCH_PASSWORD,
                        "rounds": [
                            {"clients": 1, "logins": plan.otp_logins_1},
                            {"clients": 10, "logins": plan.otp_logins_10},
                        ],
                        "runs": 1,
                        "pings": plan.otp_pings,
                    }
                )
            finally:
                daemon.stop()
            for r in out["rounds"]:
                r["run"] = run
            rounds[variant.label] += out["rounds"]
    commits = commit_latency_ms(str(b.tmp))
    section.raw["rounds"] = rounds
    section.raw["commit_ms"] = commits
    section.details.append(
        "| daemon | clients | OTP p50 ms | OTP p99 ms | OTP max ms | p99 runs min..max | "
        "logins | ping p50 ms | ping p99 ms | step-boundary retries | failures |"
    )
    section.details.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")

    def stats(label: str, clients: int) -> dict[str, Any]:
        mine = [r for r in rounds[label] if r["clients"] == clients]
        p99s = [percentile(r["otp_ms"], 99) for r in mine]
        return {
            "p50": median([percentile(r["otp_ms"], 50) for r in mine]),
            "p99": median(p99s),
            "p99s": p99s,
            "max": median([max(r["otp_ms"]) for r in mine if r["otp_ms"]]),
            "n": sum(len(r["otp_ms"]) for r in mine),
            "ping50": median([percentile(r["ping_ms"], 50) for r in mine]),
            "ping99": median([percentile(r["ping_ms"], 99) for r in mine]),
            "retries": sum(r["boundary_retries"] for r in mine),
            "failures": sum(r["failure_count"] for r in mine),
        }

    for clients, goal in ((1, 5.0), (10, 25.0)):
        st = stats(b.current.label, clients)
        section.rows.append(
            Row(
                f"OTP step (auth.login_ex_continue) latency, {clients} client"
                f"{'s' if clients > 1 else ''} at once",
                f"p50 {st['p50']:.2f} ms, p99 {st['p99']:.2f} ms",
                f"core.ping p50 {st['ping50']:.2f} ms, p99 {st['ping99']:.2f} ms; one durable "
                f"SQLite commit p50 {percentile(commits, 50):.2f} ms, "
                f"p99 {percentile(commits, 99):.2f} ms",
                f"p99 {st['p99'] / st['ping99']:.1f}x ping",
                f"p99 < {goal:g} ms",
                st["p99"] < goal and st["failures"] == 0,
            )
        )
        for variant in b.variants:
            st = stats(variant.label, clients)
            section.details.append(
                f"| {variant.label or 'this checkout'} | {clients} | {st['p50']:.2f} | "
                f"{st['p99']:.2f} | {st['max']:.2f} | {spread(st['p99s'])} | {st['n']} | "
                f"{st['ping50']:.2f} | {st['ping99']:.2f} | {st['retries']} | "
                f"{st['failures']} |"
            )
        if b.before is not None:
            old, new = stats(b.before.label, clients), stats(b.current.label, clients)
            section.compare.append(
                (
                    f"OTP step p50 / p99, {clients} client{'s' if clients > 1 else ''} (ms)",
                    f"{old['p50']:.2f} / {old['p99']:.2f}",
                    f"{new['p50']:.2f} / {new['p99']:.2f}",
                    f"{_change(new['p50'], old['p50'], False)} / "
                    f"{_change(new['p99'], old['p99'], False)}",
                )
            )
    for label, rs in rounds.items():
        for r in rs:
            for failure in r["failures"][:1]:
                section.details.append(f"\nFailure ({label or 'this checkout'}): `{failure}`")
    section.details += [
        "",
        f"One durable SQLite commit on this filesystem ({len(commits)} samples): "
        f"p50 {percentile(commits, 50):.2f} ms, p90 {percentile(commits, 90):.2f} ms, "
        f"p99 {percentile(commits, 99):.2f} ms.",
    ]
    return section


# -- recovery codes ---------------------------------------------------------------------

#: Users per run of the recovery-code section: each set costs ten argon2id digests.
RECOVERY_USERS = 8


def section_recovery(b: Bench) -> Section:
    """Recovery codes (API.md §10): making a set and logging in with a code, next to the
    cost of one argon2id digest (the scheme that stores them). This checkout only: a
    "before" tree without the feature has nothing to compare."""
    plan = b.plan
    section = Section("recovery")
    needed = plan.runs * RECOVERY_USERS
    variant = b.current
    base, users = b.state("recovery", variant, users=needed, with_secrets=True, twofactor=True)
    generate: list[float] = []
    otp: list[float] = []
    digests: list[float] = []
    failures = 0
    for run in range(plan.runs):
        _log(f"recovery run {run + 1}/{plan.runs}: {RECOVERY_USERS} sets, then their logins")
        daemon = b.daemon(base, variant)
        try:
            out = run_load(
                {
                    "mode": "recovery",
                    "cpu": b.client_cpu,
                    "url": daemon.url,
                    "admin": {"username": BENCH_ADMIN, "password": BENCH_PASSWORD},
                    "users": [
                        u[0] for u in users[run * RECOVERY_USERS : (run + 1) * RECOVERY_USERS]
                    ],
                    "password": BENCH_PASSWORD,
                    "digests": 10,
                }
            )
        finally:
            daemon.stop()
        generate += out["generate_ms"]
        otp += out["otp_ms"]
        digests += out["digest_ms"]
        failures += out["failure_count"]
    section.raw.update(generate_ms=generate, otp_ms=otp, digest_ms=digests)
    d50, d99 = percentile(digests, 50), percentile(digests, 99)
    g50, g99 = percentile(generate, 50), percentile(generate, 99)
    o50, o99 = percentile(otp, 50), percentile(otp, 99)
    section.rows += [
        Row(
            "user.twofactor_recovery_codes (10 codes, argon2id each)",
            f"p50 {g50:.0f} ms, p99 {g99:.0f} ms",
            f"one argon2id digest p50 {d50:.0f} ms, p99 {d99:.0f} ms",
            f"p50 {g50 / d50:.1f}x one digest",
            "p50 < 12x one digest",
            g50 < 12 * d50 and failures == 0,
        ),
        Row(
            "OTP step with a recovery code (one digest, then a durable write)",
            f"p50 {o50:.0f} ms, p99 {o99:.0f} ms",
            f"one argon2id digest p50 {d50:.0f} ms, p99 {d99:.0f} ms",
            f"p50 {o50 / d50:.1f}x one digest",
            "p50 < 1.5x one digest + 10 ms",
            o50 < 1.5 * d50 + 10 and failures == 0,
        ),
    ]
    section.details += [
        f"{len(generate)} sets and {len(otp)} recovery-code logins over {plan.runs} runs, "
        f"{failures} failures. The daemon and the load generator are pinned to one CPU each "
        "(argon2id's 4 lanes then share one core in both measurements).",
    ]
    return section


# -- peer: the OTP step next to privacyIDEA -----------------------------------------------


def section_peer(b: Bench) -> Section:
    """The daemon's OTP step next to privacyIDEA 3.14's ``/validate/check`` (gunicorn, sync
    workers, SQLite), same users, seeds and client counts, in one run. This checkout only."""
    from bench import privacyidea as pi

    plan = b.plan
    section = Section("peer")
    _log("peer: privacyIDEA venv and instance (made once in artifacts/privacyidea, minutes)")
    users = pi.ensure_instance()
    versions = pi.versions()
    base = b.tmp / "peer"
    _log(f"peer: seeding the daemon with the same {len(users)} users and seeds, global 2FA on")
    seeded = seed_state(
        base, users=len(users), twofactor=True, totp_secrets=[seed for _, seed in users]
    )
    if [u.username for u in seeded] != [name for name, _ in users]:
        raise RuntimeError("the daemon's users are not privacyIDEA's")
    cfg = pi.prepare_run(b.tmp / "peer-privacyidea")
    workers = os.cpu_count() or 1
    _log(f"peer: starting the daemon and gunicorn ({workers} sync workers)")
    daemon = b.daemon(base, b.current)
    peer: pi.Peer | None = None
    try:
        peer = pi.start(cfg, cpu=b.server_cpu, workers=workers)
        _log(
            f"peer: {plan.runs} runs: replay check on both, then OTP steps and "
            "/validate/check calls at 1 and 10 clients, interleaved"
        )
        out = run_load(
            {
                "mode": "peer",
                "cpu": b.client_cpu,
                "users": users,
                "daemon": {"url": daemon.url, "pids": [daemon.pid], "password": BENCH_PASSWORD},
                "peer": {
                    "host": peer.host,
                    "port": peer.port,
                    "pids": peer.pids,
                    "realm": pi.REALM,
                },
                "rounds": [
                    {"clients": 1, "daemon": plan.peer_daemon_1, "peer": plan.peer_pi_1},
                    {"clients": 10, "daemon": plan.peer_daemon_10, "peer": plan.peer_pi_10},
                ],
                "runs": plan.runs,
                "warmup": plan.peer_warmup,
            },
            timeout=1800,
        )
    finally:
        daemon.stop()
        if peer is not None:
            peer.stop()
    rounds: list[dict[str, Any]] = out["rounds"]
    replays: list[dict[str, Any]] = out["replays"]
    section.raw.update(rounds=rounds, replays=replays, versions=versions, workers=workers)
    accepted = [r for r in replays if not r["refused"]]
    if accepted:
        raise RuntimeError(f"a replayed code was accepted: {accepted}")

    def mine(server: str, clients: int) -> list[dict[str, Any]]:
        return sorted(
            (r for r in rounds if r["server"] == server and r["clients"] == clients),
            key=lambda r: r["run"],
        )

    def rate(r: dict[str, Any]) -> float:
        """Verifications/s: clients over the mean verification time (Little's law)."""
        ms = r["ms"]
        return r["clients"] * 1000 * len(ms) / sum(ms) if ms else math.nan

    def wall(r: dict[str, Any]) -> float:
        return float(r["count"] / r["elapsed"])

    def stats(server: str, clients: int) -> dict[str, Any]:
        rs = mine(server, clients)
        return {
            "rate": median([rate(r) for r in rs]),
            "rates": [rate(r) for r in rs],
            "wall": median([wall(r) for r in rs]),
            "p50": median([percentile(r["ms"], 50) for r in rs]),
            "p99": median([percentile(r["ms"], 99) for r in rs]),
            "max": median([max(r["ms"]) for r in rs if r["ms"]]),
            "n": sum(r["count"] for r in rs),
            "server_cpu": median([r["server_cpu"] for r in rs]),
            "cpu_ms": median([r["server_cpu_s"] * 1000 / max(1, r["count"]) for r in rs]),
            "client_cpu": median([r["client_cpu"] for r in rs]),
            "other_cpu": median([r["other_cpu"] for r in rs]),
            "connects": sum(r["connects"] for r in rs),
            "connect_ms": [ms for r in rs for ms in r["connect_ms"]],
            "retries": sum(r["boundary_retries"] for r in rs),
            "waits": sum(r["pool_waits"] for r in rs),
            "failures": sum(r["failure_count"] for r in rs),
        }

    def ratios(clients: int, f: Callable[[dict[str, Any]], float]) -> list[float]:
        pairs = zip(mine("daemon", clients), mine("privacyidea", clients), strict=True)
        return [f(d) / f(p) for d, p in pairs]

    name = f"privacyIDEA {versions['privacyIDEA']}"
    for clients in (1, 10):
        d, p = stats("daemon", clients), stats("privacyidea", clients)
        plural = "s" if clients > 1 else ""
        r = median(ratios(clients, rate))
        clean = d["failures"] == 0 and p["failures"] == 0
        section.rows.append(
            Row(
                f"OTP verifications/s, {clients} client{plural}: auth.login_ex_continue vs "
                f"{name} POST /validate/check",
                f"{fmt(d['rate'])}/s",
                f"{name} {fmt(p['rate'])}/s",
                f"{r:.1f}x",
                ">= 20x",
                r >= 20 and clean,
            )
        )
        section.rows.append(
            Row(
                f"OTP verification latency, {clients} client{plural} at once, same users and codes",
                f"p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms",
                f"{name} p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms",
                f"p99 {p['p99'] / d['p99']:.0f}x lower",
                "-",
                None,
            )
        )
    d10, p10 = stats("daemon", 10), stats("privacyidea", 10)
    whole = median(ratios(10, wall))
    section.rows.append(
        Row(
            "Whole 2FA logins/s (password step + OTP step + logout: 3 calls) vs "
            "/validate/check calls/s, 10 clients, wall clock",
            f"{fmt(d10['wall'])}/s",
            f"{name} {fmt(p10['wall'])}/s",
            f"{whole:.1f}x",
            "-",
            None,
        )
    )
    refused = {s: sum(1 for r in replays if r["server"] == s) for s in ("daemon", "privacyidea")}
    section.rows.append(
        Row(
            "A replayed code (same user, same time step) is refused, checked in every run",
            f"refused {refused['daemon']}/{plan.runs}",
            f"{name} refused {refused['privacyidea']}/{plan.runs}",
            "-",
            "refused by both",
            refused["daemon"] == plan.runs and refused["privacyidea"] == plan.runs,
        )
    )
    section.details += [
        f"Peer: {name} (gunicorn {versions['gunicorn']}, {workers} sync workers, Flask "
        f"{versions['Flask']}, Werkzeug {versions['Werkzeug']}, SQLAlchemy "
        f"{versions['SQLAlchemy']}), SQLite database copied for this run next to the daemon's "
        f"state, default SQL audit, no policy, an internal SQL resolver with {len(users)} "
        "users each owning one TOTP token (SHA-1, 6 digits, 30 s, no PIN, so `pass` is the "
        "code alone). The daemon: global 2FA, window 0, the same users and seeds. Both pinned "
        f"to {'CPU ' + str(b.server_cpu) if b.server_cpu is not None else 'no CPU'} "
        "(every gunicorn process), the load generator to "
        f"{'CPU ' + str(b.client_cpu) if b.client_cpu is not None else 'no CPU'}.",
        "",
        "| server | clients | verifications/s (clients / mean time) | runs min..max | "
        "calls completed/s (wall) | p50 ms | p99 ms | max ms | verifications | server CPU | "
        "server CPU ms/verification | client CPU | other processes (cores) | "
        "reconnects | failures |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, label in (("daemon", "daemon"), ("privacyidea", name)):
        for clients in (1, 10):
            st = stats(server, clients)
            section.details.append(
                f"| {label} | {clients} | {fmt(st['rate'])} | {spread(st['rates'])} | "
                f"{fmt(st['wall'])} | {st['p50']:.2f} | {st['p99']:.2f} | {st['max']:.2f} | "
                f"{st['n']} | {st['server_cpu'] * 100:.0f}% | {fmt(st['cpu_ms'])} | "
                f"{st['client_cpu'] * 100:.0f}% | {st['other_cpu']:.2f} | {st['connects']} | "
                f"{st['failures']} |"
            )
    connect_ms = stats("privacyidea", 1)["connect_ms"] + p10["connect_ms"]
    retries = stats("daemon", 1)["retries"] + d10["retries"]
    waits = sum(r["pool_waits"] for r in rounds)
    section.details += [
        "",
        "The daemon's wall-clock figure is whole logins (3 calls each, only the OTP step "
        "timed) and its CPU per verification covers all three; privacyIDEA's is one call. "
        "gunicorn's sync workers close every connection: the client reconnects before the "
        f"next call, outside the timed part (connect p50 {percentile(connect_ms, 50):.2f} ms, "
        f"p99 {percentile(connect_ms, 99):.2f} ms). Daemon codes whose step ended in flight, "
        f"retried: {retries}. Waits for a fresh time step inside a round (no user of the "
        f"pool left for the current one): {waits}.",
        "",
        "Replay check, run 1: daemon `{}`; {} `{}`.".format(
            next(r["replay"] for r in replays if r["server"] == "daemon"),
            name,
            next(r["replay"] for r in replays if r["server"] == "privacyidea"),
        ),
    ]
    for rd in rounds:
        for failure in rd["failures"][:1]:
            section.details.append(f"\nFailure ({rd['server']}, {rd['clients']}): `{failure}`")
    return section


# -- memory -------------------------------------------------------------------------------


def _hold(server: procs.Server, job: dict[str, Any]) -> tuple[int, int]:
    """(baseline RSS, RSS with the connections open) in KiB."""
    seen: dict[str, int] = {}

    def on_phase(message: dict[str, Any], proc: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None
        time.sleep(1.0)  # let the server finish its work (handshakes, logins, keepalive)
        seen[message["phase"]] = server.rss_kib()
        if message["phase"] == "holding" and message["open"] != job["count"]:
            raise RuntimeError(f"opened {message['open']} of {job['count']} connections")
        proc.stdin.write("\n")
        proc.stdin.flush()

    run_load(job, on_phase)
    return seen["baseline"], seen["holding"]


def section_memory(b: Bench) -> Section:
    """Resident memory per idle authenticated connection (and the echo server's)."""
    plan = b.plan
    section = Section("memory")
    login = {"username": BENCH_ADMIN, "password": BENCH_PASSWORD}
    kinds: list[tuple[str, Callable[[], procs.Server], dict[str, str] | None, bool]] = []
    for variant in b.variants:
        base, _ = b.state("rpc", variant, users=plan.rpc_users, with_secrets=True)

        def start(base: Path = base, variant: Variant = variant) -> procs.Server:
            return b.daemon(base, variant)

        kinds.append((variant.name("daemon"), start, login, False))
    base, _ = b.state("rpc", b.current, users=plan.rpc_users, with_secrets=True)
    kinds += [
        (
            "daemon, client offers permessage-deflate",
            lambda: b.daemon(base, b.current),
            login,
            True,
        ),
        ("echo server", lambda: procs.start_echo(cpu=b.server_cpu), None, False),
        (
            "echo server with permessage-deflate",
            lambda: procs.start_echo(cpu=b.server_cpu, compression="deflate"),
            None,
            True,
        ),
    ]
    results: dict[str, list[dict[str, float]]] = {k[0]: [] for k in kinds}
    for run in range(plan.runs):
        for name, start_server, lg, deflate in kinds:
            _log(f"memory run {run + 1}/{plan.runs}: {plan.hold} idle connections to {name}")
            server = start_server()
            try:
                job = {
                    "mode": "hold",
                    "cpu": b.client_cpu,
                    "url": server.url,
                    "login": lg,
                    "count": plan.hold,
                    "deflate": deflate,
                }
                baseline, held = _hold(server, job)
            finally:
                server.stop()
            results[name].append(
                {"baseline": baseline, "held": held, "per_conn": (held - baseline) / plan.hold}
            )
    section.raw["memory"] = results

    def per_conn(name: str) -> float:
        return median([r["per_conn"] for r in results[name]])

    daemon = per_conn("daemon")
    echo = per_conn("echo server")
    section.rows.append(
        Row(
            f"Resident memory per idle authenticated connection ({plan.hold} connections)",
            f"{daemon:.1f} KiB",
            f"echo server {echo:.1f} KiB",
            f"{daemon / echo:.1f}x" if echo > 0 else "-",
            "< 64 KiB",
            daemon < 64,
        )
    )
    section.details.append(
        "| server | baseline RSS MiB | RSS with connections MiB | KiB per connection | "
        "runs min..max |"
    )
    section.details.append("|---|---:|---:|---:|---|")
    for name, *_ in kinds:
        rs = results[name]
        section.details.append(
            f"| {name} | {median([r['baseline'] for r in rs]) / 1024:.1f} | "
            f"{median([r['held'] for r in rs]) / 1024:.1f} | {per_conn(name):.1f} | "
            f"{spread([r['per_conn'] for r in rs])} |"
        )
    if b.before is not None:
        old = per_conn(b.before.name("daemon"))
        section.compare.append(
            (
                "KiB per idle authenticated connection",
                f"{old:.1f}",
                f"{daemon:.1f}",
                _change(daemon, old, False),
            )
        )
    return section


# -- start-up and the large query ---------------------------------------------------------


def section_startup(b: Bench) -> Section:
    """Start-up to listening with many users, and ``user.query`` of all of them."""
    plan = b.plan
    section = Section("startup")
    _log(f"startup: seeding {plan.big_users} users with TOTP secrets")
    login = {"username": BENCH_ADMIN, "password": BENCH_PASSWORD}
    starts: dict[str, list[float]] = {v.label: [] for v in b.variants}
    query_ms: dict[str, list[float]] = {v.label: [] for v in b.variants}
    imports: dict[str, list[float]] = {v.label: [] for v in b.variants}
    small_starts: list[float] = []
    interpreter: list[float] = []
    size = 0
    for run in range(plan.runs):
        _log(f"startup run {run + 1}/{plan.runs}")
        interpreter.append(procs.python_startup(b.server_cpu))
        small, _ = b.state("rpc", b.current, users=plan.rpc_users, with_secrets=True)
        d = b.daemon(small, b.current)
        small_starts.append(d.started_in)
        d.stop()
        for variant in b.variants:
            imports[variant.label].append(
                procs.python_startup(b.server_cpu, "import middlewared_2fa.main", variant.tree)
            )
            base, _ = b.state("big", variant, users=plan.big_users, with_secrets=True)
            d = b.daemon(base, variant)
            starts[variant.label].append(d.started_in)
            try:
                out = run_load(
                    {
                        "mode": "latency",
                        "cpu": b.client_cpu,
                        "url": d.url,
                        "login": login,
                        "payload": _ping_request("user.query"),
                        "warmup": 1 if run == 0 else 0,
                        "samples": plan.query_samples,
                        "count_result": True,
                    }
                )
            finally:
                d.stop()
            if out["count"] != plan.big_users + 2:
                raise RuntimeError(f"user.query returned {out['count']} users")
            query_ms[variant.label] += out["ms"]
            size = out["size"]
    echo = procs.start_echo(cpu=b.server_cpu)
    try:
        ref = run_load(
            {
                "mode": "latency",
                "cpu": b.client_cpu,
                "url": echo.url,
                "payload": f"size:{size}",
                "warmup": 1,
                "samples": plan.runs * plan.query_samples,
            }
        )
    finally:
        echo.stop()
    section.raw.update(
        {
            "start_s": starts,
            "start_small_s": small_starts,
            "interpreter_s": interpreter,
            "imports_s": imports,
            "query_ms": query_ms,
            "echo_same_size_ms": ref["ms"],
            "reply_bytes": size,
        }
    )
    cur = b.current.label
    start = median(starts[cur])
    section.rows.append(
        Row(
            f"Start-up to `listening`, {plan.big_users:,} users in the database",
            f"{start * 1000:.0f} ms",
            f"bare interpreter {median(interpreter) * 1000:.0f} ms; "
            f"imports alone {median(imports[cur]) * 1000:.0f} ms",
            f"{start / median(interpreter):.1f}x",
            "< 1 s",
            start < 1.0,
        )
    )
    q = median(query_ms[cur])
    echo_ms = median(ref["ms"])
    section.rows.append(
        Row(
            f"user.query of all {plan.big_users + 2:,} users ({size / 1e6:.1f} MB reply)",
            f"{q:.0f} ms",
            f"echo server, same-size reply {echo_ms:.1f} ms",
            f"{q / echo_ms:.1f}x",
            "< 200 ms",
            q < 200,
        )
    )
    section.details += [
        "| what | median | runs min..max |",
        "|---|---:|---|",
        f"| start-up, {plan.big_users:,} users (s) | {start:.3f} | {spread(starts[cur])} |",
        f"| start-up, {plan.rpc_users + 2} users (s) | {median(small_starts):.3f} | "
        f"{spread(small_starts)} |",
        f"| `python -c pass` (s) | {median(interpreter):.3f} | {spread(interpreter)} |",
        f"| `python -c 'import middlewared_2fa.main'` (s) | {median(imports[cur]):.3f} | "
        f"{spread(imports[cur])} |",
        f"| user.query, all users (ms) | {q:.1f} | {spread(query_ms[cur])} |",
        f"| echo server, {size:,}-byte reply (ms) | {echo_ms:.1f} | {spread(ref['ms'])} |",
    ]
    if b.before is not None:
        old = b.before.label
        section.compare += [
            (
                f"start-up, {plan.big_users:,} users (ms)",
                f"{median(starts[old]) * 1000:.0f}",
                f"{start * 1000:.0f}",
                _change(start, median(starts[old]), False),
            ),
            (
                f"user.query of all {plan.big_users + 2:,} users (ms)",
                f"{median(query_ms[old]):.0f}",
                f"{q:.0f}",
                _change(q, median(query_ms[old]), False),
            ),
        ]
    return section


def section_storm(b: Bench) -> Section:
    """Logins at once at real argon2id parameters (:mod:`bench.scale`)."""
    from bench.scale import section_storm as storm

    return storm(b)


def section_growth(b: Bench) -> Section:
    """Latency at growing table sizes (:mod:`bench.scale`)."""
    from bench.scale import section_growth as growth

    return growth(b)


# -- tls: wss:// next to ws:// and next to the echo server with the same TLS context ------


def section_tls(b: Bench) -> Section:
    """``core.ping`` round trips/s over ``wss://`` and ``ws://``, daemon and echo server
    (the echo server with the daemon's certificate and ``server_context``)."""
    plan = b.plan
    section = Section("tls")
    login = {"username": BENCH_ADMIN, "password": BENCH_PASSWORD}
    servers: list[procs.Server] = []
    targets: list[dict[str, Any]] = []
    ping = _ping_request()
    try:
        plain_base, _ = b.state("tls-ws", b.current, users=2)
        tls_base, _ = b.state("tls-wss", b.current, users=2)
        daemon_ws = b.daemon(plain_base, b.current)
        servers.append(daemon_ws)
        daemon_wss = procs.start_daemon(
            tls_base, cpu=b.server_cpu, extra_env={"MIDDLEWARED_2FA_TLS": "true"}
        )
        servers.append(daemon_wss)
        if not daemon_wss.url.startswith("wss://"):
            raise RuntimeError(f"the daemon with tls=true listens on {daemon_wss.url}")
        cert = tls_base / "state" / "tls-cert.pem"
        key = tls_base / "state" / "tls-key.pem"
        echo_ws = procs.start_echo(cpu=b.server_cpu)
        servers.append(echo_ws)
        echo_wss = procs.start_echo(cpu=b.server_cpu, tls=(cert, key))
        servers.append(echo_wss)
        for name, server, lg in (
            ("echo ws", echo_ws, None),
            ("echo wss", echo_wss, None),
            ("daemon ws", daemon_ws, login),
            ("daemon wss", daemon_wss, login),
        ):
            targets.append(
                {"name": name, "url": server.url, "pid": server.pid, "payload": ping, "login": lg}
            )
        job = {
            "mode": "throughput",
            "cpu": b.client_cpu,
            "runs": plan.runs,
            "warmup": plan.warmup,
            "duration": plan.duration,
            "depth": 1,
            "conns": [1, 50],
            "targets": targets,
            "tls_ca": str(cert),
        }
        _log("tls: measuring core.ping round trips (" + ", ".join(t["name"] for t in targets) + ")")
        samples = run_load(job)["samples"]
    finally:
        for server in servers:
            server.stop()
    section.raw["samples"] = samples

    def series(target: str, conns: int, key: str = "rps") -> list[float]:
        return [
            s[key]
            for s in sorted(samples, key=lambda s: s["run"])
            if s["target"] == target and s["conns"] == conns
        ]

    def ratios(a: str, b_: str, conns: int) -> list[float]:
        # A window with no reply at all (a stalled reference) gives no ratio.
        pairs = zip(series(a, conns), series(b_, conns), strict=True)
        return [x / y if y else math.nan for x, y in pairs]

    for conns in (1, 50):
        plural = "s" if conns > 1 else ""
        r = median(ratios("daemon wss", "echo wss", conns))
        section.rows.append(
            Row(
                f"core.ping round trips/s over wss://, {conns} connection{plural}",
                fmt(median(series("daemon wss", conns))),
                f"echo server over wss:// {fmt(median(series('echo wss', conns)))}",
                f"{r:.2f}",
                ">= 0.8 of TLS echo",
                r >= 0.8,
            )
        )
        for what in ("daemon", "echo"):
            r = median(ratios(f"{what} wss", f"{what} ws", conns))
            section.rows.append(
                Row(
                    f"{what}: wss:// against ws://, {conns} connection{plural}",
                    fmt(median(series(f"{what} wss", conns))),
                    f"{what} over ws:// {fmt(median(series(f'{what} ws', conns)))}",
                    f"{r:.2f}",
                    "- (the cost of TLS)",
                    None,
                )
            )
    section.details.append(
        "| target | conns | round trips/s (median) | runs min..max | server CPU | "
        "server CPU µs/call | client CPU | other processes (cores) | errors |"
    )
    section.details.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for target in targets:
        name = target["name"]
        for conns in (1, 50):
            errors = sum(
                s["errors"] for s in samples if s["target"] == name and s["conns"] == conns
            )
            section.details.append(
                f"| {name} | {conns} | {fmt(median(series(name, conns)))} | "
                f"{spread(series(name, conns))} | "
                f"{median(series(name, conns, 'server_cpu')) * 100:.0f}% | "
                f"{fmt(median(series(name, conns, 'server_us_per_call')))} | "
                f"{median(series(name, conns, 'client_cpu')) * 100:.0f}% | "
                f"{median(series(name, conns, 'other_cpu')):.2f} | {errors} |"
            )
    return section


# -- apikey: API-key logins next to bare PBKDF2 -------------------------------------------

#: PBKDF2-SHA512 iterations of every API key the daemon makes (plugins/api_key/scram.py).
API_KEY_ITERATIONS = 500_000


def section_apikey(b: Bench) -> Section:
    """SCRAM and API_KEY_PLAIN logins/s, 1 and 2 clients, next to bare PBKDF2-SHA512 at
    500,000 iterations in a process pinned like the server, one thread per client."""
    plan = b.plan
    section = Section("apikey")
    quick = plan.runs < 5
    workers = os.cpu_count() or 1
    counts = {"SCRAM": (100, 200) if quick else (200, 400), "API_KEY_PLAIN": (4, 6)}
    if quick:
        counts["API_KEY_PLAIN"] = (3, 4)
    clients = (1, 2)
    base, _ = b.state("apikey", b.current, users=2)
    daemon = procs.start_daemon(
        base,
        cpu=b.server_cpu,
        extra_env={"MIDDLEWARED_2FA_PASSWORD_VERIFICATIONS": str(workers)},
    )
    try:
        job = {
            "mode": "apikey",
            "cpu": b.client_cpu,
            "url": daemon.url,
            "pids": [daemon.pid],
            "login": {"username": BENCH_ADMIN, "password": BENCH_PASSWORD},
            "runs": plan.runs,
            "rounds": [
                {"mechanism": m, "clients": n, "count": counts[m][i]}
                for m in ("SCRAM", "API_KEY_PLAIN")
                for i, n in enumerate(clients)
            ],
        }
        _log(f"apikey: {plan.runs} runs of SCRAM and API_KEY_PLAIN logins, 1 and 2 clients")
        rounds = run_load(job, timeout=1800)["rounds"]
    finally:
        daemon.stop()
    ceiling: dict[int, list[dict[str, Any]]] = {n: [] for n in clients}
    for run in range(plan.runs):
        for n in clients:
            threads = min(n, workers)
            _log(f"apikey run {run + 1}/{plan.runs}: bare PBKDF2, {threads} thread(s)")
            ceiling[n].append(
                run_load(
                    {
                        "mode": "pbkdf2",
                        "cpu": b.server_cpu,
                        "threads": threads,
                        "count": max(2, counts["API_KEY_PLAIN"][clients.index(n)] // threads),
                        "iterations": API_KEY_ITERATIONS,
                    }
                )
            )
    section.raw.update({"rounds": rounds, "pbkdf2": ceiling, "workers": workers})

    def series(mechanism: str, n: int, key: str = "rate") -> list[float]:
        return [
            r[key]
            for r in sorted(rounds, key=lambda r: r["run"])
            if r["mechanism"] == mechanism and r["clients"] == n
        ]

    def ref(n: int) -> list[float]:
        return [c["rate"] for c in ceiling[n]]

    for mechanism, derivations, goal in (("API_KEY_PLAIN", 1, 0.8), ("SCRAM", 0, 1.0)):
        for n in clients:
            r = median([x / y for x, y in zip(series(mechanism, n), ref(n), strict=True)])
            note = (
                "one PBKDF2 per login on the server"
                if derivations
                else "no PBKDF2 on the server: StoredKey and ServerKey are stored"
            )
            section.rows.append(
                Row(
                    f"{mechanism} logins/s, {n} client{'s' if n > 1 else ''} ({note})",
                    f"{median(series(mechanism, n)):.1f}",
                    f"bare PBKDF2-SHA512 500k, {min(n, workers)} thread(s): {median(ref(n)):.2f}/s",
                    f"{r:.2f}",
                    f">= {goal} of bare PBKDF2",
                    r >= goal,
                )
            )
    section.details.append(
        f"Hashing pool: `password_verifications` = {workers} threads (os.cpu_count()); the "
        "server is pinned to one core, so they share it. PBKDF2 per login on the server: "
        "API_KEY_PLAIN 1 (`scram.derive` in the hashing pool), SCRAM 0."
    )
    section.details.append("")
    section.details.append(
        "| mechanism | clients | logins/s (Little) | runs min..max | logins/s (wall) | "
        "p50 ms | server CPU | server ms/login | client CPU | other processes (cores) |"
    )
    section.details.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for mechanism in ("SCRAM", "API_KEY_PLAIN"):
        for n in clients:
            ms = [
                m
                for r in rounds
                if r["mechanism"] == mechanism and r["clients"] == n
                for m in r["ms"]
            ]
            section.details.append(
                f"| {mechanism} | {n} | {median(series(mechanism, n)):.2f} | "
                f"{spread(series(mechanism, n))} | "
                f"{median(series(mechanism, n, 'wall_rate')):.2f} | "
                f"{percentile(ms, 50):.1f} | "
                f"{median(series(mechanism, n, 'server_cpu')) * 100:.0f}% | "
                f"{median(series(mechanism, n, 'server_ms_per_login')):.1f} | "
                f"{median(series(mechanism, n, 'client_cpu')) * 100:.0f}% | "
                f"{median(series(mechanism, n, 'other_cpu')):.2f} |"
            )
    for n in clients:
        section.details.append(
            f"| bare PBKDF2 (ceiling) | {min(n, workers)} thread(s) | {median(ref(n)):.2f} | "
            f"{spread(ref(n))} | - | "
            f"{percentile([m for c in ceiling[n] for m in c['ms']], 50):.1f} | "
            f"{median([c['cpu'] for c in ceiling[n]]) * 100:.0f}% | - | - | - |"
        )
    return section


SECTIONS: dict[str, Callable[[Bench], Section]] = {
    "rpc": section_rpc,
    "otp": section_otp,
    "recovery": section_recovery,
    "memory": section_memory,
    "startup": section_startup,
    "peer": section_peer,
    "tls": section_tls,
    "apikey": section_apikey,
    "storm": section_storm,
    "growth": section_growth,
}


# -- report -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """Cores, CPU model, memory, kernel and the versions that matter."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cores": str(os.cpu_count()),
        "CPU": model,
        "memory": mem,
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "websockets": version("websockets"),
        "pydantic": f"{version('pydantic')} (core {version('pydantic-core')})",
        "aiosqlite": version("aiosqlite"),
        "SQLite": sqlite3.sqlite_version,
    }


def render(
    sections: list[Section], info: dict[str, str], plan: Plan, args: argparse.Namespace
) -> str:
    """The Markdown report (the part above the keep marker)."""
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    flags = (" --quick" if args.quick else "") + (f" --before {args.before}" if args.before else "")
    lines = [
        "# Benchmark results",
        "",
        f"Measured {now} with `scripts/bench{flags}` "
        f"({plan.runs} runs; medians over the runs; ratios are medians of per-run ratios, "
        "each pair measured back to back). Method: [README.md](README.md).",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        f"| pinning | {args.pin_note} |",
        f"| niceness of servers and load generator | {args.nice} |",
        f"| load average before the run | {args.load_before} |",
        "",
        "| measure | daemon | reference (same run) | ratio | target | met |",
        "|---|---:|---|---:|---|---|",
    ]
    for section in sections:
        for row in section.rows:
            met = "-" if row.ok is None else _verdict(row.ok)
            lines.append(
                f"| {row.measure} | {row.value} | {row.reference} | {row.ratio} | "
                f"{row.target} | {met} |"
            )
    compare = [c for section in sections for c in section.compare]
    if compare:
        lines += [
            "",
            f"### Before/after, same run: `{args.before}` (before) vs this checkout (after)",
            "",
            "| measure | before | after | after/before |",
            "|---|---:|---:|---:|",
            *(f"| {m} | {b} | {a} | {c} |" for m, b, a, c in compare),
        ]
    for section in sections:
        lines += ["", f"### Details: {section.name}", "", *section.details]
    return "\n".join(lines) + "\n"


def write_results(path: Path, text: str) -> None:
    """Replace the generated part of ``path``, keeping what follows the keep marker."""
    kept = ""
    if path.exists():
        old = path.read_text()
        if KEEP_MARKER in old:
            kept = old.split(KEEP_MARKER, 1)[1]
    path.write_text(text + "\n" + KEEP_MARKER + (kept or "\n"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure the daemon next to references measured in the same run; "
        "write bench/results.md (method: bench/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="3 shorter runs (about 2.5 min)")
    parser.add_argument("--runs", type=int, help="repetitions (default 5; 3 with --quick)")
    parser.add_argument(
        "--only", action="append", choices=sorted(SECTIONS), help="run only these sections"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the servers and the load generator (e.g. -5 on a shared "
        "machine; negative values need root)",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="Markdown report (default bench/results.md)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="also write the raw samples here (default artifacts/bench/results-DATE.json)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folders")
    parser.add_argument(
        "--before",
        type=Path,
        help="also measure the code in this folder (with middlewared_2fa/ and plugins/, "
        "e.g. from `git archive REV | tar -x -C DIR`) side by side, as 'before'",
    )
    parser.add_argument(
        "--tmp",
        type=Path,
        default=Path("/tmp"),
        help="where the state folders go (its filesystem's fsync is part of every write)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = Plan(**{**plan.__dict__, "runs": max(1, args.runs)})
    pin = not args.no_pin and procs.pinning_available()
    cpu = (procs.SERVER_CPU, procs.CLIENT_CPU) if pin else (None, None)
    args.pin_note = (
        f"server on CPU {procs.SERVER_CPU}, load generator on CPU {procs.CLIENT_CPU}"
        if pin
        else "none"
    )
    procs.raise_nofile()
    procs.NICE = args.nice
    args.load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    info = machine()
    names = args.only or list(SECTIONS)
    tmp = Path(tempfile.mkdtemp(prefix="m2fa-bench-", dir=args.tmp))
    started = time.perf_counter()
    variants = [Variant("", None)]
    if args.before is not None:
        if not (args.before / "middlewared_2fa").is_dir():
            raise SystemExit(f"{args.before} has no middlewared_2fa/ folder")
        variants.append(Variant("before", args.before.resolve()))
    bench = Bench(plan, tmp, cpu[0], cpu[1], tuple(variants))
    sections: list[Section] = []
    try:
        for name in SECTIONS:
            if name in names:
                sections.append(SECTIONS[name](bench))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    text = render(sections, info, plan, args)
    write_results(args.output, text)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw_path = args.json or ARTIFACTS / f"results-{stamp}.json"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    raw_path.write_text(
        json.dumps(
            {
                "machine": info,
                "plan": plan.__dict__,
                "sections": {s.name: s.raw for s in sections},
                "rows": [r.__dict__ for s in sections for r in s.rows],
            },
            indent=1,
        )
    )
    print(text)
    _log(f"done in {time.perf_counter() - started:.0f} s; wrote {args.output} and {raw_path}")
    return 0
