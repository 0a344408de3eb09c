"""Roles are data: each role names the roles it includes (TrueNAS READ/WRITE pairs).

The framework defines ``FULL_ADMIN`` (grants everything) and ``READONLY_ADMIN`` (grants
every role a plugin marks ``readonly``); plugins declare the rest in ``Service.Config.roles``
and the loader registers them in :data:`ROLES` before any method is collected. The role
names type of the API (:data:`RoleName`) validates against the same table, so there is one
source of role names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

FULL_ADMIN = "FULL_ADMIN"
READONLY_ADMIN = "READONLY_ADMIN"


class RoleError(ValueError):
    """A plugin declared a role wrongly (bad name, unknown include, a conflicting
    second definition)."""


class RoleTable:
    """Role name -> the roles it includes, and which roles ``READONLY_ADMIN`` grants."""

    def __init__(self) -> None:
        self._includes: dict[str, frozenset[str]] = {FULL_ADMIN: frozenset()}
        self._readonly: set[str] = set()
        self._includes[READONLY_ADMIN] = frozenset()

    def register(self, name: str, includes: Iterable[str] = (), *, readonly: bool = False) -> None:
        """Add role ``name`` (idempotent for the same definition).

        Raises:
            RoleError: ``name`` is not upper-case ``A-Z0-9_``, is a framework role, an
                included role is unknown or a framework role (a plugin's role must not
                grant FULL_ADMIN), a read-only role includes one that is not read-only
                (READONLY_ADMIN would grant it), or ``name`` exists with another
                definition.
        """
        wanted = frozenset(includes)
        if not name or not all(c.isupper() or c.isdigit() or c == "_" for c in name):
            raise RoleError(f"role {name!r}: names are upper-case letters, digits and _")
        if name in (FULL_ADMIN, READONLY_ADMIN):
            raise RoleError(f"role {name!r} belongs to the framework")
        framework = sorted(wanted & {FULL_ADMIN, READONLY_ADMIN})
        if framework:
            raise RoleError(f"role {name!r} may not include the framework roles {framework}")
        unknown = sorted(r for r in wanted if r not in self._includes)
        if unknown:
            raise RoleError(f"role {name!r} includes unknown roles {unknown}")
        if readonly:
            writable = sorted(r for r in self.expand(wanted) if r not in self._readonly)
            if writable:
                raise RoleError(
                    f"read-only role {name!r} includes roles that are not read-only {writable}"
                )
        current = self._includes.get(name)
        if current is not None and (current != wanted or (name in self._readonly) != readonly):
            raise RoleError(f"role {name!r} is declared twice, differently")
        self._includes[name] = wanted
        if readonly:
            self._readonly.add(name)
            self._includes[READONLY_ADMIN] = frozenset(self._readonly)

    def snapshot(self) -> tuple[dict[str, frozenset[str]], set[str]]:
        """The table's state, for :meth:`restore`."""
        return dict(self._includes), set(self._readonly)

    def restore(self, state: tuple[dict[str, frozenset[str]], set[str]]) -> None:
        """Go back to a :meth:`snapshot` (tests that load an extra plugin in a process
        whose other daemons do not)."""
        self._includes, self._readonly = dict(state[0]), set(state[1])

    @property
    def names(self) -> frozenset[str]:
        """Every known role."""
        return frozenset(self._includes)

    def includes(self, name: str) -> frozenset[str]:
        """The roles ``name`` includes directly (empty for an unknown name)."""
        return self._includes.get(name, frozenset())

    def expand(self, roles: Iterable[str]) -> frozenset[str]:
        """All roles granted by ``roles``, transitively (unknown names are ignored)."""
        granted: set[str] = set()
        todo = [r for r in roles if r in self._includes]
        while todo:
            role = todo.pop()
            if role not in granted:
                granted.add(role)
                todo.extend(self._includes[role])
        return frozenset(granted)

    def holds_all(self, granted: frozenset[str], roles: Iterable[str]) -> bool:
        """The role guard's test (API.md §3): ``granted`` (already expanded) holds every
        role in ``roles`` after expanding their includes; FULL_ADMIN holds all.

        A target with FULL_ADMIN is therefore reachable only by FULL_ADMIN, and one with
        ACCOUNT_WRITE only by callers holding ACCOUNT_WRITE (or FULL_ADMIN).
        """
        if FULL_ADMIN in granted:
            return True
        return self.expand(roles) <= granted


#: The daemon's role table: the framework's two roles plus what the loaded plugins declare.
#: It is process-wide, like the role names on the wire (one daemon per process; test
#: processes load the same plugins into every daemon, or restore it, see
#: tests/api/test_example_plugin.py).
ROLES = RoleTable()


def expand(roles: Iterable[str]) -> frozenset[str]:
    """:meth:`RoleTable.expand` on :data:`ROLES`."""
    return ROLES.expand(roles)


def holds_all(granted: frozenset[str], roles: Iterable[str]) -> bool:
    """:meth:`RoleTable.holds_all` on :data:`ROLES`."""
    return ROLES.holds_all(granted, roles)


def has_any(granted: frozenset[str], required: Iterable[str]) -> bool:
    """True when ``granted`` (already expanded) satisfies one of ``required``.

    An empty ``required`` means any authenticated session. FULL_ADMIN satisfies all.
    """
    required = list(required)
    if not required or FULL_ADMIN in granted:
        return True
    return any(r in granted for r in required)


def _known_role(value: str) -> str:
    if value not in ROLES.names:
        raise PydanticCustomError(
            "role", "must be one of {roles}", {"roles": ", ".join(sorted(ROLES.names))}
        )
    return value


class _RoleNameSchema:
    """JSON schema of a role name: a string enum of the roles known when it is asked for
    (``core.get_methods`` lists the loaded plugins' roles)."""

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "enum": sorted(ROLES.names)}

    def __hash__(self) -> int:
        return hash(type(self))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _RoleNameSchema)


#: A role name of the API: validated against :data:`ROLES`.
RoleName = Annotated[str, AfterValidator(_known_role), _RoleNameSchema()]
