"""``sparecycles.map``: a Python function over a list of items, one task per item.

The caller's function (defined in a script's ``__main__`` or a notebook cell
as well as in a module) is pickled with cloudpickle into a generated job
folder, beside a small ``main.py``; each item is a pickled parameter set, so
it reaches its task as ``params.pkl``. The task writes the function's value
into ``results/``: as ``value.json`` when JSON holds it exactly (numbers,
strings, lists, dicts with str keys), else as ``value.pkl``; a raised
exception becomes ``error.txt`` and a failed task.

Those files come home like any results (checked archives; the master reads
none of them). The values are loaded here, in the caller's own process, and
only for this call. ``value.json`` is only parsed. A ``value.pkl`` from this
PC's own cores is unpickled as it is; one from another PC (the attempt's host
in the queue) is loaded as plain data only (:mod:`sparecycles.plainpickle`):
its lender could have rewritten it, and a pickle can run any code as it loads.
A host marked ``trusted_pickles`` (``sparecycles hosts set NAME
--trusted-pickles yes``) is trusted as the caller's own code is.
"""

from __future__ import annotations

import json
import pickle
import re
import secrets
import sys
from typing import Any, Callable, Iterable

import cloudpickle

from sparecycles.errors import JobCancelled, TaskFailed, UntrustedValue, WaitTimeout
from sparecycles.jobhandle import Job, as_seconds
from sparecycles.paramsets import encode_param_set
from sparecycles.plainpickle import NotPlainData, load_plain
from sparecycles.results import TaskResult
from trayapp.app import App
from trayapp.errors import UserError
from trayapp.master.hosts import TRUSTED_PICKLES
from trayapp.master.kinds.local import LocalKind
from trayapp.master.store import Store

FUNCTION_FILE = "function.pkl"
VALUE_JSON, VALUE_PICKLE, ERROR_FILE = "value.json", "value.pkl", "error.txt"

# The task's main.py: the standard library only, so it runs in any task
# environment (cloudpickle must be there only for functions and classes
# defined by value, as in __main__).
TASK_SCRIPT = '''"""One item of sparecycles.map, written by SpareCycles: runs the function on it."""
import json, os, pickle, sys, traceback

PLAIN = (str, int, float, bool, type(None))


def exactly_json(value, depth=0):
    if depth > 50:
        return False
    if type(value) in PLAIN:
        return type(value) is not float or value == value and value not in (float("inf"), float("-inf"))
    if type(value) is list:
        return all(exactly_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and exactly_json(v, depth + 1) for k, v in value.items())
    return False


def main():
    os.makedirs("results", exist_ok=True)
    try:
        with open("params.json", encoding="utf-8") as fh:
            item_file = json.load(fh)["__sparecycles_pickle__"]
        with open(item_file, "rb") as fh:
            item = pickle.load(fh)
        with open("function.pkl", "rb") as fh:
            function = pickle.load(fh)
        value = function(item)
        if exactly_json(value):
            with open("results/value.json", "w", encoding="utf-8") as fh:
                json.dump(value, fh)
        else:
            with open("results/value.pkl", "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        with open("results/error.txt", "w", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def map(func: Callable[[Any], Any], iterable: Iterable[Any], timeout: float | str | None = None, *,
        name: str | None = None, retries: int = 0, time_limit: float | str | None = None,
        progress: bool = True) -> list:
    """``[func(item) for item in iterable]``, computed on the pool, one task per item.

    Blocks until every value is back (with a progress bar) and returns them in
    order. Raises :class:`TaskFailed` with the task's traceback if ``func``
    raised for an item (after ``retries`` more tries), :class:`WaitTimeout` if
    ``timeout`` passes first (the unfinished tasks are then cancelled) and
    :class:`UserError` if ``func`` or an item cannot be pickled.

    ``func`` runs in the task environment: the packages it uses must be
    installed there (from a pip install that is this Python). Functions from
    ``__main__`` or a notebook travel by value; so does the function's own
    module when it is not installed (a ``helpers.py`` beside the notebook).
    """
    if not callable(func):
        raise UserError(f"map() needs a function to call, not {type(func).__name__}",
                        "pass the function itself, e.g. sparecycles.map(simulate, rates)")
    items = list(iterable)
    if not items:
        return []
    label = name or f"map-{_safe_name(getattr(func, '__name__', 'function'))}"
    function_pickle = _pickle_function(func)
    sets = [encode_param_set(item, number, always_pickle=True, what="item")
            for number, item in enumerate(items, 1)]
    app = App.from_environment()
    folder = app.home.map_dir / f"{label}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(TASK_SCRIPT, encoding="utf-8")
    (folder / FUNCTION_FILE).write_bytes(function_pickle)
    submitted = app.jobs().submit(folder, param_sets=sets, name=label, main="main.py", retries=retries,
                                  time_limit_s=as_seconds(time_limit, "time_limit"))
    job = Job(app, submitted.job)
    try:
        job.wait(timeout, progress=progress)
    except WaitTimeout as exc:
        job.cancel()  # nobody will read the values of this call
        raise WaitTimeout(f"map over {len(items)} items: {exc.problem}; its unfinished tasks were cancelled",
                          f"give a longer timeout (or none); sparecycles.job('{job.id}').results() has the "
                          "values that came back") from None
    except KeyboardInterrupt:
        job.cancel()
        raise
    results = job.results()
    made_by = {t.idx: t.host for t in app.store.tasks(app.store.job(job.id).seq)}
    return [_value_of(task, job, made_by.get(task.index), app.store) for task in results]


def pickles_trusted_from(store: Store, host_name: str | None) -> bool:
    """Whether a pickle that ``host_name`` sent back may be loaded as it is: it
    is this PC's own cores, or the user marked it ``trusted_pickles``. A host
    no longer in the queue is not trusted: nothing vouches for it now."""
    if host_name is None:
        return False
    try:
        host = store.host(host_name)
    except UserError:
        return False
    return host.kind == LocalKind.name or host.options.get(TRUSTED_PICKLES) is True


def _pickle_function(func: Callable) -> bytes:
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    by_value = module is not None and _is_users_own(module)
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(func)
    except Exception as exc:  # noqa: BLE001 - pickling raises whatever the captured objects raise
        raise UserError(f"the function {getattr(func, '__qualname__', func)!r} cannot be pickled to run on other "
                        f"PCs: {type(exc).__name__}: {exc}",
                        "make it capture no open files, locks, sockets, database connections or generators "
                        "(create them inside the function), and pass data as the items") from None
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


def _is_users_own(module) -> bool:
    """A module from a file of the caller's (not installed, not the standard
    library): it does not exist on the PC that runs the task."""
    path = getattr(module, "__file__", None)
    if module.__name__ == "__main__" or not path:
        return False  # __main__ goes by value anyway; built-ins are everywhere
    installed = {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    installed.update((sys.base_prefix, sys.prefix))
    return not any(path.startswith(root) for root in installed)


def _value_of(task: TaskResult, job: Job, host: str | None, store: Store) -> Any:
    if task.state == "cancelled":
        raise JobCancelled(f"map job {job.id}: task {task.index} was cancelled",
                           f"run map() again, or sparecycles.job('{job.id}').retry() and collect its results")
    if task.state != "done":
        error = task.folder / ERROR_FILE
        where = error if error.is_file() else task.folder
        details = error.read_text(encoding="utf-8", errors="replace") if error.is_file() else task.stderr
        last = details.strip().splitlines()[-1] if details.strip() else (task.message or task.state)
        raise TaskFailed(f"map job {job.id}: the function failed on item #{task.index + 1}: {last}",
                         f"fix the function for that item; its traceback is in {where}",
                         index=task.index, details=details)
    if (task.folder / VALUE_JSON).is_file():
        return json.loads((task.folder / VALUE_JSON).read_text(encoding="utf-8"))
    path = task.folder / VALUE_PICKLE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"map job {job.id}: task {task.index} is done but brought back no value",
                        f"look in {task.folder}; run map() again") from None
    if pickles_trusted_from(store, host):
        return pickle.loads(data)
    try:
        return load_plain(data)
    except NotPlainData as refused:
        where = host or "a host no longer known"
        raise UntrustedValue(
            f"map job {job.id}: the value of item #{task.index + 1} came back from {where}, another PC, as a "
            f"pickle that asks for {refused.name}; loading it could run any code on this PC, so it was not loaded",
            "make the function return plain data (numbers, strings, bytes, lists, dicts, NumPy arrays, Brian "
            "quantities), or, if you trust that PC's owner as you trust your own code: "
            f"sparecycles hosts set {where} --trusted-pickles yes (the value is kept in {path})",
            index=task.index, host=where) from None


def _safe_name(text: str) -> str:
    """A job name that is a folder name on every system (``<lambda>`` is not)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "function"
