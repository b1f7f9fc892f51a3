"""Runs under a real X display (Xvfb + openbox): the real tray app's window,
driven with real mouse clicks and key presses from ``xdotool``.

``python viewsprobe.py SCREENSHOTS REPORT`` with ``SPARECYCLES_HOME`` set to a
home whose queue already holds the jobs and hosts the test prepared (a
running job, a failed job, a 10,000-task job, an unreachable host); a
dispatcher of that home runs beside it. Every step is a real input event; the
probe only looks (Qt's side: which dialog opened, what a table shows) and
saves a screenshot of each view. It writes what it saw to REPORT as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from PyQt6.QtCore import QPoint
from PyQt6.QtWidgets import QApplication, QFileDialog, QLineEdit

from trayapp.config import load_config
from trayapp.home import Home
from sparecycles_ui.app import TrayApp
from sparecycles_ui.hostdialogs import AddHostDialog, HostTestDialog
from sparecycles_ui.jobsmodel import NAME_COLUMN, PROGRESS_COLUMN
from sparecycles_ui.settingsdialog import SettingsDialog
from sparecycles_ui.submitdialog import SubmitDialog
from sparecycles_ui.taskview import TaskView
from sparecycles_ui.workers import ThreadExecutor
from support.probesteps import pause, run_steps, until

STEP_TIMEOUT_S = 60

qt = QApplication(sys.argv[:1])
shots, report_file = Path(sys.argv[1]), Path(sys.argv[2])
submit_folder = sys.argv[3]
home = Home.from_environment().ensure()
executor = ThreadExecutor()
app = TrayApp(home, load_config(home), executor, start_child=False, interval_ms=500, check_updates=lambda: None)
report: dict = {"shots": []}


# ----- real input ---------------------------------------------------------------------------

def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=30)


def click(widget, pos: QPoint | None = None, *, double: bool = False, button: int = 1) -> None:
    where = widget.mapToGlobal(pos if pos is not None else widget.rect().center())
    xdotool("mousemove", "--sync", str(where.x()), str(where.y()))
    xdotool("click", *(["--repeat", "2", "--delay", "80"] if double else []), str(button))


def type_text(text: str) -> None:
    xdotool("type", "--delay", "15", text)


def key(*names: str) -> None:
    xdotool("key", *names)


def shot(name: str, window) -> None:
    """The window as the screen shows it, with openbox's frame."""
    g = window.frameGeometry()
    picture = qt.primaryScreen().grabWindow(0, g.x(), g.y(), g.width(), g.height())
    assert picture.save(str(shots / name)), name
    report["shots"].append(name)


# ----- steps: a generator that yields conditions to wait for --------------------------------

def job_index(name: str):
    window = app.window
    for row in range(app.jobs.rowCount()):
        if app.jobs.job_at(row).name == name:
            return window.jobs_sorted.mapFromSource(app.jobs.index(row, NAME_COLUMN))
    raise AssertionError(f"no job {name} in the table")


def open_tasks(name: str, rows: int):
    window = app.window
    rect = window.jobs_view.visualRect(job_index(name))
    click(window.jobs_view.viewport(), rect.center(), double=True)
    return until(lambda: isinstance(window.dialog, TaskView) and window.dialog.isVisible()
                 and window.dialog.model.rowCount() == rows, f"the task view of {name}")


def close_dialog(dialog, button):
    click(button)
    return until(lambda: not dialog.isVisible(), "the dialog to close")


def steps():
    window = app.window
    window.resize(1000, 620)
    window.show()
    window.raise_()
    window.activateWindow()
    yield until(lambda: window.isVisible() and app.jobs.rowCount() >= 3, "the three jobs in the table")
    yield pause(1.0)  # openbox places and maps the frame

    # ----- the jobs table: newest first, bars painted horizontal and proportional
    report["job_order"] = [window.jobs_sorted.index(r, NAME_COLUMN).data() for r in range(window.jobs_sorted.rowCount())]
    click(window.jobs_view.viewport(), window.jobs_view.visualRect(job_index("lif-sweep")).center())
    yield until(lambda: window.selected_job() is not None and window.selected_job().name == "lif-sweep",
                "the running job selected by a click")
    report["progress_texts"] = {window.jobs_sorted.index(r, NAME_COLUMN).data():
                                window.jobs_sorted.index(r, PROGRESS_COLUMN).data()
                                for r in range(window.jobs_sorted.rowCount())}
    shot("jobs-table.png", window)

    # ----- the running job's tasks: a local task's output grows while it runs
    yield open_tasks("lif-sweep", 8)
    view = window.dialog
    yield until(lambda: any(view.filter.index(r, view.model.column_of("State")).data() == "running"
                            for r in range(view.filter.rowCount())), "a running task in the view")
    running = next(r for r in range(view.filter.rowCount())
                   if view.filter.index(r, view.model.column_of("State")).data() == "running")
    click(view.table.viewport(), view.table.visualRect(view.filter.index(running, 0)).center())
    yield until(lambda: "running on this PC" in view.where.text() and view.stdout.toPlainText().count("\n") >= 2,
                "the running task's output so far")
    before = view.stdout.toPlainText().count("\n")
    yield until(lambda: view.stdout.toPlainText().count("\n") > before + 3, "its output to grow, live")
    report["live_log"] = [before, view.stdout.toPlainText().count("\n")]
    shot("task-view-running.png", view)
    yield close_dialog(view, next(b for b in view.findChildren(type(view.retry_button)) if b.text() == "Close"))

    # ----- the failed job: identical failures grouped, the traceback shown
    yield open_tasks("lif-broken", 8)
    view = window.dialog
    yield until(lambda: view.failures.count() == 1 and view.failures.item(0).text().startswith("4 task(s)"),
                "the failures grouped")
    item = view.failures.item(0)
    click(view.failures.viewport(), view.failures.visualItemRect(item).center())
    yield until(lambda: view.filter.rowCount() == 4 and "rate too high" in view.stderr.toPlainText(),
                "the group's tasks and the first one's stderr")
    report["failed_group"] = item.text()
    shot("task-view-failed.png", view)
    yield close_dialog(view, next(b for b in view.findChildren(type(view.retry_button)) if b.text() == "Close"))

    # ----- the 10,000-task job
    started = time.monotonic()
    yield open_tasks("big-sweep", 10_000)
    view = window.dialog
    report["open_10000_s"] = round(time.monotonic() - started, 3)
    click(view.table.horizontalHeader(), QPoint(view.table.horizontalHeader().sectionViewportPosition(1) + 20, 10))
    yield until(lambda: view.table.horizontalHeader().sortIndicatorSection() == 1, "sorted by the first parameter")
    shot("task-view-10000.png", view)
    yield close_dialog(view, next(b for b in view.findChildren(type(view.retry_button)) if b.text() == "Close"))

    # ----- the hosts tab: the unreachable host says why; Test runs hosts test
    bar = window.tabs.tabBar()
    click(bar, bar.tabRect(1).center())
    yield until(lambda: window.tabs.currentIndex() == 1 and "lab-07: unreachable" in window.hosts_details.text(),
                "the hosts tab with the unreachable host's reason")
    row = next(r for r in range(app.hosts.rowCount()) if app.hosts.host_at(r).name == "lab-07")
    click(window.hosts_view.viewport(), window.hosts_view.visualRect(app.hosts.index(row, 0)).center())
    yield until(lambda: "<b>lab-07</b>" in window.hosts_details.text(), "the host's details")
    click(window.test_host_button)
    yield until(lambda: isinstance(window.dialog, HostTestDialog) and window.dialog.verdict.text(), "hosts test")
    test = window.dialog
    report["host_test"] = [test.lines.toPlainText(), test.verdict.text()]
    shot("host-test.png", test)
    key("Escape")
    yield until(lambda: not test.isVisible(), "the test dialog to close")

    # ----- Add host… of kind slurm, typed in
    click(window.add_host_button)
    yield until(lambda: isinstance(window.dialog, AddHostDialog) and window.dialog.isVisible(), "the add dialog")
    add = window.dialog
    yield pause(0.5)
    click(add.name)
    type_text("cluster")
    click(add.kind_box)
    yield until(lambda: add.kind_box.view().isVisible(), "the kinds list")
    view_ = add.kind_box.view()
    slurm = add.kind_box.findData("slurm")
    click(view_.viewport(), view_.visualRect(view_.model().index(slurm, 0)).center())
    yield until(lambda: add.kind == "slurm", "slurm chosen")
    for dest, text in (("host", "127.0.0.1"), ("remote_root", "/scratch/lab/sparecycles"), ("partition", "short")):
        click(add.editor(dest))
        type_text(text)
    yield until(lambda: add.editor("partition").text() == "short", "the typed fields")
    shot("add-host-slurm.png", add)
    ok = next(b for b in add.findChildren(type(window.add_host_button)) if b.text().replace("&", "") == "OK")
    click(ok)
    yield until(lambda: any(app.hosts.host_at(r).kind == "slurm" for r in range(app.hosts.rowCount()))
                and "Pending" in app.hosts.columns, "the cluster in the table, with its columns")
    yield pause(1.0)
    report["host_columns"] = list(app.hosts.columns)
    report["hosts"] = {app.hosts.host_at(r).name: app.hosts.index(r, 2).data() for r in range(app.hosts.rowCount())}
    shot("hosts-tab.png", window)

    # ----- the pool over time, last hour
    click(bar, bar.tabRect(2).center())
    yield until(lambda: window.tabs.currentIndex() == 2, "the pool tab")
    box = window.pool_tab.range_box
    click(box)
    yield until(lambda: box.view().isVisible(), "the spans list")
    click(box.view().viewport(), box.view().visualRect(box.view().model().index(0, 0)).center())
    yield until(lambda: app.pool.window_s == 3600, "the last hour")
    yield pause(1.5)
    shot("pool-over-time.png", window)

    # ----- Settings…
    settings_button = next(b for b in window.findChildren(type(window.add_host_button)) if b.text() == "Settings…")
    click(settings_button)
    yield until(lambda: isinstance(app.settings_dialog, SettingsDialog) and app.settings_dialog.isVisible(),
                "the settings")
    dialog = app.settings_dialog
    yield pause(0.5)
    report["grace_enabled"] = dialog.editors["suspend_grace_s"].isEnabled()
    shot("settings.png", dialog)
    key("Escape")
    yield until(lambda: not dialog.isVisible(), "the settings to close")

    # ----- Submit job…: the folder chooser, then the dialog
    click(bar, bar.tabRect(0).center())
    yield until(lambda: window.tabs.currentIndex() == 0, "the jobs tab")
    click(window.submit_button)
    yield until(lambda: isinstance(getattr(window, "folder_dialog", None), QFileDialog)
                and window.folder_dialog.isVisible(), "the folder chooser")
    chooser = window.folder_dialog
    yield pause(0.8)
    line = next(e for e in chooser.findChildren(QLineEdit) if e.isVisible())
    click(line)
    key("ctrl+a")
    type_text(submit_folder)
    key("Return")
    yield until(lambda: isinstance(window.submit_dialog, SubmitDialog) and window.submit_dialog.isVisible()
                or (chooser.isVisible() and chooser.directory().absolutePath() == submit_folder), "the chosen folder")
    if not isinstance(window.submit_dialog, SubmitDialog):  # Return went into the folder: now choose it
        choose = next(b for b in chooser.findChildren(type(window.add_host_button)) if b.isVisible()
                      and b.text().replace("&", "") in ("Choose", "Open"))
        click(choose)
    yield until(lambda: isinstance(window.submit_dialog, SubmitDialog) and window.submit_dialog.isVisible()
                and "task" in window.submit_dialog.count_label.text(), "the submit dialog with its task count")
    submit = window.submit_dialog
    report["submit_count"] = submit.count_label.text()
    report["submit_params"] = submit.params_box.currentText()
    shot("submit-dialog.png", submit)
    click(submit.queue_button)
    yield until(lambda: not submit.isVisible() and app.jobs.rowCount() == 4, "the fourth job queued")


def main() -> None:
    app.start()
    run_steps(qt, steps(), report, timeout_s=STEP_TIMEOUT_S,
              on_failure=lambda: qt.primaryScreen().grabWindow(0).save(str(shots / "probe-failure.png")))
    app.watcher.stop()
    executor.wait()
    report_file.write_text(json.dumps(report, indent=1))


main()
