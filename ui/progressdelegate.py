"""Paints a job's progress in the jobs table: a horizontal bar, coloured by the job's state.

Painted by hand rather than through the style's progress bar: styles differ
in whether they honour the horizontal flag and a colour (the Fusion bar drawn
from an item delegate came out vertical and always blue), and a bar that
reads 38 % must look like 38 % on every desktop.
"""

from __future__ import annotations

from PyQt6.QtCore import QRect, Qt
from PyQt6.QtGui import QColor, QPen
from PyQt6.QtWidgets import QStyle, QStyledItemDelegate

from sparecycles_ui.jobsmodel import JobRole, ProgressRole, progress_text

# Readable with black text on the filled part and on the track alike.
STATE_COLOURS = {
    "running": "#6aa9e9",
    "done": "#6cc070",
    "failed": "#ef7b74",
    "cancelled": "#b8b8b8",
    "queued": "#f2c14e",
}
WAITING_COLOUR = "#f2a54e"  # queued or running, but waiting on something named (an environment, a host)
TRACK_COLOUR = "#f1f1f1"
BORDER_COLOUR = "#9a9a9a"


def bar_colour(status: str, waiting: bool) -> QColor:
    if waiting and status in ("queued", "running"):
        return QColor(WAITING_COLOUR)
    return QColor(STATE_COLOURS.get(status, STATE_COLOURS["running"]))


def paint_bar(painter, rect: QRect, fraction: float, colour: QColor, text: str) -> None:
    """Track, filled part from the left in proportion to ``fraction``, border, centred text."""
    painter.save()
    painter.setRenderHint(painter.RenderHint.Antialiasing, False)
    painter.fillRect(rect, QColor(TRACK_COLOUR))
    filled = round(rect.width() * min(1.0, max(0.0, fraction)))
    if filled:
        painter.fillRect(QRect(rect.left(), rect.top(), filled, rect.height()), colour)
    painter.setPen(QPen(QColor(BORDER_COLOUR)))
    painter.drawRect(rect.adjusted(0, 0, -1, -1))
    painter.setPen(QPen(QColor("#000000")))
    painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), text)
    painter.restore()


class ProgressDelegate(QStyledItemDelegate):
    def paint(self, painter, option, index) -> None:
        fraction = index.data(ProgressRole)
        job = index.data(JobRole)
        if fraction is None or job is None:
            super().paint(painter, option, index)
            return
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        paint_bar(painter, option.rect.adjusted(3, 3, -3, -3), fraction,
                  bar_colour(job.status, bool(job.waiting_on)), progress_text(job))
