"""Figures for a built bundle, printed by installer/build.sh.

    python installer/measure.py dist/sparecycles

Prints the bundle's size, the start time of ``--version`` and of the agent
handshake (a fresh SPARECYCLES_HOME, no slave daemon: one "offline" line back),
and, where Xvfb, trayer and xwininfo are installed, the time from starting the
tray app to its icon being embedded in the tray. The first start after a build
is reported separately as "first" (the files are likely still in the page
cache, so it is not a true cold start after a reboot). Exits non-zero if a
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


def tray_to_icon(exe: Path, root: Path, runs: int = 3) -> list[float] | None:
    """Seconds from exec to the icon embedded in trayer on Xvfb; None without those tools."""
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
            env = {**fresh_env(root, f"tray{i}"), **{k: v for k, v in xenv.items() if k != "SPARECYCLES_HOME"}}
            if icon_in_tray(display):
                raise SystemExit("a SpareCycles icon is in the tray before the app started")
            started = time.perf_counter()
            proc = subprocess.Popen([str(exe), "--mode", "master"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            shown = wait(lambda: icon_in_tray(display), 30)
            seconds = time.perf_counter() - started
            code = stop(proc)
            if not shown:
                raise SystemExit("the bundled tray app showed no tray icon within 30 s")
            if code != 0:
                raise SystemExit(f"the bundled tray app exited with {code} on SIGTERM")
            times.append(seconds)
    finally:
        for proc in (trayer, xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    return times


def describe(times: list[float]) -> str:
    return f"first {times[0]:.2f} s, then median {statistics.median(times[1:]):.2f} s"


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
        icon = tray_to_icon(exe, root)
        if icon is None:
            print("figure: tray start to icon: not measured (needs Xvfb, trayer and xwininfo)")
        else:
            print(f"figure: tray start to icon in the tray (Xvfb + trayer): {describe(icon)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
