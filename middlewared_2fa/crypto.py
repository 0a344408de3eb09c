"""Encryption at rest for TOTP secrets: AES-256-GCM under a key file.

The key file holds 32 random bytes, base64-encoded, mode 0600, created atomically on
first start (``O_CREAT|O_EXCL`` on a temporary name, then ``link``). Each value is
stored as ``v1:`` + base64(nonce[12] || ciphertext || tag[16]); the associated data
binds a ciphertext to its purpose (e.g. ``b"user-secret"``) so that rows cannot be
swapped between columns.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from middlewared_2fa.errors import StartupError

KEY_BYTES = 32
NONCE_BYTES = 12
PREFIX = "v1:"


class DecryptionError(Exception):
    """A stored value cannot be decrypted with this key (wrong key or corrupted row)."""


class SecretBox:
    """Encrypts and decrypts short strings with AES-256-GCM.

    Args:
        key: 32 raw key bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("key must be 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, purpose: bytes) -> str:
        """Encrypt ``plaintext`` (UTF-8) for ``purpose``; returns ``v1:<base64>``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), purpose)
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str, purpose: bytes) -> str:
        """Inverse of :meth:`encrypt`.

        Raises:
            DecryptionError: wrong key, wrong purpose or a corrupted value.
        """
        if not token.startswith(PREFIX):
            raise DecryptionError("unknown format")
        try:
            raw = base64.b64decode(token[len(PREFIX) :], validate=True)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("cannot decrypt") from exc
        return plain.decode()


def load_or_create_key(path: Path, *, create: bool) -> bytes:
    """Read the key file, or create it when ``create`` is true and it does not exist.

    Args:
        path: Key file location.
        create: Whether a missing file may be created (only when there is no
            encrypted data yet; otherwise a missing key would silently lose secrets).

    Raises:
        StartupError: the file is missing (and may not be created), unreadable,
            malformed, or readable by others.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise StartupError(
                f"key file {path} is missing but the database holds encrypted TOTP secrets; "
                "restore the key file from backup (or move the database away to start empty)"
            ) from None
        return _create_key(path)
    except OSError as exc:
        raise StartupError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise StartupError(f"key file {path} is malformed (expected 32 bytes, base64)")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise StartupError(f"key file {path} is accessible by others (mode {mode:o}); chmod 600 it")
    return key


def _create_key(path: Path) -> bytes:
    key = os.urandom(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process created the key meanwhile: never overwrite one.
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        return load_or_create_key(path, create=False)
    os.unlink(tmp)
    return key


# Passwords: argon2id (RFC 9106) through argon2-cffi. Hashing costs ~50 ms and 64 MiB, so
# callers run these in a thread (``asyncio.to_thread``), never on the event loop.
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password: equalises the time of unknown-user logins")


def hash_password(password: str) -> str:
    """argon2id hash of ``password`` (PHC string format)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash``.

    With ``password_hash`` None (unknown user, no password) a dummy hash is verified
    anyway so that the answer takes about the same time (API.md §3: indistinguishable).
    """
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, InvalidHashError, VerificationError):
        return False


#: Bytes of salt of a set of look-up secrets (recovery codes).
LOOKUP_SALT_BYTES = 16


def lookup_secret_digest(secret: str, salt: bytes) -> bytes:
    """argon2id digest (32 bytes) of a look-up secret under ``salt``, with the password
    hasher's cost parameters.

    NIST SP 800-63B §5.1.2.2: look-up secrets of less than 112 bits (recovery codes have
    80) are stored salted and hashed with a password hashing scheme. One salt serves a
    whole set, so checking a code costs one hash, whichever of the set it is.
    """
    return hash_secret_raw(
        secret.encode(),
        salt,
        time_cost=_hasher.time_cost,
        memory_cost=_hasher.memory_cost,
        parallelism=_hasher.parallelism,
        hash_len=32,
        type=Type.ID,
    )
