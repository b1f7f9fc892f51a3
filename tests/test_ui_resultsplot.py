"""The results plot, opened from the jobs tab on a real finished job (offscreen)."""

from __future__ import annotations

import pytest
import ui_desktop  # noqa: F401 - sets the offscreen platform first

import sparecycles
from conftest import make_job, run_dispatcher
from trayapp.job.submit import submit_job
from sparecycles_ui.jobsmodel import STATE_COLUMN
from sparecycles_ui.resultsplot import NO_SECOND_AXIS, colour_at
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401 - autouse

pytestmark = pytest.mark.slow

# rate_hz = 10 x + g: the heatmap's corners and the lines' points are known.
RATE_TASK = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
with open("results/summary.json", "w") as fh:
    json.dump({"rate_hz": 10 * p["x"] + p["g"], "model": "toy", "trace": [1, 2]}, fh)
with open("results/spikes.json", "w") as fh:
    json.dump(3 * p["x"], fh)
"""


def test_plot_a_finished_sweep_as_heatmap_and_lines(qtbot, app, tmp_path, screenshots):
    # Submitted from Python: the window shows the job like any other.
    folder, _ = make_job(tmp_path / "toy", RATE_TASK)
    job = sparecycles.submit(folder, params={"x": [1, 2, 3], "g": [5, 7], "label": "a"}, start=False)
    run_dispatcher(app)
    assert job.status() == "done"

    tray_app = build_tray_app(qtbot, app.home, poll_interval_s=0.05, slots=2)
    window = tray_app.window
    window.show()
    assert tray_app.jobs.job_at(0).id == job.id and tray_app.jobs.index(0, STATE_COLUMN).data() == "done"
    window.select_job(tray_app.jobs.job_at(0).seq)
    assert window.plot_button.isEnabled()
    window.plot_button.click()
    dialog = window.dialog
    dialog.show()
    qtbot.waitExposed(dialog)

    # Numbers only: the text parameter and the text/nested results are not offered.
    assert [dialog.value.itemText(i) for i in range(dialog.value.count())] == ["spikes", "rate_hz"]
    assert [dialog.x_axis.itemText(i) for i in range(dialog.x_axis.count())] == ["x", "g"]
    dialog.value.setCurrentText("rate_hz")
    assert dialog.y_axis.currentText() == "g"  # two numeric parameters: a heatmap first
    heat = dialog.plot.map
    assert heat.xs == (1, 2, 3) and heat.ys == (5, 7)
    assert heat.cells == {(c, r): 10 * x + g for c, x in enumerate((1, 2, 3)) for r, g in enumerate((5, 7))}
    shot = dialog.grab()
    heat_png = screenshots / "results-heatmap.png"
    assert shot.save(str(heat_png))
    # The lowest cell (x=1, g=5: bottom left) is painted the scale's first colour, the highest its last.
    image = shot.toImage()
    origin = dialog.plot.mapTo(dialog, dialog.plot.rect().topLeft())
    plot = dialog.plot._plot_rect(70)
    cell_w, cell_h = plot.width() / 3, plot.height() / 2
    low = image.pixelColor(int(origin.x() + plot.left() + 4), int(origin.y() + plot.bottom() - 4))
    high = image.pixelColor(int(origin.x() + plot.right() - 4), int(origin.y() + plot.top() + 4))
    assert (low.name(), high.name()) == (colour_at(0).name(), colour_at(1).name())
    assert cell_w > 40 and cell_h > 40

    dialog.y_axis.setCurrentText(NO_SECOND_AXIS)
    assert dialog.plot.map is None
    assert [(line.label, line.points) for line in dialog.plot.lines] == [
        ("g=5", ((1, 15), (2, 25), (3, 35))), ("g=7", ((1, 17), (2, 27), (3, 37)))]
    lines_png = screenshots / "results-lines.png"
    assert dialog.grab().save(str(lines_png))
    assert "6 of 6 task(s) brought back results" in dialog.note.text()


def test_a_job_without_numbers_says_what_would_make_a_plot(qtbot, app, tmp_path):
    folder, params = make_job(tmp_path / "quiet", "print('no results')\n", params=[{"x": 1}, {"x": 2}])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    run_dispatcher(app)
    tray_app = build_tray_app(qtbot, app.home, poll_interval_s=0.05, slots=2)
    window = tray_app.window
    window.select_job(job.seq)
    window.plot_button.click()
    assert "nothing to plot: this job has no numbers in the tasks' JSON results" in window.dialog.plot.empty_text
    assert window.dialog.grab().save(str(tmp_path / "results-empty.png"))
