"""Logging set-up with a filter that keeps secrets out of every record.

Services register each secret, password and code they handle with :func:`redact`; the
filter also masks anything that looks like a provisioning URI or a password/token field.
"""

from __future__ import annotations

import logging
import re
import sys
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


def setup_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    """Configure the root logger: stderr (and ``log_file``), secrets filtered everywhere."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(SecretFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets logs every handshake failure with a traceback at INFO/ERROR; keep it terse.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: password hashes and
    # encrypted seeds would reach the log file.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
