"""Helpers for the SSH/OATH tests: the secret of a provisioning URI, the lines of a liboath
users file, and the switch for "global 2FA and SSH 2FA on"."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from middlewared_2fa.cli.client import Client


def secret_of(entry_or_uri: dict[str, Any] | str) -> str:
    """The base32 secret of a provisioning URI, or of a ``user.renew_2fa_secret`` result."""
    uri = (
        entry_or_uri
        if isinstance(entry_or_uri, str)
        else entry_or_uri["twofactor_config"]["provisioning_uri"]
    )
    return parse_qs(urlsplit(uri).query)["secret"][0]


def hex_of(secret_b32: str) -> str:
    """The base32 ``secret_b32`` (padding optional) as lower-case hex, decoded here with
    the standard library only."""
    return base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8)).hex()


def users_lines(path: Path) -> list[list[str]]:
    """The non-comment lines of a users file, split at tabs (liboath writes tabs)."""
    return [
        line.split("\t")
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def line_of(path: Path, username: str) -> list[str] | None:
    """The fields of ``username``'s line, or None when the file does not list them."""
    found = [fields for fields in users_lines(path) if fields[1] == username]
    assert len(found) <= 1, found
    return found[0] if found else None


def pam_oath_lines(path: Path) -> list[str]:
    """The active (non-comment) lines of the PAM snippet."""
    return [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


async def enable_ssh_2fa(admin: Client, **fields: Any) -> dict[str, Any]:
    """Turn global 2FA and ``services.ssh`` on (plus any other ``fields``)."""
    result: dict[str, Any] = await admin.call(
        "auth.twofactor.update", {"enabled": True, "services": {"ssh": True}, **fields}
    )
    return result
