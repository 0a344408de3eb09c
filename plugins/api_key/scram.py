"""SCRAM-SHA-512 for API keys (RFC 5802 with SHA-512 as RFC 7677 does for SHA-256; API.md
§11), on ``hashlib.pbkdf2_hmac`` and ``hmac``. No primitive is written here.

The key material (the part of ``<id>-<key>`` after the dash) is the SCRAM password:

    SaltedPassword := PBKDF2-HMAC-SHA512(key, salt, iterations)
    ClientKey      := HMAC(SaltedPassword, "Client Key")
    StoredKey      := H(ClientKey)
    ServerKey      := HMAC(SaltedPassword, "Server Key")
    AuthMessage    := client-first-message-bare "," server-first-message ","
                      client-final-message-without-proof
    ClientProof    := ClientKey XOR HMAC(StoredKey, AuthMessage)
    ServerSignature := HMAC(ServerKey, AuthMessage)

TrueNAS's form (API.md §11), which ``scramp`` does not produce: the combined nonce is one
base64 value of the client's nonce *bytes* followed by 32 server bytes, not the client's
nonce string with server characters appended (RFC 5802 §5.1 ``r=``); and the user name is
``USERNAME:KEYID``. Messages are parsed here strictly; anything unexpected is a
:class:`ScramError` (the login answers AUTH_ERR).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

#: PBKDF2 iterations of a new key (API.md §11).
ITERATIONS = 500_000
#: Bounds of an iteration count this daemon accepts in stored data (API.md §11).
MIN_ITERATIONS, MAX_ITERATIONS = 50_000, 5_000_000
SALT_BYTES = 32
SERVER_NONCE_BYTES = 32
#: The only channel binding type (RFC 5929 §4).
END_POINT = "tls-server-end-point"


class ScramError(ValueError):
    """A malformed or unexpected SCRAM message (never quotes the message)."""


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What is stored for a key (never the key): salt, iterations, StoredKey, ServerKey;
    ClientKey is returned once, at creation."""

    salt: bytes
    iterations: int
    client_key: bytes
    stored_key: bytes
    server_key: bytes


def derive(key_material: str, salt: bytes, iterations: int) -> ScramKeys:
    """The SCRAM keys of ``key_material`` (RFC 5802 §3). Costs ``iterations`` PBKDF2
    rounds: run it in the hashing pool."""
    salted = hashlib.pbkdf2_hmac("sha512", key_material.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha512")
    return ScramKeys(
        salt=salt,
        iterations=iterations,
        client_key=client_key,
        stored_key=hashlib.sha512(client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", "sha512"),
    )


def new_keys(key_material: str) -> ScramKeys:
    """Keys of a new API key: a random salt, :data:`ITERATIONS`."""
    return derive(key_material, os.urandom(SALT_BYTES), ITERATIONS)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ScramError("bad base64") from None


def _attributes(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """``a=...,b=...`` with exactly the attributes ``names``, in that order."""
    parts = text.split(",")
    if len(parts) != len(names):
        raise ScramError("unexpected attributes")
    out: dict[str, str] = {}
    for part, name in zip(parts, names, strict=True):
        if not part.startswith(name + "=") or len(part) == len(name) + 1:
            raise ScramError("unexpected attribute")
        out[name] = part[len(name) + 1 :]
    return out


def _saslname(text: str) -> str:
    """RFC 5802 §5.1: ``=2C`` is ``,`` and ``=3D`` is ``=``; any other ``=`` is an error."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "=":
            escape = text[i : i + 3]
            if escape not in ("=2C", "=3D"):
                raise ScramError("bad saslname")
            out.append("," if escape == "=2C" else "=")
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class ClientFirst:
    """A parsed client-first-message."""

    gs2_header: str  # "n,," / "y,," / "p=tls-server-end-point,,"
    binding: bool  # the client asked for tls-server-end-point
    username: str
    key_id: int
    nonce: bytes
    bare: str  # client-first-message-bare, as sent


def parse_client_first(message: str) -> ClientFirst:
    """``gs2-header n=USERNAME:KEYID,r=B64(nonce)`` (API.md §11).

    Raises:
        ScramError: anything else (an authzid, extensions, a bad key id or nonce).
    """
    flag, sep, rest = message.partition(",")
    authzid, sep2, bare = rest.partition(",")
    if not sep or not sep2 or authzid:
        raise ScramError("unsupported gs2 header")
    if flag not in ("n", "y", f"p={END_POINT}"):
        raise ScramError("unsupported channel binding")
    attrs = _attributes(bare, ("n", "r"))
    name, colon, key_id = _saslname(attrs["n"]).rpartition(":")
    if not colon or not name or not key_id.isascii() or not key_id.isdigit():
        raise ScramError("no key id")
    if len(key_id) > 18 or int(key_id) < 1:
        raise ScramError("bad key id")
    nonce = unb64(attrs["r"])
    if not 16 <= len(nonce) <= 64:
        raise ScramError("bad nonce")
    return ClientFirst(f"{flag},,", flag.startswith("p="), name, int(key_id), nonce, bare)


def server_first(client: ClientFirst, salt: bytes, iterations: int) -> tuple[str, str]:
    """``(server-first-message, combined nonce)``: ``r=B64(client nonce + 32 random
    bytes),s=B64(salt),i=ITERATIONS``."""
    combined = b64(client.nonce + os.urandom(SERVER_NONCE_BYTES))
    return f"r={combined},s={b64(salt)},i={iterations}", combined


@dataclass(frozen=True, slots=True)
class ClientFinal:
    """A parsed client-final-message."""

    channel_binding: bytes  # decoded c=
    nonce: str  # r=, as sent
    proof: bytes
    without_proof: str


def parse_client_final(message: str) -> ClientFinal:
    """``c=B64(gs2 header + binding data),r=NONCE,p=B64(proof)``.

    Raises:
        ScramError: anything else.
    """
    head, sep, proof = message.rpartition(",p=")
    if not sep:
        raise ScramError("no proof")
    attrs = _attributes(head, ("c", "r"))
    return ClientFinal(unb64(attrs["c"]), attrs["r"], unb64(proof), head)


def verify_final(
    stored_key: bytes,
    server_key: bytes,
    auth_message: str,
    proof: bytes,
) -> str | None:
    """``v=ServerSignature`` when ``proof`` proves the ClientKey whose hash is
    ``stored_key`` (RFC 5802 §3), else None. Constant-time comparison."""
    signature = hmac.digest(stored_key, auth_message.encode(), "sha512")
    if len(proof) != len(signature):
        return None
    client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
    if not hmac.compare_digest(hashlib.sha512(client_key).digest(), stored_key):
        return None
    return "v=" + b64(hmac.digest(server_key, auth_message.encode(), "sha512"))
