"""``audit.*`` and ``alert.*`` models (API.md §7)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from middlewared_2fa.schema.common import Model, Out, QueryArgs


class AuditEventData(Out):
    model_config = {"extra": "allow"}

    description: str
    method: str | None = None
    error: str | None = None


class AuditEntry(Out):
    audit_id: str
    timestamp: float = Field(description="Unix time, seconds")
    event: Literal["AUTHENTICATION", "METHOD_CALL"]
    username: str | None
    address: str | None
    success: bool
    event_data: dict[str, Any]
    session: str | None = Field(None, description="id of the session that made it (auth.sessions)")


class AuditQueryArgs(QueryArgs):
    """``(filters, options)``: see :class:`QueryArgs`."""


class AuditQueryResult(Out):
    result: list[AuditEntry] | AuditEntry | int


class AlertEntry(Out):
    uuid: str
    klass: str
    level: Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
    formatted: str
    datetime: float = Field(description="Unix time the alert was raised, seconds")


class AlertListArgs(Model):
    """No parameters."""


class AlertListResult(Out):
    result: list[AlertEntry]
