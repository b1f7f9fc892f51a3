"""Paints a job's progress as a progress bar in the jobs table."""

from __future__ import annotations

from PyQt6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionProgressBar

from sparecycles_ui.jobsmodel import ProgressRole


class ProgressDelegate(QStyledItemDelegate):
    def paint(self, painter, option, index) -> None:
        fraction = index.data(ProgressRole)
        if fraction is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(round(fraction * 1000))
        bar.text = f"{fraction:.0%}"
        bar.textVisible = True
        bar.state = option.state
        # The application style, not option.widget's: the option's widget pointer
        # is not safe to follow from Python while views are being torn down.
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
