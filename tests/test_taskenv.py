"""The interpreter tasks run with (trayapp/install/taskenv.py): a pip install's
own, a named one, or, in the bundle (whose executable is no Python), a
managed virtual environment, never the bundle itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trayapp.config import Config
from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.install.taskenv import env_python, task_interpreter

def test_a_pip_install_runs_tasks_with_its_own_interpreter(monkeypatch):
    monkeypatch.delenv("SPARECYCLES_TASK_PYTHON", raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert task_interpreter(Config().task_python) == sys.executable
    assert task_interpreter(Config(task_python="/opt/py/bin/python3").task_python) == "/opt/py/bin/python3"


@pytest.mark.slow
def test_frozen_never_uses_its_own_executable(monkeypatch, home):
    monkeypatch.delenv("SPARECYCLES_TASK_PYTHON", raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert task_interpreter(Config(task_python="/opt/py/bin/python3").task_python) == "/opt/py/bin/python3"
    python = task_interpreter(Config().task_python)  # creates the managed environment on first use
    assert python != sys.executable
    assert python == str(env_python(home.task_env_dir))
    version = subprocess.run([python, "-c", "import sys, pip; print(sys.prefix)"], capture_output=True, text=True,
                             check=True, timeout=60).stdout.strip()
    assert Path(version) == home.task_env_dir
    assert task_interpreter(Config().task_python) == python  # second use: the same one, not made again


def test_frozen_without_a_python_explains_task_python(tmp_path):
    home = Home(tmp_path, tmp_path, tmp_path / "logs")
    environ = {"PATH": str(tmp_path / "nothing here")}
    with pytest.raises(UserError, match="task_python"):
        task_interpreter("", home=home, environ=environ, frozen=True)
    assert task_interpreter("", home=home, environ=environ, frozen=True, create=False) is None
    assert not home.task_env_dir.exists()
