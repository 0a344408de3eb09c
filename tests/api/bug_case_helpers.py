"""Helpers for the bug-case tests (../shared/cases/bug-cases.md): a test-side TOTP oracle,
error assertions, logged-in user sessions and a look at the stored TOTP row.

The oracle is written from RFC 4226 §5.3 / RFC 6238 §4 and shares no code with the
daemon (which uses pyotp), so the two can check each other.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from middlewared_2fa.cli.client import Client, ClientError
from tests.helpers.daemon import InProcessDaemon

#: Password that ``user_asset`` gives every user it creates.
USER_PASSWORD = "user-password"

INVALID_PARAMS = -32602
CALL_ERROR = -32001
INVALID_REQUEST = -32600


def hotp(secret_b32: str, counter: int, digits: int = 6) -> str:
    """RFC 4226 §5.3: HMAC-SHA1 of the 8-byte big-endian counter, dynamic truncation to
    31 bits, modulo 10**digits, left-padded with zeros. Unpadded base32 is accepted."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    return str(truncate(mac) % 10**digits).zfill(digits)


def truncate(mac: bytes) -> int:
    """RFC 4226 §5.3 dynamic truncation: 4 bytes at the offset in the low nibble of the
    last byte, top bit cleared."""
    offset = mac[-1] & 0x0F
    return int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF


def totp(secret_b32: str, now: int, *, interval: int = 30, digits: int = 6) -> str:
    """RFC 6238 §4.2 with T0 = 0: HOTP of ``floor(now / interval)``."""
    return hotp(secret_b32, now // interval, digits)


def uri_params(uri: str) -> dict[str, str]:
    """Query parameters of a provisioning URI (each must appear exactly once)."""
    parsed = parse_qs(urlsplit(uri).query, keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values()), uri
    return {k: v[0] for k, v in parsed.items()}


async def call_error(client: Client, method: str, *params: Any) -> ClientError:
    """The error ``method`` answers with (fails the test if it succeeds)."""
    with pytest.raises(ClientError) as info:
        await client.call(method, *params)
    return info.value


def assert_invalid_params(err: ClientError, *attributes: str) -> None:
    """``err`` is -32602 EINVAL whose ``data.extra`` names exactly ``attributes``."""
    assert err.code == INVALID_PARAMS, (err.code, err.data)
    assert err.message == "Invalid params"
    assert (err.errno, err.errname) == (22, "EINVAL")
    assert [e[0] for e in err.extra] == list(attributes), err.extra
    assert all(e[2] == 22 for e in err.extra), err.extra
    for attribute in attributes:
        assert f"[EINVAL] {attribute}: " in err.reason, err.reason


def assert_call_error(err: ClientError, errno: int, errname: str) -> None:
    """``err`` is a -32001 call error with ``errno``/``errname``."""
    assert err.code == CALL_ERROR, (err.code, err.data)
    assert err.message == "Method call error"
    assert (err.errno, err.errname) == (errno, errname), err.data


@dataclass(frozen=True, slots=True)
class StoredTotp:
    """A user's TOTP row as SQLite holds it (the seed decrypted)."""

    secret: str | None
    interval: int
    digits: int


async def stored_totp(daemon: InProcessDaemon, username: str) -> StoredTotp:
    """Read ``username``'s TOTP row straight from the datastore."""
    row = await daemon.mw.repos.users.get_by_name(username)
    assert row is not None, username
    secret = None if row.totp_secret is None else daemon.mw.decrypt(row.totp_secret, b"totp-secret")
    return StoredTotp(secret, row.totp_interval, row.totp_digits)


@contextlib.asynccontextmanager
async def session_of(
    daemon: InProcessDaemon, username: str, *, otp: str | None = None
) -> AsyncIterator[Client]:
    """A second client logged in as ``username`` (with ``otp`` when asked for one)."""
    async with daemon.client() as c:
        resp = await c.login(username, USER_PASSWORD, otp)
        assert resp["response_type"] == "SUCCESS", resp
        yield c


async def password_step(client: Client, username: str) -> dict[str, Any]:
    """``auth.login_ex`` PASSWORD_PLAIN for ``username``; the response object."""
    resp = await client.call(
        "auth.login_ex",
        {"mechanism": "PASSWORD_PLAIN", "username": username, "password": USER_PASSWORD},
    )
    return dict(resp)


async def otp_step(client: Client, token: Any, *, method: str = "auth.login_ex_continue") -> Any:
    """The OTP_TOKEN step with ``token`` as given (any JSON value)."""
    return await client.call(method, {"mechanism": "OTP_TOKEN", "otp_token": token})
