"""Figures for a built bundle, printed by installer/build.sh.

    python installer/measure.py dist/sparecycles

Prints the bundle's size, the start time of ``--version`` and of the agent
handshake (a fresh SPARECYCLES_HOME, no slave daemon: one "offline" line back),
and, where Xvfb, trayer and xwininfo are installed, the time from starting the
tray app to its icon being embedded in the tray, against the target (under
2 s) and a baseline measured in the same run: a bare PyQt6 program that shows
a tray icon and nothing else, in this Python.

"cold" starts follow an eviction of the bundle's files from the page cache
(``posix_fadvise(DONTNEED)`` on each: the start must read them from disk, as
after a reboot; system libraries shared with the desktop stay cached, as they
would be at a login); "warm" starts follow one another. Exits non-zero if a
smoke check fails, so the build fails with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELLO = '{"v":1,"type":"hello","master":"0123456789abcdef","name":"measure"}\n'


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def timed(argv: list[str], env: dict, stdin: str | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=120)
    return time.perf_counter() - started, done


def fresh_env(root: Path, name: str) -> dict:
    home = root / name
    home.mkdir()
    return {**os.environ, "SPARECYCLES_HOME": str(home)}


def check_version(exe: Path, root: Path) -> list[float]:
    times = []
    for i in range(4):
        seconds, done = timed([str(exe), "--version"], fresh_env(root, f"version{i}"))
        if done.returncode != 0 or not done.stdout.startswith("sparecycles "):
            raise SystemExit(f"--version failed: {done.returncode} {done.stdout!r} {done.stderr!r}")
        times.append(seconds)
    return times


def check_agent(exe: Path, root: Path) -> list[float]:
    times = []
    for i in range(4):
        seconds, done = timed([str(exe), "agent"], fresh_env(root, f"agent{i}"), HELLO)
        lines = done.stdout.splitlines()
        answer = json.loads(lines[0]) if lines else {}
        if done.returncode != 0 or answer.get("type") != "error" or answer.get("offline") is not True:
            raise SystemExit(f"agent handshake failed: {done.returncode} {done.stdout!r} {done.stderr!r}")
        times.append(seconds)
    return times


_PANEL = re.compile(r'^(\s*)0x[0-9a-f]+ "panel": \(.*trayer.*\)')
_ICON = re.compile(r'^(\s*)0x[0-9a-f]+ "SpareCycles": \(.*\)\s+(\d+)x(\d+)')


def icon_in_tray(display: str) -> bool:
    out = subprocess.run(["xwininfo", "-root", "-tree"], env={**os.environ, "DISPLAY": display},
                         capture_output=True, text=True, timeout=20).stdout
    panel_depth = None
    for line in out.splitlines():
        depth = len(line) - len(line.lstrip())
        if panel_depth is not None and depth <= panel_depth:
            panel_depth = None
        if _PANEL.match(line):
            panel_depth = depth
            continue
        m = _ICON.match(line)
        if panel_depth is not None and m and int(m[2]) >= 8 and int(m[3]) >= 8:
            return True
    return False


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise SystemExit("the tray app did not quit within 20 s of SIGTERM")


BARE_TRAY = """
import sys
from PyQt6.QtGui import QColor, QIcon, QPixmap
from PyQt6.QtWidgets import QApplication, QSystemTrayIcon
app = QApplication(sys.argv[:1])
app.setApplicationName("SpareCycles")  # the window name the tray check looks for
pixmap = QPixmap(22, 22)
pixmap.fill(QColor("#2e7dd7"))
icon = QSystemTrayIcon(QIcon(pixmap))
icon.show()
app.exec()
"""


def evict_from_page_cache(folder: Path) -> int:
    """Drop ``folder``'s files from the page cache (clean pages only); how many files."""
    count = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def tray_to_icon(command: list[str], root: Path, runs: int = 3, cold_from: Path | None = None
                 ) -> list[tuple[str, float]] | None:
    """Seconds from exec to the icon embedded in trayer on Xvfb, per run, each
    run labelled cold (``cold_from`` evicted from the page cache first) or
    warm; None without those tools. Cold and warm runs alternate."""
    if not all(shutil.which(t) for t in ("Xvfb", "trayer", "xwininfo")):
        return None
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        display = ":" + pipe.readline().strip()
    trayer = None
    times = []
    try:
        xenv = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        xenv.pop("WAYLAND_DISPLAY", None)
        for attempt in range(3):  # trayer sometimes comes up without its panel on a new display
            trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                                       "--height", "28", "--SetDockType", "true", "--transparent", "false"],
                                      env=xenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait(lambda: "trayer" in subprocess.run(["xwininfo", "-root", "-tree"], env=xenv,
                                                          capture_output=True, text=True).stdout, 10):
                break
            trayer.kill()
            trayer.wait()
        for i in range(runs):
            env = {**fresh_env(root, f"tray-{time.monotonic_ns()}"),
                   **{k: v for k, v in xenv.items() if k != "SPARECYCLES_HOME"}}
            if not wait(lambda: not icon_in_tray(display), 10):
                raise SystemExit("a SpareCycles icon is in the tray before the app started")
            kind = "cold" if cold_from is not None and i % 2 == 0 else "warm"
            if kind == "cold":
                evict_from_page_cache(cold_from)
            started = time.perf_counter()
            proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shown = wait(lambda: icon_in_tray(display), 30)
            seconds = time.perf_counter() - started
            code = stop(proc)
            if not shown:
                raise SystemExit("the bundled tray app showed no tray icon within 30 s")
            if code not in (0, -signal.SIGTERM):  # the bare baseline has no SIGTERM handler
                raise SystemExit(f"{command[0]} exited with {code} on SIGTERM")
            times.append((kind, seconds))
    finally:
        for proc in (trayer, xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    return times


def describe(times: list[float]) -> str:
    return f"first {times[0]:.2f} s, then median {statistics.median(times[1:]):.2f} s"


def by_kind(runs: list[tuple[str, float]], kind: str) -> list[float]:
    return [seconds for k, seconds in runs if k == kind]


def describe_runs(runs: list[tuple[str, float]]) -> str:
    parts = []
    for kind in ("cold", "warm"):
        times = by_kind(runs, kind)
        if times:
            parts.append(f"{kind} median {statistics.median(times):.2f} s (max {max(times):.2f}, {len(times)} runs)")
    return "; ".join(parts)


def main() -> int:
    bundle = Path(sys.argv[1]).resolve()
    exe = bundle / "sparecycles"
    with tempfile.TemporaryDirectory(prefix="sparecycles-measure-") as tmp:
        root = Path(tmp)
        print(f"figure: bundle size {folder_size(bundle) / 1e6:.0f} MB ({bundle})")
        for tarball in sorted(bundle.parent.glob("sparecycles-*.tar.gz")):
            print(f"figure: tarball size {tarball.stat().st_size / 1e6:.0f} MB ({tarball.name})")
        print(f"figure: start to --version: {describe(check_version(exe, root))}")
        print(f"figure: start to agent handshake answer: {describe(check_agent(exe, root))}")
        # --background: as the start at login runs it (the icon, no window).
        icon = tray_to_icon([str(exe), "--mode", "master", "--background"], root, runs=6, cold_from=bundle)
        if icon is None:
            print("figure: tray start to icon: not measured (needs Xvfb, trayer and xwininfo)")
            return 0
        bare = tray_to_icon([sys.executable, "-c", BARE_TRAY], root, runs=3)
        print(f"figure: tray start to icon in the tray (Xvfb + trayer): {describe_runs(icon)}")
        print(f"baseline: a bare PyQt6 tray icon in {sys.executable}: {describe_runs(bare)}")
        worst = max(seconds for _, seconds in icon)
        print(f"target: start to tray icon under 2 s -> {'MET' if worst < 2.0 else 'NOT MET'} "
              f"(slowest of {len(icon)} runs: {worst:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
