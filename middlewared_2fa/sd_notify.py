"""systemd's service notification protocol, spoken with the standard ``socket`` module.

A service of ``Type=notify`` tells the service manager about its state by sending
datagrams of newline-separated ``NAME=VALUE`` assignments (``READY=1``, ``STOPPING=1``,
``STATUS=...``) to the ``AF_UNIX`` ``SOCK_DGRAM`` socket named in ``$NOTIFY_SOCKET``:
a file system path, or an abstract socket when the name starts with ``@`` (sd_notify(3),
"Description" and "Notes"). Without ``$NOTIFY_SOCKET`` (not started by systemd, or not
as ``Type=notify``) nothing is sent.

Notifying is best effort: a daemon that cannot reach the service manager still serves,
and systemd's own start timeout deals with a READY=1 that never arrives. The first
failure is logged as a warning, later ones only at DEBUG.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

#: ``sun_path`` holds 108 bytes, the last one for a path's terminating NUL.
_MAX_PATH = 107
#: Seconds a send may wait for room in the receiver's queue: the event loop waits too,
#: but systemd reads at once, and a READY=1 dropped on a full queue would get the
#: service killed at TimeoutStartSec.
_SEND_TIMEOUT = 2.0


def parse_address(value: str | None) -> str | None:
    """The ``AF_UNIX`` address that ``$NOTIFY_SOCKET`` names.

    Args:
        value: The variable's value: an absolute path, or ``@name`` for the abstract
            socket ``name`` (sd_notify(3), "Notes").

    Returns:
        The address for :meth:`socket.socket.sendto`: the path, or the name after a NUL
        byte for an abstract socket (unix(7), "Abstract sockets"); None when ``value``
        is unset or empty.

    Raises:
        ValueError: ``value`` is a relative path or another kind of address (systemd
            also knows ``vsock:``), is too long for ``sun_path`` (107 bytes for a path,
            108 for an abstract name with its leading NUL), or holds a NUL byte.
    """
    if not value:
        return None
    if "\0" in value:
        raise ValueError("NOTIFY_SOCKET holds a NUL byte")
    if value.startswith("@"):
        address = "\0" + value[1:]
        if len(address) == 1 or len(os.fsencode(address)) > _MAX_PATH + 1:
            raise ValueError(f"NOTIFY_SOCKET {value!r} is not a usable abstract socket name")
        return address
    if value.startswith("/"):
        if len(os.fsencode(value)) > _MAX_PATH:
            raise ValueError(f"NOTIFY_SOCKET {value!r} is longer than {_MAX_PATH} bytes")
        return value
    raise ValueError(f"NOTIFY_SOCKET {value!r} is neither an absolute path nor @name")


class Notifier:
    """Sends notifications to one service manager socket; does nothing without one.

    Args:
        address: From :func:`parse_address`; None disables every send.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier for ``$NOTIFY_SOCKET`` (of ``environ``, default ``os.environ``).
        An address that cannot be used is logged once, as a failed send would be, and
        disables the notifier."""
        value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
        try:
            return cls(parse_address(value))
        except ValueError as exc:
            notifier = cls(None)
            notifier._failed(str(exc))
            return notifier

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` (``"READY=1"``, ``"STATUS=..."``) in one datagram.

        Returns:
            True when the datagram was sent; False when disabled or the send failed
            (logged, never raised).
        """
        if self.address is None or not assignments:
            return False
        # One assignment per line: a newline inside STATUS would start a bogus one.
        data = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT)
                sock.sendto(data, self.address)
        except OSError as exc:
            self._failed(f"cannot notify the service manager at {self._shown()}: {exc}")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is finished, the daemon serves (and ``STATUS=status``)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun (and ``STATUS=status``)."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        """``STATUS=status``: a line for ``systemctl status``."""
        return self.notify(f"STATUS={status}")

    def _shown(self) -> str:
        address = self.address or ""
        return "@" + address[1:] if address.startswith("\0") else address

    def _failed(self, message: str) -> None:
        if self._warned:
            logger.debug("%s", message)
            return
        self._warned = True
        logger.warning("%s (further failures are logged at DEBUG only)", message)
