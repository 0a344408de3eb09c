"""Bug case C23: the QR code of the provisioning URI is a regular QR code (never Micro QR),
error correction M, and decodes to exactly the URI.

Decoding uses ``zbarimg`` (Debian's zbar-tools), which reads regular QR codes only, so a
successful decode also shows the symbol is not Micro QR. The error-correction level is read
from the symbol's own format information (ISO/IEC 18004 §7.9) with Pillow.
"""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote

import pytest
from PIL import Image

from tests.api.bug_case_helpers import assert_call_error, call_error
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.outside import ZBAR_QR_ONLY
from tests.helpers.rfc import RFC_SECRET

BORDER = 4  # quiet zone in modules (API.md: the daemon renders with border 4)
FORMAT_MASK = 0b101010000010010
EC_LEVELS = {0b01: "L", 0b00: "M", 0b11: "Q", 0b10: "H"}


def format_words() -> dict[int, tuple[str, int]]:
    """All 32 valid masked 15-bit format words -> (EC level, mask pattern): 5 data bits
    plus the BCH(15,5) remainder of generator 0x537, XORed with 101010000010010."""
    words: dict[int, tuple[str, int]] = {}
    for ec_bits, level in EC_LEVELS.items():
        for mask in range(8):
            data = (ec_bits << 3) | mask
            rem = data << 10
            for bit in range(14, 9, -1):
                if rem & (1 << bit):
                    rem ^= 0x537 << (bit - 10)
            words[((data << 10) | rem) ^ FORMAT_MASK] = (level, mask)
    return words


def modules(png: bytes, scale: int) -> list[list[bool]]:
    """The module grid (True = dark) of a PNG with ``BORDER`` modules of quiet zone."""
    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    assert width == height and width % scale == 0, image.size
    size = width // scale - 2 * BORDER
    pixels = image.tobytes()  # one byte per pixel, row by row; 0 is black

    def dark(r: int, c: int) -> bool:
        y, x = ((BORDER + r) * scale + scale // 2, (BORDER + c) * scale + scale // 2)
        return pixels[y * width + x] < 128  # sample the centre of the module

    return [[dark(r, c) for c in range(size)] for r in range(size)]


def symbol_info(grid: list[list[bool]]) -> tuple[int, str]:
    """(QR version, EC level) of a regular QR grid; fails for a Micro QR size or a
    format word that is not one of the 32 valid ones."""
    size = len(grid)
    # Regular QR: 21..177 modules in steps of 4; Micro QR: 11..17 in steps of 2.
    assert size >= 21 and (size - 17) % 4 == 0, f"{size}x{size} is not a regular QR code"
    # First copy of the format information, most significant bit first: row 8 columns
    # 0-5, 7, 8, then column 8 rows 7, 5-0 (row/column 6 are timing patterns).
    cells = [(8, c) for c in (0, 1, 2, 3, 4, 5, 7, 8)] + [(r, 8) for r in (7, 5, 4, 3, 2, 1, 0)]
    word = 0
    for r, c in cells:
        word = (word << 1) | int(grid[r][c])
    found = format_words().get(word)
    assert found is not None, f"format word {word:015b} is not valid"
    return (size - 17) // 4, found[0]


def png_bytes(data_uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix), data_uri[:40]
    data = base64.b64decode(data_uri[len(prefix) :], validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return data


async def zbar_decode(png: bytes, folder: Path) -> bytes:
    """The raw payload zbarimg reads from ``png`` (its trailing newline removed)."""
    path = folder / "qr.png"
    path.write_bytes(png)
    proc = await asyncio.create_subprocess_exec(
        "zbarimg",
        "--raw",
        "-q",
        "-Sbinary",
        *ZBAR_QR_ONLY,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (proc.returncode, err)
    return out.removesuffix(b"\n")


def user_plugin(daemon: InProcessDaemon) -> ModuleType:
    """The ``user`` plugin module exactly as the running daemon loaded it."""
    return sys.modules[type(daemon.mw.services["user"]).__module__]


@pytest.mark.parametrize(("digits", "scale"), [(6, 4), (8, 3)])
async def test_c23_png_qr_decodes_to_the_provisioning_uri(
    daemon: InProcessDaemon, tmp_path: Path, digits: int, scale: int
) -> None:
    """twofactor_qr PNG is a regular QR code, error correction M, that decodes to exactly
    the provisioning URI's ASCII bytes (6 and 8 digits)."""
    async with daemon.admin() as admin, user_asset(admin, "user1"):
        await daemon.seed_secret("user1", RFC_SECRET, digits=digits)
        uri = await admin.call("user.provisioning_uri", "user1")
        assert ("&digits=8" in uri) == (digits == 8)
        qr = await admin.call("user.twofactor_qr", "user1", {"format": "png", "scale": scale})
        assert qr["format"] == "png"
        png = png_bytes(qr["data_uri"])
        assert await zbar_decode(png, tmp_path) == uri.encode("ascii")
        version, level = symbol_info(modules(png, scale))
        assert level == "M"
        assert version >= 1


async def test_c23_svg_qr_is_default_and_non_empty(daemon: InProcessDaemon) -> None:
    """Without options twofactor_qr returns a non-empty SVG data URI; a user without a secret
    gets call error EINVAL instead of a QR code."""
    async with (
        daemon.admin() as admin,
        user_asset(admin, "user1"),
        user_asset(admin, "user2"),
    ):
        await daemon.seed_secret("user1", RFC_SECRET)
        qr = await admin.call("user.twofactor_qr", "user1")
        assert qr["format"] == "svg"
        assert qr["data_uri"].startswith("data:image/svg+xml")
        svg = unquote(qr["data_uri"].split(",", 1)[1])
        assert "<svg" in svg and "<path" in svg
        err = await call_error(admin, "user.twofactor_qr", "user2")
        assert_call_error(err, 22, "EINVAL")
        assert err.reason == "'user2' user does not have two factor authentication configured"


async def test_c23_short_payload_is_a_regular_qr_code(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    """The daemon's own QR helper renders the short payload '12345' (which segno.make would
    turn into Micro QR M1) as a regular version-1 QR code, error correction M, that zbar reads."""
    render = user_plugin(daemon).qr_data_uri
    scale = 5
    png = png_bytes(await asyncio.to_thread(render, "12345", fmt="png", scale=scale))
    grid = modules(png, scale)
    assert len(grid) == 21  # version 1; Micro M1 would be 11 modules wide
    assert symbol_info(grid) == (1, "M")
    assert await zbar_decode(png, tmp_path) == b"12345"
