"""The update check and "Update Brian", against a real index on 127.0.0.1.

``fakebrian`` (hand-made wheels, tests/fakeindex.py) stands in for Brian; the
install really happens, with pip, into a throwaway virtual environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakeindex import FakeIndex, SilentIndex, make_broken_wheel, make_wheel, pip_environment_without_user_config
from support.net import free_port
from trayapp.config import Config
from trayapp.install.updates import check_at_start_up, check_for_updates, latest_release, update_brian


@pytest.fixture
def wheels(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "wheels"
    return {v: make_wheel(folder, "fakebrian", v) for v in ("1.0", "1.1", "1.2rc1")}


@pytest.fixture
def index(tmp_path, wheels):
    with FakeIndex(tmp_path / "index") as idx:
        for wheel in wheels.values():
            idx.add("fakebrian", wheel)
        yield idx


@pytest.fixture
def clean_pip_env(monkeypatch):
    """No pip config of this machine (its mirrors, find-links) leaks into the installs."""
    env = pip_environment_without_user_config()
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", env["PIP_CONFIG_FILE"])
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


@pytest.fixture
def task_env(tmp_path, wheels, clean_pip_env) -> str:
    """A throwaway task environment with fakebrian 1.0 installed."""
    env_dir = tmp_path / "task env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", str(wheels["1.0"])], check=True,
                   timeout=120, env=clean_pip_env)
    return python


def imported_version(python: str) -> str:
    return subprocess.run([python, "-c", "import fakebrian; print(fakebrian.VERSION)"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/simple/"


# ----- reading the index -----------------------------------------------------------------

def test_newest_final_release_from_a_pep503_html_index(index):
    assert latest_release("fakebrian", index_url=index.url) == "1.1"  # 1.2rc1 is a pre-release
    assert latest_release("FakeBrian", index_url=index.url) == "1.1"  # names are normalised


def test_newest_release_from_a_pep691_json_index(tmp_path, wheels):
    with FakeIndex(tmp_path / "json index", json_api=True) as idx:
        idx.add("fakebrian", wheels["1.1"])
        idx.add("fakebrian", wheels["1.0"])
        assert latest_release("fakebrian", index_url=idx.url) == "1.1"


def test_a_package_the_index_does_not_carry_has_no_latest(index):
    assert latest_release("not-there", index_url=index.url) is None


def test_newest_release_from_a_wheel_folder(wheels):
    assert latest_release("fakebrian", wheel_folder=str(wheels["1.0"].parent)) == "1.1"


@pytest.mark.slow
def test_check_reports_current_and_latest_from_the_task_environment(index, task_env):
    config = Config(package_index=index.url)
    report = check_for_updates(config, brian_package="fakebrian", app_package="fakebrian", app_version="1.1",
                               python=task_env)
    assert report.error is None
    assert (report.brian.current, report.brian.latest, report.brian.available) == ("1.0", "1.1", True)
    assert (report.app.current, report.app.latest, report.app.available) == ("1.1", "1.1", False)
    assert report.to_json()["brian"]["available"] is True


def test_offline_check_is_silent_and_fast():
    config = Config(package_index=closed_port_url())
    started = time.monotonic()
    report = check_for_updates(config, brian_package="fakebrian", python=sys.executable)
    assert time.monotonic() - started < 5
    assert report.offline and "could not read" in report.error
    assert report.brian.latest is None and not report.brian.available
    assert report.app.latest is None and not report.app.available


def test_an_index_that_never_answers_is_offline_after_the_timeout():
    with SilentIndex() as silent:
        started = time.monotonic()
        report = check_for_updates(Config(package_index=silent.url), brian_package="fakebrian",
                                   python=sys.executable, timeout=0.5)
        took = time.monotonic() - started
    assert report.offline and "could not read" in report.error, report
    assert took < 3, f"the check waited {took:.1f} s for a silent index"
    assert not report.brian.available and not report.app.available


def test_start_up_check_can_be_turned_off(index, monkeypatch):
    monkeypatch.delenv("SPARECYCLES_NO_UPDATE_CHECK")  # conftest sets it for every other test
    assert check_at_start_up(Config(check_updates=False, package_index=index.url)) is None
    report = check_at_start_up(Config(package_index=index.url))
    assert report is not None and report.error is None
    monkeypatch.setenv("SPARECYCLES_NO_UPDATE_CHECK", "1")
    assert check_at_start_up(Config(package_index=index.url)) is None


# ----- installing ------------------------------------------------------------------------

@pytest.mark.slow
def test_update_installs_the_newer_release_into_the_task_environment(index, task_env):
    result = update_brian(Config(package_index=index.url), package="fakebrian", python=task_env)
    assert result.ok, result.output
    assert (result.before, result.after, result.changed) == ("1.0", "1.1", True)
    assert imported_version(task_env) == "1.1"


@pytest.mark.slow
def test_update_from_a_wheel_folder_works_without_any_index(wheels, task_env):
    result = update_brian(Config(wheel_folder=str(wheels["1.0"].parent)), package="fakebrian", python=task_env)
    assert result.ok, result.output
    assert imported_version(task_env) == "1.1"


@pytest.mark.slow
def test_a_broken_newer_wheel_leaves_the_old_version_working(tmp_path, wheels, task_env):
    with FakeIndex(tmp_path / "bad index") as idx:
        idx.add("fakebrian", wheels["1.0"])
        idx.add("fakebrian", make_broken_wheel(tmp_path / "broken", "fakebrian", "1.3"))
        result = update_brian(Config(package_index=idx.url), package="fakebrian", python=task_env)
    assert not result.ok
    assert result.after == "1.0"
    assert imported_version(task_env) == "1.0"


@pytest.mark.slow
def test_an_unreachable_index_leaves_the_old_version_working(task_env, clean_pip_env):
    env = {**clean_pip_env, "PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "3"}
    result = update_brian(Config(package_index=closed_port_url()), package="fakebrian", python=task_env, env=env)
    assert not result.ok
    assert (result.before, result.after) == ("1.0", "1.0")
    assert imported_version(task_env) == "1.0"


# ----- the command line ------------------------------------------------------------------

def run_cli(*args, env=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparecycles", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow
def test_cli_check_updates_json_and_update_brian(home, tmp_path, task_env, clean_pip_env):
    # The index serves stand-ins named like the real packages, so the CLI's
    # defaults (brian2, sparecycles) are what is checked and installed.
    folder = tmp_path / "lab wheels"
    with FakeIndex(tmp_path / "lab index") as idx:
        idx.add("brian2", make_wheel(folder, "brian2", "1.0"))
        idx.add("brian2", make_wheel(folder, "brian2", "99.0"))
        idx.add("sparecycles", make_wheel(folder, "sparecycles", "99.1"))
        home.config_file.write_text(f'package_index = "{idx.url}"\n')
        env = {**os.environ, "SPARECYCLES_TASK_PYTHON": task_env}
        subprocess.run([task_env, "-m", "pip", "install", "-q", "--no-index", str(folder / "brian2-1.0-py3-none-any.whl")],
                       check=True, timeout=120)

        out = run_cli("check-updates", "--json", env=env)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert {k: report["brian"][k] for k in ("name", "current", "latest", "available")} == \
            {"name": "brian2", "current": "1.0", "latest": "99.0", "available": True}
        assert report["brian"]["newer_elsewhere"] is None and report["brian"]["held_back"] is None
        assert report["brian"]["python"] == subprocess.run([task_env, "-c", "import platform; print(platform.python_version())"],
                                                           capture_output=True, text=True).stdout.strip()
        assert report["app"]["latest"] == "99.1" and report["app"]["available"] is True
        assert report["error"] is None

        out = run_cli("check-updates", env=env)
        assert out.returncode == 0 and "99.0" in out.stdout, out.stdout + out.stderr

        out = run_cli("update-brian", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "99.0" in out.stdout
        assert run_cli("check-updates", "--json", env=env).stdout.count('"99.0"') == 2


def test_cli_check_updates_offline_exits_zero_with_the_reason(home, clean_pip_env):
    home.config_file.write_text(f'package_index = "{closed_port_url()}"\n')
    out = run_cli("check-updates", "--json", timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["error"] and report["brian"]["latest"] is None


# ----- the task interpreter's Python (Requires-Python) ------------------------------------

@pytest.fixture(params=[False, True], ids=["html", "json"])
def index_with_a_release_for_newer_pythons(request, tmp_path, wheels):
    with FakeIndex(tmp_path / "newer-index", json_api=request.param) as idx:
        idx.add("fakebrian", wheels["1.0"])
        idx.add("fakebrian", make_wheel(tmp_path / "newer", "fakebrian", "2.0"), requires_python=">=3.99")
        yield idx


def test_a_release_for_a_newer_python_is_reported_as_such_not_offered(index_with_a_release_for_newer_pythons):
    report = check_for_updates(Config(package_index=index_with_a_release_for_newer_pythons.url),
                               brian_package="fakebrian", python=sys.executable)
    brian = report.brian
    assert (brian.latest, brian.newer_elsewhere, brian.needs_python) == ("1.0", "2.0", ">=3.99")
    assert brian.python == "%d.%d.%d" % sys.version_info[:3]
    held_back = brian.blocked()
    assert f"fakebrian 2.0 is out but needs Python >=3.99, and the task environment has Python {brian.python}" \
        in held_back and "fix: choose a task interpreter with a newer Python (task_python" in held_back
    assert report.to_json()["brian"]["held_back"] == held_back


def test_a_wheel_folders_requires_python_counts_too(tmp_path):
    folder = tmp_path / "lab-wheels"
    make_wheel(folder, "fakebrian", "1.0")
    make_wheel(folder, "fakebrian", "3.0", requires_python=">=3.99")
    brian = check_for_updates(Config(wheel_folder=str(folder)), brian_package="fakebrian",
                              python=sys.executable).brian
    assert (brian.latest, brian.newer_elsewhere, brian.needs_python) == ("1.0", "3.0", ">=3.99")


def test_update_brian_installs_the_newest_for_its_python_and_says_what_it_held_back(
        task_env, index_with_a_release_for_newer_pythons, wheels, tmp_path):
    index = index_with_a_release_for_newer_pythons
    index.add("fakebrian", wheels["1.1"])
    result = update_brian(Config(package_index=index.url), package="fakebrian", python=task_env)
    assert result.ok, result.output
    assert (result.before, result.after) == ("1.0", "1.1")
    assert "fakebrian 2.0 is out but needs Python >=3.99" in result.held_back
