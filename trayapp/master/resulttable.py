"""A job's results as a table: one row per task, its parameters and the scalars it wrote.

A task's scalars are what it left in JSON files at the top of its results
folder: every number, string, true/false or null of a JSON object (``rate.json``
holding ``{"rate_hz": 6.2}`` gives the column ``rate_hz``), or the file's whole
content when that is one such value (``rate.json`` holding ``6.2`` gives
``rate``). Two files with the same key keep both, as ``file.key``. Nested
values are left out: they are not a column. Only JSON is read here, never a
pickle, so tabulating results from another PC runs no code of theirs.

The Python API's ``Job.to_frame()`` and the tray window's results plot both
read this table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trayapp.master.results import MARKER_FILE
from trayapp.master.store import JobRecord, Store
from trayapp.status import TaskStatus
from trayapp.taskparams import JSON_FILE, pickled_bytes

NOT_RESULTS = {JSON_FILE, MARKER_FILE}
MAX_JSON_BYTES = 16 << 20  # a larger file is data, not a handful of scalars: not parsed for the table

Scalar = int | float | str | bool | None


@dataclass(frozen=True)
class ResultRow:
    index: int
    state: TaskStatus
    exit_code: int | None
    params: object  # as stored: a dict of JSON values, or a pickled set's wrapper
    folder: Path
    scalars: dict[str, Scalar]

    @property
    def plain_params(self) -> dict:
        """The parameters as columns: empty for a pickled set (only its owner may unpickle it)."""
        return self.params if isinstance(self.params, dict) and pickled_bytes(self.params) is None else {}


def is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def task_scalars(folder: Path) -> dict[str, Scalar]:
    """The scalars of the JSON files at the top of one task's results folder."""
    found: dict[str, dict[str, Scalar]] = {}  # file stem -> key -> value
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.name not in NOT_RESULTS)
    except OSError:
        return {}
    for path in files:
        try:
            if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a file the task half-wrote or that is not JSON is not a column
        if isinstance(data, dict):
            found[path.stem] = {str(k): v for k, v in data.items() if is_scalar(v)}
        elif is_scalar(data):
            found[path.stem] = {path.stem: data}
    counts: dict[str, int] = {}
    for values in found.values():
        for key in values:
            counts[key] = counts.get(key, 0) + 1
    return {(key if counts[key] == 1 else f"{stem}.{key}"): value
            for stem, values in found.items() for key, value in values.items()}


def result_rows(store: Store, job: JobRecord) -> list[ResultRow]:
    """One row per task of ``job``, in task order (tasks without results have no scalars)."""
    root = Path(job.results_dir)
    rows = []
    for task in store.tasks(job.seq):
        folder = root / str(task.idx)
        rows.append(ResultRow(task.idx, task.status, task.exit_code, task.params, folder, task_scalars(folder)))
    return rows


def numeric_columns(rows: list[ResultRow]) -> tuple[list[str], list[str]]:
    """The parameters and the result scalars that are numbers in every row that
    has them (and in at least one): what a plot can put on an axis or a colour."""
    def numeric(columns: list[dict]) -> list[str]:
        names = list(dict.fromkeys(key for values in columns for key in values))
        return [name for name in names
                if all(is_number(values[name]) for values in columns if name in values)]
    return numeric([row.plain_params for row in rows]), numeric([row.scalars for row in rows if row.scalars])
