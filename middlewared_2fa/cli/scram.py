"""The client side of SCRAM-SHA-512 for API keys, as TrueNAS's client speaks it
(API.md §11; RFC 5802 §3 with SHA-512), on ``hashlib.pbkdf2_hmac`` and ``hmac``.

``first()`` gives ``n,,n=USERNAME:KEYID,r=B64(32 random bytes)`` (``p=tls-server-end-point,,``
with channel binding data over TLS); ``final(server_first)`` checks that the server's nonce
starts with ours and the iteration count is sane, and gives ``c=...,r=...,p=PROOF``;
``verify(server_final)`` checks the server's signature (mutual authentication).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field

#: Iteration counts a server may ask for (API.md §11).
MIN_ITERATIONS, MAX_ITERATIONS = 50_000, 5_000_000


class ScramClientError(ValueError):
    """The server's SCRAM message is malformed, or its signature is wrong."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class ScramExchange:
    """One SCRAM exchange for API key ``key_id`` of ``username``."""

    username: str
    key_id: int
    key_material: str
    binding_data: bytes | None = None
    _nonce: bytes = field(default=b"", repr=False)
    _bare: str = field(default="", repr=False)
    _auth_message: str = field(default="", repr=False)
    _server_key: bytes = field(default=b"", repr=False)

    @property
    def gs2_header(self) -> str:
        return "p=tls-server-end-point,," if self.binding_data is not None else "n,,"

    def first(self) -> str:
        self._nonce = os.urandom(32)
        name = self.username.replace("=", "=3D").replace(",", "=2C")
        self._bare = f"n={name}:{self.key_id},r={_b64(self._nonce)}"
        return self.gs2_header + self._bare

    def final(self, server_first: str) -> str:
        try:
            attrs = dict(part.split("=", 1) for part in server_first.split(","))
            combined = base64.b64decode(attrs["r"], validate=True)
            salt = base64.b64decode(attrs["s"], validate=True)
            iterations = int(attrs["i"])
        except (KeyError, ValueError, binascii.Error):
            raise ScramClientError("malformed server-first message") from None
        if not combined.startswith(self._nonce) or len(combined) <= len(self._nonce):
            raise ScramClientError("the server's nonce does not extend ours")
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ScramClientError(f"unexpected iteration count {iterations}")
        salted = hashlib.pbkdf2_hmac("sha512", self.key_material.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha512")
        stored_key = hashlib.sha512(client_key).digest()
        self._server_key = hmac.digest(salted, b"Server Key", "sha512")
        channel = _b64(self.gs2_header.encode() + (self.binding_data or b""))
        without_proof = f"c={channel},r={attrs['r']}"
        self._auth_message = f"{self._bare},{server_first},{without_proof}"
        signature = hmac.digest(stored_key, self._auth_message.encode(), "sha512")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={_b64(proof)}"

    def verify(self, server_final: str) -> None:
        """Raises ScramClientError unless ``server_final`` is ``v=`` the right signature."""
        expected = "v=" + _b64(hmac.digest(self._server_key, self._auth_message.encode(), "sha512"))
        if not hmac.compare_digest(server_final.encode(), expected.encode()):
            raise ScramClientError("the server's SCRAM signature is wrong")
