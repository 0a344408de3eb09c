"""Role expansion as data (API.md §3): a role table of includes, its transitive expansion,
and the two guards built on it (``holds_all`` for targets, ``has_any`` for methods)."""

from __future__ import annotations

import pytest

from middlewared_2fa import roles as R
from middlewared_2fa.roles import FULL_ADMIN, READONLY_ADMIN, RoleError, RoleTable, has_any


@pytest.fixture
def table() -> RoleTable:
    """A table as plugins would fill it: READ/WRITE pairs and a three-level chain."""
    t = RoleTable()
    t.register("ACCOUNT_READ", readonly=True)
    t.register("ACCOUNT_WRITE", ["ACCOUNT_READ"])
    t.register("AUDIT_READ", readonly=True)
    t.register("LEVEL_1")
    t.register("LEVEL_2", ["LEVEL_1"])
    t.register("LEVEL_3", ["LEVEL_2", "AUDIT_READ"])
    return t


def test_fresh_table_has_only_the_framework_roles() -> None:
    """Before any plugin: FULL_ADMIN and READONLY_ADMIN, both including nothing."""
    t = RoleTable()
    assert t.names == {FULL_ADMIN, READONLY_ADMIN}
    assert t.expand([READONLY_ADMIN]) == {READONLY_ADMIN}
    assert t.expand([FULL_ADMIN]) == {FULL_ADMIN}


def test_expand_is_transitive(table: RoleTable) -> None:
    """Includes of includes are granted; a role grants itself."""
    assert table.expand(["LEVEL_3"]) == {"LEVEL_3", "LEVEL_2", "LEVEL_1", "AUDIT_READ"}
    assert table.expand(["LEVEL_2"]) == {"LEVEL_2", "LEVEL_1"}
    assert table.expand(["ACCOUNT_WRITE"]) == {"ACCOUNT_WRITE", "ACCOUNT_READ"}
    assert table.expand(["ACCOUNT_READ", "LEVEL_1"]) == {"ACCOUNT_READ", "LEVEL_1"}
    assert table.expand([]) == frozenset()


def test_expand_ignores_unknown_names(table: RoleTable) -> None:
    """A name the table does not know grants nothing (a stored role of a removed plugin)."""
    assert table.expand(["NOT_A_ROLE"]) == frozenset()
    assert table.expand(["NOT_A_ROLE", "LEVEL_2"]) == {"LEVEL_2", "LEVEL_1"}


def test_readonly_admin_grants_the_readonly_roles(table: RoleTable) -> None:
    """READONLY_ADMIN includes exactly the roles registered ``readonly``."""
    assert table.includes(READONLY_ADMIN) == {"ACCOUNT_READ", "AUDIT_READ"}
    assert table.expand([READONLY_ADMIN]) == {READONLY_ADMIN, "ACCOUNT_READ", "AUDIT_READ"}
    assert "ACCOUNT_WRITE" not in table.expand([READONLY_ADMIN])


def test_full_admin_expands_to_itself_only(table: RoleTable) -> None:
    """FULL_ADMIN is not expanded into roles: the guards treat it as holding all."""
    assert table.expand([FULL_ADMIN]) == {FULL_ADMIN}


def test_register_is_idempotent_for_the_same_definition(table: RoleTable) -> None:
    """Registering the same role again with the same includes changes nothing."""
    before = table.names
    table.register("ACCOUNT_WRITE", ["ACCOUNT_READ"])
    table.register("ACCOUNT_READ", readonly=True)
    assert table.names == before
    assert table.includes("ACCOUNT_WRITE") == {"ACCOUNT_READ"}


@pytest.mark.parametrize(
    ("name", "includes", "readonly", "message"),
    [
        ("account_read", (), False, "names are upper-case"),
        ("", (), False, "names are upper-case"),
        ("ACCOUNT-READ", (), False, "names are upper-case"),
        (FULL_ADMIN, (), False, "belongs to the framework"),
        (READONLY_ADMIN, (), True, "belongs to the framework"),
        ("NEW_ROLE", ("NOT_YET",), False, "includes unknown roles ['NOT_YET']"),
        ("ACCOUNT_WRITE", (), False, "declared twice, differently"),
        ("ACCOUNT_READ", (), False, "declared twice, differently"),
        # A plugin's role must not grant the framework's (a read-only one would make
        # every READONLY_ADMIN a FULL_ADMIN).
        ("XI_READ", (FULL_ADMIN,), True, "may not include the framework roles"),
        ("XI_ALL", (FULL_ADMIN,), False, "may not include the framework roles"),
        ("XI_VIEW", (READONLY_ADMIN,), False, "may not include the framework roles"),
        # READONLY_ADMIN grants every read-only role: one must not carry a write role,
        # directly or through includes.
        ("XI_READ", ("ACCOUNT_WRITE",), True, "not read-only ['ACCOUNT_WRITE']"),
        ("XI_READ", ("LEVEL_2",), True, "not read-only ['LEVEL_1', 'LEVEL_2']"),
    ],
)
def test_register_errors(
    table: RoleTable, name: str, includes: tuple[str, ...], readonly: bool, message: str
) -> None:
    """Bad names, framework names, unknown includes and conflicting redefinitions fail."""
    with pytest.raises(RoleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        table.register(name, includes, readonly=readonly)


def test_includes_of_unknown_role_is_empty(table: RoleTable) -> None:
    """``includes`` of a name the table does not know is empty, not an error."""
    assert table.includes("NOT_A_ROLE") == frozenset()
    assert table.includes("LEVEL_3") == {"LEVEL_2", "AUDIT_READ"}


def test_holds_all(table: RoleTable) -> None:
    """A caller holds a target's roles after expanding the target's; FULL_ADMIN holds all."""
    write = table.expand(["ACCOUNT_WRITE"])
    assert table.holds_all(write, ["ACCOUNT_READ"])
    assert table.holds_all(write, ["ACCOUNT_WRITE"])
    assert table.holds_all(write, [])
    assert not table.holds_all(table.expand(["ACCOUNT_READ"]), ["ACCOUNT_WRITE"])
    assert not table.holds_all(write, [FULL_ADMIN])
    assert not table.holds_all(write, ["ACCOUNT_WRITE", "AUDIT_READ"])
    # LEVEL_3 includes LEVEL_1 through LEVEL_2: a holder of only LEVEL_2 lacks AUDIT_READ.
    assert not table.holds_all(table.expand(["LEVEL_2"]), ["LEVEL_3"])
    assert table.holds_all(table.expand(["LEVEL_3"]), ["LEVEL_1", "AUDIT_READ"])
    assert table.holds_all(frozenset({FULL_ADMIN}), [FULL_ADMIN, "ACCOUNT_WRITE"])
    assert not table.holds_all(table.expand([READONLY_ADMIN]), [READONLY_ADMIN, "LEVEL_1"])


def test_has_any() -> None:
    """One of the method's roles suffices; ``[]`` means any session; FULL_ADMIN suffices."""
    granted = frozenset({"ACCOUNT_WRITE", "ACCOUNT_READ"})
    assert has_any(granted, ["ACCOUNT_READ", "AUDIT_READ"])
    assert has_any(granted, [])
    assert has_any(frozenset(), [])
    assert not has_any(granted, ["AUDIT_READ"])
    assert not has_any(frozenset(), ["ACCOUNT_READ"])
    assert has_any(frozenset({FULL_ADMIN}), ["ANYTHING_AT_ALL"])
    assert has_any(granted, (r for r in ["AUDIT_READ", "ACCOUNT_WRITE"]))
    # has_any does not expand: the caller passes an expanded set.
    assert not has_any(frozenset({"ACCOUNT_WRITE"}), ["ACCOUNT_READ"])


def test_module_functions_use_the_daemon_table() -> None:
    """``expand`` and ``holds_all`` of the module are those of :data:`ROLES`."""
    names = sorted(R.ROLES.names)
    for name in names:
        assert R.expand([name]) == R.ROLES.expand([name])
        assert R.holds_all(R.expand([name]), [name])
    assert R.holds_all(frozenset({FULL_ADMIN}), names)
