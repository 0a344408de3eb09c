"""Per-connection session state: who is logged in, a pending OTP step, the transport."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal

from middlewared_2fa import roles as _roles

Credentials = Literal["LOGIN_PASSWORD", "LOGIN_TWOFACTOR", "TOKEN", "UNIX_SOCKET"]


@dataclass(slots=True)
class Identity:
    """An authenticated principal.

    ``user_id`` is None for the built-in root identity of the Unix socket.
    """

    user_id: int | None
    username: str
    roles: list[str]
    credentials: Credentials
    _granted: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked on every call and every forwarded event: expand once.
        self._granted = _roles.expand(self.roles)

    @property
    def granted(self) -> frozenset[str]:
        """Roles with their inclusions expanded."""
        return self._granted

    @property
    def is_full_admin(self) -> bool:
        return _roles.FULL_ADMIN in self.roles


@dataclass(slots=True)
class PendingOtp:
    """A password step that succeeded and waits for the OTP step (API.md §3).

    ``retries`` counts wrong codes still allowed to answer OTP_REQUIRED (3 at first).
    """

    user_id: int
    username: str
    retries: int = 3


@dataclass(slots=True)
class Session:
    """State of one WebSocket connection.

    Args:
        address: Client address used for rate limiting (IP for TCP, ``unix`` otherwise).
        transport: ``"tcp"`` or ``"unix"``.
    """

    address: str
    transport: Literal["tcp", "unix"]
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    identity: Identity | None = None
    pending_otp: PendingOtp | None = None

    @property
    def authenticated(self) -> bool:
        return self.identity is not None

    @property
    def granted(self) -> frozenset[str]:
        return self.identity.granted if self.identity else frozenset()

    @property
    def username(self) -> str | None:
        return self.identity.username if self.identity else None
