"""``system.ntpserver.*`` and ``system.time_sync.*`` (API.md §6) against a loopback NTP
responder (tests/helpers/ntp.py), with the daemon's TOTP clock frozen.

The responder's clock is the daemon's frozen clock plus a chosen offset, so every
offset below is exact up to the round trip.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ntplib
import pytest

from middlewared_2fa.cli.client import Client, ClientError
from middlewared_2fa.clock import FrozenClock
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon, wait_until
from tests.helpers.ntp import NtpResponder


@pytest.fixture
async def admin(daemon: InProcessDaemon) -> AsyncIterator[Client]:
    async with daemon.admin() as c:
        yield c


@pytest.fixture
def ntp(clock: FrozenClock) -> Iterator[NtpResponder]:
    """A responder in step with the daemon's frozen clock."""
    with NtpResponder(now=clock.time) as responder:
        yield responder


async def add_server(admin: Client, ntp: NtpResponder, **fields: Any) -> dict[str, Any]:
    return dict(
        await admin.call(
            "system.ntpserver.create", {"address": ntp.host, "port": ntp.port, **fields}
        )
    )


async def alerts_of(admin: Client, klass: str) -> list[dict[str, Any]]:
    return [a for a in await admin.call("alert.list") if a["klass"] == klass]


def invalid(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    """attribute -> message of a -32602 error."""
    assert exc.value.code == -32602, exc.value.data
    return {attr: msg for attr, msg, _errno in exc.value.extra}


# -- system.ntpserver ------------------------------------------------------------------


@pytest.mark.settings(ntp_timeout=1.0)
async def test_ntpserver_crud_persists(daemon: InProcessDaemon, admin: Client) -> None:
    """create fills the defaults, update changes only the given keys, delete removes the
    entry, and entries survive a restart (SQLite)."""
    # Only names that never resolve (RFC 6761) and loopback: each change starts a check.
    entry = await admin.call("system.ntpserver.create", {"address": "time.example.invalid"})
    assert entry == {
        "id": entry["id"],
        "address": "time.example.invalid",
        "port": 123,
        "iburst": True,
        "prefer": False,
        "minpoll": 6,
        "maxpoll": 10,
    }
    other = await admin.call(
        "system.ntpserver.create",
        {"address": "::1", "port": 1123, "iburst": False, "minpoll": 4, "maxpoll": 17},
    )
    changed = await admin.call("system.ntpserver.update", entry["id"], {"prefer": True})
    assert changed == {**entry, "prefer": True}
    await daemon.restart()
    async with daemon.admin() as c:
        assert await c.call("system.ntpserver.query") == [changed, other]
        assert await c.call("system.ntpserver.query", [["port", "=", 1123]], {"get": True}) == other
        assert await c.call("system.ntpserver.delete", entry["id"]) is True
        assert await c.call("system.ntpserver.query") == [other]


#: (fields of ntp_server_create, the attribute the error must name)
INVALID_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"address": "bad_name.example"}, "address"),
    ({"address": "-lead.example"}, "address"),
    ({"address": "a..b"}, "address"),
    ({"address": "999.1.1.1"}, "address"),
    ({"address": "[::1]"}, "address"),
    ({"address": ""}, "address"),
    ({"address": "a" * 254}, "address"),
    ({"address": 5}, "address"),
    ({"address": "ntp.example", "port": 0}, "port"),
    ({"address": "ntp.example", "port": 65536}, "port"),
    ({"address": "ntp.example", "port": "123"}, "port"),
    ({"address": "ntp.example", "minpoll": 3}, "minpoll"),
    ({"address": "ntp.example", "maxpoll": 18}, "maxpoll"),
    ({"address": "ntp.example", "minpoll": 10, "maxpoll": 6}, "maxpoll"),
    ({"address": "ntp.example", "iburst": 1}, "iburst"),
    ({"address": "ntp.example", "burst": True}, "burst"),
    ({"port": 123}, "address"),
]


async def test_ntpserver_create_validation(admin: Client) -> None:
    """Invalid fields are -32602 on ntp_server_create.<field> (address: host name per
    RFC 1123 or IP address; port 1..65535; minpoll <= maxpoll within 4..17; no unknown
    keys, no coercion), and nothing is stored."""
    for fields, attribute in INVALID_CREATES:
        with pytest.raises(ClientError) as exc:
            await admin.call("system.ntpserver.create", fields)
        assert f"ntp_server_create.{attribute}" in invalid(exc), (fields, exc.value.extra)
    assert await admin.call("system.ntpserver.query") == []


async def test_ntpserver_update_and_delete_errors(admin: Client) -> None:
    """update validates the merged entry (minpoll <= maxpoll, no duplicate address and
    port); unknown ids are ENOENT; a failed update changes nothing."""
    first = await admin.call("system.ntpserver.create", {"address": "ntp1.invalid"})
    second = await admin.call("system.ntpserver.create", {"address": "NTP1.invalid", "port": 124})
    with pytest.raises(ClientError) as exc:
        await admin.call("system.ntpserver.create", {"address": "ntp1.invalid."})
    assert "ntp_server_create.address" in invalid(exc)
    with pytest.raises(ClientError) as exc:
        await admin.call("system.ntpserver.update", first["id"], {"minpoll": 11})
    assert "ntp_server_update.maxpoll" in invalid(exc)
    with pytest.raises(ClientError) as exc:
        await admin.call("system.ntpserver.update", second["id"], {"port": 123})
    assert "ntp_server_update.address" in invalid(exc)
    assert await admin.call("system.ntpserver.query") == [first, second]
    for method, params in [
        ("system.ntpserver.update", [9999, {"port": 5}]),
        ("system.ntpserver.delete", [9999]),
    ]:
        with pytest.raises(ClientError) as exc:
            await admin.call(method, *params)
        assert (exc.value.code, exc.value.errname) == (-32001, "ENOENT")
    with pytest.raises(ClientError) as exc:
        await admin.call("system.ntpserver.delete", 2**70)
    assert exc.value.code == -32602


async def test_roles(daemon: InProcessDaemon, admin: Client) -> None:
    """ntpserver needs SYSTEM_SECURITY_READ/WRITE and check needs WRITE; status is open to
    every authenticated user but not before login."""
    async with (
        user_asset(admin, "plain"),
        user_asset(admin, "reader", roles=["SYSTEM_SECURITY_READ"]),
        daemon.client() as anonymous,
        daemon.client() as plain,
        daemon.client() as reader,
    ):
        await plain.login("plain", "user-password")
        await reader.login("reader", "user-password")
        with pytest.raises(ClientError) as exc:
            await anonymous.call("system.time_sync.status")
        assert exc.value.errname == "ENOTAUTHENTICATED"
        assert (await plain.call("system.time_sync.status"))["state"] == "UNCONFIGURED"
        assert await reader.call("system.ntpserver.query") == []
        for c, method, params in [
            (plain, "system.ntpserver.query", []),
            (plain, "system.time_sync.check", []),
            (reader, "system.time_sync.check", []),
            (reader, "system.ntpserver.create", [{"address": "ntp.example"}]),
        ]:
            with pytest.raises(ClientError) as exc:
                await c.call(method, *params)
            assert exc.value.errname == "EACCES", method


# -- the check ---------------------------------------------------------------------------


async def test_unconfigured(admin: Client) -> None:
    """Without servers the state is UNCONFIGURED with an unknown offset."""
    status = await admin.call("system.time_sync.check")
    assert status == {
        "state": "UNCONFIGURED",
        "offset": None,
        "max_offset": 30,
        "checked_at": status["checked_at"],
        "servers": [],
    }


async def test_synced(admin: Client, ntp: NtpResponder, clock: FrozenClock) -> None:
    """A server in step with the daemon's clock gives SYNCED, an offset near 0 and the
    server's stratum and leap indicator; status shows the new server without a check."""
    await add_server(admin, ntp)
    status = await admin.call("system.time_sync.status")
    assert status["state"] == "SYNCED"
    assert abs(status["offset"]) < 0.5
    assert status["checked_at"] == clock.time()
    [server] = status["servers"]
    assert server["address"] == ntp.host and server["port"] == ntp.port
    assert (server["reachable"], server["stratum"], server["leap"], server["error"]) == (
        True,
        2,
        0,
        None,
    )
    assert 0 <= server["delay"] < 5


@pytest.mark.parametrize("skew", [90.0, -45.0, 30.5])
async def test_skewed_sign_and_alert(admin: Client, ntp: NtpResponder, skew: float) -> None:
    """A server ahead of the daemon gives a positive offset (local clock behind), one
    behind a negative offset; beyond max_offset the state is SKEWED and the TimeSkew
    alert (WARNING while 2FA is off) says by how much; in step again, it clears."""
    ntp.offset = skew
    await add_server(admin, ntp)
    status = await admin.call("system.time_sync.check")
    assert status["state"] == "SKEWED"
    assert status["offset"] == pytest.approx(skew, abs=0.5)
    [alert] = await alerts_of(admin, "TimeSkew")
    assert alert["level"] == "WARNING"
    assert f"{skew:+.1f} s" in alert["formatted"]
    assert ("behind" if skew > 0 else "ahead of") in alert["formatted"]
    ntp.offset = 0.0
    assert (await admin.call("system.time_sync.check"))["state"] == "SYNCED"
    assert await alerts_of(admin, "TimeSkew") == []


async def test_offset_within_the_limit_is_synced(admin: Client, ntp: NtpResponder) -> None:
    """An offset within max_offset (30 s) is SYNCED and keeps its sign."""
    ntp.offset = -29.0
    await add_server(admin, ntp)
    status = await admin.call("system.time_sync.check")
    assert (status["state"], round(status["offset"])) == ("SYNCED", -29)


@pytest.mark.settings(time_sync_max_offset=5.0)
async def test_max_offset_setting(admin: Client, ntp: NtpResponder) -> None:
    """time_sync_max_offset sets the limit and is reported as max_offset."""
    ntp.offset = 6.0
    await add_server(admin, ntp)
    status = await admin.call("system.time_sync.check")
    assert (status["state"], status["max_offset"]) == ("SKEWED", 5)


async def test_median_of_usable_servers(admin: Client, clock: FrozenClock) -> None:
    """The offset is the median of the usable servers; unusable ones are listed but
    ignored, so one wild server cannot make a good clock SKEWED."""
    with (
        NtpResponder(now=clock.time, offset=1.0) as a,
        NtpResponder(now=clock.time, offset=3.0) as b,
        NtpResponder(now=clock.time, offset=500.0) as wild,
        NtpResponder(now=clock.time, offset=-900.0, stratum=16) as unsynced,
    ):
        for responder in (a, b, wild, unsynced):
            await add_server(admin, responder)
        status = await admin.call("system.time_sync.check")
    assert status["state"] == "SYNCED"
    assert status["offset"] == pytest.approx(3.0, abs=0.5)
    assert [s["reachable"] for s in status["servers"]] == [True, True, True, False]
    assert status["servers"][3]["offset"] is None


#: (how the responder misbehaves, the kind of error the server entry must carry)
UNUSABLE_ANSWERS: list[tuple[dict[str, Any], str]] = [
    ({"stratum": 16}, "unsynchronized"),
    ({"leap": 3}, "unsynchronized"),
    ({"truncate": 20}, "malformed"),
    ({"truncate": 0}, "malformed"),
    ({"stratum": 0, "kiss_code": "DENY"}, "kiss-o'-death"),
    ({"echo_origin": False}, "bogus"),
]


@pytest.mark.settings(ntp_timeout=1.0)
async def test_unusable_answers(admin: Client, clock: FrozenClock) -> None:
    """A server that answers stratum 16, leap 3, a truncated or empty packet, a
    kiss-o'-death or a packet that does not echo our timestamp is unreachable (RFC 5905
    §7.3, §7.4, §8): state UNREACHABLE with the reason, never -32603."""
    for behaviour, kind in UNUSABLE_ANSWERS:
        with NtpResponder(now=clock.time, **behaviour) as ntp:
            entry = await add_server(admin, ntp)
            status = await admin.call("system.time_sync.check")
        await admin.call("system.ntpserver.delete", entry["id"])
        assert (status["state"], status["offset"]) == ("UNREACHABLE", None), behaviour
        [server] = status["servers"]
        assert server["reachable"] is False and server["offset"] is None
        assert server["error"].startswith(kind + ":"), (behaviour, server["error"])
        if "stratum" in behaviour or "leap" in behaviour:
            expected = (behaviour.get("stratum", 2), behaviour.get("leap", 0))
            assert (server["stratum"], server["leap"]) == expected


@pytest.mark.settings(ntp_timeout=3.0)
async def test_silent_server_does_not_block_the_daemon(
    daemon: InProcessDaemon, admin: Client, clock: FrozenClock
) -> None:
    """While a check waits for a silent server the daemon answers other calls; the check
    returns UNREACHABLE ("timeout") after about ntp_timeout."""
    loop = asyncio.get_running_loop()
    with NtpResponder(now=clock.time, silent=True) as ntp:
        await add_server(admin, ntp)
        started = loop.time()
        check = asyncio.ensure_future(admin.call("system.time_sync.check"))
        await wait_until(lambda: ntp.requests >= 2)  # the create's check and ours
        async with daemon.client() as other:
            assert await other.call("core.ping") == "pong"
        assert (await admin.call("auth.me"))["pw_name"] == "admin"
        assert await admin.call("system.ntpserver.query", [], {"count": True}) == 1
        assert not check.done()
        status = await check
        elapsed = loop.time() - started
    assert 2.5 <= elapsed < 30
    assert status["state"] == "UNREACHABLE"
    assert status["servers"][0]["error"] == "timeout: no answer within 3 s"


@pytest.mark.settings(ntp_timeout=1.0)
async def test_unresolvable_names(admin: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that does not resolve is UNREACHABLE with a "dns" error: ntp.invalid is
    never sent to a resolver (RFC 6761 §6.4), and a getaddrinfo error (which ntplib does
    not wrap) is caught too."""
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "unresolvable.example":  # a resolver's answer, without the network
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    await admin.call("system.ntpserver.create", {"address": "ntp.invalid"})
    await admin.call("system.ntpserver.create", {"address": "unresolvable.example"})
    status = await admin.call("system.time_sync.check")
    assert status["state"] == "UNREACHABLE"
    errors = [s["error"] for s in status["servers"]]
    assert errors[0].startswith("dns: 'ntp.invalid'"), errors
    assert errors[1].startswith("dns: cannot resolve 'unresolvable.example'"), errors
    assert "Name or service not known" in errors[1]


async def test_unexpected_library_errors_are_status_entries(
    admin: Client, ntp: NtpResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever ntplib raises (here a struct-level bug, an OSError, an NTPException with a
    new text) ends up in the server entry, never as -32603."""
    await add_server(admin, ntp)
    for error, kind in [
        (ValueError("bad"), "malformed"),
        (OSError(101, "Network is unreachable"), "network"),
        (ntplib.NTPException("something new"), "malformed"),
        (ConnectionRefusedError(111, "Connection refused"), "refused"),
    ]:

        def fail(*args: Any, error: BaseException = error, **kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(ntplib.NTPClient, "request", fail)
        reply = await admin.request("system.time_sync.check", [])
        assert "result" in reply, reply
        [server] = reply["result"]["servers"]
        assert server["error"].startswith(kind + ":"), (error, server["error"])


@pytest.mark.settings(time_sync_interval=0.2)
async def test_periodic_check_raises_and_clears_alerts(admin: Client, ntp: NtpResponder) -> None:
    """The daemon checks every time_sync_interval seconds by itself: a skew appearing
    raises TimeSkew and its end clears it, without anyone calling check."""
    await add_server(admin, ntp)
    await wait_until(lambda: ntp.requests >= 3, timeout=30)
    ntp.offset = 120.0
    await wait_until(lambda: alerts_of(admin, "TimeSkew"), timeout=30)
    ntp.offset = 0.0

    async def cleared() -> bool:
        return not await alerts_of(admin, "TimeSkew")

    await wait_until(cleared, timeout=30)


# -- the 2FA gate, alert levels and hints ------------------------------------------------


async def test_enabling_2fa_refused_on_skewed_clock(admin: Client, ntp: NtpResponder) -> None:
    """Enabling global 2FA runs a fresh check; a skew beyond max_offset is -32602 on
    auth_twofactor_update.enabled naming the signed offset, the side and the server;
    the configuration stays unchanged. Once in step, enabling works."""
    await add_server(admin, ntp)
    await admin.call("system.time_sync.check")
    ntp.offset = -75.0  # no check in between: the gate checks by itself
    with pytest.raises(ClientError) as exc:
        await admin.call("auth.twofactor.update", {"enabled": True, "window": 1})
    message = invalid(exc)["auth_twofactor_update.enabled"]
    assert "-75.0 s" in message and "ahead of" in message
    assert f"{ntp.host}:{ntp.port}" in message
    assert (await admin.call("auth.twofactor.config"))["enabled"] is False
    ntp.offset = 10.0
    entry = await admin.call("auth.twofactor.update", {"enabled": True})
    assert entry["enabled"] is True
    # Already enabled: no gate, other changes go through even on a skewed clock.
    ntp.offset = 75.0
    assert (await admin.call("auth.twofactor.update", {"window": 2}))["window"] == 2


async def test_skew_alert_level_follows_2fa(admin: Client, ntp: NtpResponder) -> None:
    """TimeSkew is CRITICAL while global 2FA is enabled and WARNING otherwise, and
    follows a change of the setting at once."""
    await add_server(admin, ntp)
    await admin.call("auth.twofactor.update", {"enabled": True})
    ntp.offset = 60.0
    await admin.call("system.time_sync.check")
    assert [a["level"] for a in await alerts_of(admin, "TimeSkew")] == ["CRITICAL"]
    await admin.call("auth.twofactor.update", {"enabled": False})
    assert [a["level"] for a in await alerts_of(admin, "TimeSkew")] == ["WARNING"]


@pytest.mark.settings(ntp_timeout=1.0)
async def test_unverifiable_clock_allows_2fa_with_alert(admin: Client, clock: FrozenClock) -> None:
    """With no server configured, or none usable, enabling 2FA is allowed and raises
    TimeSyncUnverified; a usable server, or disabling 2FA, clears it."""
    assert (await admin.call("auth.twofactor.update", {"enabled": True}))["enabled"] is True
    [alert] = await alerts_of(admin, "TimeSyncUnverified")
    assert "no NTP server is configured" in alert["formatted"]
    with NtpResponder(now=clock.time, stratum=16) as ntp:
        entry = await add_server(admin, ntp)
        await admin.call("system.time_sync.check")
        [alert] = await alerts_of(admin, "TimeSyncUnverified")
        assert "unsynchronized" in alert["formatted"]
        await admin.call("system.ntpserver.update", entry["id"], {"minpoll": 4})
        ntp.stratum = 3
        assert (await admin.call("system.time_sync.check"))["state"] == "SYNCED"
        assert await alerts_of(admin, "TimeSyncUnverified") == []
    await admin.call("system.ntpserver.delete", entry["id"])
    assert (await admin.call("system.time_sync.status"))["state"] == "UNCONFIGURED"
    await wait_until(lambda: alerts_of(admin, "TimeSyncUnverified"))
    await admin.call("auth.twofactor.update", {"enabled": False})
    assert await alerts_of(admin, "TimeSyncUnverified") == []
