"""The tray: icons and words for each state, and a menu that drives a real
slave daemon through the same functions as ``sparecycles pause|donate|resume``."""

from __future__ import annotations

import ui_desktop  # noqa: F401 - sets the offscreen platform first

import pytest

from support.daemons import SlaveDaemon
from trayapp.master.hosts import HostView
from trayapp.slave import control as slavecontrol
from trayapp.home import Home
from trayapp.status import JobStatus
from sparecycles_ui.icons import ICON_NAMES, IconSet, icon_file
from sparecycles_ui.snapshot import JobRow, Snapshot
from sparecycles_ui.traylook import attention_reasons, master_look, slave_look
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401 - autouse


@pytest.fixture
def slave_daemon(tmp_path):
    # The lender's default: tasks sandboxed (bwrap is installed here), so no warning in the tray.
    daemon = SlaveDaemon(tmp_path / "slave home", slots=2).start()
    yield daemon
    daemon.stop()


def _menu(tray) -> dict:
    """What the user sees in the menu: visible top-level items, with enabled state."""
    return {a.text(): a.isEnabled() for a in tray.menu.actions() if a.isVisible() and not a.isSeparator()}


def test_menu_drives_a_real_slave_daemon(qtbot, slave_daemon):
    home = Home.from_environment({"SPARECYCLES_HOME": str(slave_daemon.home)})
    app = build_tray_app(qtbot, home, mode="slave")
    tray = app.tray
    assert app.slave_state["state"] in ("ready", "waiting")
    assert tray.look.icon == "slave-waiting"
    assert _menu(tray) == {"Open SpareCycles": True, "Pause": True, "Donate now": True, "Settings…": True,
                           "Quit SpareCycles": True}

    tray.pause_forever.trigger()
    assert slavecontrol.slave_state(home)["state"] == "paused"  # the daemon itself says so
    assert tray.look.icon == "slave-paused"
    assert tray.icon.toolTip() == "SpareCycles — Paused until resumed: this PC is not lent"
    assert _menu(tray) == {"Open SpareCycles": True, "Resume": True, "Donate now": False, "Settings…": True,
                           "Quit SpareCycles": True}

    tray.resume_action.trigger()
    assert slavecontrol.slave_state(home)["paused"] is False
    assert "Pause" in _menu(tray) and "Resume" not in _menu(tray)

    tray.donate_hour.trigger()
    state = slavecontrol.slave_state(home)
    assert state["donating"] and state["donating_until"] > 0
    assert tray.look.icon == "slave-donating" and tray.icon.toolTip().startswith("SpareCycles — Donating until ")
    assert _menu(tray) == {"Open SpareCycles": True, "Pause": True, "Stop donating": True, "Settings…": True,
                           "Quit SpareCycles": True}

    tray.pause_hour.trigger()
    state = slavecontrol.slave_state(home)
    assert state["paused"] and state["paused_until"] and not state["donating"]
    assert tray.look.tooltip.startswith("Paused until ")

    tray.resume_action.trigger()
    app.watcher.refresh()
    assert app.slave_state["state"] in ("ready", "waiting") and tray.look.icon == "slave-waiting"


def test_without_a_slave_daemon_the_tray_says_so(qtbot, home):
    app = build_tray_app(qtbot, home, mode="slave")
    assert app.tray.look.icon == "slave-unavailable"
    assert app.tray.look.tooltip == "Unavailable: no slave daemon is running on this PC"
    app.tray.pause_forever.trigger()  # the CLI's error reaches the user in words
    assert "no slave daemon is running" in app.window.statusBar().currentMessage()


def test_slave_words_for_each_state():
    working = {"state": "working", "running": 3, "slots": 4, "running_by_master": {"m1": 3},
               "master_names": {"m1": "alice@lab-07"}}
    assert slave_look(working).tooltip == "Working: 3 tasks for alice@lab-07"
    assert slave_look(working).icon == "slave-working"
    waiting = {"state": "waiting", "running": 0, "slots": 4}
    assert slave_look(waiting).tooltip == "Waiting for this PC to be idle (4 cores to lend)"
    broken = {"state": "unavailable", "reason": "disk full", "running": 0, "slots": 4}
    assert slave_look(broken).tooltip == "Unavailable: disk full" and slave_look(broken).icon == "slave-unavailable"


def _job(**kw) -> JobRow:
    base = dict(seq=1, id="ab12", name="stdp", status=JobStatus.RUNNING, queued=3, dispatched=0, running=2, done=1,
                failed=0, cancelled=0, hosts=("lab-07", "local"), created=100.0, finished=None, results_dir="/r")
    return JobRow(**{**base, **kw})


def test_master_words_and_menu_for_each_state():
    busy = Snapshot(200.0, [_job()], [])
    look = master_look(busy)
    assert (look.icon, look.tooltip) == ("master-working", "Working: 2 tasks running on lab-07, local, 3 queued")
    assert look.can_pause and not look.donate_offered and look.resume_label is None
    assert master_look(Snapshot(0, [], [])).icon == "master-idle"
    paused = master_look(busy, paused_until=None)
    assert (paused.icon, paused.resume_label) == ("master-paused", "Resume")
    failed = Snapshot(300.0, [_job(status=JobStatus.FAILED, failed=2, running=0, queued=0, done=4, finished=250.0)],
                      [HostView("lab-08", "ssh", "me@10.0.0.8:22", "unreachable", "timed out", None, {"slots": 4})])
    reasons = attention_reasons(failed, seen_until=200.0)
    assert reasons == ["job stdp ended with 2 failed tasks", "host lab-08 is unreachable"]
    assert master_look(failed, attention=reasons).icon == "master-attention"
    assert attention_reasons(failed, seen_until=260.0) == ["host lab-08 is unreachable"]  # seen: no longer news


def test_master_pause_flips_to_resume_in_the_menu(qtbot, home):
    app = build_tray_app(qtbot, home, mode="master")
    assert "Donate now" not in _menu(app.tray)  # a master does not lend its PC
    app.tray.show_look(master_look(None, paused_until=None))
    assert "Resume" in _menu(app.tray) and "Pause" not in _menu(app.tray)


def test_every_state_has_its_own_icon(qapp):
    files = {name: open(icon_file(name), encoding="utf-8").read() for name in ICON_NAMES}
    assert len(set(files.values())) == len(ICON_NAMES) == 9
    icons = IconSet()
    for name in ICON_NAMES:
        pixmap = icons[name].pixmap(22, 22)
        assert not pixmap.isNull() and pixmap.width() == 22


def test_waits_for_a_tray_instead_of_exiting(qtbot, home):
    # Offscreen there is no tray at all: the app must keep polling for one.
    app = build_tray_app(qtbot, home)
    app.tray.show_when_possible()
    assert app.tray.waiting_for_tray
    app.tray.close()
    assert not app.tray.waiting_for_tray


def test_closing_the_window_keeps_the_app_in_the_tray(qtbot, home):
    app = build_tray_app(qtbot, home)
    app.show_window()
    assert app.window.isVisible()
    app.window.close()
    assert not app.window.isVisible()  # hidden, not gone: the tray's Open brings it back
    app.tray.open_action.trigger()
    assert app.window.isVisible()
