"""The tray app on a real X desktop (Xvfb) with a real tray host (trayer):
the icon is embedded, a right-click with xdotool opens the menu, a second
start shows the first's window; the screenshots it takes go to the ``screenshots``
folder (conftest.py: temporary unless scripts/screenshots.sh asks for docs/screenshots/)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import make_job, pid_alive
from trayapp.locks import InstanceLock
from trayapp.status import TaskStatus
from trayapp.master.store import Store
from support.desktop import Desktop, missing_tools

pytestmark = [pytest.mark.desktop,
              pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())} "
                                                               "(scripts/system-packages.sh installs them)")]

# Runs under the Xvfb display: the real TrayApp, asked from Qt's side where
# its icon is and whether the menu opened when xdotool right-clicked it.
PROBE = textwrap.dedent("""
    import json, subprocess, sys
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication, QSystemTrayIcon
    from trayapp.config import Config
    from trayapp.home import Home
    from sparecycles_ui.app import TrayApp
    from sparecycles_ui.workers import InlineExecutor

    qt = QApplication(sys.argv[:1])
    app = TrayApp(Home.from_environment().ensure(), Config(mode="master"), InlineExecutor(), start_child=False)
    app.start()
    report = {"tray_available": QSystemTrayIcon.isSystemTrayAvailable(), "waited": app.tray.waiting_for_tray}
    steps = {"n": 0}

    def step():
        steps["n"] += 1
        if steps["n"] > 200:
            report["timeout"] = True
            qt.quit()
        g = app.tray.icon.geometry()
        if "geometry" not in report:
            if g.isEmpty():
                return
            report["geometry"] = [g.x(), g.y(), g.width(), g.height()]
            c = g.center()
            subprocess.Popen(["xdotool", "mousemove", str(c.x()), str(c.y()), "click", "3"])
            return
        if app.tray.menu.isVisible() and "menu" not in report:
            m = app.tray.menu.geometry()
            report["menu"] = [m.x(), m.y(), m.width(), m.height()]
            report["items"] = [a.text() for a in app.tray.menu.actions() if a.isVisible() and a.text()]
            tree = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True).stdout
            report["popup_in_tree"] = f"{m.width()}x{m.height()}+{m.x()}+{m.y()}" in tree
            shot = qt.primaryScreen().grabWindow(0, m.x() - 40, 0, qt.primaryScreen().size().width() - m.x() + 40,
                                                  m.y() + m.height() + 8)
            report["shot"] = shot.save(sys.argv[1])
            app.tray.menu.hide()
            qt.quit()

    timer = QTimer()
    timer.timeout.connect(step)
    timer.start(100)
    qt.exec()
    print("REPORT " + json.dumps(report))
""")


@pytest.fixture
def desktop(tmp_path):
    d = Desktop(tmp_path / "desktop").start()
    yield d
    d.stop()


def test_icon_is_embedded_and_right_click_opens_the_menu(desktop, home, tmp_path, screenshots):
    shot = screenshots / "tray-menu.png"
    result = subprocess.run([sys.executable, "-c", PROBE, str(shot)], env=desktop.env(), capture_output=True,
                            text=True, timeout=90)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, result.stdout + result.stderr
    report = json.loads(lines[0][len("REPORT "):])
    assert report["tray_available"] and not report["waited"]
    x, y, w, h = report["geometry"]
    assert w > 0 and h > 0 and x >= desktop.size[0] - 200 and y < 40  # in trayer's panel, top right
    assert report["menu"][2] > 0 and report["popup_in_tree"], report
    assert report["items"] == ["Open SpareCycles", "Pause", "Settings…", "Quit SpareCycles"]
    assert report["shot"] and shot.stat().st_size > 1000


def test_started_before_the_desktop_has_a_tray_the_app_waits_and_shows_its_icon_when_one_comes(tmp_path, home):
    desktop = Desktop(tmp_path / "late-tray").start(tray=False)  # a login where the panel comes up late
    env = desktop.env(SPARECYCLES_HOME=str(home.data_dir))
    app = subprocess.Popen([sys.executable, "-m", "sparecycles", "--mode", "slave", "--background"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert app.poll() is None, "with no tray yet, the app must wait, not exit"
        assert desktop.embedded_in_tray("SpareCycles") is None
        desktop.start_tray()
        icon = desktop.wait_for(lambda: desktop.embedded_in_tray("SpareCycles"), "the icon in the late tray")
        assert icon.width > 0 and icon.height > 0
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
        out, _ = app.communicate(timeout=60)
        desktop.stop()
    assert app.returncode == 0, out


def test_first_start_asks_master_or_slave_and_saves_the_answer(desktop, home):
    env = desktop.env(SPARECYCLES_HOME=str(home.data_dir))
    app = subprocess.Popen([sys.executable, "-m", "sparecycles"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        dialog = desktop.wait_for(lambda: [w for w in desktop.top_level("Welcome to SpareCycles")
                                           if desktop.is_viewable(w.id)], "the first-run question")[0]
        assert not home.config_file.exists() or "mode" not in home.config_file.read_text()
        # The user answers with the keyboard: "slave", idle after 2 min, then OK.
        subprocess.run(["xdotool", "windowfocus", "--sync", dialog.id], env=env, check=True, timeout=20)
        desktop.key("Down")  # from "master" to "slave"
        desktop.key("Tab")  # to the idle time
        desktop.key("ctrl+a")
        for key in ("2", "Return"):
            desktop.key(key)
        config = desktop.wait_for(lambda: home.config_file.exists() and "mode" in home.config_file.read_text()
                                  and home.config_file.read_text(), "the answer to be saved")
        assert 'mode = "slave"' in config and "idle_after_s = 120.0" in config, config
        # The slave-mode app runs: its icon comes up in the tray.
        desktop.wait_for(lambda: desktop.embedded_in_tray("SpareCycles"), "the tray icon")
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
        out, _ = app.communicate(timeout=60)
    assert app.returncode == 0, out


SLOW_TASK = """
import time
time.sleep(5)
"""


def shown_windows(desktop) -> list:
    return [w for w in desktop.top_level("SpareCycles") if desktop.is_viewable(w.id)]


def test_real_app_starts_in_the_tray_runs_a_job_and_a_second_start_shows_it(desktop, home, tmp_path, screenshots):
    env = desktop.env(SPARECYCLES_HOME=str(home.data_dir))
    # As the start at login runs it: into the tray, no window.
    app = subprocess.Popen([sys.executable, "-m", "sparecycles", "--mode", "master", "--background"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        icon = desktop.wait_for(lambda: desktop.embedded_in_tray("SpareCycles"), "the tray icon in trayer")
        assert icon.width > 0 and icon.height > 0
        assert 'mode = "master"' in home.config_file.read_text()  # --mode is saved; no first-run question
        time.sleep(0.5)
        assert shown_windows(desktop) == [], "started at login, the app opens no window"
        # A second start (the user runs SpareCycles from the menu) shows the first one's window.
        second = subprocess.run([sys.executable, "-m", "sparecycles"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 0 and "already running; showed its window" in second.stdout
        window = desktop.wait_for(lambda: shown_windows(desktop), "the main window")[0]

        folder, params = make_job(tmp_path / "brian-sweep", SLOW_TASK,
                                  params=[{"rate_hz": r, "g_inh": g} for r in (40, 60, 80) for g in (5, 7)])
        submitted = subprocess.run([sys.executable, "-m", "sparecycles", "submit", str(folder), "--params", str(params),
                                    "--no-start", "--json"], env=env, capture_output=True, text=True, timeout=60)
        job = json.loads(submitted.stdout)["job"]
        store = Store(home.queue_db)
        # The app's own dispatcher (its child process) runs it; a third of it done makes a telling picture.
        desktop.wait_for(lambda: store.job(job).count(TaskStatus.DONE) >= 2, "two tasks done", 60)
        # The pictures first, while four tasks of 5 s are still to run (X round trips
        # are slow on a loaded machine; the menu below takes seconds of them).
        time.sleep(1.5)  # the window refreshes once a second
        assert store.job(job).count(TaskStatus.RUNNING) >= 1, "take the picture while the job runs"
        desktop.screenshot(screenshots / "main-window.png", window.x, window.y, window.width, window.height)
        panel = desktop.find("panel")
        desktop.screenshot(screenshots / "tray.png", panel.x - 8, 0, desktop.size[0] - panel.x + 8, panel.height + 4)
        # Right-click: the menu pops up as a new top-level window (seen by X, not by Qt).
        before = {w.id for w in desktop.windows()}
        desktop.click(*icon.center(), button=3)
        popup = desktop.wait_for(lambda: [w for w in desktop.windows() if w.id not in before and w.height > 40
                                          and desktop.is_viewable(w.id)], "the tray menu popup")[0]
        assert popup.y < 80 and popup.x + popup.width > desktop.size[0] - 300  # beside the icon, top right
        desktop.key("Escape")
        desktop.wait_for(lambda: not desktop.is_viewable(popup.id), "the menu to close")

        dispatcher = InstanceLock(home.dispatcher_lock).holder()
        assert dispatcher and pid_alive(dispatcher)
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)  # Quit: the app stops its dispatcher child
        out, _ = app.communicate(timeout=60)
    assert app.returncode == 0, out
    assert InstanceLock(home.dispatcher_lock).holder() is None, "the dispatcher child outlived the app"
