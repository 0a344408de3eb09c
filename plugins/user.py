"""``user.*``: local accounts and their TOTP secrets (API.md §4, §5).

Secrets are 32 base32 characters (160 bits, RFC 4226 §4 R6 recommends at least 128)
from the operating system's CSPRNG, stored encrypted; provisioning URIs follow the
Key URI format (``otpauth://totp/ISSUER:NAME%40HOST?secret=...&issuer=...``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from typing import Any
from urllib.parse import quote

import pyotp
import segno

from middlewared_2fa.api import CallContext, Service, api_method
from middlewared_2fa.crypto import hash_password
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import (
    EACCES,
    EBUSY,
    EINVAL,
    ENOENT,
    EPERM,
    CallError,
    NotAuthorized,
    ValidationError,
    ValidationErrors,
)
from middlewared_2fa.filters import filter_list
from middlewared_2fa.log import redact
from middlewared_2fa.roles import has_any, holds_all
from middlewared_2fa.schema.common import BoolResult, NullResult, QueryOptions, StrResult
from middlewared_2fa.schema.user import (
    QrOptions,
    TwoFactorOptions,
    UserCreate,
    UserCreateArgs,
    UserDeleteArgs,
    UserEntryResult,
    UserGetInstanceArgs,
    UserProvisioningUriArgs,
    UserQueryArgs,
    UserQueryResult,
    UserRenew2faSecretArgs,
    UserRenew2faSecretResult,
    UserTwofactorConfigArgs,
    UserTwofactorConfigResult,
    UserTwofactorQrArgs,
    UserTwofactorQrResult,
    UserUnset2faSecretArgs,
    UserUpdate,
    UserUpdateArgs,
    UserVerifyTwofactorTokenArgs,
)
from middlewared_2fa.session import Identity, Session, StaleCredential

logger = logging.getLogger(__name__)

SECRET_LENGTH = 32  # base32 characters = 160 bits


def provisioning_uri(
    secret: str, *, username: str, host: str, issuer: str, interval: int, digits: int
) -> str:
    """Key URI for authenticator apps (Google Authenticator Key-Uri-Format).

    Label ``ISSUER:NAME@HOST`` with each part percent-encoded per RFC 3986 (space is
    ``%20``); ``digits`` only when not 6, ``period`` only when not 30. The secret is
    written without ``=`` padding.
    """
    label = f"{quote(issuer, safe='')}:{quote(f'{username}@{host}', safe='')}"
    query = f"secret={secret.rstrip('=')}&issuer={quote(issuer, safe='')}"
    if digits != 6:
        query += f"&digits={digits}"
    if interval != 30:
        query += f"&period={interval}"
    return f"otpauth://totp/{label}?{query}"


def qr_data_uri(payload: str, *, fmt: str, scale: int) -> str:
    """``payload`` as a ``data:`` URI of a regular QR code, error correction M, quiet zone
    of 4 modules.

    Never Micro QR: ``segno.make`` picks Micro QR for short payloads and most phone
    readers cannot scan those (segno #114), so ``make_qr`` is used.

    Args:
        payload: Text to encode (the provisioning URI).
        fmt: ``"png"`` or ``"svg"``.
        scale: Pixels (or SVG units) per module.
    """
    qr = segno.make_qr(payload, error="M", boost_error=False)
    if fmt == "png":
        return str(qr.png_data_uri(scale=scale, border=4))
    return str(qr.svg_data_uri(scale=scale, border=4))


class UserService(Service):
    class Config:
        namespace = "user"

    async def setup(self) -> None:
        self.middleware.events.declare("user.query", ["ACCOUNT_READ"], owner_field="id")
        await self._bootstrap_admin()

    async def _bootstrap_admin(self) -> None:
        repos = self.middleware.repos
        if await repos.users.count() > 0:
            return
        settings = self.middleware.settings
        password = settings.admin_password or None  # an empty setting means "generate"
        generated = password is None
        if password is None:
            password = secrets.token_urlsafe(18)
        redact(password)
        password_hash = await asyncio.to_thread(hash_password, password)
        await repos.users.create(
            {
                "username": "admin",
                "full_name": "Administrator",
                "password_hash": password_hash,
                "roles": ["FULL_ADMIN"],
                "builtin": True,
            }
        )
        if generated:
            path = settings.initial_password_path
            path.parent.mkdir(parents=True, exist_ok=True)
            import os

            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            logger.warning("created user 'admin'; its initial password is in %s", path.resolve())
        else:
            logger.info("created user 'admin' with the configured password")

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def entry(row: UserRow) -> dict[str, Any]:
        """UserEntry of ``row`` (never the secret)."""
        return {
            "id": row.id,
            "username": row.username,
            "full_name": row.full_name,
            "roles": list(row.roles),
            "locked": row.locked,
            "ssh_password_enabled": row.ssh_password_enabled,
            "twofactor_auth_configured": row.totp_secret is not None,
            "builtin": row.builtin,
        }

    def _emit(self, msg: str, row: UserRow) -> None:
        self.middleware.events.emit("user.query", msg, row.id, self.entry(row))

    def emit_changed(self, row: UserRow) -> None:
        """``user.query`` changed for ``row`` (other services changed it, e.g. a lock)."""
        self._emit("changed", row)

    @staticmethod
    def _caller(ctx: CallContext) -> tuple[int, int] | None:
        """``(id, generation)`` of the calling user: the guarded writes check that the
        caller's own credentials did not change either (None for the Unix-socket root)."""
        identity = ctx.identity
        if identity.user_id is None:
            return None
        return identity.user_id, identity.generation

    @staticmethod
    def _guard(
        ctx: CallContext, target: UserRow | None, grant: list[str] | tuple[str, ...] = ()
    ) -> None:
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

    async def _stale(self, ctx: CallContext) -> None:
        """A guarded write found the target or the caller changed meanwhile. Raise when
        it was the caller (its session is ending); else the caller re-reads and retries.

        Raises:
            CallError: EPERM when the caller's own credentials changed.
        """
        caller = self._caller(ctx)
        if caller is None:
            return
        row = await self.middleware.repos.users.get(caller[0])
        if row is None or row.generation != caller[1]:
            raise CallError("Your account changed during this call; log in again", EPERM)

    async def _named(self, ctx: CallContext, username: str, *, write_role: str | None) -> UserRow:
        """The user called ``username`` if the caller is that user (same id, so a session
        of a renamed or deleted account never reaches a new account of the same name),
        FULL_ADMIN, or holds ``write_role`` and every role of that user (role guard).

        Raises:
            CallError: EPERM when not allowed (checked before existence, so names cannot
                be probed), ENOENT when there is no such user.
        """
        identity = ctx.identity
        row = await self.middleware.repos.users.get_by_name(username)
        is_self = row is not None and identity.user_id == row.id
        delegated = write_role is not None and has_any(identity.granted, [write_role])
        if not (is_self or identity.is_full_admin or delegated):
            raise CallError("Only the user themself or an administrator may do this", EPERM)
        if row is None:
            raise CallError(f"User {username[:64]!r} does not exist", ENOENT)
        self._guard(ctx, row)
        return row

    async def _require_second_factor_session(self, ctx: CallContext) -> None:
        """A session reads or changes second factors only when it satisfies its own
        user's 2FA: LEVEL_2, the Unix socket, 2FA not applying to the caller (global 2FA
        off or no secret yet), or the secret was set by this very session and nothing
        changed since (API.md §9). So a stolen password or token cannot read or replace
        a second factor it does not have.

        Raises:
            CallError: EACCES.
        """
        identity = ctx.identity
        if identity.credentials == "UNIX_SOCKET" or identity.level == "LEVEL_2":
            return
        if identity.user_id is None:
            return
        config = await self.middleware.service("auth.twofactor").get_config()
        if not config.enabled:
            return
        me = await self.middleware.repos.users.get(identity.user_id)
        if me is None or me.totp_secret is None:
            return
        if ctx.session.enrolled_generation == me.generation:
            return
        raise CallError("This needs a session that used two-factor authentication", EACCES)

    def _credentials_changed(
        self, ctx: CallContext, user_id: int, generation: int, *, keep_own: bool
    ) -> None:
        """End what was derived from the old credentials (API.md §9); the caller's own
        session survives a change of its own password or secret (``keep_own``)."""
        session: Session | None = ctx.session
        identity = ctx.session.identity
        if not keep_own or identity is None or identity.user_id != user_id:
            session = None
        self.middleware.sessions.credentials_changed(user_id, generation, keep=session)

    def _uri(self, row: UserRow, issuer: str) -> str | None:
        if row.totp_secret is None:
            return None
        secret = self.middleware.decrypt_secret(row.totp_secret)
        uri = provisioning_uri(
            secret,
            username=row.username,
            host=self.middleware.hostname,
            issuer=issuer,
            interval=row.totp_interval,
            digits=row.totp_digits,
        )
        redact(uri)
        return uri

    async def _twofactor_config(self, row: UserRow) -> dict[str, Any]:
        config = await self.middleware.service("auth.twofactor").get_config()
        return {
            "provisioning_uri": self._uri(row, config.issuer),
            "secret_configured": row.totp_secret is not None,
            "interval": row.totp_interval,
            "otp_digits": row.totp_digits,
        }

    async def _check_ssh_password(
        self, errors: ValidationErrors, attribute: str, enabled: bool, has_secret: bool
    ) -> None:
        if not enabled or has_secret:
            return
        config = await self.middleware.service("auth.twofactor").get_config()
        if config.enabled and config.ssh:
            errors.add(
                attribute,
                "SSH password login needs a 2FA secret while two-factor authentication is "
                "required for SSH; configure the user's secret first",
            )

    async def _changed(self, ctx: CallContext, old: UserRow | None, new: UserRow | None) -> None:
        """Run the hook ``user.post_change`` (the SSH OATH users file follows it, API.md
        §8). Raises what a subscriber raises, e.g. CallError (EIO) when the users file
        cannot be written; the change itself stays saved."""
        await self.middleware.hooks.run("user.post_change", ctx, old, new)

    # -- CRUD ------------------------------------------------------------------------

    @api_method(UserQueryArgs, UserQueryResult, roles=[])
    async def query(self, ctx: CallContext, filters: list[list[Any]], options: QueryOptions) -> Any:
        """Users (``UserEntry`` list). Without ACCOUNT_READ only the caller's own entry."""
        rows = await self._candidates(filters)
        identity = ctx.identity
        if not has_any(identity.granted, ["ACCOUNT_READ"]):
            rows = [r for r in rows if r.id == identity.user_id]
        return filter_list([self.entry(r) for r in rows], filters, options)

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
        self._guard(ctx, None, list(user_create.roles))
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
        await self._stale(ctx)  # the caller's roles may have changed during the hash
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
        self._emit("added", row)
        await self._changed(ctx, None, row)
        return self.entry(row)

    @api_method(UserUpdateArgs, UserEntryResult, roles=[], audit=True)
    async def update(self, ctx: CallContext, id: int, user_update: UserUpdate) -> dict[str, Any]:
        """Change some fields of user ``id``. With ACCOUNT_WRITE any field of a user whose
        roles the caller holds; any user may change their own ``password`` alone.

        A change of the password, roles or lock ends what was derived from the old
        credentials (API.md §9): a new password ends the user's other sessions and every
        token; new roles or a lock end every session and token. Unlocking also resets the
        account's failure count (API.md §3).

        Raises:
            CallError: EACCES without the right; ENOENT unknown id; EPERM outside the
                role guard or changing the built-in admin's name or roles.
            ValidationErrors: name taken, SSH password rule.
        """
        identity = ctx.identity
        given = user_update.model_fields_set
        writer = has_any(identity.granted, ["ACCOUNT_WRITE"])
        if not writer and not (identity.user_id == id and given <= {"password"}):
            raise NotAuthorized()
        password_hash: str | None = None
        if "password" in given:
            redact(user_update.password)
        repos = self.middleware.repos
        for _ in range(5):  # re-read and re-check when the target changed meanwhile
            row = await repos.users.get(id)
            if row is None:
                raise CallError(f"User id {id} does not exist", ENOENT)
            self._guard(ctx, row, list(user_update.roles) if "roles" in given else ())
            errors = ValidationErrors()
            if row.builtin and "username" in given and user_update.username != row.username:
                errors.add("user_update.username", "The built-in administrator cannot be renamed")
            if row.builtin and "roles" in given and "FULL_ADMIN" not in user_update.roles:
                errors.add("user_update.roles", "The built-in administrator keeps FULL_ADMIN")
            if "username" in given and user_update.username != row.username:
                if await repos.users.get_by_name(user_update.username) is not None:
                    errors.add("user_update.username", "A user with this name already exists")
            if "ssh_password_enabled" in given:
                await self._check_ssh_password(
                    errors,
                    "user_update.ssh_password_enabled",
                    user_update.ssh_password_enabled,
                    row.totp_secret is not None,
                )
            errors.check()
            fields: dict[str, Any] = {k: getattr(user_update, k) for k in given if k != "password"}
            if "password" in given:
                if password_hash is None:
                    password_hash = await self.middleware.hashing.run(
                        ctx.session.address, hash_password, user_update.password
                    )
                fields["password_hash"] = password_hash
            if "roles" in fields and list(fields["roles"]) == list(row.roles):
                del fields["roles"]  # unchanged: nothing to end
            if "locked" in fields and fields["locked"] == row.locked:
                del fields["locked"]
            try:
                generation = await repos.users.update_guarded(
                    id, row.generation, fields, caller=self._caller(ctx)
                )
            except sqlite3.IntegrityError:
                raise ValidationError(
                    "user_update.username", "A user with this name already exists"
                ) from None
            if generation is not None:
                break
            await self._stale(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        if generation != row.generation:
            only_password = not ({"roles", "locked"} & set(fields))
            self._credentials_changed(ctx, id, generation, keep_own=only_password)
        if "password" in given and row.builtin:
            # The generated first password no longer works: do not keep pointing at it.
            self.middleware.settings.initial_password_path.unlink(missing_ok=True)
        if fields.get("locked") is False:
            await self.middleware.service("auth").reset_failures(id)
        new = await repos.users.get(id)
        if new is None:
            raise CallError(f"User id {id} does not exist", ENOENT)
        self._emit("changed", new)
        await self._changed(ctx, row, new)
        return self.entry(new)

    @api_method(UserDeleteArgs, BoolResult, roles=["ACCOUNT_WRITE"], audit=True)
    async def delete(self, ctx: CallContext, id: int) -> bool:
        """Delete user ``id``; every session and token of it ends (API.md §9).

        Raises:
            CallError: ENOENT (unknown), EPERM (built-in, or outside the role guard).
        """
        repos = self.middleware.repos
        for _ in range(5):
            row = await repos.users.get(id)
            if row is None:
                raise CallError(f"User id {id} does not exist", ENOENT)
            if row.builtin:
                raise CallError("The built-in administrator cannot be deleted", EPERM)
            self._guard(ctx, row)
            if await repos.users.delete_guarded(id, row.generation, caller=self._caller(ctx)):
                break
            await self._stale(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        self.middleware.sessions.credentials_changed(id, 2**62)
        self.middleware.service("auth").throttle.forget(id)
        self._emit("removed", row)
        await self._changed(ctx, row, None)
        return True

    # -- two-factor ------------------------------------------------------------------

    async def _set_secret(
        self,
        ctx: CallContext,
        username: str,
        *,
        write_role: str | None,
        make: Any,
    ) -> UserRow:
        """Replace ``username``'s secret with what ``make(row)`` returns
        (``(encrypted or None, interval, digits, extra columns)``), guarded, ending the
        user's other sessions and tokens (API.md §9)."""
        repos = self.middleware.repos
        for attempt in range(5):
            row = await self._named(ctx, username, write_role=write_role)
            if attempt == 0:
                await self._require_second_factor_session(ctx)
            encrypted, interval, digits, extra = await make(row)
            generation = await repos.users.set_totp_guarded(
                row.id,
                row.generation,
                encrypted,
                interval,
                digits,
                caller=self._caller(ctx),
                extra=extra,
            )
            if generation is not None:
                break
            await self._stale(ctx)
        else:
            raise CallError("The account keeps changing; try again", EBUSY)
        self._credentials_changed(ctx, row.id, generation, keep_own=True)
        if ctx.identity.user_id == row.id:
            ctx.session.enrolled_generation = generation if encrypted is not None else None
        new = await repos.users.get(row.id)
        if new is None:
            raise CallError(f"User {username[:64]!r} does not exist", ENOENT)
        self._emit("changed", new)
        await self._changed(ctx, row, new)
        return new

    @api_method(UserRenew2faSecretArgs, UserRenew2faSecretResult, roles=[], audit=True)
    async def renew_2fa_secret(
        self, ctx: CallContext, username: str, twofactor_options: TwoFactorOptions
    ) -> dict[str, Any]:
        """Give ``username`` a new TOTP secret (32 base32 characters from a CSPRNG); the
        old one stops working at once, and the user's other sessions and tokens end.

        ``twofactor_options``: ``{otp_digits: 6..8, interval: 30|60}``; omitted fields keep
        the stored values. Returns the UserEntry plus ``twofactor_config``.

        Raises:
            CallError: EPERM unless the caller is the user or FULL_ADMIN; ENOENT; EACCES
                from a session without the second factor it has (API.md §9); EIO when
                the SSH OATH users file cannot be rewritten (the new secret is saved).
            ValidationErrors: ``twofactor_options.interval`` / ``.otp_digits`` (schema).
        """
        given = twofactor_options.model_fields_set

        async def make(row: UserRow) -> tuple[str, int, int, dict[str, Any]]:
            interval = twofactor_options.interval if "interval" in given else row.totp_interval
            digits = twofactor_options.otp_digits if "otp_digits" in given else row.totp_digits
            secret = pyotp.random_base32(SECRET_LENGTH)
            redact(secret)
            return self.middleware.encrypt_secret(secret), interval, digits, {}

        new = await self._set_secret(ctx, username, write_role=None, make=make)
        return {**self.entry(new), "twofactor_config": await self._twofactor_config(new)}

    @api_method(UserUnset2faSecretArgs, NullResult, roles=[], audit=True)
    async def unset_2fa_secret(self, ctx: CallContext, username: str) -> None:
        """Remove ``username``'s secret; the next login needs no OTP; the user's other
        sessions and tokens end. While global 2FA and ``services.ssh`` are on,
        ``ssh_password_enabled`` is turned off with it (API.md §5) and the user leaves
        the SSH OATH users file.

        Raises:
            CallError: EPERM unless the caller is the user or has ACCOUNT_WRITE and every
                role of the user; ENOENT; EACCES from a session without the second factor
                it has; EIO when the OATH users file cannot be rewritten (the secret is
                removed).
        """
        config = await self.middleware.service("auth.twofactor").get_config()

        async def make(row: UserRow) -> tuple[None, int, int, dict[str, Any]]:
            extra: dict[str, Any] = {}
            if row.ssh_password_enabled and config.enabled and config.ssh:
                # No password SSH without a secret while SSH 2FA is on (API.md §5).
                extra["ssh_password_enabled"] = False
            return None, row.totp_interval, row.totp_digits, extra

        await self._set_secret(ctx, username, write_role="ACCOUNT_WRITE", make=make)

    @api_method(UserProvisioningUriArgs, StrResult, roles=[])
    async def provisioning_uri(self, ctx: CallContext, username: str) -> str:
        """The ``otpauth://`` URI of ``username``'s secret.

        Raises:
            CallError: EPERM; ENOENT; EACCES from a session without the second factor
                it has (API.md §9); EINVAL when the user has no secret.
        """
        row = await self._named(ctx, username, write_role=None)
        await self._require_second_factor_session(ctx)
        config = await self._twofactor_config(row)
        if config["provisioning_uri"] is None:
            raise CallError(
                f"{username!r} user does not have two factor authentication configured", EINVAL
            )
        return str(config["provisioning_uri"])

    @api_method(UserTwofactorConfigArgs, UserTwofactorConfigResult, roles=[])
    async def twofactor_config(self, ctx: CallContext, username: str) -> dict[str, Any]:
        """``{provisioning_uri|null, secret_configured, interval (s), otp_digits}``.

        Raises:
            CallError: EPERM; ENOENT; EACCES from a session without the second factor
                it has (API.md §9).
        """
        row = await self._named(ctx, username, write_role=None)
        await self._require_second_factor_session(ctx)
        return await self._twofactor_config(row)

    @api_method(UserTwofactorQrArgs, UserTwofactorQrResult, roles=[])
    async def twofactor_qr(
        self, ctx: CallContext, username: str, options: QrOptions
    ) -> dict[str, Any]:
        """QR code of the provisioning URI: a regular QR code (never Micro QR), error
        correction M, as an SVG or PNG ``data:`` URI.

        Raises:
            CallError: EPERM; ENOENT; EACCES; EINVAL when the user has no secret.
        """
        uri = await self.provisioning_uri(ctx, username)
        data_uri = await asyncio.to_thread(
            qr_data_uri, uri, fmt=options.format, scale=options.scale
        )
        return {"format": options.format, "data_uri": data_uri}

    @api_method(UserVerifyTwofactorTokenArgs, BoolResult, roles=[])
    async def verify_twofactor_token(self, ctx: CallContext, username: str, token: str) -> bool:
        """Check ``token`` against ``username``'s secret with the login rules (window,
        whitespace, replay: a right code is used up). Works whether or not global 2FA
        is enabled, so that a freshly scanned secret can be confirmed first. A right
        code of the caller's own secret makes the session LEVEL_2 (``LOGIN_TWOFACTOR``):
        it has just proved both factors (API.md §4, §9).

        Raises:
            CallError: EPERM; ENOENT; EACCES from a session without the second factor
                it has; EINVAL when the user has no secret.
        """
        row = await self._named(ctx, username, write_role=None)
        await self._require_second_factor_session(ctx)
        if row.totp_secret is None:
            raise CallError(
                f"{username!r} user does not have two factor authentication configured", EINVAL
            )
        check = await self.middleware.service("auth.twofactor").check_code(row, token)
        identity = ctx.identity
        if check.ok and identity.user_id == row.id and identity.level != "LEVEL_2":
            await self._upgrade(ctx, identity, row)
        return check.ok

    async def _upgrade(self, ctx: CallContext, identity: Identity, row: UserRow) -> None:
        if identity.generation != row.generation or ctx.connection is None:
            return
        auth = self.middleware.service("auth")
        upgraded = Identity(
            identity.user_id,
            identity.username,
            list(identity.roles),
            "LOGIN_TWOFACTOR",
            level="LEVEL_2",
            generation=identity.generation,
            proof=auth._proof("LOGIN_TWOFACTOR", "LEVEL_2"),
        )
        try:
            ctx.login(upgraded)
        except StaleCredential:
            logger.warning("session of user id %s could not be upgraded", identity.user_id)
