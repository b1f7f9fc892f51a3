"""Dropping a job folder on the window queues it; a wrong drop says why, in place."""

from __future__ import annotations

import ui_desktop  # noqa: F401 - sets the offscreen platform first

from PyQt6.QtCore import Qt

from conftest import ECHO_TASK, make_job
from ui_desktop import build_tray_app, drop_paths, dispose_tray_apps  # noqa: F401 - autouse


def test_dropped_folder_is_queued(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.show()
    folder, params = make_job(tmp_path / "sweep", ECHO_TASK, params=[{"rate": r} for r in (5, 10, 20)],
                              extra_files={"grid.toml": "rate = [1, 2]\nw = [0.1, 0.2, 0.3]\n"})
    drop = drop_paths(window, folder)  # anywhere on the window counts
    assert drop.isAccepted()
    dialog = window.submit_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.main_box.currentText() == "main.py"
    # The folder's own parameter files are offered; the one beside it is chosen.
    assert [dialog.params_box.itemText(i) for i in range(dialog.params_box.count())][1:] == ["grid.toml"]
    dialog.params_box.setCurrentIndex(1)
    assert dialog.count_label.text() == "6 tasks: 6 parameter sets over rate, w"
    dialog.set_params_file(params)
    assert dialog.count_label.text() == "3 tasks: 3 parameter sets over rate"
    qtbot.mouseClick(dialog.queue_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()

    jobs = app.store.jobs()
    assert [(j.name, j.total, j.main) for j in jobs] == [("sweep", 3, "main.py")]
    assert [t.params for t in app.store.tasks(jobs[0].seq)] == [{"rate": 5}, {"rate": 10}, {"rate": 20}]
    assert "queued sweep: 3 task(s)" in window.statusBar().currentMessage()
    tray_app.watcher.refresh()
    assert tray_app.jobs.rowCount() == 1 and tray_app.jobs.index(0, 0).data() == "sweep"
    assert tray_app.tray.look.icon == "master-working"
    assert tray_app.tray.look.tooltip == "Working: 0 tasks running, 3 queued"


def test_main_script_choice_is_offered(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    folder, _ = make_job(tmp_path / "two", ECHO_TASK, main_name="main_a.py", extra_files={"main_b.py": ECHO_TASK,
                                                                                         "sparecycles.toml": 'main = "main_b.py"\n'})
    drop_paths(tray_app.window.drop_zone, folder)
    dialog = tray_app.window.submit_dialog
    assert [dialog.main_box.itemText(i) for i in range(dialog.main_box.count())] == ["main_a.py", "main_b.py"]
    assert dialog.main_box.currentText() == "main_b.py"  # the manifest's choice
    dialog.main_box.setCurrentText("main_a.py")
    dialog.queue()
    assert app.store.jobs()[0].main == "main_a.py"


def test_a_file_is_refused_in_place(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    zone = tray_app.window.drop_zone
    tray_app.window.show()
    folder, _ = make_job(tmp_path / "job", ECHO_TASK)
    drop_paths(zone, folder / "main.py")
    assert zone.problem.isVisible()
    assert "is a file, not a job folder" in zone.problem.text()
    assert "give the folder that holds main.py" in zone.problem.text()
    assert tray_app.window.submit_dialog is None and app.store.jobs() == []


def test_a_folder_without_main_script_is_refused_in_place(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    zone = tray_app.window.drop_zone
    tray_app.window.show()
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no script here")
    drop_paths(zone, empty)
    assert "no main script in" in zone.problem.text() and "add main.py" in zone.problem.text()
    drop_paths(zone, empty, tmp_path)
    assert "2 items were dropped" in zone.problem.text()
    folder, _ = make_job(tmp_path / "good", ECHO_TASK)
    drop_paths(zone, folder)  # a good drop clears the message
    assert not zone.problem.isVisible() and tray_app.window.submit_dialog is not None


def test_a_bad_parameter_file_blocks_queueing(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    folder, _ = make_job(tmp_path / "job", ECHO_TASK, extra_files={"params.csv": ""})
    drop_paths(tray_app.window, folder)
    dialog = tray_app.window.submit_dialog
    dialog.params_box.setCurrentIndex(1)
    assert "the file is empty" in dialog.problem.text()
    assert not dialog.queue_button.isEnabled()
    assert app.store.jobs() == []


def test_a_folder_gone_before_queueing_says_why(qtbot, app, tmp_path):
    import shutil

    tray_app = build_tray_app(qtbot, app.home)
    folder, _ = make_job(tmp_path / "fleeting", ECHO_TASK)
    drop_paths(tray_app.window, folder)
    dialog = tray_app.window.submit_dialog
    shutil.rmtree(folder)
    dialog.queue()
    assert "does not exist" in dialog.problem.text()
    assert dialog.queue_button.isEnabled() and dialog.isVisible()
    assert app.store.jobs() == []
