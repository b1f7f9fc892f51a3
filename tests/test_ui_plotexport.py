"""The results plot's ticks, its export to PNG and CSV, and results kept apart from
parameters of the same name (in the plot's lists, the CSV and ``to_frame()``)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import ui_desktop  # noqa: F401 - sets the offscreen platform first

from PyQt6.QtGui import QImage

from sparecycles.results import TaskResult, results_frame
from trayapp.master.resulttable import ResultRow
from trayapp.status import TaskStatus
from sparecycles_ui.plotdata import nice_ticks
from sparecycles_ui.resultsplot import ResultsPlotDialog


def _rows() -> list[ResultRow]:
    # The task measured the rate it was asked for: a result and a parameter both named rate_hz.
    return [ResultRow(i, TaskStatus.DONE, 0, {"rate_hz": r, "g": 5}, Path(f"/results/{i}"),
                      {"rate_hz": r * 0.93 + 0.4, "spikes": 3 * i})
            for i, r in enumerate((3.1, 10.0, 20.0, 33.4, 45.0, 50.0, 55.0, 60.0, 63.7, 70.0))]


def test_ticks_are_round_numbers():
    assert nice_ticks(3.1, 63.7) == [20, 40, 60]
    assert nice_ticks(3.1, 63.7, 8) == [10, 20, 30, 40, 50, 60]
    assert nice_ticks(0, 1, 6) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(5, 5) == [5]


def test_a_result_and_a_parameter_with_one_name_are_told_apart_and_exported(qtbot, tmp_path):
    dialog = ResultsPlotDialog("lif", _rows())
    qtbot.addWidget(dialog)
    dialog.show()
    assert [dialog.value.itemText(i) for i in range(dialog.value.count())] == ["rate_hz (result)", "spikes"]
    assert [dialog.x_axis.itemText(i) for i in range(dialog.x_axis.count())] == ["rate_hz (parameter)", "g"]
    assert dialog.plot.x_label == "rate_hz (parameter)" and dialog.plot.value_label == "rate_hz (result)"
    png, table = tmp_path / "plot.png", tmp_path / "table.csv"
    assert dialog.export_png(str(png)) and not QImage(str(png)).isNull()
    assert dialog.export_csv(str(table)) and "saved the table (10 task(s))" in dialog.note.text()
    with table.open() as fh:
        read = list(csv.reader(fh))
    assert read[0] == ["task", "state", "rate_hz", "g", "rate_hz (result)", "spikes"]
    assert read[1][:3] == ["0", "done", "3.1"] and len(read) == 11
    assert not dialog.export_csv(str(tmp_path / "no-such-folder" / "t.csv"))
    assert "could not write" in dialog.note.text()


def test_to_frame_warns_when_it_renames_a_result():
    results = [TaskResult(r.index, r.params, "done", 0, r.folder, None, dict(r.scalars)) for r in _rows()]
    with pytest.warns(UserWarning, match="share the name.*rate_hz.*result.rate_hz"):
        frame = results_frame(results)
    assert list(frame.columns) == ["state", "rate_hz", "g", "result.rate_hz", "spikes"]
