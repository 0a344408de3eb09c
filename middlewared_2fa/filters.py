"""TrueNAS-style ``filters`` and ``options`` applied to lists of entries."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from middlewared_2fa.errors import ENOENT, CallError, ValidationError
from middlewared_2fa.schema.common import QueryOptions

T = TypeVar("T")


def _match(entry: Mapping[str, Any], field: str, op: str, value: Any) -> bool:
    if field not in entry:
        raise ValidationError("filters", f"unknown field {field[:64]!r}")
    have = entry[field]
    try:
        if op == "=":
            return bool(have == value)
        if op == "!=":
            return bool(have != value)
        if op == "in":
            return have in value
        if op == "nin":
            return have not in value
        if op == "^":
            return isinstance(have, str) and have.startswith(value)
        if op == "$":
            return isinstance(have, str) and have.endswith(value)
        if op == ">":
            return bool(have > value)
        if op == "<":
            return bool(have < value)
        if op == ">=":
            return bool(have >= value)
        if op == "<=":
            return bool(have <= value)
    except TypeError:
        raise ValidationError(
            "filters", f"cannot compare {field!r} ({type(have).__name__}) with {op!r}"
        ) from None
    raise ValidationError("filters", f"unknown operator {op!r}")


def _fields(entry: Any) -> Mapping[str, Any]:
    return entry  # type: ignore[no-any-return]


def filter_list(
    entries: Sequence[T],
    filters: list[list[Any]],
    options: QueryOptions,
    view: Callable[[T], Mapping[str, Any]] = _fields,
) -> list[T] | T | int:
    """Apply filters (all must match), ``order_by``, ``offset``, ``limit``, ``count``, ``get``.

    Args:
        entries: Dicts, or other objects whose fields ``view`` shows as a mapping
            (``vars`` of validated pydantic entries: the result is then the entries
            themselves, which the dispatcher does not validate again).
        filters: ``[[field, op, value], ...]``.
        options: ``order_by``, ``offset``, ``limit``, ``count``, ``get``.
        view: The fields of one entry.

    Raises:
        ValidationError: unknown field or incomparable values (attribute ``filters`` or
            ``options.order_by``).
        CallError: ENOENT when ``get`` finds nothing.
    """
    result = [e for e in entries if all(_match(view(e), f, op, v) for f, op, v in filters)]
    for key in reversed(options.order_by):
        name = key.lstrip("-")
        if result and name not in view(result[0]):
            raise ValidationError("options.order_by", f"unknown field {name[:64]!r}")

        def sort_key(entry: T, field: str = name) -> Any:
            return view(entry)[field]

        try:
            result.sort(key=sort_key, reverse=key.startswith("-"))
        except TypeError:
            raise ValidationError("options.order_by", f"cannot order by {name!r}") from None
    if options.count:
        return len(result)
    if options.offset:
        result = result[options.offset :]
    if options.limit:
        result = result[: options.limit]
    if options.get:
        if not result:
            raise CallError("Entry not found", ENOENT)
        return result[0]
    return result
