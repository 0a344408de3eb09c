"""``audit.query``: the audit log of logins and 2FA changes (API.md §7)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from middlewared_2fa.api import CallContext, Role, Service, api_method
from middlewared_2fa.filters import filter_list
from middlewared_2fa.schema.audit import AuditQueryArgs, AuditQueryResult
from middlewared_2fa.schema.common import QueryOptions


class AuditService(Service):
    """Reads the framework's audit table (the framework writes it for every audited call
    and every authentication, ``Middleware.audit``)."""

    class Config:
        namespace = "audit"
        role_prefix = ("SYSTEM_AUDIT",)
        roles = (Role("SYSTEM_AUDIT_READ", readonly=True),)

    @api_method(AuditQueryArgs, AuditQueryResult, roles=["SYSTEM_AUDIT_READ"])
    async def query(self, ctx: CallContext, filters: list[list[Any]], options: QueryOptions) -> Any:
        """Audit entries, oldest first, filtered TrueNAS-style.

        Returns:
            ``[{audit_id, timestamp, event, username, address, success, event_data}]``
            (or one entry with ``get``, or a number with ``count``).
        """
        rows = [asdict(r) for r in await self.middleware.repos.audit.list()]
        return filter_list(rows, filters, options)
