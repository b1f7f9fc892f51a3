"""What the Python API raises, beyond :class:`UserError` for bad input.

Each names the problem and the fix in its message, like the command line's
errors; each is also the built-in exception a caller would catch anyway
(``TimeoutError``, ``ImportError``, ``RuntimeError``).
"""

from __future__ import annotations

from trayapp.errors import UserError


class WaitTimeout(UserError, TimeoutError):
    """``Job.wait(timeout=...)`` returned before the job ended; the job goes on."""


class JobCancelled(UserError, RuntimeError):
    """The job was cancelled, so waiting for it (or for ``map``'s values) is pointless."""


class TaskFailed(UserError, RuntimeError):
    """A task of ``map`` raised; ``index`` is its item's position, ``details`` its traceback."""

    def __init__(self, problem: str, fix: str | None = None, *, index: int, details: str = ""):
        super().__init__(problem, fix)
        self.index = index
        self.details = details


class MissingPackage(UserError, ImportError):
    """An optional package (pandas) that this call needs is not installed."""


class UntrustedValue(UserError, RuntimeError):
    """A ``map`` value came from another PC as a pickle that is not plain data:
    loading it could run code, so it was not loaded. ``host`` sent it."""

    def __init__(self, problem: str, fix: str | None = None, *, index: int, host: str):
        super().__init__(problem, fix)
        self.index = index
        self.host = host


__all__ = ["UserError", "WaitTimeout", "JobCancelled", "TaskFailed", "MissingPackage", "UntrustedValue"]
