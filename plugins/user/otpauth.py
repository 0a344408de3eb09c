"""Pure helpers of the ``user`` plugin: the Key URI of a TOTP secret and its QR code.

Secrets are 32 base32 characters (160 bits, RFC 4226 §4 R6 recommends at least 128);
provisioning URIs follow the Key URI format
(``otpauth://totp/ISSUER:NAME%40HOST?secret=...&issuer=...``).
"""

from __future__ import annotations

from urllib.parse import quote

import segno

SECRET_LENGTH = 32  # base32 characters = 160 bits


def provisioning_uri(
    secret: str, *, username: str, host: str, issuer: str, interval: int, digits: int
) -> str:
    """Key URI for authenticator apps (Google Authenticator Key-Uri-Format).

    Label ``ISSUER:NAME@HOST`` with each part percent-encoded per RFC 3986 (space is
    ``%20``); ``digits`` only when not 6, ``period`` only when not 30. The secret is
    written without ``=`` padding.
    """
    label = f"{quote(issuer, safe='')}:{quote(f'{username}@{host}', safe='')}"
    query = f"secret={secret.rstrip('=')}&issuer={quote(issuer, safe='')}"
    if digits != 6:
        query += f"&digits={digits}"
    if interval != 30:
        query += f"&period={interval}"
    return f"otpauth://totp/{label}?{query}"


def qr_data_uri(payload: str, *, fmt: str, scale: int) -> str:
    """``payload`` as a ``data:`` URI of a regular QR code, error correction M, quiet zone
    of 4 modules.

    Never Micro QR: ``segno.make`` picks Micro QR for short payloads and most phone
    readers cannot scan those (segno #114), so ``make_qr`` is used.

    Args:
        payload: Text to encode (the provisioning URI).
        fmt: ``"png"`` or ``"svg"``.
        scale: Pixels (or SVG units) per module.
    """
    qr = segno.make_qr(payload, error="M", boost_error=False)
    if fmt == "png":
        return str(qr.png_data_uri(scale=scale, border=4))
    return str(qr.svg_data_uri(scale=scale, border=4))
