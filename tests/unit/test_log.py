"""The logging filter keeps secrets out of every record (STYLE convention 9)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from middlewared_2fa.log import (
    JournalFormatter,
    SecretFilter,
    redact,
    scrub,
    stderr_is_journal,
)


def test_scrub_uri_and_fields() -> None:
    """Provisioning URIs and password/token/secret fields are masked."""
    text = scrub("uri otpauth://totp/x:y?secret=ABC&issuer=x password=hunter2 'token': 'tok'")
    assert "ABC" not in text and "hunter2" not in text and "tok'" not in text
    assert "otpauth://********" in text


def test_registered_values_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    """A value passed to redact() never reaches a handler, in messages or tracebacks."""
    redact("SUPERSECRETVALUE")
    logger = logging.getLogger("test.secret")
    handler_filter = SecretFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        logger.warning("value %s here", "SUPERSECRETVALUE")
        try:
            raise ValueError("boom SUPERSECRETVALUE")
        except ValueError:
            logger.exception("failed")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert "SUPERSECRETVALUE" not in caplog.text
    assert "value ******** here" in caplog.text


def test_journal_lines_carry_the_syslog_priority() -> None:
    """For journald each line starts with <N> (3 error, 4 warning, 6 info, 7 debug) and has
    no time; the lines of a traceback keep the record's priority."""
    formatter = JournalFormatter()

    def line(level: int, msg: str, exc_info: Any = None) -> str:
        return formatter.format(logging.LogRecord("x.y", level, __file__, 1, msg, None, exc_info))

    assert line(logging.INFO, "up") == "<6>INFO x.y: up"
    assert line(logging.WARNING, "hm") == "<4>WARNING x.y: hm"
    assert line(logging.DEBUG, "d") == "<7>DEBUG x.y: d"
    assert line(logging.CRITICAL, "c") == "<2>CRITICAL x.y: c"
    try:
        raise ValueError("boom")
    except ValueError:
        text = line(logging.ERROR, "failed", sys.exc_info())
    assert text.startswith("<3>ERROR x.y: failed\n<3>Traceback")
    assert all(part.startswith("<3>") for part in text.splitlines())


def test_stderr_is_journal_only_when_it_names_fd_2(tmp_path: Path) -> None:
    """JOURNAL_STREAM counts only when its DEV:INODE is stderr's own file."""
    st = os.fstat(sys.stderr.fileno())
    assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    other = tmp_path / "other"
    other.touch()
    ost = os.stat(other)
    assert not stderr_is_journal({"JOURNAL_STREAM": f"{ost.st_dev}:{ost.st_ino}"})
    assert not stderr_is_journal({})
    assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"})
    assert not stderr_is_journal({"JOURNAL_STREAM": "1:x"})
