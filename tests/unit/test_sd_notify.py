"""The sd_notify module: ``$NOTIFY_SOCKET`` addresses (sd_notify(3)) and best-effort sends."""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from middlewared_2fa.sd_notify import Notifier, parse_address
from tests.helpers.daemon import short_tempdir


@pytest.fixture
def folder() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        (None, None),
        ("", None),
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/123", "\0/org/freedesktop/systemd1/notify/123"),
        ("/" + "a" * 106, "/" + "a" * 106),  # 107 bytes: sun_path less its final NUL
        ("@" + "a" * 107, "\0" + "a" * 107),  # 108 bytes: an abstract name has no NUL end
    ],
)
def test_parse_address(value: str | None, address: str | None) -> None:
    """A path is used as it is, '@name' becomes the abstract name after a NUL byte, and an
    unset or empty variable means no service manager."""
    assert parse_address(value) == address


@pytest.mark.parametrize(
    "value",
    [
        "run/notify",  # relative
        "vsock:2:1234",  # systemd 254's VSOCK form: not spoken here
        "@",  # an empty abstract name
        "/" + "a" * 107,  # 108 bytes: no room for the NUL
        "@" + "a" * 108,
        "/run/no\0tify",
    ],
)
def test_parse_address_refuses(value: str) -> None:
    """Relative paths, other address kinds, names too long for sun_path and NUL bytes are
    refused."""
    with pytest.raises(ValueError):
        parse_address(value)


def test_no_notify_socket_sends_nothing() -> None:
    """Without NOTIFY_SOCKET every notification is a no-op that reports False."""
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.stopping() is False


def test_one_datagram_per_notification(folder: Path) -> None:
    """ready() sends READY=1 and STATUS in one datagram, one assignment per line; a
    newline inside the status cannot start another assignment."""
    path = folder / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        receiver.settimeout(10)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(path)})
        assert notifier.ready("listening on\nMAINPID=1") is True
        assert receiver.recv(4096) == b"READY=1\nSTATUS=listening on MAINPID=1"
        assert notifier.stopping("shutting down") is True
        assert receiver.recv(4096) == b"STOPPING=1\nSTATUS=shutting down"
        assert notifier.status("idle") is True
        assert receiver.recv(4096) == b"STATUS=idle"


def test_abstract_socket(folder: Path) -> None:
    """An '@name' NOTIFY_SOCKET reaches a receiver bound to the abstract name."""
    name = f"m2fa-unit-{folder.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(10)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready() is True
        assert receiver.recv(4096) == b"READY=1"


def test_failures_are_logged_once(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Sends to a socket nobody listens on fail without raising; the first failure is a
    warning naming the address, later ones are DEBUG records."""
    caplog.set_level(logging.DEBUG, logger="middlewared_2fa.sd_notify")
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(folder / "gone")})
    assert notifier.ready() is False
    assert notifier.stopping() is False
    levels = [r.levelno for r in caplog.records if r.name == "middlewared_2fa.sd_notify"]
    assert levels == [logging.WARNING, logging.DEBUG]
    assert str(folder / "gone") in caplog.records[0].getMessage()


def test_unusable_address_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """An address that cannot be used disables the notifier with one warning."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "relative/notify"})
    assert not notifier.enabled
    assert notifier.ready() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "relative/notify" in warnings[0].getMessage()
