"""TLS of the TCP listener (API.md §11 "TLS"): the server certificate (a configured one, or
a self-signed one generated into the state directory on first start), its SSLContext, its
SHA-256 fingerprint and its RFC 5929 ``tls-server-end-point`` channel-binding data."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from middlewared_2fa.config import Settings
from middlewared_2fa.errors import StartupError

logger = logging.getLogger(__name__)

#: Lifetime of a generated certificate: Apple's platforms refuse TLS server certificates
#: valid for longer than 825 days, even self-signed ones a user trusts.
GENERATED_DAYS = 825
#: A generated certificate this close to its end is replaced at start-up.
RENEW_BEFORE = datetime.timedelta(days=30)
#: Backdating of a generated certificate, for clients whose clock is a little behind.
BACKDATE = datetime.timedelta(hours=1)
#: What browsers send as ALPN; the listener speaks HTTP/1.1 only (WebSocket over it).
ALPN = ["http/1.1"]


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """The certificate the TCP listener serves, and what is derived from it once.

    Attributes:
        cert_path: The PEM certificate file (the leaf first, then any intermediates).
        key_path: The PEM private key file.
        generated: The pair is the daemon's own self-signed one in the state directory.
        certificate: The leaf certificate.
        fingerprint: SHA-256 of the leaf's DER form, as ``openssl x509 -fingerprint
            -sha256`` prints it (upper-case hex pairs joined by ``:``).
        end_point: RFC 5929 §4.1 ``tls-server-end-point`` data; None when the RFC leaves
            it undefined (a signature without a single hash, such as Ed25519).
        context: The server-side SSLContext (TLS 1.2 and newer).
    """

    cert_path: Path
    key_path: Path
    generated: bool
    certificate: x509.Certificate
    fingerprint: str
    end_point: bytes | None
    context: ssl.SSLContext


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of ``cert``'s DER encoding as ``AB:CD:...`` (64 hex pairs)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def tls_server_end_point(cert: x509.Certificate) -> bytes | None:
    """The RFC 5929 §4.1 ``tls-server-end-point`` channel-binding data of ``cert``.

    The hash of the certificate's DER form with the hash function of its signature
    algorithm, except that MD5 and SHA-1 are replaced by SHA-256.

    Returns:
        The digest (32 bytes for SHA-256, 48 for SHA-384...); None when the signature
        algorithm uses no single hash function (Ed25519, Ed448): §4.1 leaves the
        binding undefined then, so there is nothing to bind to.
    """
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    return cert.fingerprint(algorithm)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """An SSLContext serving ``cert_path`` with ``key_path``: TLS 1.2 and newer, no
    renegotiation (a TLS 1.2 client could otherwise make the server redo the costly
    handshake at will), HTTP/1.1 by ALPN.

    Raises:
        ssl.SSLError: OpenSSL refuses the pair (unreadable, or the key does not match).
        OSError: a file cannot be read.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(ALPN)
    context.load_cert_chain(cert_path, key_path)
    return context


def load_server_certificate(
    settings: Settings, hostname: str, *, now: datetime.datetime | None = None
) -> ServerCertificate:
    """The certificate of ``settings`` (API.md §11 "TLS"): the configured
    ``tls_cert_file``/``tls_key_file``, else the generated pair in the state directory,
    made on first start (and again when it is missing, incomplete, or within
    :data:`RENEW_BEFORE` of its end).

    Args:
        settings: The daemon's settings (``tls`` on).
        hostname: The machine's host name, for a new certificate's subject and SAN.
        now: The current time (UTC), for validity checks; the system clock by default.

    Raises:
        StartupError: a file is missing or unreadable, is not PEM, the key is encrypted
            or does not match the certificate, or the generated pair cannot be written.
            The message names the file.
    """
    try:
        return _load(settings, hostname, now or datetime.datetime.now(datetime.UTC))
    except OSError as exc:  # unforeseen (a folder that cannot be searched): still one line
        raise StartupError(f"cannot use the TLS certificate: {exc}") from None


def _load(settings: Settings, hostname: str, now: datetime.datetime) -> ServerCertificate:
    cert_path, key_path = settings.tls_cert_path, settings.tls_key_path
    generated = settings.tls_cert_file is None
    if generated:
        _ensure_generated(cert_path, key_path, hostname, now)
    hint = " (delete both files to generate a new certificate)" if generated else ""
    try:
        cert = _load_certificate(cert_path)
        key = _load_key(key_path)
        if _public_der(key.public_key()) != _public_der(cert.public_key()):
            raise StartupError(
                f"TLS key file {key_path} does not match the certificate {cert_path}"
            )
        try:
            context = server_context(cert_path, key_path)
        except ssl.SSLError as exc:
            raise StartupError(
                f"cannot use the TLS certificate {cert_path} with the key {key_path}: "
                f"{exc.reason or exc}"
            ) from None
        except OSError as exc:
            raise StartupError(f"cannot read {exc.filename or cert_path}: {exc.strerror}") from None
    except StartupError as exc:
        raise StartupError(f"{exc}{hint}") from None
    _warn_about(cert, cert_path, key_path, now)
    return ServerCertificate(
        cert_path=cert_path,
        key_path=key_path,
        generated=generated,
        certificate=cert,
        fingerprint=fingerprint(cert),
        end_point=tls_server_end_point(cert),
        context=context,
    )


def generate_certificate(
    cert_path: Path, key_path: Path, hostname: str, now: datetime.datetime
) -> None:
    """Write a new self-signed pair: an ECDSA P-256 key (mode 0600) and a certificate
    for ``hostname``, ``localhost``, 127.0.0.1 and ::1 valid :data:`GENERATED_DAYS`.

    Each file is written under a temporary name and renamed into place, the key first;
    a pair left incomplete by a crash is made anew at the next start.

    Raises:
        OSError: a file cannot be written.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in _dns_names(hostname)]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "middlewared-2fa"),
            x509.NameAttribute(NameOID.COMMON_NAME, _dns_names(hostname)[0][:64]),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=GENERATED_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _dns_names(hostname: str) -> list[str]:
    """The DNS names of a generated certificate: the host name (when it is an ASCII name
    other than ``localhost``), then ``localhost``."""
    names = []
    name = hostname.strip().rstrip(".").lower()
    if name and name != "localhost" and name.isascii() and not _is_address(name):
        names.append(name)
    names.append("localhost")
    return names


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ensure_generated(
    cert_path: Path, key_path: Path, hostname: str, now: datetime.datetime
) -> None:
    """Make the generated pair when it is missing, incomplete or about to expire."""
    reason = None
    if not cert_path.exists() and not key_path.exists():
        reason = "first start"
    elif not cert_path.exists() or not key_path.exists():
        reason = "the pair was incomplete"
        logger.warning("%s or %s is missing: generating a new certificate", cert_path, key_path)
    else:
        try:
            ends = _load_certificate(cert_path).not_valid_after_utc
        except StartupError:
            return  # reported by the caller, with the hint to delete the files
        if ends - now < RENEW_BEFORE:
            reason = f"the previous one expires {ends:%Y-%m-%d}"
            logger.warning(
                "the generated TLS certificate %s expires %s: generating a new one "
                "(its fingerprint changes)",
                cert_path,
                f"{ends:%Y-%m-%d}",
            )
    if reason is None:
        return
    try:
        generate_certificate(cert_path, key_path, hostname, now)
    except OSError as exc:
        raise StartupError(
            f"cannot write the TLS certificate {cert_path}: {exc.strerror or exc}"
        ) from None
    logger.info("generated a self-signed TLS certificate %s (%s)", cert_path, reason)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` (whatever the umask), atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def _load_certificate(path: Path) -> x509.Certificate:
    """The first (leaf) certificate of the PEM file ``path``."""
    data = _read(path, "certificate file")
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        raise StartupError(f"TLS certificate file {path} holds no valid PEM certificate") from None


def _load_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, "key file")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise StartupError(
            f"TLS key file {path} is encrypted: give the key without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise StartupError(f"TLS key file {path} holds no valid PEM private key") from None


def _public_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _warn_about(
    cert: x509.Certificate, cert_path: Path, key_path: Path, now: datetime.datetime
) -> None:
    """Warnings that do not stop the start: an expired or not yet valid certificate (the
    administrator's choice), a key file other users may read."""
    if cert.not_valid_after_utc < now:
        logger.warning(
            "the TLS certificate %s expired %s", cert_path, f"{cert.not_valid_after_utc:%Y-%m-%d}"
        )
    elif cert.not_valid_before_utc > now:
        logger.warning(
            "the TLS certificate %s is valid only from %s",
            cert_path,
            f"{cert.not_valid_before_utc:%Y-%m-%d}",
        )
    try:
        mode = key_path.stat().st_mode
    except OSError:
        return
    if mode & 0o004:
        logger.warning(
            "the TLS key file %s is readable by every user (mode %o)", key_path, mode & 0o777
        )
