"""Roles as data (API.md §3): one list of names, includes, and the role guard's test."""

from __future__ import annotations

from typing import get_args

from middlewared_2fa.roles import ALL_ROLES, expand, holds_all
from middlewared_2fa.schema.auth import RoleName


def test_role_names_of_the_schema_are_the_role_table() -> None:
    """The names accepted in user.create/update are exactly the roles the table defines."""
    assert set(get_args(RoleName)) == ALL_ROLES


def test_includes_expand_transitively() -> None:
    """WRITE includes READ; READONLY_ADMIN includes every *_READ; unknown names vanish."""
    assert expand(["ACCOUNT_WRITE"]) == {"ACCOUNT_WRITE", "ACCOUNT_READ"}
    assert expand(["READONLY_ADMIN"]) == {"READONLY_ADMIN"} | {
        r for r in ALL_ROLES if r.endswith("_READ")
    }
    assert expand(["NOT_A_ROLE"]) == frozenset()


def test_role_guard_holds_all() -> None:
    """A caller holds a target's roles after expanding both; FULL_ADMIN holds all."""
    account_write = expand(["ACCOUNT_WRITE"])
    assert holds_all(account_write, ["ACCOUNT_READ"])
    assert holds_all(account_write, ["ACCOUNT_WRITE"])
    assert holds_all(account_write, [])
    assert not holds_all(account_write, ["SYSTEM_SECURITY_WRITE"])
    assert not holds_all(account_write, ["FULL_ADMIN"])
    assert not holds_all(expand(["READONLY_ADMIN"]), ["ACCOUNT_WRITE"])
    assert holds_all(expand(["FULL_ADMIN"]), ["FULL_ADMIN", "ACCOUNT_WRITE"])
