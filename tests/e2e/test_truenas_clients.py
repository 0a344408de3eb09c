"""Unmodified third-party TrueNAS clients against the daemon (API.md §3, §11): pytruenas
and aiotruenas from the package registry, in their own environment on Python >= 3.13
(tests/clients/requirements.txt, installed by scripts/test), each run as a separate
program, over ws:// on loopback and over wss:// with the generated certificate, which the
client checks (never an "insecure" switch).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from middlewared_2fa.cli.client import open_client, tls_context
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.daemon import SubprocessDaemon, subprocess_daemon
from tests.helpers.oath import secret_of

HERE = Path(__file__).resolve().parents[1] / "clients"
PYTHON = os.environ.get("MIDDLEWARED_2FA_CLIENTS_PYTHON", "")


@pytest.fixture(scope="module", autouse=True)
def clients_environment() -> None:
    """scripts/test makes the environment; without it these tests fail (never skip)."""
    assert PYTHON and Path(PYTHON).exists(), (
        "MIDDLEWARED_2FA_CLIENTS_PYTHON is not set or missing: run the tests through "
        "scripts/test, which installs tests/clients/requirements.txt into .venv-clients"
    )


@pytest.fixture(params=["ws", "wss"])
def process_daemon(request: pytest.FixtureRequest) -> Iterator[SubprocessDaemon]:
    env = {"MIDDLEWARED_2FA_NTP_TIMEOUT": "1"}
    if request.param == "wss":
        env["MIDDLEWARED_2FA_TLS"] = "true"
    with subprocess_daemon(extra_env=env) as daemon:
        assert daemon.url.startswith(f"{request.param}://")
        yield daemon


def _cert_file(daemon: SubprocessDaemon) -> str | None:
    """Over wss: the daemon's generated certificate (what the client is told to trust)."""
    if not daemon.url.startswith("wss://"):
        return None
    return str(daemon.base / "state" / "tls-cert.pem")


def _run(script: str, args: list[str], cafile: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if cafile is not None:
        # aiotruenas trusts the default store; this makes the daemon's certificate that store.
        env["SSL_CERT_FILE"] = cafile
    done = subprocess.run(
        [PYTHON, str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def pytruenas(daemon: SubprocessDaemon, credentials: str) -> dict[str, str]:
    cafile = _cert_file(daemon)
    return _run("pytruenas_login.py", [daemon.url, credentials, *([cafile] if cafile else [])])


def aiotruenas(daemon: SubprocessDaemon, key: str) -> dict[str, str]:
    return _run("aiotruenas_login.py", [daemon.url, key], cafile=_cert_file(daemon))


async def test_pytruenas_logs_in_with_an_api_key(process_daemon: SubprocessDaemon) -> None:
    """pytruenas's default path for a key is TrueNAS's auth.login_with_api_key."""
    async with open_client(process_daemon.unix_uri) as root:
        await root.call("user.create", {"username": "robot", "password": "pw-robot"})
        made = await root.call("api_key.create", {"name": "pytruenas", "username": "robot"})
    got = await asyncio.to_thread(pytruenas, process_daemon, made["key"])
    assert got == {"credentials": "API_KEY", "pw_name": "robot"}


async def test_pytruenas_logs_in_with_password_and_code(process_daemon: SubprocessDaemon) -> None:
    async with open_client(process_daemon.unix_uri) as admin:
        await admin.call("auth.twofactor.update", {"enabled": True, "window": 1})
        await admin.call("user.create", {"username": "human", "password": "pw-human"})
        secret = secret_of(await admin.call("user.renew_2fa_secret", "human"))
    code = pyotp.TOTP(secret).now()
    got = await asyncio.to_thread(pytruenas, process_daemon, f"human:pw-human\n{code}")
    assert got == {"credentials": "LOGIN_TWOFACTOR", "pw_name": "human"}


async def test_pytruenas_password_and_code_for_a_user_who_also_has_a_passkey(
    process_daemon: SubprocessDaemon,
) -> None:
    """A user with a passkey and a TOTP secret (API.md §12): the OTP_REQUIRED answer
    carries the passkey options, which the client does not know, and its password + code
    flow still logs in."""
    url = process_daemon.url
    scheme = "https" if url.startswith("wss://") else "http"
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    async with open_client(process_daemon.unix_uri) as root:
        await root.call("user.create", {"username": "both", "password": "pw-both"})
    async with open_client(url, ssl=_client_ssl(process_daemon)) as c:
        assert (await c.login("both", "pw-both"))["response_type"] == "SUCCESS"
        begun = await c.call("user.webauthn_register_begin", "both", {"name": "key"})
        response = SoftAuthenticator().register(
            begun["options"], origin=f"{scheme}://localhost:{port}"
        )
        await c.call("user.webauthn_register_finish", "both", response)
    async with open_client(process_daemon.unix_uri) as root:
        secret = secret_of(await root.call("user.renew_2fa_secret", "both"))
        await root.call("auth.twofactor.update", {"enabled": True, "window": 1})
    code = pyotp.TOTP(secret).now()
    got = await asyncio.to_thread(pytruenas, process_daemon, f"both:pw-both\n{code}")
    assert got == {"credentials": "LOGIN_TWOFACTOR", "pw_name": "both"}


def _client_ssl(daemon: SubprocessDaemon) -> ssl.SSLContext | None:
    cafile = _cert_file(daemon)
    return None if cafile is None else tls_context(cafile=Path(cafile))


async def test_aiotruenas_logs_in_with_an_api_key(process_daemon: SubprocessDaemon) -> None:
    """aiotruenas sends auth.login_with_api_key [KEY] to /api/current and wants ``true``."""
    async with open_client(process_daemon.unix_uri) as root:
        await root.call("user.create", {"username": "robot", "password": "pw-robot"})
        made = await root.call("api_key.create", {"name": "aiotruenas", "username": "robot"})
    got = await asyncio.to_thread(aiotruenas, process_daemon, made["key"])
    assert got == {"credentials": "API_KEY", "pw_name": "robot"}


async def test_aiotruenas_with_a_revoked_key_is_refused(process_daemon: SubprocessDaemon) -> None:
    """A deleted key fails aiotruenas's login (the client raises; nothing is printed)."""
    async with open_client(process_daemon.unix_uri) as root:
        await root.call("user.create", {"username": "robot", "password": "pw-robot"})
        made = await root.call("api_key.create", {"name": "gone", "username": "robot"})
        await root.call("api_key.delete", made["id"])
    with pytest.raises(AssertionError, match="TrueNASAuthenticationError|rejected"):
        await asyncio.to_thread(aiotruenas, process_daemon, made["key"])
