"""The tray app's start-up update check and its "Update Brian" button, against a
real package index on 127.0.0.1 and a real throwaway task environment."""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import pytest

import ui_desktop  # noqa: F401 - sets the offscreen platform first
from fakeindex import FakeIndex, SilentIndex, make_wheel, pip_environment_without_user_config
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401 - autouse

from trayapp.config import Config
from trayapp.install.updates import check_for_updates, update_brian

pytestmark = pytest.mark.slow


def test_newer_brian_is_announced_once_and_installed_by_the_button(qtbot, home, tmp_path, monkeypatch):
    wheels = {v: make_wheel(tmp_path / "wheels", "fakebrian", v) for v in ("1.0", "1.1")}
    env = pip_environment_without_user_config()
    for key in [k for k in __import__("os").environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", env["PIP_CONFIG_FILE"])
    task_env = tmp_path / "task env"
    subprocess.run([sys.executable, "-m", "venv", str(task_env)], check=True, timeout=120)
    python = str(task_env / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", str(wheels["1.0"])], check=True,
                   timeout=120, env=env)
    with FakeIndex(tmp_path / "index") as index:
        for wheel in wheels.values():
            index.add("fakebrian", wheel)
        config = Config(task_python=python, package_index=index.url)
        app = build_tray_app(qtbot, home)
        app.check_updates = partial(check_for_updates, config, brian_package="fakebrian")
        app.install_brian = partial(update_brian, config, package="fakebrian")
        notes = []
        app.tray.notify = lambda title, text, critical=False: notes.append((title, text, critical))
        app.start_update_check()
        assert [n[0] for n in notes] == ["Updates available"]
        assert "fakebrian 1.1 is out (you have 1.0)" in notes[0][1]
        assert app.window.update_bar.isVisibleTo(app.window)
        app.window.update_button.click()
    assert notes[-1] == ("SpareCycles", "fakebrian updated from 1.0 to 1.1", False)
    assert not app.window.update_bar.isVisibleTo(app.window)
    installed = subprocess.run([python, "-c", "import fakebrian; print(fakebrian.VERSION)"], capture_output=True,
                               text=True, check=True).stdout.strip()
    assert installed == "1.1"


def test_offline_check_says_nothing(qtbot, home):
    app = build_tray_app(qtbot, home)
    config = Config(package_index="http://127.0.0.1:9/simple/")  # nothing listens on port 9 here
    app.check_updates = partial(check_for_updates, config, brian_package="fakebrian")
    notes = []
    app.tray.notify = lambda *a, **k: notes.append(a)
    app.start_update_check()
    assert notes == [] and not app.window.update_bar.isVisibleTo(app.window)


def test_a_hanging_index_never_delays_the_start_or_the_window(qtbot, home):
    from PyQt6.QtCore import QElapsedTimer, QTimer

    from trayapp.config import Config as AppConfig
    from sparecycles_ui.app import TrayApp
    from sparecycles_ui.workers import ThreadExecutor

    executor = ThreadExecutor()
    with SilentIndex() as silent:
        check = partial(check_for_updates, Config(package_index=silent.url), brian_package="fakebrian",
                        timeout=2.0)
        app = TrayApp(home, AppConfig(mode="master"), executor, start_child=False, interval_ms=60_000,
                      check_updates=check)
        notes = []
        app.tray.notify = lambda *a, **k: notes.append(a)
        clock = QElapsedTimer()
        clock.start()
        app.start()
        app.show_window()
        assert clock.elapsed() < 500, f"start-up took {clock.elapsed()} ms with a hanging index"
        # The GUI thread stays free while the check waits: a 50 ms timer fires on time.
        fired = []
        QTimer.singleShot(50, lambda: fired.append(clock.elapsed()))
        qtbot.waitUntil(lambda: bool(fired), timeout=2000)
        assert fired[0] < 1000
        assert executor.wait(10_000), "the check never gave up"
        qtbot.wait(50)  # its (offline) answer reaches the GUI thread
    app.dispose()
    assert notes == [] and not app.window.update_bar.isVisibleTo(app.window)
