"""``auth.twofactor.*`` models (API.md §4). ``window`` counts time steps on each side."""

from __future__ import annotations

from pydantic import Field, field_validator

from middlewared_2fa.schema.common import Model, Out


class TwoFactorServices(Out):
    ssh: bool = Field(description="require a TOTP code for SSH password logins (pam_oath)")


class TwoFactorAuthEntry(Out):
    id: int = 1
    enabled: bool = Field(description="global two-factor authentication")
    window: int = Field(description="accepted time steps before and after the current one")
    services: TwoFactorServices
    issuer: str = Field(description="issuer shown by authenticator apps (ext)")
    enforce: bool = Field(
        description="every user must use two factors; users without one get setup-only "
        "sessions (ext, API.md §4)"
    )


class TwoFactorServicesUpdate(Model):
    ssh: bool = Field(False, description="require a TOTP code for SSH password logins")


class TwoFactorAuthUpdate(Model):
    """Partial update: only the keys given change."""

    enabled: bool = Field(False, description="global two-factor authentication")
    window: int = Field(0, ge=0, le=10, description="time steps accepted on each side (0..10)")
    services: TwoFactorServicesUpdate = Field(default_factory=TwoFactorServicesUpdate)
    issuer: str = Field("middlewared-2fa", min_length=1, max_length=64)
    enforce: bool = Field(
        False,
        description="every user must use two factors (needs enabled; turning it on needs "
        "a LEVEL_2 or Unix-socket session)",
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("must not contain ':' (it separates issuer and account name)")
        if not value.isprintable() or value.strip() != value:
            raise ValueError("must be printable, without leading or trailing spaces")
        return value


class AuthTwofactorConfigArgs(Model):
    """No parameters."""


class AuthTwofactorConfigResult(Out):
    result: TwoFactorAuthEntry


class AuthTwofactorUpdateArgs(Model):
    auth_twofactor_update: TwoFactorAuthUpdate


class AuthTwofactorUpdateResult(Out):
    result: TwoFactorAuthEntry
