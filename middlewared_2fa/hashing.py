"""Bounded password hashing (API.md §3): at most ``workers`` argon2 operations run at
once; up to ``queue_limit`` more wait, at most ``per_address`` of them from one client
address, served round-robin across addresses. A call that finds its address's share full
fails at once with EBUSY. When the whole queue is full, a call from an address with fewer
waiting than the busiest address takes the place of that address's newest waiter (which
gets EBUSY): so however many addresses flood, each keeps a fair share of the queue and a
login from another address is delayed by about (addresses / workers) hash times instead
of refused, and memory and threads stay bounded.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TypeVar

from middlewared_2fa.errors import EBUSY, CallError

T = TypeVar("T")

#: Waiting hash operations in all, and from one client address (API.md §3).
QUEUE_LIMIT = 32
PER_ADDRESS = 4


class HashingPool:
    """Runs blocking password-hash functions in threads, boundedly and fairly.

    Args:
        workers: Operations run at once (the ``password_verifications`` setting).
        queue_limit: Operations that may wait.
        per_address: Waiting operations per client address.
    """

    def __init__(
        self, workers: int, *, queue_limit: int = QUEUE_LIMIT, per_address: int = PER_ADDRESS
    ) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.per_address = per_address
        self._running = 0
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._queued = 0

    @property
    def queued(self) -> int:
        """Operations waiting for a worker."""
        return self._queued

    async def run(self, address: str, func: Callable[..., T], *args: object) -> T:
        """``func(*args)`` in a thread once a worker is free.

        Raises:
            CallError: EBUSY "Rate Limit Exceeded" when the queue or ``address``'s share
                of it is full (nothing was run).
        """
        if self._running >= self.workers or self._queued:
            await self._wait_turn(address)
        else:
            self._running += 1
        try:
            return await asyncio.to_thread(func, *args)
        finally:
            self._hand_over()

    async def _wait_turn(self, address: str) -> None:
        line = self._waiting.get(address)
        mine = len(line) if line is not None else 0
        if mine >= self.per_address:
            raise CallError("Rate Limit Exceeded", EBUSY)
        if self._queued >= self.queue_limit and not self._make_room(mine):
            raise CallError("Rate Limit Exceeded", EBUSY)
        if line is None:
            line = self._waiting[address] = deque()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.append(turn)
        self._queued += 1
        try:
            await turn  # _hand_over passes its worker slot on: _running stays the same
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._hand_over()  # our turn had come: pass it on
            elif not turn.done() or turn.cancelled():
                self._forget(address, turn)
            raise  # (or we were bumped by _make_room: already out of the queue)

    def _make_room(self, mine: int) -> bool:
        """The queue is full: bump the newest waiter of the address with the most waiting,
        if it has more than the caller would after joining (fair share). False: none."""
        busiest = max(self._waiting, key=lambda a: len(self._waiting[a]))
        line = self._waiting[busiest]
        if len(line) <= mine + 1:
            return False
        bumped = line.pop()
        self._queued -= 1
        if not line:
            del self._waiting[busiest]
        if not bumped.done():
            bumped.set_exception(CallError("Rate Limit Exceeded", EBUSY))
        return True

    def _forget(self, address: str, turn: asyncio.Future[None]) -> None:
        line = self._waiting.get(address)
        if line is not None and turn in line:
            line.remove(turn)
            self._queued -= 1
            if not line:
                del self._waiting[address]

    def _hand_over(self) -> None:
        """A worker slot is free: give it to the next address in turn, or release it."""
        while self._waiting:
            address, line = next(iter(self._waiting.items()))
            turn = line.popleft()
            self._queued -= 1
            del self._waiting[address]
            if line:  # round-robin: this address goes to the back
                self._waiting[address] = line
            if not turn.done():
                turn.set_result(None)
                return
        self._running -= 1
