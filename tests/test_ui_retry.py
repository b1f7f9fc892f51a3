"""Retry and Remove in the window go through the jobs service: the folder changed
since submit, so Retry offers packing it again, and the fixed code runs;
Remove forgets the finished job."""

from __future__ import annotations

import ui_desktop  # noqa: F401
from PyQt6.QtWidgets import QMessageBox
from conftest import make_job, run_dispatcher
from trayapp.job.submit import submit_job
from trayapp.locks import InstanceLock
from trayapp.status import TaskStatus
from sparecycles_ui.child import Child
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401

FAILING = """
import json, sys
p = json.loads(sys.argv[1])
if p["x"] == 1:
    raise SystemExit("x=1 fails")
"""


def test_retry_repack_and_remove_through_the_jobs_service(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    folder, params = make_job(tmp_path / "m", FAILING, params=[{"x": 0}, {"x": 1}])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    run_dispatcher(app)
    tray_app.watcher.refresh()
    (folder / "main.py").write_text("print('fixed')\n")
    window.select_job(job.seq)
    window.retry_button.click()
    dialog = window.dialog
    assert dialog.repack.isEnabled() and dialog.repack.isChecked(), dialog.change.text()
    assert "main.py" in dialog.change.text()
    dialog.retry_button.click()
    assert "from the folder as it is now" in window.statusBar().currentMessage(), window.statusBar().currentMessage()
    run_dispatcher(app)
    assert app.store.job(job.id).status.value == "done", "the fixed main.py ran"
    tray_app.watcher.refresh()
    window.select_job(job.seq)
    assert window.remove_button.isVisibleTo(window) and window.remove_button.isEnabled()
    window.remove_button.click()
    window.dialog.button(QMessageBox.StandardButton.Yes).click()
    tray_app.watcher.refresh()
    assert tray_app.jobs.rowCount() == 0, window.statusBar().currentMessage()


def test_a_retry_while_the_master_is_paused_only_queues(qtbot, app, tmp_path):
    """Pause in the tray stops this master's dispatcher; a retry then queues the
    tasks for Resume instead of starting a background dispatcher behind the user's back."""
    tray_app = build_tray_app(qtbot, app.home)
    tray_app.child = Child("master", app.home.mode_log("master"))  # never started; Pause stops it
    tray_app.pause(None)
    folder, params = make_job(tmp_path / "m", "print('ran')\n", params=[{"x": 0}, {"x": 1}])
    job = app.jobs().submit(folder, start=False, params=params).job
    app.jobs().cancel(job.id)
    tray_app.watcher.refresh()
    window = tray_app.window
    window.select_job(job.seq)
    window.retry_button.click()
    window.dialog.retry_button.click()
    assert "queued 2 task(s)" in window.statusBar().currentMessage(), window.statusBar().currentMessage()
    assert app.store.job(job.id).count(TaskStatus.QUEUED) == 2
    assert InstanceLock(app.home.dispatcher_lock).holder() is None, "a paused master started a dispatcher"
