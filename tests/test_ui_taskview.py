"""The task view: opened by double-clicking a job, one column per parameter,
filter by state, identical failures grouped, a task's output, retry selected;
and a 10,000-task job. Offscreen, over a real queue run by a real dispatcher."""

from __future__ import annotations

import pytest
import ui_desktop  # noqa: F401 - sets the offscreen platform first

from PyQt6.QtCore import Qt

from conftest import make_job, run_dispatcher
from trayapp.job.submit import submit_job
from trayapp.master.tasktable import task_rows
from sparecycles_ui.jobsmodel import NAME_COLUMN
from sparecycles_ui.tasksmodel import TasksModel
from ui_desktop import build_tray_app, dispose_tray_apps, model_tester  # noqa: F401 - autouse

FAILING_TASK = """
import json, sys
params = json.loads(sys.argv[1])
print("rate", params["rate"])
if params["rate"] >= 30:
    raise SystemExit("rate too high for this model")
"""


def _open_tasks(qtbot, tray_app, seq):
    window = tray_app.window
    tray_app.watcher.refresh()
    index = window.jobs_sorted.mapFromSource(tray_app.jobs.index(tray_app.jobs.row_of(seq), NAME_COLUMN))
    rect = window.jobs_view.visualRect(index)
    qtbot.mouseClick(window.jobs_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(window.jobs_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    view = window.task_view
    assert view is window.dialog and view.isVisible()
    return view


@pytest.mark.slow  # a real dispatcher runs eight tasks
def test_double_click_opens_the_tasks_filters_groups_shows_logs_and_retries(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    tray_app.window.show()
    qtbot.waitExposed(tray_app.window)
    folder, params = make_job(tmp_path / "lif", FAILING_TASK,
                              params=[{"rate": r, "g_inh": g} for r in (10, 20, 30, 40) for g in (5, 7)])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    run_dispatcher(app)
    view = _open_tasks(qtbot, tray_app, job.seq)
    tester = model_tester(view.model)  # noqa: F841
    model = view.model
    assert model.columns == ("Task", "rate", "g_inh", "State", "Host", "Attempts", "Elapsed", "Exit code")
    assert model.rowCount() == 8 and model.index(7, 1).data() == "40" and model.index(7, 2).data() == "7"
    assert model.index(7, model.column_of("Exit code")).data() == "1"
    assert model.index(0, model.column_of("Host")).data() == "local"
    assert "8 task(s); 4 done, 4 failed" in view.summary.text()
    # Filter by state.
    view.state_box.setCurrentText("failed")
    assert view.filter.rowCount() == 4
    view.state_box.setCurrentText("All states")
    assert view.filter.rowCount() == 8
    # The four failures are one group; clicking it shows those tasks.
    assert view.failures.count() == 1 and view.failures.item(0).text().startswith("4 task(s): exit code 1")
    item = view.failures.item(0)
    qtbot.mouseClick(view.failures.viewport(), Qt.MouseButton.LeftButton,
                     pos=view.failures.visualItemRect(item).center())
    assert view.filter.rowCount() == 4
    # The selected task's output, from its results folder.
    assert len(view.selected_tasks()) == 1
    assert "rate too high for this model" in view.stderr.toPlainText()
    assert str(app.store.job(job.id).results_dir) in view.where.text()
    opened = []
    view.open_folder = lambda path: opened.append(path) or True
    assert view.folder_button.isEnabled()
    view.folder_button.click()
    assert opened and opened[0].endswith(f"/{view.selected_tasks()[0].idx}")
    # Retry the selected (failed) task only.
    view.table.selectAll()
    view.retry_button.click()
    assert sorted(t.status.value for t in app.store.tasks(job.seq)).count("queued") == 4
    view.close()


def test_the_task_view_of_a_ten_thousand_task_job(qtbot, app, tmp_path):
    tray_app = build_tray_app(qtbot, app.home)
    tray_app.window.show()
    folder, _ = make_job(tmp_path / "big", "print('hi')\n")
    job = submit_job(app.store, app.home, app.config, folder,
                     param_sets=[{"rate": r, "seed": s} for r in range(100) for s in range(100)]).job
    view = _open_tasks(qtbot, tray_app, job.seq)
    tester = model_tester(view.model)  # noqa: F841
    assert view.model.rowCount() == 10_000 and view.filter.rowCount() == 10_000
    view.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    assert view.filter.index(0, 1).data() == "99"
    view.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)  # as numbers: task 2 before task 10
    assert [view.filter.index(r, 0).data() for r in range(3)] == ["0", "1", "2"]
    view.state_box.setCurrentText("running")
    assert view.filter.rowCount() == 0
    view.close()


def test_the_tasks_model_updates_only_changed_rows(qapp, app, tmp_path):
    folder, _ = make_job(tmp_path / "m", "print('hi')\n")
    job = submit_job(app.store, app.home, app.config, folder, param_sets=[{"x": i} for i in range(5)]).job
    model = TasksModel()
    tester = model_tester(model)  # noqa: F841
    resets, changed = [], []
    model.modelReset.connect(lambda: resets.append(1))
    model.dataChanged.connect(lambda tl, br, _r=None: changed.append((tl.row(), br.row())))
    model.apply(task_rows(app.store, job.seq))
    claim = app.store.claim("lab-07", 1)[0]
    model.apply(task_rows(app.store, job.seq))
    assert resets == [1] and changed == [(claim.idx, claim.idx)]
    assert model.index(claim.idx, model.column_of("State")).data() == "dispatched"
