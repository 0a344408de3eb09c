"""``ssh.oath``: keeps the OATH users file and the PAM snippet that make sshd ask pam_oath
for a TOTP code in step with the database (API.md §8, docs/ssh.md). No public methods: it
follows the hooks ``auth.twofactor.pre_update``/``post_update`` and ``user.post_change``,
inside the API call that made the change, so a failed write fails that call.

The file formats, liboath's lock and the replay record are in :mod:`.usersfile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from middlewared_2fa.api import CallContext, Hook, Service
from middlewared_2fa.crypto import DecryptionError
from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.errors import CallError, ValidationErrors
from middlewared_2fa.middleware import Middleware

from ..alert import AlertService
from ..auth_twofactor import TwoFactorService
from ..auth_twofactor.repository import TwoFactorConfigRow
from .usersfile import (
    MAX_SECRET_BYTES,
    OathEntry,
    base32_to_hex,
    read_recorded_step,
    write_files,
    write_record,
)

logger = logging.getLogger(__name__)

#: Alert class raised while the files cannot be written (cleared by the next good write).
WRITE_FAILED_ALERT = "SshOathWriteFailed"
#: Alert class raised when a code the daemon accepted could not be recorded for pam_oath
#: (cleared by the next good record).
RECORD_FAILED_ALERT = "SshOathRecordFailed"


def _line_key(row: UserRow | None) -> tuple[str, str, int, int] | None:
    """What of a user row the users file shows: None without a secret."""
    if row is None or row.totp_secret is None:
        return None
    return (row.username, row.totp_secret, row.totp_interval, row.totp_digits)


class SshOathSettings(BaseModel):
    """Where the files for pam_oath go (API.md §1, §8); default: in ``state_dir``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    oath_users_file: Path | None = Field(None, description="OATH users file for pam_oath")
    pam_snippet_file: Path | None = Field(None, description="PAM snippet for sshd")


class SshOathService(Service):
    """Keeps the OATH users file and PAM snippet in step with the database."""

    class Config:
        namespace = "ssh.oath"
        settings = SshOathSettings
        hooks = (
            Hook("auth.twofactor.pre_update", "_pre_twofactor_update"),
            Hook("auth.twofactor.post_update", "_post_twofactor_update"),
            Hook("user.post_change", "_post_user_change"),
            Hook("auth.twofactor.used_step", "last_step"),
            Hook("auth.twofactor.record_step", "record_step"),
        )

    #: Seconds after a rewrite at which the file is checked again (see module docstring).
    RECHECK_DELAY = 1.0

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        settings = middleware.settings_of(SshOathSettings)
        state = middleware.settings.state_dir
        #: The OATH users file (API.md §8).
        self.oath_users_path: Path = settings.oath_users_file or state / "users.oath"
        #: The PAM snippet (API.md §8).
        self.pam_snippet_path: Path = settings.pam_snippet_file or state / "pam_oath.conf"
        self._lock = asyncio.Lock()
        #: True: the files were last written for "SSH 2FA on"; False: for "off"; None:
        #: unknown or the last write failed (then every hook retries).
        self._written_active: bool | None = None
        self._recheck: asyncio.Task[None] | None = None

    @property
    def _alerts(self) -> AlertService:
        return self.middleware.service(AlertService)

    @property
    def _twofactor(self) -> TwoFactorService:
        return self.middleware.service(TwoFactorService)

    async def _pre_twofactor_update(
        self,
        ctx: CallContext,
        errors: ValidationErrors,
        old: TwoFactorConfigRow,
        new: TwoFactorConfigRow,
    ) -> None:
        await self.validate_twofactor_update(errors, old, new)

    async def _post_twofactor_update(
        self, ctx: CallContext, old: TwoFactorConfigRow, new: TwoFactorConfigRow
    ) -> None:
        await self.sync(ctx)  # rewrites the OATH files; CallError (EIO) if it cannot

    async def _post_user_change(
        self, ctx: CallContext, old: UserRow | None, new: UserRow | None
    ) -> None:
        """Hook: a user's line in the users file changes only with its secret, its TOTP
        parameters or its name (or when a user with a secret appears or goes)."""
        before = _line_key(old)
        after = _line_key(new)
        if before != after and (before is not None or after is not None):
            await self.sync(ctx)

    async def start(self) -> None:
        """Write the files at start-up; a failure raises the alert but does not stop the
        daemon (the administrator must be able to log in and fix it)."""
        with contextlib.suppress(CallError):
            await self._sync(None, "start-up")

    # -- hooks for other services -------------------------------------------------------

    async def validate_twofactor_update(
        self, errors: ValidationErrors, old: TwoFactorConfigRow, new: TwoFactorConfigRow
    ) -> None:
        """Refuse turning SSH 2FA on while users without a secret may use password SSH.

        API.md §5 forbids ``ssh_password_enabled`` without a secret while global 2FA and
        ``services.ssh`` are on; an update that switches that state on must not create
        such users behind the rule's back. The error names them; the attribute is the
        switch that was turned on (``auth_twofactor_update.services.ssh``, or
        ``auth_twofactor_update.enabled`` when ``services.ssh`` was already on).
        """
        if not (new.enabled and new.ssh) or (old.enabled and old.ssh):
            return
        names = [
            row.username
            for row in await self.middleware.repos.users.list()
            if row.ssh_password_enabled and row.totp_secret is None
        ]
        if not names:
            return
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        attribute = (
            "auth_twofactor_update.services.ssh" if not old.ssh else "auth_twofactor_update.enabled"
        )
        errors.add(
            attribute,
            f"SSH password login is enabled for users without a 2FA secret ({shown}); "
            "configure their secrets or turn off their ssh_password_enabled first",
        )

    async def sync(self, ctx: CallContext | None) -> None:
        """Rewrite the users file and snippet from the database, if they change.

        Called inside the API call that made the change (and at start-up with
        ``ctx=None``). While SSH 2FA is off and the files were last written that way,
        nothing is done. A failure raises the alert ``SshOathWriteFailed``, writes an
        audit entry and is raised to the caller; the next good write clears the alert.

        Raises:
            CallError: EIO, the files could not be written (the message names the path
                and the reason, never a secret).
        """
        await self._sync(ctx, "start-up" if ctx is None else ctx.method)

    async def last_step(self, user: UserRow, secret: str) -> int | None:
        """The time step of the code pam_oath (or this daemon) last recorded for
        ``user`` in the users file, so that the caller refuses that code and older ones
        (API.md §8, RFC 6238 §5.2).

        Args:
            user: The user whose code is being checked.
            secret: Their decrypted base32 seed (``user.totp_secret``).

        Returns:
            The step, or None while SSH 2FA is off, when the file has no line for this
            user and secret or no record on it, or when the file cannot be read (logged:
            pam_oath cannot read it either, so it cannot have accepted a code meanwhile;
            the database record still applies).
        """
        found = await self._record_entry(user, secret)
        if found is None:
            return None
        entry, window = found
        path = self.oath_users_path.absolute()
        now = self.middleware.clock.time()
        try:
            return await asyncio.to_thread(
                read_recorded_step, path, entry, secret, now=now, window=window
            )
        except OSError as exc:
            logger.warning(
                "user %s: cannot read %s (%s); the code is checked against the database only",
                user.username,
                path,
                exc.strerror or type(exc).__name__,
            )
            return None

    async def record_step(self, user: UserRow, secret: str, step: int) -> bool:
        """Record ``step``, which the daemon has just accepted (and stored) for ``user``,
        in the users file, so pam_oath refuses that code and older ones (API.md §8).

        Runs under liboath's lock (waiting at most :attr:`RECORD_LOCK_TIMEOUT` s) and this
        service's own lock (``fcntl`` locks do not exclude threads of one process), and
        is shielded from cancellation: once the database has used the code up, the file
        should say so too. A failure does not fail the login (the database record stays
        the source of truth): it is logged and raises the alert ``SshOathRecordFailed``
        (cleared by the next good record), because pam_oath may then accept the code
        once more while it is within the window.

        Args:
            user: The user whose code was accepted.
            secret: Their decrypted base32 seed.
            step: The accepted time step T (RFC 6238 §4.2).

        Returns:
            False when the file shows that pam_oath accepted this step or a newer one
            since :meth:`last_step` was read: the caller must refuse the code as a replay.
            True otherwise (recorded, nothing to record, or a failure that was reported).
        """
        found = await self._record_entry(user, secret)
        if found is None:
            return True
        return await asyncio.shield(self._record(user, secret, step, *found))

    # -- internals ---------------------------------------------------------------------

    #: Seconds :meth:`record_step` waits for liboath's lock: pam_oath holds it for
    #: milliseconds, and a login must not hang behind a stuck lock.
    RECORD_LOCK_TIMEOUT = 2.0

    async def _record_entry(self, user: UserRow, secret: str) -> tuple[OathEntry, int] | None:
        """``(entry, window)`` of ``user``'s users-file line while SSH 2FA is on, else None."""
        config = await self._twofactor.get_config()
        if not (config.enabled and config.ssh):
            return None
        try:
            secret_hex = base32_to_hex(secret)
        except ValueError:
            return None
        entry = OathEntry(user.username, user.totp_interval, user.totp_digits, secret_hex)
        return entry, config.window

    async def _record(
        self, user: UserRow, secret: str, step: int, entry: OathEntry, window: int
    ) -> bool:
        path = self.oath_users_path.absolute()
        async with self._lock:
            try:
                recorded = await asyncio.to_thread(
                    write_record,
                    path,
                    entry,
                    secret,
                    step,
                    now=self.middleware.clock.time(),
                    window=window,
                    lock_timeout=self.RECORD_LOCK_TIMEOUT,
                )
            except OSError as exc:
                detail = f"{path}: {exc.strerror or type(exc).__name__}"
                # Never the code: only whose it was and why it was not recorded.
                logger.error(
                    "user %s: accepted one-time code not recorded for pam_oath (%s); SSH may "
                    "accept it once more while it is within the window",
                    user.username,
                    detail,
                )
                self._alerts.raise_alert(
                    RECORD_FAILED_ALERT,
                    "WARNING",
                    f"A one-time code accepted for user {user.username!r} could not be "
                    f"recorded for SSH ({detail}). pam_oath may accept that code once more "
                    "while it is within the window; fix the file or its folder.",
                )
                return True
        self._alerts.clear_alert(RECORD_FAILED_ALERT)
        if not recorded:
            logger.warning(
                "user %s: a code of the same or a newer time step was used over SSH meanwhile;"
                " refused",
                user.username,
            )
        return recorded

    async def _sync(self, ctx: CallContext | None, origin: str) -> bool:
        """:meth:`sync`; True when the users file was rewritten."""
        async with self._lock:
            config = await self._twofactor.get_config()
            active = config.enabled and config.ssh
            if not active and self._written_active is False:
                return False
            try:
                changed = await self._write(config)
            except (OSError, ValueError) as exc:
                await self._failed(ctx, origin, exc)
                raise CallError(
                    f"{self._reason(exc)}. "
                    + ("The change itself was saved; " if ctx is not None else "")
                    + "SSH logins use the previous files until this is fixed.",
                    errno.EIO,
                ) from None
            if self._written_active is None:
                self._alerts.clear_alert(WRITE_FAILED_ALERT)
            self._written_active = active
        if changed:
            self._schedule_recheck()
        return changed

    async def _entries(self) -> list[OathEntry]:
        """Users with a secret that liboath can read, ordered by id."""
        entries: list[OathEntry] = []
        for row in await self.middleware.repos.users.list():
            if row.totp_secret is None:
                continue
            try:
                secret_hex = base32_to_hex(self._twofactor.unseal(row.totp_secret))
            except (DecryptionError, ValueError):
                logger.warning("user %s: stored secret unreadable; not listed for SSH", row.id)
                continue
            name = row.username
            if len(secret_hex) > 2 * MAX_SECRET_BYTES or not name.isprintable() or " " in name:
                logger.warning("user %s: secret or name unusable by pam_oath; not listed", row.id)
                continue
            entries.append(OathEntry(row.username, row.totp_interval, row.totp_digits, secret_hex))
        return entries

    async def _write(self, config: TwoFactorConfigRow) -> bool:
        users_path = self.oath_users_path.absolute()
        entries = await self._entries() if config.enabled and config.ssh else None
        return await asyncio.to_thread(
            write_files, users_path, self.pam_snippet_path, entries, config.window
        )

    @staticmethod
    def _reason(exc: OSError | ValueError) -> str:
        if isinstance(exc, OSError):
            where = f"{exc.filename}: " if exc.filename else ""
            detail = f"{where}{exc.strerror or type(exc).__name__}"
        else:
            detail = str(exc)
        return f"The SSH two-factor files (pam_oath) could not be written ({detail})"

    async def _failed(
        self, ctx: CallContext | None, origin: str, exc: OSError | ValueError
    ) -> None:
        self._written_active = None
        reason = self._reason(exc)
        logger.error("%s", reason)
        self._alerts.raise_alert(
            WRITE_FAILED_ALERT,
            "CRITICAL",
            f"{reason}. SSH logins may not match the two-factor settings until it is fixed.",
        )
        await self.middleware.audit(
            "METHOD_CALL",
            ctx.session if ctx is not None else None,
            success=False,
            description=f"{origin}: {reason}",
            method=ctx.method if ctx is not None else None,
            error="EIO",
        )

    def _schedule_recheck(self) -> None:
        if self._recheck is not None and not self._recheck.done():
            return
        self._recheck = self.middleware.spawn(self._recheck_later(), "ssh.oath recheck")

    async def _recheck_later(self) -> None:
        await asyncio.sleep(self.RECHECK_DELAY)
        self._recheck = None
        # The write merges pam_oath's newest state, so it only rewrites when a stale
        # write-back (or anything else) changed the users or secrets.
        with contextlib.suppress(CallError):
            if await self._sync(None, "re-check after a rewrite"):
                logger.warning(
                    "%s differed from the database shortly after a rewrite (a pam_oath "
                    "login racing it?); written again",
                    self.oath_users_path,
                )
