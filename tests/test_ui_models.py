"""The jobs and hosts models over a real queue: QAbstractItemModelTester,
incremental updates, and the rows the window shows."""

from __future__ import annotations

import ui_desktop  # noqa: F401 - sets the offscreen platform first

from PyQt6.QtCore import Qt

from conftest import ECHO_TASK, make_job
from trayapp.job.submit import submit_job
from trayapp.status import AttemptOutcome
from sparecycles_ui.hostsmodel import HostsModel
from sparecycles_ui.jobsmodel import (COLUMNS, HOSTS_COLUMN, LEFT_COLUMN, PROGRESS_COLUMN, STATE_COLUMN, TASKS_COLUMN, JobsModel,
                          ProgressRole)
from sparecycles_ui.poolchart import busy_slots
from sparecycles_ui.snapshot import Span, SnapshotReader
from ui_desktop import model_tester


def _submit(app, tmp_path, name: str, n: int):
    folder, params = make_job(tmp_path / name, ECHO_TASK, params=[{"x": i} for i in range(n)])
    return submit_job(app.store, app.home, app.config, folder, params=params).job


class Spy:
    def __init__(self, model):
        self.inserted, self.changed, self.removed = [], [], []
        model.rowsInserted.connect(lambda _p, first, last: self.inserted.append((first, last)))
        model.dataChanged.connect(lambda tl, br, _roles=None: self.changed.append((tl.row(), br.row())))
        model.rowsRemoved.connect(lambda _p, first, last: self.removed.append((first, last)))


def test_jobs_model_follows_the_queue_incrementally(qapp, app, tmp_path):
    reader = SnapshotReader(lambda: app.store)
    model = JobsModel()
    tester = model_tester(model)  # noqa: F841 - checks every change below
    spy = Spy(model)
    first = _submit(app, tmp_path, "first", 3)
    model.apply(reader.read().jobs)
    assert spy.inserted == [(0, 0)] and model.rowCount() == 1 and model.columnCount() == len(COLUMNS)
    assert [model.index(0, c).data() for c in (0, 1, 2, 3, 4, 5)] == [
        "first", first.id, "queued", "0 % (0/3)", "0", "3"]

    model.apply(reader.read().jobs)  # nothing changed: nothing signalled
    assert spy.changed == [] and spy.inserted == [(0, 0)]

    second = _submit(app, tmp_path, "second", 2)
    claims = app.store.claim("lab-07", 2)  # two tasks of the first job start on lab-07
    for c in claims:
        app.store.mark_running(c.attempt_id, 4242)
    app.store.finish_attempt(claims[0].attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0)
    model.apply(reader.read().jobs)
    assert spy.inserted == [(0, 0), (1, 1)]  # only the new job inserted
    assert spy.changed == [(0, 0)]  # only the first job's row changed
    row = model.job_at(0)
    assert (row.status, row.done, row.running, row.hosts) == ("running", 1, 1, ("lab-07",))
    assert model.index(0, PROGRESS_COLUMN).data(ProgressRole) == 1 / 3
    assert model.index(0, PROGRESS_COLUMN).data() == "33 % (1/3)"
    assert model.index(0, HOSTS_COLUMN).data() == "lab-07"

    app.store.cancel_job(second.id)
    app.store.cancel_job(first.id)
    model.apply(reader.read().jobs)
    assert model.index(0, STATE_COLUMN).data() == "cancelled" and model.index(1, STATE_COLUMN).data() == "cancelled"
    assert model.index(0, LEFT_COLUMN).data() == "–"  # nothing left to wait for
    model.tick()  # clock-driven repaint is allowed on any model state
    assert model.data(model.index(5, 0)) is None


def test_jobs_model_with_ten_thousand_tasks(qapp, app, tmp_path):
    model = JobsModel()
    tester = model_tester(model)  # noqa: F841
    job = _submit(app, tmp_path, "big", 10_000)
    app.store.claim("local", 2)
    snapshot = SnapshotReader(lambda: app.store).read()
    model.apply(snapshot.jobs)
    assert model.index(0, TASKS_COLUMN).data() == "10000"
    assert model.job_at(0).in_flight == 2 and model.job_at(0).id == job.id
    assert len(snapshot.spans) == 2


def test_hosts_model_follows_the_hosts_table(qapp, app):
    reader = SnapshotReader(lambda: app.store)
    model = HostsModel()
    tester = model_tester(model)  # noqa: F841
    spy = Spy(model)
    model.apply(reader.read().hosts)
    assert model.rowCount() == 0
    app.store.add_host("lab-07", kind="ssh", options={"address": "10.0.0.7"})
    app.store.add_host("lab-08", kind="ssh", options={"address": "10.0.0.8"})
    resets = []
    model.modelReset.connect(lambda: resets.append(model.columns))
    model.apply(reader.read().hosts)
    assert len(resets) == 1 and model.rowCount() == 2  # the first ssh host brings the ssh columns
    app.store.add_host("lab-09", kind="ssh", options={"address": "10.0.0.9"})
    model.apply(reader.read().hosts)
    assert spy.inserted == [(2, 2)] and len(resets) == 1  # then hosts are inserted
    app.store.remove_host("lab-09")
    model.apply(reader.read().hosts)
    app.store.set_host_state("lab-08", "ready", info={"slots": 4, "python": "3.11.2", "brian": "2.7.1"}, seen=True)
    model.apply(reader.read().hosts)
    assert spy.changed == [(1, 1)]
    assert [model.index(1, c).data() for c in range(8)] == ["lab-08", "ssh", "ready", "4", "0", "–", "3.11.2", "2.7.1"]
    # Only the kinds present have columns: no cluster here, so no cluster columns.
    assert "Pending" not in model.columns and "Slots" in model.columns
    last_seen = model.columnCount() - 1
    assert model.index(1, last_seen).data().endswith("s ago")
    assert model.index(0, last_seen).data() == "never"
    app.store.remove_host("lab-07")
    model.apply(reader.read().hosts)
    assert spy.removed == [(2, 2), (0, 0)] and model.index(0, 0).data() == "lab-08"
    assert model.headerData(0, Qt.Orientation.Horizontal) == "Host"


def test_busy_slots_per_host_over_time():
    spans = [Span("a", 0, 50), Span("a", 25, None), Span("b", 90, 100), Span("b", -10, 5)]
    series = busy_slots(spans, 0, 100, 4)
    assert series == {"a": [1.0, 2.0, 1.0, 1.0], "b": [0.2, 0.0, 0.0, 0.4]}
    assert busy_slots([Span("a", 200, 300)], 0, 100, 4) == {}


def test_pool_chart_paints_busy_slots(qapp, screenshots):
    from PyQt6.QtGui import QColor, QImage

    from sparecycles_ui.poolchart import PALETTE, PoolChart

    chart = PoolChart(window_s=3 * 3600)
    chart.resize(640, 220)
    now = 100_000.0
    spans = [Span("local", now - 3 * 3600 + 600 * k, now - 3 * 3600 + 600 * k + 1500) for k in range(16)]
    spans += [Span("lab-07", now - 5400 + 300 * k, None if k > 12 else now - 5400 + 300 * k + 2400) for k in range(16)]
    chart.set_spans(spans, now)
    assert set(chart.series) == {"lab-07", "local"} and max(map(max, chart.series.values())) > 1
    image = QImage(chart.size(), QImage.Format.Format_ARGB32)
    chart.render(image)
    colours = {image.pixelColor(x, y).name() for x in range(0, 640, 4) for y in range(0, 220, 4)}
    blended = {QColor(c).name() for c in PALETTE[:2]}
    assert len(colours) > 5 and colours - blended  # something was drawn besides the background
    assert image.save(str(screenshots / "pool-chart.png"))
