"""The client side of SCRAM-SHA-512 as TrueNAS's client speaks it (API.md §11), written
from RFC 5802 §3 with hashlib and hmac only (no project code), for tests that drive the
exchange by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class ScramClient:
    """One exchange: ``first()``, then ``final(server_first)``, then ``verify(server_final)``."""

    username: str
    key_id: int
    key_material: str
    gs2_header: str = "n,,"
    binding_data: bytes = b""

    def first(self) -> str:
        self.nonce = os.urandom(32)
        self.bare = f"n={self.username}:{self.key_id},r={b64(self.nonce)}"
        return self.gs2_header + self.bare

    def final(self, server_first: str, *, tamper_proof: bool = False) -> str:
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        combined = base64.b64decode(attrs["r"])
        assert combined.startswith(self.nonce) and len(combined) == len(self.nonce) + 32
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha512", self.key_material.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha512")
        stored_key = hashlib.sha512(client_key).digest()
        self.server_key = hmac.digest(salted, b"Server Key", "sha512")
        channel = b64(self.gs2_header.encode() + self.binding_data)
        without_proof = f"c={channel},r={attrs['r']}"
        self.auth_message = f"{self.bare},{server_first},{without_proof}"
        signature = hmac.digest(stored_key, self.auth_message.encode(), "sha512")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if tamper_proof:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        return f"{without_proof},p={b64(proof)}"

    def verify(self, server_final: str) -> bool:
        expected = hmac.digest(self.server_key, self.auth_message.encode(), "sha512")
        return server_final == "v=" + b64(expected)
