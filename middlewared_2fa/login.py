"""The registry of login mechanisms (``auth.login_ex`` ``login_data.mechanism``, API.md §3).

Plugins declare mechanisms in ``Service.Config.mechanisms``; the loader registers them
here, and the auth plugin validates ``login_data`` with the model registered for its
``mechanism`` and calls the handler. ``PASSWORD_PLAIN``, ``OTP_TOKEN`` and ``TOKEN_PLAIN``
are the auth plugin's own; API keys, SCRAM and recovery codes come as further plugins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa.errors import ValidationErrors

#: ``(ctx, data) -> login_ex answer`` of a mechanism.
Handler = Callable[..., Awaitable[dict[str, Any]]]


class MechanismError(ValueError):
    """A mechanism is declared wrongly or twice."""


@dataclass(slots=True, frozen=True)
class Registered:
    """A mechanism in the registry."""

    name: str
    model: type[BaseModel]
    handler: Handler
    starts_login: bool = True


class MechanismRegistry:
    """Mechanism name -> its ``login_data`` model and handler."""

    def __init__(self) -> None:
        self._by_name: dict[str, Registered] = {}

    def register(
        self, name: str, model: type[BaseModel], handler: Handler, *, starts_login: bool = True
    ) -> None:
        """Add mechanism ``name``; ``starts_login`` False for a step that only continues
        a login (``OTP_TOKEN``), which ``auth.mechanism_choices`` does not list.

        Raises:
            MechanismError: ``name`` is registered already, or ``model`` has no
                ``mechanism`` field typed ``Literal[name]``.
        """
        if name in self._by_name:
            raise MechanismError(f"login mechanism {name} is declared twice")
        info = model.model_fields.get("mechanism")
        if info is None or get_origin(info.annotation) is not Literal:
            raise MechanismError(f"{model.__name__}: needs a field mechanism: Literal[{name!r}]")
        if get_args(info.annotation) != (name,):
            raise MechanismError(f"{model.__name__}: mechanism must be Literal[{name!r}]")
        self._by_name[name] = Registered(name, model, handler, starts_login)

    @property
    def names(self) -> list[str]:
        """Registered mechanism names, in registration order."""
        return list(self._by_name)

    @property
    def choices(self) -> list[str]:
        """The mechanisms that start a login (``auth.mechanism_choices``), in order."""
        return [m.name for m in self._by_name.values() if m.starts_login]

    def get(self, name: str) -> Registered | None:
        """The mechanism ``name``, or None."""
        return self._by_name.get(name)

    def parse(self, login_data: dict[str, Any], root: str) -> tuple[Registered, BaseModel]:
        """Validate ``login_data`` with the model of its ``mechanism``.

        Args:
            login_data: The parameter as sent (an object).
            root: The parameter's name in error paths (``login_data``).

        Raises:
            ValidationErrors: an unknown or missing mechanism (on ``<root>.mechanism``,
                listing the known ones, never echoing the input), or the model's errors
                with attribute paths under ``root``.
        """
        from middlewared_2fa.validation import validation_errors  # the dispatcher's paths

        name = login_data.get("mechanism")
        found = self._by_name.get(name) if isinstance(name, str) else None
        if found is None:
            errors = ValidationErrors()
            known = ", ".join(repr(n) for n in self._by_name)
            if "mechanism" not in login_data:
                errors.add(f"{root}.mechanism", "Field required")
            else:
                errors.add(f"{root}.mechanism", f"must be one of {known}")
            raise errors
        try:
            return found, found.model.model_validate(login_data)
        except PydanticValidationError as exc:
            raise validation_errors(exc, root, found.model, prefix=f"{root}.") from None
