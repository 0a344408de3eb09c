"""``audit.*`` and ``alert.*`` models (API.md §7)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, field_validator
from typing_extensions import TypedDict

from middlewared_2fa.schema.common import DateOut, Model, Out, QueryOptions, check_filters

#: The services whose entries ``audit.query`` returns: this daemon audits only itself
#: (TrueNAS's SMB, SUDO and SYSTEM are -32602, docs/decisions.md "Audit").
AuditedService = Literal["MIDDLEWARE"]


def _middleware() -> list[AuditedService]:
    return ["MIDDLEWARE"]


class AuditQueryOptions(QueryOptions):
    """``query-options`` of ``audit.query``: those of every ``*.query`` and TrueNAS's
    ``force_sql_filters``."""

    force_sql_filters: bool = Field(
        False, description="accepted for TrueNAS clients; filters are always evaluated in SQL"
    )


class AuditQuery(Model):
    """``data`` of ``audit.query`` (TrueNAS's ``audit_query``)."""

    services: list[AuditedService] = Field(
        default_factory=_middleware, description="services to read"
    )
    query_filters: list[list[Any]] = Field(
        default_factory=list,
        alias="query-filters",
        description="[[field, op, value]]; fields as AuditEntry, event_data.<key> too",
    )
    query_options: AuditQueryOptions = Field(
        default_factory=AuditQueryOptions,
        alias="query-options",
        description="get, limit, offset, order_by, count",
    )

    @field_validator("query_filters")
    @classmethod
    def _filters(cls, value: list[list[Any]]) -> list[list[Any]]:
        return check_filters(value)


class AuditQueryArgs(Model):
    """``(data={})``."""

    data: AuditQuery = Field(default_factory=AuditQuery, description="services, filters, options")


class AuditEventData(TypedDict):
    """``event_data`` of an entry; absent keys do not apply to it. Other keys pass (a
    plugin's entry may carry more), so a stored entry never fails its result."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    description: Annotated[str, Field(description="what happened, in words")]
    method: NotRequired[Annotated[str, Field(description="the method (METHOD_CALL)")]]
    credentials: NotRequired[
        Annotated[str, Field(description="credentials of the session (API.md §9)")]
    ]
    error: NotRequired[Annotated[str, Field(description="error name or reason on failure")]]


class AuditEntry(Out):
    """One audit entry (TrueNAS's ``audit_entry`` of the MIDDLEWARE service)."""

    audit_id: str = Field(description="UUID of the entry")
    message_timestamp: int = Field(description="Unix time it was written, whole seconds")
    timestamp: DateOut = Field(description="when it happened")
    address: str | None = Field(description="client address of the session")
    username: str | None = Field(description="user name of the session or the login attempt")
    session: str | None = Field(description="id of the session that made it (auth.sessions)")
    service: AuditedService = Field(description="the audited service")
    service_data: dict[str, Any] = Field(description="service-specific data (none)")
    event: Literal["AUTHENTICATION", "METHOD_CALL"] = Field(description="kind of event")
    event_data: AuditEventData = Field(description="what happened")
    success: bool = Field(description="outcome")


class AuditQueryResult(Out):
    result: list[AuditEntry] | AuditEntry | int = Field(
        description="entries; one with get; their number with count"
    )


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
