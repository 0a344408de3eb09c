"""The ``storm`` section's two processes besides the daemon (bench/README.md):

- the load generator job ``storm`` (run by :mod:`bench.load`, which hands the job here):
  many password + OTP logins arriving at once from many loopback source addresses
  (127.0.0.2...), each connection bound to its own local address as a host of its own
  would be, while one authenticated connection from 127.0.0.1 times ``core.ping`` one
  call after the other throughout;
- the ceiling, ``python -m bench.storm ceiling``: bare ``argon2-cffi`` verifications of
  one hash in N threads for a fixed time, in a process pinned like the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.rawws import RawWebSocket, split_url
from bench.sysinfo import cpu_seconds, machine_busy

#: errno EBUSY in an error's data: the hashing queue is full, or this address's share.
EBUSY = 16


def _request(method: str, params: list[Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


async def _connect_from(url: str, local: str, timeout: float = 30.0) -> RawWebSocket:
    """A WebSocket connection whose socket is bound to ``local`` (a loopback address)."""
    host, port, path = split_url(url)
    loop = asyncio.get_running_loop()
    _transport, proto = await asyncio.wait_for(
        loop.create_connection(
            lambda: RawWebSocket(f"{host}:{port}", path), host, port, local_addr=(local, 0)
        ),
        timeout,
    )
    await asyncio.wait_for(proto.opened, timeout)
    return proto


@dataclass
class _Storm:
    password: str
    retry_pause: float
    login_ms: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)
    busy: int = 0
    boundary: int = 0
    failures: list[str] = field(default_factory=list)

    async def login(self, ws: RawWebSocket, user: list[str], t0: float) -> None:
        import pyotp

        username, secret = user
        first: dict[str, Any] = {}
        for _attempt in range(10_000):
            reply = json.loads(
                await ws.request(
                    _request(
                        "auth.login_ex",
                        [
                            {
                                "mechanism": "PASSWORD_PLAIN",
                                "username": username,
                                "password": self.password,
                            }
                        ],
                    ),
                    timeout=300,
                )
            )
            if "error" in reply:
                if (reply["error"].get("data") or {}).get("error") == EBUSY:
                    self.busy += 1
                    await asyncio.sleep(self.retry_pause * random.uniform(0.5, 1.5))
                    continue
                self.failures.append(f"{username}: password step {reply['error']}")
                return
            first = reply["result"]
            break
        if first.get("response_type") != "OTP_REQUIRED":
            self.failures.append(f"{username}: password step {first}")
            return
        totp = pyotp.TOTP(secret)
        for _attempt in range(3):
            code = totp.at(time.time())
            reply = json.loads(
                await ws.request(
                    _request(
                        "auth.login_ex_continue", [{"mechanism": "OTP_TOKEN", "otp_token": code}]
                    ),
                    timeout=300,
                )
            )
            kind = (reply.get("result") or {}).get("response_type")
            if kind == "SUCCESS":
                now = time.perf_counter()
                self.login_ms.append((now - t0) * 1000)
                self.done_at.append(now - t0)
                return
            if kind == "OTP_REQUIRED":  # the code's time step ended in flight
                self.boundary += 1
                continue
            self.failures.append(f"{username}: OTP step {reply}")
            return
        self.failures.append(f"{username}: OTP step refused 3 times")


async def storm_job(job: dict[str, Any], open_ws: Any) -> dict[str, Any]:
    """All ``users`` log in at once (password, then OTP), one connection each, bound to
    ``addresses`` in turn; an authenticated 127.0.0.1 connection (``open_ws(url, login)``)
    times ``core.ping`` back to back from just before the storm to its end."""
    url: str = job["url"]
    users: list[list[str]] = job["users"]
    addresses: list[str] = job["addresses"]
    pinger = await open_ws(url, job["login"])
    sem = asyncio.Semaphore(25)

    async def one(i: int) -> RawWebSocket:
        async with sem:
            return await _connect_from(url, addresses[i % len(addresses)])

    conns = list(await asyncio.gather(*(one(i) for i in range(len(users)))))
    storm = _Storm(job["password"], job["retry_pause"])
    ping_ms: list[float] = []
    running = True
    ping_frame = _request("core.ping")

    async def pings() -> None:
        while running:
            p0 = time.perf_counter()
            await pinger.request(ping_frame, timeout=300)
            ping_ms.append((time.perf_counter() - p0) * 1000)
            await asyncio.sleep(job["ping_gap"])

    pinging = asyncio.create_task(pings())
    await asyncio.sleep(0.2)  # a few pings before the storm
    before = len(ping_ms)
    t0 = time.perf_counter()
    c0 = time.process_time()
    s0, (m0, _) = cpu_seconds(job["pid"]), machine_busy()
    await asyncio.gather(*(storm.login(ws, u, t0) for ws, u in zip(conns, users, strict=True)))
    wall = time.perf_counter() - t0
    client = time.process_time() - c0
    server, (m1, _) = cpu_seconds(job["pid"]) - s0, machine_busy()
    running = False
    await pinging
    pinger.close()
    for ws in conns:
        ws.close()
    return {
        "wall_s": wall,
        "logins": len(storm.login_ms),
        "login_ms": storm.login_ms,
        "ping_ms": ping_ms[before:],
        "busy": storm.busy,
        "boundary_retries": storm.boundary,
        "failures": storm.failures[:5],
        "failure_count": len(storm.failures),
        "client_cpu": client / wall,
        "server_cpu": server / wall,
        "server_cpu_s": server,
        # CPU of everything else on the machine, in cores: noise indicator.
        "other_cpu": max(0.0, (m1 - m0) - server - client) / wall,
        "addresses": len({addresses[i % len(addresses)] for i in range(len(users))}),
    }


def ceiling(password_hash: str, password: str, threads: int, seconds: float) -> dict[str, Any]:
    """Bare ``argon2-cffi`` verifications of ``password_hash`` in ``threads`` threads for
    ``seconds``: verifications per second (argon2-cffi releases the GIL while hashing)."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        while time.perf_counter() < stop:
            hasher.verify(password_hash, password)
            counts[k] += 1

    c0 = time.process_time()
    t0 = time.perf_counter()
    (m0, _) = machine_busy()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    (m1, _) = machine_busy()
    return {
        "verifications": sum(counts),
        "elapsed": elapsed,
        "per_s": sum(counts) / elapsed,
        "cpu": cpu / elapsed,
        "per_cpu_s": sum(counts) / cpu if cpu else 0.0,
        "other_cpu": max(0.0, (m1 - m0) - cpu) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storm")
    parser.add_argument("what", choices=["ceiling"])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    job = json.loads(input())
    print(json.dumps(ceiling(job["hash"], job["password"], args.threads, args.seconds)))


if __name__ == "__main__":
    main()
