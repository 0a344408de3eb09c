"""``midclt2fa -U USER -K KEY`` as a separate process (API.md §11): SCRAM-SHA-512 by
default, ``--key-mechanism PLAIN`` on request, the key given as itself or as a file, and
every refusal in words. Over ``wss://`` (channel binding, a man in the middle) see
tests/e2e/test_tls.py.

Keys are made by root over the Unix socket, as README's "API keys for scripts" shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Midclt
from tests.helpers.daemon import SubprocessDaemon, subprocess_daemon

WRONG_KEY = "midclt2fa: login failed: wrong username or API key\n"
EXPIRED = (
    "midclt2fa: login failed: the API key has expired or was revoked (see api_key.query "
    """revoked_reason); make a new one with api_key.update ID '{"reset": true}'\n"""
)
#: API.md §11: ``<id>-<64 letters and digits>``.
KEY = re.compile(r"([0-9]+)-[A-Za-z0-9]{64}")


def _make_key(midclt: Midclt, username: str, name: str = "script") -> tuple[int, str]:
    """A new user ``username`` and a key of theirs: (key id, key as shown once)."""
    midclt.create_user(username, f"pw-{username}", secret=False)
    made = midclt.json("call", "api_key.create", json.dumps({"name": name, "username": username}))
    assert isinstance(made, dict)
    assert KEY.fullmatch(made["key"]), made
    return int(made["id"]), str(made["key"])


def _me(midclt: Midclt, *args: str) -> dict[str, object]:
    done = midclt("-u", midclt.daemon.url, *args, "call", "auth.me")
    assert (done.returncode, done.stderr) == (0, ""), done
    me = json.loads(done.stdout)
    assert isinstance(me, dict)
    return me


def test_key_logs_in_with_scram_by_default(midclt: Midclt) -> None:
    """The key on the command line and in a file; no password and no code asked (a key is
    a credential for automation, LEVEL_1, API.md §11), over ws:// on loopback."""
    key_id, key = _make_key(midclt, "robot")
    me = _me(midclt, "-U", "robot", "-K", key)
    assert (me["pw_name"], me["credentials"]) == ("robot", "API_KEY")

    key_file = midclt.cwd / "robot.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    assert _me(midclt, "-U", "robot", "-K", str(key_file))["credentials"] == "API_KEY"
    assert _me(midclt, "-U", "robot", "-K", "robot.key")["credentials"] == "API_KEY"  # relative


def test_scram_is_what_goes_over_the_wire(midclt: Midclt) -> None:
    """The daemon's audit names the mechanism of each login: SCRAM by default, API_KEY_PLAIN
    only with --key-mechanism PLAIN."""
    key_id, key = _make_key(midclt, "auditee")
    _me(midclt, "-U", "auditee", "-K", key)
    _me(midclt, "-U", "auditee", "-K", key, "--key-mechanism", "PLAIN")
    query = {
        "query-filters": [["event", "=", "AUTHENTICATION"], ["username", "=", "auditee"]],
        "query-options": {"order_by": ["message_timestamp"]},
    }
    entries = midclt.json("call", "audit.query", json.dumps(query))
    assert isinstance(entries, list)
    assert [(e["success"], e["event_data"]["description"]) for e in entries] == [
        (True, f"API key login (key {key_id}, SCRAM)"),
        (True, f"API key login (key {key_id}, API_KEY_PLAIN)"),
    ], entries
    assert key not in json.dumps(entries)


def test_refusals_in_words(midclt: Midclt) -> None:
    """A wrong key, another user's key, a deleted key: AUTH_ERR, said the same way; the
    key is never echoed."""
    key_id, key = _make_key(midclt, "owner")
    midclt.create_user("other", "pw-other", secret=False)
    wrong = f"{key_id}-{'A' * 64}"
    for args in (
        ("-U", "owner", "-K", wrong),
        ("-U", "other", "-K", key),
        ("-U", "owner", "-K", wrong, "--key-mechanism", "PLAIN"),
        ("-U", "other", "-K", key, "--key-mechanism", "PLAIN"),
    ):
        done = midclt("-u", midclt.daemon.url, *args, "call", "auth.me")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", WRONG_KEY), (args, done)
    assert midclt.ok("call", "api_key.delete", str(key_id)) == "true\n"
    done = midclt("-u", midclt.daemon.url, "-U", "owner", "-K", key, "call", "auth.me")
    assert (done.returncode, done.stderr) == (1, WRONG_KEY), done


def test_bad_key_arguments(midclt: Midclt) -> None:
    """Neither a key nor a file, a file without a key, -K without -U, -K with -P: usage
    errors that name the problem, never the value (it may be a key with a typo)."""
    (midclt.cwd / "empty.key").write_text("")
    (midclt.cwd / "notes.key").write_text("my key is somewhere\n")
    cases = {
        ("-U", "a", "-K", "12-abc_def"): (
            "midclt2fa: -K: not an API key (ID-KEY, as api_key.create showed it) and no such file\n"
        ),
        ("-U", "a", "-K", "empty.key"): (
            "midclt2fa: -K: the file does not hold an API key (ID-KEY on its first line)\n"
        ),
        ("-U", "a", "-K", "notes.key"): (
            "midclt2fa: -K: the file does not hold an API key (ID-KEY on its first line)\n"
        ),
        (
            "-U",
            "a",
            "-K",
            str(midclt.cwd),
        ): "midclt2fa: -K: cannot read the key file: Is a directory\n",
    }
    for args, message in cases.items():
        done = midclt("-u", midclt.daemon.url, *args, "ping")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", message), (args, done)
        assert "abc_def" not in done.stderr

    done = midclt("-K", "1-" + "a" * 64, "ping")
    assert done.returncode == 1
    assert done.stderr.endswith(
        "midclt2fa: error: -K/--api-key needs -U/--username, the key's user (SCRAM names it)\n"
    )
    done = midclt("-U", "a", "-P", "pw", "-K", "1-" + "a" * 64, "ping")
    assert done.returncode == 1
    assert done.stderr.endswith(
        "midclt2fa: error: -K/--api-key logs in without -P/--password and --otp\n"
    )
    assert "a" * 64 not in done.stderr


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Midclt]:
    """A daemon for which loopback is not a local network (api_key_local_networks), so a
    plain key over its plaintext TCP is what one from another machine would be."""
    env = {
        "MIDDLEWARED_2FA_NTP_TIMEOUT": "1",
        "MIDDLEWARED_2FA_API_KEY_LOCAL_NETWORKS": "10.0.0.0/8",
    }
    daemon: SubprocessDaemon
    with subprocess_daemon(extra_env=env) as daemon:
        yield Midclt(daemon, tmp_path)


def test_plain_key_over_remote_plaintext_is_revoked(remote: Midclt) -> None:
    """SCRAM over plaintext from "another machine" works (the key never crosses the wire);
    PLAIN there revokes the key (API.md §11), and from then on both say so in words."""
    key_id, key = _make_key(remote, "robot")
    assert _me(remote, "-U", "robot", "-K", key)["credentials"] == "API_KEY"
    done = remote(
        "-u", remote.daemon.url, "-U", "robot", "-K", key, "--key-mechanism", "PLAIN", "ping"
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", EXPIRED), done
    entry = remote.json("call", "api_key.query", json.dumps([["id", "=", key_id]]), '{"get": true}')
    assert isinstance(entry, dict) and entry["revoked"] is True, entry
    done = remote("-u", remote.daemon.url, "-U", "robot", "-K", key, "ping")
    assert (done.returncode, done.stderr) == (1, EXPIRED), done
