"""The plugin's table ``twofactor_config``: the one row of global 2FA settings."""

from __future__ import annotations

from dataclasses import dataclass

from middlewared_2fa.api import Migration
from middlewared_2fa.datastore import Database

#: ``legacy``: the table came with the global schema version 1.
MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE twofactor_config (
            id      INTEGER PRIMARY KEY CHECK (id = 1),
            enabled INTEGER NOT NULL DEFAULT 0,
            window  INTEGER NOT NULL DEFAULT 0 CHECK (window BETWEEN 0 AND 10),
            ssh     INTEGER NOT NULL DEFAULT 0,
            issuer  TEXT NOT NULL DEFAULT 'middlewared-2fa'
        );
        INSERT INTO twofactor_config (id) VALUES (1);
        """,
        legacy=1,
    ),
    Migration(
        2,
        # API.md §4 ``enforce``: every user must use two factors.
        "ALTER TABLE twofactor_config ADD COLUMN enforce INTEGER NOT NULL DEFAULT 0;",
    ),
)


@dataclass(slots=True)
class TwoFactorConfigRow:
    """The single row of ``twofactor_config``. ``window`` is in time steps; ``enforce``
    (needs ``enabled``): users without a second factor get setup-only sessions."""

    enabled: bool
    window: int
    ssh: bool
    issuer: str
    enforce: bool = False


class TwoFactorConfigRepository:
    """Global two-factor settings (one row, id 1)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self) -> TwoFactorConfigRow:
        row = await self.db.lookup(
            "SELECT enabled, window, ssh, issuer, enforce FROM twofactor_config WHERE id = 1"
        )
        assert row is not None  # inserted by migration 1 of this plugin
        return TwoFactorConfigRow(
            bool(row[0]), int(row[1]), bool(row[2]), str(row[3]), bool(row[4])
        )

    async def put(self, config: TwoFactorConfigRow) -> None:
        await self.db.write(
            "UPDATE twofactor_config SET enabled = ?, window = ?, ssh = ?, issuer = ?, "
            "enforce = ? WHERE id = 1",
            (
                int(config.enabled),
                config.window,
                int(config.ssh),
                config.issuer,
                int(config.enforce),
            ),
        )
