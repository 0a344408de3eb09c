"""Pure parts of plugins/ssh_oath/usersfile.py: base32 -> hex, pam_oath state merge, liboath's lock
and the atomic replace."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.plugins import load_plugin
from tests.helpers.rfc import RFC_SECRET

ssh_oath = load_plugin("ssh_oath.usersfile")

RFC_HEX = b"12345678901234567890".hex()
STATE = ("7", "12345678", "2026-01-02T03:04:05L")


def test_base32_to_hex_handles_case_padding_and_legacy_lengths() -> None:
    """The RFC seed decodes to its ASCII bytes in hex with or without '=' padding and in
    lower case; a 26-character legacy secret is padded only for decoding (16 bytes)."""
    assert ssh_oath.base32_to_hex(RFC_SECRET) == RFC_HEX
    assert ssh_oath.base32_to_hex(RFC_SECRET.lower()) == RFC_HEX
    assert ssh_oath.base32_to_hex("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====") == RFC_HEX
    assert len(ssh_oath.base32_to_hex("S46SQCPPTCNPROMHWYBDCTBZXV")) == 32
    with pytest.raises(ValueError):
        ssh_oath.base32_to_hex("not base32!")


def test_state_follows_type_and_secret_only() -> None:
    """pam_oath's COUNTER/LASTOTP/TIME carry over to a line with the same type and secret
    (even under a new name), not to a changed secret or type; malformed state is dropped."""
    old = (
        ssh_oath.USERS_HEADER
        + "HOTP/T30/6\talice\t-\t" + RFC_HEX + "\t" + "\t".join(STATE) + "\n"
        + "HOTP/T30/6\tbob\t-\t00ff\t1\t123456\tyesterday\n"
        + "HOTP/T60/8\tcarol\t-\tabcd\t" + "\t".join(STATE) + "\n"
    )  # fmt: skip
    state = ssh_oath.parse_state(old)
    assert state == {("HOTP/T30/6", RFC_HEX): STATE, ("HOTP/T60/8", "abcd"): STATE}
    entries = [
        ssh_oath.OathEntry("alice2", 30, 6, RFC_HEX),
        ssh_oath.OathEntry("bob", 30, 6, "00ff"),
        ssh_oath.OathEntry("carol", 30, 8, "abcd"),
    ]
    assert ssh_oath.render_users_file(entries, state) == (
        ssh_oath.USERS_HEADER
        + f"HOTP/T30/6\talice2\t-\t{RFC_HEX}\t7\t12345678\t2026-01-02T03:04:05L\n"
        + "HOTP/T30/6\tbob\t-\t00ff\n"
        + "HOTP/T30/8\tcarol\t-\tabcd\n"
    )


def test_snippet_names_the_users_file_and_window() -> None:
    """Active: one pam_oath line with usersfile= and window=; inactive: comments only."""
    active = ssh_oath.render_snippet(Path("/var/lib/m2fa/users.oath"), 2).splitlines()
    assert [line for line in active if not line.startswith("#")] == [
        "auth required pam_oath.so usersfile=/var/lib/m2fa/users.oath window=2"
    ]
    inactive = ssh_oath.render_snippet(None, 2).splitlines()
    assert all(line.startswith("#") for line in inactive)


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX)  # what liboath's fcntl(F_SETLKW) takes
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(lock_path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_liboath_lock_waits_for_another_holder(tmp_path: Path) -> None:
    """The writer waits while another process holds the POSIX lock on PATH.lock, then
    takes it and removes the lock file afterwards, as liboath does."""
    users = tmp_path / "users.oath"
    holder = hold_lock(tmp_path / "users.oath.lock", 0.5)
    try:
        started = time.monotonic()
        with ssh_oath.liboath_lock(users, timeout=10):
            waited = time.monotonic() - started
    finally:
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert waited >= 0.3
    assert not (tmp_path / "users.oath.lock").exists()


def test_liboath_lock_gives_up_after_its_timeout(tmp_path: Path) -> None:
    """A lock held too long is an OSError ETIMEDOUT (reported, never waited for forever)."""
    holder = hold_lock(tmp_path / "users.oath.lock", 30)
    try:
        with (
            pytest.raises(OSError) as info,
            ssh_oath.liboath_lock(tmp_path / "users.oath", timeout=0.2),
        ):
            pass
        assert info.value.errno == errno.ETIMEDOUT
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_replace_file_is_atomic_and_sets_the_mode(tmp_path: Path) -> None:
    """The new content appears with the requested mode and no temporary file is left;
    a failed write leaves the old file as it was."""
    target = tmp_path / "users.oath"
    target.write_text("old\n")
    ssh_oath.replace_file(target, "new\n", 0o600)
    assert target.read_text() == "new\n"
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.oath"]
    with pytest.raises(OSError):
        ssh_oath.replace_file(tmp_path / "missing" / "users.oath", "x\n", 0o600)
    assert target.read_text() == "new\n"
