"""``user.query`` / ``get_instance`` / ``create`` / ``update`` / ``delete`` (API.md §5), the
role guard (API.md §3) and the guarded writes both halves of the plugin make.

A guarded write names the credential generation it read (API.md §9): the repository
changes the row only when neither the target nor the caller changed since, so a check
made on the row still holds in the statement that makes the change. When it did change,
the caller re-reads and checks again (five times, then EBUSY).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from middlewared_2fa.api import CallContext, api_method
from middlewared_2fa.crypto import hash_password
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import (
    EBUSY,
    ENOENT,
    EPERM,
    CallError,
    NotAuthorized,
    SetupRequired,
    ValidationError,
    ValidationErrors,
)
from middlewared_2fa.filters import filter_list
from middlewared_2fa.log import redact
from middlewared_2fa.login import SecondFactors
from middlewared_2fa.roles import has_any, holds_all
from middlewared_2fa.schema.common import BoolResult, QueryOptions
from middlewared_2fa.schema.user import (
    UserCreate,
    UserCreateArgs,
    UserDeleteArgs,
    UserEntry,
    UserEntryResult,
    UserGetInstanceArgs,
    UserQueryArgs,
    UserQueryResult,
    UserUpdate,
    UserUpdateArgs,
)
from middlewared_2fa.session import Session

from ..auth_twofactor import TwoFactorService
from .bootstrap import initial_password_path

if TYPE_CHECKING:
    from middlewared_2fa.middleware import Middleware

#: Attempts of a guarded write before EBUSY (the target or the caller kept changing).
GUARDED_ATTEMPTS = 5


#: Entries of many rows in one validation (``user.query`` of every user).
_ENTRIES = TypeAdapter(list[UserEntry])


def user_entry(row: UserRow, factors: SecondFactors | None = None) -> dict[str, Any]:
    """The UserEntry of ``row`` as a dict (never the password hash or the secret).
    ``factors``: the daemon's kinds of second factor besides TOTP (passkeys), for
    ``twofactor_auth_configured``; None counts the TOTP secret only."""
    entry = UserEntry.model_validate(row, from_attributes=True).model_dump()
    if factors is not None:
        entry["twofactor_auth_configured"] = factors.configured(row)
    return entry


def user_entries(rows: list[UserRow], factors: SecondFactors | None = None) -> list[UserEntry]:
    """The UserEntry of each row, validated from its attributes; returned as models, the
    dispatcher takes them without validating them again. ``factors`` as :func:`user_entry`."""
    entries = _ENTRIES.validate_python(rows, from_attributes=True)
    if factors is not None:
        for entry, row in zip(entries, rows, strict=True):
            if not entry.twofactor_auth_configured and factors.configured(row):
                entry.twofactor_auth_configured = True
    return entries


def caller_of(ctx: CallContext) -> tuple[int, int] | None:
    """``(id, generation)`` of the calling user: the guarded writes check that the
    caller's own credentials did not change either (None for the Unix-socket root)."""
    identity = ctx.identity
    if identity.user_id is None:
        return None
    return identity.user_id, identity.generation


def role_guard(ctx: CallContext, target: UserRow | None, grant: Sequence[str] = ()) -> None:
    """The role guard (API.md §3): the caller may change only a user whose roles it
    holds (after expanding includes) and grant only roles it holds; FULL_ADMIN holds
    all. Called on the row that the guarded write then requires unchanged, so the
    check holds in the statement that makes the change.

    Raises:
        CallError: EPERM.
    """
    identity = ctx.identity
    if target is not None and target.id != identity.user_id:
        if not holds_all(identity.granted, target.roles):
            raise CallError(
                f"You may change only users whose roles you hold ({target.username!r} "
                "has roles you do not)",
                EPERM,
            )
    if not holds_all(identity.granted, grant):
        raise CallError("You may grant only roles you hold", EPERM)


async def after_stale_write(ctx: CallContext) -> None:
    """A guarded write found the target or the caller changed meanwhile. Raise when
    it was the caller (its session is ending); else the caller re-reads and retries.

    Raises:
        CallError: EPERM when the caller's own credentials changed.
    """
    caller = caller_of(ctx)
    if caller is None:
        return
    row = await ctx.middleware.repos.users.get(caller[0])
    if row is None or row.generation != caller[1]:
        raise CallError("Your account changed during this call; log in again", EPERM)


def end_derived_credentials(
    ctx: CallContext, user_id: int, generation: int, *, keep_own: bool
) -> None:
    """End what was derived from the old credentials (API.md §9); the caller's own
    session survives a change of its own password or secret (``keep_own``), and so do
    the user's API-key sessions (API keys are independent credentials)."""
    session: Session | None = ctx.session
    identity = ctx.session.identity
    if not keep_own or identity is None or identity.user_id != user_id:
        session = None
    ctx.middleware.sessions.credentials_changed(
        user_id, generation, keep=session, spare_api_keys=keep_own
    )


async def run_post_change(ctx: CallContext, old: UserRow | None, new: UserRow | None) -> None:
    """Run the hook ``user.post_change``: the ``user.query`` event (the plugin's own
    subscriber), the SSH OATH users file (API.md §8), the failure count. Raises what a
    subscriber raises, e.g. CallError (EIO) when the users file cannot be written; the
    change itself stays saved."""
    await ctx.middleware.hooks.run("user.post_change", ctx, old, new)


class UserCrud:
    """The CRUD methods of ``UserService`` (a mixin: the service class is the one
    :class:`~middlewared_2fa.api.Service` subclass of the plugin)."""

    middleware: Middleware

    async def _check_ssh_password(
        self, errors: ValidationErrors, attribute: str, enabled: bool, has_secret: bool
    ) -> None:
        if not enabled or has_secret:
            return
        config = await self.middleware.service(TwoFactorService).get_config()
        if config.enabled and config.ssh:
            errors.add(
                attribute,
                "SSH password login needs a 2FA secret while two-factor authentication is "
                "required for SSH; configure the user's secret first",
            )

    @api_method(UserQueryArgs, UserQueryResult, roles=[])
    async def query(self, ctx: CallContext, filters: list[list[Any]], options: QueryOptions) -> Any:
        """Users (``UserEntry`` list). Without ACCOUNT_READ only the caller's own entry."""
        rows = await self._candidates(filters)
        identity = ctx.identity
        if not has_any(identity.granted, ["ACCOUNT_READ"]):
            rows = [r for r in rows if r.id == identity.user_id]
        return filter_list(user_entries(rows, self.middleware.factors), filters, options, vars)

    async def _candidates(self, filters: list[list[Any]]) -> list[UserRow]:
        """Rows that can match ``filters``: one key lookup for an ``id`` or ``username``
        equality filter (the common case, e.g. get_instance), else every user. The filters
        themselves are still applied afterwards by filter_list."""
        users = self.middleware.repos.users
        for field, op, value in filters:
            if op == "=" and field == "id" and type(value) is int and 0 < value < 2**63:
                row = await users.get(value)
                return [row] if row else []
            if op == "=" and field == "username" and isinstance(value, str):
                row = await users.get_by_name(value)
                return [row] if row else []
        return await users.list()

    @api_method(UserGetInstanceArgs, UserEntryResult, roles=[])
    async def get_instance(self, ctx: CallContext, id: int) -> Any:
        """The user with ``id``. Raises CallError ENOENT when there is none (or not visible)."""
        return await self.query(ctx, [["id", "=", id]], QueryOptions(get=True))

    @api_method(UserCreateArgs, UserEntryResult, roles=["ACCOUNT_WRITE"], audit=True)
    async def create(self, ctx: CallContext, user_create: UserCreate) -> dict[str, Any]:
        """Create a local user; the password is stored as argon2id.

        Raises:
            CallError: EPERM granting a role the caller does not hold (role guard).
            ValidationErrors: ``user_create.username`` taken; ``ssh_password_enabled``
                while SSH 2FA is required (a new user has no secret).
        """
        redact(user_create.password)
        role_guard(ctx, None, list(user_create.roles))
        repos = self.middleware.repos
        errors = ValidationErrors()
        if await repos.users.get_by_name(user_create.username) is not None:
            errors.add("user_create.username", "A user with this name already exists")
        await self._check_ssh_password(
            errors, "user_create.ssh_password_enabled", user_create.ssh_password_enabled, False
        )
        errors.check()
        password_hash = await self.middleware.hashing.run(
            ctx.session.address, hash_password, user_create.password
        )
        await after_stale_write(ctx)  # the caller's roles may have changed during the hash
        try:
            user_id = await repos.users.create(
                {
                    "username": user_create.username,
                    "full_name": user_create.full_name,
                    "password_hash": password_hash,
                    "roles": user_create.roles,
                    "locked": user_create.locked,
                    "ssh_password_enabled": user_create.ssh_password_enabled,
                }
            )
        except sqlite3.IntegrityError:
            raise ValidationError(
                "user_create.username", "A user with this name already exists"
            ) from None
        row = await repos.users.get(user_id)
        assert row is not None
        await run_post_change(ctx, None, row)
        return user_entry(row, self.middleware.factors)

    @api_method(UserUpdateArgs, UserEntryResult, roles=[], audit=True, setup=True)
    async def update(self, ctx: CallContext, id: int, user_update: UserUpdate) -> dict[str, Any]:
        """Change some fields of user ``id``. With ACCOUNT_WRITE any field of a user whose
        roles the caller holds; any user may change their own ``password`` alone.

        A change of the password, roles or lock ends what was derived from the old
        credentials (API.md §9): a new password ends the user's other sessions and every
        token; new roles or a lock end every session and token. Unlocking also resets the
        account's failure count (API.md §3).

        A setup-only session (API.md §4) may change its own password only.

        Raises:
            CallError: EACCES without the right (or from a setup-only session, anything
                but its own password); ENOENT unknown id; EPERM outside the role guard or
                changing the built-in admin's name or roles.
            ValidationErrors: name taken, SSH password rule.
        """
        identity = ctx.identity
        changes = user_update.model_dump(exclude_unset=True)  # only the keys given change
        password: str | None = changes.pop("password", None)
        if identity.setup_only and not (identity.user_id == id and password and not changes):
            raise SetupRequired()  # a setup-only session: its own password alone (API.md §4)
        writer = has_any(identity.granted, ["ACCOUNT_WRITE"])
        if not writer and not (identity.user_id == id and not changes):
            raise NotAuthorized()  # without ACCOUNT_WRITE: the own password alone
        password_hash: str | None = None
        if password is not None:
            redact(password)
        repos = self.middleware.repos
        for _ in range(GUARDED_ATTEMPTS):  # re-read and re-check when the target changed
            row = await repos.users.get(id)
            if row is None:
                raise CallError(f"User id {id} does not exist", ENOENT)
            role_guard(ctx, row, changes.get("roles", ()))
            errors = ValidationErrors()
            renamed = "username" in changes and changes["username"] != row.username
            if row.builtin and renamed:
                errors.add("user_update.username", "The built-in administrator cannot be renamed")
            if row.builtin and "roles" in changes and "FULL_ADMIN" not in changes["roles"]:
                errors.add("user_update.roles", "The built-in administrator keeps FULL_ADMIN")
            if renamed and await repos.users.get_by_name(changes["username"]) is not None:
                errors.add("user_update.username", "A user with this name already exists")
            if "ssh_password_enabled" in changes:
                await self._check_ssh_password(
                    errors,
                    "user_update.ssh_password_enabled",
                    changes["ssh_password_enabled"],
                    row.totp_secret is not None,  # pam_oath needs a TOTP secret (§8)
                )
            errors.check()
            fields = dict(changes)
            if password is not None:
                if password_hash is None:
                    password_hash = await self.middleware.hashing.run(
                        ctx.session.address, hash_password, password
                    )
                fields["password_hash"] = password_hash
            if "roles" in fields and list(fields["roles"]) == list(row.roles):
                del fields["roles"]  # unchanged: nothing to end
            if "locked" in fields and fields["locked"] == row.locked:
                del fields["locked"]
            try:
                generation = await repos.users.update_guarded(
                    id, row.generation, fields, caller=caller_of(ctx)
                )
            except sqlite3.IntegrityError:
                raise ValidationError(
                    "user_update.username", "A user with this name already exists"
                ) from None
            if generation is not None:
                break
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        if generation != row.generation:
            only_password = not ({"roles", "locked"} & set(fields))
            end_derived_credentials(ctx, id, generation, keep_own=only_password)
        own = ctx.session.identity
        if password is not None and own is not None and own.user_id == id:
            # The session set its own new password (after a one-time password, §10).
            own.attributes = tuple(a for a in own.attributes if a != "PASSWORD_CHANGE_REQUIRED")
        if password is not None and row.builtin:
            # The generated first password no longer works: do not keep pointing at it.
            initial_password_path(self.middleware).unlink(missing_ok=True)
        new = await repos.users.get(id)
        if new is None:
            raise CallError(f"User id {id} does not exist", ENOENT)
        if changes.get("locked") is False:
            # API.md §3: {locked: false} also resets the failure count, also for an
            # account that only cools down (the administrator's way to end a cool-down).
            await self.middleware.hooks.run("user.unlocked", ctx, new)
        await run_post_change(ctx, row, new)
        return user_entry(new, self.middleware.factors)

    @api_method(UserDeleteArgs, BoolResult, roles=["ACCOUNT_WRITE"], audit=True)
    async def delete(self, ctx: CallContext, id: int) -> bool:
        """Delete user ``id``; every session and token of it ends (API.md §9).

        Raises:
            CallError: ENOENT (unknown), EPERM (built-in, or outside the role guard).
        """
        repos = self.middleware.repos
        for _ in range(GUARDED_ATTEMPTS):
            row = await repos.users.get(id)
            if row is None:
                raise CallError(f"User id {id} does not exist", ENOENT)
            if row.builtin:
                raise CallError("The built-in administrator cannot be deleted", EPERM)
            role_guard(ctx, row)
            if await repos.users.delete_guarded(id, row.generation, caller=caller_of(ctx)):
                break
            await after_stale_write(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        self.middleware.sessions.credentials_changed(id, 2**62)
        await run_post_change(ctx, row, None)
        return True
