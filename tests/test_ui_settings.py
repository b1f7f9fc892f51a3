"""Settings: save_config/load_config round trip, and the dialog writing the
same config.toml the CLI reads."""

from __future__ import annotations

import ui_desktop  # noqa: F401 - sets the offscreen platform first

import pytest

from conftest import cli
from trayapp.config import Config, load_config, save_config
from trayapp.errors import UserError
from sparecycles_ui.app import apply_changes
from sparecycles_ui.settingsdialog import AUTOSTART_LATER, ROWS
from ui_desktop import build_tray_app, dispose_tray_apps  # noqa: F401 - autouse


def test_config_round_trip(home):
    config = Config(slots=3, run_locally=False, results_dir="/data/results dir", nice=5, poll_interval_s=0.5,
                    mode="slave")
    config = apply_changes(config, {"master_weights": {"alice@lab-07": 2.0, "bob@lab-02": 1}})
    path = save_config(home, config)
    assert load_config(home) == config
    text = path.read_text()
    assert 'mode = "slave"' in text and "slots = 3" in text
    assert "min_free_mb" not in text  # defaults are not written
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".partial")] == []
    save_config(home, Config())
    assert load_config(home) == Config() and path.read_text() == ""


def test_a_bad_mode_in_the_file_is_a_user_error(home):
    home.config_file.write_text('mode = "boss"\n')
    with pytest.raises(UserError, match="'mode' must be one of"):
        load_config(home)


def test_settings_dialog_saves_to_the_config_file(qtbot, home, tmp_path):
    save_config(home, Config(mode="master", nice=7))
    app = build_tray_app(qtbot, home, mode="master", nice=7)
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog.isVisible()
    assert not dialog.start_at_login.isEnabled() and dialog.start_at_login.toolTip() == AUTOSTART_LATER
    dialog.set_value("mode", "slave")
    dialog.set_value("slots", 3)
    dialog.set_value("results_dir", str(tmp_path / "results"))
    # Meanwhile the CLI (or a colleague's editor) changes another setting: it is kept.
    home.config_file.write_text('mode = "master"\nnice = 7\ndefault_retries = 2\n')
    dialog.accept()
    saved = load_config(home)
    assert (saved.mode, saved.slots, saved.results_dir, saved.nice, saved.default_retries) == (
        "slave", 3, str(tmp_path / "results"), 7, 2)
    assert app.config == saved
    assert "settings saved" in app.window.statusBar().currentMessage()

    app.open_settings()  # opens with what was saved; nothing changed, nothing written
    assert app.settings_dialog.changes() == {}


def test_slave_policy_settings_are_saved_in_the_cores_units(qtbot, home):
    wanted = {"idle_after_s": 600.0, "max_foreign_cpu": 0.25, "preempt": "suspend", "idle_detection": "off"}
    app = build_tray_app(qtbot, home, mode="slave")
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog.editors["idle_after_s"].value() == Config().idle_after_s / 60  # shown in minutes
    dialog.set_value("idle_after_s", 600)
    dialog.set_value("max_foreign_cpu", 0.25)  # shown as 25 %
    dialog.set_value("preempt", "suspend")
    dialog.set_value("idle_detection", "off")
    assert dialog.editors["max_foreign_cpu"].value() == 25
    assert dialog.changes() == wanted
    dialog.accept()
    saved = load_config(home)
    assert {key: getattr(saved, key) for key in wanted} == wanted


def test_every_settings_row_edits_a_real_setting(qtbot, home):
    from dataclasses import fields

    assert {row.name for row in ROWS} <= {f.name for f in fields(Config)}
    app = build_tray_app(qtbot, home, mode="", preempt="suspend")
    app.open_settings()
    # No mode chosen yet, tasks suspended first: every row matters.
    assert all(app.settings_dialog.editors[row.name].isEnabled() for row in ROWS)


def test_only_the_settings_that_matter_are_enabled(qtbot, home):
    app = build_tray_app(qtbot, home, mode="slave", preempt="kill")
    app.open_settings()
    dialog = app.settings_dialog
    dialog.show()
    enabled = {row.name: dialog.editors[row.name].isEnabled() for row in ROWS}
    assert not enabled["suspend_grace_s"] and "stopped at once" in dialog.editors["suspend_grace_s"].toolTip()
    assert not enabled["run_locally"] and enabled["idle_after_s"] and enabled["preempt"]
    dialog.set_value("preempt", "suspend")
    assert dialog.editors["suspend_grace_s"].isEnabled()
    dialog.set_value("idle_detection", "off")
    assert not dialog.editors["idle_after_s"].isEnabled() and not dialog.editors["max_foreign_cpu"].isEnabled()
    dialog.set_value("mode", "master")  # a master's settings: its own cores, no lending
    assert not dialog.editors["preempt"].isEnabled() and dialog.editors["run_locally"].isEnabled()
    assert [g.title() for g in dialog.groups.values()] == ["This PC", "Master: this PC's own cores",
                                                            "Slave: lending this PC"]


def test_no_mode_yet_is_not_mistaken_for_a_choice(qtbot, home):
    app = build_tray_app(qtbot, home, mode="")
    app.open_settings()
    assert app.settings_dialog.editors["mode"].currentText() == "(not chosen yet)"
    assert app.settings_dialog.changes() == {}


def test_first_run_dialog_asks_master_or_slave(qtbot, home):
    from sparecycles_ui.app import save_changes
    from sparecycles_ui.firstrun import FirstRunDialog

    dialog = FirstRunDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.mode == "master" and not dialog.cores.isVisible()
    dialog.mode_buttons["slave"].setChecked(True)
    assert dialog.cores.isVisible()
    dialog.cores.setValue(2)
    save_changes(home, dialog.changes())
    assert (load_config(home).mode, load_config(home).slots) == ("slave", 2)


def test_mode_and_background_options_go_with_no_verb_only(home):
    for option in (("--mode", "slave"), ("--background",)):
        result = cli(*option, "status")
        assert result.returncode == 2 and "--mode and --background go with no verb" in result.stderr
    assert cli("--mode", "boss").returncode == 2


def test_without_pyqt6_the_bare_command_says_what_is_missing(home):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys
        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PyQt6", "sparecycles_ui"):
                    raise ImportError("No module named " + name)
        sys.meta_path.insert(0, NoQt())
        from sparecycles.launch import main
        sys.exit(main([]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "usage: sparecycles" in result.stdout and "the tray app needs PyQt6" in result.stderr


def test_start_at_login_uses_the_autostart_verb(qtbot, home, tmp_path):
    from trayapp.install import autostart
    from sparecycles_ui.app import Autostart

    backend = autostart.XdgAutostart(tmp_path / "autostart")  # never the real ~/.config
    app = build_tray_app(qtbot, home)
    app.autostart = Autostart(backend, ["/opt/sparecycles/bin/sparecycles"])
    app.open_settings()
    box = app.settings_dialog.start_at_login
    assert box.isEnabled() and not box.isChecked() and box.toolTip() == str(backend.path)
    box.setChecked(True)
    app.settings_dialog.accept()
    assert backend.status().enabled and backend.status().command == ["/opt/sparecycles/bin/sparecycles"]
    app.open_settings()
    assert app.settings_dialog.start_at_login.isChecked()
    app.settings_dialog.start_at_login.setChecked(False)
    app.settings_dialog.accept()
    assert not backend.status().enabled


def test_the_dialog_takes_ranges_choices_and_groups_from_the_table(qtbot, home):
    from sparecycles_ui.settingsdialog import GROUPS

    app = build_tray_app(qtbot, home, mode="slave", slots=6)
    app.open_settings()
    dialog = app.settings_dialog
    cpu = dialog.editors["max_foreign_cpu"]  # (0, 1] in the table, shown in %
    assert (cpu.minimum(), cpu.maximum()) == (1, 100)
    slots = dialog.editors["slots"]  # 1 or more, or 0 for all cores
    assert (slots.minimum(), slots.value(), slots.specialValueText()) == (0, 6, "all cores")
    preempt = dialog.editors["preempt"]
    assert [preempt.itemData(i) for i in range(preempt.count())] == ["kill", "suspend"]
    for row in ROWS:
        assert dialog.groups[GROUPS[row.mode]].isAncestorOf(dialog.editors[row.name]), row.name
    assert dialog.groups[GROUPS["master"]].isAncestorOf(dialog.editors["results_dir"])
