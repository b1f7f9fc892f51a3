"""A parameter set on its way to a task: JSON, or a pickle in a marked JSON wrapper.

Parameter sets from a file are JSON. From the Python API a set may be any
picklable object (a ``Fraction``, Brian quantities, an instance of the user's
class); the user's process pickles it and stores it as
``{"__sparecycles_pickle__": "<base64>"}``. That wrapper is plain JSON, so the
queue, the protocol and the master treat it as data like any other set: no
pickle crosses the wire as a pickle, and nothing on the master or the slave
ever unpickles it. Only the task does, when it asks for its parameters
(``sparecycles.task_params()``), since it runs the submitting user's code anyway.

In the task's folder a pickled set becomes ``params.pkl``; ``params.json``
and ``sys.argv[1]`` then hold a small marker, ``{"__sparecycles_pickle__":
"params.pkl"}``, so a script that reads them sees what happened instead of
failing on a missing file. This module imports nothing of the rest of trayapp:
the runner (writing the files) and the API (making and reading the wrapper)
both use it.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

PICKLE_KEY = "__sparecycles_pickle__"
PICKLE_FILE = "params.pkl"
JSON_FILE = "params.json"
PICKLE_MARKER = {PICKLE_KEY: PICKLE_FILE}
# Linux refuses to start a program with one argument longer than MAX_ARG_STRLEN
# (32 pages: 128 KiB with its closing NUL), so a set over this cannot be argv[1].
ARGUMENT_MAX_BYTES = 128 * 1024 - 1


def wrap_pickle(data: bytes) -> dict:
    """The JSON form of a pickled parameter set, as stored in the queue."""
    return {PICKLE_KEY: base64.b64encode(data).decode("ascii")}


def pickled_bytes(params: object) -> bytes | None:
    """The pickle inside a wrapped parameter set, or None if ``params`` is not
    a well-formed wrapper (then it is an ordinary set and travels as JSON).
    Never raises: a slave must not fail on a malformed set from a master."""
    if not (isinstance(params, dict) and len(params) == 1 and isinstance(params.get(PICKLE_KEY), str)):
        return None
    try:
        return base64.b64decode(params[PICKLE_KEY], validate=True)
    except (binascii.Error, ValueError):
        return None


def task_argument(params: object) -> str:
    """What the task finds in ``sys.argv[1]``: the set as JSON, or the marker."""
    return json.dumps(PICKLE_MARKER if pickled_bytes(params) is not None else params)


def argument_bytes(params: object) -> int:
    """How long ``sys.argv[1]`` would be for this set, in bytes."""
    return len(task_argument(params).encode("utf-8"))


def write_task_params(work: Path, params: object) -> None:
    """Give the task its parameter set: ``params.json``, plus ``params.pkl`` for a pickled one."""
    data = pickled_bytes(params)
    if data is not None:
        (work / PICKLE_FILE).write_bytes(data)
        params = PICKLE_MARKER
    (work / JSON_FILE).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
