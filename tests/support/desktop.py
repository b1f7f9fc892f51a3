"""A real X desktop: Xvfb with a tray (``trayer``) on it.

``trayer`` makes ``QSystemTrayIcon`` really embedded (XEmbed system tray
protocol). :class:`Desktop` reads the window tree with ``xwininfo``, clicks
with ``xdotool``, and saves screenshots through PyQt6 on that display;
processes under it get ``QT_QPA_PLATFORM=xcb``. Every process it starts it
ends, by its own pid.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from support.waiting import wait_until
from support.xvfb import Xvfb

TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo")
WINDOW_MANAGER = "openbox"  # frames, focus and placement as on a user's desktop

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
        self._xvfb = Xvfb(width, height, log=folder / "xvfb.log")
        self._trayer: subprocess.Popen | None = None
        self._wm: subprocess.Popen | None = None

    @property
    def display(self) -> str:
        return self._xvfb.display

    # ----- life ---------------------------------------------------------------------------

    def start(self, *, tray: bool = True, window_manager: bool = False) -> "Desktop":
        """Xvfb, and (``tray``) trayer on it, and (``window_manager``) openbox."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._xvfb.start()
        if window_manager:
            self._wm = subprocess.Popen([WINDOW_MANAGER, "--sm-disable"], env=self.env(), stdout=subprocess.DEVNULL,
                                        stderr=open(self.folder / "openbox.log", "ab"))
            # openbox owns the WM_S0 selection once it manages the screen.
            self.wait_for(lambda: "WM_S0" in self._selection_owner() or self._wm.poll() is not None,
                          "openbox to manage the screen", timeout=20)
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

    def _selection_owner(self) -> str:
        # xprop on the root shows _NET_SUPPORTING_WM_CHECK once a EWMH manager runs.
        out = subprocess.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=self.env(), capture_output=True,
                             text=True, timeout=20).stdout
        return "WM_S0" if "window id" in out else ""

    def stop(self) -> None:
        self._stop_process(self._trayer)
        self._stop_process(self._wm)
        self._xvfb.stop()

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
        self._xvfb.xdotool("mousemove", str(x), str(y), "click", str(button))

    def key(self, name: str) -> None:
        self._xvfb.key(name)

    def screenshot(self, path: Path, x: int = 0, y: int = 0, width: int | None = None,
                   height: int | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        w, h = width or self.size[0] - x, height or self.size[1] - y
        subprocess.run([sys.executable, "-c", _GRAB, str(path), str(x), str(y), str(w), str(h)], env=self.env(),
                       check=True, timeout=60)
        return path
