"""What a job's tasks left behind, for the caller to read.

:class:`TaskResult` is one task: its parameter set, how it ended and its
results folder, with :meth:`TaskResult.load` for the usual file types.
:func:`results_frame` puts a whole job in a pandas DataFrame.

Nothing here unpickles a file a task wrote: a pickle from another PC can run
any code while it loads. (``sparecycles.map`` is the one, explicit exception.)
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparecycles.errors import MissingPackage
from sparecycles.paramsets import decode_param_set
from trayapp.errors import UserError
from trayapp.job.params import convert_cell
from trayapp.master.resulttable import ResultRow
from trayapp.master.results import LOG_FILES, MARKER_FILE

LOADERS = (".json", ".npy", ".npz", ".csv", ".txt", ".log")


@dataclass(frozen=True)
class TaskResult:
    """One task of a job: ``index``, ``params`` (the set as submitted), ``state``
    (``"done"``, ``"failed"``, ...), ``exit_code`` and ``folder``, where its
    ``results/`` came back to (with ``stdout.txt`` and ``stderr.txt``)."""

    index: int
    params: Any
    state: str
    exit_code: int | None
    folder: Path
    message: str | None = None
    scalars: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "done"

    @property
    def stdout(self) -> str:
        return self._text("stdout.txt")

    @property
    def stderr(self) -> str:
        return self._text("stderr.txt")

    def _text(self, name: str) -> str:
        try:
            return (self.folder / name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def files(self) -> list[str]:
        """What the task wrote, as paths relative to its folder (logs and SpareCycles' own files left out)."""
        if not self.folder.is_dir():
            return []
        skip = {*LOG_FILES, MARKER_FILE, "params.json"}
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*")
                      if p.is_file() and p.relative_to(self.folder).as_posix() not in skip)

    def load(self, name: str) -> Any:
        """Read a file the task wrote, by its suffix: ``.json`` (the value), ``.npy``
        (an array), ``.npz`` (a dict of arrays), ``.csv`` (a list of row dicts,
        numbers converted), ``.txt``/``.log`` (the text)."""
        path = self.folder / name
        suffix = path.suffix.lower()
        if suffix not in LOADERS:
            fix = f"read it yourself from {path}"
            if suffix in (".pkl", ".pickle"):
                fix = ("write JSON, NPY or CSV from the task instead; if you trust every PC that ran it, "
                       f"pickle.load(open({str(path)!r}, 'rb'))")
            raise UserError(f"load() reads {', '.join(LOADERS)} files, not '{name}'", fix)
        if not path.is_file():
            wrote = ", ".join(self.files()) or "nothing"
            raise UserError(f"task {self.index} ({self.state}) has no {name} in {self.folder} (it wrote: {wrote})",
                            "check the name, and that the task writes it under results/")
        if suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        if suffix == ".npy":
            return _need("numpy", "load() of a .npy file").load(path, allow_pickle=False)
        if suffix == ".npz":
            with _need("numpy", "load() of a .npz file").load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        if suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as fh:
                return [{key: convert_cell(value.strip()) if value and value.strip() else None
                         for key, value in row.items()} for row in csv.DictReader(fh)]
        return path.read_text(encoding="utf-8", errors="replace")


def task_result(row: ResultRow, message: str | None) -> TaskResult:
    return TaskResult(row.index, decode_param_set(row.params), row.state.value, row.exit_code, row.folder,
                      message, dict(row.scalars))


def results_frame(results: list[TaskResult]):
    """One row per task (indexed by task number): its state, its parameters and
    the scalars of its JSON results. A result that repeats a parameter with the
    same value is left out; one that differs becomes ``result.<name>``."""
    pandas = _need("pandas", "Job.to_frame()")
    rows = []
    renamed: set[str] = set()
    for task in results:
        row: dict[str, Any] = {"task": task.index, "state": task.state}
        params = task.params if isinstance(task.params, dict) else {"params": task.params}
        row.update(params)
        for name, value in task.scalars.items():
            if name in params:
                if _same(params[name], value):
                    continue
                renamed.add(name)
                name = f"result.{name}"
            row[name] = value
        rows.append(row)
    if renamed:
        # Said, not done silently: code that reads frame["rate_hz"] gets the parameter.
        names = ", ".join(sorted(renamed))
        warnings.warn(f"results and parameters share the name(s) {names}; the parameter keeps the name and the "
                      f"result is the column result.<name> (e.g. result.{sorted(renamed)[0]})", stacklevel=3)
    return pandas.DataFrame(rows).set_index("task")


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an array parameter compares elementwise
        return False


def _need(package: str, what: str):
    try:
        return __import__(package)
    except ImportError:
        raise MissingPackage(f"{what} needs {package}, which is not installed in this Python ({sys.executable})",
                             f"install it: {sys.executable} -m pip install {package} "
                             "(or use job.results(), which needs nothing extra)") from None
