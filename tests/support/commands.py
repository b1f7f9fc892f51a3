"""The real ``sparecycles`` command line, run to completion in a child process."""

from __future__ import annotations

import os
import subprocess

from trayapp.install.selfcommand import sparecycles_command


class CommandFailed(AssertionError):
    """A ``sparecycles`` call that had to succeed did not (a test failure, not an error)."""


def sparecycles(*args: str, env: dict | None = None, timeout: float = 120, check: bool = False,
                input_text: str | None = None) -> subprocess.CompletedProcess:
    """``sparecycles ARGS`` with this environment plus ``env``; ``check``: raise
    :class:`CommandFailed`, with its output, unless it exits 0."""
    result = subprocess.run(sparecycles_command(*args), capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, input=input_text)
    if check and result.returncode != 0:
        raise CommandFailed(f"sparecycles {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n"
                            f"{result.stderr}")
    return result
