"""Settings precedence: flags > environment > TOML > defaults (API.md §1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from middlewared_2fa.config import Settings, load_settings, plugin_settings
from middlewared_2fa.errors import StartupError
from tests.helpers.plugins import load_plugin

AuthSettings = load_plugin("auth.throttle").AuthSettings
TimeSyncSettings = load_plugin("time_sync.repository").TimeSyncSettings
SshOathSettings = load_plugin("ssh_oath").SshOathSettings


def _shipped(s: Settings) -> dict[type[BaseModel], BaseModel]:
    """The settings of the shipped plugins that declare some."""
    return plugin_settings(
        s,
        [
            ("auth", AuthSettings),
            ("system.time_sync", TimeSyncSettings),
            ("ssh.oath", SshOathSettings),
        ],
    )


def test_defaults() -> None:
    """Without file, environment or flags the documented defaults apply."""
    s = load_settings(environ={})
    assert (s.host, s.port, s.state_dir, s.runtime_dir) == (
        "127.0.0.1",
        8642,
        Path("state"),
        Path("run"),
    )
    assert (s.rate_limit_calls, s.rate_limit_period) == (20, 60)
    assert s.password_verifications == (os.cpu_count() or 1)
    assert s.socket_path == Path("run/middlewared.sock")
    found = _shipped(s)
    auth = found[AuthSettings]
    assert (auth.auth_failure_delay, auth.auth_throttle_after) == (1.0, 5)  # type: ignore[attr-defined]
    assert (auth.auth_throttle_max, auth.auth_lock_after) == (900, 100)  # type: ignore[attr-defined]
    sync = found[TimeSyncSettings]
    assert (sync.time_sync_max_offset, sync.time_sync_interval, sync.ntp_timeout) == (  # type: ignore[attr-defined]
        30,
        900,
        5,
    )


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


@pytest.mark.parametrize(
    ("toml", "env", "match"),
    [
        ("nonsense = 1\n", {}, "nonsense: no plugin declares this setting"),
        ("auth_throttle_after = 0\n", {}, "auth_throttle_after"),
        ("", {"MIDDLEWARED_2FA_NTP_TIMEOUT": "soon"}, "ntp_timeout"),
        ("auth_throttle_after = 10\nauth_lock_after = 5\n", {}, "auth_lock_after"),
    ],
)
def test_invalid_plugin_settings_name_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], match: str
) -> None:
    """A plugin's setting is checked by the plugin's model once the plugins are loaded;
    a key in the file that no plugin declares is refused, naming it."""
    path = tmp_path / "m.toml"
    path.write_text(toml)
    s = load_settings(path, {}, environ=env)
    with pytest.raises(StartupError, match=match):
        _shipped(s)


def test_plugin_settings_keep_the_flat_keys_and_precedence(tmp_path: Path) -> None:
    """Plugin keys are flat in the file and ``MIDDLEWARED_2FA_<KEY>`` in the environment,
    with the same precedence as the framework's (API.md §1)."""
    path = tmp_path / "m.toml"
    path.write_text('auth_throttle_after = 7\ntime_sync_interval = 60\noath_users_file = "/x"\n')
    env = {"MIDDLEWARED_2FA_TIME_SYNC_INTERVAL": "120", "MIDDLEWARED_2FA_NOT_A_SETTING": "1"}
    found = _shipped(load_settings(path, {"auth_throttle_after": 9}, environ=env))
    assert found[AuthSettings].auth_throttle_after == 9  # type: ignore[attr-defined]
    assert found[TimeSyncSettings].time_sync_interval == 120  # type: ignore[attr-defined]
    assert found[SshOathSettings].oath_users_file == Path("/x")  # type: ignore[attr-defined]


def test_a_key_declared_twice_is_refused() -> None:
    """Two plugins (or a plugin and the framework) cannot declare the same key."""

    class Clash(BaseModel):
        model_config = ConfigDict(extra="forbid")
        auth_throttle_after: int = Field(1)

    class Port(BaseModel):
        port: int = Field(1)

    with pytest.raises(StartupError, match="auth_throttle_after.*declared by auth"):
        plugin_settings(Settings(), [("auth", AuthSettings), ("other", Clash)])
    with pytest.raises(StartupError, match="port.*the framework"):
        plugin_settings(Settings(), [("other", Port)])


def test_a_check_across_keys_names_them_without_an_empty_location(tmp_path: Path) -> None:
    """A model-level check (auth_lock_after below auth_throttle_after) has no location of
    its own: the message starts with the keys, not with ': '."""
    path = tmp_path / "m.toml"
    path.write_text("auth_lock_after = 3\n")
    with pytest.raises(StartupError) as exc:
        _shipped(load_settings(path, {}, environ={}))
    assert str(exc.value) == (
        "invalid settings: auth_lock_after must be at least auth_throttle_after (5)"
    )


ApiKeySettings = load_plugin("api_key").ApiKeySettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.0.0.0/8", ["10.0.0.0/8"]),
        ("10.0.0.0/8, 192.168.0.0/16,", ["10.0.0.0/8", "192.168.0.0/16"]),
        (' ["127.0.0.0/8", "::1/128"]', ["127.0.0.0/8", "::1/128"]),
    ],
)
def test_a_plugins_list_setting_in_the_environment(raw: str, expected: list[str]) -> None:
    """A plugin's list setting takes a JSON list or comma-separated values in the
    environment, like the framework's (allowed_origins)."""
    s = load_settings(None, {}, environ={"MIDDLEWARED_2FA_API_KEY_LOCAL_NETWORKS": raw})
    found = plugin_settings(s, [("api_key", ApiKeySettings)])
    assert found[ApiKeySettings].api_key_local_networks == expected  # type: ignore[attr-defined]


def test_a_plugins_list_setting_with_broken_json_names_it() -> None:
    s = load_settings(None, {}, environ={"MIDDLEWARED_2FA_API_KEY_LOCAL_NETWORKS": '["10/8"'})
    with pytest.raises(StartupError, match="MIDDLEWARED_2FA_API_KEY_LOCAL_NETWORKS is not a JSON"):
        plugin_settings(s, [("api_key", ApiKeySettings)])


@pytest.mark.parametrize("bad", ["192.0.2.2", "http://192.0.2.2:8642/", "ftp://a", "http://"])
def test_allowed_origins_must_be_origins(bad: str) -> None:
    """New-user helper: MIDDLEWARED_2FA_ALLOWED_ORIGINS=192.0.2.2 was accepted and never
    matched a browser's Origin; it is now a start-up error that shows the form."""
    with pytest.raises(StartupError, match="is not a browser origin: scheme://host"):
        load_settings(None, {}, environ={"MIDDLEWARED_2FA_ALLOWED_ORIGINS": bad})
