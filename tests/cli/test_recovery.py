"""``midclt2fa`` run as a separate process on the recovery paths of API.md §10 and the
setup-only sessions of §4 ``enforce``: recovery codes in ``--otp`` and at the prompt, a
one-time password from an administrator, staged enrolment, and root turning ``enforce``
off on the Unix socket.

Each ``midclt2fa`` run is one session making one call, so a walk-through is a sequence of
runs; codes come from Debian's ``oathtool``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Midclt
from tests.helpers.daemon import subprocess_daemon
from tests.helpers.outside import oathtool_totp, parse_otpauth

#: API.md §10: 16 base32 characters in four groups.
RECOVERY_CODE = re.compile(r"[a-z2-7]{4}(?:-[a-z2-7]{4}){3}")
#: API.md §10: ``<n>_xxxxxx-xxxxxx-xxxxxx-xxxxxx``.
ONETIME_PASSWORD = re.compile(r"[1-9][0-9]*_[a-z2-7]{6}(?:-[a-z2-7]{6}){3}")

WRONG_CODE = "midclt2fa: login failed: wrong one-time code or recovery code\n"
CODE_REQUIRED = (
    "midclt2fa: login failed: a one-time code or recovery code is required (use --otp)\n"
)
WRONG_LOGIN = "midclt2fa: login failed: wrong username or password, or the account is locked\n"
SETUP_FIRST = "midclt2fa: [EACCES] Two-factor authentication must be set up first\n"


def _totp(uri: str) -> str:
    """The current code of the secret in ``uri``, as an authenticator app shows it."""
    otp = parse_otpauth(uri)
    return oathtool_totp(otp.secret, digits=otp.digits, period=otp.period)


def _recovery_codes(midclt: Midclt, username: str) -> list[str]:
    """A new set of the user's recovery codes, made by root on the Unix socket."""
    codes = midclt.json("call", "user.twofactor_recovery_codes", username)
    assert isinstance(codes, list) and len(codes) == len(set(codes)) == 10, codes
    assert all(RECOVERY_CODE.fullmatch(code) for code in codes), codes
    return codes


def _onetime_password(midclt: Midclt, username: str) -> str:
    """``auth.generate_onetime_password`` by root on the Unix socket, as README shows."""
    out = midclt.ok("call", "auth.generate_onetime_password", json.dumps({"username": username}))
    password = out.removesuffix("\n")
    assert ONETIME_PASSWORD.fullmatch(password), out
    return password


def _otpw_note(user_id: object, *, secret: str | None) -> str:
    """The note of a one-time-password session, words only (see :func:`_note`);
    ``secret``: the user's name when they have a secret configured."""
    head = (
        "midclt2fa: note: logged in with a one-time password, now used up: this session may "
        "only set a new password and set up two-factor authentication (other calls fail with "
        "[EACCES]), and it ends with this run. Set the new password in it: "
        f"""call user.update {user_id} '{{"password": "NEW"}}'"""
    )
    if secret is None:
        return head + " Then log in with the new password and set up two-factor authentication."
    return head + (
        " A new secret takes user.twofactor_enroll and user.twofactor_confirm in one session, "
        "and each midclt2fa run is a session of its own: set it up in the web UI, or have an "
        f"administrator remove the current one (user.unset_2fa_secret {secret}). Until then "
        "the current secret and recovery codes keep working."
    )


def _note(stderr: str) -> str:
    """The setup-only note at the start of ``stderr`` as words, after checking its shape:
    one first line ``midclt2fa: note: ...``, then lines indented by two spaces; returns
    it with the rest of ``stderr`` (after the note) appended verbatim."""
    lines = stderr.splitlines(keepends=True)
    assert lines and lines[0].startswith("midclt2fa: note: "), stderr
    count = 1
    while count < len(lines) and lines[count].startswith("  "):
        count += 1
    words = " ".join("".join(lines[:count]).split())
    return words + "\n" + "".join(lines[count:])


# -- recovery codes in the OTP step ----------------------------------------------------


def test_recovery_code_walkthrough(midclt: Midclt) -> None:
    """With 2FA on, a user enrols and confirms a secret over TCP, root makes recovery
    codes, and `--otp CODE` with one logs in LEVEL_2 once; the code is spent, a code typed
    in upper case with spaces works too, and a session opened with a code makes a new set
    that voids the old one."""
    config = midclt.json("call", "auth.twofactor.update", '{"enabled": true}')
    assert isinstance(config, dict) and (config["enabled"], config["enforce"]) == (True, False)
    midclt.create_user("rc_walk", "pw-rc-walk", secret=False)
    as_user = ["-u", midclt.daemon.url, "-U", "rc_walk", "-P", "pw-rc-walk"]
    enrolled = midclt.json(*as_user, "call", "user.twofactor_enroll", "rc_walk")
    assert isinstance(enrolled, dict)
    assert set(enrolled) == {"provisioning_uri", "interval", "otp_digits", "expires_at"}
    code = _totp(enrolled["provisioning_uri"])
    confirmed = midclt.json(*as_user, "call", "user.twofactor_confirm", "rc_walk", json.dumps(code))
    assert isinstance(confirmed, dict)
    assert confirmed["secret_configured"] is True
    assert confirmed["provisioning_uri"] == enrolled["provisioning_uri"]
    # The user's own session for this would need a code of a later time step than the
    # one confirm used up; root makes the first set instead.
    codes = _recovery_codes(midclt, "rc_walk")

    me = midclt.json(*as_user, "--otp", codes[0], "call", "auth.me")
    assert isinstance(me, dict)
    assert (me["pw_name"], me["credentials"]) == ("rc_walk", "LOGIN_TWOFACTOR")
    again = midclt(*as_user, "--otp", codes[0], "call", "auth.me")
    assert (again.returncode, again.stdout, again.stderr) == (1, "", WRONG_CODE)

    typed = codes[1].upper().replace("-", " ")  # as read aloud from paper
    status = midclt.json(*as_user, "--otp", typed, "call", "user.twofactor_config", "rc_walk")
    assert isinstance(status, dict) and status["recovery_codes_remaining"] == 8

    renewed = midclt.json(
        *as_user, "--otp", codes[2], "call", "user.twofactor_recovery_codes", "rc_walk"
    )
    assert isinstance(renewed, list) and len(renewed) == 10
    assert all(RECOVERY_CODE.fullmatch(new) for new in renewed) and not set(renewed) & set(codes)
    void = midclt(*as_user, "--otp", codes[3], "call", "auth.me")
    assert (void.returncode, void.stdout, void.stderr) == (1, "", WRONG_CODE)
    me = midclt.json(*as_user, "--otp", renewed[0], "call", "auth.me")
    assert isinstance(me, dict) and me["credentials"] == "LOGIN_TWOFACTOR"


def test_recovery_code_typed_at_the_prompt(midclt: Midclt) -> None:
    """Without --otp the prompt asks for a one-time code or recovery code; a wrong
    recovery code is asked for again, a right one logs in LEVEL_2."""
    midclt.create_user("rc_tty", "pw-rc-tty", secret=True)
    codes = _recovery_codes(midclt, "rc_tty")
    term = midclt.terminal(
        "-u", midclt.daemon.url, "-U", "rc_tty", "-P", "pw-rc-tty", "call", "auth.me"
    )
    try:
        term.expect("One-time code or recovery code: ")
        term.send("aaaa-aaaa-aaaa-aaaa\n")  # 80 bits: never one of the set by chance
        retry = term.expect("One-time code or recovery code: ")
        assert retry == (
            "aaaa-aaaa-aaaa-aaaa\r\n"
            "midclt2fa: wrong one-time code or recovery code; try again\r\n"
            "One-time code or recovery code: "
        ), retry
        term.send(codes[4] + "\n")
        status, rest = term.finish()
        assert status == 0, rest
        assert rest.startswith(codes[4] + "\r\n")  # echoed, like a one-time code
        me = json.loads(rest.removeprefix(codes[4] + "\r\n"))
        assert (me["pw_name"], me["credentials"]) == ("rc_tty", "LOGIN_TWOFACTOR")
    finally:
        term.close()


def test_otp_help_names_recovery_codes(midclt: Midclt) -> None:
    """`--help` says --otp takes a one-time code or a recovery code, -P a one-time password."""
    out = " ".join(midclt.ok("--help").split())
    assert "--otp CODE one-time code or recovery code" in out, out
    assert "a one-time password from an administrator" in out, out


# -- a one-time password from an administrator -----------------------------------------


def test_onetime_password_walkthrough(midclt: Midclt) -> None:
    """A user who lost their phone gets a one-time password from root: typed as -P it
    logs in once to a setup-only session with a note on stderr, where other calls fail
    with EACCES and the user's own new password is set; the new password then logs in,
    and the old secret still applies."""
    entry = midclt.create_user("otpw_walk", "pw-otpw-old", secret=True)
    user_id = entry["id"]
    url = midclt.daemon.url
    note = _otpw_note(user_id, secret="otpw_walk")

    otpw = _onetime_password(midclt, "otpw_walk")
    done = midclt("-u", url, "-U", "otpw_walk", "-P", otpw, "call", "auth.me")
    assert (done.returncode, _note(done.stderr)) == (0, note + "\n"), done
    me = json.loads(done.stdout)
    assert (me["id"], me["pw_name"], me["credentials"]) == (
        user_id,
        "otpw_walk",
        "LOGIN_ONETIME_PASSWORD",
    )
    assert {"OTPW", "PASSWORD_CHANGE_REQUIRED", "SETUP_ONLY"} <= set(me["account_attributes"])
    spent = midclt("-u", url, "-U", "otpw_walk", "-P", otpw, "call", "auth.me")
    assert (spent.returncode, spent.stdout, spent.stderr) == (1, "", WRONG_LOGIN)

    otpw = _onetime_password(midclt, "otpw_walk")
    refused = midclt("-u", url, "-U", "otpw_walk", "-P", otpw, "call", "user.query")
    assert (refused.returncode, refused.stdout) == (1, ""), refused
    assert _note(refused.stderr) == note + "\n" + SETUP_FIRST

    otpw = _onetime_password(midclt, "otpw_walk")
    changed = midclt(
        "-u", url, "-U", "otpw_walk", "-P", otpw,
        "call", "user.update", str(user_id), '{"password": "pw-otpw-new"}',
    )  # fmt: skip
    assert (changed.returncode, _note(changed.stderr)) == (0, note + "\n"), changed
    assert json.loads(changed.stdout)["id"] == user_id

    old = midclt("-u", url, "-U", "otpw_walk", "-P", "pw-otpw-old", "ping")
    assert (old.returncode, old.stdout, old.stderr) == (1, "", WRONG_LOGIN)
    as_user = ["-u", url, "-U", "otpw_walk", "-P", "pw-otpw-new"]
    no_code = midclt(*as_user, "ping")
    assert (no_code.returncode, no_code.stdout, no_code.stderr) == (1, "", CODE_REQUIRED)
    uri = midclt.ok("call", "user.provisioning_uri", "otpw_walk").removesuffix("\n")
    me = midclt.json(*as_user, "--otp", _totp(uri), "call", "auth.me")
    assert isinstance(me, dict) and me["credentials"] == "LOGIN_TWOFACTOR"
    assert "SETUP_ONLY" not in me["account_attributes"]


# -- enforce: setup-only sessions from a password ----------------------------------------


@pytest.fixture
def enforced(tmp_path: Path) -> Iterator[Midclt]:
    """A daemon of its own with global 2FA enabled and enforced (by root, via the CLI)."""
    with subprocess_daemon(extra_env={"MIDDLEWARED_2FA_NTP_TIMEOUT": "1"}) as daemon:
        midclt = Midclt(daemon, tmp_path)
        config = midclt.json("call", "auth.twofactor.update", '{"enabled": true, "enforce": true}')
        assert isinstance(config, dict) and (config["enabled"], config["enforce"]) == (True, True)
        yield midclt


def _enforced_note(username: str, user_id: object) -> str:
    """The note of a password session of a user without a second factor under enforce,
    words only (see :func:`_note`)."""
    return (
        f"midclt2fa: note: two-factor authentication is enforced and {username} has none yet, "
        "so this session may only set it up (other calls fail with [EACCES]). One call per "
        f"midclt2fa run, in turn: 1. call user.twofactor_enroll {username}: add its "
        f"provisioning_uri to an authenticator app 2. call user.twofactor_confirm {username} "
        """'"CODE"' with the app's current code 3. log in with --otp CODE as usual """
        "It may also call auth.me and core.*, and set a new password: "
        f"""call user.update {user_id} '{{"password": "NEW"}}'"""
    )


def test_enforced_user_sets_up_2fa_one_run_at_a_time(enforced: Midclt) -> None:
    """Under enforce, a user without a secret logs in with the password alone to a
    setup-only session (note on stderr, EACCES for other calls), enrols and confirms a
    secret in two runs, and from then on needs a code; root on the Unix socket cannot turn
    2FA off while enforce is on without turning enforce off in the same call, and after
    `enforce: false` a password-only user gets a full session again."""
    midclt = enforced
    entry = midclt.create_user("enf_user", "pw-enf", secret=False)
    note = _enforced_note("enf_user", entry["id"])
    as_user = ["-u", midclt.daemon.url, "-U", "enf_user", "-P", "pw-enf"]

    done = midclt(*as_user, "call", "auth.me")
    assert (done.returncode, _note(done.stderr)) == (0, note + "\n"), done
    me = json.loads(done.stdout)
    assert (me["credentials"], me["account_attributes"]) == (
        "LOGIN_PASSWORD",
        ["LOCAL", "SETUP_ONLY"],
    )
    assert me["two_factor_config"]["setup_required"] is True
    refused = midclt(*as_user, "call", "user.query")
    assert (refused.returncode, refused.stdout) == (1, ""), refused
    assert _note(refused.stderr) == note + "\n" + SETUP_FIRST

    enrolled = midclt(*as_user, "call", "user.twofactor_enroll", "enf_user")
    assert (enrolled.returncode, _note(enrolled.stderr)) == (0, note + "\n"), enrolled
    code = _totp(json.loads(enrolled.stdout)["provisioning_uri"])
    confirmed = midclt(*as_user, "call", "user.twofactor_confirm", "enf_user", json.dumps(code))
    assert (confirmed.returncode, _note(confirmed.stderr)) == (0, note + "\n"), confirmed
    assert json.loads(confirmed.stdout)["secret_configured"] is True
    no_code = midclt(*as_user, "call", "auth.me")
    assert (no_code.returncode, no_code.stdout, no_code.stderr) == (1, "", CODE_REQUIRED)

    refused_off = midclt("call", "auth.twofactor.update", '{"enabled": false}')
    assert (refused_off.returncode, refused_off.stdout, refused_off.stderr) == (
        1,
        "",
        "midclt2fa: invalid parameters\n"
        "  auth_twofactor_update.enabled: Two-factor authentication is enforced; "
        "turn enforce off in the same call\n",
    )
    config = midclt.json("call", "auth.twofactor.update", '{"enforce": false}')
    assert isinstance(config, dict) and (config["enabled"], config["enforce"]) == (True, False)
    midclt.create_user("enf_later", "pw-enf-later", secret=False)
    me = midclt.json(
        "-u", midclt.daemon.url, "-U", "enf_later", "-P", "pw-enf-later", "call", "auth.me"
    )
    assert isinstance(me, dict) and me["account_attributes"] == ["LOCAL"]


def test_onetime_password_of_a_user_without_secret(enforced: Midclt) -> None:
    """A one-time password of a user without a secret gives the setup-only note that
    sends them on to a password login; root then turns 2FA and enforce off in one call."""
    midclt = enforced
    entry = midclt.create_user("enf_otpw", "pw-enf-otpw", secret=False)
    otpw = _onetime_password(midclt, "enf_otpw")
    done = midclt(
        "-u", midclt.daemon.url, "-U", "enf_otpw", "-P", otpw,
        "call", "user.update", str(entry["id"]), '{"password": "pw-enf-otpw-2"}',
    )  # fmt: skip
    assert done.returncode == 0, done
    assert _note(done.stderr) == _otpw_note(entry["id"], secret=None) + "\n"
    again = midclt(
        "-u", midclt.daemon.url, "-U", "enf_otpw", "-P", "pw-enf-otpw-2", "call", "core.ping"
    )
    assert (again.returncode, again.stdout) == (0, "pong\n")
    assert _note(again.stderr) == _enforced_note("enf_otpw", entry["id"]) + "\n"

    config = midclt.json("call", "auth.twofactor.update", '{"enabled": false, "enforce": false}')
    assert isinstance(config, dict) and (config["enabled"], config["enforce"]) == (False, False)
