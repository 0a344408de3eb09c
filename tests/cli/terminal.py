"""Run a command on a pseudo-terminal that is its controlling terminal, as a user's shell
would, so that prompts on ``/dev/tty`` can be answered by a test."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from pathlib import Path

#: Upper bound for any single wait on the child: a hang guard, never a measurement.
HANG_GUARD = 120.0

# ``os.login_tty`` makes fd 0 (the pty's slave side) the controlling terminal of a new
# session and stdin/stdout/stderr, then the real command replaces the launcher.
_LAUNCHER = "import os, sys; os.login_tty(0); os.execv(sys.argv[1], sys.argv[1:])"


class Terminal:
    """A child process whose stdin, stdout, stderr and ``/dev/tty`` are one pty."""

    def __init__(self, argv: list[str], *, env: Mapping[str, str], cwd: Path) -> None:
        master, slave = os.openpty()
        self._master = master
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, *argv],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env),
                cwd=cwd,
            )
        finally:
            os.close(slave)
        self.output = ""
        self._seen = 0
        self._eof = False

    def _read(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no progress on the terminal; output so far: {self.output!r}")
        ready, _, _ = select.select([self._master], [], [], left)
        if not ready:
            return
        try:
            chunk = os.read(self._master, 4096)
        except OSError:  # EIO: every slave side is closed, the child is gone
            chunk = b""
        if not chunk:
            self._eof = True
        self.output += chunk.decode("utf-8", "replace")

    def expect(self, text: str) -> str:
        """Wait until ``text`` appears after what earlier calls consumed; returns the output
        from there up to and including ``text``."""
        deadline = time.monotonic() + HANG_GUARD
        while text not in self.output[self._seen :]:
            if self._eof:
                raise AssertionError(f"{text!r} never appeared; output: {self.output!r}")
            self._read(deadline)
        end = self.output.index(text, self._seen) + len(text)
        consumed, self._seen = self.output[self._seen : end], end
        return consumed

    def send(self, text: str) -> None:
        """Type ``text`` (``\\n`` is Enter, ``\\x03`` Ctrl-C, ``\\x04`` Ctrl-D)."""
        os.write(self._master, text.encode())

    def finish(self) -> tuple[int, str]:
        """Wait for the child to end; returns (exit status, output after the last expect)."""
        deadline = time.monotonic() + HANG_GUARD
        try:
            while not self._eof:
                self._read(deadline)
            status = self.process.wait(timeout=HANG_GUARD)
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise
        return status, self.output[self._seen :]

    def echo_enabled(self) -> bool:
        """Whether the terminal echoes typed characters (the slave's ECHO flag)."""
        return bool(termios.tcgetattr(self._master)[3] & termios.ECHO)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)
