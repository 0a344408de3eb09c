"""Named hook points (middlewared_2fa/hooks.py): order, arguments, failures."""

from __future__ import annotations

import pytest

from middlewared_2fa.hooks import Hooks


async def test_subscribers_run_in_order_with_the_arguments() -> None:
    """Lower order first, then registration order; each gets the run's arguments."""
    hooks = Hooks()
    calls: list[tuple[str, tuple[object, ...]]] = []

    def sub(name: str):  # type: ignore[no-untyped-def]
        async def run(*args: object) -> None:
            calls.append((name, args))

        return run

    hooks.register("p", sub("b"))
    hooks.register("p", sub("first"), order=-10)
    hooks.register("p", sub("c"))
    hooks.register("other", sub("x"))
    await hooks.run("p", 1, "two")
    assert calls == [("first", (1, "two")), ("b", (1, "two")), ("c", (1, "two"))]
    assert hooks.subscribed("p") == 3 and hooks.subscribed("none") == 0
    await hooks.run("none")  # a point without subscribers is fine


async def test_a_failing_subscriber_stops_the_run_and_reaches_the_caller() -> None:
    """An exception propagates and the later subscribers are not called."""
    hooks = Hooks()
    seen: list[str] = []

    async def fail() -> None:
        raise ValueError("refused")

    async def later() -> None:
        seen.append("later")

    hooks.register("p", fail)
    hooks.register("p", later)
    with pytest.raises(ValueError, match="refused"):
        await hooks.run("p")
    assert seen == []
