"""A retry from the window starts a dispatcher when none runs: on a real X
desktop (Xvfb + openbox), real clicks on the job, on *Retry…* and on the
dialog's *Retry*; the tasks then run to the end with nobody else starting one
(the window's retry used to queue tasks that nothing would run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_job, wait_until
from support.desktop import WINDOW_MANAGER, Desktop, missing_tools
from trayapp.app import App
from trayapp.config import Config, save_config
from trayapp.locks import InstanceLock
from trayapp.status import JobStatus

MISSING = missing_tools() + ([] if shutil.which(WINDOW_MANAGER) else [WINDOW_MANAGER])
pytestmark = [pytest.mark.desktop, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (scripts/system-packages.sh)")]

PROBE = Path(__file__).parent / "support" / "retryprobe.py"


def test_a_retry_clicked_in_the_window_starts_a_dispatcher(tmp_path, home):
    save_config(home, Config(mode="master", slots=2, poll_interval_s=0.1))
    app = App(home)
    folder, params = make_job(tmp_path / "sweep", "print('ran')\n", params=[{"x": 0}, {"x": 1}, {"x": 2}])
    job = app.jobs().submit(folder, start=False, params=params).job
    assert app.jobs().cancel(job.id) == 3
    lock = InstanceLock(home.dispatcher_lock)
    assert lock.holder() is None, "no dispatcher runs before the retry"

    desktop = Desktop(tmp_path / "desktop").start(tray=False, window_manager=True)
    try:
        report_file = tmp_path / "report.json"
        probe = subprocess.run([sys.executable, str(PROBE), str(report_file)],
                               env=desktop.env(SPARECYCLES_HOME=str(home.data_dir),
                                               PYTHONPATH=os.pathsep.join(sys.path)),
                               capture_output=True, text=True, timeout=300)
    finally:
        desktop.stop()
    assert report_file.exists(), probe.stdout + probe.stderr
    report = json.loads(report_file.read_text())
    assert report.get("ok"), report.get("error", "") + probe.stderr[-3000:]
    assert report["dispatcher_before"] is None
    assert report["message"] == "queued 3 task(s) of sweep again", report["message"]

    # The window is gone; what the retry started runs the tasks to the end.
    assert lock.holder() is not None, "the retry started no dispatcher"
    wait_until(lambda: app.store.job(job.id).status is JobStatus.DONE, 120, 0.2, "the retried job to be done")
    assert [t.status.value for t in app.store.tasks(job.seq)] == ["done"] * 3
