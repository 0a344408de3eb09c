"""The method registry as a running daemon reports it, for tests that are parametrized by
method when they are collected (a new method is then a new test case, not a name to add)."""

from __future__ import annotations

import asyncio
import functools
import shutil
from typing import Any

from middlewared_2fa.clock import FrozenClock
from tests.helpers.daemon import InProcessDaemon, short_tempdir


@functools.cache
def registered_methods() -> dict[str, dict[str, Any]]:
    """``core.get_methods`` as root on the Unix socket (every public method, with its
    schemas and roles), from a default daemon started for it once per test process."""

    async def fetch() -> dict[str, dict[str, Any]]:
        base = short_tempdir()
        daemon = InProcessDaemon(base, FrozenClock(1234567890))
        try:
            await daemon.start()
            async with daemon.root() as root:
                return dict(await root.call("core.get_methods"))
        finally:
            await daemon.stop()
            shutil.rmtree(base, ignore_errors=True)

    return asyncio.run(fetch())
