"""The jobs table as the user sees it: the painted progress bar, the order, the
columns, the context menu; offscreen, over a real queue."""

from __future__ import annotations

import ui_desktop  # noqa: F401 - sets the offscreen platform first

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor

from conftest import ECHO_TASK, make_job
from trayapp.job.submit import submit_job
from trayapp.status import AttemptOutcome
from sparecycles_ui.jobsmodel import ID_COLUMN, NAME_COLUMN, PROGRESS_COLUMN, SUBMITTED_COLUMN, TASKS_COLUMN, WAITING_COLUMN
from sparecycles_ui.progressdelegate import STATE_COLOURS, TRACK_COLOUR
from ui_desktop import build_tray_app, dispose_tray_apps, model_tester  # noqa: F401 - autouse


def _submit(app, tmp_path, name: str, n: int):
    folder, params = make_job(tmp_path / name, ECHO_TASK, params=[{"x": i} for i in range(n)])
    return submit_job(app.store, app.home, app.config, folder, params=params).job


def _finish(app, n: int, outcome=AttemptOutcome.SUCCEEDED, host="lab-07"):
    for claim in app.store.claim(host, n):
        app.store.mark_running(claim.attempt_id, 4242)
        app.store.finish_attempt(claim.attempt_id, outcome, exit_code=0 if outcome is AttemptOutcome.SUCCEEDED else 1)


def _same(a: QColor, b: QColor) -> bool:
    return max(abs(a.red() - b.red()), abs(a.green() - b.green()), abs(a.blue() - b.blue())) <= 8


def test_the_progress_bar_is_painted_horizontal_proportional_and_coloured_by_state(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.resize(1200, 500)
    window.show()
    qtbot.waitExposed(window)
    job = _submit(app, tmp_path, "lif", 8)
    _finish(app, 3)  # 3 of 8 done, the rest still queued
    app.store.claim("lab-07", 1)  # one running: the job is running
    tray_app.watcher.refresh()
    window.jobs_view.horizontalHeader().resizeSection(PROGRESS_COLUMN, 400)
    row = window.jobs_sorted.mapFromSource(tray_app.jobs.index(tray_app.jobs.row_of(job.seq), PROGRESS_COLUMN))
    assert row.data() == "38 % (3/8)"
    cell = window.jobs_view.visualRect(row)
    image = window.jobs_view.viewport().grab(cell).toImage()
    running, track = QColor(STATE_COLOURS["running"]), QColor(TRACK_COLOUR)
    # Along the middle line: filled from the left, for 3/8 of the bar's width, then the empty track.
    y = image.height() // 2
    line = [image.pixelColor(x, y) for x in range(image.width())]
    filled = [x for x, c in enumerate(line) if _same(c, running)]
    empty = [x for x, c in enumerate(line) if _same(c, track)]
    assert filled and empty, "no bar painted"
    bar_width = max(empty) - min(filled) + 1
    assert min(filled) < min(empty), "filled from the left"
    assert abs(len([x for x in filled if x < min(empty)]) / bar_width - 3 / 8) < 0.1, (len(filled), bar_width)
    # Horizontal: a filled column is filled from the bar's top to its bottom (a vertical
    # bar at 38 % would fill only the lower part of each column).
    x = min(filled) + 2
    column = [image.pixelColor(x, yy) for yy in range(image.height())]
    filled_rows = [yy for yy, c in enumerate(column) if _same(c, running)]
    assert len(filled_rows) >= image.height() - 10, (len(filled_rows), image.height())
    image.save(str(tmp_path / "bar.png"))

    # Failed: red, not the blue of a done job.
    app.store.cancel_job(job.id)
    failed = _submit(app, tmp_path, "bad", 2)
    _finish(app, 2, AttemptOutcome.EXITED)
    tray_app.watcher.refresh()
    assert app.store.job(failed.id).status.value == "failed"
    row = window.jobs_sorted.index(0, PROGRESS_COLUMN)  # newest first
    assert row.data() == "100 % (2/2)"
    image = window.jobs_view.viewport().grab(window.jobs_view.visualRect(row)).toImage()
    middle = image.pixelColor(image.width() // 4, image.height() // 2)
    assert _same(middle, QColor(STATE_COLOURS["failed"])), middle.name()


def test_jobs_are_newest_first_and_sortable_by_any_column(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    tester = model_tester(window.jobs_sorted)  # noqa: F841 - the sorted view the window shows, checked too
    older = _submit(app, tmp_path, "lif", 3)
    newer = _submit(app, tmp_path, "lif", 20)
    tray_app.watcher.refresh()
    shown = window.jobs_sorted
    assert [shown.index(r, ID_COLUMN).data() for r in range(2)] == [newer.id, older.id]  # two "lif": ids tell them apart
    assert len(shown.index(0, SUBMITTED_COLUMN).data()) == len("12-06 08:16")  # this year's: no year
    window.jobs_view.sortByColumn(TASKS_COLUMN, Qt.SortOrder.AscendingOrder)
    assert [shown.index(r, TASKS_COLUMN).data() for r in range(2)] == ["3", "20"]  # as numbers, not text
    window.jobs_view.sortByColumn(NAME_COLUMN, Qt.SortOrder.AscendingOrder)
    # Nothing ran yet, not even this PC's cores: the queued tasks say why they wait, as `status` does.
    assert shown.index(0, WAITING_COLUMN).data() == "no hosts, and this PC runs no tasks"
    window.select_job(older.seq)
    assert window.selected_job().id == older.id


def test_the_context_menu_offers_the_buttons_actions(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.show()
    job = _submit(app, tmp_path, "lif", 2)
    tray_app.watcher.refresh()
    rect = window.jobs_view.visualRect(window.jobs_sorted.index(0, NAME_COLUMN))
    window.jobs_view.customContextMenuRequested.emit(rect.center())
    menu = window.job_menu
    actions = {a.text(): a.isEnabled() for a in menu.actions()}
    # Remove is there (ui/verbs.py has the jobs service's remove), off for a job that has not ended.
    assert actions == {"Tasks…": True, "Open results": True, "Plot…": False, "Retry…": False, "Cancel": True,
                       "Remove": False}
    next(a for a in menu.actions() if a.text() == "Cancel").trigger()
    assert app.store.job(job.id).status.value == "cancelled"
    menu.close()
