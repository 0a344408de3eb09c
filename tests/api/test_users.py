"""Users, roles and events (API.md §5, §7)."""

from __future__ import annotations

import asyncio

import pytest

from middlewared_2fa.cli.client import ClientError
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon


async def test_create_query_update_delete(daemon: InProcessDaemon) -> None:
    """user.create/query/get_instance/update/delete round-trip with the UserEntry shape."""
    async with daemon.admin() as admin:
        entry = await admin.call(
            "user.create",
            {
                "username": "carol",
                "password": "pw-carol",
                "full_name": "Carol C",
                "roles": ["ACCOUNT_READ"],
            },
        )
        assert entry == {
            "id": entry["id"],
            "username": "carol",
            "full_name": "Carol C",
            "roles": ["ACCOUNT_READ"],
            "locked": False,
            "ssh_password_enabled": False,
            "twofactor_auth_configured": False,
            "builtin": False,
        }
        assert await admin.call("user.get_instance", entry["id"]) == entry
        found = await admin.call("user.query", [["username", "^", "car"]], {"get": True})
        assert found == entry
        assert await admin.call("user.query", [], {"count": True}) == 2
        names = await admin.call("user.query", [], {"order_by": ["-username"]})
        assert [u["username"] for u in names] == ["carol", "admin"]
        updated = await admin.call("user.update", entry["id"], {"full_name": "Carol D"})
        assert updated["full_name"] == "Carol D" and updated["roles"] == ["ACCOUNT_READ"]
        assert await admin.call("user.delete", entry["id"]) is True
        with pytest.raises(ClientError) as err:
            await admin.call("user.get_instance", entry["id"])
        assert err.value.errname == "ENOENT"


async def test_duplicate_username(daemon: InProcessDaemon) -> None:
    """Creating a second user with the same name is -32602 on user_create.username."""
    async with daemon.admin() as admin:
        with pytest.raises(ClientError) as err:
            await admin.call("user.create", {"username": "admin", "password": "x"})
        assert err.value.code == -32602
        assert err.value.extra[0][0] == "user_create.username"


@pytest.mark.parametrize("name", ["", "9abc", "a b", "x" * 33, "ü", "a:b"])
async def test_invalid_username(daemon: InProcessDaemon, name: str) -> None:
    """A username outside [A-Za-z_][A-Za-z0-9_.-]{0,31} is refused."""
    async with daemon.admin() as admin:
        with pytest.raises(ClientError) as err:
            await admin.call("user.create", {"username": name, "password": "x"})
        assert err.value.extra[0][0] == "user_create.username"


async def test_builtin_admin_is_protected(daemon: InProcessDaemon) -> None:
    """The built-in admin cannot be deleted, renamed or lose FULL_ADMIN."""
    async with daemon.admin() as admin:
        with pytest.raises(ClientError) as err:
            await admin.call("user.delete", 1)
        assert err.value.errname == "EPERM"
        with pytest.raises(ClientError) as err:
            await admin.call("user.update", 1, {"username": "root2", "roles": []})
        assert {e[0] for e in err.value.extra} == {"user_update.username", "user_update.roles"}


async def test_user_without_roles_sees_only_itself(daemon: InProcessDaemon) -> None:
    """Without ACCOUNT_READ, user.query returns only the caller's own entry."""
    async with daemon.admin() as admin, user_asset(admin, "dave", "pw-dave") as dave:
        async with daemon.client() as c:
            await c.login("dave", "pw-dave")
            assert await c.call("user.query") == [dave]
            with pytest.raises(ClientError) as err:
                await c.call("user.get_instance", 1)
            assert err.value.errname == "ENOENT"


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("user.create", [{"username": "x1", "password": "p"}]),
        ("user.delete", [1]),
        ("auth.twofactor.config", []),
        ("auth.twofactor.update", [{"window": 2}]),
        ("audit.query", []),
        ("alert.list", []),
        ("user.renew_2fa_secret", ["admin"]),
        ("user.unset_2fa_secret", ["admin"]),
        ("user.provisioning_uri", ["admin"]),
        ("user.twofactor_config", ["admin"]),
        ("user.twofactor_qr", ["admin"]),
        ("user.verify_twofactor_token", ["admin", "123456"]),
    ],
)
async def test_user_without_roles_cannot_touch_others(
    daemon: InProcessDaemon, method: str, params: list[object]
) -> None:
    """A user without roles gets EACCES or EPERM for anything about other users or the system."""
    async with daemon.admin() as admin, user_asset(admin, "eve", "pw-eve"):
        await admin.call("user.renew_2fa_secret", "admin")
        async with daemon.client() as c:
            await c.login("eve", "pw-eve")
            with pytest.raises(ClientError) as err:
                await c.call(method, *params)
            assert err.value.code == -32001
            assert err.value.errname in {"EACCES", "EPERM"}
        assert (await admin.call("auth.twofactor.config"))["window"] == 0
        assert (await admin.call("user.get_instance", 1))["twofactor_auth_configured"] is True


async def test_own_password_change(daemon: InProcessDaemon) -> None:
    """Any user may change their own password, and nothing else about themselves."""
    async with daemon.admin() as admin, user_asset(admin, "fay", "old-pw") as fay:
        async with daemon.client() as c:
            await c.login("fay", "old-pw")
            await c.call("user.update", fay["id"], {"password": "new-pw"})
            with pytest.raises(ClientError) as err:
                await c.call("user.update", fay["id"], {"roles": ["FULL_ADMIN"]})
            assert err.value.errname == "EACCES"
        async with daemon.client() as c:
            assert (await c.login("fay", "new-pw"))["response_type"] == "SUCCESS"


async def test_events_follow_permissions(daemon: InProcessDaemon) -> None:
    """user.query events reach readers of the collection and the entry's own user only."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "gil", "pw-gil") as gil,
        user_asset(admin, "hal", "pw-hal"),
    ):
        await admin.call("core.subscribe", "user.query")
        async with daemon.client() as c:
            await c.login("gil", "pw-gil")
            await c.call("core.subscribe", "user.query")
            with pytest.raises(ClientError) as err:
                await c.call("core.subscribe", "auth.twofactor.config")
            assert err.value.errname == "EACCES"
            await admin.call("user.update", gil["id"], {"full_name": "Gil G"})
            await admin.call("user.update", gil["id"] + 1, {"full_name": "Hal H"})
            own = await asyncio.wait_for(c.events.get(), 10)
            assert own["method"] == "collection_update"
            assert own["params"]["msg"] == "changed"
            assert own["params"]["collection"] == "user.query"
            assert own["params"]["fields"]["full_name"] == "Gil G"
            await asyncio.sleep(0.2)
            assert c.events.empty()
        seen = [await asyncio.wait_for(admin.events.get(), 10) for _ in range(2)]
        assert [e["params"]["fields"]["full_name"] for e in seen] == ["Gil G", "Hal H"]


@pytest.mark.settings(auth_throttle_after=1, auth_lock_after=1, auth_failure_delay=0)
async def test_every_change_emits_one_event(daemon: InProcessDaemon) -> None:
    """Each change of a user sends exactly one user.query event with the entry after it:
    added, changed (update, new and removed secret, a lock by failed logins), removed."""
    async with daemon.admin() as admin:
        await admin.call("core.subscribe", "user.query")
        ivy = await admin.call("user.create", {"username": "ivy", "password": "pw-ivy"})
        await admin.call("user.update", ivy["id"], {"full_name": "Ivy I"})
        await admin.call("user.renew_2fa_secret", "ivy")
        await admin.call("user.unset_2fa_secret", "ivy")
        async with daemon.client() as c:
            assert (await c.login("ivy", "wrong"))["response_type"] == "AUTH_ERR"
        await admin.call("user.update", ivy["id"], {"locked": False})
        await admin.call("user.delete", ivy["id"])
        events = [(await asyncio.wait_for(admin.events.get(), 10))["params"] for _ in range(7)]
        await asyncio.sleep(0.2)
        assert admin.events.empty()
    assert [(e["msg"], e["id"]) for e in events] == [
        ("added", ivy["id"]),
        *[("changed", ivy["id"])] * 5,
        ("removed", ivy["id"]),
    ]
    assert events[0]["fields"] == ivy
    assert [e["fields"]["full_name"] for e in events] == ["", *["Ivy I"] * 6]
    assert [e["fields"]["twofactor_auth_configured"] for e in events[1:5]] == [
        False,
        True,
        False,
        False,
    ]
    assert [e["fields"]["locked"] for e in events[3:]] == [False, True, False, False]


async def test_unknown_event(daemon: InProcessDaemon) -> None:
    """Subscribing to an unknown event is -32602 on event; unsubscribe of a stranger id is false."""
    async with daemon.admin() as admin:
        with pytest.raises(ClientError) as err:
            await admin.call("core.subscribe", "nope.query")
        assert err.value.extra[0][0] == "event"
        assert await admin.call("core.unsubscribe", "sub-999") is False
        sub = await admin.call("core.subscribe", "auth.twofactor.config")
        assert await admin.call("core.unsubscribe", sub) is True


async def test_twofactor_config_event(daemon: InProcessDaemon) -> None:
    """auth.twofactor.update emits auth.twofactor.config changed with the new entry."""
    async with daemon.admin() as admin:
        await admin.call("core.subscribe", "auth.twofactor.config")
        entry = await admin.call("auth.twofactor.update", {"window": 2, "issuer": "My NAS"})
        event = await asyncio.wait_for(admin.events.get(), 10)
        assert event["params"]["fields"] == entry
        assert entry == {
            "id": 1,
            "enabled": False,
            "window": 2,
            "services": {"ssh": False},
            "issuer": "My NAS",
            "enforce": False,
        }


@pytest.mark.parametrize("issuer", ["", "a:b", "x" * 65, " lead", "tab\there"])
async def test_invalid_issuer(daemon: InProcessDaemon, issuer: str) -> None:
    """An issuer must be 1..64 printable characters without ':' or surrounding spaces."""
    async with daemon.admin() as admin:
        with pytest.raises(ClientError) as err:
            await admin.call("auth.twofactor.update", {"issuer": issuer})
        assert err.value.extra[0][0] == "auth_twofactor_update.issuer"
        assert (await admin.call("auth.twofactor.config"))["issuer"] == "middlewared-2fa"


async def test_twofactor_changes_are_audited(daemon: InProcessDaemon) -> None:
    """2FA changes are audited as METHOD_CALL entries without secrets."""
    async with daemon.admin() as admin:
        entry = await admin.call("user.renew_2fa_secret", "admin")
        uri = entry["twofactor_config"]["provisioning_uri"]
        await admin.call("user.unset_2fa_secret", "admin")
        with pytest.raises(ClientError):
            await admin.call("auth.twofactor.update", {"window": 99})
        rows = await admin.call("audit.query", {"query-filters": [["event", "=", "METHOD_CALL"]]})
        methods = [(r["event_data"]["method"], r["success"]) for r in rows]
        assert methods == [
            ("user.renew_2fa_secret", True),
            ("user.unset_2fa_secret", True),
            ("auth.twofactor.update", False),
        ]
        secret = uri.split("secret=")[1].split("&")[0]
        assert secret not in str(rows)
