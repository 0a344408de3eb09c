"""TOTP codes (RFC 6238 on the HOTP core of RFC 4226, through pyotp): the normalisation
of what a user typed and the search of the window for the matching time step."""

from __future__ import annotations

import hmac

import pyotp

_ASCII_WHITESPACE = str.maketrans("", "", " \t\n\r\x0b\x0c")
_DIGITS = frozenset("0123456789")
#: Longest input worth normalising: anything longer cannot be a code, even with spaces.
_MAX_TOKEN_INPUT = 64


def normalize_code(token: str, digits: int) -> str | None:
    """The code without ASCII whitespace, or None when it cannot be a valid code.

    Args:
        token: What the user typed.
        digits: Expected length (6..8).

    Returns:
        ``digits`` ASCII digits, or None (wrong length, non-ASCII digits, other characters).
    """
    if len(token) > _MAX_TOKEN_INPUT:
        return None
    code = token.translate(_ASCII_WHITESPACE)
    if len(code) != digits or not set(code) <= _DIGITS:
        return None
    return code


def matching_step(
    secret: str, code: str, *, now: float, interval: int, digits: int, window: int
) -> int | None:
    """The time step in ``[T-window, T+window]`` whose TOTP equals ``code``, newest first.

    Args:
        secret: Base32 seed (padding optional).
        code: Normalised code (see :func:`normalize_code`).
        now: Unix time in seconds.
        interval: Time step X in seconds (RFC 6238 §4.1).
        digits: Code length.
        window: Steps accepted on each side.

    Returns:
        The matching step T, or None. Every candidate is compared in constant time.
    """
    totp = pyotp.TOTP(secret, digits=digits, interval=interval)
    current = int(now // interval)
    found: int | None = None
    for step in range(current + window, current - window - 1, -1):
        if step < 0:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code) and found is None:
            found = step
    return found
