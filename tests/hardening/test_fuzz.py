"""Property-based tests: generated envelopes and parameters for every registered method,
from its JSON Schema and from arbitrary JSON, never get -32603 or a dropped connection."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.helpers.daemon import short_tempdir
from tests.helpers.registry import registered_methods
from tests.helpers.schema_strategy import from_schema
from tests.helpers.threaded import SyncClient, ThreadedDaemon, sync_client

ALLOWED_ERRORS = {-32600, -32601, -32602, -32001}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    database=None,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def running() -> Iterator[ThreadedDaemon]:
    base = short_tempdir()
    # A short NTP timeout: system.time_sync.check queries whatever servers the fuzzing of
    # system.ntpserver.create added (none of them answers).
    with ThreadedDaemon(base, auth_failure_delay=0.0, ntp_timeout=0.2) as d:
        yield d
    shutil.rmtree(base, ignore_errors=True)


def _methods(running: ThreadedDaemon) -> dict[str, Any]:
    with sync_client(running.daemon.unix_uri) as c:
        return dict(c.call("core.get_methods"))


def _check(client: SyncClient, method: str, params: Any) -> None:
    reply = client.request(method, params)
    if "error" in reply:
        assert reply["error"]["code"] in ALLOWED_ERRORS, (method, params, reply)
        assert set(reply["error"]["data"]) == {"error", "errname", "reason", "trace", "extra"}


#: Every registered method, from a running daemon (tests/helpers/registry.py): each is
#: fuzzed from its own JSON Schema, unless :data:`NOT_FUZZED` says why not.
METHODS = sorted(registered_methods())
#: method -> why it is not fuzzed (it has tests of its own: tests/api/test_login.py).
NOT_FUZZED: dict[str, str] = {
    "auth.logout": "as root it ends the session the rest of the fuzz runs on",
}


def test_method_list_is_the_registry(running: ThreadedDaemon) -> None:
    """The fuzzed methods are exactly those the fuzzed daemon registers, and every method
    left out is a registered one: a stale or misspelt entry fails here."""
    registered = set(_methods(running))
    assert set(METHODS) == registered
    assert set(NOT_FUZZED) <= registered, sorted(set(NOT_FUZZED) - registered)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in NOT_FUZZED])
def test_schema_generated_params(running: ThreadedDaemon, method: str) -> None:
    """Parameters generated from the method's own JSON Schema, as an object and as an
    array, plus arbitrary JSON, get a result or a clean error, as root and unauthenticated."""
    info = _methods(running)[method]
    schema = info["accepts"]
    names = list(schema.get("properties", {}))
    by_name = from_schema(schema)
    strategy = st.one_of(
        by_name,
        by_name.map(lambda d: [d[n] for n in names if n in d]),
        st.lists(json_values, max_size=4),
        st.dictionaries(st.sampled_from([*names, "extra"]), json_values, max_size=3),
    )

    with sync_client(running.daemon.unix_uri) as root, sync_client(running.daemon.url) as anon:

        @FUZZ
        @given(params=strategy)
        def check(params: Any) -> None:
            _check(root, method, params)
            _check(anon, method, params)

        check()
        assert root.call("core.ping") == "pong"
        assert anon.request("core.ping")["result"] == "pong"


@FUZZ
@given(
    envelope=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "jsonrpc": st.sampled_from(["2.0", "1.0", 2, None]),
                "method": st.one_of(st.sampled_from(METHODS), st.text(max_size=30), json_values),
            },
            optional={"id": json_values, "params": json_values},
        ),
        st.lists(json_values, max_size=5),
    )
)
def test_generated_envelopes(running: ThreadedDaemon, envelope: Any) -> None:
    """Arbitrary JSON and near-requests never get -32603, and the connection stays open."""
    with sync_client(running.daemon.url) as c:
        c.ws.send(json.dumps(envelope))
        c.ws.send(json.dumps({"jsonrpc": "2.0", "id": "probe", "method": "core.ping"}))
        replies: list[Any] = []
        try:
            while True:
                reply = json.loads(c.ws.recv(30))
                replies.append(reply)
                if isinstance(reply, dict) and reply.get("id") == "probe":
                    break
        except ConnectionClosed:  # pragma: no cover - the assertion below reports it
            pytest.fail(f"connection dropped after {envelope!r}")
        for reply in replies:
            for item in reply if isinstance(reply, list) else [reply]:
                if "error" in item:
                    assert item["error"]["code"] in ALLOWED_ERRORS, (envelope, item)
        assert replies[-1]["result"] == "pong"
