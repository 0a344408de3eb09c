"""TrueNAS-style ``filters`` and ``options``: applied to lists of entries
(:func:`filter_list`), or translated into SQL for a repository (:func:`sql_query`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


# -- the same filters and options as SQL ---------------------------------------------

#: Value kinds of :class:`SqlField`. ``text``: a string (or NULL) column; ``bool``: an
#: INTEGER 0/1 column shown as a boolean; ``seconds``: a REAL Unix time shown as whole
#: seconds (``int``); ``date``: a REAL Unix time shown as API.md §2's ``{"$date": ms}``.
SQL_KINDS = ("text", "bool", "seconds", "date")

#: At most this many filters, values in one ``in``/``nin`` list and ``order_by`` keys:
#: SQLite refuses deeper expressions and more parameters (an error, never a match).
MAX_FILTERS = 50
MAX_IN_VALUES = 500
MAX_ORDER_BY = 16

#: Numbers beyond this are clamped (same matches: no time is that far from 1970), so
#: that every bound fits a float and an SQLite integer.
_NUMBER_LIMIT = 2**53
#: The largest SQLite integer (limit and offset beyond it mean "no limit").
_SQL_INT_MAX = 2**63 - 1
_NULLS = {"nulls_first:": " NULLS FIRST", "nulls_last:": " NULLS LAST"}


@dataclass(frozen=True, slots=True)
class SqlField:
    """How an entry field is found in SQL, for :func:`sql_query`.

    Args:
        expr: The SQL expression of the field: a column, ``json_extract(col, '$.key')``
            or a constant. Written by the repository, never taken from a caller.
        kind: One of :data:`SQL_KINDS`; ``seconds`` and ``date`` expressions are never
            NULL (a time column ``NOT NULL``).
        order: ORDER BY expressions, each in the key's direction (default ``(expr,)``);
            a time field orders by ``(time, id)``, as id orders what was written in the
            same instant.
    """

    expr: str
    kind: str = "text"
    order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SqlQuery:
    """A WHERE clause, its parameters, the ORDER BY list and the paging of a query.

    ``where`` and ``order_by`` hold only expressions of :class:`SqlField` and ``?``
    marks; every value is in ``params``. ``limit`` is -1 for none (SQLite's spelling).
    """

    where: str
    params: tuple[Any, ...]
    order_by: str
    limit: int
    offset: int

    def select(self, columns: str, table: str) -> tuple[str, tuple[Any, ...]]:
        """``SELECT columns FROM table WHERE ... ORDER BY ... LIMIT ? OFFSET ?``."""
        return (
            f"SELECT {columns} FROM {table} WHERE {self.where} ORDER BY {self.order_by} "
            "LIMIT ? OFFSET ?",
            (*self.params, self.limit, self.offset),
        )

    def count(self, table: str) -> tuple[str, tuple[Any, ...]]:
        """``SELECT COUNT(*) FROM table WHERE ...`` (``count`` ignores the paging, as
        :func:`filter_list` does)."""
        return f"SELECT COUNT(*) FROM {table} WHERE {self.where}", self.params


class _Translator:
    """Builds one :class:`SqlQuery`; collects the bound values in order."""

    def __init__(self, fields: Mapping[str, SqlField], attribute: str) -> None:
        self.fields = fields
        self.attribute = attribute
        self.params: list[Any] = []

    def fail(self, where: str, message: str) -> ValidationError:
        return ValidationError(f"{self.attribute}.{where}", message)

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def field(self, index: int, name: str) -> SqlField:
        found = self.fields.get(name)
        if found is None:
            known = ", ".join(self.fields)
            raise self.fail(f"{index}.0", f"unknown field {name[:64]!r}; one of: {known}")
        return found

    def predicate(self, index: int, name: str, op: str, value: Any) -> str:
        field = self.field(index, name)
        if field.kind in ("seconds", "date"):
            return self._time(index, name, field, op, value)
        return self._scalar(index, name, field, op, value)

    # -- text and bool columns: Python's comparisons, NULL being None ---------------

    def _scalar_value(self, index: int, name: str, field: SqlField, value: Any) -> Any:
        """``value`` as it is bound for ``field``; None stays None."""
        if value is None:
            return None
        if field.kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(f"{index}.2", f"{name!r} needs true, false or null")
            return int(value)
        if not isinstance(value, str):
            raise self.fail(f"{index}.2", f"{name!r} needs a string or null")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.fail(f"{index}.2", "not a valid Unicode string") from None
        return value

    def _scalar(self, index: int, name: str, field: SqlField, op: str, value: Any) -> str:
        expr = field.expr
        if op in ("=", "!="):
            bound = self._scalar_value(index, name, field, value)
            neg = " NOT" if op == "!=" else ""
            # IS: two-valued, and NULL = NULL as in Python (None == None).
            return f"{expr} IS{neg} NULL" if bound is None else f"{expr} IS{neg} {self.bind(bound)}"
        if op in ("in", "nin"):
            if len(value) > MAX_IN_VALUES:
                raise self.fail(f"{index}.2", f"at most {MAX_IN_VALUES} values")
            bound_values = [self._scalar_value(index, name, field, v) for v in value]
            present = [v for v in bound_values if v is not None]
            parts = []
            if present:
                marks = ", ".join(self.bind(v) for v in present)
                parts.append(f"({expr} IS NOT NULL AND {expr} IN ({marks}))")
            if len(present) != len(bound_values):
                parts.append(f"{expr} IS NULL")
            # Never NULL, so NOT is Python's "not in".
            found = f"({' OR '.join(parts)})" if parts else "0"
            return f"NOT {found}" if op == "nin" else found
        if op in ("^", "$"):
            if field.kind != "text":
                raise self.fail(f"{index}.1", f"{op!r} needs a text field")
            text = self._scalar_value(index, name, field, value)
            if not text:
                return f"{expr} IS NOT NULL"
            # substr, not LIKE: LIKE ignores ASCII case and would need escaping.
            length = self.bind(len(text))
            part = f"substr({expr}, 1, {length})" if op == "^" else f"substr({expr}, -{length})"
            return f"({expr} IS NOT NULL AND {part} = {self.bind(text)})"
        if value is None:
            raise self.fail(f"{index}.2", f"{op!r} cannot compare with null")
        # NULL rows never match an ordering comparison (Python would refuse None).
        return f"{expr} {op} {self.bind(self._scalar_value(index, name, field, value))}"

    # -- times: compared as the value the caller sees --------------------------------

    def _shown(self, index: int, name: str, field: SqlField, value: Any) -> float | int:
        """The value as the caller sees it: whole seconds, or ``$date`` milliseconds."""
        if field.kind == "date":
            if not (isinstance(value, dict) and list(value) == ["$date"]):
                raise self.fail(f"{index}.2", f'{name!r} needs {{"$date": milliseconds}}')
            value = value["$date"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            what = "milliseconds" if field.kind == "date" else "a number of seconds"
            raise self.fail(f"{index}.2", f"{name!r} needs {what}")
        return value

    @staticmethod
    def _start(field: SqlField, shown: int) -> float:
        """The stored time from which the caller sees ``shown`` (seconds are truncated,
        milliseconds rounded)."""
        shown = max(-_NUMBER_LIMIT, min(_NUMBER_LIMIT, shown))
        return float(shown) if field.kind == "seconds" else (shown - 0.5) / 1000

    def _equal(self, field: SqlField, shown: float | int) -> str:
        if shown != math.floor(shown):
            return "0"
        whole = math.floor(shown)
        lo, hi = self._start(field, whole), self._start(field, whole + 1)
        return f"({field.expr} >= {self.bind(lo)} AND {field.expr} < {self.bind(hi)})"

    def _time(self, index: int, name: str, field: SqlField, op: str, value: Any) -> str:
        expr = field.expr
        if op in ("^", "$"):
            raise self.fail(f"{index}.1", f"{op!r} needs a text field")
        if op in ("=", "!=") and value is None:
            return "0" if op == "=" else "1"  # never NULL
        if op in ("in", "nin"):
            if len(value) > MAX_IN_VALUES:
                raise self.fail(f"{index}.2", f"at most {MAX_IN_VALUES} values")
            parts = [
                self._equal(field, self._shown(index, name, field, v))
                for v in value
                if v is not None
            ]
            found = f"({' OR '.join(parts)})" if parts else "0"
            return f"NOT {found}" if op == "nin" else found
        shown = self._shown(index, name, field, value)
        if op == "=":
            return self._equal(field, shown)
        if op == "!=":
            return f"NOT {self._equal(field, shown)}"
        if op == ">":  # shown >= floor(v) + 1
            return f"{expr} >= {self.bind(self._start(field, math.floor(shown) + 1))}"
        if op == ">=":  # shown >= ceil(v)
            return f"{expr} >= {self.bind(self._start(field, math.ceil(shown)))}"
        if op == "<":  # shown <= ceil(v) - 1
            return f"{expr} < {self.bind(self._start(field, math.ceil(shown)))}"
        # "<=": shown <= floor(v)
        return f"{expr} < {self.bind(self._start(field, math.floor(shown) + 1))}"


def sql_query(
    filters: list[list[Any]],
    options: QueryOptions,
    fields: Mapping[str, SqlField],
    *,
    tiebreak: tuple[str, ...],
    filters_attribute: str = "filters",
    order_attribute: str = "options.order_by",
) -> SqlQuery:
    """Translate TrueNAS-style filters and options into SQL, with the meaning that
    :func:`filter_list` gives them, so that a repository evaluates them in the database
    (an index, no full load) instead of in Python.

    Semantics (the same as :func:`filter_list` except where it would raise): ``=`` and
    ``!=`` treat null as a value; ``in``/``nin`` likewise; ``^`` and ``$`` are
    case-sensitive and match strings only; ``>``, ``<``, ``>=``, ``<=`` never match a
    null. Time fields compare as the caller sees them (``seconds``: whole seconds;
    ``date``: ``{"$date": ms}``), turned into ranges of the stored column so that its
    index serves them. ``order_by`` keys may carry TrueNAS's ``nulls_first:`` or
    ``nulls_last:`` prefix (SQLite's default: nulls first ascending, last descending);
    ties keep ``tiebreak`` order (ascending), which is also the order without
    ``order_by``.

    Args:
        filters: ``[[field, op, value], ...]`` already checked by ``check_filters``.
        options: ``order_by``, ``offset``, ``limit`` (``count`` and ``get`` are the
            caller's: :meth:`SqlQuery.count`, and ``get`` is ``limit`` 1).
        fields: Field name -> :class:`SqlField`; the allow-list of names.
        tiebreak: The final ORDER BY expressions, ending with a unique one (``("id",)``;
            an indexed column first lets a range filter and the order share its index).
        filters_attribute: Attribute path of the filters in errors.
        order_attribute: Attribute path of ``order_by`` in errors.

    Returns:
        The query; values only as parameters.

    Raises:
        ValidationError: an unknown field (``<filters_attribute>.<i>.0``), a value of
            the wrong type (``.<i>.2``), an operator the field does not support
            (``.<i>.1``), too many filters or values, or an unknown or too many
            ``order_by`` keys (``<order_attribute>.<j>``).
    """
    if len(filters) > MAX_FILTERS:
        raise ValidationError(filters_attribute, f"at most {MAX_FILTERS} filters")
    translator = _Translator(fields, filters_attribute)
    where = " AND ".join(
        translator.predicate(i, name, op, value) for i, (name, op, value) in enumerate(filters)
    )
    if len(options.order_by) > MAX_ORDER_BY:
        raise ValidationError(order_attribute, f"at most {MAX_ORDER_BY} keys")
    terms: list[str] = []
    used: set[str] = set()
    for j, key in enumerate(options.order_by):
        nulls = ""
        for prefix, clause in _NULLS.items():
            if key.startswith(prefix):
                key, nulls = key[len(prefix) :], clause
        descending = key.startswith("-")
        name = key[1:] if descending else key
        field = fields.get(name)
        if field is None:
            known = ", ".join(fields)
            raise ValidationError(
                f"{order_attribute}.{j}", f"unknown field {name[:64]!r}; one of: {known}"
            )
        for expr in field.order or (field.expr,):
            if expr not in used:  # a repeated key changes nothing (SQLite limits terms)
                used.add(expr)
                terms.append(f"{expr}{' DESC' if descending else ''}{nulls}")
    terms.extend(expr for expr in tiebreak if expr not in used)
    return SqlQuery(
        where=where or "1",
        params=tuple(translator.params),
        order_by=", ".join(terms),
        limit=min(options.limit, _SQL_INT_MAX) if options.limit else -1,
        offset=min(options.offset, _SQL_INT_MAX),
    )
