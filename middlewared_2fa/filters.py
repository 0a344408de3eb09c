"""TrueNAS-style ``filters`` and ``options`` applied to lists of entries."""

from __future__ import annotations

from typing import Any

from middlewared_2fa.errors import ENOENT, CallError, ValidationError
from middlewared_2fa.schema.common import QueryOptions


def _match(entry: dict[str, Any], field: str, op: str, value: Any) -> bool:
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


def filter_list(
    entries: list[dict[str, Any]], filters: list[list[Any]], options: QueryOptions
) -> list[dict[str, Any]] | dict[str, Any] | int:
    """Apply filters (all must match), ``order_by``, ``offset``, ``limit``, ``count``, ``get``.

    Raises:
        ValidationError: unknown field or incomparable values (attribute ``filters`` or
            ``options.order_by``).
        CallError: ENOENT when ``get`` finds nothing.
    """
    result = [e for e in entries if all(_match(e, f, op, v) for f, op, v in filters)]
    for key in reversed(options.order_by):
        name = key.lstrip("-")
        if result and name not in result[0]:
            raise ValidationError("options.order_by", f"unknown field {name[:64]!r}")

        def sort_key(entry: dict[str, Any], field: str = name) -> Any:
            return entry[field]

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
