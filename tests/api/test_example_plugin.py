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


PLUGIN = """
from middlewared_2fa.api import Hook, Migration, Service


class NotesService(Service):
    class Config:
        namespace = "notes"
        migrations = (Migration(1, "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"),)
        hooks = (Hook("user.post_chnage", "_on_user"),)

    async def _on_user(self, ctx, old, new) -> None:
        pass
"""


async def test_plugin_declarations_as_users_write_them(
    daemon: InProcessDaemon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A migration whose last statement has no ``;`` applies (the record is not glued to
    it); a subscription to a point that no plugin publishes (a typo) is logged."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.py").write_text(PLUGIN)
    await daemon.restart(plugins_dirs=[folder])
    with sqlite3.connect(daemon.settings.database_path) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)
        tracked = conn.execute("SELECT version FROM schema_migrations WHERE owner = 'notes'")
        assert tracked.fetchall() == [(1,)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'user.post_chnage', which no loaded plugin publishes" in w for w in warnings)
    assert not any("'user.post_change'" in w for w in warnings)


@pytest.mark.parametrize(
    ("is_file", "match"), [(False, "does not exist"), (True, "is not a folder")]
)
async def test_plugin_folder_errors_say_what_is_wrong(
    daemon: InProcessDaemon, tmp_path: Path, is_file: bool, match: str
) -> None:
    """A missing plugin folder and a file given as one are told apart, with the full path."""
    path = tmp_path / "plugins"
    if is_file:
        path.write_text("")
    with pytest.raises(StartupError, match=f"{tmp_path}.*{match}"):
        await daemon.restart(plugins_dirs=[path])


ESCALATING = """
from middlewared_2fa.api import Role, Service


class XiService(Service):
    class Config:
        namespace = "xi"
        role_prefix = ("XI",)
        roles = (Role("XI_READ", includes=("ACCOUNT_WRITE",), readonly=True),)
"""

RESERVED = """
from middlewared_2fa.api import Migration, Service


class Sneaky(Service):
    class Config:
        namespace = "middlewared"
        migrations = (Migration(1, "CREATE TABLE sneaky (id INTEGER)"),)
"""


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (ESCALATING, "read-only role 'XI_READ' includes roles that are not read-only"),
        (RESERVED, "the namespace 'middlewared' is reserved"),
    ],
)
async def test_declarations_that_would_escalate_or_collide_stop_start_up(
    daemon: InProcessDaemon, tmp_path: Path, source: str, match: str
) -> None:
    """A plugin cannot make READONLY_ADMIN grant a write role (every read-only admin would
    get it) nor take the framework's migration records; before the refusal a
    READONLY_ADMIN user is refused ACCOUNT_WRITE's methods, and after the daemon comes back
    without the plugin it still is."""
    async with daemon.root() as root:
        await root.call(
            "user.create",
            {"username": "ro", "password": "ro-password", "roles": ["READONLY_ADMIN"]},
        )
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bad.py").write_text(source)
    with pytest.raises(StartupError, match=match):
        await daemon.restart(plugins_dirs=[folder])
    await daemon.stop()
    daemon.overrides.pop("plugins_dirs")
    await daemon.start()
    async with daemon.client() as c:
        assert (await c.login("ro", "ro-password"))["response_type"] == "SUCCESS"
        with pytest.raises(ClientError) as refused:
            await c.call("user.create", {"username": "x", "password": "x-password"})
        assert refused.value.errno == errno.EACCES
