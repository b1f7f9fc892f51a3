"""The window's job and host actions, each against the real thing: a real
dispatcher runs the tasks, a real sshd presents the host key."""

from __future__ import annotations

import getpass

import pytest

import ui_desktop  # noqa: F401 - sets the offscreen platform first

import pytest
from PyQt6.QtWidgets import QLabel, QMessageBox

from conftest import ECHO_TASK, make_job, run_dispatcher
from trayapp.errors import UserError
from trayapp.job.submit import submit_job
from sparecycles_ui import verbs
from sparecycles_ui.jobsmodel import STATE_COLUMN
from sparecycles_ui.workers import PerThreadApp
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401 - autouse

FAILING_TASK = """
import json, sys
params = json.loads(sys.argv[1])
if params["x"] == 1:
    raise SystemExit("x=1 is not allowed in this model")
"""


def _window(qtbot, app):
    tray_app = build_tray_app(qtbot, app.home, poll_interval_s=0.05, slots=2)
    tray_app.window.show()
    return tray_app


def test_failed_task_log_retry_and_notifications(qtbot, app, tmp_path):
    tray_app = _window(qtbot, app)
    notes = []
    tray_app.tray.notify = lambda title, text, critical=False: notes.append((title, critical))
    folder, params = make_job(tmp_path / "model", FAILING_TASK, params=[{"x": 0}, {"x": 1}, {"x": 2}])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    tray_app.watcher.refresh()
    run_dispatcher(app)
    tray_app.watcher.refresh()
    assert notes == [("model needs attention", True)]
    assert tray_app.tray.look.icon == "master-attention"
    assert "job model ended with 1 failed task" in tray_app.tray.look.tooltip

    window = tray_app.window
    window.select_job(job.seq)
    assert window.log_button.isEnabled() and window.retry_button.isEnabled()
    assert not window.cancel_button.isEnabled()
    window.log_button.click()
    dialog = window.dialog
    assert [t.idx for t in dialog.tasks] == [1]
    assert "x=1 is not allowed in this model" in dialog.log.toPlainText()

    opened = []
    window.open_folder = lambda path: opened.append(path) or True
    window.results_button.click()
    assert opened == [job.results_dir]

    window.retry_button.click()
    retry = window.dialog
    assert "Queue the 1 failed or cancelled task(s) of model" in retry.findChild(QLabel).text()
    retry.retry_button.click()
    assert [t.status.value for t in app.store.tasks(job.seq)] == ["done", "queued", "done"]
    assert "queued 1 task(s) of model again" in window.statusBar().currentMessage()
    tray_app.window.show()  # the user looked: the failed job is no longer news
    tray_app.watcher.refresh()
    assert tray_app.tray.look.icon == "master-working"


def test_cancel_from_the_window(qtbot, app, tmp_path):
    tray_app = _window(qtbot, app)
    folder, params = make_job(tmp_path / "long", ECHO_TASK, params=[{"x": i} for i in range(4)])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    tray_app.watcher.refresh()
    tray_app.window.select_job(job.seq)
    assert tray_app.window.cancel_button.isEnabled()
    tray_app.window.cancel_button.click()
    assert app.store.job(job.id).status.value == "cancelled"
    tray_app.watcher.refresh()
    assert tray_app.jobs.index(0, STATE_COLUMN).data() == "cancelled"


@pytest.mark.pool
def test_add_trust_and_remove_a_host(qtbot, app, sshd):
    tray_app = _window(qtbot, app)
    window = tray_app.window
    window.tabs.setCurrentIndex(1)
    window.add_host_button.click()
    add = window.dialog
    add.name.setText("lab-07")
    add.address.setText("127.0.0.1")
    add.port.setValue(sshd.port)
    add.key.setText(str(sshd.client_key))
    add.accept()
    assert app.store.host("lab-07").options["port"] == sshd.port
    tray_app.watcher.refresh()
    window.hosts_view.selectRow(0)
    assert window.selected_host().name == "lab-07"
    assert [tray_app.hosts.index(0, c).data() for c in (0, 1)] == ["lab-07", "ssh"]

    window.trust_button.click()
    trust = window.dialog
    assert trust.fingerprint.text() == sshd.host_key_fingerprint()  # what `ssh-keygen -lf` says on the PC
    trust.accept()
    assert "trusted lab-07" in window.statusBar().currentMessage()
    window.trust_button.click()
    assert window.dialog.key.known == "trusted" and not window.dialog.trust_button.isEnabled()

    window.remove_host_button.click()
    window.dialog.button(QMessageBox.StandardButton.Yes).click()
    assert [h.name for h in app.store.hosts()] == []
    tray_app.watcher.refresh()
    assert tray_app.hosts.rowCount() == 0


def test_the_window_s_host_verbs_are_the_hosts_service_s_and_print_nothing(app, capsys):
    apps = PerThreadApp(app.home, app.config)
    assert verbs.add_host(apps, "lab-07", "ssh", {"host": "127.0.0.1", "port": 2222, "slots": 2}) == "lab-07"
    host = app.store.host("lab-07")
    assert (host.kind, host.slots, host.options) == ("ssh", 2, {
        "address": "127.0.0.1", "port": 2222, "user": getpass.getuser(), "agent_command": "sparecycles agent"})
    with pytest.raises(UserError, match="unknown host kind 'cluster'"):
        verbs.add_host(apps, "big", "cluster", {"host": "127.0.0.1"})
    with pytest.raises(UserError, match="--port must be between 1 and 65535"):
        verbs.add_host(apps, "lab-08", "ssh", {"host": "127.0.0.1", "port": 0})
    assert verbs.remove_host(apps, "lab-07") == "lab-07" and app.store.hosts() == []
    # A worker thread's print would land in a log nobody reads: the service says it all in return values.
    assert capsys.readouterr() == ("", "")


def test_adding_a_bad_host_says_why(qtbot, app):
    tray_app = _window(qtbot, app)
    window = tray_app.window
    window.add_host_button.click()
    window.dialog.name.setText("local")
    window.dialog.address.setText("10.0.0.9")
    window.dialog.accept()
    assert "'local' is the name of this PC's own cores" in window.statusBar().currentMessage()


def test_done_job_notifies_once_and_the_pool_chart_shows_where_it_ran(qtbot, app, tmp_path):
    tray_app = _window(qtbot, app)
    notes = []
    tray_app.tray.notify = lambda title, text, critical=False: notes.append((title, text, critical))
    folder, params = make_job(tmp_path / "sweep", ECHO_TASK, params=[{"i": i} for i in range(3)])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    tray_app.watcher.refresh()
    run_dispatcher(app)
    tray_app.watcher.refresh()
    tray_app.watcher.refresh()  # a later reading of the same state says nothing new
    assert notes == [("sweep is done", f"3 task(s) done; results in {job.results_dir}", False)]
    # The chart's series come from the reading (computed by the watcher's worker), not the GUI thread.
    reading = tray_app.watcher.last
    assert reading.digest is not None and set(reading.digest) == {"local"}
    assert tray_app.pool.series is reading.digest and sum(reading.digest["local"]) > 0
