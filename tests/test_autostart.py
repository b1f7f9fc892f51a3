"""Start at login. Linux for real (files under a temporary XDG_CONFIG_HOME,
checked by desktop-file-validate); Windows and macOS by the values written
(a fake winreg; the plist parsed back)."""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from trayapp.install.autostart import MacAutostart, WindowsAutostart, XdgAutostart
from trayapp.install.selfcommand import sparecycles_command


def validate(path: Path) -> None:
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_xdg_entry_is_valid_and_disable_removes_it(tmp_path):
    backend = XdgAutostart(tmp_path / "autostart")
    command = ["/opt/Spare Cycles/sparecycles", "--mode", "slave"]
    state = backend.enable(command)
    assert state.enabled and Path(state.where) == tmp_path / "autostart" / "sparecycles.desktop"
    validate(backend.path)
    assert "Exec=\"/opt/Spare Cycles/sparecycles\" --mode slave" in backend.path.read_text()
    assert backend.status().command == command
    assert not backend.disable().enabled and not backend.path.exists()
    assert not backend.disable().enabled  # disabling twice is fine


def test_awkward_characters_survive_the_exec_quoting(tmp_path):
    backend = XdgAutostart(tmp_path)
    command = ['/home/o\'neil/100% "x"/$HOME\\bin/sparecycles']
    backend.enable(command)
    validate(backend.path)
    assert backend.status().command == command


def run_cli(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparecycles", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_cli_enable_status_disable_under_xdg_config_home(home, tmp_path):
    config_home = tmp_path / "xdg config"
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    entry = config_home / "autostart" / "sparecycles.desktop"

    out = run_cli("autostart", "enable", "--json", env=env)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    assert state["enabled"] and state["where"] == str(entry)
    validate(entry)
    # The absolute path of this installation's interpreter, with -m sparecycles.
    assert Path(state["command"][0]).is_absolute() and Path(state["command"][0]).exists()
    assert state["command"] == [*sparecycles_command(), "--background"]  # at login: into the tray, no window

    out = run_cli("autostart", "status", env=env)
    assert out.returncode == 0 and "starts at login" in out.stdout
    out = run_cli("autostart", "disable", "--json", env=env)
    assert json.loads(out.stdout)["enabled"] is False and not entry.exists()
    assert "does not start" in run_cli("autostart", "status", env=env).stdout


def test_the_command_that_starts_sparecycles_is_the_bundle_executable_when_frozen(monkeypatch, tmp_path):
    exe = tmp_path / "dist" / "sparecycles" / "sparecycles"
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(exe))
    assert sparecycles_command("master", "--until-idle", "60") == [str(exe.resolve()), "master", "--until-idle", "60"]


def test_the_command_that_starts_sparecycles_from_a_pip_install_runs_this_interpreter():
    command = sparecycles_command("slave")
    assert command[1:] == ["-m", "sparecycles", "slave"] and Path(command[0]).is_absolute()
    done = subprocess.run(sparecycles_command("--version"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("sparecycles "), done


class FakeWinreg:
    """The few winreg calls the Windows backend makes, over a dict (unit test only)."""

    HKEY_CURRENT_USER = "HKCU"
    KEY_SET_VALUE = 2
    REG_SZ = 1

    def __init__(self):
        self.keys: dict[tuple[str, str], dict[str, tuple[str, int]]] = {}

    class _Key:
        def __init__(self, values):
            self.values = values

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def CreateKey(self, root, path):  # noqa: N802 - winreg's names
        return self._Key(self.keys.setdefault((root, path), {}))

    def OpenKey(self, root, path, reserved=0, access=0):  # noqa: N802
        if (root, path) not in self.keys:
            raise FileNotFoundError(path)
        return self._Key(self.keys[(root, path)])

    def SetValueEx(self, key, name, reserved, kind, value):  # noqa: N802
        key.values[name] = (value, kind)

    def QueryValueEx(self, key, name):  # noqa: N802
        if name not in key.values:
            raise FileNotFoundError(name)
        return key.values[name]

    def DeleteValue(self, key, name):  # noqa: N802
        if name not in key.values:
            raise FileNotFoundError(name)
        del key.values[name]


def test_windows_run_value_holds_the_quoted_command():
    reg = FakeWinreg()
    backend = WindowsAutostart(reg)
    assert not backend.status().enabled
    state = backend.enable([r"C:\Program Files\SpareCycles\sparecycles.exe", "--mode", "slave"])
    run_key = reg.keys[("HKCU", r"Software\Microsoft\Windows\CurrentVersion\Run")]
    assert run_key["SpareCycles"] == ('"C:\\Program Files\\SpareCycles\\sparecycles.exe" --mode slave', reg.REG_SZ)
    assert state.enabled and state.where.endswith(r"CurrentVersion\Run\SpareCycles")
    assert not backend.disable().enabled and "SpareCycles" not in run_key
    assert not backend.disable().enabled


def test_macos_launch_agent_runs_at_load(tmp_path):
    backend = MacAutostart(tmp_path / "LaunchAgents")
    command = ["/Applications/SpareCycles.app/Contents/MacOS/sparecycles"]
    backend.enable(command)
    data = plistlib.loads(backend.path.read_bytes())
    assert data["Label"] == "org.sparecycles.tray"
    assert data["ProgramArguments"] == command and data["RunAtLoad"] is True
    assert backend.status().enabled
    assert not backend.disable().enabled and not backend.path.exists()


@pytest.mark.parametrize("missing", ["status"])
def test_status_without_any_entry(tmp_path, missing):
    assert not getattr(XdgAutostart(tmp_path / "none"), missing)().enabled
    assert not getattr(MacAutostart(tmp_path / "none"), missing)().enabled
