"""Context-manager assets that create and remove users through the real API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from middlewared_2fa.cli.client import Client


@contextlib.asynccontextmanager
async def user_asset(
    admin: Client, username: str, password: str = "user-password", **fields: Any
) -> AsyncIterator[dict[str, Any]]:
    """Create ``username`` with ``user.create``; delete it afterwards (if still there)."""
    entry = await admin.call("user.create", {"username": username, "password": password, **fields})
    try:
        yield entry
    finally:
        if not admin.closed.is_set():
            found = await admin.call("user.query", [["id", "=", entry["id"]]])
            if found:
                await admin.call("user.delete", entry["id"])
