"""``audit.query``: the audit log of logins and 2FA changes (API.md §7), read in SQL, and
its retention (``audit_retention_days``)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from middlewared_2fa.api import CallContext, Role, Service, api_method
from middlewared_2fa.datastore.repositories import AUDIT_FIELDS, AUDIT_ORDER, AuditRow
from middlewared_2fa.errors import ENOENT, CallError
from middlewared_2fa.filters import sql_query
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.schema.audit import AuditQuery, AuditQueryArgs, AuditQueryResult

logger = logging.getLogger(__name__)

DAY = 86400.0


class AuditSettings(BaseModel):
    """Settings of the audit log (API.md §1, §7)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audit_retention_days: int = Field(
        90, ge=1, le=3650, description="audit entries older than this many days are deleted"
    )


def audit_entry(row: AuditRow) -> dict[str, Any]:
    """``AuditEntry`` (API.md §7) of a row: ``message_timestamp`` in whole seconds,
    ``timestamp`` as seconds (the result model sends ``{"$date": ms}``)."""
    return {
        "audit_id": row.audit_id,
        "message_timestamp": int(row.timestamp),
        "timestamp": row.timestamp,
        "address": row.address,
        "username": row.username,
        "session": row.session,
        "service": "MIDDLEWARE",
        "service_data": {},
        "event": row.event,
        "event_data": row.event_data,
        "success": row.success,
    }


class AuditService(Service):
    """Reads the framework's audit table (the framework writes it for every audited call
    and every authentication, ``Middleware.audit``) and keeps it within the retention:
    entries older than ``audit_retention_days`` are deleted at start-up and then once a
    day by the middleware's clock."""

    class Config:
        namespace = "audit"
        role_prefix = ("SYSTEM_AUDIT",)
        roles = (Role("SYSTEM_AUDIT_READ", readonly=True),)
        settings = AuditSettings

    #: How often (seconds of the event loop) the retention task looks at the clock: a
    #: day is counted by the middleware's clock, which a test freezes and advances and
    #: which an administrator may set, so the task cannot sleep a day at once.
    retention_poll: float = 60.0

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        self.settings = middleware.settings_of(AuditSettings)
        self._retention_task: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        # Before the listeners accept anyone: no query sees an entry past retention.
        await self._purge_logged()

    async def start(self) -> None:
        self._retention_task = self.middleware.spawn(self._retention(), "audit retention")

    async def stop(self) -> None:
        task, self._retention_task = self._retention_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @api_method(AuditQueryArgs, AuditQueryResult, roles=["SYSTEM_AUDIT_READ"])
    async def query(self, ctx: CallContext, data: AuditQuery) -> Any:
        """Audit entries (TrueNAS shape), oldest first unless ``order_by`` says otherwise.

        ``data = {services: ["MIDDLEWARE"], "query-filters": [...], "query-options":
        {...}}``: filters and options as ``user.query``, evaluated in SQL; filters may
        name every ``AuditEntry`` field but ``service_data`` and ``event_data``, and
        ``event_data.<key>`` for ``method``, ``description``, ``credentials``, ``error``.
        ``timestamp`` compares with ``{"$date": ms}``, ``message_timestamp`` with seconds.

        Returns:
            ``[{audit_id, message_timestamp, timestamp, address, username, session,
            service, service_data, event, event_data, success}]``, or one entry with
            ``get``, or their number with ``count``.

        Raises:
            ValidationErrors: an unknown field or a value of the wrong type, on
                ``data.query-filters.<i>...`` or ``data.query-options.order_by.<j>``.
            CallError: ENOENT when ``get`` finds nothing.
        """
        options = data.query_options
        query = sql_query(
            data.query_filters,
            options,
            AUDIT_FIELDS,
            tiebreak=AUDIT_ORDER,
            filters_attribute="data.query-filters",
            order_attribute="data.query-options.order_by",
        )
        repo = self.middleware.repos.audit
        if options.count:
            return await repo.count(query) if data.services else 0
        if options.get:
            query = dataclasses.replace(query, limit=1)  # after the offset, as filter_list
        rows = await repo.query(query) if data.services else []
        if options.get:
            if not rows:
                raise CallError("Entry not found", ENOENT)
            return audit_entry(rows[0])
        return [audit_entry(r) for r in rows]

    async def purge(self) -> int:
        """Delete the entries older than ``audit_retention_days`` by the middleware's
        clock; returns how many."""
        days = self.settings.audit_retention_days
        deleted = await self.middleware.repos.audit.delete_older_than(
            self.middleware.clock.time() - days * DAY
        )
        if deleted:
            logger.info("deleted %d audit entries older than %d days", deleted, days)
        return deleted

    async def _retention(self) -> None:
        clock = self.middleware.clock
        due = clock.time() + DAY
        while True:
            await asyncio.sleep(self.retention_poll)
            now = clock.time()
            if now < due - DAY:  # the clock was set back: count the day from now
                due = now + DAY
            if now < due:
                continue
            await self._purge_logged()
            due = clock.time() + DAY

    async def _purge_logged(self) -> None:
        """:meth:`purge`; a failure is logged (the daemon goes on, and so does the log)."""
        try:
            await self.purge()
        except Exception:
            logger.exception("deleting old audit entries failed; trying again in a day")
