"""Test support for the tray app: offscreen widgets, and a real X desktop.

Importing this module first makes widget tests run offscreen
(``QT_QPA_PLATFORM=offscreen``, set before any QApplication exists):
:func:`build_tray_app` builds the real tray app with every step synchronous,
:func:`drop_paths` drops folders the way a file manager does.

``Desktop`` starts ``Xvfb`` on a display number it picks itself
(``-displayfd``) and ``trayer`` on it, so ``QSystemTrayIcon`` is really
embedded (XEmbed system tray protocol). It reads the window tree with
``xwininfo``, clicks with ``xdotool``, and saves screenshots through PyQt6 on
that display; processes under it get ``QT_QPA_PLATFORM=xcb``. Every process
it starts it ends, by its own pid.

(``tests/desktop.py`` is the idle-detection tests' own helper; this one is
the tray app's.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Before any QApplication exists: the widget tests need no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PyQt6.QtCore import QEvent, QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PyQt6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PyQt6.QtTest import QAbstractItemModelTester  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402
from conftest import wait_until  # noqa: E402

from trayapp.config import Config  # noqa: E402
from trayapp.home import Home  # noqa: E402
from ui.app import TrayApp  # noqa: E402
from ui.workers import InlineExecutor  # noqa: E402


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


# ----- a real X desktop ------------------------------------------------------------

TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

_GRAB = """
import sys
from PyQt6.QtGui import QGuiApplication
app = QGuiApplication(sys.argv[:1])
x, y, w, h = (int(v) for v in sys.argv[2:6])
ok = app.primaryScreen().grabWindow(0, x, y, w, h).save(sys.argv[1])
sys.exit(0 if ok else 1)
"""

_LINE = re.compile(r'^(?P<indent>\s*)(?P<id>0x[0-9a-f]+) (?P<name>"[^"]*"|\(has no name\)): \((?P<cls>[^)]*)\)\s+'
                   r'(?P<w>\d+)x(?P<h>\d+)\+(?P<x>-?\d+)\+(?P<y>-?\d+)\s+\+(?P<ax>-?\d+)\+(?P<ay>-?\d+)')


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass(frozen=True)
class XWindow:
    id: str
    name: str
    cls: str
    depth: int  # indentation in the tree: children are deeper than their parent
    width: int
    height: int
    x: int  # absolute, on the screen
    y: int

    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


class Desktop:
    def __init__(self, folder: Path, width: int = 1024, height: int = 768):
        self.folder = folder
        self.size = (width, height)
        self.display: str | None = None
        self._xvfb: subprocess.Popen | None = None
        self._trayer: subprocess.Popen | None = None

    # ----- life ---------------------------------------------------------------------------

    def start(self, *, tray: bool = True) -> "Desktop":
        """Xvfb, and (``tray``) trayer on it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        w, h = self.size
        self._xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{w}x{h}x24",
                                       "-nolisten", "tcp"], pass_fds=(write_fd,),
                                      stdout=subprocess.DEVNULL, stderr=open(self.folder / "xvfb.log", "ab"))
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb did not start: {(self.folder / 'xvfb.log').read_text()}")
        self.display = f":{number}"
        if tray:
            try:
                self.start_tray()
            except BaseException:
                self.stop()
                raise
        return self

    def start_tray(self) -> None:
        # trayer now and then comes up without its panel on a display that
        # has just started; a second try gets it.
        for attempt in range(3):
            self._start_trayer()
            try:
                self.wait_for(lambda: self.find(name="panel"), "trayer's panel", timeout=10)
                return
            except AssertionError:
                if attempt == 2:
                    raise AssertionError(f"trayer showed no panel; its log: "
                                         f"{(self.folder / 'trayer.log').read_text()}") from None

    def _start_trayer(self) -> None:
        self._stop_process(self._trayer)
        self._trayer = subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", "28",
             "--SetDockType", "true", "--transparent", "false", "--tint", "0x2b2b2b"],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=open(self.folder / "trayer.log", "ab"))

    def stop(self) -> None:
        self._stop_process(self._trayer)
        self._stop_process(self._xvfb)

    @staticmethod
    def _stop_process(proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def env(self, **extra: str) -> dict:
        env = {**os.environ, "DISPLAY": self.display, "QT_QPA_PLATFORM": "xcb", **extra}
        env.pop("WAYLAND_DISPLAY", None)
        return env

    # ----- looking --------------------------------------------------------------------------

    def windows(self) -> list[XWindow]:
        out = subprocess.run(["xwininfo", "-root", "-tree"], env=self.env(), capture_output=True, text=True,
                             timeout=20).stdout
        found = []
        for line in out.splitlines():
            m = _LINE.match(line)
            if m:
                name = m["name"].strip('"') if m["name"].startswith('"') else ""
                found.append(XWindow(m["id"], name, m["cls"], len(m["indent"]), int(m["w"]), int(m["h"]),
                                     int(m["ax"]), int(m["ay"])))
        return found

    def is_viewable(self, window_id: str) -> bool:
        """Mapped and shown (False once it is unmapped or destroyed)."""
        out = subprocess.run(["xwininfo", "-id", window_id], env=self.env(), capture_output=True, text=True,
                             timeout=20).stdout
        return "Map State: IsViewable" in out

    def find(self, name: str) -> XWindow | None:
        return next((w for w in self.windows() if w.name == name), None)

    def embedded_in_tray(self, name: str) -> XWindow | None:
        """A window called ``name`` inside trayer's panel, with a real size."""
        inside, depth = False, 0
        for w in self.windows():
            if inside and w.depth <= depth:
                inside = False
            if w.name == "panel" and "trayer" in w.cls:
                inside, depth = True, w.depth
            elif inside and w.name == name and w.width >= 8 and w.height >= 8:
                return w
        return None

    def top_level(self, name: str) -> list[XWindow]:
        """Top-level windows called ``name`` (children of the root), largest first."""
        depth = min((w.depth for w in self.windows()), default=0)
        return sorted((w for w in self.windows() if w.depth == depth and w.name == name and w.width > 1),
                      key=lambda w: -w.width * w.height)

    @staticmethod
    def wait_for(predicate, what: str, timeout: float = 30.0, interval: float = 0.1):
        return wait_until(predicate, timeout, interval, what)

    # ----- doing -------------------------------------------------------------------------------

    def click(self, x: int, y: int, button: int = 1) -> None:
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", str(button)], env=self.env(), check=True,
                       timeout=20)

    def key(self, name: str) -> None:
        subprocess.run(["xdotool", "key", name], env=self.env(), check=True, timeout=20)

    def screenshot(self, path: Path, x: int = 0, y: int = 0, width: int | None = None,
                   height: int | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        w, h = width or self.size[0] - x, height or self.size[1] - y
        subprocess.run([sys.executable, "-c", _GRAB, str(path), str(x), str(y), str(w), str(h)], env=self.env(),
                       check=True, timeout=60)
        return path
