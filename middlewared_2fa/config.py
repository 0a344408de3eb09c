"""Daemon settings: command-line flags > environment ``MIDDLEWARED_2FA_*`` > TOML file >
defaults (API.md §1)."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa.errors import StartupError

ENV_PREFIX = "MIDDLEWARED_2FA_"


class Settings(BaseModel):
    """All settings of the daemon. Times are in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="TCP listen address")
    port: int = Field(8642, ge=0, le=65535, description="TCP port; 0 picks a free one")
    state_dir: Path = Field(Path("state"), description="SQLite file and key file")
    runtime_dir: Path = Field(Path("run"), description="Unix socket middlewared.sock")
    plugins_dirs: list[Path] = Field(
        default_factory=list, description="extra plugin folders, loaded after plugins/"
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed besides the daemon's own"
    )
    admin_password: str | None = Field(None, description="password of admin on first start")
    rate_limit_calls: int = Field(20, ge=1, description="unauthenticated calls per period")
    rate_limit_period: float = Field(60.0, gt=0, description="rate limit period (s)")
    auth_failure_delay: float = Field(1.0, ge=0, le=30, description="delay per failure (s)")
    auth_throttle_after: int = Field(
        5, ge=1, le=100, description="consecutive failures of an account before a cool-down"
    )
    auth_throttle_max: float = Field(
        900.0, ge=1, le=86400, description="longest account cool-down (s)"
    )
    auth_lock_after: int = Field(
        100, ge=1, le=100, description="consecutive failures that lock an account"
    )
    password_verifications: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=64,
        description="password hashes verified at once; more wait in a bounded queue",
    )
    time_sync_max_offset: float = Field(30.0, gt=0, description="largest tolerated offset (s)")
    time_sync_interval: float = Field(900.0, gt=0, description="period of the NTP check (s)")
    ntp_timeout: float = Field(5.0, gt=0, le=60, description="per-server NTP timeout (s)")
    idle_timeout: float = Field(
        300.0, gt=0, description="an unauthenticated connection idle this long is closed (s)"
    )
    max_connections: int = Field(1000, ge=1, description="open connections in all (§1 caps)")
    max_connections_per_address: int = Field(
        50, ge=1, description="open connections from one client address or Unix uid (§1 caps)"
    )
    oath_users_file: Path | None = Field(None, description="OATH users file for pam_oath")
    pam_snippet_file: Path | None = Field(None, description="PAM snippet for sshd")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_file: Path | None = Field(None, description="also log to this file")
    debug: bool = Field(False, description="send tracebacks in data.trace")

    @model_validator(mode="after")
    def _lock_after_throttle(self) -> Settings:
        # API.md §3: auth_lock_after is auth_throttle_after..100.
        if self.auth_lock_after < self.auth_throttle_after:
            raise ValueError(
                f"auth_lock_after must be at least auth_throttle_after ({self.auth_throttle_after})"
            )
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @property
    def database_path(self) -> Path:
        """The SQLite file."""
        return self.state_dir / "middlewared-2fa.db"

    @property
    def key_path(self) -> Path:
        """The AES key file for secrets at rest."""
        return self.state_dir / "secret.key"

    @property
    def socket_path(self) -> Path:
        """The Unix socket."""
        return self.runtime_dir / "middlewared.sock"

    @property
    def initial_password_path(self) -> Path:
        """Where a generated admin password is written once (mode 0600)."""
        return self.state_dir / "initial-admin-password"

    @property
    def oath_users_path(self) -> Path:
        """OATH users file (API.md §8)."""
        return self.oath_users_file or self.state_dir / "users.oath"

    @property
    def pam_snippet_path(self) -> Path:
        """PAM snippet (API.md §8)."""
        return self.pam_snippet_file or self.state_dir / "pam_oath.conf"


_LIST_KEYS = {"plugins_dirs", "allowed_origins"}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in Settings.model_fields:
        raw = environ.get(ENV_PREFIX + key.upper())
        if raw is None:
            continue
        if key in _LIST_KEYS:
            raw = raw.strip()
            values[key] = (
                json.loads(raw)
                if raw.startswith("[")
                else [p for p in raw.split(os.pathsep if key == "plugins_dirs" else ",") if p]
            )
        elif key == "debug":
            values[key] = raw.strip().lower() in {"1", "true", "yes", "on"}
        else:
            values[key] = raw
    return values


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the TOML file, the environment and ``overrides`` (flags) into Settings.

    Raises:
        StartupError: unreadable TOML, an unknown key or an invalid value; the
            message names the key.
    """
    merged: dict[str, Any] = {}
    if config_file is not None:
        try:
            merged.update(tomllib.loads(config_file.read_text()))
        except OSError as exc:
            raise StartupError(f"cannot read {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise StartupError(f"{config_file}: {exc}") from None
    try:
        merged.update(_from_env(os.environ if environ is None else environ))
    except json.JSONDecodeError as exc:
        raise StartupError(f"environment: a list setting is not valid JSON: {exc}") from None
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(merged)
    except PydanticValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise StartupError("invalid settings: " + "; ".join(lines)) from None
