"""A picture of the pool over time: busy slots per host over the last hours.

:func:`busy_slots` turns attempts (started/ended spans) into the average
number of busy slots per host in each time bucket; :class:`PoolChart` paints
them as stacked areas with QPainter (no QtCharts needed).
"""

from __future__ import annotations

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QPainter, QPainterPath, QPen
from PyQt6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from sparecycles_ui.snapshot import Snapshot, Span

RANGES = (("1 h", 3600), ("6 h", 6 * 3600), ("24 h", 24 * 3600), ("7 d", 7 * 24 * 3600))
PALETTE = ("#2e7dd7", "#2e9d48", "#d99a06", "#7b4bc4", "#c62f2f", "#1aa3a3", "#8a6d3b", "#d0489a")


def busy_slots(spans: list[Span], start: float, end: float, buckets: int) -> dict[str, list[float]]:
    """Average busy slots per host in each of ``buckets`` equal slices of [start, end)."""
    width = (end - start) / buckets
    series: dict[str, list[float]] = {}
    for span in spans:
        lo, hi = max(span.started, start), min(span.ended if span.ended is not None else end, end)
        if hi <= lo:
            continue
        row = series.setdefault(span.host, [0.0] * buckets)
        first, last = int((lo - start) // width), min(buckets - 1, int((hi - start) // width))
        for b in range(first, last + 1):
            b_lo, b_hi = start + b * width, start + (b + 1) * width
            row[b] += max(0.0, min(hi, b_hi) - max(lo, b_lo)) / width
    return dict(sorted(series.items()))


class PoolChart(QWidget):
    def __init__(self, window_s: float, buckets: int = 90, parent=None):
        super().__init__(parent)
        self.window_s = window_s
        self.buckets = buckets
        self.series: dict[str, list[float]] = {}
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def digest(self, snapshot: Snapshot) -> dict[str, list[float]]:
        """The series to show for ``snapshot``. Called on the reader's worker
        thread (10,000 attempts take ~12 ms of Python), so it reads only the
        chart's fixed window and bucket count, never Qt state."""
        return busy_slots(snapshot.spans, snapshot.taken - self.window_s, snapshot.taken, self.buckets)

    def set_window(self, window_s: float) -> None:
        """Show another span of time; the next reading's digest fills it (within a second)."""
        self.window_s = window_s
        self.series = {}
        self.update()

    def set_series(self, series: dict[str, list[float]]) -> None:
        self.series = series
        self.update()

    def set_spans(self, spans: list[Span], now: float) -> None:
        self.set_series(busy_slots(spans, now - self.window_s, now, self.buckets))

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), self.palette().base())
        legend_h = 18
        plot = QRectF(40, 8, max(10, self.width() - 50), max(10, self.height() - 30 - legend_h))
        totals = [sum(v[b] for v in self.series.values()) for b in range(self.buckets)]
        top = max(1.0, max(totals, default=0.0))
        p.setPen(QPen(self.palette().text().color()))
        p.drawText(QRectF(0, plot.top() - 6, 36, 14), Qt.AlignmentFlag.AlignRight, f"{top:.0f}")
        p.drawText(QRectF(0, plot.bottom() - 8, 36, 14), Qt.AlignmentFlag.AlignRight, "0")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, 200, 14), Qt.AlignmentFlag.AlignLeft,
                   f"{span_text(self.window_s)} ago")
        p.drawText(QRectF(plot.center().x() - 100, plot.bottom() + 2, 200, 14), Qt.AlignmentFlag.AlignHCenter,
                   f"{span_text(self.window_s / 2)} ago")
        p.drawText(QRectF(plot.right() - 100, plot.bottom() + 2, 100, 14), Qt.AlignmentFlag.AlignRight, "now")
        p.drawRect(plot)
        p.drawText(QRectF(plot.left() + 6, plot.top() + 2, 300, 16), Qt.AlignmentFlag.AlignLeft,
                   "busy slots per host")
        if not self.series:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no tasks ran in this time")
            return
        step = plot.width() / self.buckets
        base = [0.0] * self.buckets
        x_legend = plot.left()
        for i, (host, values) in enumerate(self.series.items()):
            colour = QColor(PALETTE[i % len(PALETTE)])
            path = QPainterPath()
            y = lambda v: plot.bottom() - v / top * plot.height()  # noqa: E731
            path.moveTo(QPointF(plot.left(), y(base[0])))
            for b in range(self.buckets):
                path.lineTo(QPointF(plot.left() + b * step, y(base[b] + values[b])))
                path.lineTo(QPointF(plot.left() + (b + 1) * step, y(base[b] + values[b])))
            for b in reversed(range(self.buckets)):
                path.lineTo(QPointF(plot.left() + (b + 1) * step, y(base[b])))
                path.lineTo(QPointF(plot.left() + b * step, y(base[b])))
            path.closeSubpath()
            colour.setAlpha(170)
            p.fillPath(path, colour)
            base = [base[b] + values[b] for b in range(self.buckets)]
            p.fillRect(QRectF(x_legend, self.height() - legend_h + 4, 10, 10), colour)
            p.drawText(QRectF(x_legend + 14, self.height() - legend_h, 150, 16), Qt.AlignmentFlag.AlignLeft, host)
            x_legend += 24 + p.fontMetrics().horizontalAdvance(host)


def span_text(seconds: float) -> str:
    """1 h, 90 min, 3.5 d: a span as the chart's axis says it."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"


class PoolTab(QWidget):
    """The chart with its choice of span: the last hour, 6 hours, a day or a week."""

    def __init__(self, chart: PoolChart, parent=None):
        super().__init__(parent)
        self.chart = chart
        self.range_box = QComboBox()
        for text, seconds in RANGES:
            self.range_box.addItem(f"last {text}", seconds)
        index = self.range_box.findData(chart.window_s)
        self.range_box.setCurrentIndex(index if index >= 0 else 1)
        chart.set_window(self.range_box.currentData())
        self.range_box.currentIndexChanged.connect(lambda _i: chart.set_window(self.range_box.currentData()))
        row = QHBoxLayout()
        row.addWidget(QLabel("Show:"))
        row.addWidget(self.range_box)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(chart, 1)
