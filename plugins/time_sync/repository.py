"""The plugin's table ``ntp_servers`` (API.md §6) and the settings of the clock check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from middlewared_2fa.api import Migration
from middlewared_2fa.datastore import Database

#: ``legacy``: the table came with the global schema version 1.
MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE ntp_servers (
            id      INTEGER PRIMARY KEY AUTOINCREMENT,
            address TEXT NOT NULL,
            port    INTEGER NOT NULL DEFAULT 123,
            iburst  INTEGER NOT NULL DEFAULT 1,
            prefer  INTEGER NOT NULL DEFAULT 0,
            minpoll INTEGER NOT NULL DEFAULT 6,
            maxpoll INTEGER NOT NULL DEFAULT 10
        );
        """,
        legacy=1,
    ),
)


class TimeSyncSettings(BaseModel):
    """Settings of the clock check (API.md §1, §6); times in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_sync_max_offset: float = Field(30.0, gt=0, description="largest tolerated offset (s)")
    time_sync_interval: float = Field(900.0, gt=0, description="period of the NTP check (s)")
    ntp_timeout: float = Field(5.0, gt=0, le=60, description="per-server NTP timeout (s)")


@dataclass(slots=True)
class NtpServerRow:
    """One configured NTP server (API.md §6)."""

    id: int
    address: str
    port: int
    iburst: bool
    prefer: bool
    minpoll: int
    maxpoll: int


_NTP_COLUMNS = ("address", "port", "iburst", "prefer", "minpoll", "maxpoll")


class NtpServerRepository:
    """Configured NTP servers."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[NtpServerRow]:
        rows = await self.db.fetch_all(
            "SELECT id, address, port, iburst, prefer, minpoll, maxpoll FROM ntp_servers "
            "ORDER BY id"
        )
        return [NtpServerRow(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5], r[6]) for r in rows]

    async def get(self, server_id: int) -> NtpServerRow | None:
        for row in await self.list():
            if row.id == server_id:
                return row
        return None

    async def create(self, fields: dict[str, Any]) -> int:
        values = {k: fields[k] for k in _NTP_COLUMNS}
        _, rowid = await self.db.write(
            "INSERT INTO ntp_servers (address, port, iburst, prefer, minpoll, maxpoll) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            tuple(values.values()),
        )
        return int(rowid or 0)

    async def update(self, server_id: int, fields: dict[str, Any]) -> None:
        values = {k: fields[k] for k in _NTP_COLUMNS if k in fields}
        if not values:
            return
        sets = ", ".join(f"{k} = ?" for k in values)
        await self.db.write(
            f"UPDATE ntp_servers SET {sets} WHERE id = ?", (*values.values(), server_id)
        )

    async def delete(self, server_id: int) -> None:
        await self.db.write("DELETE FROM ntp_servers WHERE id = ?", (server_id,))
