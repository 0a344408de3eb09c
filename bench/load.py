"""The load generator: a separate process (``python -m bench.load``) that reads one JSON
job on stdin, drives a server over loopback with :mod:`bench.rawws` (or :mod:`bench.rawhttp`)
and prints one JSON result line on stdout (the ``hold`` job also talks in between, see
:func:`hold`).

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
- ``peer``: the ``otp`` job's timed OTP step next to privacyIDEA's ``POST /validate/check``
  (over :mod:`bench.rawhttp`, one keep-alive HTTP/1.1 connection per client), same users
  and seeds, 1 and 10 clients, interleaved; no user verifies two codes of one time step
  on a server, and each run first checks that both servers refuse a replayed code.
- ``apikey`` and ``pbkdf2``: API-key logins (SCRAM, ``API_KEY_PLAIN``) and bare PBKDF2,
  see :mod:`bench.apikey`.

A ``wss://`` URL is opened over TLS trusting the certificate file named by the job's
``tls_ca``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from bench.rawhttp import HttpConnection, build_request
from bench.rawws import RawWebSocket, build_frame, client_tls, connect, dumps, split_url
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


#: The certificate a ``wss://`` connection trusts (the job's ``tls_ca``): the server's own.
_TLS_CA: list[str] = []


async def _open(url: str, login: dict[str, str] | None, **kwargs: Any) -> RawWebSocket:
    host, port, path = split_url(url)
    if url.startswith("wss://"):
        kwargs["tls"] = client_tls(_TLS_CA[0])
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


class _UserSource(Protocol):
    """Where a round takes its users from, and gives them back once used."""

    async def take(self) -> list[str]:
        """``[username, base32 seed]`` of a user that may verify a code now."""
        ...

    def give_back(self, user: list[str], code_time: float | None) -> None:
        """``user`` is done; it verified the code of ``code_time`` (None: no code)."""
        ...


class _Once:
    """Each user once, in order (the ``otp`` job: every login a distinct user)."""

    def __init__(self, users: list[list[str]]) -> None:
        self._users = iter(users)

    async def take(self) -> list[str]:
        return next(self._users)

    def give_back(self, user: list[str], code_time: float | None) -> None:
        pass


#: The TOTP time step (seconds) of every seeded token, on both servers.
TIME_STEP = 30


def _step(t: float) -> int:
    return int(t // TIME_STEP)


class _StepPool:
    """Users for one server, each verifying at most one code per time step, so no timed
    verification is a replay (every server refuses a code of an already used step).

    Users go round in order of use; :meth:`take` hands out the least recently used one
    when it has not verified a code of the current step yet, and otherwise waits for the
    next step (counted in ``waits``; :meth:`ensure` does that wait before a round instead,
    so that rounds are not interrupted)."""

    def __init__(self, users: list[list[str]]) -> None:
        self._free: deque[list[str]] = deque(users)
        self._last: dict[str, int] = {}
        self.waits = 0

    def _fresh(self, user: list[str], now: float) -> bool:
        return self._last.get(user[0], -1) < _step(now)

    def available(self) -> int:
        now = time.time()
        return sum(1 for u in self._free if self._fresh(u, now))

    async def _next_step(self) -> None:
        self.waits += 1
        await asyncio.sleep(TIME_STEP - time.time() % TIME_STEP + 0.05)

    async def ensure(self, count: int) -> None:
        """Wait for the next step if fewer than ``count`` users are fresh in this one."""
        if self.available() < count:
            await self._next_step()

    async def take(self) -> list[str]:
        while not (self._free and self._fresh(self._free[0], time.time())):
            await self._next_step()
        return self._free.popleft()

    def give_back(self, user: list[str], code_time: float | None) -> None:
        if code_time is not None:
            self._last[user[0]] = max(self._last.get(user[0], -1), _step(code_time))
        self._free.append(user)


@dataclass
class _OtpRound:
    """One round of logins: ``clients`` connections, each logging in distinct users."""

    users: _UserSource
    password: str
    otp_ms: list[float] = field(default_factory=list)
    ping_ms: list[float] = field(default_factory=list)
    boundary: int = 0
    failures: list[str] = field(default_factory=list)

    async def login(self, ws: RawWebSocket, count: int) -> None:
        import pyotp

        for _ in range(count):
            user = await self.users.take()
            username, secret = user
            first = await _call(
                ws,
                "auth.login_ex",
                [{"mechanism": "PASSWORD_PLAIN", "username": username, "password": self.password}],
                retry_busy=True,
            )
            if first["response_type"] != "OTP_REQUIRED":
                self.failures.append(f"{username}: password step {first}")
                self.users.give_back(user, None)
                continue
            totp = pyotp.TOTP(secret)
            ok = False
            code_time: float | None = None
            for _attempt in range(3):
                code_time = time.time()
                payload = _request(
                    "auth.login_ex_continue",
                    [{"mechanism": "OTP_TOKEN", "otp_token": totp.at(code_time)}],
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
            self.users.give_back(user, code_time)
            if ok:
                await _call(ws, "auth.logout")

    async def ping(self, ws: RawWebSocket, count: int) -> None:
        for _ in range(count):
            t0 = time.perf_counter()
            await ws.request(_request("core.ping"))
            self.ping_ms.append((time.perf_counter() - t0) * 1000)


async def otp(job: dict[str, Any]) -> dict[str, Any]:
    """Time the OTP step of logins of distinct users, then ``core.ping``, per round."""
    users = _Once(job["users"])
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


# -- the daemon's OTP step next to privacyIDEA's /validate/check ---------------------------


def _cpu(pids: list[int]) -> float:
    """CPU seconds of ``pids`` together (a process that went away counts for nothing)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


async def _measure(pids: list[int], work: Awaitable[None]) -> dict[str, float]:
    """Run ``work``; its wall time and the CPU the server (``pids``), this process and the
    rest of the machine used meanwhile (per second of wall time, in cores)."""
    t0, c0, s0, (m0, _) = time.perf_counter(), time.process_time(), _cpu(pids), machine_busy()
    await work
    t1, c1, s1, (m1, _) = time.perf_counter(), time.process_time(), _cpu(pids), machine_busy()
    elapsed = t1 - t0
    return {
        "elapsed": elapsed,
        "server_cpu_s": s1 - s0,
        "server_cpu": (s1 - s0) / elapsed,
        "client_cpu": (c1 - c0) / elapsed,
        "other_cpu": max(0.0, (m1 - m0) - (s1 - s0) - (c1 - c0)) / elapsed,
    }


def _check_request(hostport: str, username: str, realm: str, code: str) -> bytes:
    """``POST /validate/check`` with ``pass`` = the code alone (the tokens have no PIN)."""
    body = urlencode({"user": username, "realm": realm, "pass": code}).encode()
    return build_request("POST", hostport, "/validate/check", body)


def _accepted(reply: Any) -> tuple[bool, str]:
    """(accepted, why) of a /validate/check response."""
    try:
        data = json.loads(reply.body)
        result = data["result"]
        ok = reply.status == 200 and result.get("value") is True
        ok = ok and result.get("authentication") == "ACCEPT"
        why = (data.get("detail") or {}).get("message") or json.dumps(result)[:200]
        return ok, f"{result.get('authentication')}: {why}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, f"HTTP {reply.status}: {reply.body[:200]!r}"


@dataclass
class _CheckRound:
    """One round of ``/validate/check`` calls, each a distinct user's current code."""

    users: _StepPool
    host: str
    port: int
    realm: str
    ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def check(self, conn: HttpConnection, count: int) -> None:
        import pyotp

        hostport = f"{self.host}:{self.port}"
        for _ in range(count):
            user = await self.users.take()
            code_time = time.time()
            data = _check_request(hostport, user[0], self.realm, pyotp.TOTP(user[1]).at(code_time))
            await conn.ready()  # sync workers close every connection: reopen, untimed
            t0 = time.perf_counter()
            reply = await conn.request(data)
            dt = (time.perf_counter() - t0) * 1000
            self.users.give_back(user, code_time)
            ok, why = _accepted(reply)
            if ok:
                self.ms.append(dt)
            else:
                self.failures.append(f"{user[0]}: {why}")


async def _daemon_replay(url: str, pool: _StepPool, password: str) -> dict[str, Any]:
    """Log a user in with its current code, log out, and offer the same code again in the
    same time step: the daemon must refuse it."""
    import pyotp

    login = [{"mechanism": "PASSWORD_PLAIN", "username": "", "password": password}]
    for _attempt in range(3):
        user = await pool.take()
        login[0]["username"] = user[0]
        code_time = time.time()
        ws = await _open(url, None)
        try:
            first = await _call(ws, "auth.login_ex", login, retry_busy=True)
            if first["response_type"] != "OTP_REQUIRED":
                raise RuntimeError(f"daemon replay check: password step {first}")
            code_time = time.time()
            otp = [{"mechanism": "OTP_TOKEN", "otp_token": pyotp.TOTP(user[1]).at(code_time)}]
            accepted = await _call(ws, "auth.login_ex_continue", otp)
            if accepted["response_type"] != "SUCCESS":  # the step ended in flight
                continue
            await _call(ws, "auth.logout")
            await _call(ws, "auth.login_ex", login, retry_busy=True)
            reply = json.loads(await ws.request(_request("auth.login_ex_continue", otp)))
            done = time.time()
        finally:
            ws.close()
            pool.give_back(user, code_time)
        if _step(done) != _step(code_time):  # a later step refuses it for another reason
            continue
        kind = (reply.get("result") or {}).get("response_type")
        return {
            "server": "daemon",
            "user": user[0],
            "first": "SUCCESS",
            "replay": kind or json.dumps(reply.get("error"))[:200],
            "refused": kind != "SUCCESS",
        }
    raise RuntimeError("daemon replay check: no attempt fitted in one time step")


async def _peer_replay(host: str, port: int, realm: str, pool: _StepPool) -> dict[str, Any]:
    """Verify a user's current code with privacyIDEA, then the same code again: the second
    must be refused (its TOTP accepts only steps after the last one used)."""
    import pyotp

    user = await pool.take()
    code_time = time.time()
    data = _check_request(f"{host}:{port}", user[0], realm, pyotp.TOTP(user[1]).at(code_time))
    conn = HttpConnection(host, port)
    try:
        ok1, why1 = _accepted(await conn.request(data))
        ok2, why2 = _accepted(await conn.request(data))
    finally:
        conn.close()
        pool.give_back(user, code_time)
    if not ok1:
        raise RuntimeError(f"privacyIDEA replay check: a fresh code was refused: {why1}")
    return {
        "server": "privacyidea",
        "user": user[0],
        "first": why1,
        "replay": why2,
        "refused": not ok2,
    }


async def peer(job: dict[str, Any]) -> dict[str, Any]:
    """The daemon's OTP step next to privacyIDEA's ``/validate/check``, same users and
    seeds, same client counts, interleaved (each run: a replay check on both, then for each
    client count a daemon round and a privacyIDEA round). Each server has its own pool of
    the users, so that no user verifies two codes of one time step on it."""
    users: list[list[str]] = job["users"]
    d, p = job["daemon"], job["peer"]
    pools = {"daemon": _StepPool(users), "privacyidea": _StepPool(users)}

    async def daemon_round(clients: int, count: int, run: int) -> dict[str, Any]:
        pool = pools["daemon"]
        await pool.ensure(count)
        waits = pool.waits
        conns = await _open_many(d["url"], clients, None)
        r = _OtpRound(pool, d["password"])
        usage = await _measure(d["pids"], _gather(*(r.login(ws, count // clients) for ws in conns)))
        for ws in conns:
            ws.close()
        return {
            **usage,
            "run": run,
            "server": "daemon",
            "clients": clients,
            "ms": r.otp_ms,
            "count": len(r.otp_ms),
            "boundary_retries": r.boundary,
            "failures": r.failures[:5],
            "failure_count": len(r.failures),
            "pool_waits": pool.waits - waits,
            "connects": 0,
            "connect_ms": [],
        }

    async def peer_round(clients: int, count: int, run: int) -> dict[str, Any]:
        pool = pools["privacyidea"]
        await pool.ensure(count)
        waits = pool.waits
        conns = [HttpConnection(p["host"], p["port"]) for _ in range(clients)]
        for conn in conns:
            await conn.ready()
        r = _CheckRound(pool, p["host"], p["port"], p["realm"])
        usage = await _measure(
            p["pids"], _gather(*(r.check(conn, count // clients) for conn in conns))
        )
        for conn in conns:
            conn.close()
        return {
            **usage,
            "run": run,
            "server": "privacyidea",
            "clients": clients,
            "ms": r.ms,
            "count": len(r.ms),
            "boundary_retries": 0,
            "failures": r.failures[:5],
            "failure_count": len(r.failures),
            "pool_waits": pool.waits - waits,
            # The first connection of each client is opened before the round.
            "connects": sum(c.connects for c in conns) - clients,
            "connect_ms": [s * 1000 for c in conns for s in c.connect_s[1:]],
        }

    # Warm-up, not kept: the first calls of each gunicorn worker open its database.
    await daemon_round(10, job["warmup"], -1)
    await peer_round(10, job["warmup"], -1)
    rounds: list[dict[str, Any]] = []
    replays: list[dict[str, Any]] = []
    for run in range(job["runs"]):
        replays.append(await _daemon_replay(d["url"], pools["daemon"], d["password"]))
        replays.append(await _peer_replay(p["host"], p["port"], p["realm"], pools["privacyidea"]))
        for spec in job["rounds"]:
            rounds.append(await daemon_round(spec["clients"], spec["daemon"], run))
            rounds.append(await peer_round(spec["clients"], spec["peer"], run))
    return {"rounds": rounds, "replays": replays}


async def _gather(*work: Awaitable[None]) -> None:
    await asyncio.gather(*work)


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


async def storm(job: dict[str, Any]) -> dict[str, Any]:
    """The ``storm`` section's logins at once (:func:`bench.storm.storm_job`)."""
    from bench.storm import storm_job

    return await storm_job(job, _open)


async def apikey(job: dict[str, Any]) -> dict[str, Any]:
    """The ``apikey`` section's logins (:func:`bench.apikey.apikey_job`)."""
    from bench.apikey import apikey_job

    return await apikey_job(job, _open)


async def pbkdf2(job: dict[str, Any]) -> dict[str, Any]:
    """The ``apikey`` section's ceiling, bare PBKDF2 (:func:`bench.apikey.pbkdf2_job`)."""
    from bench.apikey import pbkdf2_job

    return pbkdf2_job(job)


JOBS = {
    "apikey": apikey,
    "pbkdf2": pbkdf2,
    "storm": storm,
    "throughput": throughput,
    "otp": otp,
    "latency": latency,
    "hold": hold,
    "recovery": recovery,
    "peer": peer,
}


def main() -> None:
    job = json.loads(sys.stdin.readline())
    if job.get("tls_ca"):
        _TLS_CA.append(job["tls_ca"])
    if job.get("cpu") is not None:
        os.sched_setaffinity(0, {job["cpu"]})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 and (hard == resource.RLIM_INFINITY or hard >= 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))
    result = asyncio.run(JOBS[job["mode"]](job))
    _say({"phase": "result", **result})


if __name__ == "__main__":
    main()
