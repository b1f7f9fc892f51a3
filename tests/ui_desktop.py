"""Test support for the tray app's widgets, offscreen.

Importing this module first makes widget tests run offscreen
(``QT_QPA_PLATFORM=offscreen``, set before any QApplication exists):
:func:`build_tray_app` builds the real tray app with every step synchronous,
:func:`drop_paths` drops folders the way a file manager does. The tray app on
a real X desktop: :mod:`support.desktop`.
"""

from __future__ import annotations

import os

# Before any QApplication exists: the widget tests need no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PyQt6.QtCore import QEvent, QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PyQt6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PyQt6.QtTest import QAbstractItemModelTester  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from trayapp.config import Config  # noqa: E402
from trayapp.home import Home  # noqa: E402
from sparecycles_ui.app import TrayApp  # noqa: E402
from sparecycles_ui.workers import InlineExecutor  # noqa: E402


_BUILT: list[TrayApp] = []


def build_tray_app(qtbot, home: Home, mode: str = "master", **config) -> TrayApp:
    """The real tray app over ``home``, every step synchronous, no engine child.
    A module that builds one must import :func:`dispose_tray_apps` (autouse)."""
    app = TrayApp(home, Config(mode=mode, **config), InlineExecutor(), start_child=False, interval_ms=60_000)
    _BUILT.append(app)
    app.watcher.refresh()
    return app


@pytest.fixture(autouse=True)
def dispose_tray_apps():
    """Delete the test's tray apps when it ends, deterministically: left to
    Python's cycle collector, a window could be deleted in the middle of a
    later test's painting."""
    yield
    while _BUILT:
        _BUILT.pop().dispose()
    if QApplication.instance() is not None:
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def drop_paths(widget, *paths) -> QDropEvent:
    """Drop files/folders on ``widget`` the way a file manager does: a real
    drag-enter, then a real QDropEvent carrying file URLs."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the drop zone refused the drag"
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop


def model_tester(model) -> QAbstractItemModelTester:
    return QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
