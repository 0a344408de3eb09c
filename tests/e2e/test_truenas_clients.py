"""Unmodified third-party TrueNAS clients against the daemon (API.md §3, §11): pytruenas
from the package registry, in its own environment (tests/clients/requirements.txt,
installed by scripts/test), run as a separate program.

aiotruenas needs Python 3.13 or newer and this machine has 3.11 (docs/decisions.md); it is
not tested here.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from middlewared_2fa.cli.client import open_client
from tests.helpers.daemon import ADMIN_PASSWORD, SubprocessDaemon, subprocess_daemon
from tests.helpers.oath import secret_of

HERE = Path(__file__).resolve().parents[1] / "clients"
PYTHON = os.environ.get("MIDDLEWARED_2FA_CLIENTS_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not (PYTHON and Path(PYTHON).exists()),
    reason="the clients' environment (scripts/test makes .venv-clients) is missing",
)


@pytest.fixture
def process_daemon() -> Iterator[SubprocessDaemon]:
    with subprocess_daemon(extra_env={"MIDDLEWARED_2FA_NTP_TIMEOUT": "1"}) as daemon:
        yield daemon


def pytruenas(url: str, credentials: str) -> dict[str, str]:
    done = subprocess.run(
        [PYTHON, str(HERE / "pytruenas_login.py"), url, credentials],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


async def test_pytruenas_logs_in_with_an_api_key(process_daemon: SubprocessDaemon) -> None:
    """pytruenas's default path for a key is TrueNAS's auth.login_with_api_key."""
    async with open_client(process_daemon.unix_uri) as root:
        await root.call("user.create", {"username": "robot", "password": "pw-robot"})
        made = await root.call("api_key.create", {"name": "pytruenas", "username": "robot"})
    got = await asyncio.to_thread(pytruenas, process_daemon.url, made["key"])
    assert got == {"credentials": "API_KEY", "pw_name": "robot"}


async def test_pytruenas_logs_in_with_password_and_code(process_daemon: SubprocessDaemon) -> None:
    async with open_client(process_daemon.url) as admin:
        await admin.login("admin", ADMIN_PASSWORD)
        await admin.call("auth.twofactor.update", {"enabled": True, "window": 1})
        await admin.call("user.create", {"username": "human", "password": "pw-human"})
        secret = secret_of(await admin.call("user.renew_2fa_secret", "human"))
    code = pyotp.TOTP(secret).now()
    got = await asyncio.to_thread(pytruenas, process_daemon.url, f"human:pw-human\n{code}")
    assert got == {"credentials": "LOGIN_TWOFACTOR", "pw_name": "human"}
