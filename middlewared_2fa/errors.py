"""Typed exceptions raised by services; turned into JSON-RPC errors in ``dispatcher.py``.

Error numbers follow TrueNAS: POSIX errno values plus ``ENOTAUTHENTICATED`` (207).
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable

EPERM = _errno.EPERM  # 1
ENOENT = _errno.ENOENT  # 2
EACCES = _errno.EACCES  # 13
EBUSY = _errno.EBUSY  # 16
EEXIST = _errno.EEXIST  # 17
EINVAL = _errno.EINVAL  # 22
EOPNOTSUPP = _errno.EOPNOTSUPP  # 95
ENOTAUTHENTICATED = 207

ERRNAMES: dict[int, str] = {
    EPERM: "EPERM",
    ENOENT: "ENOENT",
    EACCES: "EACCES",
    EBUSY: "EBUSY",
    EEXIST: "EEXIST",
    EINVAL: "EINVAL",
    EOPNOTSUPP: "EOPNOTSUPP",
    ENOTAUTHENTICATED: "ENOTAUTHENTICATED",
}


def errname(errno: int) -> str:
    """Symbolic name of ``errno`` (``"EINVAL"``); ``"E<n>"`` when unknown."""
    return ERRNAMES.get(errno) or _errno.errorcode.get(errno, f"E{errno}")


class CallError(Exception):
    """A method failed for a reason the caller can act on (JSON-RPC code -32001).

    Args:
        reason: Human-readable message. Must never contain a secret, password,
            OTP code or provisioning URI.
        errno: POSIX errno (or 207 ENOTAUTHENTICATED); default EINVAL.
        extra: Optional JSON-serialisable detail, sent as ``data.extra``.
    """

    def __init__(self, reason: str, errno: int = EINVAL, extra: list[object] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.errno = errno
        self.extra = extra


class ValidationErrors(Exception):
    """One or more invalid attributes (JSON-RPC code -32602).

    Each error is ``(attribute, message, errno)``; ``attribute`` is a dotted path rooted
    at the parameter name, e.g. ``auth_twofactor_update.window``.
    """

    def __init__(self, errors: Iterable[tuple[str, str, int]] = ()):
        self.errors: list[tuple[str, str, int]] = list(errors)
        super().__init__(self.reason)

    def add(self, attribute: str, message: str, errno: int = EINVAL) -> None:
        """Record one invalid attribute."""
        self.errors.append((attribute, message, errno))

    def check(self) -> None:
        """Raise ``self`` if any error was recorded."""
        if self.errors:
            raise self

    @property
    def reason(self) -> str:
        """The errors as ``[EINVAL] attribute: message`` lines."""
        return "\n".join(f"[{errname(e)}] {a}: {m}" for a, m, e in self.errors)

    def __bool__(self) -> bool:
        return bool(self.errors)


class ValidationError(ValidationErrors):
    """A single invalid attribute; a shorthand for ``ValidationErrors([(a, m, e)])``."""

    def __init__(self, attribute: str, message: str, errno: int = EINVAL):
        super().__init__([(attribute, message, errno)])


class NotAuthenticated(CallError):
    """The method needs a logged-in session (errno 207, "Not authenticated")."""

    def __init__(self) -> None:
        super().__init__("Not authenticated", ENOTAUTHENTICATED)


class NotAuthorized(CallError):
    """The session lacks the role the method needs (EACCES, "Not authorized")."""

    def __init__(self) -> None:
        super().__init__("Not authorized", EACCES)


class SetupRequired(CallError):
    """A setup-only session called a method outside its setup calls (API.md §4)."""

    def __init__(self) -> None:
        super().__init__("Two-factor authentication must be set up first", EACCES)


class MethodNotFound(Exception):
    """Unknown or private method (JSON-RPC code -32601)."""


class TooManyCalls(Exception):
    """The per-connection concurrency limit was reached (JSON-RPC code -32000)."""


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""
