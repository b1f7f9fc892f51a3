"""SpareCycles: turn a lab's idle PCs into a compute pool for Python simulations.

``import sparecycles`` is the package users see; the command ``sparecycles``
starts here (:mod:`sparecycles.launch`). It sits above both ``trayapp`` (the
Qt-free core) and ``ui`` (the PyQt6 tray app), so neither has to reach for the
other: the core never imports the GUI, and this package chooses between them.

From Python (a script or a notebook), the same queue as the command line and
the tray window::

    import sparecycles

    job = sparecycles.submit("~/sims/brunel", params={"input_rate_hz": [40, 55, 75], "g_inh": [5, 7]})
    job.wait()                       # progress bar; returns a summary
    frame = job.to_frame()           # one row per task: parameters and JSON results (needs pandas)
    rates = [t.load("summary.json")["rate_hz"] for t in job.results()]

    squares = sparecycles.map(lambda x: x * x, range(10))   # a function on the pool

and, inside a task, ``sparecycles.task_params()`` returns its parameter set,
whether it travelled as JSON or pickled.
"""

from __future__ import annotations

import importlib

from trayapp import __version__
from sparecycles.errors import JobCancelled, MissingPackage, TaskFailed, UntrustedValue, UserError, WaitTimeout
from sparecycles.task import task_params

# The rest loads on first use (PEP 562): a task calling task_params() must not
# pay for the queue, the dispatcher and paramiko, which only the submitting side needs.
# No module here is named like one of these names: importing a submodule sets
# the package's attribute of its name, which would hide the function.
_LAZY = {"submit": "sparecycles.jobhandle", "job": "sparecycles.jobhandle", "jobs": "sparecycles.jobhandle",
         "Job": "sparecycles.jobhandle", "Summary": "sparecycles.jobhandle", "map": "sparecycles.mapping",
         "TaskResult": "sparecycles.results"}

__all__ = ["__version__", "submit", "job", "jobs", "map", "task_params", "Job", "Summary", "TaskResult",
           "UserError", "WaitTimeout", "JobCancelled", "TaskFailed", "MissingPackage", "UntrustedValue"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sparecycles' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
