"""Built-in TLS (API.md §1, §11 "TLS"): with ``tls = true`` the TCP listener speaks HTTPS and
WSS only, with a configured certificate or a self-signed one it generates once and keeps.

In-process daemons cover the listener; daemon processes cover what is printed at start-up,
start-up errors, the log, ``midclt2fa`` and the web UI in Debian's chromium. What a client
sees of the certificate is read from the TLS connection itself, and checked with
``openssl`` where a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from middlewared_2fa.cli.client import ConnectError, open_client, tls_context
from middlewared_2fa.clock import FrozenClock
from middlewared_2fa.server import Connection
from tests.cli.conftest import midclt_path
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, Pages, chromium_unavailable
from tests.helpers.certs import (
    make_ca,
    make_leaf,
    rfc5929_end_point,
    spki_sha256_base64,
    write_pair,
)
from tests.helpers.daemon import (
    ADMIN_PASSWORD,
    InProcessDaemon,
    SubprocessDaemon,
    daemon_command,
    short_tempdir,
    start_subprocess_daemon,
)

TLS_ENV = {"MIDDLEWARED_2FA_TLS": "true"}
HSTS = "max-age=31536000"


# -- helpers ---------------------------------------------------------------------------------


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def raw_get(
    url: str, path: str, *, tls: ssl.SSLContext | None = None, headers: str = ""
) -> tuple[int | None, dict[str, str], bytes]:
    """``GET path`` on the listener of ``url``, over TLS with ``tls``; (status, headers,
    body), status None when the connection ended without an HTTP answer."""
    host, port = _address(url)
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}Connection: close\r\n\r\n"
        )
        writer.write(request.encode())
        chunks = []
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            while chunk := await asyncio.wait_for(reader.read(65536), 10):
                chunks.append(chunk)
        data = b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    if not data.startswith(b"HTTP/1.1 "):
        return None, {}, data
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), fields, body


async def served_certificate(url: str) -> bytes:
    """The DER certificate the listener of ``url`` serves (not verified)."""
    host, port = _address(url)
    _, writer = await asyncio.open_connection(host, port, ssl=tls_context(insecure=True))
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    assert isinstance(der, bytes)
    return der


def _client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers exactly TLS ``version`` (security level 0: OpenSSL 3 would
    otherwise not even offer TLS 1.1) and verifies nothing."""
    context = tls_context(insecure=True)
    with warnings.catch_warnings():  # ssl deprecates naming TLS 1.1 at all
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest().upper()


def _colons(hexdigits: str) -> str:
    return ":".join(hexdigits[i : i + 2] for i in range(0, len(hexdigits), 2))


def _openssl_fingerprint(path: Path) -> str:
    """``openssl x509 -noout -fingerprint -sha256 -in PATH`` -> the hex pairs."""
    done = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip().split("=", 1)[1]


def _connections(daemon: InProcessDaemon) -> set[Connection]:
    assert daemon.daemon is not None
    return daemon.daemon.connections


@contextlib.asynccontextmanager
async def started(
    base: Path, clock: FrozenClock, **overrides: Any
) -> AsyncIterator[InProcessDaemon]:
    """An in-process daemon on ``base`` with ``overrides`` (for settings made in the test)."""
    d = InProcessDaemon(base, clock, overrides)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


@pytest.fixture
def base() -> Iterator[Path]:
    folder = short_tempdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# -- the listener ----------------------------------------------------------------------------


@pytest.mark.settings(tls=True)
async def test_tls_listener_serves_wss_and_https_only(daemon: InProcessDaemon) -> None:
    """With tls the URL is wss://; the API, /healthz and /ui/ answer over TLS (with HSTS,
    the WebSocket's 101 too), and plaintext ws:// or http:// gets no answer at all."""
    assert daemon.url.startswith("wss://127.0.0.1:") and daemon.url.endswith("/api/current")
    trust = daemon.tls_client_context
    async with daemon.client() as c:
        assert await c.call("core.ping") == "pong"
        assert c.ws.response is not None
        assert c.ws.response.headers["Strict-Transport-Security"] == HSTS
    for path, status in (("/healthz", 200), ("/ui/", 200), ("/", 302), ("/nope", 404)):
        got, headers, _ = await raw_get(daemon.url, path, tls=trust)
        assert got == status, path
        assert headers["strict-transport-security"] == HSTS, path
    assert (await raw_get(daemon.url, "/healthz", tls=trust))[2] == b"OK\n"

    plain = daemon.url.replace("wss://", "ws://")
    with pytest.raises(ConnectError):
        async with open_client(plain):
            pass
    assert await raw_get(daemon.url, "/healthz") == (None, {}, b"")
    # Still serving after the plaintext attempts.
    async with daemon.client() as c:
        assert await c.call("core.ping") == "pong"


async def test_plaintext_listener_sends_no_hsts(daemon: InProcessDaemon) -> None:
    """Without tls nothing changes: ws://, and no HSTS over plaintext (RFC 6797 §7.2)."""
    assert daemon.url.startswith("ws://")
    status, headers, _ = await raw_get(daemon.url, "/healthz")
    assert status == 200 and "strict-transport-security" not in headers


@pytest.mark.settings(tls=True)
async def test_tls_1_2_and_1_3_only(daemon: InProcessDaemon) -> None:
    """A client offering only TLS 1.1 is refused by the daemon; TLS 1.2 and 1.3 work."""
    host, port = _address(daemon.url)
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
        _, writer = await asyncio.open_connection(
            host, port, ssl=_client_context(ssl.TLSVersion.TLSv1_1)
        )
        writer.close()
    # The client did send its hello (it did not give up on its own: no such error).
    assert getattr(refused.value, "reason", None) != "NO_PROTOCOLS_AVAILABLE"
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        _, writer = await asyncio.open_connection(host, port, ssl=_client_context(version))
        assert writer.get_extra_info("ssl_object").version() == name
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


@pytest.mark.settings(tls=True)
async def test_origin_must_be_https_over_tls(daemon: InProcessDaemon) -> None:
    """Over TLS the daemon's own origin is https://HOST:PORT; the http:// one is refused."""
    host, port = _address(daemon.url)
    async with daemon.client(origin=f"https://{host}:{port}") as c:
        assert await c.call("core.ping") == "pong"
    with pytest.raises(ConnectError, match="403"):
        async with daemon.client(origin=f"http://{host}:{port}"):
            pass


# -- the generated certificate -----------------------------------------------------------------


async def test_generated_certificate_is_kept_across_restarts(
    base: Path, clock: FrozenClock
) -> None:
    """First start: an ECDSA P-256 certificate for the host name, localhost, 127.0.0.1 and
    ::1 in the state directory, key mode 0600, served as is; a restart serves the same
    file, unchanged."""
    state = base / "state"
    async with started(base, clock, tls=True) as d:
        cert_file, key_file = state / "tls-cert.pem", state / "tls-key.pem"
        assert key_file.stat().st_mode & 0o777 == 0o600
        first = (cert_file.read_bytes(), key_file.read_bytes(), cert_file.stat().st_mtime_ns)
        cert = x509.load_pem_x509_certificate(first[0])
        served = await served_certificate(d.url)
        assert served == cert.public_bytes(serialization.Encoding.DER)
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == "secp256r1" and public.key_size == 256
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [socket.gethostname().lower(), "localhost"]
        assert san.get_values_for_type(x509.DNSName) == names
        assert set(san.get_values_for_type(x509.IPAddress)) == {
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        }
        # Trusting that one file is enough for every name in it, also for a strict
        # verifier (Python 3.13's default).
        strict = tls_context(cafile=cert_file)
        strict.verify_flags |= ssl.VERIFY_X509_STRICT
        for name in ("localhost", "127.0.0.1"):
            url = d.url.replace("127.0.0.1", name, 1)
            async with open_client(url, ssl=strict) as c:
                assert await c.call("core.ping") == "pong"
    async with started(base, clock, tls=True) as d:
        assert (
            cert_file.read_bytes(),
            key_file.read_bytes(),
            cert_file.stat().st_mtime_ns,
        ) == first
        assert await served_certificate(d.url) == served


async def test_configured_certificate_is_served(base: Path, clock: FrozenClock) -> None:
    """tls_cert_file/tls_key_file (a leaf of a CA, with the CA in the file) are served; a
    client trusting that CA verifies the daemon; nothing is generated."""
    ca = make_ca("Configured Test CA")
    leaf = make_leaf(ca, dns=("nas.example",), ips=("127.0.0.1",), curve=ec.SECP384R1())
    cert_file, key_file = write_pair(base / "conf", leaf, chain=(ca,))
    ca_file = base / "conf" / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    async with started(base, clock, tls=True, tls_cert_file=cert_file, tls_key_file=key_file) as d:
        async with open_client(d.url, ssl=tls_context(cafile=ca_file)) as c:
            assert await c.call("core.ping") == "pong"
        assert await served_certificate(d.url) == leaf.cert.public_bytes(serialization.Encoding.DER)
    assert not (base / "state" / "tls-cert.pem").exists()
    assert not (base / "state" / "tls-key.pem").exists()


# -- sessions --------------------------------------------------------------------------------


@pytest.mark.settings(tls=True)
async def test_tls_sessions_are_secure_and_carry_the_end_point(daemon: InProcessDaemon) -> None:
    """auth.sessions says secure_transport for wss:// and the Unix socket; a TLS session's
    tls_end_point is the RFC 5929 tls-server-end-point hash of the served certificate,
    the Unix socket's None."""
    expected = rfc5929_end_point(await served_certificate(daemon.url))
    async with daemon.admin() as admin, daemon.root() as root:
        mine = [s for s in await admin.call("auth.sessions") if s["current"]]
        assert [s["secure_transport"] for s in mine] == [True]
        assert [
            s["secure_transport"] for s in await root.call("auth.sessions") if s["current"]
        ] == [True]
        by_transport = {c.session.transport: c.session for c in _connections(daemon)}
        assert by_transport["tcp"].tls_end_point == expected
        assert len(expected) == 32  # the generated certificate is signed with SHA-256
        assert by_transport["unix"].tls_end_point is None


async def test_configured_certificate_end_point_uses_its_hash(
    base: Path, clock: FrozenClock
) -> None:
    """A certificate signed with SHA-384 binds with SHA-384 (RFC 5929 §4.1)."""
    leaf = make_leaf(make_ca(), signature_hash=hashes.SHA384())
    cert_file, key_file = write_pair(base / "conf", leaf)
    async with started(base, clock, tls=True, tls_cert_file=cert_file, tls_key_file=key_file) as d:
        async with d.client(ssl=tls_context(insecure=True)):
            (connection,) = _connections(d)
            der = leaf.cert.public_bytes(serialization.Encoding.DER)
            assert connection.session.tls_end_point == hashlib.sha384(der).digest()
            assert connection.session.tls_end_point == rfc5929_end_point(der)


async def test_plaintext_sessions_are_not_secure(daemon: InProcessDaemon) -> None:
    """Over ws:// secure_transport is false and there is no end point."""
    async with daemon.admin() as admin:
        mine = [s for s in await admin.call("auth.sessions") if s["current"]]
        assert [s["secure_transport"] for s in mine] == [False]
        (connection,) = _connections(daemon)
        assert connection.session.tls_end_point is None


# -- the daemon process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[SubprocessDaemon]:
    """One daemon process with tls on, for the tests that only read from it."""
    folder = short_tempdir()
    daemon = start_subprocess_daemon(folder, extra_env=TLS_ENV)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_startup_prints_the_fingerprint_of_the_file(base: Path) -> None:
    """The daemon prints, after its wss:// URL, the certificate file and its SHA-256
    fingerprint, equal to openssl's and cryptography's; a restart prints the same one."""
    first = start_subprocess_daemon(base, extra_env=TLS_ENV)
    try:
        assert first.url.startswith("wss://")
        cert_file = base / "state" / "tls-cert.pem"
        assert first.tls_line is not None
        assert first.tls_line.startswith(f"TLS certificate {cert_file.resolve()} ")
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        mine = _colons(cert.fingerprint(hashes.SHA256()).hex().upper())
        assert first.fingerprint == _openssl_fingerprint(cert_file) == mine
        served = asyncio.run(served_certificate(first.url))
        assert _colons(_fingerprint_of(served)) == mine
    finally:
        assert first.stop() == 0
    again = start_subprocess_daemon(base, extra_env=TLS_ENV)
    try:
        assert again.fingerprint == first.fingerprint
    finally:
        assert again.stop() == 0


def test_plaintext_and_old_clients_fail_quietly(served: SubprocessDaemon) -> None:
    """Plaintext HTTP and WebSocket attempts and a TLS 1.1 client are cut off without an
    answer, and without a traceback or error in the daemon's log."""
    plain = served.url.replace("wss://", "ws://")

    async def attempts() -> None:
        for _ in range(3):
            assert (await raw_get(served.url, "/healthz"))[0] is None
            with pytest.raises(ConnectError):
                async with open_client(plain):
                    pass
            host, port = _address(served.url)
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                await asyncio.open_connection(
                    host, port, ssl=_client_context(ssl.TLSVersion.TLSv1_1)
                )
        async with open_client(served.url, ssl=tls_context(insecure=True)) as c:
            assert await c.call("core.ping") == "pong"

    asyncio.run(attempts())
    log = (served.base / "daemon.log").read_text()
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if " ERROR " in line or " WARNING " in line] == []


def _run_daemon(base: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the daemon expecting it to fail at start-up (within the timeout)."""
    command = [
        *daemon_command(),
        "--port",
        "0",
        "--state-dir",
        str(base / "state"),
        "--runtime-dir",
        str(base / "run"),
    ]
    environ = {**os.environ, "MIDDLEWARED_2FA_ADMIN_PASSWORD": ADMIN_PASSWORD, **TLS_ENV, **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=environ)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("key garbage", "TLS key file {key} holds no valid PEM private key"),
        ("key of another certificate", "TLS key file {key} does not match the certificate {cert}"),
        ("key missing", "cannot read the TLS key file {key}: No such file or directory"),
        ("key not configured", "tls_cert_file is set without tls_key_file: set both, or neither"),
    ],
)
def test_unusable_key_is_one_clear_startup_error(base: Path, case: str, message: str) -> None:
    """A bad, missing, mismatched or missing-from-the-settings key stops the start: exit
    status 2, one line naming the file, no traceback, nothing left listening."""
    ca = make_ca()
    cert_file, key_file = write_pair(base / "conf", make_leaf(ca))
    env = {"MIDDLEWARED_2FA_TLS_CERT_FILE": str(cert_file)}
    if case != "key not configured":
        env["MIDDLEWARED_2FA_TLS_KEY_FILE"] = str(key_file)
    if case == "key garbage":
        key_file.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    elif case == "key of another certificate":
        key_file.write_bytes(make_leaf(ca).key_pem)
    elif case == "key missing":
        key_file.unlink()
    result = _run_daemon(base, env)
    assert result.returncode == 2, result
    expected = message.format(cert=cert_file, key=key_file)
    assert result.stderr.strip().splitlines()[-1].startswith("middlewared-2fa: "), result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stdout
    assert not (base / "run" / "middlewared.sock").exists()


# -- midclt2fa -------------------------------------------------------------------------------


def _midclt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDCLT2FA_")}
    return subprocess.run(
        [midclt_path(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_midclt2fa_over_wss(served: SubprocessDaemon) -> None:
    """`midclt2fa -u wss://... --insecure ping` and `--cafile CERT` work; without either
    the self-signed certificate is refused with a message saying what to do; ws:// to
    the TLS port says the daemon speaks wss:// only."""
    cert_file = served.base / "state" / "tls-cert.pem"
    for trust in (["--insecure"], ["--cafile", str(cert_file)]):
        done = _midclt("-u", served.url, *trust, "ping")
        assert (done.returncode, done.stdout, done.stderr) == (0, "pong\n", ""), done
    done = _midclt(
        "-u", served.url, "-U", "admin", "-P", ADMIN_PASSWORD, "--insecure", "call", "auth.me"
    )
    assert done.returncode == 0 and '"pw_name": "admin"' in done.stdout, done

    done = _midclt("-u", served.url, "ping")
    assert done.returncode == 1
    assert done.stderr == (
        f"midclt2fa: cannot connect to {served.url}: the daemon's TLS certificate is not "
        "trusted (self-signed certificate); give its certificate with --cafile FILE, or "
        "skip the check with --insecure\n"
    )
    plain = served.url.replace("wss://", "ws://")
    done = _midclt("-u", plain, "ping")
    assert done.returncode == 1
    assert "(with tls = true the daemon speaks wss:// only)" in done.stderr
    done = _midclt("-u", plain, "--insecure", "ping")
    assert (done.returncode, done.stderr) == (
        1,
        "midclt2fa: --cafile and --insecure apply to wss:// URIs only\n",
    )
    done = _midclt("-u", served.url, "--cafile", str(served.base / "nothing.pem"), "ping")
    assert done.returncode == 1 and "cannot read --cafile" in done.stderr


@contextlib.asynccontextmanager
async def man_in_the_middle(url: str, folder: Path) -> AsyncIterator[str]:
    """A TLS proxy to the daemon at ``url`` with a certificate of its own (as an attacker
    with a self-signed certificate would run): it decrypts, relays every byte both ways
    and re-encrypts. Yields its own ``wss://`` URL."""
    cert_file, key_file = write_pair(folder / "mitm", make_leaf(make_ca("Attacker CA")))
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert_file, key_file)
    host, port = _address(url)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        daemon_r, daemon_w = await asyncio.open_connection(
            host, port, ssl=tls_context(insecure=True)
        )
        await asyncio.gather(pipe(client_r, daemon_w), pipe(daemon_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=served)
    try:
        yield f"wss://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/current"
    finally:
        server.close()


async def test_midclt2fa_api_key_scram_is_bound_to_the_certificate(
    served: SubprocessDaemon, tmp_path: Path
) -> None:
    """`midclt2fa -U USER -K KEY` over wss:// logs in with SCRAM bound to the daemon's
    certificate (RFC 5929 tls-server-end-point). Through a man in the middle that the user
    let in with --insecure, the same SCRAM login is AUTH_ERR (the binding names the
    attacker's certificate) and the key is still unknown to the attacker; PLAIN through
    the same proxy logs in: the key itself crossed the attacker's hands."""
    async with open_client(served.unix_uri) as root:
        await root.call("user.create", {"username": "mitm-victim", "password": "pw-victim"})
        made = await root.call("api_key.create", {"name": "nightly", "username": "mitm-victim"})
    key_file = tmp_path / "victim.key"
    key_file.write_text(made["key"] + "\n")
    cert_file = served.base / "state" / "tls-cert.pem"
    login = ("-U", "mitm-victim", "-K", str(key_file))

    done = await asyncio.to_thread(
        _midclt, "-u", served.url, "--cafile", str(cert_file), *login, "call", "auth.me"
    )
    assert done.returncode == 0 and json.loads(done.stdout)["credentials"] == "API_KEY", done

    async with man_in_the_middle(served.url, tmp_path) as proxy:
        done = await asyncio.to_thread(
            _midclt, "-u", proxy, "--cafile", str(cert_file), *login, "ping"
        )
        assert done.returncode == 1 and "not trusted" in done.stderr, done  # what it prevents
        done = await asyncio.to_thread(_midclt, "-u", proxy, "--insecure", *login, "ping")
        assert (done.returncode, done.stderr) == (
            1,
            "midclt2fa: login failed: wrong username or API key\n",
        ), done
        plain = ("--key-mechanism", "PLAIN")
        done = await asyncio.to_thread(_midclt, "-u", proxy, "--insecure", *login, *plain, "ping")
        assert (done.returncode, done.stdout) == (0, "pong\n"), done

    async with open_client(served.unix_uri) as root:
        entries = await root.call(
            "audit.query",
            {
                "query-filters": [["username", "=", "mitm-victim"]],
                "query-options": {"order_by": ["message_timestamp"]},
            },
        )
    assert [(e["success"], e["event_data"]["description"]) for e in entries] == [
        (True, f"API key login (key {made['id']}, SCRAM with channel binding)"),
        (False, "wrong SCRAM proof"),
        (True, f"API key login (key {made['id']}, API_KEY_PLAIN)"),
    ], entries


def _ed25519_pair(folder: Path) -> tuple[Path, Path]:
    """A self-signed Ed25519 certificate for 127.0.0.1: RFC 5929 defines no
    tls-server-end-point hash for it, so SCRAM cannot be bound to it."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, None)
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "ed25519.crt", folder / "ed25519.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def test_midclt2fa_refuses_unbound_scram_with_insecure(base: Path) -> None:
    """Attack helper: with an Ed25519 certificate there is no channel binding, and
    midclt2fa --insecure fell back to unbound SCRAM, so a proxy with a certificate of its
    own got the logged-in session. Without a binding, --insecure is refused before any
    SCRAM message; with the certificate trusted (--cafile) the login works."""
    cert_file, key_file = _ed25519_pair(base / "tls")
    env = {
        **TLS_ENV,
        "MIDDLEWARED_2FA_TLS_CERT_FILE": str(cert_file),
        "MIDDLEWARED_2FA_TLS_KEY_FILE": str(key_file),
    }
    daemon = start_subprocess_daemon(base, extra_env=env)
    try:

        async def make_key() -> str:
            async with open_client(daemon.unix_uri) as root:
                await root.call("user.create", {"username": "edna", "password": "pw-edna"})
                made = await root.call("api_key.create", {"name": "n", "username": "edna"})
            return str(made["key"])

        key_file = base / "edna.key"
        key_file.write_text(asyncio.run(make_key()))
        login = ("-U", "edna", "-K", str(key_file))
        done = _midclt("-u", daemon.url, "--insecure", *login, "ping")
        assert (done.returncode, done.stdout, done.stderr) == (
            1,
            "",
            "midclt2fa: login refused: the daemon's TLS certificate allows no channel "
            "binding (RFC 5929: e.g. an Ed25519 key), and with --insecure nothing else "
            "shows that this is the daemon; trust its certificate with --cafile FILE "
            "instead\n",
        ), done
        done = _midclt("-u", daemon.url, "--cafile", str(cert_file), *login, "ping")
        assert (done.returncode, done.stdout, done.stderr) == (0, "pong\n", ""), done
    finally:
        daemon.stop()


def test_midclt2fa_wss_to_a_plaintext_daemon(base: Path) -> None:
    """wss:// to a daemon without TLS fails saying the TLS handshake failed."""
    daemon = start_subprocess_daemon(base)
    try:
        url = daemon.url.replace("ws://", "wss://")
        done = _midclt("-u", url, "--insecure", "ping")
        assert done.returncode == 1
        assert "the TLS handshake failed" in done.stderr and "tls = true" in done.stderr, done
    finally:
        daemon.stop()


# -- the web UI in chromium ------------------------------------------------------------------


def _browser_unavailable() -> None:
    reason = chromium_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.slow
def test_web_ui_over_https_in_chromium(served: SubprocessDaemon) -> None:
    """Chromium that trusts exactly the daemon's key (its SPKI hash in
    --ignore-certificate-errors-spki-list) opens https://.../ui/, logs in as admin over
    wss:// and gets a secure session and HSTS; the same chromium trusting another key
    refuses the page."""
    _browser_unavailable()
    from playwright.sync_api import Error, expect, sync_playwright

    cert_file = served.base / "state" / "tls-cert.pem"
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    ui = served.url.replace("wss://", "https://").removesuffix("/api/current") + "/ui/"
    other = ec.generate_private_key(ec.SECP256R1()).public_key()

    def launch(playwright: Any, spki: str) -> Any:
        return playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"],
        )

    with sync_playwright() as playwright:
        browser = launch(playwright, spki_sha256_base64(cert.public_key()))
        pages = Pages(browser)
        try:
            page = pages.new()
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            response = page.goto(ui)
            assert response is not None and response.status == 200
            assert response.headers["strict-transport-security"] == HSTS
            assert page.evaluate("[location.protocol, window.isSecureContext]") == ["https:", True]
            expect(page.get_by_role("heading", name="Log In")).to_be_visible()
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Log In").click()
            expect(
                page.get_by_role("heading", name="Two-Factor Authentication", level=1)
            ).to_be_visible()
            assert sockets and all(url == served.url for url in sockets), sockets
            sessions = _midclt("-u", served.unix_uri, "call", "auth.sessions")
            assert sessions.returncode == 0, sessions
            assert '"secure_transport": false' not in sessions.stdout
            assert '"username": "admin"' in sessions.stdout
        finally:
            pages.close()
            browser.close()

        browser = launch(playwright, spki_sha256_base64(other))
        try:
            page = browser.new_page()
            with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                page.goto(ui)
        finally:
            browser.close()


def test_midclt2fa_names_a_certificate_for_another_address(base: Path) -> None:
    """New-user helper: reaching the daemon by an address its certificate does not name
    said "not trusted; give --cafile", although --cafile was given. It now says the
    certificate is not for this address, and which names the generated one holds."""
    daemon = start_subprocess_daemon(base, extra_env={**TLS_ENV, "MIDDLEWARED_2FA_HOST": "0.0.0.0"})
    try:
        port = urlsplit(daemon.url).port
        url = f"wss://127.0.0.2:{port}/api/current"
        cert_file = base / "state" / "tls-cert.pem"
        done = _midclt("-u", url, "--cafile", str(cert_file), "ping")
        assert (done.returncode, done.stdout) == (1, ""), done
        assert done.stderr.startswith(
            f"midclt2fa: cannot connect to {url}: the daemon's TLS certificate is not for "
            "this address (IP address mismatch"
        ), done.stderr
        assert "connect by a name or address the certificate holds" in done.stderr
        assert "--cafile FILE" not in done.stderr
        local = _midclt(
            "-u", f"wss://127.0.0.1:{port}/api/current", "--cafile", str(cert_file), "ping"
        )
        assert (local.returncode, local.stdout) == (0, "pong\n"), local
    finally:
        daemon.stop()
