"""What a task and a quick command pay at import: the modules they load.

Every task that calls ``sparecycles.task_params()`` imports ``sparecycles``;
it must not load SSH (paramiko), the SQLite queue or the master. ``sparecycles
status`` reads the queue and must not load SSH either. The module set is
checked, not a time: bench/import_time.py prints the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sparecycles


def imported_by(code: str, cwd, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``code`` in a fresh interpreter with ``-X importtime``: the result and every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    names = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done, names


def heavy(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in ("paramiko", "sqlite3", "_sqlite3", "PyQt6", "cloudpickle")
            or n.startswith(("trayapp.master", "trayapp.wire", "trayapp.app", "sparecycles.jobhandle"))}


def test_a_task_calling_task_params_loads_no_ssh_no_queue_no_master(tmp_path):
    (tmp_path / "params.json").write_text(json.dumps({"rate_hz": 40}))
    done, names = imported_by("import json, sparecycles; print(json.dumps(sparecycles.task_params()))", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"rate_hz": 40}
    assert "sparecycles" in names and "trayapp.taskparams" in names  # the probe sees what it should
    assert not heavy(names), sorted(heavy(names))


def test_sparecycles_status_loads_no_paramiko(home, tmp_path):
    done, names = imported_by("from sparecycles.launch import main; raise SystemExit(main(['status']))", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no jobs yet" in done.stdout
    assert "trayapp.master.kinds" in names  # the host kinds are looked up, without their SSH code
    assert not {n for n in names if n.split(".")[0] == "paramiko"}


def test_adding_and_listing_hosts_of_every_kind_loads_no_paramiko(home, tmp_path):
    # What kinds/ssh.py promises: SSH code loads when a host is driven, checked
    # or trusted, not when hosts are added or looked up (kinds/slurm.py included).
    add = ("from sparecycles.launch import main\n"
           "raise SystemExit(main(['hosts', 'add', 'pc', '--host', '192.0.2.7']) or main(['hosts', 'add', 'hpc',"
           " '--kind', 'slurm', '--host', '192.0.2.8', '--remote-root', '/scratch/sc']) or main(['hosts', 'list']))")
    done, names = imported_by(add, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "added host hpc" in done.stdout and "192.0.2.8" not in done.stderr
    assert {"trayapp.master.kinds.ssh", "trayapp.master.kinds.slurm", "trayapp.master.kinds.login"} <= names
    assert not {n for n in names if n.split(".")[0] == "paramiko"}, "paramiko loaded"


def test_every_name_of_the_api_is_there_on_first_use():
    for name in sparecycles.__all__:
        assert getattr(sparecycles, name) is not None, name
        assert name in dir(sparecycles)
    assert sparecycles.submit.__module__ == "sparecycles.jobhandle"
    with pytest.raises(AttributeError, match="no_such_thing"):
        sparecycles.no_such_thing


def test_loading_the_modules_behind_the_api_first_hides_none_of_its_names(tmp_path):
    # Importing a submodule sets the package attribute of its name; a module named
    # like a function of the API (sparecycles.jobs once was) would hide it.
    code = ("import pkgutil, importlib, types, sparecycles\n"
            "for m in pkgutil.iter_modules(sparecycles.__path__):\n"
            "    if m.name not in ('__main__', 'launch'):\n"
            "        importlib.import_module('sparecycles.' + m.name)\n"
            "print([n for n in sparecycles.__all__ if isinstance(getattr(sparecycles, n), types.ModuleType)])\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
