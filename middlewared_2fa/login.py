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
from middlewared_2fa.session import Credentials, Level

#: ``(ctx, data) -> login_ex answer`` of a mechanism.
Handler = Callable[..., Awaitable[dict[str, Any]]]
#: ``(ctx, user, value) -> StepProof | None`` of a verifier.
VerifierHandler = Callable[..., Awaitable["StepProof | None"]]
#: The login steps whose field a verifier may accept (API.md §3).
STEPS = ("PASSWORD_PLAIN", "OTP_TOKEN")


@dataclass(slots=True, frozen=True)
class StepProof:
    """What a verifier's credential proved (``Service.Config.verifiers``).

    Attributes:
        credentials: The session's credential type (``LOGIN_TWOFACTOR`` for a recovery
            code, ``LOGIN_ONETIME_PASSWORD`` for a one-time password; API.md §9).
        level: ``LEVEL_2`` when it completes two factors.
        description: Audit description of the login (never the credential).
        second_factor: ``credentials_data.second_factor`` of the session
            (``RECOVERY_CODE``), or None.
        setup_only: The session may only set up a second factor (API.md §4, §10).
        attributes: ``account_attributes`` the session adds (``OTPW``,
            ``PASSWORD_CHANGE_REQUIRED``).
        reconnect_token: Whether ``login_options.reconnect_token`` may give one.
        api_key: ``(id, name)`` of the API key that logged in (``credentials_data``).
        expires_at: Unix time after which the credential, and so the session, is void.
    """

    credentials: Credentials
    level: Level
    description: str
    second_factor: str | None = None
    setup_only: bool = False
    attributes: tuple[str, ...] = ()
    reconnect_token: bool = True
    api_key: tuple[int, str] | None = None
    expires_at: float | None = None


@dataclass(slots=True, frozen=True)
class RegisteredVerifier:
    """A verifier in the registry."""

    step: str
    name: str
    handler: VerifierHandler
    order: int


class MechanismError(ValueError):
    """A mechanism is declared wrongly or twice."""


class SecondFactors:
    """The kinds of second factor besides the TOTP secret (``Service.Config.second_factors``,
    API.md §12): "a second factor configured" is a TOTP secret or one of them."""

    def __init__(self) -> None:
        self._kinds: dict[str, Callable[[int], bool]] = {}

    def register(self, name: str, has: Callable[[int], bool]) -> None:
        """Add kind ``name``; ``has(user_id)`` answers from memory.

        Raises:
            MechanismError: ``name`` is registered already (or is ``TOTP``).
        """
        if name in self._kinds or name == "TOTP":
            raise MechanismError(f"second factor {name} is declared twice")
        self._kinds[name] = has

    def configured(self, row: Any) -> bool:
        """Whether the user of ``row`` (a ``UserRow``) has a second factor configured: a
        TOTP secret or any registered kind."""
        if row.totp_secret is not None:
            return True
        return any(has(row.id) for has in self._kinds.values())

    def kinds_of(self, row: Any) -> list[str]:
        """The kinds the user of ``row`` has: ``TOTP`` first, then registered ones."""
        kinds = ["TOTP"] if row.totp_secret is not None else []
        return kinds + [name for name, has in self._kinds.items() if has(row.id)]


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
        self._verifiers: list[RegisteredVerifier] = []

    def add_verifier(
        self, step: str, name: str, handler: VerifierHandler, *, order: int = 0
    ) -> None:
        """Add a verifier of login step ``step`` (``PASSWORD_PLAIN`` or ``OTP_TOKEN``).

        Raises:
            MechanismError: an unknown step, or ``name`` declared for it already.
        """
        if step not in STEPS:
            raise MechanismError(f"verifier {name}: step must be one of {', '.join(STEPS)}")
        if any(v.step == step and v.name == name for v in self._verifiers):
            raise MechanismError(f"verifier {name} of {step} is declared twice")
        self._verifiers.append(RegisteredVerifier(step, name, handler, order))
        self._verifiers.sort(key=lambda v: v.order)

    def verifiers(self, step: str) -> list[RegisteredVerifier]:
        """The verifiers of ``step``, lowest order first."""
        return [v for v in self._verifiers if v.step == step]

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

    def parse(
        self, login_data: dict[str, Any], root: str, *, continuing: bool = False
    ) -> tuple[Registered, BaseModel]:
        """Validate ``login_data`` with the model of its ``mechanism``.

        Args:
            login_data: The parameter as sent (an object).
            root: The parameter's name in error paths (``login_data``).
            continuing: Only mechanisms that continue a login (``OTP_TOKEN``,
                ``WEBAUTHN``: ``auth.login_ex_continue``).

        Raises:
            ValidationErrors: an unknown or missing mechanism (on ``<root>.mechanism``,
                listing the known ones, never echoing the input), or the model's errors
                with attribute paths under ``root``.
        """
        from middlewared_2fa.validation import validation_errors  # the dispatcher's paths

        name = login_data.get("mechanism")
        candidates = {n: m for n, m in self._by_name.items() if not (continuing and m.starts_login)}
        found = candidates.get(name) if isinstance(name, str) else None
        if found is None:
            errors = ValidationErrors()
            known = ", ".join(repr(n) for n in candidates)
            if "mechanism" not in login_data:
                errors.add(f"{root}.mechanism", "Field required")
            else:
                errors.add(f"{root}.mechanism", f"must be one of {known}")
            raise errors
        try:
            return found, found.model.model_validate(login_data)
        except PydanticValidationError as exc:
            raise validation_errors(exc, root, found.model, prefix=f"{root}.") from None
