"""A real X display for tests: Xvfb on a free display number, input from xdotool.

``Xvfb -displayfd`` picks a display number nobody uses and writes it once the
server accepts connections, so two test runs (or a developer's own X server)
never collide and no test sleeps "long enough" for the server to come up.
Only the processes that need the display get ``DISPLAY``: the tests pass it
in explicitly, and the rest of the suite keeps running headless.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path


def have_xvfb() -> bool:
    return shutil.which("Xvfb") is not None and shutil.which("xdotool") is not None


class Xvfb:
    def __init__(self, width: int = 1024, height: int = 768, log: Path | None = None):
        self.size = (width, height)
        self.log = log  # the server's messages; None: dropped
        self.proc: subprocess.Popen | None = None
        self.display = ""

    def start(self, timeout: float = 20.0) -> "Xvfb":
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{self.size[0]}x{self.size[1]}x24",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab") if self.log is not None else subprocess.DEVNULL)
        os.close(write_fd)
        deadline = time.monotonic() + timeout
        number = b""
        with os.fdopen(read_fd, "rb") as reader:
            while not number.endswith(b"\n"):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"Xvfb did not start{self._log_text()}")
                chunk = reader.read(1)
                if not chunk:
                    self.stop()
                    raise RuntimeError(f"Xvfb closed its display pipe without a number{self._log_text()}")
                number += chunk
        self.display = f":{int(number)}"
        return self

    def _log_text(self) -> str:
        return f": {self.log.read_text(errors='replace')}" if self.log is not None and self.log.exists() else ""

    @property
    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display}

    def xdotool(self, *args: str) -> float:
        """Run xdotool against this display; returns time.monotonic() just before
        it started (an upper bound on the input's moment is when it returns)."""
        started = time.monotonic()
        subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": self.display}, check=True,
                       capture_output=True, timeout=10)
        return started

    def key(self, key: str = "shift") -> float:
        return self.xdotool("key", key)

    def move_mouse(self, x: int, y: int) -> float:
        return self.xdotool("mousemove", str(x), str(y))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
