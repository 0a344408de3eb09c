"""``scripts/bench profile TARGET``: sample the daemon with py-spy while the load
generator drives one method, and print where the daemon's CPU time goes.

TARGET is ``core.ping``, ``auth.twofactor.config``, ``auth.me``, ``user.query`` (filtered, as in the
rpc section), ``user.query-all`` (10,000 users, no filter), ``login`` (password + OTP
logins of distinct users) or ``startup`` (cProfile of a start-up with 10,000 users).

Writes the collapsed stacks (``py-spy --format raw``; load them into speedscope or
flamegraph.pl) and a text summary to ``artifacts/bench/``. Needs the ``bench`` extra
(``pip install -e '.[bench]'``) for py-spy, and ptrace rights on the daemon (root, or
the same user with ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.main import ARTIFACTS, ROOT, _child_env, _log, _ping_request, run_load
from bench.seed import BENCH_ADMIN, BENCH_PASSWORD, seed_state, user_name

TARGETS = (
    "core.ping",
    "auth.twofactor.config",
    "auth.me",
    "user.query",
    "user.query-all",
    "login",
    "startup",
)


def summarize(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    out = [f"{total} samples", "", "self %  function"]
    out += [f"{100 * c / total:5.1f}  {f}" for f, c in self_counts.most_common(top)]
    out += ["", "incl %  function"]
    out += [f"{100 * c / total:5.1f}  {f}" for f, c in incl_counts.most_common(top * 2)]
    return "\n".join(out)


def _pyspy() -> str:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return exe


def _record(pid: int, seconds: float, out: Path) -> None:
    subprocess.run(
        [
            _pyspy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _profile_startup(tmp: Path, users: int) -> str:
    """cProfile of one start-up with ``users`` users, up to ``listening on``."""
    seed_state(tmp, users=users, with_secrets=True)
    out = ARTIFACTS / "profile-startup.pstats"
    env = _child_env()
    env["MIDDLEWARED_2FA_RUNTIME_DIR"] = str(tmp / "run")
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "middlewared_2fa"]
    cmd += ["--port", "0", "--state-dir", str(tmp / "state"), "--runtime-dir", str(tmp / "run")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    proc.terminate()  # a clean stop: cProfile writes the profile on exit
    proc.wait(60)
    buf = io.StringIO()
    pstats.Stats(str(out), stream=buf).sort_stats("cumulative").print_stats(40)
    return buf.getvalue()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench profile")
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling time")
    parser.add_argument("--conns", type=int, default=50, help="connections (throughput)")
    parser.add_argument("--users", type=int, default=300, help="users in the database")
    args = parser.parse_args(argv)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    procs.raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="m2fa-prof-", dir="/tmp"))
    name = args.target.replace(".", "_")
    try:
        if args.target == "startup":
            text = _profile_startup(tmp, max(args.users, 10_000))
            (ARTIFACTS / f"profile-{name}.txt").write_text(text)
            print(text)
            return 0
        login = {"username": BENCH_ADMIN, "password": BENCH_PASSWORD}
        job: dict[str, Any]
        if args.target == "login":
            logins = int(args.seconds * 600) + 200
            users = seed_state(tmp, users=logins, with_secrets=True, twofactor=True)
            daemon = procs.start_daemon(tmp, cpu=None)
            job = {
                "mode": "otp",
                "cpu": None,
                "url": daemon.url,
                "users": [[u.username, u.secret] for u in users],
                "password": BENCH_PASSWORD,
                "rounds": [{"clients": 10, "logins": logins}],
                "runs": 1,
                "pings": 0,
            }
        else:
            users_n = 10_000 if args.target == "user.query-all" else args.users
            seed_state(tmp, users=users_n, with_secrets=True)
            daemon = procs.start_daemon(tmp, cpu=None)
            method = "user.query" if args.target == "user.query-all" else args.target
            params = [[["username", "=", user_name(users_n // 2)]]]
            payload = _ping_request(method, params if args.target == "user.query" else None)
            job = {
                "mode": "throughput",
                "cpu": None,
                "runs": 1,
                "warmup": 1.0,
                "duration": args.seconds + 2,
                "depth": 1,
                "conns": [args.conns],
                "targets": [
                    {
                        "name": args.target,
                        "url": daemon.url,
                        "pid": daemon.pid,
                        "payload": payload,
                        "login": login,
                    }
                ],
            }
        raw = ARTIFACTS / f"profile-{name}.collapsed"
        loader = threading.Thread(target=run_load, args=(job,), daemon=True)
        loader.start()
        try:
            time.sleep(1.5)
            _log(f"sampling the daemon (pid {daemon.pid}) for {args.seconds:g} s")
            _record(daemon.pid, args.seconds, raw)
            loader.join(600)
        finally:
            daemon.stop()
        text = summarize(raw)
        (ARTIFACTS / f"profile-{name}.txt").write_text(text)
        print(text)
        _log(f"wrote {raw} and {raw.with_suffix('.txt')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0
