"""The ``apikey`` section's load: API-key logins per second (``SCRAM`` and
``API_KEY_PLAIN``) and the reference, bare PBKDF2-SHA512 at the keys' iteration count.

Run inside the load generator (:mod:`bench.load`, jobs ``apikey`` and ``pbkdf2``).

The SCRAM client is cheap on purpose: SCRAM makes the client derive SaltedPassword
(PBKDF2 at the server's iteration count) too, and on two cores a client doing that per
login would compete with the server. RFC 5802 §5.1 lets a client cache it per salt and
iteration count, so the client derives it once per key, from the first (untimed)
exchange, and reuses ClientKey and ServerKey for every timed login (it still checks the
server's signature each time).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.rawws import RawWebSocket, dumps
from bench.sysinfo import cpu_seconds, machine_busy

Opener = Callable[[str, dict[str, str] | None], Awaitable[RawWebSocket]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _login(ws: RawWebSocket, params: dict[str, Any]) -> dict[str, Any]:
    message = {"jsonrpc": "2.0", "id": 1, "method": "auth.login_ex", "params": [params]}
    reply = json.loads(await ws.request(dumps(message), timeout=120))
    if "error" in reply:
        raise RuntimeError(f"auth.login_ex: {reply['error']}")
    result: dict[str, Any] = reply["result"]
    return result


async def _logout(ws: RawWebSocket) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "auth.logout"}
    reply = json.loads(await ws.request(dumps(message)))
    if "error" in reply:
        raise RuntimeError(f"auth.logout: {reply['error']}")


@dataclass
class _Key:
    """One API key and the client's cached SCRAM keys (RFC 5802 §5.1)."""

    username: str
    raw: str  # "<id>-<material>"
    client_key: bytes = b""
    stored_key: bytes = b""
    server_key: bytes = b""

    @property
    def key_id(self) -> str:
        return self.raw.split("-", 1)[0]

    @property
    def material(self) -> str:
        return self.raw.split("-", 1)[1]

    def cache(self, salt: bytes, iterations: int) -> None:
        """Derive SaltedPassword once (the only PBKDF2 the client ever does for the key)."""
        salted = hashlib.pbkdf2_hmac("sha512", self.material.encode(), salt, iterations)
        self.client_key = hmac.digest(salted, b"Client Key", "sha512")
        self.stored_key = hashlib.sha512(self.client_key).digest()
        self.server_key = hmac.digest(salted, b"Server Key", "sha512")


async def _scram(ws: RawWebSocket, key: _Key) -> None:
    """One SCRAM-SHA-512 login (both messages); checks the server signature."""
    nonce = os.urandom(32)
    bare = f"n={key.username}:{key.key_id},r={_b64(nonce)}"
    first = await _login(
        ws,
        {
            "mechanism": "SCRAM",
            "scram_type": "CLIENT_FIRST_MESSAGE",
            "rfc_str": "n,," + bare,
            "login_options": {"user_info": False},
        },
    )
    if first.get("scram_type") != "SERVER_FIRST_RESPONSE":
        raise RuntimeError(f"SCRAM first step: {first}")
    server_first: str = first["rfc_str"]
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    if not key.client_key:
        key.cache(base64.b64decode(attrs["s"]), int(attrs["i"]))
    without_proof = f"c={_b64(b'n,,')},r={attrs['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(key.stored_key, auth_message, "sha512")
    proof = bytes(a ^ b for a, b in zip(key.client_key, signature, strict=True))
    final = await _login(
        ws,
        {
            "mechanism": "SCRAM",
            "scram_type": "CLIENT_FINAL_MESSAGE",
            "rfc_str": f"{without_proof},p={_b64(proof)}",
            "login_options": {"user_info": False},
        },
    )
    expected = "v=" + _b64(hmac.digest(key.server_key, auth_message, "sha512"))
    if final.get("scram_type") != "SERVER_FINAL_RESPONSE" or final.get("rfc_str") != expected:
        raise RuntimeError(f"SCRAM final step: {final}")


async def _plain(ws: RawWebSocket, key: _Key) -> None:
    done = await _login(
        ws,
        {
            "mechanism": "API_KEY_PLAIN",
            "username": key.username,
            "api_key": key.raw,
            "login_options": {"user_info": False},
        },
    )
    if done.get("response_type") != "SUCCESS":
        raise RuntimeError(f"API_KEY_PLAIN: {done}")


@dataclass
class _Round:
    mechanism: str
    ms: list[float] = field(default_factory=list)

    async def client(self, ws: RawWebSocket, key: _Key, count: int) -> None:
        step = _scram if self.mechanism == "SCRAM" else _plain
        for _ in range(count):
            t0 = time.perf_counter()
            await step(ws, key)
            self.ms.append((time.perf_counter() - t0) * 1000)
            await _logout(ws)  # untimed


async def apikey_job(job: dict[str, Any], open_ws: Opener) -> dict[str, Any]:
    """Create ``max(clients)`` keys for ``login`` (``api_key.create``), warm up each
    (one untimed login of each mechanism; SCRAM caches its keys then), then per run, for
    each mechanism and client count, ``count`` logins spread over the clients, each on
    its own connection and key; login timed from the first send to the last reply."""
    login: dict[str, str] = job["login"]
    clients_max = max(r["clients"] for r in job["rounds"])
    admin = await open_ws(job["url"], login)
    keys: list[_Key] = []
    for i in range(clients_max):
        message = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "api_key.create",
            "params": [{"name": f"bench-{i}"}],
        }
        reply = json.loads(await admin.request(dumps(message), timeout=120))
        if "error" in reply:
            raise RuntimeError(f"api_key.create: {reply['error']}")
        keys.append(_Key(login["username"], reply["result"]["key"]))
    admin.close()
    conns = [await open_ws(job["url"], None) for _ in range(clients_max)]
    for ws, key in zip(conns, keys, strict=True):
        for mechanism in ("SCRAM", "API_KEY_PLAIN"):
            await _Round(mechanism).client(ws, key, 1)
    pids: list[int] = job["pids"]
    rounds: list[dict[str, Any]] = []
    for run in range(job["runs"]):
        for spec in job["rounds"]:
            n: int = spec["clients"]
            r = _Round(spec["mechanism"])
            per = max(1, spec["count"] // n)
            t0, c0, s0, (m0, _) = (
                time.perf_counter(),
                time.process_time(),
                sum(cpu_seconds(p) for p in pids),
                machine_busy(),
            )
            await asyncio.gather(
                *(r.client(ws, key, per) for ws, key in zip(conns[:n], keys[:n], strict=True))
            )
            t1, c1, s1, (m1, _) = (
                time.perf_counter(),
                time.process_time(),
                sum(cpu_seconds(p) for p in pids),
                machine_busy(),
            )
            elapsed = t1 - t0
            rounds.append(
                {
                    "run": run,
                    "mechanism": spec["mechanism"],
                    "clients": n,
                    "ms": r.ms,
                    # Little's law: clients / mean time of one login.
                    "rate": n / (sum(r.ms) / len(r.ms) / 1000),
                    "wall_rate": len(r.ms) / elapsed,
                    "server_cpu": (s1 - s0) / elapsed,
                    "client_cpu": (c1 - c0) / elapsed,
                    "other_cpu": max(0.0, (m1 - m0) - (s1 - s0) - (c1 - c0)) / elapsed,
                    "server_ms_per_login": (s1 - s0) / len(r.ms) * 1000,
                }
            )
    for ws in conns:
        ws.close()
    return {"rounds": rounds}


def pbkdf2_job(job: dict[str, Any]) -> dict[str, Any]:
    """The ceiling: ``threads`` threads (``hashlib`` releases the GIL) each deriving
    PBKDF2-HMAC-SHA512 of a 64-character key with a 32-byte salt, ``iterations`` rounds,
    ``count`` times; derivations per second of wall clock and the CPU used (this process
    is pinned like the server)."""
    threads: int = job["threads"]
    count: int = job["count"]
    iterations: int = job["iterations"]
    material = b"k" * 64
    done: list[float] = []

    def worker() -> None:
        salt = os.urandom(32)
        for _ in range(count):
            t = time.perf_counter()
            hashlib.pbkdf2_hmac("sha512", material, salt, iterations)
            done.append((time.perf_counter() - t) * 1000)

    hashlib.pbkdf2_hmac("sha512", material, b"s" * 32, 1000)  # warm
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    return {
        "threads": threads,
        "rate": len(done) / elapsed,
        "ms": done,
        "cpu": (time.process_time() - c0) / elapsed,
    }
