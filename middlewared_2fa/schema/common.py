"""Shared model bases and query types (TrueNAS-style filters and options)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

#: Row id: SQLite INTEGER is signed 64-bit, so larger numbers are invalid, not a crash.
EntryId = Annotated[int, Field(ge=1, le=2**63 - 1, description="entry id")]


def _date(value: float) -> dict[str, int]:
    return {"$date": int(round(value * 1000))}


#: A datetime on the wire (API.md §2): TrueNAS's ``{"$date": milliseconds}``; Unix
#: seconds (float) in Python.
DateOut = Annotated[float, PlainSerializer(_date, return_type=dict[str, int], when_used="always")]


class Model(BaseModel):
    """Strict input model: no coercion (``"1"`` is not 1, ``true`` is not 1), unknown keys
    are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Out(BaseModel):
    """Output model (results are produced by our code, so no strict mode)."""

    model_config = ConfigDict(extra="forbid")


class NoArgs(Model):
    """A method without parameters."""


class QueryOptions(Model):
    """``options`` of ``*.query`` methods (TrueNAS query-options subset)."""

    get: bool = Field(False, description="return the single matching entry (ENOENT if none)")
    limit: int = Field(0, ge=0, description="at most this many entries; 0 = no limit")
    offset: int = Field(0, ge=0, description="skip this many entries first")
    order_by: list[str] = Field(
        default_factory=list, description="field names, '-' prefix for descending"
    )
    count: bool = Field(False, description="return the number of matching entries")


class NullResult(Out):
    """``null``."""

    result: None = None


class BoolResult(Out):
    """A boolean."""

    result: bool = Field(description="outcome")


class StrResult(Out):
    """A string."""

    result: str


OPERATORS = ("=", "!=", "in", "nin", "^", "$", ">", "<", ">=", "<=")


def check_filters(value: list[list[Any]]) -> list[list[Any]]:
    """Validate TrueNAS-style filters ``[[field, operator, value], ...]``.

    Raises:
        ValueError: a filter is not a triple, the field is not a string, or the
            operator is not one of ``OPERATORS`` (pydantic reports it at ``filters``).
    """
    for i, item in enumerate(value):
        if len(item) != 3 or not isinstance(item[0], str):
            raise ValueError(f"filter {i} must be [field, operator, value]")
        if item[1] not in OPERATORS:
            raise ValueError(f"filter {i}: operator must be one of {', '.join(OPERATORS)}")
        if item[1] in ("in", "nin") and not isinstance(item[2], list):
            raise ValueError(f"filter {i}: '{item[1]}' needs a list value")
        if item[1] in ("^", "$") and not isinstance(item[2], str):
            raise ValueError(f"filter {i}: '{item[1]}' needs a string value")
    return value


class QueryArgs(Model):
    """``(filters=[], options={})`` of every ``*.query``-like method: TrueNAS-style
    filters (checked by :func:`check_filters`) and query options."""

    filters: list[list[Any]] = Field(default_factory=list, description="[[field, op, value]]")
    options: QueryOptions = Field(default_factory=QueryOptions)

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: list[list[Any]]) -> list[list[Any]]:
        return check_filters(value)
