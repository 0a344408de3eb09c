"""Parameter binding and pydantic errors as API.md §2 attribute paths.

A method's params (a JSON array or object) are bound onto its ``<Thing><Verb>Args`` model;
every pydantic error becomes one ``[attribute, message, EINVAL]`` triple whose attribute
is a dotted path rooted at the parameter name (``auth_twofactor_update.window``). Plugins
that validate a nested value themselves (``login_data`` by the model of its mechanism)
use :func:`validation_errors` with a ``prefix`` to get the same paths.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa import errors as E

if TYPE_CHECKING:
    from middlewared_2fa.api import RegisteredMethod

__all__ = [
    "attribute_path",
    "bind_params",
    "branch_labels",
    "child_type",
    "unwrap",
    "validation_errors",
]


def unwrap(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and without ``| None`` (pydantic gives neither a place
    in an error's ``loc``)."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        members = [m for m in get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return unwrap(members[0])
    return tp


def branch_labels(tp: Any) -> set[str]:
    """How pydantic may name a union member in ``loc``: its type name, or (tagged unions)
    the value of its ``Literal`` discriminator field."""
    labels = {str(getattr(tp, "__name__", tp))}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for info in tp.model_fields.values():
            if get_origin(unwrap(info.annotation)) is Literal:
                labels.update(str(v) for v in get_args(unwrap(info.annotation)))
    return labels


def child_type(tp: Any, item: int | str) -> Any:
    """The type found at ``item`` inside ``tp`` (a model field, a list item, a dict value);
    None when unknown."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(item))
        return info.annotation if info is not None else None
    args = get_args(tp)
    if get_origin(tp) in (list, set, frozenset) and args:
        return args[0]
    if get_origin(tp) is dict and len(args) == 2:
        return args[1]
    return None


def attribute_path(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    """A pydantic error ``loc`` as the dotted attribute path of API.md §2.

    pydantic puts a label in ``loc`` for the union member it tried (the discriminator
    value ``OTP_TOKEN`` of ``login_data``, or a type name): that is not an attribute, so
    the same field gets the same path whichever method or union member it came through
    (``login_data.otp_token``, not ``login_data.OTP_TOKEN.otp_token``).

    Args:
        model: The model that was validated (None: keep ``loc`` as it is).
        loc: The error's location.

    Returns:
        The path, ``""`` for an error of the model as a whole.
    """
    parts: list[str] = []
    current: Any = model
    for item in loc:
        current = unwrap(current)
        if get_origin(current) in (Union, types.UnionType):
            current = next((m for m in get_args(current) if str(item) in branch_labels(m)), None)
            continue
        parts.append(str(item))
        current = child_type(current, item)
    return ".".join(parts)


#: pydantic messages that name one of our classes, in the wire's terms instead.
_NAMES_A_CLASS = {
    "model_type": "Input should be an object",
    "model_attributes_type": "Input should be an object",
    "dataclass_type": "Input should be an object",
    "is_instance_of": "Input has the wrong type",
    "is_subclass_of": "Input has the wrong type",
}


def validation_errors(
    exc: PydanticValidationError,
    root: str,
    model: type[BaseModel] | None = None,
    prefix: str = "",
) -> E.ValidationErrors:
    """The errors of ``exc`` as :class:`~middlewared_2fa.errors.ValidationErrors`.

    Args:
        exc: What ``model.model_validate()`` raised.
        root: The attribute of an error without a path (the model as a whole failed).
        model: The model that was validated, to tell union labels from attributes
            (see :func:`attribute_path`); None keeps each ``loc`` as it is.
        prefix: Put before every path, for a value validated on its own that sits
            inside the params (``"login_data."``); not put before ``root``.

    Returns:
        One EINVAL error per pydantic error, in pydantic's order; messages never hold
        the input (``union_tag_invalid`` quotes it, so it gets its own message).
    """
    errors = E.ValidationErrors()
    for err in exc.errors(include_url=False, include_input=False):
        path = attribute_path(model, tuple(err["loc"]))
        message = err["msg"]
        if err["type"] == "union_tag_invalid":  # pydantic quotes the input: never echo it
            message = f"must be one of {err.get('ctx', {}).get('expected_tags', '')}"
        elif err["type"] in _NAMES_A_CLASS:  # "... instance of UserCreate": our class name
            message = _NAMES_A_CLASS[err["type"]]
        elif err["type"] == "value_error":  # our validators' own words, without pydantic's tag
            message = message.removeprefix("Value error, ")
        errors.add(prefix + path if path else root, message, E.EINVAL)
    return errors


def bind_params(
    method: RegisteredMethod, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Map positional (array) or by-name (object) params onto the Args model and validate.

    Returns:
        Parameter name -> validated value.

    Raises:
        ValidationErrors: too many positional params (attribute: the method name), a
            missing or unknown parameter, or an invalid value (dotted path).
    """
    fields = method.params
    if args:
        if len(args) > len(fields):
            raise E.ValidationError(
                method.name,
                f"accepts at most {len(fields)} positional parameter(s), {len(args)} given",
            )
        raw = dict(zip(fields, args, strict=False))
    else:
        raw = kwargs
    try:
        model = method.spec.accepts.model_validate(raw)
    except PydanticValidationError as exc:
        raise validation_errors(exc, method.name, method.spec.accepts) from None
    return {name: getattr(model, name) for name in fields}
