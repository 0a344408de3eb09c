"""``scripts/run`` on a machine where its virtual environment does not exist yet (README's
first command): the first start says what it does in two lines, then the daemon's own log,
with neither pip's notes about this machine's package index nor setuptools' "Editable
installation" warning block in between."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.daemon import short_tempdir

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_first_start_prints_no_installer_noise() -> None:
    base = short_tempdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDDLEWARED_2FA_")}
    env["MIDDLEWARED_2FA_VENV"] = str(base / "venv")
    command = [
        "bash", str(ROOT / "scripts" / "run"), "--port", "0",
        "--state-dir", str(base / "state"), "--runtime-dir", str(base / "run"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stderr, selectors.EVENT_READ)
        # Creating the environment and installing into it from the registry: minutes on a
        # slow machine, never a timing assertion.
        while not any(" listening on " in line for line in lines):
            assert selector.select(timeout=900), lines
            line = process.stderr.readline()
            assert line, f"scripts/run ended early: {lines}"
            lines.append(line.rstrip("\n"))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        process.stderr.close()
        shutil.rmtree(base, ignore_errors=True)
    assert lines[:2] == [
        f"creating virtual environment in {base / 'venv'}",
        f"installing middlewared-2fa into {base / 'venv'}",
    ], lines
    rest = lines[2:]
    # From here on every line is the daemon's log: "<date> <time> LEVEL logger: message".
    assert all(" middlewared_2fa" in line for line in rest), rest
    assert not [line for line in lines if "Editable installation" in line or "!!" in line]
    assert not [line for line in lines if line.startswith("WARNING: ")]
