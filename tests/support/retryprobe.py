"""Runs under a real X display (Xvfb + openbox): the real tray app's window,
with no dispatcher of its own, and a job whose tasks were cancelled. Real
clicks (``xdotool``) select the job, press *Retry…* and the dialog's *Retry*.

``python retryprobe.py REPORT`` with ``SPARECYCLES_HOME`` set; it writes what
it saw to REPORT as JSON and leaves whatever the retry started running.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PyQt6.QtWidgets import QApplication

from trayapp.config import load_config
from trayapp.home import Home
from trayapp.locks import InstanceLock
from sparecycles_ui.app import TrayApp
from sparecycles_ui.jobsmodel import NAME_COLUMN
from sparecycles_ui.retrydialog import RetryDialog
from sparecycles_ui.workers import ThreadExecutor
from support.probesteps import pause, run_steps, until

qt = QApplication(sys.argv[:1])
report_file = Path(sys.argv[1])
home = Home.from_environment().ensure()
executor = ThreadExecutor()
app = TrayApp(home, load_config(home), executor, start_child=False, interval_ms=300, check_updates=lambda: None)
report: dict = {}


def press(widget, pos=None) -> None:
    """A real left click: the pointer moves there, then X sends the button."""
    where = widget.mapToGlobal(pos if pos is not None else widget.rect().center())
    subprocess.run(["xdotool", "mousemove", "--sync", str(where.x()), str(where.y()), "click", "1"], check=True,
                   timeout=30)


def steps():
    window = app.window
    window.show()  # openbox gives a new window the focus
    yield until(lambda: window.isVisible() and app.jobs.rowCount() == 1, "the cancelled job in the table")
    yield pause(1.0)  # openbox places and maps the frame
    press(window.jobs_view.viewport(), window.jobs_view.visualRect(window.jobs_sorted.index(0, NAME_COLUMN)).center())
    yield until(lambda: window.selected_job() is not None and window.retry_button.isEnabled(),
                "the job selected by the click, Retry enabled")
    report["dispatcher_before"] = InstanceLock(home.dispatcher_lock).holder()
    press(window.retry_button)
    yield until(lambda: isinstance(window.dialog, RetryDialog) and window.dialog.isVisible(), "the retry dialog")
    press(window.dialog.retry_button)
    yield until(lambda: "again" in window.statusBar().currentMessage(), "the window to say the tasks were queued")
    report["message"] = window.statusBar().currentMessage()


app.start()
run_steps(qt, steps(), report)
app.watcher.stop()
executor.wait()
report_file.write_text(json.dumps(report))
