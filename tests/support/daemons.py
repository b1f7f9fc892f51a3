"""``sparecycles slave`` in its own SPARECYCLES_HOME, as a real child process."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from trayapp.home import Home
from trayapp.install.selfcommand import sparecycles_command
from trayapp.slave.endpoint import socket_path


class SlaveDaemon:
    """``sparecycles slave`` in its own home, as a real child process."""

    def __init__(self, home: Path, slots: int = 2, env: dict | None = None, program: list[str] | None = None):
        """``program``: the ``sparecycles`` command of another installation (a
        venv's console script), else this one's; it runs in ``home``, so no
        source tree in the working folder can stand in for the installed code."""
        self.home = home
        self.slots = slots
        self.env = {**os.environ, **(env or {}), "SPARECYCLES_HOME": str(home)}  # its home, whatever env says
        self.program = program or sparecycles_command()
        self.proc: subprocess.Popen | None = None

    def start(self, *, prelude: str | None = None) -> "SlaveDaemon":
        """Start it; ``prelude``: Python run in the daemon before SpareCycles starts
        (a test patching back an old code path, to show an attack once worked)."""
        self.home.mkdir(parents=True, exist_ok=True)
        command = [*self.program, "slave", "--slots", str(self.slots)]
        if prelude is not None:
            boot = f"{prelude}\nimport sys\nfrom sparecycles.launch import main\nsys.exit(main(sys.argv[1:]))\n"
            command = [sys.executable, "-c", boot, *command[command.index("slave"):]]
        self.proc = subprocess.Popen(command, cwd=self.home,
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.home / "slave-daemon.log", "ab"))
        sock = socket_path(Home.from_environment({"SPARECYCLES_HOME": str(self.home)}))
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"slave daemon did not start: {self.log()}")
            time.sleep(0.05)
        return self

    @property
    def agent_command(self) -> str:
        return f"env SPARECYCLES_HOME={shlex.quote(str(self.home))} {shlex.join([*self.program, 'agent'])}"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log(self) -> str:
        try:
            return (self.home / "slave-daemon.log").read_text()
        except OSError:
            return ""
