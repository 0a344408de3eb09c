"""The built-in administrator: created on the first start, with the configured password
or a generated one written once to ``<state_dir>/initial-admin-password`` (mode 0600,
API.md §1, §4)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from middlewared_2fa.crypto import hash_password
from middlewared_2fa.log import redact

if TYPE_CHECKING:
    from middlewared_2fa.middleware import Middleware

logger = logging.getLogger(__name__)

#: Name of the file in the state directory that holds a generated first password.
INITIAL_PASSWORD_FILE = "initial-admin-password"


class UserSettings(BaseModel):
    """Settings of the ``user`` plugin (read like every setting: flags, environment
    ``MIDDLEWARED_2FA_*``, TOML file, API.md §1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admin_password: str | None = Field(None, description="password of admin on first start")


def initial_password_path(middleware: Middleware) -> Path:
    """Where a generated admin password is written once (mode 0600)."""
    return middleware.settings.state_dir / INITIAL_PASSWORD_FILE


async def bootstrap_admin(middleware: Middleware) -> None:
    """Create the built-in ``admin`` (FULL_ADMIN) when there is no user at all.

    The password is the ``admin_password`` setting; when it is unset or empty one is
    generated (``secrets.token_urlsafe(18)``, 144 bits) and written to
    :func:`initial_password_path`.
    """
    repos = middleware.repos
    if await repos.users.count() > 0:
        return
    settings = middleware.settings_of(UserSettings)
    password = settings.admin_password or None  # an empty setting means "generate"
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(18)
    redact(password)
    password_hash = await asyncio.to_thread(hash_password, password)
    await repos.users.create(
        {
            "username": "admin",
            "full_name": "Administrator",
            "password_hash": password_hash,
            "roles": ["FULL_ADMIN"],
            "builtin": True,
        }
    )
    if generated:
        path = initial_password_path(middleware)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        logger.warning("created user 'admin'; its initial password is in %s", path.resolve())
    else:
        logger.info("created user 'admin' with the configured password")
