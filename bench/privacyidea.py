"""The peer of the ``peer`` section: privacyIDEA 3.14, installed from PyPI into its own venv
and configured with its own tooling (``pi-manage``), nothing of it committed here.

``python -m bench.privacyidea`` prepares it ahead of a benchmark (the section does the same
when it is missing); ``python -m bench.privacyidea serve`` runs it in the foreground to
look at it. Everything lives in ``artifacts/privacyidea/`` (gitignored):

- ``venv/``: ``pip install privacyidea==3.14 gunicorn==…`` (stamp ``venv/.bench-stamp``:
  a rerun with the same requirements skips the install, several minutes the first time);
- ``instance/``: the configured server, made once (stamp ``instance/.bench-stamp``):
  ``pi.cfg`` (written here: SQLite database in this folder, ``PI_ENCFILE`` and the audit
  signing keys ``PI_AUDIT_KEY_*`` made by ``pi-manage setup create_enckey`` and
  ``create_audit_keys``, the tables by ``pi-manage setup create_tables``, the default audit
  module), an administrator (``pi-manage admin add``), an internal SQL resolver
  (``pi-manage config resolver create_internal``: a ``users_benchusers`` table in the same
  database) holding the users, a realm on it (``pi-manage config realm create``), and one
  TOTP token per user with a known seed (``pi-manage token import`` of a version-2 OATH CSV:
  user, resolver, realm, serial, hex seed, ``totp``, 6 digits, 30 s). No policy is set,
  so ``/validate/check`` with ``pass`` = the 6 digits (the token has no PIN) is what
  authenticates, and TOTP refuses a code of a time step at or before the last one used.

A benchmark never writes to ``instance/``: :func:`prepare_run` copies its database and
writes a ``pi.cfg`` next to the copy (same keys and settings), so every run starts from
the same state (no used time steps, an empty audit table) on the filesystem of the
daemon's state folder.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.seed import ADMIN_PASSWORD, user_name
from bench.sysinfo import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "artifacts" / "privacyidea"
VENV = HOME / "venv"
INSTANCE = HOME / "instance"

PRIVACYIDEA_VERSION = "3.14"
#: What goes into the venv (pinned, so that a rerun measures the same server).
REQUIREMENTS = (f"privacyidea=={PRIVACYIDEA_VERSION}", "gunicorn==27.0.1")
#: Users (and tokens) of the instance: enough that no user verifies twice in a time step
#: while the section runs (each server keeps its own replay state; see bench/README.md).
USERS = 4000
RESOLVER = "benchusers"
REALM = "benchrealm"
ADMIN = "admin"
#: The WSGI application, as gunicorn's application-factory syntax.
APP = "privacyidea.app:create_app(config_name='production', silent=True)"
DB_NAME = "privacyidea.sqlite"


def _log(message: str) -> None:
    print(f"[privacyidea {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _stamp_ok(stamp: Path, expected: dict[str, object]) -> bool:
    try:
        return bool(json.loads(stamp.read_text()) == expected)
    except (OSError, ValueError):
        return False


# -- the venv -----------------------------------------------------------------------------


def _venv_stamp() -> dict[str, object]:
    return {"requirements": list(REQUIREMENTS), "python": sys.version.split()[0]}


def ensure_venv() -> Path:
    """Install privacyIDEA and gunicorn into :data:`VENV` unless the stamp says it is done.

    Returns:
        The venv's ``bin`` folder.
    """
    stamp = VENV / ".bench-stamp"
    if _stamp_ok(stamp, _venv_stamp()):
        return VENV / "bin"
    if VENV.exists():
        shutil.rmtree(VENV)
    HOME.mkdir(parents=True, exist_ok=True)
    _log(f"creating {VENV} and installing {' '.join(REQUIREMENTS)} (a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    with open(HOME / "install.log", "w") as log:
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", *REQUIREMENTS],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stamp.write_text(json.dumps(_venv_stamp()))
    return VENV / "bin"


def versions() -> dict[str, str]:
    """Versions of what serves the peer (from the venv), for the report."""
    code = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d: m.version(d) for d in "
        "('privacyIDEA', 'gunicorn', 'Flask', 'Werkzeug', 'SQLAlchemy')}))"
    )
    out = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout))


# -- the configured instance --------------------------------------------------------------


def _render_cfg(settings: dict[str, str], folder: Path) -> str:
    """A ``pi.cfg`` (Python, read by Flask's ``from_pyfile``) for a database in ``folder``."""
    lines = [
        "# Written by bench/privacyidea.py (see bench/README.md). Everything not set here",
        "# is privacyIDEA's ProductionConfig default (e.g. the SQL audit module, INFO logs).",
        f"SQLALCHEMY_DATABASE_URI = {'sqlite:///' + str(folder / DB_NAME)!r}",
        f"SECRET_KEY = {settings['secret_key']!r}",
        f"PI_PEPPER = {settings['pepper']!r}",
        f"PI_ENCFILE = {str(INSTANCE / 'enckey')!r}",
        f"PI_AUDIT_KEY_PRIVATE = {str(INSTANCE / 'private.pem')!r}",
        f"PI_AUDIT_KEY_PUBLIC = {str(INSTANCE / 'public.pem')!r}",
        f"PI_LOGFILE = {str(folder / 'privacyidea.log')!r}",
        # Without them the server looks for /etc/privacyidea/uuid.txt and warns about the
        # base URL on every start; neither changes what /validate/check does.
        f"PI_NODE_UUID = {settings['node_uuid']!r}",
        "PI_BASE_URL = 'http://127.0.0.1'",
    ]
    return "\n".join(lines) + "\n"


def _instance_stamp() -> dict[str, object]:
    return {"requirements": list(REQUIREMENTS), "users": USERS, "realm": REALM}


def _pi_manage(bin_dir: Path, *args: str, log: Path) -> None:
    """``pi-manage ARGS`` on the instance's ``pi.cfg``; its output goes to ``log``."""
    env = dict(os.environ, PRIVACYIDEA_CONFIGFILE=str(INSTANCE / "pi.cfg"))
    with open(log, "a") as out:
        out.write(f"$ pi-manage {' '.join(args)}\n")
        out.flush()
        subprocess.run(
            [str(bin_dir / "pi-manage"), *args],
            check=True,
            cwd=INSTANCE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _b32_seed() -> str:
    """A TOTP seed as the daemon makes them: 32 base32 characters (160 bits)."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def ensure_instance() -> list[list[str]]:
    """Create :data:`INSTANCE` unless its stamp says it is done.

    Returns:
        ``[[username, base32 seed], ...]``, :data:`USERS` of them, in order.
    """
    bin_dir = ensure_venv()
    stamp = INSTANCE / ".bench-stamp"
    users_file = INSTANCE / "users.json"
    if _stamp_ok(stamp, _instance_stamp()):
        users: list[list[str]] = json.loads(users_file.read_text())
        return users
    if INSTANCE.exists():
        shutil.rmtree(INSTANCE)
    INSTANCE.mkdir(parents=True)
    log = INSTANCE / "setup.log"
    settings = {
        "secret_key": secrets.token_hex(32),
        "pepper": secrets.token_hex(16),
        "node_uuid": str(uuid.uuid4()),
    }
    (INSTANCE / "settings.json").write_text(json.dumps(settings))
    (INSTANCE / "pi.cfg").write_text(_render_cfg(settings, INSTANCE))
    _log(f"configuring {INSTANCE} with pi-manage")
    _pi_manage(bin_dir, "setup", "create_enckey", log=log)
    _pi_manage(bin_dir, "setup", "create_audit_keys", log=log)
    _pi_manage(bin_dir, "setup", "create_tables", log=log)
    _pi_manage(bin_dir, "admin", "add", ADMIN, "-p", ADMIN_PASSWORD, log=log)
    _pi_manage(bin_dir, "config", "resolver", "create_internal", RESOLVER, log=log)
    _pi_manage(bin_dir, "config", "realm", "create", REALM, RESOLVER, log=log)
    users = [[user_name(i), _b32_seed()] for i in range(1, USERS + 1)]
    # The internal resolver's table is the user store (as an organisation's user database
    # would be): privacyIDEA only reads it. The users have no password: only tokens matter.
    conn = sqlite3.connect(INSTANCE / DB_NAME)
    try:
        with conn:
            conn.executemany(
                f"INSERT INTO users_{RESOLVER} (username, givenname, surname) VALUES (?, ?, ?)",
                [(name, "Bench", f"user {i}") for i, (name, _) in enumerate(users, 1)],
            )
    finally:
        conn.close()
    # OATH CSV, version 2 (privacyidea/lib/importotp.py parseOATHcsv): the first three
    # columns name the owner; then serial, seed in hex, type, digits, time step.
    csv = ["# version: 2"] + [
        f"{name}, {RESOLVER}, {REALM}, BENCH{i:06d}, {base64.b32decode(seed).hex()}, totp, 6, 30"
        for i, (name, seed) in enumerate(users, 1)
    ]
    (INSTANCE / "tokens.csv").write_text("\n".join(csv) + "\n")
    _log(f"enrolling {USERS} TOTP tokens with pi-manage token import (minutes)")
    _pi_manage(bin_dir, "token", "import", "tokens.csv", log=log)
    users_file.write_text(json.dumps(users))
    stamp.write_text(json.dumps(_instance_stamp()))
    _log("instance ready")
    return users


def prepare_run(folder: Path) -> Path:
    """A copy of the instance's database in ``folder`` and a ``pi.cfg`` for it.

    Returns:
        The ``pi.cfg`` path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTANCE / DB_NAME, folder / DB_NAME)
    settings = json.loads((INSTANCE / "settings.json").read_text())
    cfg = folder / "pi.cfg"
    cfg.write_text(_render_cfg(settings, folder))
    return cfg


# -- running it ---------------------------------------------------------------------------


@dataclass
class Peer:
    """A running gunicorn (master and workers) serving privacyIDEA."""

    server: procs.Server
    host: str
    port: int
    workers: list[int]

    @property
    def pids(self) -> list[int]:
        return [self.server.pid, *self.workers]

    def stop(self) -> None:
        self.server.stop()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(cfg: Path, *, cpu: int | None, workers: int | None = None, timeout: float = 180) -> Peer:
    """gunicorn with ``workers`` sync workers (default: one per core) on 127.0.0.1.

    Pinning ``cpu`` applies to the master before it forks, so every worker inherits it.
    Returns once ``/healthz/livez`` answers and every worker has finished loading the
    application (its CPU time stops moving).
    """
    count = workers or os.cpu_count() or 1
    port = _free_port()
    folder = cfg.parent
    cmd = [
        str(VENV / "bin" / "gunicorn"),
        "--workers",
        str(count),
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        "--error-logfile",
        str(folder / "gunicorn.log"),
        APP,
    ]
    env = dict(os.environ, PRIVACYIDEA_CONFIGFILE=str(cfg))
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=folder,
        preexec_fn=procs.preexec(cpu),
    )
    peer = Peer(procs.Server(process, f"http://127.0.0.1:{port}", 0.0), "127.0.0.1", port, [])
    try:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{port}/healthz/livez"
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start (see {folder / 'gunicorn.log'})")
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        # Sync workers load the application after the fork, each on its own: wait until
        # all are there and idle, so that none is still importing when the timing starts.
        last = -1.0
        while time.monotonic() < deadline:
            peer.workers = _children(process.pid)
            busy = sum(cpu_seconds(p) for p in peer.workers)
            if len(peer.workers) == count and busy == last:
                break
            last = busy
            time.sleep(0.5)
        else:
            raise RuntimeError("gunicorn workers did not settle")
    except BaseException:
        peer.stop()
        raise
    peer.server.started_in = time.perf_counter() - t0
    return peer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.privacyidea",
        description="Install and configure the privacyIDEA peer of `scripts/bench --only peer` "
        "(artifacts/privacyidea/), or serve a copy of it in the foreground.",
    )
    parser.add_argument("command", nargs="?", choices=("setup", "serve"), default="setup")
    parser.add_argument("--reset", action="store_true", help="rebuild the instance (not the venv)")
    args = parser.parse_args(argv)
    if args.reset and INSTANCE.exists():
        shutil.rmtree(INSTANCE)
    users = ensure_instance()
    print(f"privacyIDEA instance: {INSTANCE} ({len(users)} users, realm {REALM})")
    print(f"versions: {versions()}")
    if args.command == "serve":
        folder = HOME / "serve"
        peer = start(prepare_run(folder), cpu=None)
        print(f"serving {peer.server.url} (state in {folder}); Ctrl-C stops")
        try:
            peer.server.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            peer.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
