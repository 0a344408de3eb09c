"""The shipped roles (API.md §3) under the role guard's test, the role names type built
on the daemon's table, and the table's snapshot for tests that load an extra plugin.
The table's own rules are in test_role_expansion.py."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from middlewared_2fa.roles import ROLES, RoleName, RoleTable

#: The roles of the shipped plugins, as their ``Config.roles`` declare them.
SHIPPED = {
    "ACCOUNT_READ": ((), True),
    "ACCOUNT_WRITE": (("ACCOUNT_READ",), False),
    "SYSTEM_SECURITY_READ": ((), True),
    "SYSTEM_SECURITY_WRITE": (("SYSTEM_SECURITY_READ",), False),
    "SYSTEM_AUDIT_READ": ((), True),
    "AUTH_SESSIONS_READ": ((), True),
    "AUTH_SESSIONS_WRITE": (("AUTH_SESSIONS_READ",), False),
    "API_KEY_READ": ((), True),
    "API_KEY_WRITE": (("API_KEY_READ",), False),
}


@pytest.fixture
def table() -> RoleTable:
    roles = RoleTable()
    for name, (includes, readonly) in SHIPPED.items():
        roles.register(name, includes, readonly=readonly)
    return roles


def test_role_guard_holds_all(table: RoleTable) -> None:
    """A caller holds a target's roles after expanding both; FULL_ADMIN holds all."""
    account_write = table.expand(["ACCOUNT_WRITE"])
    assert table.holds_all(account_write, ["ACCOUNT_READ"])
    assert table.holds_all(account_write, ["ACCOUNT_WRITE"])
    assert table.holds_all(account_write, [])
    assert not table.holds_all(account_write, ["SYSTEM_SECURITY_WRITE"])
    assert not table.holds_all(account_write, ["FULL_ADMIN"])
    assert not table.holds_all(table.expand(["READONLY_ADMIN"]), ["ACCOUNT_WRITE"])
    assert table.holds_all(table.expand(["FULL_ADMIN"]), ["FULL_ADMIN", "ACCOUNT_WRITE"])


class _Roles(BaseModel):
    roles: list[RoleName]


def test_role_name_type_validates_against_the_daemon_table() -> None:
    """RoleName accepts the registered names and refuses others without echoing them;
    its JSON schema lists the names known when it is generated."""
    known = sorted(ROLES.names)
    assert _Roles.model_validate({"roles": known}).roles == known
    with pytest.raises(ValidationError) as exc:
        _Roles.model_validate({"roles": ["FULL_ADMIN", "NOPE_NOT_HERE"]})
    errors = exc.value.errors(include_input=False)
    assert [e["loc"] for e in errors] == [("roles", 1)]
    assert "NOPE_NOT_HERE" not in errors[0]["msg"]
    schema = _Roles.model_json_schema()
    assert schema["properties"]["roles"]["items"]["enum"] == known


def test_snapshot_and_restore() -> None:
    """A role registered after a snapshot is gone after restore; the rest is kept."""
    table = RoleTable()
    table.register("ACCOUNT_READ", readonly=True)
    state = table.snapshot()
    table.register("EXTRA_READ", readonly=True)
    assert "EXTRA_READ" in table.expand(["READONLY_ADMIN"])
    table.restore(state)
    assert table.names == {"FULL_ADMIN", "READONLY_ADMIN", "ACCOUNT_READ"}
    assert table.expand(["READONLY_ADMIN"]) == {"READONLY_ADMIN", "ACCOUNT_READ"}
