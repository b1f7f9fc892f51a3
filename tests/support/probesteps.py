"""Driving a Qt window step by step from inside its own event loop, for the
probes that run under a real X display (viewsprobe.py, retryprobe.py).

A script is a generator: it does one thing (a real click, a key press) and
yields ``(condition, what)``; the next step runs once ``condition()`` holds,
or the script fails naming ``what`` after ``timeout_s``.
"""

from __future__ import annotations

import time
import traceback
from typing import Callable, Iterator

from PyQt6.QtCore import QTimer

Step = tuple[Callable[[], bool], str]


def until(condition: Callable[[], bool], what: str) -> Step:
    return condition, what


def pause(seconds: float) -> Step:
    end = time.monotonic() + seconds
    return (lambda: time.monotonic() >= end), f"{seconds} s"


def run_steps(qt, script: Iterator[Step], report: dict, *, timeout_s: float = 60,
              on_failure: Callable[[], None] = lambda: None) -> None:
    """Run ``script`` on ``qt``'s event loop until it ends (``report["ok"]``) or
    fails (``report["error"]``, the traceback; then ``on_failure()``)."""
    state: dict = {"waiting": None, "deadline": 0.0}

    def advance() -> None:
        try:
            if state["waiting"] is not None:
                condition, what = state["waiting"]
                if not condition():
                    if time.monotonic() > state["deadline"]:
                        raise AssertionError(f"timed out waiting for {what}")
                    return
            state["waiting"] = next(script)
            state["deadline"] = time.monotonic() + timeout_s
        except StopIteration:
            report["ok"] = True
            qt.quit()
        except Exception:  # noqa: BLE001 - reported to the test, with the screen as it was
            report["error"] = traceback.format_exc()
            on_failure()
            qt.quit()

    timer = QTimer()
    timer.timeout.connect(advance)
    timer.start(100)
    qt.exec()
