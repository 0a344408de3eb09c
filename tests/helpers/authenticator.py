"""A software WebAuthn authenticator for wire-level tests (the outside world: a browser
and its security key), built on ``cryptography`` (ES256 keys and signatures) and
``cbor2`` (the CBOR of attestation objects and COSE keys), so tests can send what a
browser would and tamper with each part: origin, rp id, challenge, signature, counter.

Its answers are ``PublicKeyCredential.toJSON()`` objects (WebAuthn L3 §5.1): binary
fields base64url without padding.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

# Authenticator data flags (WebAuthn L3 §6.1).
UP = 0x01
UV = 0x04
AT = 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One ES256 credential; ``sign_count`` grows by ``step`` per assertion (0 keeps it
    at 0, as synced passkeys do)."""

    sign_count: int = 0
    step: int = 1
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    user_handle: bytes | None = None

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    @staticmethod
    def client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def register(
        self,
        options: dict[str, Any],
        *,
        origin: str,
        rp_id: str | None = None,
        challenge: str | None = None,
        flags: int = UP | UV,
    ) -> dict[str, Any]:
        """The answer to ``navigator.credentials.create(options)``: attestation "none"."""
        rp = rp_id if rp_id is not None else options["rp"]["id"]
        self.user_handle = unb64url(options["user"]["id"])
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([flags | AT])
            + struct.pack(">I", self.sign_count)
            + bytes(16)  # AAGUID
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        client_data = self.client_data(
            "webauthn.create", challenge if challenge is not None else options["challenge"], origin
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    def assertion(
        self,
        options: dict[str, Any],
        *,
        origin: str,
        rp_id: str | None = None,
        challenge: str | None = None,
        flags: int = UP | UV,
        sign_count: int | None = None,
        bad_signature: bool = False,
        kind: str = "webauthn.get",
    ) -> dict[str, Any]:
        """The answer to ``navigator.credentials.get(options)``, signed with this key."""
        if sign_count is None:
            self.sign_count += self.step
            sign_count = self.sign_count
        rp = rp_id if rp_id is not None else options["rpId"]
        auth_data = (
            hashlib.sha256(rp.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)
        )
        client_data = self.client_data(
            kind, challenge if challenge is not None else options["challenge"], origin
        )
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        if bad_signature:
            signature = self.key.sign(signed + b"x", ec.ECDSA(hashes.SHA256()))
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }
