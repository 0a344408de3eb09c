"""Offline seeding of a state folder through the daemon's own code (before it starts).

The state is created exactly as the daemon creates it (``Middleware.setup``: migrations,
key file, key check, the built-in ``admin``), then users are added through the
repositories (``UserRepository.create`` / ``set_totp``) with secrets encrypted by
``Middleware.encrypt`` for the TOTP purpose, as ``user.create`` and
``user.renew_2fa_secret`` do.

Two shortcuts keep seeding to seconds, both documented in bench/README.md:

- every seeded user shares one argon2id hash computed once with the cheapest parameters
  (t=1, m=8 KiB, p=1); ``verify_password`` reads the parameters from the hash, so the
  untimed password step before the timed OTP step costs microseconds instead of the
  deliberate ~50 ms of the real parameters;
- the seeding connection runs with ``PRAGMA synchronous=OFF`` (no fsync per user). The
  daemon opens the file later with its own settings (``synchronous=FULL``).
"""

from __future__ import annotations

import asyncio
import secrets as _secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from middlewared_2fa.config import Settings
from middlewared_2fa.middleware import Middleware

ADMIN_PASSWORD = "bench-admin-password"
#: A FULL_ADMIN user with the cheap hash: logs the benchmark connections in quickly.
BENCH_ADMIN = "benchadmin"
BENCH_PASSWORD = "bench-password"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
#: Associated data of a stored TOTP seed (the auth.twofactor plugin's SECRET_PURPOSE).
TOTP_PURPOSE = b"totp-secret"

#: The base32 alphabet of RFC 4648 (what ``user.renew_2fa_secret`` draws from).
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True, slots=True)
class SeededUser:
    """A seeded user and its plaintext TOTP seed (None without 2FA)."""

    username: str
    secret: str | None


def user_name(i: int) -> str:
    """Name of the i-th seeded user (``u000001``...)."""
    return f"u{i:06d}"


async def _seed(
    state_dir: Path,
    runtime_dir: Path,
    users: int,
    with_secrets: bool,
    twofactor: bool,
    given: Sequence[str] | None,
    password_hash: str | None,
) -> list[SeededUser]:
    settings = Settings.model_validate(
        {"state_dir": state_dir, "runtime_dir": runtime_dir, "admin_password": ADMIN_PASSWORD}
    )
    mw = Middleware(settings)
    await mw.setup()
    try:
        await mw.db.conn.execute("PRAGMA synchronous=OFF")
        cheap = CHEAP_HASHER.hash(BENCH_PASSWORD)
        repos = mw.repos.users
        await repos.create(
            {"username": BENCH_ADMIN, "password_hash": cheap, "roles": ["FULL_ADMIN"]}
        )
        seeded: list[SeededUser] = []
        user_hash = password_hash or cheap
        for i in range(1, users + 1):
            name = user_name(i)
            user_id = await repos.create(
                {"username": name, "full_name": f"Bench user {i}", "password_hash": user_hash}
            )
            secret = None
            if given is not None:
                secret = given[i - 1]
            elif with_secrets:
                secret = "".join(_secrets.choice(_B32) for _ in range(32))
            if secret is not None:
                await repos.set_totp(user_id, mw.encrypt(secret, TOTP_PURPOSE), 30, 6)
            seeded.append(SeededUser(name, secret))
        if twofactor:
            # The auth.twofactor plugin's one row (as auth.twofactor.update {enabled: true}).
            await mw.db.write("UPDATE twofactor_config SET enabled = 1, window = 0 WHERE id = 1")
    finally:
        await mw.db.close()
    return seeded


def seed_state(
    base: Path,
    *,
    users: int,
    with_secrets: bool = False,
    twofactor: bool = False,
    totp_secrets: Sequence[str] | None = None,
    password_hash: str | None = None,
) -> list[SeededUser]:
    """Create ``base/state`` with ``admin``, ``benchadmin`` and ``users`` users.

    Args:
        base: Folder that will hold ``state/`` and ``run/``.
        users: Number of ordinary users (``u000001``...), no roles.
        with_secrets: Give each a fresh random TOTP seed (6 digits, 30 s).
        twofactor: Enable global 2FA (window 0), so password logins of users with a
            secret answer OTP_REQUIRED.
        totp_secrets: The users' TOTP seeds (base32, one per user, in order) instead of
            random ones: the same users and seeds as another server (the ``peer`` section).
        password_hash: The ordinary users' shared hash instead of the cheap one (the
            ``storm`` section: one hash at the daemon's real parameters); ``benchadmin``
            keeps the cheap one.

    Returns:
        The seeded ordinary users with their plaintext seeds.
    """
    if totp_secrets is not None and len(totp_secrets) != users:
        raise ValueError(f"{len(totp_secrets)} TOTP seeds for {users} users")
    return asyncio.run(
        _seed(
            base / "state",
            base / "run",
            users,
            with_secrets,
            twofactor,
            totp_secrets,
            password_hash,
        )
    )


#: Audit rows seeded by :func:`seed_audit`: one every this many seconds, ending now.
AUDIT_SPACING = 0.1
#: The one seeded audit row (the middle one) of this username; the others belong to
#: ``u000001``...``u000009``: a username filter that matches one row at every size.
AUDIT_RARE_USER = "rare-user"


def seed_audit(base: Path, rows: int) -> tuple[float, float]:
    """Append ``rows`` audit entries to the seeded state in ``base`` (after
    :func:`seed_state`), in the daemon's own row format (``AuditRepository.append``'s
    columns and ``Middleware.audit``'s ``event_data``), in one transaction with
    ``PRAGMA synchronous=OFF``. Timestamps are spaced :data:`AUDIT_SPACING` seconds
    apart and end now, well inside the default retention (90 days for 10^6 rows).

    Returns:
        The first and last timestamps.
    """
    import json
    import sqlite3
    import time
    import uuid

    from middlewared_2fa.datastore.repositories import _AUDIT_SELECT

    db = sqlite3.connect(base / "state" / "middlewared-2fa.db")
    first = time.time() - rows * AUDIT_SPACING
    data = json.dumps({"description": "Logged in", "credentials": "LOGIN_PASSWORD"})

    def entries() -> Any:
        for i in range(rows):
            user = AUDIT_RARE_USER if i == rows // 2 else user_name(1 + i % 9)
            yield (
                str(uuid.uuid4()),
                first + i * AUDIT_SPACING,
                "AUTHENTICATION",
                user,
                "127.0.0.1",
                1,
                data,
                None,
            )

    try:
        db.execute("PRAGMA synchronous=OFF")
        with db:
            db.executemany(
                f"INSERT INTO audit ({_AUDIT_SELECT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", entries()
            )
    finally:
        db.close()
    return first, first + (rows - 1) * AUDIT_SPACING
