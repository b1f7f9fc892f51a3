"""How SpareCycles starts itself: the one command line for another process of
this very installation (the tray app's engine child, ``submit``'s background
dispatcher, the start at login).

From a pip install that is this interpreter with ``-m sparecycles``; inside
the PyInstaller bundle ``sys.executable`` is the bundle's own program (no
Python interpreter, no ``-m``), which takes the arguments directly. Paths are
absolute, so the command works from any folder and from a login session
whose PATH knows nothing of a virtual environment.
"""

from __future__ import annotations

import sys
from pathlib import Path


def is_frozen() -> bool:
    """True inside the PyInstaller bundle (its executable is no Python interpreter)."""
    return bool(getattr(sys, "frozen", False))


def sparecycles_command(*args: str) -> list[str]:
    """The command line that runs this installation with ``args`` (none: the tray app)."""
    if is_frozen():
        return [str(Path(sys.executable).resolve()), *args]
    return [str(Path(sys.executable).absolute()), "-m", "sparecycles", *args]
