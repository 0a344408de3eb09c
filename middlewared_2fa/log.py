"""Logging set-up with a filter that keeps secrets out of every record.

Services register each secret, password and code they handle with :func:`redact`; the
filter also masks anything that looks like a provisioning URI or a password/token field.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

_URI = re.compile(r"otpauth://\S+", re.IGNORECASE)
_FIELDS = re.compile(
    r"""(["']?(?:password|otp_token|token|secret|admin_password)["']?\s*[:=]\s*)(["'][^"']*["']|\S+)""",
    re.IGNORECASE,
)
_MASK = "********"


class _Registry:
    """Values to mask: the most recent 4096, so the registry never grows without bound."""

    def __init__(self) -> None:
        self._values: dict[str, None] = {}

    def add(self, value: str) -> None:
        # Short values would mask ordinary words; long ones (an attacker's 4 KiB
        # "password") would make every log line slow to scrub.
        if 4 <= len(value) <= 256:
            self._values[value] = None
            if len(self._values) > 4096:
                self._values.pop(next(iter(self._values)))

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, _MASK)
        return text


_registry = _Registry()


def redact(value: str | None) -> None:
    """Mask ``value`` in every later log record (secrets, passwords, URIs, codes >= 4 chars)."""
    if value:
        _registry.add(value)


def scrub(text: str) -> str:
    """``text`` with provisioning URIs, secret-like fields and registered values masked."""
    text = _URI.sub("otpauth://" + _MASK, text)
    text = _FIELDS.sub(lambda m: m.group(1) + _MASK, text)
    return _registry.scrub(text)


class SecretFilter(logging.Filter):
    """Rewrites each record's message (and traceback) through :func:`scrub`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(formatted)
            record.exc_info = None
        return True


class JournalFormatter(logging.Formatter):
    """Lines for journald: no time (the journal stamps each entry itself), and the
    record's syslog priority as a ``<N>`` prefix, which journald takes off and stores as
    PRIORITY (``SyslogLevelPrefix=``, on by default; sd-daemon(3)), so that
    ``journalctl -p warning`` finds warnings and errors."""

    #: Python level -> syslog priority (RFC 5424 §6.2.1: 2 crit, 3 err, 4 warning, 6 info,
    #: 7 debug); a custom level gets the priority of the standard level at or below it.
    PRIORITIES = (
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
    )

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in self.PRIORITIES if record.levelno >= level), 7)
        # journald makes one entry of each line (and ends one at a NUL too): a
        # traceback's lines keep the priority, and a NUL cannot start a forged entry.
        text = super().format(record).replace("\x00", "\\x00")
        return f"<{priority}>" + text.replace("\n", f"\n<{priority}>")


def stderr_is_journal(environ: Mapping[str, str] | None = None) -> bool:
    """Whether stderr is the journal stream that systemd connected it to.

    systemd sets ``$JOURNAL_STREAM`` to ``DEV:INODE`` (decimal) of the stream it gives a
    service's stdout/stderr (systemd.exec(5), "Environment variables in spawned
    processes"). The variable is inherited by children whose stderr goes elsewhere (a
    shell in ``systemd-run``, a redirect), so it counts only when it names fd 2's file.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return bool(sep) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (AttributeError, OSError, ValueError):  # no stderr, a closed one, bad value
        return False


def setup_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    """Configure the root logger: stderr (and ``log_file``), secrets filtered everywhere.
    Lines on stderr carry no time when it is the journal (:func:`stderr_is_journal`)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JournalFormatter() if stderr_is_journal() else fmt)
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        handlers.append(file_handler)
    for handler in handlers:
        handler.addFilter(SecretFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets logs every handshake failure with a traceback at INFO/ERROR; keep it terse.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: password hashes and
    # encrypted seeds would reach the log file.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
