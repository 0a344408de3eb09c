"""The registry is built from ``@api_method`` declarations, and a wrong declaration fails
when the plugin is loaded (``collect_methods``), not when the method is called."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import BaseModel, Field

from middlewared_2fa.api import (
    ApiDefinitionError,
    CallContext,
    Service,
    api_method,
    collect_methods,
)
from middlewared_2fa.roles import FULL_ADMIN
from middlewared_2fa.schema.common import Model, NoArgs, StrResult

NO_MIDDLEWARE = cast(Any, None)


class PairArgs(Model):
    first: str = Field(description="first")
    second: int = Field(0, description="second")


class ValueResult(BaseModel):
    """Named ``value`` instead of ``result``."""

    value: str


class TwoFieldResult(BaseModel):
    result: str
    more: str


class EmptyResult(BaseModel):
    pass


def collect(cls: type[Service]) -> list[Any]:
    return collect_methods(cls(NO_MIDDLEWARE))


def test_well_declared_service() -> None:
    """Every decorated method is registered as ``namespace.attr`` with its parameters in
    the Args model's order, bound to the instance; undecorated ones are not."""

    class Good(Service):
        class Config:
            namespace = "good.ns"

        @api_method(PairArgs, StrResult, roles=[FULL_ADMIN], audit=True)
        async def pair(self, ctx: CallContext, first: str, second: int) -> str:
            """Join.

            Details that are not the description."""
            return first * second

        @api_method(NoArgs, StrResult, auth="none", private=True, rate_limit="always")
        async def open_one(self, ctx: CallContext) -> str:
            return "x"

        @api_method(NoArgs, StrResult, roles=[])
        async def anyone(self, ctx: CallContext) -> str:
            return "y"

        async def helper(self) -> None:
            """Not an API method."""

    service = Good(NO_MIDDLEWARE)
    methods = {m.name: m for m in collect_methods(service)}
    assert set(methods) == {"good.ns.pair", "good.ns.open_one", "good.ns.anyone"}
    pair = methods["good.ns.pair"]
    assert pair.params == ("first", "second")
    assert pair.func.__self__ is service  # type: ignore[attr-defined]
    assert (pair.spec.roles, pair.spec.auth, pair.spec.audit) == ((FULL_ADMIN,), "required", True)
    assert pair.spec.description == "Join."
    assert (pair.spec.accepts, pair.spec.returns) == (PairArgs, StrResult)
    opened = methods["good.ns.open_one"]
    assert (opened.spec.auth, opened.spec.private, opened.spec.rate_limit) == (
        "none",
        True,
        "always",
    )
    assert opened.spec.roles == () and opened.params == ()
    assert methods["good.ns.anyone"].spec.roles == ()


def test_no_namespace() -> None:
    """A service without ``Config.namespace`` is refused."""

    class Nameless(Service):
        @api_method(NoArgs, StrResult, roles=[])
        async def ping(self, ctx: CallContext) -> str:
            return "pong"

    with pytest.raises(ApiDefinitionError, match=r"^Nameless: Config.namespace is not set$"):
        collect(Nameless)


def test_accepts_is_not_a_model() -> None:
    """The Args model must be a pydantic model class (not a dict, not an instance)."""
    for accepts in (dict, NoArgs(), None):

        class Bad(Service):
            class Config:
                namespace = "bad"

            @api_method(cast(Any, accepts), StrResult, roles=[])
            async def call(self, ctx: CallContext) -> str:
                return ""

        with pytest.raises(ApiDefinitionError, match=r"^bad.call: accepts must be a pydantic"):
            collect(Bad)


@pytest.mark.parametrize("returns", [ValueResult, TwoFieldResult, EmptyResult, dict])
def test_result_model_needs_one_result_field(returns: type[BaseModel]) -> None:
    """The result model must have exactly one field, ``result``."""

    class Bad(Service):
        class Config:
            namespace = "bad"

        @api_method(NoArgs, returns, roles=[])
        async def call(self, ctx: CallContext) -> str:
            return ""

    with pytest.raises(ApiDefinitionError, match=r"^bad.call: the result model must have one"):
        collect(Bad)


def test_roles_are_required_unless_auth_none() -> None:
    """Leaving ``roles`` out is an error (``[]`` is how "any user" is said), except for
    methods callable before login."""

    class Bad(Service):
        class Config:
            namespace = "bad"

        @api_method(NoArgs, StrResult)
        async def call(self, ctx: CallContext) -> str:
            return ""

    with pytest.raises(ApiDefinitionError, match=r"^bad.call: roles are required"):
        collect(Bad)

    class Open(Service):
        class Config:
            namespace = "open"

        @api_method(NoArgs, StrResult, auth="none")
        async def call(self, ctx: CallContext) -> str:
            return ""

    assert [m.name for m in collect(Open)] == ["open.call"]


def test_unknown_roles() -> None:
    """A role that no table defines is refused, with the unknown names sorted."""

    class Bad(Service):
        class Config:
            namespace = "bad"

        @api_method(NoArgs, StrResult, roles=[FULL_ADMIN, "ZZ_NO_SUCH_ROLE", "AA_NO_SUCH_ROLE"])
        async def call(self, ctx: CallContext) -> str:
            return ""

    with pytest.raises(ApiDefinitionError) as err:
        collect(Bad)
    assert str(err.value) == "bad.call: unknown roles ['AA_NO_SUCH_ROLE', 'ZZ_NO_SUCH_ROLE']"


@pytest.mark.parametrize(
    "variant",
    ["swapped", "missing", "extra", "renamed"],
)
def test_parameters_must_match_args(variant: str) -> None:
    """The coroutine's parameters after ``self, ctx`` are the Args fields, in order."""

    class Swapped(Service):
        class Config:
            namespace = "bad"

        @api_method(PairArgs, StrResult, roles=[])
        async def call(self, ctx: CallContext, second: int, first: str) -> str:
            return ""

    class Missing(Service):
        class Config:
            namespace = "bad"

        @api_method(PairArgs, StrResult, roles=[])
        async def call(self, ctx: CallContext, first: str) -> str:
            return ""

    class Extra(Service):
        class Config:
            namespace = "bad"

        @api_method(NoArgs, StrResult, roles=[])
        async def call(self, ctx: CallContext, first: str) -> str:
            return ""

    class Renamed(Service):
        class Config:
            namespace = "bad"

        @api_method(PairArgs, StrResult, roles=[])
        async def call(self, ctx: CallContext, first: str, count: int) -> str:
            return ""

    cls, declared, expected = {
        "swapped": (Swapped, "('second', 'first')", "('first', 'second')"),
        "missing": (Missing, "('first',)", "('first', 'second')"),
        "extra": (Extra, "('first',)", "()"),
        "renamed": (Renamed, "('first', 'count')", "('first', 'second')"),
    }[variant]
    args = "NoArgs" if variant == "extra" else "PairArgs"
    with pytest.raises(ApiDefinitionError) as err:
        collect(cls)
    assert str(err.value) == f"bad.call: parameters {declared} do not match {args} {expected}"


def test_method_must_be_async() -> None:
    """A plain function is refused: the dispatcher awaits every method."""

    class Bad(Service):
        class Config:
            namespace = "bad"

        @api_method(NoArgs, StrResult, roles=[])  # type: ignore[arg-type]
        def call(self, ctx: CallContext) -> str:
            return ""

    with pytest.raises(ApiDefinitionError, match=r"^bad.call: must be async$"):
        collect(Bad)


def test_the_wheel_carries_every_shipped_plugin_package() -> None:
    """pyproject.toml lists each package folder of plugins/ (a wheel maps plugins/ to
    middlewared_2fa._plugins): a plugin package left out would be missing when installed."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        "middlewared_2fa._plugins." + p.parent.name
        for p in (root / "plugins").glob("*/__init__.py")
    }
    assert folders <= listed, sorted(folders - listed)
