"""The results plot: a scalar the tasks wrote, against one parameter (lines) or two (heatmap).

The dialog offers the numbers found in the job's JSON results and its numeric
parameters in lists; :class:`ResultsPlot` paints with QPainter, like the pool
chart, so the tray app needs neither matplotlib nor QtCharts (the app's
environment has neither, and the PyInstaller bundle stays small).
"""

from __future__ import annotations

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QPainter, QPainterPath, QPen
from PyQt6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel, QPushButton,
                             QSizePolicy, QVBoxLayout, QWidget)

from trayapp.master.resulttable import ResultRow, numeric_columns
from sparecycles_ui.plotdata import Heatmap, Line, heatmap, labelled, lines, nice_ticks, number_text, table_csv
from sparecycles_ui.poolchart import PALETTE

NO_SECOND_AXIS = "— (one line per other setting)"
# Viridis at five stops: ordered in lightness, readable by the colour-blind and in grey.
COLOUR_STOPS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def colour_at(fraction: float) -> QColor:
    fraction = min(1.0, max(0.0, fraction))
    position = fraction * (len(COLOUR_STOPS) - 1)
    i = min(int(position), len(COLOUR_STOPS) - 2)
    a, b, t = QColor(COLOUR_STOPS[i]), QColor(COLOUR_STOPS[i + 1]), position - i
    return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


class ResultsPlot(QWidget):
    """Paints whatever it was last given: lines, a heatmap, or a sentence why not."""

    MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP, MARGIN_RIGHT = 64, 44, 12, 16

    def __init__(self, parent=None):
        super().__init__(parent)
        self.lines: list[Line] = []
        self.map: Heatmap | None = None
        self.x_label = self.y_label = self.value_label = ""
        self.empty_text = ""
        self.setMinimumSize(420, 300)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def show_lines(self, series: list[Line], x_label: str, value_label: str) -> None:
        self.lines, self.map = series, None
        self.x_label, self.y_label, self.value_label = x_label, value_label, value_label
        self.empty_text = "" if series else f"no task has numbers for both {x_label} and {value_label}"
        self.update()

    def show_heatmap(self, data: Heatmap | None, x_label: str, y_label: str, value_label: str) -> None:
        self.lines, self.map = [], data
        self.x_label, self.y_label, self.value_label = x_label, y_label, value_label
        self.empty_text = "" if data else f"no task has numbers for {x_label}, {y_label} and {value_label}"
        self.update()

    def show_nothing(self, why: str) -> None:
        self.lines, self.map, self.empty_text = [], None, why
        self.update()

    def _plot_rect(self, legend_width: float) -> QRectF:
        return QRectF(self.MARGIN_LEFT, self.MARGIN_TOP,
                      max(10.0, self.width() - self.MARGIN_LEFT - self.MARGIN_RIGHT - legend_width),
                      max(10.0, self.height() - self.MARGIN_TOP - self.MARGIN_BOTTOM))

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), self.palette().base())
        p.setPen(QPen(self.palette().text().color()))
        if self.empty_text or (not self.lines and self.map is None):
            p.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.empty_text)
            return
        if self.map is not None:
            self._paint_heatmap(p, self.map)
        else:
            self._paint_lines(p)

    def _axis_titles(self, p: QPainter, plot: QRectF) -> None:
        p.drawText(QRectF(plot.left(), self.height() - 18, plot.width(), 16), Qt.AlignmentFlag.AlignHCenter,
                   self.x_label)
        p.save()
        p.translate(12, plot.center().y())
        p.rotate(-90)
        p.drawText(QRectF(-plot.height() / 2, -8, plot.height(), 16), Qt.AlignmentFlag.AlignHCenter, self.y_label)
        p.restore()

    def _paint_lines(self, p: QPainter) -> None:
        fm = p.fontMetrics()
        legend_width = 16 + max(fm.horizontalAdvance(line.label) for line in self.lines) if len(self.lines) > 1 else 0
        plot = self._plot_rect(legend_width)
        xs = [x for line in self.lines for x, _ in line.points]
        ys = [y for line in self.lines for _, y in line.points]
        x_lo, x_hi = _span(min(xs), max(xs))
        y_lo, y_hi = _span(min(ys), max(ys))

        def at(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + (x - x_lo) / (x_hi - x_lo) * plot.width(),
                           plot.bottom() - (y - y_lo) / (y_hi - y_lo) * plot.height())

        p.drawRect(plot)
        swept = sorted(set(xs))
        # A short sweep's own values are the ticks; a long one gets round numbers.
        for x in swept if len(swept) <= 8 else nice_ticks(min(xs), max(xs), 8):
            point = at(x, y_lo)
            p.drawLine(point, QPointF(point.x(), point.y() + 4))
            p.drawText(QRectF(point.x() - 40, plot.bottom() + 5, 80, 14), Qt.AlignmentFlag.AlignHCenter,
                       number_text(x))
        grid = QPen(QColor("#d8d8d8"))
        for y in nice_ticks(y_lo, y_hi, 6):  # round values (0, 20, 40), not 3.1 / 33.4 / 63.7
            point = at(x_lo, y)
            p.setPen(grid)
            p.drawLine(point, QPointF(plot.right(), point.y()))
            p.setPen(QPen(self.palette().text().color()))
            p.drawText(QRectF(0, point.y() - 7, self.MARGIN_LEFT - 6, 14), Qt.AlignmentFlag.AlignRight,
                       number_text(y))
        self._axis_titles(p, plot)
        for i, line in enumerate(self.lines):
            colour = QColor(PALETTE[i % len(PALETTE)])
            p.setPen(QPen(colour, 2))
            path = QPainterPath()
            for n, (x, y) in enumerate(line.points):
                path.moveTo(at(x, y)) if n == 0 else path.lineTo(at(x, y))
            p.drawPath(path)
            p.setBrush(colour)
            for x, y in line.points:
                p.drawEllipse(at(x, y), 3.5, 3.5)
            p.setBrush(Qt.BrushStyle.NoBrush)
            if legend_width:
                top = plot.top() + 4 + i * 18
                p.fillRect(QRectF(plot.right() + 10, top + 4, 10, 10), colour)
                p.setPen(QPen(self.palette().text().color()))
                p.drawText(QRectF(plot.right() + 24, top, legend_width, 18), Qt.AlignmentFlag.AlignLeft,
                           line.label)
        p.setPen(QPen(self.palette().text().color()))

    def _paint_heatmap(self, p: QPainter, data: Heatmap) -> None:
        plot = self._plot_rect(70)
        width, height = plot.width() / len(data.xs), plot.height() / len(data.ys)
        low, high = data.low, data.high
        spread = (high - low) or 1.0
        fm = p.fontMetrics()
        for (column, row), value in data.cells.items():
            cell = QRectF(plot.left() + column * width, plot.bottom() - (row + 1) * height, width, height)
            colour = colour_at((value - low) / spread)
            p.fillRect(cell, colour)
            text = number_text(value)
            if fm.horizontalAdvance(text) + 6 < width and fm.height() + 4 < height:
                p.setPen(QColor("black" if colour.lightness() > 110 else "white"))
                p.drawText(cell, Qt.AlignmentFlag.AlignCenter, text)
        p.setPen(QPen(self.palette().text().color()))
        p.drawRect(plot)
        for column, x in enumerate(data.xs):
            p.drawText(QRectF(plot.left() + column * width, plot.bottom() + 5, width, 14),
                       Qt.AlignmentFlag.AlignHCenter, number_text(x))
        for row, y in enumerate(data.ys):
            p.drawText(QRectF(0, plot.bottom() - (row + 0.5) * height - 7, self.MARGIN_LEFT - 6, 14),
                       Qt.AlignmentFlag.AlignRight, number_text(y))
        self._axis_titles(p, plot)
        bar = QRectF(plot.right() + 14, plot.top(), 14, plot.height())  # the colour scale
        steps = 40
        for i in range(steps):
            p.fillRect(QRectF(bar.left(), bar.bottom() - (i + 1) * bar.height() / steps, bar.width(),
                              bar.height() / steps + 1), colour_at(i / (steps - 1)))
        p.drawText(QRectF(bar.right() + 4, bar.top() - 2, 60, 14), Qt.AlignmentFlag.AlignLeft, number_text(high))
        p.drawText(QRectF(bar.right() + 4, bar.bottom() - 12, 60, 14), Qt.AlignmentFlag.AlignLeft, number_text(low))


def _span(low: float, high: float) -> tuple[float, float]:
    """An axis range with a little room, never of zero width."""
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


class ResultsPlotDialog(QDialog):
    """Pick a value and one or two parameters; the plot follows the choice at once."""

    def __init__(self, job_name: str, rows: list[ResultRow], parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Results of {job_name}")
        self.rows = rows
        self.job_name = job_name
        params, values = numeric_columns(rows)
        self.value = QComboBox()
        self.x_axis = QComboBox()
        self.y_axis = QComboBox()
        self.y_axis.addItem(NO_SECOND_AXIS, "")
        # A result and a parameter may share a name: the lists say which is which.
        for text, name in labelled(values, params, "result"):
            self.value.addItem(text, name)
        for text, name in labelled(params, values, "parameter"):
            self.x_axis.addItem(text, name)
            self.y_axis.addItem(text, name)
        self.plot = ResultsPlot()
        self.note = QLabel("")
        self.note.setWordWrap(True)
        choices = QHBoxLayout()
        for text, combo in (("Plot", self.value), ("against", self.x_axis), ("and", self.y_axis)):
            choices.addWidget(QLabel(text))
            choices.addWidget(combo, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.png_button = buttons.addButton("Export PNG…", QDialogButtonBox.ButtonRole.ActionRole)
        self.csv_button = buttons.addButton("Export CSV…", QDialogButtonBox.ButtonRole.ActionRole)
        self.png_button.clicked.connect(lambda: self._ask_path("PNG image (*.png)", ".png", self.export_png))
        self.csv_button.clicked.connect(lambda: self._ask_path("CSV table (*.csv)", ".csv", self.export_csv))
        layout = QVBoxLayout(self)
        layout.addLayout(choices)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.resize(720, 480)
        if len(params) > 1:
            self.y_axis.setCurrentIndex(2)  # a two-parameter sweep opens as its heatmap
        for combo in (self.value, self.x_axis, self.y_axis):
            combo.currentIndexChanged.connect(self.redraw)
        self.redraw()

    def _ask_path(self, kind: str, suffix: str, export) -> None:
        dialog = QFileDialog(self, "Export", f"{self.job_name}-results{suffix}", kind)
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix(suffix.lstrip("."))
        dialog.fileSelected.connect(export)
        self.file_dialog = dialog
        dialog.open()

    def export_png(self, path: str) -> bool:
        ok = self.plot.grab().save(path, "PNG")
        self.note.setText(f"saved the plot to {path}" if ok else f"could not write {path}")
        return ok

    def export_csv(self, path: str) -> bool:
        try:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(table_csv(self.rows))
        except OSError as exc:
            self.note.setText(f"could not write {path}: {exc.strerror}")
            return False
        self.note.setText(f"saved the table ({len(self.rows)} task(s)) to {path}")
        return True

    def redraw(self, *_args) -> None:
        done = sum(1 for row in self.rows if row.scalars)
        value, x, y = self.value.currentData(), self.x_axis.currentData(), self.y_axis.currentData()
        value_text, x_text, y_text = self.value.currentText(), self.x_axis.currentText(), self.y_axis.currentText()
        if not value or not x:
            missing = "numbers in the tasks' JSON results" if not value else "numeric parameters"
            self.plot.show_nothing(f"nothing to plot: this job has no {missing}.\nA task's results/*.json "
                                   "with numbers (e.g. {\"rate_hz\": 6.2}) and numeric parameters make a plot.")
            self.note.setText("")
            return
        if not y or y == x:
            self.plot.show_lines(lines(self.rows, x, value), x_text, value_text)
        else:
            self.plot.show_heatmap(heatmap(self.rows, x, y, value), x_text, y_text, value_text)
        self.note.setText(f"{done} of {len(self.rows)} task(s) brought back results; values are read from "
                          "the JSON files in each task's results folder.")
