"""The tray app's engine child (master mode: a real dispatcher process):
Pause never holds up the GUI thread, and Resume during the stop still brings
the dispatcher back."""

from __future__ import annotations

import pytest

import ui_desktop  # noqa: F401 - sets the offscreen platform first

from PyQt6.QtCore import QElapsedTimer

from conftest import make_job
from support.tasks import all_ended, running_scripts
from trayapp.job.submit import submit_job
from trayapp.status import TaskStatus
from sparecycles_ui.child import Child

pytestmark = pytest.mark.slow

LONG_TASK = "import time\ntime.sleep(600)\n"


def task_run(job_id: str) -> frozenset:
    """The processes of the job's one task now (empty while none runs), seen from outside its sandbox."""
    return frozenset(running_scripts(job_id).get(0, ()))


def test_master_pause_returns_at_once_and_resume_during_the_stop_starts_it_again(qtbot, app, tmp_path):
    folder, params = make_job(tmp_path / "long", LONG_TASK, params=[{}])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    child = Child("master", tmp_path / "master.log")
    try:
        child.start()
        qtbot.waitUntil(lambda: bool(task_run(job.id)), timeout=30_000)
        first_task = task_run(job.id)
        first = child.pid

        clock = QElapsedTimer()
        clock.start()
        child.pause(None)
        took = clock.elapsed()
        # Returning while the dispatcher is still stopping its tasks is the proof;
        # the time is a loose check (a loaded machine may deschedule this process).
        assert child.running, "Pause must return while the dispatcher is still stopping its tasks"
        assert took < 500, f"Pause held the GUI thread for {took} ms"
        assert child.paused_until is None
        qtbot.waitUntil(lambda: not child.running, timeout=30_000)
        assert all_ended(first_task)
        assert app.store.tasks(job.seq)[0].status is TaskStatus.QUEUED, "the task goes back to the queue"

        # Pause again, and Resume while that dispatcher is still stopping.
        child.resume()
        qtbot.waitUntil(lambda: bool(task_run(job.id)), timeout=30_000)
        second_task = task_run(job.id)
        assert not second_task & first_task, "a new run of the task"
        second = child.pid
        child.pause(None)
        child.resume()
        assert child.paused_until is False
        qtbot.waitUntil(lambda: child.running and child.pid not in (first, second), timeout=30_000)
        qtbot.waitUntil(lambda: bool((run := task_run(job.id)) and not run & second_task), timeout=30_000)
        # The process shows before the engine's "started" report reaches the queue.
        qtbot.waitUntil(lambda: app.store.tasks(job.seq)[0].status is TaskStatus.RUNNING, timeout=10_000)
    finally:
        child.stop()
    assert child.problem is None
    log = (tmp_path / "master.log").read_text()
    assert "Traceback" not in log, log
