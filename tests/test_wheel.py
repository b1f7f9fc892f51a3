"""What ``pip install sparecycles`` gives a lab: the wheel built from this tree,
installed (not editable) into clean virtual environments, runs a job end to end.

The rest of the suite runs an editable install, which sees every folder of the
tree whatever the wheel holds. Here: every package folder is in the wheel; a
venv with the wheel and its dependencies runs a job through a real SSH slave
with the sandbox on, and accepts a SLURM host; a venv without PyQt6 (a headless
lab box, a cluster node) runs a slave and a master through a job.

Environments are made with uv from its cache, so only the first run downloads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support.daemons import SlaveDaemon
from support.sshd import Sshd

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# Folders of the tree whose packages the wheel ships, and the names they install under.
PACKAGE_FOLDERS = {"trayapp": "trayapp", "sparecycles": "sparecycles", "ui": "sparecycles_ui",
                   "resources": "sparecycles_resources"}

TASK = """
import json, os, sys
os.makedirs("results", exist_ok=True)
json.dump({"params": json.loads(sys.argv[1]),
           # inside the sandbox, HOME is the task's own folder and the task is alone in its pid namespace
           "sandboxed": os.environ.get("HOME") == os.getcwd() and os.getpid() < 10,
           "python": sys.executable}, open("results/out.json", "w"))
"""


def uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def package_folders() -> list[str]:
    """Every package of the tree (a folder with ``__init__.py``), by the name it installs under."""
    found = []
    for folder, name in PACKAGE_FOLDERS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in relative:
                found.append(".".join((name, *relative)))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the tree, so building leaves no build/ or egg-info in the checkout.
    tree = out / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                              ".pytest_cache", "bench"))
    built = subprocess.run([uv(), "build", "--wheel", "--out-dir", str(out / "dist"), str(tree)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    # Setuptools' warnings (a deprecated licence table, a folder it "would ignore") are noise at every install.
    for noise in ("deprecated", "would be ignored", "Warning:"):
        assert noise not in built.stderr, built.stderr
    [path] = (out / "dist").glob("sparecycles-*.whl")
    return path


def make_venv(where: Path, wheel: Path, *, qt: bool = True) -> Path:
    """A clean venv with the wheel installed, not editable; without ``qt``, its
    dependencies but PyQt6 (read from the wheel's own metadata)."""
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    install = [uv(), "pip", "install", "--quiet", "--python", str(python)]
    if qt:
        subprocess.run([*install, str(wheel)], check=True, timeout=600)
    else:
        with zipfile.ZipFile(wheel) as archive:
            [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            lines = archive.read(metadata).decode().splitlines()
        needs = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
        core = [str(r) for r in needs if r.name != "PyQt6" and not (r.marker and "extra" in str(r.marker))]
        subprocess.run([*install, "--no-deps", str(wheel)], check=True, timeout=600)
        subprocess.run([*install, *core], check=True, timeout=600)
    return where


def clean_env(**extra: str) -> dict:
    """This environment without anything that would point Python at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "SPARECYCLES_NO_UPDATE_CHECK": "1", **extra}


class Installed:
    """One venv's ``sparecycles`` command, run outside the source tree."""

    def __init__(self, venv: Path, master_home: Path):
        self.venv, self.master_home = venv, master_home
        self.program = [str(venv / "bin" / "sparecycles")]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.program, *args], cwd=self.master_home, capture_output=True, text=True,
                                env=clean_env(SPARECYCLES_HOME=str(self.master_home)), timeout=timeout)
        assert result.returncode == 0, f"sparecycles {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def python(self, code: str) -> str:
        return subprocess.run([str(self.venv / "bin" / "python"), "-c", code], cwd=self.master_home, check=True,
                              capture_output=True, text=True, env=clean_env(), timeout=60).stdout.strip()


def run_a_job_through_an_ssh_slave(installed: Installed, sshd: Sshd, root: Path) -> dict:
    """A slave daemon of the installation behind the sshd, a master of it with
    no own cores, one job of three tasks: the results of each task."""
    slave = SlaveDaemon(root / "slave home", slots=2, env=clean_env(), program=installed.program).start()
    try:
        installed.run("hosts", "add", "lab", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user,
                      "--key", str(sshd.client_key), "--agent-command", slave.agent_command)
        installed.run("hosts", "trust", "lab", "--fingerprint", sshd.host_key_fingerprint())
        job_folder = root / "job"
        job_folder.mkdir()
        (job_folder / "main.py").write_text(TASK)
        (root / "params.json").write_text(json.dumps([{"i": i} for i in range(3)]))
        job = json.loads(installed.run("submit", str(job_folder), "--params", str(root / "params.json"),
                                       "--no-start", "--json").stdout)
        installed.run("master", "--no-local", "--until-idle", "1", timeout=300)
        status = json.loads(installed.run("status", job["job"], "--json").stdout)
        assert status["status"] == "done", (status, slave.log())
        assert {t["host"] for t in status["tasks"]} == {"lab"}
        return {i: json.loads((Path(job["results"]) / str(i) / "out.json").read_text()) for i in range(3)}
    finally:
        slave.stop()


def test_the_wheel_holds_every_package_folder_of_the_tree(wheel):
    folders = package_folders()
    assert "trayapp.master.slurm" in folders and "sparecycles_ui" in folders  # the walk sees nested and renamed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = [p for p in folders if p.replace(".", "/") + "/__init__.py" not in names]
    assert not missing, f"package folders missing from the wheel: {missing}"
    assert not any(n.startswith("ui/") for n in names), "the GUI installs as sparecycles_ui, not as a bare 'ui'"
    assert "sparecycles_resources/demo/main.py" in names and "sparecycles_resources/icons/master-idle.svg" in names
    assert {f"sparecycles_resources/standalone/{name}" for name in ("main.py", "params.toml", "sparecycles.toml")} <= names


@pytest.mark.pool
def test_a_clean_install_of_the_wheel_runs_a_job_on_an_ssh_slave_with_the_sandbox_on(wheel, tmp_path, sshd):
    venv = make_venv(tmp_path / "venv", wheel)
    installed = Installed(venv, tmp_path / "master home")
    installed.master_home.mkdir()
    where = installed.python("import trayapp, sparecycles_ui, PyQt6; print(trayapp.__file__)")
    assert where.startswith(str(venv)), f"trayapp imported from {where}, not from the installed wheel"
    assert "usage" in installed.run("--help").stdout

    results = run_a_job_through_an_ssh_slave(installed, sshd, tmp_path)
    assert [results[i]["params"] for i in range(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert all(r["sandboxed"] for r in results.values()), results
    assert all(r["python"].startswith(str(venv)) for r in results.values()), results

    installed.run("hosts", "add", "cluster", "--kind", "slurm", "--host", "127.0.0.1", "--port", str(sshd.port),
                  "--user", sshd.user, "--key", str(sshd.client_key), "--remote-root", str(tmp_path / "remote"))
    hosts = json.loads(installed.run("hosts", "list", "--json").stdout)
    assert {h["name"]: h["kind"] for h in hosts}["cluster"] == "slurm", hosts


@pytest.mark.pool
def test_a_venv_without_pyqt6_runs_a_slave_and_a_master_through_a_job(wheel, tmp_path, sshd):
    venv = make_venv(tmp_path / "venv", wheel, qt=False)
    installed = Installed(venv, tmp_path / "master home")
    installed.master_home.mkdir()
    assert installed.python("import importlib.util; print(importlib.util.find_spec('PyQt6'))") == "None"

    results = run_a_job_through_an_ssh_slave(installed, sshd, tmp_path)
    assert [results[i]["params"] for i in range(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert all(r["sandboxed"] for r in results.values()), results
