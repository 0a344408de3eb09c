"""``api_key.*`` models and the ``API_KEY_PLAIN`` / ``SCRAM`` login data (API.md §3, §11)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from middlewared_2fa.schema.auth import LoginOptions
from middlewared_2fa.schema.common import DateOut, EntryId, Model, Out, QueryArgs


class DateIn(Model):
    """A datetime parameter (API.md §2): ``{"$date": milliseconds since the epoch}``."""

    date: int = Field(alias="$date", ge=0, le=2**53, description="milliseconds since the epoch")

    @property
    def seconds(self) -> float:
        return self.date / 1000


class ApiKeyPlain(Model):
    """``API_KEY_PLAIN``: the raw key (API.md §11)."""

    mechanism: Literal["API_KEY_PLAIN"]
    username: str = Field(max_length=256)
    api_key: str = Field(max_length=512, description='"<id>-<key>" (never logged)')
    login_options: LoginOptions = Field(default_factory=LoginOptions)


class Scram(Model):
    """``SCRAM``: a SCRAM-SHA-512 message (RFC 5802 / 7677, API.md §11)."""

    mechanism: Literal["SCRAM"]
    scram_type: Literal["CLIENT_FIRST_MESSAGE", "CLIENT_FINAL_MESSAGE"]
    rfc_str: str = Field(max_length=4096, description="client-first or client-final message")
    login_options: LoginOptions = Field(default_factory=LoginOptions)


def _printable_name(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable (no control or formatting characters)")
    return value


class ApiKeyCreate(Model):
    name: str = Field(min_length=1, max_length=200)

    _name = field_validator("name")(classmethod(lambda cls, v: _printable_name(v)))
    username: str | None = Field(
        None, max_length=256, description="the key's user (default: the caller)"
    )
    expires_at: DateIn | None = None


class ApiKeyUpdate(Model):
    """Partial update: only the keys given change."""

    name: str = Field("", min_length=1, max_length=200)
    expires_at: DateIn | None = None
    reset: bool = Field(False, description="a new key (shown once); the old one stops working")

    _name = field_validator("name")(classmethod(lambda cls, v: _printable_name(v)))


class ApiKeyEntry(Out):
    id: int
    name: str
    username: str
    user_identifier: int = Field(description="the user's id")
    iterations: int = Field(description="PBKDF2-SHA512 iterations (SCRAM)")
    salt: str = Field(description="base64")
    stored_key: str = Field(description="base64 SCRAM StoredKey")
    server_key: str = Field(description="base64 SCRAM ServerKey")
    created_at: DateOut
    expires_at: DateOut | None
    local: bool = False
    revoked: bool
    revoked_reason: str | None


class ApiKeyEntryWithKey(ApiKeyEntry):
    key: str = Field(description='"<id>-<64 letters and digits>", shown only now')
    client_key: str = Field(description="base64 SCRAM ClientKey")


class ApiKeyCreateArgs(Model):
    api_key_create: ApiKeyCreate


class ApiKeyCreateResult(Out):
    result: ApiKeyEntryWithKey


class ApiKeyUpdateArgs(Model):
    id: EntryId
    api_key_update: ApiKeyUpdate


class ApiKeyUpdateResult(Out):
    result: ApiKeyEntryWithKey | ApiKeyEntry


class ApiKeyDeleteArgs(Model):
    id: EntryId


class ApiKeyQueryArgs(QueryArgs):
    """``(filters, options)``."""


class ApiKeyQueryResult(Out):
    result: list[ApiKeyEntry] | ApiKeyEntry | int


class ApiKeyMyKeysArgs(Model):
    """No parameters."""


class ApiKeyMyKeysResult(Out):
    result: list[ApiKeyEntry]


class ApiKeyConvertRawKeyArgs(Model):
    raw_key: str = Field(max_length=512, description='"<id>-<key>"')


class ScramData(Out):
    api_key_id: int
    iterations: int
    salt: str
    client_key: str
    stored_key: str
    server_key: str


class ApiKeyConvertRawKeyResult(Out):
    result: ScramData


class AuthLoginWithApiKeyArgs(Model):
    api_key: str = Field(max_length=512, description='"<id>-<key>" (never logged)')
