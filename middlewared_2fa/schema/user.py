"""``user.*`` models (API.md §4, §5)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from middlewared_2fa.schema.auth import RoleName
from middlewared_2fa.schema.common import (
    DateOut,
    EntryId,
    Model,
    Out,
    QueryArgs,
)

USERNAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"


class UserEntry(Out):
    id: int
    username: str
    full_name: str
    roles: list[str]
    locked: bool
    ssh_password_enabled: bool
    twofactor_auth_configured: bool = Field(
        description="the user has a second factor: a TOTP secret or a passkey (API.md §12)"
    )
    builtin: bool


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable")
    return value


class UserCreate(Model):
    username: str = Field(pattern=USERNAME_PATTERN, description="login name, 1..32 characters")
    full_name: str = Field("", max_length=256)
    password: str = Field(min_length=1, max_length=4096, description="stored as argon2id")
    roles: list[RoleName] = Field(default_factory=list)
    locked: bool = False
    ssh_password_enabled: bool = False

    _full_name = field_validator("full_name")(classmethod(lambda cls, v: _printable(v)))


class UserUpdate(Model):
    """Partial update: only the keys given change."""

    username: str = Field("", pattern=USERNAME_PATTERN)
    full_name: str = Field("", max_length=256)
    password: str = Field("", min_length=1, max_length=4096)
    roles: list[RoleName] = Field(default_factory=list)
    locked: bool = False
    ssh_password_enabled: bool = False

    _full_name = field_validator("full_name")(classmethod(lambda cls, v: _printable(v)))


class TwoFactorOptions(Model):
    """Per-user TOTP parameters; omitted fields keep the stored values."""

    otp_digits: int = Field(6, ge=6, le=8, description="code length")
    interval: Literal[30, 60] = Field(30, description="time step in seconds (pam_oath: 30 or 60)")

    @field_validator("interval", mode="before")
    @classmethod
    def _integer_interval(cls, value: object) -> object:
        # Literal[30, 60] alone accepts 30.0; the other integer fields do not.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("Input should be a valid integer, 30 or 60")
        return value


class UserTwofactorConfig(Out):
    provisioning_uri: str | None = Field(description="otpauth:// URI (Key URI format)")
    secret_configured: bool
    interval: int = Field(description="seconds")
    otp_digits: int
    recovery_codes_remaining: int = Field(0, description="unused recovery codes (ext, API.md §10)")


class PendingEnrolment(Out):
    """A staged secret waiting for ``user.twofactor_confirm`` (API.md §4)."""

    provisioning_uri: str = Field(description="otpauth:// URI of the pending secret")
    interval: int = Field(description="seconds")
    otp_digits: int
    expires_at: DateOut = Field(description="when the pending secret is discarded")


class UserRenewEntry(UserEntry):
    twofactor_config: UserTwofactorConfig


class UserQueryArgs(QueryArgs):
    """``(filters, options)``: see :class:`QueryArgs`."""


class UserQueryResult(Out):
    result: list[UserEntry] | UserEntry | int


class UserGetInstanceArgs(Model):
    id: EntryId


class UserEntryResult(Out):
    result: UserEntry


class UserCreateArgs(Model):
    user_create: UserCreate


class UserUpdateArgs(Model):
    id: EntryId
    user_update: UserUpdate


class UserDeleteArgs(Model):
    id: EntryId


class UserRenew2faSecretArgs(Model):
    username: str = Field(max_length=256)
    twofactor_options: TwoFactorOptions = Field(default_factory=TwoFactorOptions)


class UserRenew2faSecretResult(Out):
    result: UserRenewEntry


class UserUnset2faSecretArgs(Model):
    username: str = Field(max_length=256)


class UserProvisioningUriArgs(Model):
    username: str = Field(max_length=256)


class UserTwofactorConfigArgs(Model):
    username: str = Field(max_length=256)


class UserTwofactorConfigResult(Out):
    result: UserTwofactorConfig


class QrOptions(Model):
    format: Literal["svg", "png"] = "svg"
    scale: int = Field(4, ge=1, le=20, description="pixels (or SVG units) per module")
    pending: bool = Field(
        False, description="draw the pending secret of user.twofactor_enroll (ext)"
    )


class UserTwofactorQrArgs(Model):
    username: str = Field(max_length=256)
    options: QrOptions = Field(default_factory=QrOptions)


class QrImage(Out):
    format: Literal["svg", "png"]
    data_uri: str = Field(description="data: URI of the image")


class UserTwofactorQrResult(Out):
    result: QrImage


class UserVerifyTwofactorTokenArgs(Model):
    username: str = Field(max_length=256)
    token: str = Field(description="TOTP code; ASCII whitespace is ignored")


class UserTwofactorEnrollArgs(Model):
    username: str = Field(max_length=256)
    twofactor_options: TwoFactorOptions = Field(default_factory=TwoFactorOptions)


class UserTwofactorEnrollResult(Out):
    result: PendingEnrolment


class UserTwofactorConfirmArgs(Model):
    username: str = Field(max_length=256)
    token: str = Field(
        max_length=64, description="TOTP code of the pending secret; ASCII whitespace ignored"
    )


class UserTwofactorConfirmResult(Out):
    result: UserTwofactorConfig


class UserTwofactorRecoveryCodesArgs(Model):
    username: str = Field(max_length=256)


class UserTwofactorRecoveryCodesResult(Out):
    result: list[str] = Field(description="10 new recovery codes, shown once (API.md §10)")
