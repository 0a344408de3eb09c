"""Settings precedence: flags > environment > TOML > defaults (API.md §1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from middlewared_2fa.config import Settings, load_settings
from middlewared_2fa.errors import StartupError


def test_defaults() -> None:
    """Without file, environment or flags the documented defaults apply."""
    s = load_settings(environ={})
    assert (s.host, s.port, s.state_dir, s.runtime_dir) == (
        "127.0.0.1",
        8642,
        Path("state"),
        Path("run"),
    )
    assert (s.rate_limit_calls, s.rate_limit_period, s.auth_failure_delay) == (20, 60, 1.0)
    assert (s.auth_throttle_after, s.auth_throttle_max, s.auth_lock_after) == (5, 900, 100)
    assert s.password_verifications == (os.cpu_count() or 1)
    assert (s.time_sync_max_offset, s.time_sync_interval, s.ntp_timeout) == (30, 900, 5)
    assert s.socket_path == Path("run/middlewared.sock")


def test_precedence(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the TOML file."""
    toml = tmp_path / "m.toml"
    toml.write_text(
        'port = 1000\nhost = "0.0.0.0"\nlog_level = "debug"\nallowed_origins = ["http://a"]\n'
    )
    env = {"MIDDLEWARED_2FA_PORT": "2000", "MIDDLEWARED_2FA_ALLOWED_ORIGINS": "http://b,http://c"}
    s = load_settings(toml, {"port": 3000}, environ=env)
    assert s.port == 3000
    assert s.host == "0.0.0.0"
    assert s.log_level == "DEBUG"
    assert s.allowed_origins == ["http://b", "http://c"]
    assert load_settings(toml, {}, environ=env).port == 2000
    assert load_settings(toml, {}, environ={}).port == 1000


@pytest.mark.parametrize(
    ("toml", "env", "match"),
    [
        ("port = 70000\n", {}, "port"),
        ("nonsense = 1\n", {}, "nonsense"),
        ("port = \n", {}, "m.toml"),
        ("", {"MIDDLEWARED_2FA_LOG_LEVEL": "LOUD"}, "log_level"),
        ("", {"MIDDLEWARED_2FA_RATE_LIMIT_CALLS": "many"}, "rate_limit_calls"),
        ("", {"MIDDLEWARED_2FA_PLUGINS_DIRS": "[broken"}, "JSON"),
    ],
)
def test_invalid_settings_name_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], match: str
) -> None:
    """An invalid setting is a start-up error naming the key or file."""
    path = tmp_path / "m.toml"
    path.write_text(toml)
    with pytest.raises(StartupError, match=match):
        load_settings(path, {}, environ=env)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    s = Settings()
    with pytest.raises(ValueError):
        s.port = 1  # type: ignore[misc]
