"""Cost of watching: the slave daemon's CPU use while it waits for the PC to be idle.

Two real slave daemons run side by side on the same real X display (Xvfb),
in the same run: one with idle detection on (the screensaver extension polled
once a second, pynput's listeners, the CPU-load and battery readings), one
with ``idle_detection = "off"``. Neither has work; the one watching is
*waiting* (its idle time is the default 5 min, never reached here). Each
daemon's CPU time (user + system, from the kernel's per-process counters) is
read at the start and the end of the window; the difference over the window
is its cost.

A second window does the same while someone uses the mouse: 50 moves a
second through XTEST (the mechanism xdotool uses), so every move reaches
the watching daemon's listener. That is the worst case: a user at the PC
moving the mouse all the time.

Usage: ``.venv/bin/python bench/idle_watch_cost.py [--seconds 60] [--no-input-window]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import PYTHON, bench_workspace, home_env  # noqa: E402
from support.xvfb import Xvfb  # noqa: E402

WARM_UP_S = 5.0


def start_daemon(root: Path, processes, name: str, display: str, config: str) -> tuple[subprocess.Popen, Path]:
    home = root / name
    home.mkdir()
    (home / "config.toml").write_text(config)
    log = home / "slave.log"
    proc = processes.start([PYTHON, "-m", "sparecycles", "slave", "--slots", "1"],
                           {**home_env(home), "DISPLAY": display}, stdout=subprocess.DEVNULL,
                           stderr=open(log, "wb"))
    return proc, log


def cpu_seconds(proc: subprocess.Popen) -> float:
    t = psutil.Process(proc.pid).cpu_times()
    return t.user + t.system


class MouseUser:
    """Moves the pointer 50 times a second through XTEST until stopped."""

    def __init__(self, display: str, rate_hz: float = 50.0):
        from Xlib import X
        from Xlib import display as xdisplay
        from Xlib.ext import xtest

        self._d = xdisplay.Display(display)
        self._x, self._xtest, self._period = X, xtest, 1.0 / rate_hz
        self._stop = threading.Event()
        self.moves = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._xtest.fake_input(self._d, self._x.MotionNotify, x=100 + self.moves % 200, y=100 + self.moves % 150)
            self._d.sync()
            self.moves += 1
            next_at += self._period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._d.close()


def measure(daemons: dict[str, subprocess.Popen], seconds: float) -> dict[str, float]:
    before = {name: cpu_seconds(p) for name, p in daemons.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return {name: (cpu_seconds(p) - before[name]) / elapsed for name, p in daemons.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each window")
    parser.add_argument("--no-input-window", action="store_true", help="skip the window with mouse movement")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    with bench_workspace("sparecycles-bench-idlecost-", keep=args.keep) as (root, processes):
        xvfb = Xvfb().start()
        try:
            watching, watching_log = start_daemon(root, processes, "watching", xvfb.display, "")
            blind, blind_log = start_daemon(root, processes, "blind", xvfb.display, 'idle_detection = "off"\n')
            deadline = time.monotonic() + 60
            while not ("state: waiting" in watching_log.read_text() and "state: ready" in blind_log.read_text()):
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemons did not start:\n" + watching_log.read_text()
                                       + blind_log.read_text())
                time.sleep(0.1)
            time.sleep(WARM_UP_S)
            daemons = {"monitor on": watching, "monitor off": blind}
            quiet = measure(daemons, args.seconds)
            busy, moves = None, 0
            if not args.no_input_window:
                with MouseUser(xvfb.display) as user:
                    busy = measure(daemons, args.seconds)
                    moves = user.moves
            if "state: waiting" not in watching_log.read_text():
                raise RuntimeError("the watching daemon never waited:\n" + watching_log.read_text())
        finally:
            processes.stop_all()
            xvfb.stop()

    print(f"Cost of watching: slave daemon CPU use while waiting, {args.seconds:g} s windows "
          f"(both daemons in the same run, on one Xvfb display)")
    for name, share in quiet.items():
        print(f"  nobody at the PC    {name:<12} {share * 100:6.3f} % of one core  "
              f"({share * args.seconds * 1000:7.1f} ms CPU in {args.seconds:g} s)")
    print(f"  the watching costs {max(0.0, quiet['monitor on'] - quiet['monitor off']) * 100:.3f} % of one core "
          "more than not watching")
    on = quiet["monitor on"] * 100
    print(f"target: the waiting slave daemon with its monitor under 0.5 % of one core -> "
          f"{'MET' if on < 0.5 else 'NOT MET'} ({on:.3f} %)")
    if busy is not None:
        for name, share in busy.items():
            print(f"  mouse moving 50/s   {name:<12} {share * 100:6.3f} % of one core  ({moves} moves)")
    print(json.dumps({"bench": "idle_watch_cost", "seconds": args.seconds,
                      "idle_on_pct": round(quiet["monitor on"] * 100, 4),
                      "idle_off_pct": round(quiet["monitor off"] * 100, 4),
                      "mouse_on_pct": None if busy is None else round(busy["monitor on"] * 100, 4),
                      "mouse_off_pct": None if busy is None else round(busy["monitor off"] * 100, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
