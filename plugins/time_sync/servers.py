"""``system.ntpserver.*``: the NTP servers the clock check asks (API.md §6)."""

from __future__ import annotations

from typing import Any

from middlewared_2fa.api import CallContext, Service, api_method
from middlewared_2fa.errors import ENOENT, CallError, ValidationErrors
from middlewared_2fa.filters import filter_list
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.schema.common import QueryOptions
from middlewared_2fa.schema.time_sync import (
    NtpServerCreate,
    NtpServerEntry,
    NtpServerUpdate,
    SystemNtpserverCreateArgs,
    SystemNtpserverCreateResult,
    SystemNtpserverDeleteArgs,
    SystemNtpserverDeleteResult,
    SystemNtpserverQueryArgs,
    SystemNtpserverQueryResult,
    SystemNtpserverUpdateArgs,
    SystemNtpserverUpdateResult,
)

from .check import TimeSyncService
from .repository import MIGRATIONS, NtpServerRepository, NtpServerRow


class NtpServerService(Service):
    """The NTP servers the clock check asks (SQLite table ``ntp_servers``)."""

    class Config:
        namespace = "system.ntpserver"
        migrations = MIGRATIONS

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        self.repo = NtpServerRepository(middleware.db)

    @staticmethod
    def entry(row: NtpServerRow) -> dict[str, Any]:
        """NtpServerEntry of ``row``, validated from its attributes."""
        return NtpServerEntry.model_validate(row, from_attributes=True).model_dump()

    async def _validate(
        self, errors: ValidationErrors, root: str, values: dict[str, Any], own_id: int | None
    ) -> None:
        if values["minpoll"] > values["maxpoll"]:
            errors.add(f"{root}.maxpoll", "must be greater than or equal to minpoll")
        for row in await self.repo.list():
            if (
                row.id != own_id
                and row.address.rstrip(".").lower() == values["address"].rstrip(".").lower()
                and row.port == values["port"]
            ):
                errors.add(f"{root}.address", "this server (address and port) is already listed")
                break

    def _changed(self) -> None:
        self.middleware.service(TimeSyncService).servers_changed()

    @api_method(
        SystemNtpserverQueryArgs, SystemNtpserverQueryResult, roles=["SYSTEM_SECURITY_READ"]
    )
    async def query(self, ctx: CallContext, filters: list[list[Any]], options: QueryOptions) -> Any:
        """Configured servers: ``[{id, address, port, iburst, prefer, minpoll, maxpoll}]``,
        filtered TrueNAS-style (or one entry with ``get``, or a number with ``count``)."""
        rows = await self.repo.list()
        return filter_list([self.entry(r) for r in rows], filters, options)

    @api_method(
        SystemNtpserverCreateArgs,
        SystemNtpserverCreateResult,
        roles=["SYSTEM_SECURITY_WRITE"],
        audit=True,
    )
    async def create(self, ctx: CallContext, ntp_server_create: NtpServerCreate) -> dict[str, Any]:
        """Add a server; the clock is checked again in the background.

        Raises:
            ValidationErrors: ``ntp_server_create.address`` not a host name or IP address,
                or already listed with that port; ``.port`` outside 1..65535;
                ``.minpoll``/``.maxpoll`` outside 4..17 or minpoll > maxpoll.
        """
        values = ntp_server_create.model_dump()
        errors = ValidationErrors()
        await self._validate(errors, "ntp_server_create", values, None)
        errors.check()
        repo = self.repo
        row = await repo.get(await repo.create(values))
        assert row is not None
        self._changed()
        return self.entry(row)

    @api_method(
        SystemNtpserverUpdateArgs,
        SystemNtpserverUpdateResult,
        roles=["SYSTEM_SECURITY_WRITE"],
        audit=True,
    )
    async def update(
        self, ctx: CallContext, id: int, ntp_server_update: NtpServerUpdate
    ) -> dict[str, Any]:
        """Change some fields of server ``id``; the clock is checked again in the background.

        Raises:
            CallError: ENOENT when there is no server ``id``.
            ValidationErrors: as for create, on ``ntp_server_update.*``, checked against
                the merged entry.
        """
        repo = self.repo
        old = await repo.get(id)
        if old is None:
            raise CallError(f"NTP server id {id} does not exist", ENOENT)
        given = ntp_server_update.model_dump(exclude_unset=True)
        merged = {**self.entry(old), **given}
        errors = ValidationErrors()
        await self._validate(errors, "ntp_server_update", merged, id)
        errors.check()
        await repo.update(id, given)
        row = await repo.get(id)
        assert row is not None
        self._changed()
        return self.entry(row)

    @api_method(
        SystemNtpserverDeleteArgs,
        SystemNtpserverDeleteResult,
        roles=["SYSTEM_SECURITY_WRITE"],
        audit=True,
    )
    async def delete(self, ctx: CallContext, id: int) -> bool:
        """Remove server ``id``; returns true. Raises CallError ENOENT when there is none."""
        repo = self.repo
        if await repo.get(id) is None:
            raise CallError(f"NTP server id {id} does not exist", ENOENT)
        await repo.delete(id)
        self._changed()
        return True
