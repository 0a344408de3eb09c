"""Parameter binding and pydantic errors as dotted attribute paths (API.md §2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa.api import CallContext, RegisteredMethod, Service, api_method, collect_methods
from middlewared_2fa.errors import EINVAL, ValidationErrors
from middlewared_2fa.schema.common import Model, StrResult
from middlewared_2fa.validation import (
    attribute_path,
    bind_params,
    branch_labels,
    child_type,
    unwrap,
    validation_errors,
)


class Inner(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    value: int


class Other(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    name: str


class Password(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    mechanism: Literal["PASSWORD_PLAIN"]
    password: str


class Otp(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    mechanism: Literal["OTP_TOKEN"]
    otp_token: str


LoginData = Annotated[Password | Otp, Field(discriminator="mechanism")]


class Outer(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    inner: Inner | None = None
    items: list[Inner] = []
    by_key: dict[str, Inner] = {}
    legacy_optional: Optional[Inner] = None  # noqa: UP045 - the typing spelling on purpose
    described: Annotated[Inner, Field(description="an annotated field")] | None = None
    login_data: LoginData | None = None
    plain: int | str = 0
    plain_or_none: int | str | None = None
    models: Inner | Other | None = None
    tags: Annotated[set[str], Field(strict=False)] = set()


class Whole(BaseModel):
    """A model whose own validator fails: the error has an empty ``loc``."""

    low: int = 0
    high: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> Whole:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


def paths(model: type[BaseModel], data: Any) -> list[str]:
    """The attribute path of each error of validating ``data`` with ``model``."""
    with pytest.raises(PydanticValidationError) as err:
        model.model_validate(data)
    return [attribute_path(model, tuple(e["loc"])) for e in err.value.errors()]


def test_nested_model_field() -> None:
    """A field of a nested model is ``outer.inner``, through ``| None`` too."""
    assert paths(Outer, {"inner": {"value": "1"}}) == ["inner.value"]
    assert paths(Outer, {"legacy_optional": {"value": "1"}}) == ["legacy_optional.value"]
    assert paths(Outer, {"described": {"value": "1"}}) == ["described.value"]


def test_list_items_and_dict_values() -> None:
    """List items are addressed by index and dict values by key, then their fields."""
    assert paths(Outer, {"items": [{"value": 1}, {"value": "2"}]}) == ["items.1.value"]
    assert paths(Outer, {"by_key": {"a": {"value": "2"}}}) == ["by_key.a.value"]
    assert paths(Outer, {"tags": ["a", 5]}) == ["tags.1"]


def test_dict_key_that_looks_like_a_union_label_is_kept() -> None:
    """A dict key spelled like a type name or a tag is an attribute, not a union label."""
    assert paths(Outer, {"by_key": {"int": {"value": "2"}}}) == ["by_key.int.value"]
    assert paths(Outer, {"by_key": {"OTP_TOKEN": {"value": "2"}}}) == ["by_key.OTP_TOKEN.value"]


def test_discriminated_union_drops_the_tag() -> None:
    """The tag pydantic puts in ``loc`` is not an attribute: ``login_data.otp_token``."""
    data = {"login_data": {"mechanism": "OTP_TOKEN", "otp_token": 123456}}
    assert paths(Outer, data) == ["login_data.otp_token"]
    data = {"login_data": {"mechanism": "PASSWORD_PLAIN", "password": "x", "extra": 1}}
    assert paths(Outer, data) == ["login_data.extra"]


def test_plain_union_drops_the_type_name() -> None:
    """A union of types names each member it tried in ``loc``; each maps to the field."""
    assert paths(Outer, {"plain": []}) == ["plain", "plain"]
    assert paths(Outer, {"plain_or_none": []}) == ["plain_or_none", "plain_or_none"]


def test_union_of_models_by_type_name() -> None:
    """Members of a union of models are found by class name, then their fields follow."""
    assert paths(Outer, {"models": {"value": "x"}}) == [
        "models.value",  # as Inner: not an integer
        "models.name",  # as Other: missing
        "models.value",  # as Other: unknown
    ]


def test_unknown_field_and_what_follows_it_stay_verbatim() -> None:
    """An unknown field keeps its name; with no type known the rest of ``loc`` is kept."""
    assert paths(Outer, {"nope": 1}) == ["nope"]
    assert attribute_path(Outer, ("nope", "int", 3)) == "nope.int.3"


def test_without_a_model_loc_is_kept() -> None:
    """With no model every ``loc`` item is a path part, labels included."""
    assert attribute_path(None, ("login_data", "OTP_TOKEN", "otp_token")) == (
        "login_data.OTP_TOKEN.otp_token"
    )
    assert attribute_path(None, ()) == ""


def test_unwrap_child_type_and_branch_labels() -> None:
    """The helpers: ``Annotated``/``| None`` removed, child types, union member labels."""
    assert unwrap(Annotated[Inner | None, Field(description="d")]) is Inner
    assert unwrap(Optional[int]) is int  # noqa: UP045
    assert unwrap(int | str) == int | str
    assert child_type(Inner, "value") is int
    assert child_type(Inner, "missing") is None
    assert child_type(list[Inner], 0) is Inner
    assert child_type(dict[str, Other], "k") is Other
    assert child_type(int, "x") is None
    assert branch_labels(Otp) == {"Otp", "OTP_TOKEN"}
    assert branch_labels(Inner) == {"Inner"}
    assert branch_labels(int) == {"int"}


def _errors(model: type[BaseModel], data: Any) -> PydanticValidationError:
    try:
        model.model_validate(data)
    except PydanticValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


def test_validation_errors_paths_messages_errno() -> None:
    """Each pydantic error becomes (path, pydantic's message, EINVAL), in order."""
    exc = _errors(Outer, {"inner": {"value": "1"}, "items": [{}]})
    errors = validation_errors(exc, "outer_root", Outer)
    assert isinstance(errors, ValidationErrors)
    assert errors.errors == [
        ("inner.value", "Input should be a valid integer", EINVAL),
        ("items.0.value", "Field required", EINVAL),
    ]


def test_validation_errors_root_for_an_error_of_the_whole_model() -> None:
    """An error with an empty path is reported at ``root``, without the prefix."""
    exc = _errors(Whole, {"low": 2, "high": 1})
    errors = validation_errors(exc, "login_data", Whole, prefix="login_data.")
    assert errors.errors == [("login_data", "low must not exceed high", EINVAL)]


def test_validation_errors_prefix_for_a_nested_value() -> None:
    """A value validated on its own (``login_data`` by its mechanism's model) gets the
    same paths as when validated inside the params, through the prefix."""
    data = {"mechanism": "OTP_TOKEN", "otp_token": 5}
    alone = validation_errors(_errors(Otp, data), "login_data", Otp, prefix="login_data.")
    inside = validation_errors(_errors(Outer, {"login_data": data}), "params", Outer)
    assert (
        alone.errors
        == inside.errors
        == [("login_data.otp_token", "Input should be a valid string", EINVAL)]
    )


def test_validation_errors_without_model() -> None:
    """Without a model the loc is used as it is (union labels included)."""
    exc = _errors(Outer, {"login_data": {"mechanism": "OTP_TOKEN", "otp_token": 5}})
    assert validation_errors(exc, "r").errors == [
        ("login_data.OTP_TOKEN.otp_token", "Input should be a valid string", EINVAL)
    ]


def test_unknown_tag_is_never_echoed() -> None:
    """pydantic quotes an unknown discriminator value; the message lists the tags only."""
    exc = _errors(Outer, {"login_data": {"mechanism": "hunter2-SECRET"}})
    errors = validation_errors(exc, "r", Outer)
    assert errors.errors == [("login_data", "must be one of 'PASSWORD_PLAIN', 'OTP_TOKEN'", EINVAL)]
    assert "hunter2" not in errors.reason


def test_invalid_values_are_never_echoed() -> None:
    """No message carries the rejected input."""
    exc = _errors(Outer, {"plain": ["hunter2-SECRET"], "inner": {"value": "hunter2-SECRET"}})
    assert "hunter2" not in validation_errors(exc, "r", Outer).reason


class EchoArgs(Model):
    name: str = Field(description="a name")
    count: int = Field(1, ge=1, description="how many")


class EchoService(Service):
    class Config:
        namespace = "test"

    @api_method(EchoArgs, StrResult, auth="none")
    async def echo(self, ctx: CallContext, name: str, count: int) -> str:
        """Repeat ``name``."""
        return name * count


@pytest.fixture
def echo() -> RegisteredMethod:
    (method,) = collect_methods(EchoService(Any))  # type: ignore[arg-type]
    return method


def test_bind_positional_and_by_name(echo: RegisteredMethod) -> None:
    """An array is matched to the parameters in order, an object by name; defaults apply."""
    assert bind_params(echo, ("ab", 3), {}) == {"name": "ab", "count": 3}
    assert bind_params(echo, ("ab",), {}) == {"name": "ab", "count": 1}
    assert bind_params(echo, (), {"count": 2, "name": "x"}) == {"name": "x", "count": 2}


def test_bind_too_many_positional(echo: RegisteredMethod) -> None:
    """More positional params than parameters is an error at the method's name."""
    with pytest.raises(ValidationErrors) as err:
        bind_params(echo, ("a", 1, 2), {})
    assert err.value.errors == [
        ("test.echo", "accepts at most 2 positional parameter(s), 3 given", EINVAL)
    ]


def test_bind_missing_unknown_and_invalid(echo: RegisteredMethod) -> None:
    """Missing, unknown and invalid parameters are reported by parameter name."""
    with pytest.raises(ValidationErrors) as err:
        bind_params(echo, (), {"nope": 1})
    assert err.value.errors == [
        ("name", "Field required", EINVAL),
        ("nope", "Extra inputs are not permitted", EINVAL),
    ]
    with pytest.raises(ValidationErrors) as err:
        bind_params(echo, ("x", "2"), {})
    assert err.value.errors == [("count", "Input should be a valid integer", EINVAL)]
    with pytest.raises(ValidationErrors) as err:
        bind_params(echo, ("x", 0), {})
    assert err.value.errors == [("count", "Input should be greater than or equal to 1", EINVAL)]
    assert err.value.__suppress_context__  # the pydantic error, input included, is not chained
