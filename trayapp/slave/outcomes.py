"""How an attempt that ended is judged: its outcome, exit code and the message
the master shows (why it failed, and the end of what it printed to stderr)."""

from __future__ import annotations

from trayapp.run.taskfiles import tail_of
from trayapp.run.runner import TaskRunner
from trayapp.slave.running import Attempt
from trayapp.status import AttemptOutcome


def judge_attempt(attempt: Attempt, runner: TaskRunner,
                  time_limit_s: float | None) -> tuple[AttemptOutcome, int | None, str | None]:
    """The outcome of ``attempt`` (its process has ended), asked of ``runner``
    before the attempt's handle is closed (its cgroup tells of memory)."""
    code = attempt.handle.exit_code()
    if attempt.timed_out:
        outcome, message = AttemptOutcome.TIMED_OUT, f"stopped after its time limit of {time_limit_s:g} s"
    elif attempt.over_disk:
        outcome, message = AttemptOutcome.EXITED, attempt.over_disk
    elif code == 0:
        outcome, message = AttemptOutcome.SUCCEEDED, None
    elif code is None:
        outcome, message = AttemptOutcome.HOST_LOST, "the task's process vanished without an exit code"
    else:
        outcome, message = AttemptOutcome.EXITED, runner.describe_exit(code)
    if outcome is not AttemptOutcome.SUCCEEDED and not attempt.timed_out and not attempt.over_disk:
        over_memory = runner.memory_failure(attempt.handle)  # asked while its cgroup still exists
        if over_memory:
            outcome, message = AttemptOutcome.EXITED, over_memory
    if outcome in (AttemptOutcome.EXITED, AttemptOutcome.TIMED_OUT):
        tail = tail_of(attempt.handle.launch.task_dir / "stderr.txt")
        if tail:
            message = f"{message}; stderr ends with:\n{tail}"
    return outcome, code, message
