"""``auth.*`` models (API.md §3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from middlewared_2fa.roles import RoleName as RoleName  # re-exported for the models
from middlewared_2fa.schema.common import DateOut, Model, Out, QueryArgs
from middlewared_2fa.session import Credentials


class LoginOptions(Model):
    user_info: bool = Field(True, description="include auth.me in a SUCCESS response")
    reconnect_token: bool = Field(
        False,
        description="put a single-use, 600 s, origin-bound re-login token in the SUCCESS "
        "response (TrueNAS 26+)",
    )


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
    token: str = Field(
        max_length=256, description="token from auth.generate_token or a reconnect token"
    )
    login_options: LoginOptions = Field(default_factory=LoginOptions)


#: ``login_data`` of ``auth.login_ex``: an object whose ``mechanism`` selects the model
#: that validates the rest, from the login mechanism registry (middlewared_2fa/login.py),
#: so plugins add mechanisms without changing this model.
LoginData = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "required": ["mechanism"],
            "properties": {"mechanism": {"type": "string"}},
            "description": "PASSWORD_PLAIN, OTP_TOKEN or TOKEN_PLAIN (API.md §3), or a "
            "mechanism a plugin adds",
        }
    ),
]


class TwoFactorUserState(Out):
    secret_configured: bool
    interval: int = Field(description="TOTP time step in seconds (30 or 60)")
    otp_digits: int = Field(description="code length (6..8)")
    global_enabled: bool = Field(description="auth.twofactor.config enabled")
    setup_required: bool = Field(
        description="global 2FA enabled and no second factor (secret or passkey)"
    )


#: Credential types of a session (API.md §9): the session registry's own list.
CredentialsName = Credentials


class AuthMeEntry(Out):
    id: int | None = Field(description="the UserEntry id; null for the Unix-socket root")
    pw_name: str
    full_name: str
    roles: list[str]
    account_attributes: list[str] = Field(
        description='"LOCAL", and "2FA" with a second factor (secret or passkey)'
    )
    credentials: CredentialsName
    two_factor_config: TwoFactorUserState


class LoginSuccess(Out):
    response_type: Literal["SUCCESS"]
    user_info: AuthMeEntry | None
    authenticator: Literal["LEVEL_1", "LEVEL_2"] = Field(
        description="LEVEL_2 when the session proved two factors (API.md §9)"
    )
    reconnect_token: str | None = Field(
        None, description="single-use re-login token when login_options.reconnect_token"
    )


class LoginOtpRequired(Out):
    response_type: Literal["OTP_REQUIRED"]
    username: str


class LoginOtpRequiredWebauthn(Out):
    """OTP_REQUIRED for a user with passkeys (API.md §12, ext)."""

    response_type: Literal["OTP_REQUIRED"]
    username: str
    webauthn: dict[str, Any] = Field(
        description="{options}: PublicKeyCredentialRequestOptions in the WebAuthn JSON "
        "form, with a single-use challenge bound to this pending step"
    )


class LoginAuthErr(Out):
    response_type: Literal["AUTH_ERR"]


class LoginExpired(Out):
    """An expired or revoked API key (API.md §11)."""

    response_type: Literal["EXPIRED"]


class LoginScramResponse(Out):
    """A step of the SCRAM exchange (API.md §11, RFC 5802)."""

    response_type: Literal["SCRAM_RESPONSE"]
    scram_type: Literal["SERVER_FIRST_RESPONSE", "SERVER_FINAL_RESPONSE"]
    rfc_str: str = Field(description="server-first-message or server-final-message")
    user_info: AuthMeEntry | None = None


LoginResponse = (
    LoginSuccess
    | LoginOtpRequired
    | LoginOtpRequiredWebauthn
    | LoginAuthErr
    | LoginExpired
    | LoginScramResponse
)


class AuthLoginExArgs(Model):
    login_data: LoginData


class AuthLoginExResult(Out):
    result: LoginResponse


#: ``login_data`` of ``auth.login_ex_continue``: a mechanism that continues a login
#: (``OTP_TOKEN``, or one a plugin adds: ``WEBAUTHN``, API.md §12).
ContinueData = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "required": ["mechanism"],
            "properties": {"mechanism": {"type": "string"}},
            "description": "OTP_TOKEN {otp_token} (API.md §3), or WEBAUTHN {credential} (§12)",
        }
    ),
]


class AuthLoginExContinueArgs(Model):
    login_data: ContinueData


class AuthLoginExContinueResult(Out):
    result: LoginResponse


class AuthLoginArgs(Model):
    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)
    otp_token: str | None = Field(None, description="TOTP code when the user has 2FA")


class AuthMeArgs(Model):
    """No parameters."""


class AuthMechanismChoicesArgs(Model):
    """No parameters."""


class AuthMechanismChoicesResult(Out):
    result: list[str] = Field(
        description="mechanisms that start a login_ex now (PASSWORD_PLAIN, TOKEN_PLAIN, ...)"
    )


class AuthLastCodeRefusalArgs(Model):
    """No parameters."""


class AuthLastCodeRefusalResult(Out):
    result: Literal["REUSED", "WRONG"] | None = Field(
        description="why the last one-time code this session sent was refused: REUSED (the "
        "right code of a time step already used, RFC 6238 §5.2), WRONG (anything else); "
        "null when it was accepted or none was sent"
    )


class AuthMeResult(Out):
    result: AuthMeEntry


class AuthGenerateTokenArgs(Model):
    ttl: int | None = Field(
        600, ge=10, le=86400, description="lifetime in seconds (10..86400); null: 600"
    )
    attrs: dict[str, Any] = Field(
        default_factory=dict, description="accepted for TrueNAS clients; not interpreted"
    )
    match_origin: bool = Field(
        True, description="usable only from the client address that asked for it"
    )
    single_use: bool = Field(False, description="spent by its first login")


class AuthLogoutArgs(Model):
    """No parameters."""


class AuthSessionsArgs(QueryArgs):
    """``auth.sessions(filters=[], options={})``."""


class ApiKeyRef(Out):
    id: int
    name: str


class ParentCredentialsData(Out):
    username: str
    login_id: str
    login_at: DateOut


class ParentCredentials(Out):
    credentials: CredentialsName
    credentials_data: ParentCredentialsData


class SessionCredentialsData(Out):
    username: str
    login_id: str
    login_at: DateOut | None = Field(None, description="absent for TOKEN sessions")
    second_factor: str | None = Field(
        None,
        description='"RECOVERY_CODE" or "WEBAUTHN" when the login used one (API.md §10, §12)',
        exclude_if=lambda value: value is None,
    )
    parent: ParentCredentials | None = Field(
        None,
        description="the login a token came from (TOKEN sessions only)",
        exclude_if=lambda value: value is None,
    )
    api_key: ApiKeyRef | None = Field(
        None,
        description="the API key of an API_KEY session",
        exclude_if=lambda value: value is None,
    )


class AuthSessionsEntry(Out):
    id: str = Field(description="session id")
    current: bool = Field(description="the caller's own session")
    internal: bool = False
    origin: str = Field(description='"127.0.0.1:PORT" or "UNIX_SOCKET uid N"')
    credentials: CredentialsName
    credentials_data: SessionCredentialsData
    created_at: DateOut
    secure_transport: bool = Field(description="TLS or the Unix socket")


class AuthSessionsResult(Out):
    result: list[AuthSessionsEntry] | AuthSessionsEntry | int


class AuthTerminateSessionArgs(Model):
    id: str = Field(max_length=64, description="session id from auth.sessions")


class AuthTerminateOtherSessionsArgs(Model):
    """No parameters."""
