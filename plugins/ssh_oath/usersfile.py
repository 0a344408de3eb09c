"""The liboath users file and the PAM snippet of ``ssh.oath`` (pure functions and file
locking, no service): the OATH users file and the PAM snippet that make sshd ask pam_oath for a
TOTP code (API.md §8, docs/ssh.md). No public methods: other services call
:meth:`SshOathService.sync` inside their own API calls, so a failed write fails that call.

Files (paths from the settings ``oath_users_file`` and ``pam_snippet_file``, by default
``users.oath`` and ``pam_oath.conf`` in the state directory):

- The users file, in liboath's "UsersFile" format (oath-toolkit ``liboath/usersfile.c``;
  fields separated by whitespace, ``#`` lines ignored)::

      HOTP/T{interval}/{digits} <TAB> {username} <TAB> - <TAB> {hex secret}

  ``HOTP/T30/6`` means TOTP (RFC 6238) with a 30 s step and 6 digits, ``-`` means "no
  password in this file" and the secret is the seed in hexadecimal. Mode 0600. Only while
  global 2FA and ``services.ssh`` are both on are users listed; otherwise the file holds
  only its header comment.
- The PAM snippet: ``auth required pam_oath.so usersfile=PATH window=W`` while SSH 2FA is
  on, only a comment otherwise (so an ``@include`` of it stays valid). Mode 0644.

Window mapping: our ``window`` counts time steps on *each* side of the current one (steps
T-w..T+w, 2w+1 codes). pam_oath hands ``window=`` to liboath's TOTP validator
(``oath_totp_validate*``), which also tries the current step and ``window`` steps before
and after it, so ``window=W`` is written with W equal to ``auth.twofactor.config.window``
(identity mapping). pam_oath's own default (5) is never relied on. For event-based HOTP
lines liboath's window would mean "codes ahead only"; we never write such lines.

Replay protection: after each successful login pam_oath rewrites the user's line with
three more fields, ``COUNTER LASTOTP TIME`` (liboath ``update_usersfile``). What liboath
2.6.7 (Debian 2.6.7-3.1+deb12u1) does with them for a TOTP line (``parse_usersfile``,
checked with pamtester):

- LASTOTP is the code string as typed. A new code equal to it is refused outright.
- Otherwise both the new code and LASTOTP are looked up in the window around liboath's
  *current* time (``oath_totp_validate2``, at the typed length); the new code is refused
  when LASTOTP is found there at a position not older than the new code's. A LASTOTP
  outside the window protects nothing beyond the string comparison.
- TIME is ``%Y-%m-%dT%H:%M:%SL``: local time, ``L`` a literal. It is parsed (a malformed
  one makes every login of that user fail) but never used for the decision; COUNTER is
  the old counter plus the window position of the accepted code, meaningless for TOTP.

So one code is one use across channels (API.md §8, RFC 6238 §5.2) when each side writes
the newest accepted code as LASTOTP and reads the other side's: :meth:`SshOathService.
last_step` finds the step of LASTOTP (:func:`recorded_step`) and
:meth:`SshOathService.record_step` writes the daemon's accepted code in liboath's form.
A rewrite by the daemon carries those fields over for every line whose type and secret
did not change, and drops them when the secret changed.

Both sides take liboath's lock on ``PATH.lock``: liboath (with the CVE-2024-47191 fix)
creates it with ``O_EXCL`` and then takes a POSIX ``fcntl`` write lock on it, so a
pam_oath login that finds the lock file present *fails* (it does not wait). liboath reads
the file *before* taking that lock and copies from what it read, so a login racing a
rewrite can put back the older content; each rewrite is therefore checked again
:attr:`SshOathService.RECHECK_DELAY` seconds later and redone if the file no longer
matches the database.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import hmac
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp

logger = logging.getLogger(__name__)


#: liboath reads secrets into a 32-byte buffer (``usersfile.c``); longer ones fail there.
MAX_SECRET_BYTES = 32

USERS_HEADER = (
    "# Managed by middlewared-2fa (ssh.oath): rewritten on every change, do not edit.\n"
    "# pam_oath appends COUNTER LASTOTP TIME to a line after each login (replay protection).\n"
)
SNIPPET_HEADER = "# Managed by middlewared-2fa (ssh.oath); see docs/ssh.md. Do not edit.\n"

_COUNTER = re.compile(r"\d{1,20}")
_LAST_OTP = re.compile(r"\d{6,8}")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dL")  # liboath "%Y-%m-%dT%H:%M:%SL"
#: liboath's TIME field (usersfile.c ``TIME_FORMAT_STRING``): local time, a literal ``L``.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SL"
#: Characters that PAM (argument splitting, ``[...]`` quoting) or pam_oath (``${USER}``
#: expansion) would read differently in ``usersfile=PATH``.
_UNSAFE_PATH = re.compile(r"[\s\[\]$]")
_LOCK_TIMEOUT = 10.0  # s; pam_oath holds the lock for a few milliseconds


@dataclass(slots=True, frozen=True)
class OathEntry:
    """One line of the users file (without pam_oath's state fields).

    Attributes:
        username: Login name (the system account pam_oath is asked about).
        interval: TOTP time step X in seconds, 30 or 60 (RFC 6238 §4.1; liboath knows no
            other).
        digits: Code length, 6..8.
        secret_hex: The seed in lower-case hexadecimal.
    """

    username: str
    interval: int
    digits: int
    secret_hex: str

    @property
    def token_type(self) -> str:
        """liboath token type, e.g. ``HOTP/T30/6``."""
        return f"HOTP/T{self.interval}/{self.digits}"

    def line(self, state: tuple[str, str, str] | None) -> str:
        """The line, with pam_oath's ``COUNTER LASTOTP TIME`` appended when given."""
        fields = [self.token_type, self.username, "-", self.secret_hex]
        if state is not None:
            fields.extend(state)
        return "\t".join(fields) + "\n"


def base32_to_hex(secret: str) -> str:
    """The base32 seed ``secret`` (RFC 4648 §6, ``=`` padding optional, any case) as
    lower-case hex.

    Stored secrets are 32 characters, but legacy ones may have any length (e.g. 26), so
    the padding to a multiple of 8 characters is added here, only for decoding.

    Raises:
        ValueError: not base32.
    """
    text = "".join(secret.split()).rstrip("=").upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except binascii.Error:
        raise ValueError("not a base32 secret") from None
    return raw.hex()


def parse_state(text: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """pam_oath's replay state per ``(token type, hex secret)`` from a users file.

    Args:
        text: Current users file content.

    Returns:
        ``{(type, secret_hex): (counter, last_otp, timestamp)}`` for lines that carry all
        three fields in the form liboath writes them; malformed state is dropped (liboath
        would refuse the whole line otherwise).
    """
    state: dict[tuple[str, str], tuple[str, str, str]] = {}
    for raw in text.splitlines():
        fields = raw.split()
        if (found := _state_of(fields)) is not None:
            state[(fields[0], fields[3].lower())] = found
    return state


def _state_of(fields: list[str]) -> tuple[str, str, str] | None:
    """``(counter, last_otp, timestamp)`` of a split line that carries all three in the
    form liboath writes them, else None."""
    if len(fields) != 7 or fields[0].startswith("#"):
        return None
    counter, last_otp, stamp = fields[4:]
    if (
        _COUNTER.fullmatch(counter)
        and _LAST_OTP.fullmatch(last_otp)
        and _TIMESTAMP.fullmatch(stamp)
    ):
        return counter, last_otp, stamp
    return None


def render_users_file(
    entries: list[OathEntry], state: dict[tuple[str, str], tuple[str, str, str]]
) -> str:
    """The users file for ``entries``, keeping pam_oath's state of unchanged secrets.

    State is keyed by type and secret, not by name: it belongs to the seed (the codes it
    protects), so it follows a renamed user and is dropped for a new secret.
    """
    lines = [e.line(state.get((e.token_type, e.secret_hex))) for e in entries]
    return USERS_HEADER + "".join(lines)


def render_snippet(users_path: Path | None, window: int) -> str:
    """The PAM snippet: the pam_oath line, or only a comment when ``users_path`` is None.

    Args:
        users_path: Absolute users file path, or None while SSH 2FA is off.
        window: Time steps accepted on each side (liboath's TOTP window has the same
            meaning, see the module docstring).
    """
    if users_path is None:
        return SNIPPET_HEADER + "# Two-factor authentication for SSH is off.\n"
    return (
        SNIPPET_HEADER
        + f"# window={window}: time steps accepted before and after the current one.\n"
        + f"auth required pam_oath.so usersfile={users_path} window={window}\n"
    )


@contextlib.contextmanager
def liboath_lock(path: Path, timeout: float = _LOCK_TIMEOUT) -> Iterator[None]:
    """Hold liboath's lock for ``path``: a POSIX record lock on ``PATH.lock``.

    liboath (``update_usersfile``) takes ``fcntl(F_SETLKW)`` on that file and unlinks it
    when done; a lock on a file that was unlinked meanwhile protects nothing, so the
    lock is retaken until the locked file is the one at the path. The lock file is
    unlinked on release, as liboath does.

    Raises:
        OSError: the lock file cannot be created, or (ETIMEDOUT) the lock was not
            obtained within ``timeout`` seconds.
    """
    lock_path = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, lock_path):
                break
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, "lock held too long", str(lock_path)) from None
            time.sleep(0.01)
            continue
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)  # releases the lock


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path``."""
    held = os.fstat(fd)
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    return (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev)


def replace_file(path: Path, content: str, mode: int) -> None:
    """Write ``content`` to ``path`` atomically: a temporary file in the same folder,
    fsync, rename over ``path``, fsync of the folder.

    The temporary name differs from liboath's ``PATH.new``.

    Raises:
        OSError: any step failed; the old file is then unchanged.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _current(path: Path) -> tuple[str, int] | None:
    """``(content, permission bits)`` of ``path``, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(), os.fstat(fh.fileno()).st_mode & 0o7777
    except FileNotFoundError:
        return None


def _replace_if_changed(path: Path, content: str, mode: int) -> bool:
    if _current(path) == (content, mode):
        return False
    replace_file(path, content, mode)
    return True


def _update_users_file(path: Path, entries: list[OathEntry]) -> bool:
    with liboath_lock(path):
        current = _current(path)
        state = parse_state(current[0]) if current is not None else {}
        content = render_users_file(entries, state)
        if current == (content, 0o600):
            return False
        replace_file(path, content, 0o600)
        return True


def write_files(
    users_path: Path, snippet_path: Path, entries: list[OathEntry] | None, window: int
) -> bool:
    """Bring both files up to date (blocking; run it in a thread).

    Args:
        users_path: Absolute users file path.
        snippet_path: PAM snippet path.
        entries: Users to list, or None while SSH 2FA is off.
        window: Time steps on each side.

    Returns:
        True when the users file was rewritten.

    Raises:
        OSError: a file could not be locked, read or written.
        ValueError: ``users_path`` cannot be written into a PAM argument.
    """
    if _UNSAFE_PATH.search(str(users_path)):
        raise ValueError(
            f"{users_path}: the path may not contain whitespace, '[', ']' or '$' "
            "(PAM and pam_oath would misread it)"
        )
    if entries is None:
        # Snippet first: pam_oath stops being asked before the users file empties.
        _replace_if_changed(snippet_path, render_snippet(None, window), 0o644)
        return _update_users_file(users_path, [])
    # Users file first: the snippet never names a file that lacks the users.
    changed = _update_users_file(users_path, entries)
    _replace_if_changed(snippet_path, render_snippet(users_path, window), 0o644)
    return changed


# -- one code, one use across the API and pam_oath (API.md §8, RFC 6238 §5.2) ------------


def format_stamp(unix_time: float) -> str:
    """``unix_time`` (s) as liboath writes TIME: local time, e.g. ``2023-11-14T22:13:35L``."""
    return time.strftime(TIME_FORMAT, time.localtime(unix_time))


def parse_stamp(stamp: str) -> float | None:
    """Unix time (s) of a TIME field read as local time, as liboath reads it (``strptime``,
    then ``mktime`` with ``tm_isdst = -1``); None when it is not in that form."""
    try:
        return time.mktime(time.strptime(stamp, TIME_FORMAT))
    except (ValueError, OverflowError):
        return None


def recorded_step(
    secret: str, last_otp: str, stamp: str | None, *, interval: int, now: float, window: int
) -> int | None:
    """The time step whose code is the LASTOTP of a users-file line.

    Candidates are the steps within ``window`` of the step of ``now`` (where liboath
    itself looks for LASTOTP) and within ``window`` of the step of ``stamp`` (the record's
    own time, so that a record stays found after the clock was stepped back). Each code
    is computed at ``len(last_otp)`` digits, as liboath compares it (pam_oath records the
    code as typed, which may be the 6-digit tail of an 8-digit code).

    Args:
        secret: Base32 seed.
        last_otp: The LASTOTP field, 6..8 digits.
        stamp: The TIME field, or None.
        interval: Time step in seconds (RFC 6238 §4.1).
        now: Unix time in seconds.
        window: Steps on each side (``auth.twofactor.config.window``).

    Returns:
        The newest matching step (the safe choice should two steps share the code), or
        None when none matches (the record is outside every window: it protects nothing).
    """
    totp = pyotp.TOTP(secret, digits=len(last_otp), interval=interval)
    centres = {int(now // interval)}
    made = parse_stamp(stamp) if stamp is not None else None
    if made is not None:
        centres.add(int(made // interval))
    steps = {c + k for c in centres for k in range(-window, window + 1) if c + k >= 0}
    for step in sorted(steps, reverse=True):
        if hmac.compare_digest(totp.generate_otp(step), last_otp):
            return step
    return None


def _user_line(lines: list[str], entry: OathEntry) -> tuple[int, list[str]] | None:
    """``(index, fields)`` of the line of ``entry`` (same type, name and secret), or None."""
    for index, raw in enumerate(lines):
        fields = raw.split()
        if (
            len(fields) >= 4
            and fields[0] == entry.token_type
            and fields[1] == entry.username
            and fields[3].lower() == entry.secret_hex
        ):
            return index, fields
    return None


def read_recorded_step(
    path: Path, entry: OathEntry, secret: str, *, now: float, window: int
) -> int | None:
    """The step of the code last accepted for ``entry`` according to the users file
    (blocking; run it in a thread). No lock: every writer replaces the file atomically.

    Returns:
        The step (see :func:`recorded_step`), or None when the file, the line or its
        state is missing.

    Raises:
        OSError: the file exists but cannot be read.
    """
    current = _current(path)
    if current is None:
        return None
    found = _user_line(current[0].splitlines(), entry)
    state = _state_of(found[1]) if found is not None else None
    if state is None:
        return None
    return recorded_step(
        secret, state[1], state[2], interval=entry.interval, now=now, window=window
    )


def write_record(
    path: Path,
    entry: OathEntry,
    secret: str,
    step: int,
    *,
    now: float,
    window: int,
    lock_timeout: float,
) -> bool:
    """Record ``step`` as ``entry``'s last accepted code, in liboath's form, so pam_oath
    refuses that code and older ones (blocking; run it in a thread).

    Under liboath's lock the file is read again; the line gets ``COUNTER LASTOTP TIME``
    with COUNTER kept (``0`` when there was none), LASTOTP the code of ``step`` and TIME
    ``now`` in local time; the file is replaced atomically (mode 0600). A record that is
    already at ``step`` or newer is never moved back.

    Returns:
        False when the file already records ``step`` or a newer step: pam_oath accepted
        that code (or a newer one) since the caller looked. True otherwise, including
        when there is nothing to record (no file, or no line for this secret).

    Raises:
        OSError: the lock, the read or the replace failed (then the file is unchanged).
    """
    with liboath_lock(path, lock_timeout):
        current = _current(path)
        if current is None:
            return True
        lines = current[0].splitlines(keepends=True)
        found = _user_line(lines, entry)
        if found is None:
            return True
        index, fields = found
        state = _state_of(fields)
        if state is not None:
            seen = recorded_step(
                secret, state[1], state[2], interval=entry.interval, now=now, window=window
            )
            if seen is not None and seen >= step:
                return False
        counter = state[0] if state is not None else "0"
        code = pyotp.TOTP(secret, digits=entry.digits, interval=entry.interval).generate_otp(step)
        lines[index] = entry.line((counter, code, format_stamp(now)))
        replace_file(path, "".join(lines), 0o600)
        return True
