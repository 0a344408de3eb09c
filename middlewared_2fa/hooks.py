"""Named hook points: a plugin publishes a point (``auth.twofactor.pre_update``) and
others subscribe to it, so an optional plugin (SSH files, the clock check) reacts to a
change without the changing plugin naming it.

Points published today (arguments in order):

- ``auth.twofactor.pre_update(ctx, errors, old, new)``: before global 2FA settings change;
  subscribers add validation errors to ``errors`` (``ValidationErrors``).
- ``auth.twofactor.post_update(ctx, old, new)``: after they changed (committed).
- ``user.post_change(ctx, old, new)``: after a user was created (``old`` None), changed or
  deleted (``new`` None), by the user plugin or another (a lock after failed logins);
  rows are ``UserRow``.
- ``user.unlocked(ctx, row)``: an administrator sent ``user.update {locked: false}``
  (API.md §3: it also resets the failure count), before ``user.post_change``.

Points that ask (:meth:`Hooks.collect`, each subscriber answers):

- ``auth.twofactor.used_step(user, secret) -> int | None``: the newest TOTP step another
  verifier of the same secret accepted (pam_oath), read before a code is compared.
- ``auth.twofactor.record_step(user, secret, step) -> bool``: record ``step`` as used
  there too; False when that verifier accepted it (or a newer one) meanwhile.
- ``auth.clock_hint() -> str | None``: a sentence about a skewed clock for a failed code.

Subscribers declare themselves in ``Service.Config.hooks`` (or call :meth:`Hooks.register`).

Subscribers run one after the other, in ``order`` (then registration order); an
exception stops the run and reaches the caller of :meth:`Hooks.run` (a subscriber that
must not fail the change catches its own errors).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

HookFunc = Callable[..., Awaitable[Any]]


@dataclass(slots=True, frozen=True)
class _Subscriber:
    order: int
    seq: int
    func: HookFunc


class Hooks:
    """The daemon's hook points (``middleware.hooks``)."""

    def __init__(self) -> None:
        self._points: dict[str, list[_Subscriber]] = {}
        self._seq = 0

    def register(self, name: str, func: HookFunc, *, order: int = 0) -> None:
        """Call ``func`` at point ``name``; lower ``order`` runs first."""
        self._seq += 1
        subscribers = self._points.setdefault(name, [])
        subscribers.append(_Subscriber(order, self._seq, func))
        subscribers.sort(key=lambda s: (s.order, s.seq))

    def subscribed(self, name: str) -> int:
        """How many subscribers point ``name`` has."""
        return len(self._points.get(name, ()))

    async def run(self, name: str, *args: Any) -> None:
        """Call every subscriber of ``name`` with ``args``, in order.

        Raises:
            Whatever a subscriber raises (the rest are not called).
        """
        for subscriber in list(self._points.get(name, ())):
            await subscriber.func(*args)

    async def collect(self, name: str, *args: Any) -> list[Any]:
        """Call every subscriber of ``name`` with ``args``, in order, and return their
        answers that are not None.

        Raises:
            Whatever a subscriber raises (the rest are not called).
        """
        answers: list[Any] = []
        for subscriber in list(self._points.get(name, ())):
            answer = await subscriber.func(*args)
            if answer is not None:
                answers.append(answer)
        return answers
