"""``user.*``: local accounts and their TOTP secrets (API.md §4, §5).

Secrets are 32 base32 characters (160 bits, RFC 4226 §4 R6 recommends at least 128)
from the operating system's CSPRNG, stored encrypted; provisioning URIs follow the
Key URI format (``otpauth://totp/ISSUER:NAME%40HOST?secret=...&issuer=...``).

One service, :class:`UserService`, made of three mixins: :mod:`.crud` (accounts, the
role guard, guarded writes), :mod:`.twofactor` (the per-user secret) and
:mod:`.enrolment` (staged enrolment, its table ``twofactor_pending``); :mod:`.bootstrap`
creates the built-in admin, :mod:`.otpauth` holds the pure URI and QR helpers.

Every change of a user (by this plugin or another, e.g. ``auth`` locking an account)
runs the hook ``user.post_change(ctx, old, new)``; this plugin's own subscriber, first
in line, sends the ``user.query`` event (``added`` / ``changed`` / ``removed``).
``user.update {locked: false}`` first runs ``user.unlocked(ctx, row)`` (the failure
count starts again, API.md §3).
"""

from __future__ import annotations

from middlewared_2fa.api import CallContext, Hook, Role, Service
from middlewared_2fa.datastore.repositories import UserRow

from .bootstrap import INITIAL_PASSWORD_FILE, UserSettings, bootstrap_admin
from .crud import UserCrud, user_entry
from .enrolment import MIGRATIONS, UserEnrolment
from .otpauth import SECRET_LENGTH, provisioning_uri, qr_data_uri
from .twofactor import UserTwoFactor

__all__ = [
    "INITIAL_PASSWORD_FILE",
    "SECRET_LENGTH",
    "UserService",
    "UserSettings",
    "provisioning_uri",
    "qr_data_uri",
    "user_entry",
]

#: Order of the ``user.query`` event among the ``user.post_change`` subscribers: before
#: the others, so the event goes out even when a later subscriber fails the call (EIO).
EVENT_HOOK_ORDER = -100


class UserService(UserCrud, UserTwoFactor, UserEnrolment, Service):
    class Config:
        namespace = "user"
        role_prefix = ("ACCOUNT",)
        roles = (
            Role("ACCOUNT_READ", readonly=True),
            Role("ACCOUNT_WRITE", includes=("ACCOUNT_READ",)),
        )
        settings = UserSettings
        migrations = MIGRATIONS
        hooks = (Hook("user.post_change", "_emit_query_event", order=EVENT_HOOK_ORDER),)
        # user.twofactor_config: subscribers add keys to user.twofactor_config's answer.
        publishes = ("user.post_change", "user.unlocked", "user.twofactor_config")

    async def setup(self) -> None:
        self.middleware.events.declare("user.query", ["ACCOUNT_READ"], owner_field="id")
        await bootstrap_admin(self.middleware)

    async def _emit_query_event(
        self, ctx: CallContext, old: UserRow | None, new: UserRow | None
    ) -> None:
        """``user.query`` for one change: ``added`` (``old`` None), ``removed`` (``new``
        None, with the last entry), else ``changed``."""
        events = self.middleware.events
        if new is None:
            if old is not None:
                events.emit(
                    "user.query", "removed", old.id, user_entry(old, self.middleware.factors)
                )
        elif old is None:
            events.emit("user.query", "added", new.id, user_entry(new, self.middleware.factors))
        else:
            events.emit("user.query", "changed", new.id, user_entry(new, self.middleware.factors))
