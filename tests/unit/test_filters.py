"""TrueNAS-style ``filters`` and query ``options`` as ``filter_list`` implements them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa.errors import ENOENT, CallError, ValidationErrors
from middlewared_2fa.filters import filter_list
from middlewared_2fa.schema.common import OPERATORS, QueryArgs, QueryOptions

ENTRIES: list[dict[str, Any]] = [
    {"id": 1, "username": "admin", "uid": 1000, "locked": False, "full_name": "Admin", "x": None},
    {"id": 2, "username": "alice", "uid": 1001, "locked": True, "full_name": "Alice A", "x": 1},
    {"id": 3, "username": "bob", "uid": 1002, "locked": False, "full_name": "Bob", "x": 2},
    {"id": 4, "username": "carol", "uid": 1001, "locked": False, "full_name": "Carol", "x": 3},
]
NONE = QueryOptions()


def ids(filters: list[list[Any]], options: QueryOptions = NONE) -> Any:
    result = filter_list([dict(e) for e in ENTRIES], filters, options)
    if isinstance(result, list):
        return [e["id"] for e in result]
    return result


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (["username", "=", "bob"], [3]),
        (["username", "!=", "bob"], [1, 2, 4]),
        (["uid", "in", [1001, 5]], [2, 4]),
        (["uid", "nin", [1001, 5]], [1, 3]),
        (["username", "^", "a"], [1, 2]),
        (["full_name", "$", " A"], [2]),
        (["uid", ">", 1001], [3]),
        (["uid", "<", 1001], [1]),
        (["uid", ">=", 1001], [2, 3, 4]),
        (["uid", "<=", 1001], [1, 2, 4]),
        (["locked", "=", True], [2]),
        (["x", "=", None], [1]),
    ],
)
def test_each_operator(flt: list[Any], expected: list[int]) -> None:
    """Each operator of the contract selects what it says."""
    assert ids([flt]) == expected


def test_every_operator_is_covered() -> None:
    """The operator list of the schema is exactly what the test above exercises."""
    assert set(OPERATORS) == {"=", "!=", "in", "nin", "^", "$", ">", "<", ">=", "<="}


def test_filters_are_and_ed() -> None:
    """All filters must match; no filters keep everything in order."""
    assert ids([["uid", "=", 1001], ["locked", "=", False]]) == [4]
    assert ids([["uid", "=", 1001], ["username", "=", "bob"]]) == []
    assert ids([]) == [1, 2, 3, 4]


def test_prefix_and_suffix_on_non_strings_match_nothing() -> None:
    """``^`` and ``$`` on a field that is not a string match no entry, without an error."""
    assert ids([["uid", "^", "10"]]) == []
    assert ids([["x", "$", "1"]]) == []


def test_unknown_field() -> None:
    """A field no entry has is an error at ``filters``, the name cut to 64 characters."""
    with pytest.raises(ValidationErrors) as err:
        ids([["nope", "=", 1]])
    assert err.value.errors == [("filters", "unknown field 'nope'", 22)]
    with pytest.raises(ValidationErrors) as err:
        ids([["n" * 100, "=", 1]])
    assert err.value.errors[0][1] == f"unknown field {'n' * 64!r}"


def test_nested_keys_are_not_traversed() -> None:
    """A dotted name is one field name (no nested lookup): unknown on flat entries, and
    matched only when an entry has that exact key."""
    with pytest.raises(ValidationErrors):
        ids([["twofactor.enabled", "=", True]])
    entries = [{"a": {"b": 1}, "a.b": 2}]
    assert filter_list(entries, [["a.b", "=", 2]], NONE) == entries
    assert filter_list(entries, [["a", "=", {"b": 1}]], NONE) == entries


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        (["username", ">", 5], "cannot compare 'username' (str) with '>'"),
        (["x", "<=", 1], "cannot compare 'x' (NoneType) with '<='"),
        (["uid", "in", 5], "cannot compare 'uid' (int) with 'in'"),
        (["username", "^", 5], "cannot compare 'username' (str) with '^'"),
    ],
)
def test_incomparable_values(flt: list[Any], message: str) -> None:
    """Values that cannot be compared are a validation error, not a crash."""
    with pytest.raises(ValidationErrors) as err:
        ids([flt])
    assert err.value.errors == [("filters", message, 22)]


def test_unknown_operator() -> None:
    """An operator outside the list is an error even when the schema check is bypassed."""
    with pytest.raises(ValidationErrors) as err:
        ids([["uid", "~", 1]])
    assert err.value.errors == [("filters", "unknown operator '~'", 22)]


def test_order_by() -> None:
    """``order_by`` sorts ascending, ``-`` descending, earlier keys first."""
    assert ids([], QueryOptions(order_by=["username"])) == [1, 2, 3, 4]
    assert ids([], QueryOptions(order_by=["-uid"])) == [3, 2, 4, 1]
    assert ids([], QueryOptions(order_by=["uid", "-username"])) == [1, 4, 2, 3]
    assert ids([], QueryOptions(order_by=["-uid", "username"])) == [3, 2, 4, 1]


def test_order_by_errors() -> None:
    """Ordering by an unknown or incomparable field is an error at ``options.order_by``."""
    with pytest.raises(ValidationErrors) as err:
        ids([], QueryOptions(order_by=["-nope"]))
    assert err.value.errors == [("options.order_by", "unknown field 'nope'", 22)]
    with pytest.raises(ValidationErrors) as err:
        ids([], QueryOptions(order_by=["x"]))
    assert err.value.errors == [("options.order_by", "cannot order by 'x'", 22)]


def test_offset_and_limit() -> None:
    """``offset`` skips, then ``limit`` caps (0 means no limit), after ordering."""
    assert ids([], QueryOptions(offset=1)) == [2, 3, 4]
    assert ids([], QueryOptions(limit=2)) == [1, 2]
    assert ids([], QueryOptions(offset=1, limit=2)) == [2, 3]
    assert ids([], QueryOptions(offset=10)) == []
    assert ids([], QueryOptions(order_by=["-id"], offset=1, limit=1)) == [3]


def test_count() -> None:
    """``count`` is the number of matching entries, before offset and limit."""
    assert ids([["uid", "=", 1001]], QueryOptions(count=True)) == 2
    assert ids([], QueryOptions(count=True, offset=3, limit=1)) == 4
    assert ids([["uid", "=", 5]], QueryOptions(count=True)) == 0


def test_get() -> None:
    """``get`` returns the first entry after ordering, offset and limit; ENOENT if none."""
    result = filter_list(ENTRIES, [["uid", "=", 1001]], QueryOptions(get=True))
    assert result == ENTRIES[1]
    result = filter_list(ENTRIES, [], QueryOptions(get=True, order_by=["-id"], offset=1))
    assert result == ENTRIES[2]
    with pytest.raises(CallError) as err:
        filter_list(ENTRIES, [["uid", "=", 5]], QueryOptions(get=True))
    assert (err.value.errno, err.value.reason) == (ENOENT, "Entry not found")


def test_input_list_is_not_reordered() -> None:
    """Ordering works on a copy: the caller's list keeps its order."""
    entries = [dict(e) for e in ENTRIES]
    filter_list(entries, [], QueryOptions(order_by=["-id"]))
    assert [e["id"] for e in entries] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ([["id", "="]], "filter 0 must be [field, operator, value]"),
        ([["id", "=", 1], [5, "=", 1]], "filter 1 must be [field, operator, value]"),
        ([["id", "~", 1]], "filter 0: operator must be one of =, !=, in, nin, ^, $, >, <, >=, <="),
        ([["id", "in", 1]], "filter 0: 'in' needs a list value"),
        ([["id", "nin", "x"]], "filter 0: 'nin' needs a list value"),
        ([["id", "^", 1]], "filter 0: '^' needs a string value"),
        ([["id", "$", None]], "filter 0: '$' needs a string value"),
    ],
)
def test_bad_filters_are_refused_by_the_schema(filters: list[Any], message: str) -> None:
    """Malformed filters fail validation of the query parameters, at ``filters``."""
    with pytest.raises(PydanticValidationError) as err:
        QueryArgs.model_validate({"filters": filters})
    (error,) = err.value.errors()
    assert error["loc"] == ("filters",)
    assert error["msg"] == f"Value error, {message}"


def test_query_options_as_implemented() -> None:
    """The options are get, limit, offset, order_by and count; others (``select``) and
    negative numbers are refused."""
    assert set(QueryOptions.model_fields) == {"get", "limit", "offset", "order_by", "count"}
    for bad in ({"select": ["id"]}, {"limit": -1}, {"offset": -1}, {"get": 1}):
        with pytest.raises(PydanticValidationError):
            QueryOptions.model_validate(bad)
