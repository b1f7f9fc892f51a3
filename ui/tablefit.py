"""Column widths that fit, without measuring every row.

``QHeaderView.ResizeToContents`` measures every cell on every change, which
freezes the window with thousands of rows (bench/ui_responsiveness.py). Here a
column is as wide as its title, or as a sample text the caller expects in it.
"""

from __future__ import annotations

from PyQt6.QtWidgets import QTableView

PADDING = 20  # the sort arrow and the cell margins


def fit_header(view: QTableView, samples: dict[int, str] | None = None) -> None:
    header = view.horizontalHeader()
    model = view.model()
    cells = view.fontMetrics()
    titles = header.fontMetrics()
    for column in range(model.columnCount()):
        title = str(model.headerData(column, header.orientation()) or "")
        sample = (samples or {}).get(column, "")
        header.resizeSection(column, max(titles.horizontalAdvance(title), cells.horizontalAdvance(sample)) + PADDING)
