"""``audit.query`` in TrueNAS's shape, evaluated in SQL, and the retention of the audit
log (API.md §7, §9): a real daemon on loopback with a frozen clock."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from middlewared_2fa.cli.client import Client, ClientError
from middlewared_2fa.clock import FrozenClock
from middlewared_2fa.config import load_settings, plugin_settings
from middlewared_2fa.datastore.repositories import AuditRow
from middlewared_2fa.errors import StartupError
from middlewared_2fa.filters import filter_list
from middlewared_2fa.schema.common import QueryOptions
from tests.conftest import T0
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon, wait_until
from tests.helpers.plugins import load_plugin

DAY = 86400.0
#: What TrueNAS clients (the web UI's audit page, truenas_api_client scripts) send.
TRUENAS_REQUEST: dict[str, Any] = {
    "services": ["MIDDLEWARE"],
    "query-filters": [["event", "=", "AUTHENTICATION"]],
    "query-options": {"order_by": ["-message_timestamp"], "limit": 10},
}
ENTRY_KEYS = {
    "audit_id",
    "message_timestamp",
    "timestamp",
    "address",
    "username",
    "session",
    "service",
    "service_data",
    "event",
    "event_data",
    "success",
}
#: Seeded rows: enough that loading them all would show, spread over a few hours.
SEEDED = 1200
STEP = 7.25  # seconds between seeded rows: never two in one whole second


@pytest.fixture
async def admin(daemon: InProcessDaemon) -> AsyncIterator[Client]:
    async with daemon.admin() as c:
        yield c


async def query(client: Client, data: Any = None) -> Any:
    return await (client.call("audit.query") if data is None else client.call("audit.query", data))


def seeded_row(i: int) -> AuditRow:
    """Row ``i`` of a deterministic mix of users (and none), addresses, events,
    outcomes and event_data keys."""
    username = [None, "alice", "bob", "carol", "albert"][i % 5]
    event = "METHOD_CALL" if i % 3 == 0 else "AUTHENTICATION"
    data: dict[str, Any] = {"description": ["password login", "wrong OTP", "logout"][i % 3]}
    if event == "METHOD_CALL":
        data["method"] = ["user.update", "user.create"][i % 2]
    if i % 4:
        data["credentials"] = "LOGIN_PASSWORD" if i % 4 == 1 else "LOGIN_TWOFACTOR"
    if i % 7 == 0:
        data["error"] = "EACCES"
    return AuditRow(
        audit_id=str(uuid.UUID(int=i + 1)),
        timestamp=T0 - 3 * 3600 + i * STEP,
        event=event,
        username=username,
        address=None if i % 11 == 0 else f"10.0.{i % 9}.{i % 8}",
        success=i % 2 == 0,
        event_data=data,
        session=None if i % 6 == 0 else f"session-{i % 13}",
    )


async def seed(daemon: InProcessDaemon, rows: list[AuditRow]) -> None:
    """Write rows through the repository, as the framework does (one group commit)."""
    await asyncio.gather(*(daemon.mw.repos.audit.append(r) for r in rows))


def flat(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry with ``event_data.<key>`` fields (None when absent) and ``timestamp`` in
    milliseconds, for filter_list."""
    view = {k: v for k, v in entry.items() if k not in ("event_data", "service_data")}
    view["timestamp"] = entry["timestamp"]["$date"]
    for key in ("method", "description", "credentials", "error"):
        view[f"event_data.{key}"] = entry["event_data"].get(key)
    return view


# -- the TrueNAS shape ----------------------------------------------------------------


async def test_truenas_client_request(
    daemon: InProcessDaemon, admin: Client, clock: FrozenClock
) -> None:
    """The request TrueNAS clients send gives the 10 newest AUTHENTICATION entries,
    newest first, each an AuditEntry with the session id and its credentials."""
    async with user_asset(admin, "alice", "pw-alice"):
        for n in range(12):
            clock.advance(1.5)
            async with daemon.client() as c:
                password = "pw-alice" if n % 3 else "wrong-password"
                await c.call(
                    "auth.login_ex",
                    {"mechanism": "PASSWORD_PLAIN", "username": "alice", "password": password},
                )
                if n == 11:
                    sessions = await c.call("auth.sessions")
                    last_session = [s for s in sessions if s["current"]][0]["id"]
        clock.advance(1.5)
        await admin.call("user.update", 1, {"full_name": "The Admin"})  # a METHOD_CALL entry
    reply = await admin.request("audit.query", [TRUENAS_REQUEST])
    entries = reply["result"]
    assert len(entries) == 10
    assert all(set(e) == ENTRY_KEYS for e in entries)
    assert all(e["event"] == "AUTHENTICATION" for e in entries)
    times = [e["timestamp"]["$date"] for e in entries]
    assert times == sorted(times, reverse=True) and len(set(times)) == 10
    newest = entries[0]
    assert newest["timestamp"] == {"$date": int(round((T0 + 12 * 1.5) * 1000))}
    assert newest["message_timestamp"] == int(T0 + 12 * 1.5)
    assert (newest["service"], newest["service_data"]) == ("MIDDLEWARE", {})
    assert (newest["username"], newest["address"], newest["success"]) == (
        "alice",
        "127.0.0.1",
        True,
    )
    assert newest["session"] == last_session
    assert newest["event_data"] == {
        "description": "password login",
        "credentials": "LOGIN_PASSWORD",
    }
    failed = [e for e in entries if not e["success"]]
    assert failed and all("credentials" not in e["event_data"] for e in failed)
    assert "pw-alice" not in json.dumps(entries) and "wrong-password" not in json.dumps(entries)


async def test_default_is_every_middleware_entry_oldest_first(
    daemon: InProcessDaemon, admin: Client, clock: FrozenClock
) -> None:
    """No params, ``{}`` and the explicit defaults answer the same: every entry, in the
    order written; a METHOD_CALL entry names its method."""
    clock.advance(1)
    await admin.call("auth.twofactor.update", {"window": 1})
    everything = await query(admin)
    assert everything == await query(admin, {})
    assert everything == await query(
        admin, {"services": ["MIDDLEWARE"], "query-filters": [], "query-options": {}}
    )
    assert [e["event"] for e in everything] == ["AUTHENTICATION", "METHOD_CALL"]
    assert everything[1]["event_data"] == {
        "description": "call auth.twofactor.update",
        "method": "auth.twofactor.update",
        "credentials": "LOGIN_PASSWORD",
    }
    stored = await daemon.mw.repos.audit.list()
    assert [e["audit_id"] for e in everything] == [r.audit_id for r in stored]
    # No services asked for: nothing, also for count and get.
    assert await query(admin, {"services": []}) == []
    assert await query(admin, {"services": [], "query-options": {"count": True}}) == 0
    with pytest.raises(ClientError) as none:
        await query(admin, {"services": [], "query-options": {"get": True}})
    assert none.value.errname == "ENOENT"


# -- filters and options, in SQL --------------------------------------------------------

#: Filters whose meaning filter_list gives too (no ordering comparison meets a null).
SAME_AS_FILTER_LIST: list[list[list[Any]]] = [
    [["event", "=", "AUTHENTICATION"]],
    [["event", "!=", "AUTHENTICATION"]],
    [["username", "=", None]],
    [["username", "!=", None]],
    [["username", "!=", "alice"]],
    [["username", "in", ["alice", None]]],
    [["username", "in", []]],
    [["username", "nin", ["alice", None]]],
    [["username", "nin", ["alice"]]],
    [["username", "^", "al"]],
    [["username", "^", "AL"]],
    [["username", "$", "rt"]],
    [["username", "^", ""]],
    [["address", "$", ".7"]],
    [["success", "=", False]],
    [["success", "!=", True], ["event", "=", "METHOD_CALL"]],
    [["success", "in", [True]]],
    [["session", "=", "session-3"], ["username", "=", "alice"]],
    [["session", "in", ["session-1", "session-2", None]]],
    [["service", "=", "MIDDLEWARE"]],
    [["service", "!=", "MIDDLEWARE"]],
    [["message_timestamp", ">", T0 - 3600]],
    [["message_timestamp", ">=", T0 - 3600 + 0.5]],
    [["message_timestamp", "<", T0 - 7000]],
    [["message_timestamp", "<=", T0 - 7000]],
    [["message_timestamp", "=", int(T0 - 3 * 3600 + 4 * STEP)]],
    [["message_timestamp", "!=", int(T0 - 3 * 3600 + 4 * STEP)]],
    [["message_timestamp", "in", [int(T0 - 3 * 3600), int(T0 - 3 * 3600 + STEP), 5]]],
    [["message_timestamp", "nin", [int(T0 - 3 * 3600)]]],
    [["message_timestamp", "=", T0 - 3 * 3600 + 0.5]],
    [["audit_id", "=", str(uuid.UUID(int=77))]],
    [["audit_id", ">", str(uuid.UUID(int=1100))]],
    [["event_data.method", "=", "user.update"]],
    [["event_data.credentials", "=", None]],
    [["event_data.credentials", "in", ["LOGIN_TWOFACTOR"]]],
    [["event_data.description", "^", "wrong"]],
    [["event_data.error", "!=", None], ["success", "=", True]],
    [["event_data.description", "$", "login"], ["message_timestamp", "<", T0 - 5000]],
]
OPTIONS: list[dict[str, Any]] = [
    {},
    {"order_by": ["-message_timestamp"], "limit": 10},
    {"order_by": ["-message_timestamp"], "limit": 10, "offset": 25},
    {"order_by": ["event", "-message_timestamp"], "limit": 40},
    {"order_by": ["success", "-audit_id"], "offset": 1100},
    {"order_by": ["-event", "timestamp"], "offset": 3, "limit": 7},
    {"order_by": ["-success", "-event_data.description", "message_timestamp"]},
    {"limit": 5, "offset": 5},
    {"offset": 100000},
]


@pytest.fixture
async def everything(daemon: InProcessDaemon, admin: Client) -> list[dict[str, Any]]:
    """1200 seeded entries (and admin's login): the whole log as audit.query gives it."""
    await seed(daemon, [seeded_row(i) for i in range(SEEDED)])
    entries: list[dict[str, Any]] = await query(admin)
    assert len(entries) == SEEDED + 1
    return entries


def expected(
    entries: list[dict[str, Any]], filters: list[list[Any]], options: dict[str, Any]
) -> Any:
    """What filter_list makes of the whole log (the Python meaning of the query)."""
    views = [flat(e) for e in entries]
    found = filter_list(views, filters, QueryOptions(**options))
    if isinstance(found, list):
        return [e["audit_id"] for e in found]
    if isinstance(found, dict):
        return found["audit_id"]
    return found


def ids(found: Any) -> Any:
    if isinstance(found, list):
        return [e["audit_id"] for e in found]
    return found["audit_id"] if isinstance(found, dict) else found


@pytest.mark.parametrize("filters", SAME_AS_FILTER_LIST, ids=lambda f: json.dumps(f)[:60])
async def test_filters_mean_what_filter_list_means(
    admin: Client, everything: list[dict[str, Any]], filters: list[list[Any]]
) -> None:
    """Each filter selects in SQL what filter_list selects in Python, over 1200 rows,
    with every option combination, count and get."""
    for options in OPTIONS:
        data = {"query-filters": filters, "query-options": options}
        assert ids(await query(admin, data)) == expected(everything, filters, options), options
    counted = await query(admin, {"query-filters": filters, "query-options": {"count": True}})
    assert counted == len(expected(everything, filters, {}))
    if counted:
        options = {"order_by": ["-message_timestamp"], "get": True}
        got = await query(admin, {"query-filters": filters, "query-options": options})
        assert set(got) == ENTRY_KEYS
        assert got["audit_id"] == expected(everything, filters, options)
    else:
        with pytest.raises(ClientError) as none:
            await query(admin, {"query-filters": filters, "query-options": {"get": True}})
        assert (none.value.code, none.value.errname) == (-32001, "ENOENT")


async def test_time_filters_and_nulls(admin: Client, everything: list[dict[str, Any]]) -> None:
    """``timestamp`` compares with ``{"$date": ms}`` as shown; ordering comparisons and
    ``^``/``$`` never match a null; nulls sort first ascending unless asked otherwise;
    huge numbers and pages are no error."""
    by_id = {e["audit_id"]: e for e in everything}
    some = everything[500]["timestamp"]
    after = await query(admin, {"query-filters": [["timestamp", ">", some]]})
    assert ids(after) == [e["audit_id"] for e in everything[501:]]
    same = await query(admin, {"query-filters": [["timestamp", "=", some]]})
    assert ids(same) == [everything[500]["audit_id"]]
    upto = await query(
        admin, {"query-filters": [["timestamp", "<=", some]], "query-options": {"count": True}}
    )
    assert upto == 501
    named = await query(admin, {"query-filters": [["username", ">", "b"]]})
    assert {by_id[i]["username"] for i in ids(named)} == {"bob", "carol"}
    ordered = await query(admin, {"query-options": {"order_by": ["username"], "limit": 3}})
    assert [e["username"] for e in ordered] == [None, None, None]
    last = await query(
        admin, {"query-options": {"order_by": ["nulls_last:username"], "offset": SEEDED - 3}}
    )
    assert [e["username"] for e in last] == [None] * 4
    big = 10**400
    assert await query(admin, {"query-filters": [["message_timestamp", ">", big]]}) == []
    assert (
        len(await query(admin, {"query-filters": [["message_timestamp", "<", big]]})) == SEEDED + 1
    )
    assert (
        len(await query(admin, {"query-filters": [["timestamp", "<", {"$date": 1e308}]]}))
        == SEEDED + 1
    )
    huge = {"limit": 10**30, "offset": 10**30}
    assert await query(admin, {"query-options": huge}) == []
    assert await query(admin, {"query-options": {"limit": 10**30}}) == everything


async def test_queries_run_in_sql_through_the_time_index(
    daemon: InProcessDaemon,
    admin: Client,
    everything: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The TrueNAS request reads 10 rows from SQLite, not the table: its plan walks the
    time index (no sort), a time range searches it, and values are bound parameters."""
    db = daemon.mw.db
    seen: list[tuple[str, tuple[Any, ...], int]] = []
    fetch_all = db.fetch_all

    async def spy(sql: str, parameters: Any = ()) -> Any:
        rows = await fetch_all(sql, parameters)
        seen.append((sql, tuple(parameters), len(rows)))
        return rows

    monkeypatch.setattr(db, "fetch_all", spy)
    entries = await query(admin, TRUENAS_REQUEST)
    assert len(entries) == 10
    [(sql, params, fetched)] = [s for s in seen if "FROM audit" in s[0]]
    assert fetched == 10
    assert "AUTHENTICATION" not in sql and "AUTHENTICATION" in params
    plan = " ".join(str(r[3]) for r in await fetch_all(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "audit_timestamp" in plan and "TEMP B-TREE" not in plan, plan

    seen.clear()
    since = {"$date": int((T0 - 2700) * 1000)}
    recent = await query(admin, {"query-filters": [["timestamp", ">=", since]]})
    assert ids(recent) == [
        e["audit_id"] for e in everything if e["timestamp"]["$date"] >= since["$date"]
    ]
    [(sql, params, fetched)] = [s for s in seen if "FROM audit" in s[0]]
    assert fetched == len(recent) < SEEDED / 10
    plan = " ".join(str(r[3]) for r in await fetch_all(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "SEARCH audit USING INDEX audit_timestamp (timestamp>?)" in plan, plan

    # A user's entries, newest first: the username index, in time order (no sort).
    seen.clear()
    mine = await query(
        admin,
        {
            "query-filters": [["username", "=", "admin"]],
            "query-options": {"order_by": ["-message_timestamp"], "limit": 5},
        },
    )
    assert mine and all(e["username"] == "admin" for e in mine)
    [(sql, params, fetched)] = [s for s in seen if "FROM audit" in s[0]]
    assert fetched == len(mine) <= 5
    plan = " ".join(str(r[3]) for r in await fetch_all(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "USING INDEX audit_username (username=?)" in plan and "TEMP B-TREE" not in plan, plan

    # A value that looks like SQL is only ever a value.
    injected = await query(admin, {"query-filters": [["username", "=", "x' OR '1'='1"]]})
    assert injected == []


# -- bad input ------------------------------------------------------------------------

BAD: list[tuple[Any, str]] = [
    ({"services": ["SMB"]}, "data.services.0"),
    ({"services": ["MIDDLEWARE", "SUDO"]}, "data.services.1"),
    ({"services": "MIDDLEWARE"}, "data.services"),
    ({"query-filters": [["nope", "=", 1]]}, "data.query-filters.0.0"),
    ({"query-filters": [["event", "=", "X"], ["event_data", "=", {}]]}, "data.query-filters.1.0"),
    ({"query-filters": [["service_data", "=", {}]]}, "data.query-filters.0.0"),
    ({"query-filters": [["event_data.password", "=", "x"]]}, "data.query-filters.0.0"),
    ({"query-filters": [["username", "=", 5]]}, "data.query-filters.0.2"),
    ({"query-filters": [["username", "=", ["alice"]]]}, "data.query-filters.0.2"),
    ({"query-filters": [["username", "in", ["alice", 1]]]}, "data.query-filters.0.2"),
    ({"query-filters": [["username", ">", None]]}, "data.query-filters.0.2"),
    ({"query-filters": [["username", "=", "\ud800"]]}, "data.query-filters.0.2"),
    ({"query-filters": [["success", "=", 1]]}, "data.query-filters.0.2"),
    ({"query-filters": [["success", "^", "t"]]}, "data.query-filters.0.1"),
    ({"query-filters": [["timestamp", ">", 5]]}, "data.query-filters.0.2"),
    ({"query-filters": [["timestamp", ">", {"$date": "5"}]]}, "data.query-filters.0.2"),
    ({"query-filters": [["timestamp", ">", {"$date": 5, "x": 1}]]}, "data.query-filters.0.2"),
    ({"query-filters": [["message_timestamp", ">", "5"]]}, "data.query-filters.0.2"),
    ({"query-filters": [["message_timestamp", "=", True]]}, "data.query-filters.0.2"),
    ({"query-filters": [["message_timestamp", "^", "1"]]}, "data.query-filters.0.1"),
    ({"query-filters": [["username", "in", ["a"] * 501]]}, "data.query-filters.0.2"),
    ({"query-filters": [["username", "=", "a"]] * 51}, "data.query-filters"),
    ({"query-filters": [["username", "~", "a"]]}, "data.query-filters"),
    ({"query-filters": [["username", "="]]}, "data.query-filters"),
    ({"query-filters": "event"}, "data.query-filters"),
    ({"query-options": {"order_by": ["nope"]}}, "data.query-options.order_by.0"),
    ({"query-options": {"order_by": ["event", "-event_data"]}}, "data.query-options.order_by.1"),
    ({"query-options": {"order_by": ["event"] * 17}}, "data.query-options.order_by"),
    ({"query-options": {"limit": -1}}, "data.query-options.limit"),
    ({"query-options": {"select": ["event"]}}, "data.query-options.select"),
    ({"query_filters": []}, "data.query_filters"),
    ([["event", "=", "AUTHENTICATION"]], "data"),
]


@pytest.mark.parametrize(("data", "attribute"), BAD, ids=lambda v: json.dumps(v)[:50])
async def test_bad_input_is_invalid_params_with_a_path(
    admin: Client, data: Any, attribute: str
) -> None:
    """Wrong services, unknown fields, wrong value types and bad options are -32602 on
    the attribute at fault (API.md §2), never -32603."""
    with pytest.raises(ClientError) as err:
        await query(admin, data)
    assert err.value.code == -32602, err.value.data
    assert err.value.errno == 22
    assert attribute in [a for a, _m, _e in err.value.extra], err.value.extra


async def test_force_sql_filters_is_accepted(admin: Client) -> None:
    """TrueNAS's ``force_sql_filters`` option is accepted (filters are always SQL)."""
    options = {"force_sql_filters": True, "order_by": ["-message_timestamp"], "limit": 1}
    [entry] = await query(admin, {"query-options": options})
    assert entry["event"] == "AUTHENTICATION"


# -- roles -----------------------------------------------------------------------------


async def test_needs_system_audit_read(daemon: InProcessDaemon, admin: Client) -> None:
    """SYSTEM_AUDIT_READ and READONLY_ADMIN read the log; other roles get EACCES."""
    for username, roles, allowed in [
        ("auditor", ["SYSTEM_AUDIT_READ"], True),
        ("reader", ["READONLY_ADMIN"], True),
        ("accounts", ["ACCOUNT_WRITE"], False),
        ("nobody", [], False),
    ]:
        async with user_asset(admin, username, "pw-" + username, roles=roles):
            async with daemon.client() as c:
                await c.login(username, "pw-" + username)
                if allowed:
                    mine = await query(c, {"query-filters": [["username", "=", username]]})
                    assert [e["event_data"]["description"] for e in mine] == ["password login"]
                else:
                    with pytest.raises(ClientError) as err:
                        await query(c, TRUENAS_REQUEST)
                    assert (err.value.code, err.value.errname) == (-32001, "EACCES")


# -- retention -------------------------------------------------------------------------


def aged(days: float, now: float, tag: str, count: int = 3) -> list[AuditRow]:
    return [
        AuditRow(
            audit_id=str(uuid.uuid4()),
            timestamp=now - days * DAY + i,
            event="AUTHENTICATION",
            username=tag,
            address="10.0.0.1",
            success=True,
            event_data={"description": tag},
        )
        for i in range(count)
    ]


async def tags(daemon: InProcessDaemon) -> dict[str, int]:
    """How many entries of each seeded tag (``username``) are left."""
    found: dict[str, int] = {}
    for row in await daemon.mw.repos.audit.list():
        if row.username and row.username.startswith("age-"):
            found[row.username] = found.get(row.username, 0) + 1
    return found


@pytest.mark.settings(audit_retention_days=2)
async def test_retention_at_start_up(daemon: InProcessDaemon, clock: FrozenClock) -> None:
    """At start-up, entries older than ``audit_retention_days`` (by the middleware's
    clock) are deleted before anyone can query them; younger ones stay."""
    now = clock.time()
    await seed(daemon, aged(3, now, "age-3") + aged(1, now, "age-1") + aged(1.99, now, "age-1.99"))
    assert await tags(daemon) == {"age-3": 3, "age-1": 3, "age-1.99": 3}
    await daemon.restart()
    assert await tags(daemon) == {"age-1": 3, "age-1.99": 3}
    clock.advance(0.5 * DAY)
    await daemon.restart()
    assert await tags(daemon) == {"age-1": 3}
    await daemon.restart(audit_retention_days=1)
    assert await tags(daemon) == {}
    async with daemon.admin() as admin:  # the log goes on
        assert len(await query(admin, TRUENAS_REQUEST)) >= 1


@pytest.mark.settings(audit_retention_days=2)
async def test_retention_runs_daily_by_the_clock(
    daemon: InProcessDaemon, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After start-up the deletion runs once a day of the middleware's clock: entries
    that age past the retention meanwhile wait for the daily run, then go; the next
    run is a day later."""
    monkeypatch.setattr(type(daemon.mw.services["audit"]), "retention_poll", 0.01)
    await daemon.restart()  # the task now looks at the clock every 10 ms
    started = clock.time()
    await seed(
        daemon,
        aged(1.5, started, "age-1.5") + aged(0.5, started, "age-0.5") + aged(0, started, "age-0"),
    )
    clock.advance(0.75 * DAY)  # age-1.5 is 2.25 days old, but the day is not over
    await asyncio.sleep(0.2)
    assert await tags(daemon) == {"age-1.5": 3, "age-0.5": 3, "age-0": 3}
    clock.advance(0.3 * DAY)  # a day since start-up: the daily run
    await wait_until(lambda: gone(daemon, "age-1.5"), timeout=5)
    assert await tags(daemon) == {"age-0.5": 3, "age-0": 3}
    await seed(daemon, aged(0, clock.time(), "age-new"))
    clock.advance(0.5 * DAY)  # age-0.5 is 2.05 days old: waits for the next run
    await asyncio.sleep(0.2)
    assert await tags(daemon) == {"age-0.5": 3, "age-0": 3, "age-new": 3}
    clock.advance(0.51 * DAY)  # a day after the first run
    await wait_until(lambda: gone(daemon, "age-0"), timeout=5)
    assert await tags(daemon) == {"age-new": 3}


async def gone(daemon: InProcessDaemon, tag: str) -> bool:
    """No entry tagged ``tag`` is left (for wait_until)."""
    return tag not in await tags(daemon)


def test_retention_setting_is_a_flat_key() -> None:
    """``audit_retention_days`` is the audit plugin's flat key: from the environment
    (``MIDDLEWARED_2FA_AUDIT_RETENTION_DAYS``) and the file, 1..3650, default 90."""
    model = load_plugin("audit").AuditSettings
    default = plugin_settings(load_settings(environ={}), [("audit", model)])
    assert default[model].audit_retention_days == 90
    env = load_settings(environ={"MIDDLEWARED_2FA_AUDIT_RETENTION_DAYS": "7"})
    assert plugin_settings(env, [("audit", model)])[model].audit_retention_days == 7
    for bad in ("0", "3651", "1.5", "ninety"):
        env = load_settings(environ={"MIDDLEWARED_2FA_AUDIT_RETENTION_DAYS": bad})
        with pytest.raises(StartupError, match="audit_retention_days"):
            plugin_settings(env, [("audit", model)])
