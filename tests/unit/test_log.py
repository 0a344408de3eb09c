"""The logging filter keeps secrets out of every record (STYLE convention 9)."""

from __future__ import annotations

import logging

import pytest

from middlewared_2fa.log import SecretFilter, redact, scrub


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
