"""``auth.*`` models (API.md §3)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from middlewared_2fa.schema.common import Model, Out

RoleName = Literal[
    "FULL_ADMIN",
    "READONLY_ADMIN",
    "ACCOUNT_READ",
    "ACCOUNT_WRITE",
    "SYSTEM_SECURITY_READ",
    "SYSTEM_SECURITY_WRITE",
    "SYSTEM_AUDIT_READ",
]


class LoginOptions(Model):
    user_info: bool = Field(True, description="include auth.me in a SUCCESS response")


class PasswordPlain(Model):
    """First step: username and password."""

    mechanism: Literal["PASSWORD_PLAIN"]
    username: str = Field(max_length=256, description="login name")
    password: str = Field(max_length=4096, description="password (never logged)")
    login_options: LoginOptions = Field(default_factory=LoginOptions)


class OtpToken(Model):
    """Second step: the TOTP code (RFC 6238). ASCII whitespace is ignored."""

    mechanism: Literal["OTP_TOKEN"]
    otp_token: str = Field(description="TOTP code as a string of otp_digits ASCII digits")
    login_options: LoginOptions = Field(default_factory=LoginOptions)


class TokenPlain(Model):
    """Re-login with a single-use token from auth.generate_token."""

    mechanism: Literal["TOKEN_PLAIN"]
    token: str = Field(max_length=256, description="token from auth.generate_token")
    login_options: LoginOptions = Field(default_factory=LoginOptions)


LoginData = Annotated[PasswordPlain | OtpToken | TokenPlain, Field(discriminator="mechanism")]


class TwoFactorUserState(Out):
    secret_configured: bool
    interval: int = Field(description="TOTP time step in seconds (30 or 60)")
    otp_digits: int = Field(description="code length (6..8)")
    global_enabled: bool = Field(description="auth.twofactor.config enabled")
    setup_required: bool = Field(description="global 2FA enabled and no secret")


class AuthMeEntry(Out):
    pw_name: str
    full_name: str
    roles: list[str]
    account_attributes: list[str] = Field(description='"LOCAL", and "2FA" with a secret')
    credentials: Literal["LOGIN_PASSWORD", "LOGIN_TWOFACTOR", "TOKEN", "UNIX_SOCKET"]
    two_factor_config: TwoFactorUserState


class LoginSuccess(Out):
    response_type: Literal["SUCCESS"]
    user_info: AuthMeEntry | None
    authenticator: Literal["LEVEL_1"] = "LEVEL_1"


class LoginOtpRequired(Out):
    response_type: Literal["OTP_REQUIRED"]
    username: str


class LoginAuthErr(Out):
    response_type: Literal["AUTH_ERR"]


LoginResponse = LoginSuccess | LoginOtpRequired | LoginAuthErr


class AuthLoginExArgs(Model):
    login_data: LoginData


class AuthLoginExResult(Out):
    result: LoginResponse


class AuthLoginExContinueArgs(Model):
    login_data: OtpToken


class AuthLoginExContinueResult(Out):
    result: LoginResponse


class AuthLoginArgs(Model):
    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)
    otp_token: str | None = Field(None, description="TOTP code when the user has 2FA")


class AuthMeArgs(Model):
    """No parameters."""


class AuthMeResult(Out):
    result: AuthMeEntry


class AuthGenerateTokenArgs(Model):
    ttl: int = Field(600, ge=10, le=86400, description="lifetime in seconds")


class AuthLogoutArgs(Model):
    """No parameters."""
