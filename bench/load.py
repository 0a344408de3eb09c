"""The load generator: a separate process (``python -m bench.load``) that reads one JSON
job on stdin, drives a server over loopback with :mod:`bench.rawws` and prints one JSON
result line on stdout (the ``hold`` job also talks in between, see :func:`hold`).

Jobs:

- ``throughput``: round trips per second. Every connection keeps ``depth`` requests in
  flight (1 = strict request/response) and sends the next request from the reply
  callback, so one process drives 50 connections with little CPU per message. For each
  run, every target and connection count is measured back to back (interleaved, so
  drift on a noisy machine hits all of them alike). Each window reports the replies
  counted, the elapsed time, and the CPU time used by the client and by the server.
- ``otp``: logins of distinct users; the password step is not timed, the OTP step
  (``auth.login_ex_continue``) is, from the send to the reply. Then the same clients time
  ``core.ping`` as the reference.
- ``latency``: one request repeated, timed one at a time (``user.query`` of everything,
  and the echo server's reply of the same size as its reference).
- ``hold``: open many authenticated idle connections and keep them open until told to
  close them (resident memory per connection).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.rawws import RawWebSocket, build_frame, connect, dumps, split_url
from bench.sysinfo import cpu_seconds, machine_busy


def _request(method: str, params: list[Any] | None = None, request_id: int = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return dumps(message)


#: errno EBUSY in an error's data: the daemon's password-hashing queue holds at most a
#: few waiting logins per client address (API.md §3), and every benchmark client is
#: 127.0.0.1, so untimed password logins that arrive together are told to come back.
_EBUSY = 16


async def _call(
    ws: RawWebSocket, method: str, params: list[Any] | None = None, *, retry_busy: bool = False
) -> Any:
    """One call; returns the result, raises RuntimeError on an error reply. With
    ``retry_busy`` an EBUSY answer is retried after a short pause (untimed logins)."""
    for attempt in range(1000):
        reply = json.loads(await ws.request(_request(method, params)))
        if "error" not in reply:
            return reply["result"]
        busy = (reply["error"].get("data") or {}).get("error") == _EBUSY
        if not (retry_busy and busy):
            break
        await asyncio.sleep(0.005 * min(attempt + 1, 10))
    raise RuntimeError(f"{method}: {reply['error']}")


async def _open(url: str, login: dict[str, str] | None, **kwargs: Any) -> RawWebSocket:
    host, port, path = split_url(url)
    ws = await connect(host, port, path, **kwargs)
    if login is not None:
        result = await _call(
            ws,
            "auth.login_ex",
            [
                {
                    "mechanism": "PASSWORD_PLAIN",
                    "username": login["username"],
                    "password": login["password"],
                    "login_options": {"user_info": False},
                }
            ],
            retry_busy=True,
        )
        if result["response_type"] != "SUCCESS":
            raise RuntimeError(f"login failed: {result}")
    return ws


async def _open_many(url: str, count: int, login: dict[str, str] | None) -> list[RawWebSocket]:
    sem = asyncio.Semaphore(25)

    async def one() -> RawWebSocket:
        async with sem:
            return await _open(url, login)

    return list(await asyncio.gather(*(one() for _ in range(count))))


# -- throughput ----------------------------------------------------------------------------


@dataclass
class _Blast:
    """Keeps ``depth`` requests in flight on each connection, resending from callbacks."""

    conns: list[RawWebSocket]
    payload: bytes
    depth: int
    running: bool = True
    sent: int = 0
    received: int = 0
    errors: int = 0
    frames: list[bytes] = field(default_factory=list)

    def start(self) -> None:
        for ws in self.conns:
            frame = build_frame(self.payload)
            ws.handler = self._handler(ws, frame)
            for _ in range(self.depth):
                ws.write_frame(frame)
                self.sent += 1

    def _handler(self, ws: RawWebSocket, frame: bytes) -> Any:
        def on_message(payload: bytes | None) -> None:
            self.received += 1
            if payload is not None and b'"error"' in payload:
                self.errors += 1
            if self.running:
                ws.write_frame(frame)
                self.sent += 1

        return on_message

    async def stop(self, timeout: float = 30) -> None:
        """Stop resending and wait (bounded) for the replies still in flight."""
        self.running = False
        for _ in range(int(timeout * 100)):
            if self.received >= self.sent:
                break
            await asyncio.sleep(0.01)  # noqa: ASYNC110 - polling a counter, bounded
        for ws in self.conns:
            ws.handler = None


async def throughput(job: dict[str, Any]) -> dict[str, Any]:
    """Round trips per second for each target and connection count, ``runs`` times."""
    conn_counts: list[int] = job["conns"]
    targets = job["targets"]
    pools: dict[str, list[RawWebSocket]] = {}
    for target in targets:
        pools[target["name"]] = await _open_many(
            target["url"], max(conn_counts), target.get("login")
        )
    samples: list[dict[str, Any]] = []
    for run in range(job["runs"]):
        for target in targets:
            for n in conn_counts:
                blast = _Blast(pools[target["name"]][:n], dumps(target["payload"]), job["depth"])
                blast.start()
                await asyncio.sleep(job["warmup"])
                r0, t0, c0 = blast.received, time.perf_counter(), time.process_time()
                s0, (m0, _) = cpu_seconds(target["pid"]), machine_busy()
                await asyncio.sleep(job["duration"])
                r1, t1, c1 = blast.received, time.perf_counter(), time.process_time()
                s1, (m1, _) = cpu_seconds(target["pid"]), machine_busy()
                await blast.stop()
                elapsed = t1 - t0
                samples.append(
                    {
                        "run": run,
                        "target": target["name"],
                        "conns": n,
                        "rps": (r1 - r0) / elapsed,
                        "client_cpu": (c1 - c0) / elapsed,
                        "server_cpu": (s1 - s0) / elapsed,
                        # CPU of everything else on the machine, in cores: noise indicator.
                        "other_cpu": max(0.0, (m1 - m0) - (s1 - s0) - (c1 - c0)) / elapsed,
                        "server_us_per_call": (s1 - s0) / max(1, r1 - r0) * 1e6,
                        "errors": blast.errors,
                    }
                )
    for pool in pools.values():
        for ws in pool:
            ws.close()
    return {"samples": samples}


# -- OTP step ------------------------------------------------------------------------------


@dataclass
class _OtpRound:
    """One round of logins: ``clients`` connections, each logging in distinct users."""

    users: Any  # iterator of [username, secret]
    password: str
    otp_ms: list[float] = field(default_factory=list)
    ping_ms: list[float] = field(default_factory=list)
    boundary: int = 0
    failures: list[str] = field(default_factory=list)

    async def login(self, ws: RawWebSocket, count: int) -> None:
        import pyotp

        for _ in range(count):
            username, secret = next(self.users)
            first = await _call(
                ws,
                "auth.login_ex",
                [{"mechanism": "PASSWORD_PLAIN", "username": username, "password": self.password}],
                retry_busy=True,
            )
            if first["response_type"] != "OTP_REQUIRED":
                self.failures.append(f"{username}: password step {first}")
                continue
            totp = pyotp.TOTP(secret)
            ok = False
            for _attempt in range(3):
                payload = _request(
                    "auth.login_ex_continue",
                    [{"mechanism": "OTP_TOKEN", "otp_token": totp.at(time.time())}],
                )
                t0 = time.perf_counter()
                raw = await ws.request(payload)
                dt = (time.perf_counter() - t0) * 1000
                reply = json.loads(raw)
                kind = reply.get("result", {}).get("response_type")
                if kind == "SUCCESS":
                    self.otp_ms.append(dt)
                    ok = True
                    break
                if kind == "OTP_REQUIRED":  # the code's time step ended in flight
                    self.boundary += 1
                    continue
                self.failures.append(f"{username}: OTP step {reply}")
                break
            else:
                self.failures.append(f"{username}: OTP step refused 3 times")
            if ok:
                await _call(ws, "auth.logout")

    async def ping(self, ws: RawWebSocket, count: int) -> None:
        for _ in range(count):
            t0 = time.perf_counter()
            await ws.request(_request("core.ping"))
            self.ping_ms.append((time.perf_counter() - t0) * 1000)


async def otp(job: dict[str, Any]) -> dict[str, Any]:
    """Time the OTP step of logins of distinct users, then ``core.ping``, per round."""
    users = iter(job["users"])
    rounds: list[dict[str, Any]] = []
    for run in range(job["runs"]):
        for spec in job["rounds"]:
            clients: int = spec["clients"]
            conns = await _open_many(job["url"], clients, None)
            r = _OtpRound(users, job["password"])
            await asyncio.gather(*(r.login(ws, spec["logins"] // clients) for ws in conns))
            # The reference: the same clients, at once, timing core.ping.
            await asyncio.gather(*(r.ping(ws, job["pings"]) for ws in conns))
            for ws in conns:
                ws.close()
            rounds.append(
                {
                    "run": run,
                    "clients": clients,
                    "otp_ms": r.otp_ms,
                    "ping_ms": r.ping_ms,
                    "boundary_retries": r.boundary,
                    "failures": r.failures[:5],
                    "failure_count": len(r.failures),
                }
            )
    return {"rounds": rounds}


# -- one request at a time -----------------------------------------------------------------


async def latency(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``payload`` ``samples`` times on one connection (after ``warmup`` untimed)."""
    ws = await _open(job["url"], job.get("login"))
    payload = dumps(job["payload"]) if not isinstance(job["payload"], str) else job["payload"]
    if isinstance(payload, str):
        payload = payload.encode()
    times: list[float] = []
    size = 0
    last = b""
    for i in range(job["warmup"] + job["samples"]):
        t0 = time.perf_counter()
        last = await ws.request(payload, timeout=120)
        dt = (time.perf_counter() - t0) * 1000
        size = len(last)
        if i >= job["warmup"]:
            times.append(dt)
    ws.close()
    out: dict[str, Any] = {"ms": times, "size": size}
    if job.get("count_result"):
        out["count"] = len(json.loads(last)["result"])
    return out


# -- idle connections ----------------------------------------------------------------------


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def _wait_line() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


#: Tokens asked of one session: the daemon keeps only the newest few per session.
TOKENS_PER_SESSION = 10


async def _tokens(url: str, login: dict[str, str], count: int) -> list[str]:
    """``count`` single-use re-login tokens, from short-lived sessions of ``login``
    (closed, not logged out: logging out would withdraw their tokens)."""
    tokens: list[str] = []
    while len(tokens) < count:
        admin = await _open(url, login)
        for _ in range(min(TOKENS_PER_SESSION, count - len(tokens))):
            tokens.append(await _call(admin, "auth.generate_token", [600]))
        admin.close()
    return tokens


async def _hold_open(
    url: str, tokens: list[str] | None, count: int, offer_deflate: bool
) -> list[RawWebSocket]:
    host, port, path = split_url(url)
    sem = asyncio.Semaphore(25)

    async def one(i: int) -> RawWebSocket:
        async with sem:
            ws = await connect(host, port, path, offer_deflate=offer_deflate)
            if tokens is not None:
                result = await _call(
                    ws,
                    "auth.login_ex",
                    [
                        {
                            "mechanism": "TOKEN_PLAIN",
                            "token": tokens[i],
                            "login_options": {"user_info": False},
                        }
                    ],
                )
                if result["response_type"] != "SUCCESS":
                    raise RuntimeError(f"token login failed: {result}")
            return ws

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def hold(job: dict[str, Any]) -> dict[str, Any]:
    """Warm up with a few connections, then hold ``count`` idle ones.

    Protocol on stdout/stdin: prints ``{"phase": "baseline"}`` after the warm-up
    connections are closed and waits for a line; prints ``{"phase": "holding", ...}``
    once ``count`` connections are open (and logged in with single-use tokens from
    ``auth.generate_token`` when ``login`` is given) and waits for a line; then closes.
    """
    url: str = job["url"]
    login = job.get("login")
    count: int = job["count"]
    warm = job.get("warmup", 20)
    tokens = await _tokens(url, login, count + warm) if login else None
    first = await _hold_open(url, tokens[:warm] if tokens else None, warm, job["deflate"])
    for ws in first:
        ws.close()
    await asyncio.gather(*(ws.closed for ws in first))
    await asyncio.sleep(0.2)
    _say({"phase": "baseline"})
    await _wait_line()
    t0 = time.perf_counter()
    conns = await _hold_open(url, tokens[warm:] if tokens else None, count, job["deflate"])
    _say({"phase": "holding", "open": len(conns), "seconds": time.perf_counter() - t0})
    await _wait_line()
    for ws in conns:
        ws.close()
    return {"closed": len(conns)}


async def recovery(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``user.twofactor_recovery_codes`` (an administrator making each user's set)
    and then the OTP step of each user's login with one of those codes (the password
    step untimed); the reference, one argon2id digest of a code, is timed here too."""
    from middlewared_2fa.crypto import lookup_secret_digest

    admin = await _open(job["url"], job["admin"])
    generate_ms: list[float] = []
    codes: dict[str, str] = {}
    for username in job["users"]:
        t0 = time.perf_counter()
        made = await _call(admin, "user.twofactor_recovery_codes", [username])
        generate_ms.append((time.perf_counter() - t0) * 1000)
        codes[username] = made[0]
    admin.close()
    ws = await _open(job["url"], None)
    otp_ms: list[float] = []
    failures: list[str] = []
    for username, code in codes.items():
        first = await _call(
            ws,
            "auth.login_ex",
            [{"mechanism": "PASSWORD_PLAIN", "username": username, "password": job["password"]}],
            retry_busy=True,
        )
        if first["response_type"] != "OTP_REQUIRED":
            failures.append(f"{username}: password step {first}")
            continue
        payload = _request(
            "auth.login_ex_continue",
            [{"mechanism": "OTP_TOKEN", "otp_token": code, "login_options": {"user_info": False}}],
        )
        t0 = time.perf_counter()
        reply = json.loads(await ws.request(payload))
        dt = (time.perf_counter() - t0) * 1000
        if reply.get("result", {}).get("response_type") != "SUCCESS":
            failures.append(f"{username}: OTP step {reply}")
            continue
        otp_ms.append(dt)
        await _call(ws, "auth.logout")
    ws.close()
    digest_ms: list[float] = []
    salt = os.urandom(16)
    for _ in range(job["digests"]):
        t0 = time.perf_counter()
        lookup_secret_digest("abcdefghijklmnop", salt)
        digest_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "generate_ms": generate_ms,
        "otp_ms": otp_ms,
        "digest_ms": digest_ms,
        "failures": failures[:5],
        "failure_count": len(failures),
    }


JOBS = {
    "throughput": throughput,
    "otp": otp,
    "latency": latency,
    "hold": hold,
    "recovery": recovery,
}


def main() -> None:
    job = json.loads(sys.stdin.readline())
    if job.get("cpu") is not None:
        os.sched_setaffinity(0, {job["cpu"]})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 and (hard == resource.RLIM_INFINITY or hard >= 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))
    result = asyncio.run(JOBS[job["mode"]](job))
    _say({"phase": "result", **result})


if __name__ == "__main__":
    main()
