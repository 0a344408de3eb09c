"""Encryption at rest and the key file (crypto.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from middlewared_2fa.crypto import (
    DecryptionError,
    SecretBox,
    hash_password,
    load_or_create_key,
    verify_password,
)
from middlewared_2fa.errors import StartupError


def test_key_file_created_with_mode_0600(tmp_path: Path) -> None:
    """The key file is created once, 32 bytes, readable by the owner only."""
    path = tmp_path / "k" / "secret.key"
    key = load_or_create_key(path, create=True)
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path, create=True) == key


def test_missing_key_with_data_is_an_error(tmp_path: Path) -> None:
    """A missing key file is a clear error when creating one is not allowed."""
    with pytest.raises(StartupError, match="missing"):
        load_or_create_key(tmp_path / "secret.key", create=False)


@pytest.mark.parametrize("content", [b"", b"short", b"!!!!not base64!!!!", b"QUJD\n"])
def test_malformed_key_file(tmp_path: Path, content: bytes) -> None:
    """A key file that is not 32 base64-encoded bytes is refused."""
    path = tmp_path / "secret.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(StartupError, match="malformed"):
        load_or_create_key(path, create=True)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A key file with group/other permissions is refused."""
    path = tmp_path / "secret.key"
    load_or_create_key(path, create=True)
    os.chmod(path, 0o644)
    with pytest.raises(StartupError, match="chmod 600"):
        load_or_create_key(path, create=True)


def test_secret_box_round_trip_and_binding() -> None:
    """Encrypted values decrypt with the same key and purpose only; plaintext is not visible."""
    box = SecretBox(os.urandom(32))
    token = box.encrypt("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", b"totp-secret")
    assert "GEZDGNBV" not in token and token.startswith("v1:")
    assert box.decrypt(token, b"totp-secret") == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert token != box.encrypt("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", b"totp-secret")
    with pytest.raises(DecryptionError):
        box.decrypt(token, b"other-purpose")
    with pytest.raises(DecryptionError):
        SecretBox(os.urandom(32)).decrypt(token, b"totp-secret")
    with pytest.raises(DecryptionError):
        box.decrypt(token[:-4] + "AAAA", b"totp-secret")


def test_password_hash_is_argon2id() -> None:
    """Passwords are stored as argon2id and verify only with the right password."""
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "wrong")
    assert not verify_password(None, "anything")
    assert not verify_password("not a hash", "x")
