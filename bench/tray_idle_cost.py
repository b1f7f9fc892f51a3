"""The tray app in slave mode, waiting: its memory and CPU over a minute.

Starts the real ``sparecycles --mode slave`` (offscreen Qt platform, its own
SPARECYCLES_HOME, the slave daemon as its child) and, after it settles,
samples the tray process's RSS and CPU time, and its daemon child's, over
``--seconds`` (default 60). Baseline in the same run: a bare Python
interpreter sleeping, and a bare PyQt6 QApplication with an event loop.

Targets for the app (tray and daemon together): RSS < 150 MB, CPU < 0.5 % of one core.

    .venv/bin/python bench/tray_idle_cost.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil

QT_IDLE = ("import sys; from PyQt6.QtWidgets import QApplication; from PyQt6.QtCore import QTimer; "
           "app = QApplication(sys.argv); QTimer.singleShot(3_600_000, app.quit); app.exec()")


def measure(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """(peak RSS in MB, CPU as % of one core) of ``proc`` over ``seconds``."""
    cpu_before = sum(proc.cpu_times()[:2])
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.5)
    cpu = sum(proc.cpu_times()[:2]) - cpu_before
    return peak / 1e6, 100 * cpu / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SPARECYCLES_NO_UPDATE_CHECK": "1"}
    started = []
    try:
        with tempfile.TemporaryDirectory(prefix="sc-tray-") as home:
            env["SPARECYCLES_HOME"] = home
            tray = subprocess.Popen([sys.executable, "-m", "sparecycles", "--mode", "slave"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append(tray)
            bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            qt = subprocess.Popen([sys.executable, "-c", QT_IDLE], env=env)
            started += [bare, qt]
            time.sleep(8)  # let the tray start its daemon child and settle
            tray_p = psutil.Process(tray.pid)
            children = tray_p.children()
            if tray.poll() is not None or not children:
                print("BROKEN: the tray app or its slave daemon did not start")
                return 1
            daemon = children[0]
            results = {}
            import threading

            def sample(name, proc):
                results[name] = measure(proc, args.seconds)

            threads = [threading.Thread(target=sample, args=(n, p)) for n, p in
                       (("tray", tray_p), ("daemon", daemon), ("bare python", psutil.Process(bare.pid)),
                        ("bare Qt app", psutil.Process(qt.pid)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            tray.send_signal(signal.SIGTERM)
            tray.wait(30)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    print(f"tray app in slave mode, waiting, over {args.seconds:g} s (offscreen Qt, 2 cores):")
    for name, (rss, cpu) in results.items():
        print(f"  {name:12s} peak RSS {rss:6.1f} MB   CPU {cpu:5.2f} % of one core")
    # The app is both processes: the tray and the slave daemon it runs.
    rss = results["tray"][0] + results["daemon"][0]
    cpu = results["tray"][1] + results["daemon"][1]
    print(f"  {'the app':12s} peak RSS {rss:6.1f} MB   CPU {cpu:5.2f} % of one core  (tray + daemon)")
    print(f"target: the app's RSS < 150 MB -> {'MET' if rss < 150 else 'NOT MET'}; "
          f"CPU < 0.5 % -> {'MET' if cpu < 0.5 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
