"""The hosts tab: hosts of every kind added from the kind's own options, a kind's
columns only when such a host exists, the reason for a state on the details pane,
and *Test* running ``hosts test`` (offscreen, real queue, a real closed port)."""

from __future__ import annotations

import socket

import ui_desktop  # noqa: F401 - sets the offscreen platform first

from trayapp.master.kinds import KINDS
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401 - autouse


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def test_add_a_slurm_host_from_the_kind_s_own_form(qtbot, app):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.tabs.setCurrentIndex(1)
    assert "Pending" not in tray_app.hosts.columns  # no cluster yet: no cluster columns
    window.add_host_button.click()
    dialog = window.dialog
    kinds = [dialog.kind_box.itemData(i) for i in range(dialog.kind_box.count())]
    assert kinds == [k.name for k in KINDS.addable()] and "slurm" in kinds
    dialog.set_kind("slurm")
    dialog.name.setText("cluster")
    dialog.address.setText("127.0.0.1")
    dialog.editor("remote_root").setText("/scratch/me/sparecycles")
    dialog.editor("partition").setText("short")
    dialog.editor("max_in_flight").setValue(50)
    dialog.accept()
    host = app.store.host("cluster")
    assert host.kind == "slurm" and host.options["partition"] == "short" and host.options["max_in_flight"] == 50
    tray_app.watcher.refresh()
    assert {"In flight", "Pending", "Oldest pending"} <= set(tray_app.hosts.columns)
    header = window.hosts_view.horizontalHeader()
    fm = header.fontMetrics()
    for column, title in enumerate(tray_app.hosts.columns):  # every header fits its title
        assert header.sectionSize(column) >= fm.horizontalAdvance(title), title


def test_a_required_option_missing_is_said_with_its_fix(qtbot, app):
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.add_host_button.click()
    window.dialog.set_kind("slurm")
    window.dialog.name.setText("cluster")
    window.dialog.address.setText("127.0.0.1")
    window.dialog.accept()
    assert "--remote-root is required for slurm hosts" in window.statusBar().currentMessage()


def test_an_unreachable_host_shows_why_and_test_says_where_it_stops(qtbot, app):
    port = _closed_port()
    app.store.add_host("lab-07", kind="ssh", options={"address": "127.0.0.1", "port": port})
    app.store.set_host_state("lab-07", "unreachable", f"could not connect to 127.0.0.1:{port}: connection refused")
    tray_app = build_tray_app(qtbot, app.home)
    window = tray_app.window
    window.show()
    window.tabs.setCurrentIndex(1)
    assert tray_app.hosts.index(0, 2).data() == "unreachable"  # a few words; the reason goes below
    assert "lab-07: unreachable: could not connect" in window.hosts_details.text()
    window.hosts_view.selectRow(0)
    assert "<b>lab-07</b>" in window.hosts_details.text()
    window.test_host_button.click()
    test = window.dialog
    assert test.windowTitle() == "Testing lab-07"
    assert test.verdict.text() and "lab-07: ok" not in test.verdict.text()
    assert "fix" in test.verdict.text() or "refused" in test.verdict.text().lower(), test.verdict.text()
