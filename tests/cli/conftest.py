"""Fixtures for driving ``midclt2fa`` as a separate process against the real daemon process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from middlewared_2fa.cli.client import open_client
from tests.cli.terminal import HANG_GUARD, Terminal
from tests.helpers.daemon import SubprocessDaemon, subprocess_daemon


def midclt_path() -> str:
    """The installed ``midclt2fa`` console script next to this interpreter."""
    script = shutil.which("midclt2fa", path=str(Path(sys.executable).parent))
    assert script is not None, "midclt2fa is not installed in this environment"
    return script


async def _enable_global_2fa(daemon: SubprocessDaemon) -> None:
    async with open_client(daemon.unix_uri) as root:
        entry = await root.call("auth.twofactor.update", {"enabled": True})
        assert entry["enabled"] is True, entry


@pytest.fixture(scope="module")
def served() -> Iterator[SubprocessDaemon]:
    """One daemon process per test module, global 2FA enabled. Tests use their own users."""
    # A short NTP timeout: enabling 2FA checks the clock, and a sandbox may have no network.
    with subprocess_daemon(extra_env={"MIDDLEWARED_2FA_NTP_TIMEOUT": "1"}) as daemon:
        asyncio.run(_enable_global_2fa(daemon))
        yield daemon


@dataclass
class Midclt:
    """Runs ``midclt2fa`` like a user's shell would, against :attr:`daemon`.

    The environment points ``$MIDDLEWARED_2FA_RUNTIME_DIR`` at the daemon's socket folder.
    Each run starts a new session without a controlling terminal, so no prompt can wait
    on the terminal pytest was started from.
    """

    daemon: SubprocessDaemon
    cwd: Path

    def env(self, **changes: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIDCLT2FA_")}
        env["MIDDLEWARED_2FA_RUNTIME_DIR"] = str(self.daemon.base / "run")
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def __call__(
        self,
        *args: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [midclt_path(), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=env if env is not None else self.env(),
            cwd=cwd or self.cwd,
            start_new_session=True,
            timeout=HANG_GUARD,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """Run, expect exit status 0 and an empty stderr; returns stdout."""
        done = self(*args, stdin=stdin)
        assert (done.returncode, done.stderr) == (0, ""), done
        return done.stdout

    def json(self, *args: str, stdin: str | None = None) -> object:
        """Run, expect success and exactly one line of JSON; returns it parsed."""
        out = self.ok(*args, stdin=stdin)
        assert out.endswith("\n") and out.count("\n") == 1, out
        return json.loads(out)

    def create_user(self, username: str, password: str, *, secret: bool) -> dict[str, object]:
        """``user.create`` as root over the Unix socket, then (optionally) a default secret."""
        entry = self.json(
            "call", "user.create", json.dumps({"username": username, "password": password})
        )
        assert isinstance(entry, dict)
        if secret:
            renewed = self.json("call", "user.renew_2fa_secret", username)
            assert isinstance(renewed, dict) and renewed["twofactor_auth_configured"] is True
        return entry

    def terminal(self, *args: str) -> Terminal:
        """``midclt2fa ARGS`` on a pseudo-terminal that is its controlling terminal."""
        return Terminal([midclt_path(), *args], env=self.env(), cwd=self.cwd)


@pytest.fixture
def midclt(served: SubprocessDaemon, tmp_path: Path) -> Midclt:
    return Midclt(served, tmp_path)
