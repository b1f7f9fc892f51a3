"""The PyInstaller bundle, built for real by installer/build.sh and smoke-tested
(the task environment it needs, without a bundle: test_taskenv.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from trayapp import __version__
from trayapp.home import Home
from trayapp.install.taskenv import env_python

# The module's first test also builds the bundle (~10 s alone; minutes on a PC busy with other tests).
pytestmark = [pytest.mark.bundle, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
HELLO = '{"v":1,"type":"hello","master":"0123456789abcdef","name":"x"}\n'


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The bundle (built once for this module) and build.sh's output."""
    dist = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "installer" / "build.sh"), "--dist", str(dist)], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f"bundle built and measured in {time.monotonic() - started:.0f} s\n{out.stdout}")
    return dist, out.stdout


@pytest.fixture
def bundle(built) -> Path:
    return built[0] / "sparecycles" / "sparecycles"


def fresh_env(tmp_path: Path, **extra: str) -> dict:
    home = tmp_path / "bundle home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "SPARECYCLES_HOME": str(home), **extra}


def test_build_makes_a_bundle_a_tarball_and_prints_figures(built):
    dist, output = built
    assert (dist / "sparecycles" / "sparecycles").stat().st_mode & 0o111
    assert (dist / "sparecycles" / "_internal" / "resources" / "icons" / "master-idle.svg").exists()
    tarballs = list(dist.glob(f"sparecycles-{__version__}-linux-*.tar.gz"))
    assert len(tarballs) == 1
    with tarfile.open(tarballs[0]) as tar:
        names = set(tar.getnames())
    assert {"sparecycles/sparecycles", "sparecycles/install-desktop.sh",
            "sparecycles/share/applications/sparecycles.desktop.in"} <= names
    for figure in ("bundle size", "tarball size", "start to --version", "start to agent handshake",
                   "tray start to icon in the tray"):
        assert f"figure: {figure}" in output, output
    assert "baseline: a bare PyQt6 tray icon" in output and "target: start to tray icon under 2 s -> " in output
    assert "cold median" in output and "warm median" in output, output


def test_bundle_prints_its_version(bundle, tmp_path):
    out = subprocess.run([str(bundle), "--version"], capture_output=True, text=True, timeout=60,
                         env=fresh_env(tmp_path))
    assert (out.returncode, out.stdout.strip()) == (0, f"sparecycles {__version__}")


def test_bundle_agent_answers_the_handshake_over_a_pipe(bundle, tmp_path):
    out = subprocess.run([str(bundle), "agent"], input=HELLO, capture_output=True, text=True, timeout=60,
                         env=fresh_env(tmp_path))
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.splitlines()[0])
    assert answer["v"] == 1 and answer["type"] == "error" and answer["offline"] is True


def test_bundled_tray_app_starts_offscreen_runs_its_engine_and_quits_cleanly(bundle, tmp_path):
    env = fresh_env(tmp_path, QT_QPA_PLATFORM="offscreen")
    home = Path(env["SPARECYCLES_HOME"])
    proc = subprocess.Popen([str(bundle), "--mode", "master"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        # The engine child is `<bundle> -m sparecycles master`: it holding the
        # dispatcher lock proves the bundle runs its own verbs that way.
        from trayapp.locks import InstanceLock

        deadline = time.monotonic() + 60
        while InstanceLock(home / "dispatcher.lock").holder() is None:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the bundled tray app started no dispatcher"
            time.sleep(0.1)
        child = InstanceLock(home / "dispatcher.lock").holder()
        # It logs its task interpreter once the managed environment is made.
        expected = f"tasks run with {env_python(home / 'task-env')}"
        log_file = home / "logs" / "master.log"
        while expected not in log_file.read_text():
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    output = proc.stdout.read()
    assert code == 0, output
    assert "Traceback" not in output, output
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_bundle_demo_uses_the_managed_task_environment_not_itself(bundle, tmp_path):
    env = fresh_env(tmp_path)
    out = subprocess.run([str(bundle), "demo"], capture_output=True, text=True, timeout=300, env=env)
    managed = env_python(Path(env["SPARECYCLES_HOME"]) / "task-env")
    assert out.returncode == 3, out.stdout + out.stderr  # no Brian in a fresh environment
    assert f"task environment ({managed})" in out.stderr
    assert managed.exists()


def test_bundle_without_any_system_python_says_how_to_set_task_python(bundle, tmp_path):
    out = subprocess.run([str(bundle), "demo"], capture_output=True, text=True, timeout=60,
                         env=fresh_env(tmp_path, PATH=str(tmp_path / "empty")))
    assert out.returncode == 3
    assert "task_python" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.brian
def test_bundle_runs_the_brian_demo_with_a_named_task_python(bundle, tmp_path):
    # The dispatcher runs as `<bundle> -m sparecycles master`, the tasks with the
    # interpreter from the settings (this venv, which has Brian).
    env = fresh_env(tmp_path)
    Path(env["SPARECYCLES_HOME"], "config.toml").write_text(f'task_python = "{sys.executable}"\n')
    out = subprocess.run([str(bundle), "demo", "--timeout", "240"], capture_output=True, text=True, timeout=300,
                         env=env)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        from conftest import _stop_background_dispatcher

        _stop_background_dispatcher(Home.from_environment(env))


def test_bundle_check_updates_offline_and_autostart_point_at_the_bundle(bundle, tmp_path):
    from support.net import free_port

    env = fresh_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    Path(env["SPARECYCLES_HOME"], "config.toml").write_text(
        f'package_index = "http://127.0.0.1:{free_port()}/simple/"\n')
    out = subprocess.run([str(bundle), "check-updates", "--json"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["error"] and report["brian"]["current"] is None  # no task environment made for a check
    assert not (Path(env["SPARECYCLES_HOME"]) / "task-env").exists()

    out = subprocess.run([str(bundle), "autostart", "enable", "--json"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["command"] == [str(bundle.resolve()), "--background"]
    entry = tmp_path / "xdg" / "autostart" / "sparecycles.desktop"
    subprocess.run(["desktop-file-validate", str(entry)], check=True, timeout=30)


def test_bundle_updates_brian_in_its_managed_environment_never_in_itself(bundle, tmp_path):
    from fakeindex import FakeIndex, make_wheel
    from fakeindex import pip_environment_without_user_config

    env = pip_environment_without_user_config(fresh_env(tmp_path))
    home = Path(env["SPARECYCLES_HOME"])
    with FakeIndex(tmp_path / "index") as idx:
        idx.add("brian2", make_wheel(tmp_path / "wheels", "brian2", "9.1"))
        (home / "config.toml").write_text(f'package_index = "{idx.url}"\n')
        out = subprocess.run([str(bundle), "update-brian", "--json"], capture_output=True, text=True, timeout=300,
                             env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        result = json.loads(out.stdout)
        managed = env_python(home / "task-env")
        assert (result["ok"], result["before"], result["after"], result["python"]) == (True, None, "9.1", str(managed))
        out = subprocess.run([str(bundle), "check-updates", "--json"], capture_output=True, text=True, timeout=60,
                             env=env)
        report = json.loads(out.stdout)
        brian = {key: report["brian"][key] for key in ("name", "current", "latest", "available", "held_back")}
        assert brian == {"name": "brian2", "current": "9.1", "latest": "9.1", "available": False, "held_back": None}
        assert report["error"] is None and report["app"]["current"] == __version__
    assert not list(bundle.parent.rglob("brian2*"))  # the app's own bundle is untouched


def test_install_desktop_adds_a_valid_menu_entry_and_icon(built, tmp_path):
    bundle_dir = built[0] / "sparecycles"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    subprocess.run(["bash", str(bundle_dir / "install-desktop.sh")], check=True, timeout=60, env=env,
                   capture_output=True)
    entry = tmp_path / "data" / "applications" / "sparecycles.desktop"
    icon = tmp_path / "data" / "icons" / "hicolor" / "scalable" / "apps" / "sparecycles.svg"
    out = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout
    assert f'Exec="{bundle_dir / "sparecycles"}"' in entry.read_text()
    assert icon.exists()
    subprocess.run(["bash", str(bundle_dir / "install-desktop.sh"), "--uninstall"], check=True, timeout=60, env=env,
                   capture_output=True)
    assert not entry.exists() and not icon.exists()
