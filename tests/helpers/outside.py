"""The user's side, played by outside tools: Debian's ``zbarimg`` (a QR scanner) and
``oathtool`` (an authenticator), plus a reader for the QR code ``midclt2fa qr`` prints.

Only the tools and the published formats (Key URI format, RFC 6238) are shared with the
daemon: no project code computes a code or decodes an image here.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

#: Seconds that must be left in the current time step before a code is computed. Between
#: ``oathtool`` reading the clock and the daemon checking the code there is one process
#: start and one call; on a slow, busy machine that is well under this. Waiting for the
#: next step when less is left waits for the outside world (the clock), it does not time
#: the daemon.
STEP_MARGIN = 10.0

#: ``midclt2fa qr`` prints two modules per character (segno's compact terminal output,
#: drawn for a dark background: the block is a light module). Character -> (top, bottom),
#: True meaning light.
_HALF_BLOCKS = {" ": (False, False), "█": (True, True), "▀": (True, False), "▄": (False, True)}


@dataclass(frozen=True)
class OtpAuth:
    """The parts of an ``otpauth://totp/LABEL?secret=...`` URI (Key URI format)."""

    label: str
    secret: str
    issuer: str | None
    digits: int
    period: int
    keys: frozenset[str]


def parse_otpauth(uri: str) -> OtpAuth:
    """Split a provisioning URI; ``digits`` and ``period`` default to 6 and 30 as
    authenticator apps assume when they are absent."""
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp"), uri
    query = parse_qs(parts.query, strict_parsing=True)
    assert all(len(v) == 1 for v in query.values()), uri
    one = {k: v[0] for k, v in query.items()}
    return OtpAuth(
        label=unquote(parts.path.removeprefix("/")),
        secret=one["secret"],
        issuer=one.get("issuer"),
        digits=int(one.get("digits", "6")),
        period=int(one.get("period", "30")),
        keys=frozenset(one),
    )


#: zbarimg options that look for QR codes only.
ZBAR_QR_ONLY = ("-Sdisable", "-Sqrcode.enable")


def zbar_decode(image: Path) -> str:
    """What ``zbarimg --raw -q`` reads from ``image`` as a QR code (exactly one symbol
    expected). Only QR codes are looked for, as an authenticator app's camera does: with
    every symbology on, zbar now and then also reads a stray linear barcode out of a
    QR code's modules (seen: an extra "A62A" line)."""
    done = subprocess.run(
        ["zbarimg", "--raw", "-q", *ZBAR_QR_ONLY, str(image)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done
    assert done.stdout.endswith("\n"), done.stdout
    return done.stdout.removesuffix("\n")


def wait_for_fresh_step(period: int, margin: float = STEP_MARGIN) -> None:
    """Return when at least ``margin`` seconds are left in the current ``period``-second
    time step (sleeping into the next step if needed)."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.2)


def oathtool_totp(secret: str, *, digits: int, period: int) -> str:
    """The current TOTP code from ``oathtool --totp -b -d DIGITS -s PERIODs SECRET``,
    computed only with at least :data:`STEP_MARGIN` seconds left in its step."""
    wait_for_fresh_step(period)
    done = subprocess.run(
        ["oathtool", "--totp", "-b", "-d", str(digits), "-s", f"{period}s", secret],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done
    code = done.stdout.strip()
    assert len(code) == digits and code.isdigit(), code
    return code


def terminal_qr_to_png(text: str, path: Path, *, scale: int = 8) -> tuple[int, int]:
    """Draw the half-block QR code ``text`` as a black-on-white PNG at ``path``.

    Returns:
        (width, height) in modules, the quiet zone included.

    Raises:
        AssertionError: ``text`` holds anything but half blocks, spaces and line ends.
    """
    lines = text.splitlines()
    width = len(lines[0])
    assert all(len(line) == width for line in lines), "ragged QR output"
    assert set("".join(lines)) <= set(_HALF_BLOCKS), set("".join(lines)) - set(_HALF_BLOCKS)
    image = Image.new("L", (width, 2 * len(lines)), 0)
    for y, line in enumerate(lines):
        for x, char in enumerate(line):
            top, bottom = _HALF_BLOCKS[char]
            image.putpixel((x, 2 * y), 255 if top else 0)
            image.putpixel((x, 2 * y + 1), 255 if bottom else 0)
    image.resize((width * scale, 2 * len(lines) * scale), Image.Resampling.NEAREST).save(path)
    return width, 2 * len(lines)
