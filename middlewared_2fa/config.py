"""Daemon settings: command-line flags > environment ``MIDDLEWARED_2FA_*`` > TOML file >
defaults (API.md §1)."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa.errors import StartupError

ENV_PREFIX = "MIDDLEWARED_2FA_"


class Settings(BaseModel):
    """The framework's settings. Times are in seconds.

    Plugins declare their own settings models (``Service.Config.settings``) with flat
    keys in the same file and environment; their values wait here as extras until the
    plugins are loaded, when :func:`plugin_settings` validates them and refuses a key no
    one declares.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    #: Extra keys that came only from the environment: unknown ones are ignored there
    #: (other programs share the prefix), not in the TOML file or on the command line.
    _environ_only: frozenset[str] = PrivateAttr(default_factory=frozenset)

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
    rate_limit_calls: int = Field(20, ge=1, description="unauthenticated calls per period")
    rate_limit_period: float = Field(60.0, gt=0, description="rate limit period (s)")
    password_verifications: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=64,
        description="password hashes verified at once; more wait in a bounded queue",
    )
    idle_timeout: float = Field(
        300.0, gt=0, description="an unauthenticated connection idle this long is closed (s)"
    )
    max_connections: int = Field(1000, ge=1, description="open connections in all (§1 caps)")
    max_connections_per_address: int = Field(
        50, ge=1, description="open connections from one client address or Unix uid (§1 caps)"
    )
    tls: bool = Field(False, description="serve HTTPS/WSS only on the TCP listener (§11)")
    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate (leaf first, then intermediates); default: a "
        "self-signed one generated into state_dir",
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key of tls_cert_file, without a passphrase"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_file: Path | None = Field(None, description="also log to this file")
    debug: bool = Field(False, description="send tracebacks in data.trace")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        # A browser sends "scheme://host[:port]" and the check compares it exactly: a bare
        # host or a path would be accepted here and never match.
        for origin in value:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path
                or parts.query
                or parts.fragment
                or origin != origin.strip()
            ):
                raise ValueError(
                    f"{origin[:100]!r} is not a browser origin: scheme://host[:port], "
                    "e.g. http://192.0.2.2:8642"
                )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        # One without the other would leave the daemon guessing which key or certificate
        # was meant (a generated one would not match the configured half).
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given, missing = (
                ("tls_cert_file", "tls_key_file")
                if self.tls_key_file is None
                else ("tls_key_file", "tls_cert_file")
            )
            raise ValueError(f"{given} is set without {missing}: set both, or neither")
        return self

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
    def tls_cert_path(self) -> Path:
        """The TLS certificate served: ``tls_cert_file``, else the generated one."""
        return self.tls_cert_file or self.state_dir / "tls-cert.pem"

    @property
    def tls_key_path(self) -> Path:
        """The TLS key: ``tls_key_file``, else the generated one (mode 0600)."""
        return self.tls_key_file or self.state_dir / "tls-key.pem"


_LIST_KEYS = {"plugins_dirs", "allowed_origins"}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in Settings.model_fields:
            values[key] = raw  # a plugin's setting (or not a setting): see plugin_settings
        elif key in _LIST_KEYS:
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
    explicit = set(merged)
    try:
        from_env = _from_env(os.environ if environ is None else environ)
    except json.JSONDecodeError as exc:
        raise StartupError(f"environment: a list setting is not valid JSON: {exc}") from None
    merged.update(from_env)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged.update(flags)
    explicit |= set(flags)
    try:
        settings = Settings.model_validate(merged)
    except PydanticValidationError as exc:
        raise StartupError("invalid settings: " + _describe(exc)) from None
    settings._environ_only = frozenset(k for k in from_env if k not in explicit)
    return settings


def _describe(exc: PydanticValidationError) -> str:
    # A model-level check (auth_lock_after against auth_throttle_after) has no location;
    # its message names the keys.
    return "; ".join(
        ": ".join(
            filter(
                None,
                (".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")),
            )
        )
        for err in exc.errors()
    )


def plugin_settings(
    settings: Settings, models: Sequence[tuple[str, type[BaseModel]]]
) -> dict[type[BaseModel], BaseModel]:
    """Validate each plugin's settings model from the extras of ``settings``.

    Args:
        settings: The loaded settings (framework fields plus plugin keys as extras).
        models: ``(plugin namespace, model)`` pairs, in load order.

    Returns:
        Each model class mapped to its validated instance (defaults where unset).

    Raises:
        StartupError: a key is declared by two plugins or by a plugin and the framework,
            a value is invalid (the message names the key), or the TOML file or a flag
            sets a key that no plugin declares.
    """
    extras = dict(settings.model_extra or {})
    owners: dict[str, str] = {}
    found: dict[type[BaseModel], BaseModel] = {}
    for namespace, model in models:
        for key in model.model_fields:
            if key in Settings.model_fields or key in owners:
                other = owners.get(key, "the framework")
                raise StartupError(f"setting {key!r} of {namespace} is declared by {other} too")
            owners[key] = namespace
        values: dict[str, Any] = {}
        for key, info in model.model_fields.items():
            if key not in extras:
                continue
            value = extras[key]
            if (
                key in settings._environ_only
                and isinstance(value, str)
                and get_origin(info.annotation) in (list, tuple, set)
            ):
                # As the framework's list settings: a JSON list, or comma-separated.
                value = value.strip()
                if value.startswith("["):
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError as exc:
                        raise StartupError(
                            f"environment: {ENV_PREFIX}{key.upper()} is not a JSON list: {exc}"
                        ) from None
                else:
                    value = [part.strip() for part in value.split(",") if part.strip()]
            values[key] = value
        try:
            found[model] = model.model_validate(values)
        except PydanticValidationError as exc:
            raise StartupError("invalid settings: " + _describe(exc)) from None
    unknown = sorted(set(extras) - set(owners) - settings._environ_only)
    if unknown:
        raise StartupError(
            "invalid settings: "
            + "; ".join(f"{key}: no plugin declares this setting" for key in unknown)
        )
    return found
