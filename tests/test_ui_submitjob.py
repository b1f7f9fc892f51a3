"""Submitting without a drag: *Submit job…*, the folder chooser, and the dialog's
parameter file, task count, name, time limit and retries (offscreen)."""

from __future__ import annotations

import ui_desktop  # noqa: F401 - sets the offscreen platform first

from PyQt6.QtWidgets import QFileDialog

from conftest import ECHO_TASK, make_job
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401 - autouse


def test_submit_job_button_folder_chooser_and_the_dialog_s_fields(qtbot, app, tmp_path):
    folder, _ = make_job(tmp_path / "lif", ECHO_TASK, extra_files={"grid.toml": "rate = [10, 20, 30]\ng = [5, 7]\n"})
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.show()
    window.submit_button.click()
    chooser = window.folder_dialog
    assert isinstance(chooser, QFileDialog) and chooser.fileMode() == QFileDialog.FileMode.Directory
    chooser.fileSelected.emit(str(folder))  # what choosing the folder and pressing Choose does
    dialog = window.submit_dialog
    assert dialog.isVisible()
    # The only parameter file beside main.py is chosen, and its task count shown before submitting.
    assert dialog.params_box.currentText() == "grid.toml"
    assert dialog.count_label.text() == "6 tasks: 6 parameter sets over rate, g"
    dialog.name_edit.setText("lif-fast")
    dialog.time_limit.setText("soon")
    dialog.queue_button.click()
    assert "time limit:" in dialog.problem.text() and "fix: write it like 90s, 30m" in dialog.problem.text()
    dialog.time_limit.setText("30m")
    dialog.retries.setValue(2)
    dialog.queue_button.click()
    assert not dialog.isVisible()
    job = app.store.jobs()[-1]
    assert (job.name, job.total, job.time_limit_s, job.retries) == ("lif-fast", 6, 1800.0, 2)
    assert window.settings.value("submit/last_parent") == str(tmp_path)


def test_a_bad_folder_is_said_in_the_window_with_its_fix(qtbot, app, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.submit_folder(str(empty))
    assert "main.py" in window.statusBar().currentMessage() and "fix" in window.statusBar().currentMessage()


def test_a_submit_error_is_shown_in_the_dialog_with_the_fix(qtbot, app, tmp_path):
    folder, _ = make_job(tmp_path / "lif", ECHO_TASK, extra_files={"a.json": "[{\"x\": 1}]", "b.csv": "x\n1\n2\n"})
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.submit_folder(str(folder))
    dialog = window.submit_dialog
    assert dialog.params_box.currentIndex() == 0  # two candidates: the user picks
    dialog.set_params_file(folder / "a.json")
    dialog.name_edit.setText("bad name/with slash")
    dialog.queue_button.click()
    assert dialog.isVisible() and "fix:" in dialog.problem.text()


def test_the_window_remembers_its_size_and_last_tab(qtbot, app):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.show()
    window.resize(701, 455)
    window.tabs.setCurrentIndex(2)
    window.close()  # hides; the app stays in the tray
    again = build_tray_app(qtbot, app.home)
    assert again.window.tabs.currentIndex() == 2 and again.window.size().width() == 701
    assert (app.home.config_dir / "window.ini").is_file()
