"""The example plugin (tests/example_plugins/account_history.py), loaded with
``--plugins-dir``: its table, setting, role, hook subscriber and method work end to end
without a change to the framework."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from middlewared_2fa.cli.client import ClientError
from middlewared_2fa.errors import StartupError
from middlewared_2fa.roles import ROLES
from tests.helpers.daemon import InProcessDaemon

EXAMPLE = Path(__file__).resolve().parents[1] / "example_plugins"


@pytest.fixture(autouse=True)
def _restore_roles() -> Iterator[None]:
    """The role table is process-wide: the example's role must not stay known to the
    daemons of later tests, which do not load the example."""
    state = ROLES.snapshot()
    yield
    ROLES.restore(state)


def _tracked(daemon: InProcessDaemon) -> list[tuple[str, int]]:
    with sqlite3.connect(daemon.settings.database_path) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT owner, version FROM schema_migrations WHERE owner = 'account_history'"
            )
        ]


@pytest.mark.settings(plugins_dirs=[EXAMPLE], account_history_limit=2)
async def test_example_plugin_end_to_end(daemon: InProcessDaemon) -> None:
    """Its hook records user changes in its own table, its setting bounds the history,
    its method needs its role, and its migration ran once and is tracked under its
    namespace across a restart."""
    async with daemon.root() as root:
        methods = await root.call("core.get_methods")
        assert "account_history.query" in methods
        reader = await root.call(
            "user.create",
            {
                "username": "reader",
                "password": "reader-password",
                "roles": ["ACCOUNT_HISTORY_READ"],
            },
        )
        plain = await root.call(
            "user.create", {"username": "plain", "password": "plain-password", "roles": []}
        )
    async with daemon.admin() as admin:
        await admin.call("user.update", plain["id"], {"full_name": "Plain One"})
        await admin.call("user.update", plain["id"], {"full_name": "Plain Two"})
        history = await admin.call("account_history.query", "plain")
        # account_history_limit = 2: the creation fell out, the two updates stay.
        assert [(e["what"], e["by"]) for e in history] == [
            ("changed", "admin"),
            ("changed", "admin"),
        ]
        assert all(e["at"] == daemon.clock.time() for e in history)
        with pytest.raises(ClientError) as missing:
            await admin.call("account_history.query", "nobody")
        assert missing.value.errno == errno.ENOENT
    async with daemon.client() as c:
        assert (await c.login("reader", "reader-password"))["response_type"] == "SUCCESS"
        assert [e["what"] for e in await c.call("account_history.query", "reader")] == ["created"]
    async with daemon.client() as c:
        assert (await c.login("plain", "plain-password"))["response_type"] == "SUCCESS"
        with pytest.raises(ClientError) as refused:
            await c.call("account_history.query", "plain")
        assert refused.value.errno == errno.EACCES  # API.md §3: a missing role
    assert _tracked(daemon) == [("account_history", 1)]
    async with daemon.root() as root:
        await root.call("user.delete", plain["id"])
    await daemon.restart()
    assert _tracked(daemon) == [("account_history", 1)]
    async with daemon.admin() as admin:
        history = await admin.call("account_history.query", "plain")
        assert [e["what"] for e in history] == ["changed", "deleted"]
        assert reader["id"] != plain["id"]


async def test_example_plugin_bad_setting_stops_start_up(daemon: InProcessDaemon) -> None:
    """A plugin's invalid setting is a start-up error naming the key, as the framework's;
    with a valid one the plugin comes up on the same state folder with its table."""
    with pytest.raises(StartupError, match="account_history_limit"):
        await daemon.restart(plugins_dirs=[EXAMPLE], account_history_limit=0)
    await daemon.stop()
    daemon.overrides["account_history_limit"] = 5
    await daemon.start()
    assert _tracked(daemon) == [("account_history", 1)]
    async with daemon.admin() as admin:
        # admin was created before the plugin was loaded: nothing recorded (ENOENT, not an
        # internal error about a missing table).
        with pytest.raises(ClientError) as missing:
            await admin.call("account_history.query", "admin")
        assert missing.value.errno == errno.ENOENT
