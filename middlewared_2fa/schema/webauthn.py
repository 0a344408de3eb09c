"""Passkey models: ``user.webauthn_*`` and the ``WEBAUTHN`` login mechanism (API.md §12).

Binary WebAuthn fields travel as base64url strings without padding (WebAuthn Level 3
§5.1.8 ``toJSON()``); the browser's credential objects are taken as JSON objects and
checked by the WebAuthn library, not by these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from middlewared_2fa.schema.auth import LoginOptions
from middlewared_2fa.schema.common import BoolResult, DateOut, Model, Out

#: A credential object as ``PublicKeyCredential.toJSON()`` gives it (at most this many
#: top-level keys; the frame limit of API.md §1 bounds the rest).
Credential = dict[str, Any]


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if not value.isprintable():
        raise ValueError("must be printable")
    return value


class PasskeyOptions(Model):
    name: str = Field(
        min_length=1, max_length=64, description="the passkey's name, e.g. 'YubiKey 5' "
    )

    _name = field_validator("name")(classmethod(lambda cls, v: _name(v)))


class UserWebauthnRegisterBeginArgs(Model):
    username: str = Field(max_length=256)
    options: PasskeyOptions


class RegisterBeginAnswer(Out):
    options: dict[str, Any] = Field(
        description="PublicKeyCredentialCreationOptions in the WebAuthn JSON form"
    )


class UserWebauthnRegisterBeginResult(Out):
    result: RegisterBeginAnswer


class UserWebauthnRegisterFinishArgs(Model):
    username: str = Field(max_length=256)
    credential: Credential = Field(
        description="PublicKeyCredential.toJSON() of navigator.credentials.create()"
    )


class PasskeyEntry(Out):
    id: int
    credential_id: str = Field(description="the credential id, base64url")
    name: str
    created_at: DateOut
    last_used_at: DateOut | None


class UserWebauthnRegisterFinishResult(Out):
    result: PasskeyEntry


class UserWebauthnListArgs(Model):
    username: str = Field(max_length=256)


class UserWebauthnListResult(Out):
    result: list[PasskeyEntry]


class UserWebauthnDeleteArgs(Model):
    username: str = Field(max_length=256)
    id: int = Field(ge=1, le=2**63 - 1, description="PasskeyEntry id")


UserWebauthnDeleteResult = BoolResult


class WebauthnAssertion(Model):
    """The step after OTP_REQUIRED with a passkey (API.md §12)."""

    mechanism: Literal["WEBAUTHN"]
    credential: Credential = Field(
        description="PublicKeyCredential.toJSON() of navigator.credentials.get()"
    )
    login_options: LoginOptions = Field(default_factory=LoginOptions)
