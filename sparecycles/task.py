"""Inside a task: the parameter set it runs with.

A task finds its set in ``params.json`` in its working folder (and as JSON in
``sys.argv[1]``); a set that was not JSON (submitted from Python) is in
``params.pkl`` beside it, and those two hold only a marker. ``task_params()``
hides the difference.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

from trayapp.errors import UserError
from trayapp.taskparams import JSON_FILE, PICKLE_KEY, PICKLE_MARKER, pickled_bytes


def task_params(folder: str | os.PathLike | None = None) -> object:
    """The parameter set this task runs with, exactly as it was submitted.

    Reads ``params.json`` (and, for a set that was pickled, ``params.pkl``)
    from ``folder``, by default the working folder the task started in; when
    there is no ``params.json`` there, ``sys.argv[1]``.
    """
    here = Path(folder) if folder is not None else Path.cwd()
    path = here / JSON_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = sys.argv[1] if len(sys.argv) > 1 else None
        if text is None:
            raise _not_in_a_task(here) from None
    try:
        params = json.loads(text)
    except ValueError:
        raise UserError(f"{path} (or sys.argv[1]) is not the JSON of a parameter set",
                        "call task_params() from the job's main script as SpareCycles starts it, "
                        "before changing folder or sys.argv") from None
    if params == PICKLE_MARKER:
        return _load_pickled(here / params[PICKLE_KEY])
    data = pickled_bytes(params)  # a folder made by hand from the queue's stored form
    return params if data is None else pickle.loads(data)


def _load_pickled(path: Path) -> object:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"the parameter set was pickled, but {path} is missing",
                        "call task_params() from the task's own folder (before any os.chdir), "
                        "or pass that folder: task_params(folder)") from None
    try:
        return pickle.loads(data)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot rebuild the parameter set from {path}: {exc}",
                        "install in the task environment the packages its objects come from "
                        "(and cloudpickle, for classes defined in a notebook or script)") from None


def _not_in_a_task(here: Path) -> UserError:
    inside = "SPARECYCLES_TASK" in os.environ
    return UserError(f"no {JSON_FILE} in {here} and no parameters in sys.argv" +
                     ("" if inside else ": this does not look like a SpareCycles task"),
                     "call task_params() in a job's main script run by SpareCycles, from its own folder; "
                     f"to try the script by hand, put a {JSON_FILE} beside it")
