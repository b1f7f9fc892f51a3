"""The main script must compile: a syntax error is refused at submit, once,
instead of failing on every host, once per task.

The app's own interpreter compiles first (no process to start). Only if it
finds an error and the task environment is another interpreter does that one
judge: a script may use syntax the task's newer Python has and ours lacks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from trayapp.errors import UserError

# Run by the task interpreter: prints the SyntaxError's fields, or nothing.
_PROBE = """
import json, sys
path = sys.argv[1]
try:
    compile(open(path, 'rb').read(), path, 'exec', dont_inherit=True)
except SyntaxError as e:
    print(json.dumps([e.msg, e.lineno, e.offset, e.text]))
"""


def syntax_error_in(path: Path, python: str | None = None) -> SyntaxError | None:
    """The script's syntax error, or None when it compiles (for ``python`` too, if given)."""
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        return None
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL byte in the source
        error = exc if isinstance(exc, SyntaxError) else SyntaxError(str(exc), (str(path), 1, 1, None))
    if not python:
        return error
    try:
        out = subprocess.run([python, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return error  # no second opinion to be had: ours stands
    if not out.strip():
        return None  # the task's Python accepts it
    msg, line, offset, text = json.loads(out.strip().splitlines()[-1])
    return SyntaxError(msg, (str(path), line, offset, text))


def caret_lines(error: SyntaxError) -> str:
    """The offending line and a caret under the column, as Python prints them."""
    text = (error.text or "").rstrip("\n")
    if not text.strip():
        return ""
    stripped = text.lstrip()
    column = max((error.offset or 1) - 1 - (len(text) - len(stripped)), 0)
    return f"    {stripped}\n    {' ' * min(column, len(stripped))}^"


def check_main_compiles(root: Path, main: str, python: str | None = None) -> None:
    """Raise :class:`UserError` naming file, line and column if ``main`` does not compile."""
    error = syntax_error_in(root / main, python)
    if error is None:
        return
    where = f"{root / main}, line {error.lineno}" if error.lineno else str(root / main)
    shown = caret_lines(error)
    raise UserError(f"{main} has a syntax error ({error.msg}) at {where}:" + (f"\n{shown}" if shown else ""),
                    f"correct line {error.lineno} of {main}, then submit again; nothing was queued")
