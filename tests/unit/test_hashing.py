"""The bounded, fair password-hashing pool (API.md §3), with blocking functions that the
test releases one by one (no timing)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from middlewared_2fa.errors import EBUSY, CallError
from middlewared_2fa.hashing import HashingPool


class Gate:
    """A blocking function that records its calls and waits until released (at most
    10 s, so that a failing test cannot leave threads blocked forever)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Semaphore(0)

    def __call__(self, name: str) -> str:
        self.started.append(name)
        self.release.acquire(timeout=10)
        return name


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_runs_at_most_workers_and_serves_addresses_round_robin() -> None:
    """Two run at once; the waiting ones are served one address after the other."""
    pool = HashingPool(2, queue_limit=8, per_address=4)
    gate = Gate()
    tasks = [asyncio.create_task(pool.run("a", gate, f"a{i}")) for i in range(4)]
    await settle()
    tasks += [asyncio.create_task(pool.run("b", gate, f"b{i}")) for i in range(2)]
    await settle()
    assert gate.started == ["a0", "a1"] and pool.queued == 4
    for _ in range(6):
        gate.release.release()
        await settle()
    assert await asyncio.gather(*tasks) == ["a0", "a1", "a2", "a3", "b0", "b1"]
    assert gate.started == ["a0", "a1", "a2", "b0", "a3", "b1"]
    assert pool.queued == 0


async def test_share_of_an_address_is_bounded() -> None:
    """A fifth waiting call from one address is refused at once with EBUSY."""
    pool = HashingPool(1, queue_limit=32, per_address=4)
    gate = Gate()
    tasks = [asyncio.create_task(pool.run("a", gate, f"a{i}")) for i in range(5)]
    await settle()
    with pytest.raises(CallError) as err:
        await pool.run("a", gate, "a5")
    assert (err.value.errno, err.value.reason) == (EBUSY, "Rate Limit Exceeded")
    for _ in range(5):
        gate.release.release()
    assert len(await asyncio.gather(*tasks)) == 5


async def test_full_queue_makes_room_for_another_address() -> None:
    """With the queue full of two flooding addresses, a call from a third address takes
    the place of the busiest address's newest waiter (EBUSY for that one) and runs."""
    pool = HashingPool(1, queue_limit=4, per_address=2)
    gate = Gate()
    first = asyncio.create_task(pool.run("a", gate, "running"))
    await settle()
    flood = {
        f"{a}{i}": asyncio.create_task(pool.run(a, gate, f"{a}{i}")) for a in "ab" for i in range(2)
    }
    await settle()
    assert pool.queued == 4
    login = asyncio.create_task(pool.run("c", gate, "c0"))
    await settle()
    assert pool.queued == 4
    bumped = [name for name, t in flood.items() if t.done()]
    assert len(bumped) == 1 and bumped[0].endswith("1")
    with pytest.raises(CallError):
        await flood[bumped[0]]
    for _ in range(4):
        gate.release.release()
        await settle()
    assert await login == "c0"
    assert await first == "running"
    # Round-robin over the addresses: c waits for one turn of a and of b, not for both
    # of b's (a's second waiter was the one bumped).
    assert gate.started == ["running", "a0", "b0", "c0", "b1"]


async def test_fair_share_refuses_when_no_one_has_more() -> None:
    """A full queue where no address holds more than the caller would: EBUSY at once."""
    pool = HashingPool(1, queue_limit=2, per_address=4)
    gate = Gate()
    tasks = [asyncio.create_task(pool.run(a, gate, a)) for a in ("x", "y", "z")]
    await settle()
    with pytest.raises(CallError):
        await pool.run("w", gate, "w")
    for _ in range(3):
        gate.release.release()
    assert sorted(await asyncio.gather(*tasks)) == ["x", "y", "z"]


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """A waiting call that is cancelled frees its place; one cancelled after its turn
    came passes the worker on."""
    pool = HashingPool(1, queue_limit=4, per_address=4)
    gate = Gate()
    running = asyncio.create_task(pool.run("a", gate, "r"))
    await settle()
    waiting = asyncio.create_task(pool.run("b", gate, "w"))
    after = asyncio.create_task(pool.run("c", gate, "after"))
    await settle()
    waiting.cancel()
    await settle()
    assert pool.queued == 1
    gate.release.release()
    gate.release.release()
    assert await running == "r" and await after == "after"
    assert pool.queued == 0
