"""The TLS certificate, its SSLContext, fingerprint and RFC 5929 end-point hash (tls.py),
and the TLS settings (API.md §1, §11)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from middlewared_2fa.config import Settings, load_settings
from middlewared_2fa.errors import StartupError
from middlewared_2fa.tls import (
    GENERATED_DAYS,
    fingerprint,
    generate_certificate,
    load_server_certificate,
    server_context,
    tls_server_end_point,
)
from tests.helpers.certs import make_ca, make_leaf, write_pair

#: Made with ``openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha1``
#: (cryptography no longer signs with SHA-1); openssl's ``-fingerprint -sha256`` of it
#: is :data:`SHA1_SIGNED_FINGERPRINT`.
SHA1_SIGNED = b"""-----BEGIN CERTIFICATE-----
MIIBfTCCASSgAwIBAgIUCZmPznjIbzh8DVUYvbkv0FLsm+wwCQYHKoZIzj0EATAU
MRIwEAYDVQQDDAlzaGExLnRlc3QwIBcNMjYxMjAyMDExNDA3WhgPMjEyNjExMDgw
MTE0MDdaMBQxEjAQBgNVBAMMCXNoYTEudGVzdDBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABLAh/UyxWaB7LsDQdncWR76VNRLypl0H0+5fCgZCtZ1NPr1RAdQ46xv8
Ekz/d49ESusGGLsSStnz4K+YkSJfdyujUzBRMB0GA1UdDgQWBBS67jqBv2DOUWwG
J6Nkef7IrtfEPTAfBgNVHSMEGDAWgBS67jqBv2DOUWwGJ6Nkef7IrtfEPTAPBgNV
HRMBAf8EBTADAQH/MAkGByqGSM49BAEDSAAwRQIhAO5zoKN2j/QTt37LIyBdOiZk
oSeS5CmXVMTUvCoP9ukBAiA2THpGIaS9s2V069VIOMiyfTu+Xxlg0eG3ULbtiax5
BQ==
-----END CERTIFICATE-----
"""
SHA1_SIGNED_FINGERPRINT = (
    "7F:5C:C7:1E:3C:CC:10:04:FA:CE:AF:B5:76:EE:DD:7E:"
    "26:CF:5D:01:6B:55:FD:35:EE:32:A0:AE:AB:B2:CD:8D"
)
#: ``openssl req -x509 -newkey rsa:1024 -md5``.
MD5_SIGNED = b"""-----BEGIN CERTIFICATE-----
MIICBDCCAW2gAwIBAgIUK6ynZUwQb210UkBYyhK1FW9PgzYwDQYJKoZIhvcNAQEE
BQAwEzERMA8GA1UEAwwIbWQ1LnRlc3QwIBcNMjYxMjAyMDExNDA3WhgPMjEyNjEx
MDgwMTE0MDdaMBMxETAPBgNVBAMMCG1kNS50ZXN0MIGfMA0GCSqGSIb3DQEBAQUA
A4GNADCBiQKBgQDEC+DaPSDJTlcNB0dAh9aniSQ/t8PrsrVcawrZJrh9tYgVcVjY
otcasDgesqH+HdCtaSOmKh5RlWAkN25N+S6KfZvyLtocLVD3Zxf1JlvV/CUdGQiz
VtavVc0HGZ0m3v7BZBO7gcFL6B3Z51d82+iXVg8Ie1yPUnN+zhxfv1XKdwIDAQAB
o1MwUTAdBgNVHQ4EFgQUHX7IMYUzLCP4IWyh3P4c4VSTwnowHwYDVR0jBBgwFoAU
HX7IMYUzLCP4IWyh3P4c4VSTwnowDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0B
AQQFAAOBgQAmBP+ltF+xh3jKBPhsJic9TyVWtWmHHUMFk0eVg2s5oOGgNKaP283V
H1DbAUE67h/t7G40YXlQUGq60a4K85U9UfOKVM8aycxxdzFJWzyKpuV1SnjobgM5
fUzvnnL+0Dp5MSZClIzq5EcIPC8Nt2kQPuifPEvbk8aPZEoDzRTXng==
-----END CERTIFICATE-----
"""

NOW = datetime.datetime.now(datetime.UTC)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings.model_validate({"state_dir": tmp_path / "state", "tls": True, **values})


# -- RFC 5929 and the fingerprint --------------------------------------------------------


@pytest.mark.parametrize(
    ("signature_hash", "digest"),
    [(hashes.SHA256(), "sha256"), (hashes.SHA384(), "sha384"), (hashes.SHA512(), "sha512")],
)
def test_end_point_uses_the_signature_hash(
    signature_hash: hashes.SHA256 | hashes.SHA384 | hashes.SHA512, digest: str
) -> None:
    """RFC 5929 §4.1: the certificate's hash with its signature's hash algorithm."""
    leaf = make_leaf(make_ca(), signature_hash=signature_hash).cert
    assert tls_server_end_point(leaf) == hashlib.new(digest, _der(leaf)).digest()


@pytest.mark.parametrize("pem", [SHA1_SIGNED, MD5_SIGNED], ids=["sha1", "md5"])
def test_end_point_replaces_md5_and_sha1_by_sha256(pem: bytes) -> None:
    """RFC 5929 §4.1: a certificate signed with MD5 or SHA-1 is hashed with SHA-256."""
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name in ("md5", "sha1")
    assert tls_server_end_point(cert) == hashlib.sha256(_der(cert)).digest()


def test_end_point_is_undefined_without_a_single_hash() -> None:
    """RFC 5929 §4.1 leaves the binding undefined for Ed25519 signatures: None."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, None)
    )
    assert tls_server_end_point(cert) is None


def test_fingerprint_is_written_as_openssl_prints_it() -> None:
    """Upper-case hex pairs joined by colons: what `openssl x509 -fingerprint -sha256` shows."""
    assert fingerprint(x509.load_pem_x509_certificate(SHA1_SIGNED)) == SHA1_SIGNED_FINGERPRINT


# -- the generated certificate ---------------------------------------------------------------


def test_generated_certificate(tmp_path: Path) -> None:
    """ECDSA P-256, self-signed with SHA-256, SAN host name + localhost + 127.0.0.1 + ::1,
    a server certificate (not a CA) valid 825 days; the key file is 0600 whatever the umask."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    old = os.umask(0)
    try:
        generate_certificate(cert_path, key_path, "NAS01", NOW)
    finally:
        os.umask(old)
    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert public.public_numbers() == key.public_key().public_numbers()
    cert.verify_directly_issued_by(cert)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["nas01", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = cert.not_valid_after_utc - NOW
    assert datetime.timedelta(days=GENERATED_DAYS - 1) < lifetime
    assert lifetime <= datetime.timedelta(days=GENERATED_DAYS)


@pytest.mark.parametrize("hostname", ["localhost", "10.1.2.3", "", "nås"])
def test_generated_certificate_without_a_usable_host_name(tmp_path: Path, hostname: str) -> None:
    """A host name that is localhost, an address or not ASCII adds no DNS name of its own."""
    generate_certificate(tmp_path / "c.pem", tmp_path / "k.pem", hostname, NOW)
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_generated_pair_is_kept(tmp_path: Path) -> None:
    """The first load writes the pair into the state directory; the next ones keep it."""
    settings = _settings(tmp_path)
    first = load_server_certificate(settings, "nas")
    assert first.generated is True
    assert (first.cert_path, first.key_path) == (
        tmp_path / "state" / "tls-cert.pem",
        tmp_path / "state" / "tls-key.pem",
    )
    files = (first.cert_path.read_bytes(), first.key_path.read_bytes())
    again = load_server_certificate(settings, "other-name")
    assert again.fingerprint == first.fingerprint
    assert (again.cert_path.read_bytes(), again.key_path.read_bytes()) == files


@pytest.mark.parametrize("lost", ["tls-cert.pem", "tls-key.pem"])
def test_incomplete_generated_pair_is_made_anew(tmp_path: Path, lost: str) -> None:
    """One file of the generated pair missing (a crash while writing): a new pair."""
    settings = _settings(tmp_path)
    first = load_server_certificate(settings, "nas")
    (tmp_path / "state" / lost).unlink()
    again = load_server_certificate(settings, "nas")
    assert again.fingerprint != first.fingerprint


def test_expiring_generated_certificate_is_renewed(tmp_path: Path) -> None:
    """A generated certificate within 30 days of its end is replaced at start-up."""
    settings = _settings(tmp_path)
    first = load_server_certificate(settings, "nas")
    later = NOW + datetime.timedelta(days=GENERATED_DAYS - 29)
    renewed = load_server_certificate(settings, "nas", now=later)
    assert renewed.fingerprint != first.fingerprint
    assert renewed.certificate.not_valid_after_utc > first.certificate.not_valid_after_utc


def test_damaged_generated_key_is_an_error_with_a_hint(tmp_path: Path) -> None:
    """A damaged generated file is not silently replaced: the message says what to do."""
    settings = _settings(tmp_path)
    load_server_certificate(settings, "nas")
    (tmp_path / "state" / "tls-key.pem").write_text("garbage\n")
    with pytest.raises(StartupError, match="delete both files to generate a new certificate"):
        load_server_certificate(settings, "nas")


# -- a configured certificate ------------------------------------------------------------------


def test_configured_pair_is_used(tmp_path: Path) -> None:
    """tls_cert_file/tls_key_file are served (chain included); nothing is generated."""
    ca = make_ca()
    leaf = make_leaf(ca, signature_hash=hashes.SHA384())
    cert_file, key_file = write_pair(tmp_path / "conf", leaf, chain=(ca,))
    served = load_server_certificate(
        _settings(tmp_path, tls_cert_file=cert_file, tls_key_file=key_file), "nas"
    )
    assert served.generated is False
    assert served.certificate == leaf.cert
    assert served.end_point == hashlib.sha384(_der(leaf.cert)).digest()
    assert not (tmp_path / "state" / "tls-cert.pem").exists()


def _broken(tmp_path: Path, case: str) -> tuple[Path, Path]:
    ca = make_ca()
    cert_file, key_file = write_pair(tmp_path / "conf", make_leaf(ca))
    if case == "key missing":
        key_file.unlink()
    elif case == "cert missing":
        cert_file.unlink()
    elif case == "key garbage":
        key_file.write_text("not a key\n")
    elif case == "cert garbage":
        cert_file.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    elif case == "key of another certificate":
        key_file.write_bytes(make_leaf(ca).key_pem)
    elif case == "key encrypted":
        key = make_leaf(ca).key
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pass"),
            )
        )
    return cert_file, key_file


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("key missing", "cannot read the TLS key file {key}: No such file or directory"),
        ("cert missing", "cannot read the TLS certificate file {cert}: No such file"),
        ("key garbage", "TLS key file {key} holds no valid PEM private key"),
        ("cert garbage", "TLS certificate file {cert} holds no valid PEM certificate"),
        ("key of another certificate", "TLS key file {key} does not match the certificate {cert}"),
        ("key encrypted", "TLS key file {key} is encrypted: give the key without a passphrase"),
    ],
)
def test_unusable_configured_pair_is_a_startup_error(
    tmp_path: Path, case: str, message: str
) -> None:
    """A missing, unreadable or mismatched file is one StartupError naming the file."""
    cert_file, key_file = _broken(tmp_path, case)
    settings = _settings(tmp_path, tls_cert_file=cert_file, tls_key_file=key_file)
    with pytest.raises(StartupError) as caught:
        load_server_certificate(settings, "nas")
    assert message.format(cert=cert_file, key=key_file) in str(caught.value)
    assert "delete both files" not in str(caught.value)  # not ours to delete


def test_server_context_is_tls_1_2_and_newer(tmp_path: Path) -> None:
    """The SSLContext is a server context refusing anything older than TLS 1.2."""
    cert_file, key_file = write_pair(tmp_path, make_leaf(make_ca()))
    context = server_context(cert_file, key_file)
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION


# -- settings ----------------------------------------------------------------------------------


def test_tls_settings_defaults_and_precedence(tmp_path: Path) -> None:
    """tls is off by default; the files default to the state directory; flags beat the
    environment, which beats the file (API.md §1)."""
    s = load_settings(environ={})
    assert s.tls is False and s.tls_cert_file is None and s.tls_key_file is None
    assert (s.tls_cert_path, s.tls_key_path) == (
        Path("state/tls-cert.pem"),
        Path("state/tls-key.pem"),
    )
    toml = tmp_path / "m.toml"
    toml.write_text('tls = false\ntls_cert_file = "/f/c.pem"\ntls_key_file = "/f/k.pem"\n')
    env = {"MIDDLEWARED_2FA_TLS": "yes", "MIDDLEWARED_2FA_TLS_CERT_FILE": "/e/c.pem"}
    s = load_settings(toml, environ=env)
    assert (s.tls, s.tls_cert_path, s.tls_key_path) == (True, Path("/e/c.pem"), Path("/f/k.pem"))
    s = load_settings(toml, {"tls_key_file": Path("/x/k.pem")}, environ=env)
    assert s.tls_key_path == Path("/x/k.pem")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MIDDLEWARED_2FA_TLS": "maybe"}, "tls: Input should be a valid boolean"),
        (
            {"MIDDLEWARED_2FA_TLS_CERT_FILE": "/c.pem"},
            "tls_cert_file is set without tls_key_file: set both, or neither",
        ),
        (
            {"MIDDLEWARED_2FA_TLS_KEY_FILE": "/k.pem"},
            "tls_key_file is set without tls_cert_file: set both, or neither",
        ),
    ],
)
def test_invalid_tls_settings(environ: dict[str, str], message: str) -> None:
    """A value that is not a boolean, or half a configured pair, is a start-up error."""
    with pytest.raises(StartupError, match=message):
        load_settings(environ=environ)
