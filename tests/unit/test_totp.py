"""The TOTP engine's pure functions against RFC 4226 / RFC 6238 vectors."""

from __future__ import annotations

import pytest

from tests.helpers.plugins import load_plugin
from tests.helpers.rfc import AROUND_1234567890, RFC4226_HOTP, RFC6238_SHA1_8, RFC_SECRET

engine = load_plugin("auth_twofactor")
user_plugin = load_plugin("user")


@pytest.mark.parametrize(("now", "code"), sorted(RFC6238_SHA1_8.items()))
def test_rfc6238_sha1_vectors(now: int, code: str) -> None:
    """Each RFC 6238 Appendix B SHA1 code matches exactly its own step (64-bit time)."""
    step = engine.matching_step(RFC_SECRET, code, now=now, interval=30, digits=8, window=0)
    assert step == now // 30


@pytest.mark.parametrize(("counter", "code"), list(enumerate(RFC4226_HOTP)))
def test_rfc4226_hotp_vectors(counter: int, code: str) -> None:
    """TOTP at t = 30*c equals HOTP(c) of RFC 4226 Appendix D."""
    assert (
        engine.matching_step(RFC_SECRET, code, now=30 * counter, interval=30, digits=6, window=0)
        == counter
    )


def test_window_counts_steps_on_each_side() -> None:
    """Window 1 accepts steps -1..+1 and nothing further (2w+1 codes)."""
    now = 1234567890
    base = now // 30
    for offset, code in AROUND_1234567890.items():
        step = engine.matching_step(RFC_SECRET, code, now=now, interval=30, digits=6, window=1)
        assert step == (base + offset if abs(offset) <= 1 else None)


def test_no_negative_steps() -> None:
    """Near the epoch the window does not reach before step 0."""
    assert (
        engine.matching_step(RFC_SECRET, RFC4226_HOTP[0], now=5, interval=30, digits=6, window=3)
        == 0
    )


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("005924", "005924"),
        ("005 924", "005924"),
        (" 005924\n", "005924"),
        ("\t0 0 5 9 2 4\r\x0b\x0c", "005924"),
        ("005-924", None),
        ("5924", None),
        ("0059245", None),
        ("００５９２４", None),
        ("٠٠٥٩٢٤", None),  # Arabic-Indic digits are digits to str.isdigit, not to TOTP
        ("\u00a0005924", None),  # NO-BREAK SPACE is not ASCII whitespace
        ("", None),
        ("9" * 10000, None),
    ],
)
def test_normalize_code(token: str, expected: str | None) -> None:
    """Only ASCII whitespace is removed and only exactly six ASCII digits remain a code."""
    assert engine.normalize_code(token, 6) == expected


@pytest.mark.parametrize(
    ("kwargs", "uri"),
    [
        (
            {
                "username": "alice",
                "host": "nas",
                "issuer": "middlewared-2fa",
                "interval": 30,
                "digits": 6,
            },
            "otpauth://totp/middlewared-2fa:alice%40nas?secret=S&issuer=middlewared-2fa",
        ),
        (
            {
                "username": "bob",
                "host": "nas.local",
                "issuer": "My NAS",
                "interval": 60,
                "digits": 8,
            },
            "otpauth://totp/My%20NAS:bob%40nas.local?secret=S&issuer=My%20NAS&digits=8&period=60",
        ),
        (
            {"username": "c", "host": "h", "issuer": "a&b=c?", "interval": 30, "digits": 7},
            "otpauth://totp/a%26b%3Dc%3F:c%40h?secret=S&issuer=a%26b%3Dc%3F&digits=7",
        ),
    ],
)
def test_provisioning_uri_encoding(kwargs: dict[str, object], uri: str) -> None:
    """Label and issuer are percent-encoded per RFC 3986; digits/period only when not default."""
    assert user_plugin.provisioning_uri("S", **kwargs) == uri


def test_provisioning_uri_strips_padding() -> None:
    """A padded legacy secret appears in the URI without '='."""
    uri = user_plugin.provisioning_uri(
        "S46SQCPPTCNPROMHWYBDCTBZXV======",
        username="u",
        host="h",
        issuer="i",
        interval=30,
        digits=6,
    )
    assert "secret=S46SQCPPTCNPROMHWYBDCTBZXV&" in uri and "=" not in uri.split("secret=")[1][:27]
