"""Roles are data: each role names the roles it includes (TrueNAS READ/WRITE pairs)."""

from __future__ import annotations

from collections.abc import Iterable

FULL_ADMIN = "FULL_ADMIN"
READONLY_ADMIN = "READONLY_ADMIN"

#: role -> roles it grants besides itself. ``FULL_ADMIN`` grants everything.
ROLE_INCLUDES: dict[str, frozenset[str]] = {
    FULL_ADMIN: frozenset(),
    READONLY_ADMIN: frozenset(
        {
            "ACCOUNT_READ",
            "SYSTEM_SECURITY_READ",
            "SYSTEM_AUDIT_READ",
            "AUTH_SESSIONS_READ",
            "API_KEY_READ",
        }
    ),
    "ACCOUNT_READ": frozenset(),
    "ACCOUNT_WRITE": frozenset({"ACCOUNT_READ"}),
    "SYSTEM_SECURITY_READ": frozenset(),
    "SYSTEM_SECURITY_WRITE": frozenset({"SYSTEM_SECURITY_READ"}),
    "SYSTEM_AUDIT_READ": frozenset(),
    "AUTH_SESSIONS_READ": frozenset(),
    "AUTH_SESSIONS_WRITE": frozenset({"AUTH_SESSIONS_READ"}),
    "API_KEY_READ": frozenset(),
    "API_KEY_WRITE": frozenset({"API_KEY_READ"}),
}

ALL_ROLES: frozenset[str] = frozenset(ROLE_INCLUDES)


def expand(roles: Iterable[str]) -> frozenset[str]:
    """All roles granted by ``roles``, transitively (unknown names are ignored)."""
    granted: set[str] = set()
    todo = [r for r in roles if r in ROLE_INCLUDES]
    while todo:
        role = todo.pop()
        if role not in granted:
            granted.add(role)
            todo.extend(ROLE_INCLUDES[role])
    return frozenset(granted)


def holds_all(granted: frozenset[str], roles: Iterable[str]) -> bool:
    """The role guard's test (API.md §3): ``granted`` (already expanded) holds every role
    in ``roles`` after expanding their includes; FULL_ADMIN holds all.

    A target with FULL_ADMIN is therefore reachable only by FULL_ADMIN, and one with
    ACCOUNT_WRITE only by callers holding ACCOUNT_WRITE (or FULL_ADMIN).
    """
    if FULL_ADMIN in granted:
        return True
    return expand(roles) <= granted


def has_any(granted: frozenset[str], required: Iterable[str]) -> bool:
    """True when ``granted`` (already expanded) satisfies one of ``required``.

    An empty ``required`` means any authenticated session. FULL_ADMIN satisfies all.
    """
    required = list(required)
    if not required or FULL_ADMIN in granted:
        return True
    return any(r in granted for r in required)
