"""An example third-party plugin, loaded with ``--plugins-dir tests/example_plugins``.

It keeps a history of changes to accounts and lets holders of its own role read it. It
declares everything a plugin can bring, and adding it changes nothing in the framework:

- a table (its migration 1, tracked under its namespace in ``schema_migrations``);
- a setting (``account_history_limit``, flat in the TOML file and the environment);
- a role (``ACCOUNT_HISTORY_READ``, granted by ``READONLY_ADMIN`` too);
- a hook subscriber (``user.post_change``, published by the user plugin);
- a method (``account_history.query``).

docs/architecture.md walks through it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from middlewared_2fa.api import CallContext, Hook, Migration, Role, Service, api_method
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import ENOENT, CallError
from middlewared_2fa.schema.common import Model, Out


class AccountHistorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_history_limit: int = Field(
        20, ge=1, le=1000, description="entries kept per account (oldest go first)"
    )


class AccountHistoryQueryArgs(Model):
    username: str = Field(max_length=256)


class AccountHistoryEntry(Out):
    what: str = Field(description="created, changed or deleted")
    by: str | None = Field(description="the caller's username (null: the daemon itself)")
    at: float = Field(description="Unix time (s), from the daemon's clock")


class AccountHistoryQueryResult(Out):
    result: list[AccountHistoryEntry]


class AccountHistoryService(Service):
    """``account_history.*``: who changed which account when."""

    class Config:
        namespace = "account_history"
        role_prefix = ("ACCOUNT_HISTORY",)
        roles = (Role("ACCOUNT_HISTORY_READ", readonly=True),)
        settings = AccountHistorySettings
        migrations = (
            Migration(
                1,
                """
                CREATE TABLE account_history (
                    id       INTEGER PRIMARY KEY AUTOINCREMENT,
                    username TEXT NOT NULL,
                    what     TEXT NOT NULL,
                    by       TEXT,
                    at       REAL NOT NULL
                );
                CREATE INDEX account_history_username ON account_history (username, id);
                """,
            ),
        )
        hooks = (Hook("user.post_change", "_record"),)

    async def _record(self, ctx: CallContext, old: UserRow | None, new: UserRow | None) -> None:
        row = new or old
        assert row is not None
        what = "created" if old is None else "deleted" if new is None else "changed"
        identity = ctx.session.identity
        limit = self.middleware.settings_of(AccountHistorySettings).account_history_limit
        db = self.middleware.db
        await db.write(
            "INSERT INTO account_history (username, what, by, at) VALUES (?, ?, ?, ?)",
            (
                row.username,
                what,
                identity.username if identity else None,
                self.middleware.clock.time(),
            ),
        )
        await db.write(
            "DELETE FROM account_history WHERE username = ? AND id NOT IN "
            "(SELECT id FROM account_history WHERE username = ? ORDER BY id DESC LIMIT ?)",
            (row.username, row.username, limit),
        )

    @api_method(AccountHistoryQueryArgs, AccountHistoryQueryResult, roles=["ACCOUNT_HISTORY_READ"])
    async def query(self, ctx: CallContext, username: str) -> list[dict[str, Any]]:
        """The recorded changes of ``username``, oldest first: ``[{what, by, at}]``.

        Raises:
            CallError: ENOENT when nothing is recorded for ``username``.
        """
        rows = await self.middleware.db.fetch_all(
            "SELECT what, by, at FROM account_history WHERE username = ? ORDER BY id",
            (username,),
        )
        if not rows:
            raise CallError(f"No history for {username!r}", ENOENT)
        return [{"what": r[0], "by": r[1], "at": r[2]} for r in rows]
