"""Mistakes found at submit, failures told once, and a fix that is one command.

Real processes: the ``sparecycles`` command line as a child, a background
dispatcher running tasks on this PC's own cores, in the bubblewrap sandbox.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import cli, make_job
from fakeindex import FakeIndex, make_wheel


@pytest.fixture(autouse=True)
def sandbox_on(monkeypatch):
    """What users get: tasks in the sandbox (conftest turns it off for older tests)."""
    monkeypatch.delenv("SPARECYCLES_SANDBOX", raising=False)


def submit(*args: str) -> dict:
    return json.loads(cli("submit", *args, "--json", check=True).stdout)


def job_ids() -> list[str]:
    return [j["id"] for j in json.loads(cli("status", "--json", check=True).stdout)]


# ----- at submit ----------------------------------------------------------------------

def test_a_syntax_error_is_refused_at_submit_with_file_line_and_caret(home, tmp_path):
    folder, _ = make_job(tmp_path / "typo", "import math\n\nx = math.sqrt(2)\nprint('x is' x)\n")
    result = cli("submit", str(folder), "--no-start")
    assert result.returncode == 3, result.stderr
    assert f"{folder / 'main.py'}, line 4" in result.stderr
    assert "    print('x is' x)\n" in result.stderr
    caret = result.stderr.split("    print('x is' x)\n")[1].splitlines()[0]
    assert re.fullmatch(r" {4}\s*\^", caret), result.stderr
    assert "fix: correct line 4 of main.py" in result.stderr
    assert job_ids() == [], "nothing may be queued"


def test_a_script_that_compiles_is_queued(home, tmp_path):
    folder, _ = make_job(tmp_path / "fine", "print('x is', 1)\n")
    assert cli("submit", str(folder), "--no-start").returncode == 0
    assert len(job_ids()) == 1


@pytest.fixture
def lab_index(home, tmp_path):
    """The lab's package index (a real HTTP index on 127.0.0.1) named in the settings."""
    with FakeIndex(tmp_path / "index") as index:
        index.add("fakebrian", make_wheel(tmp_path / "wheels", "fakebrian", "1.0"))
        index.add("fakebrian", make_wheel(tmp_path / "wheels", "fakebrian", "1.1"))
        home.config_file.write_text(f'package_index = "{index.url}"\n')
        yield index


@pytest.mark.parametrize("requirement, said", [
    ("sparecycles-no-such-package == 1.0", "it has no package named sparecycles-no-such-package"),
    ("fakebrian == 2.0", "it has versions 1.0, 1.1"),
])
def test_a_requirement_the_lab_index_lacks_is_refused_at_submit(home, tmp_path, lab_index, requirement, said):
    folder, _ = make_job(tmp_path / "needs", "print(1)\n", extra_files={"requirements.txt": requirement + "\n"})
    result = cli("submit", str(folder), "--no-start")
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"requirement {requirement!r} cannot be installed" in result.stderr
    assert said in result.stderr and lab_index.url in result.stderr
    assert job_ids() == []


def test_a_requirement_the_lab_index_has_is_queued(home, tmp_path, lab_index):
    folder, _ = make_job(tmp_path / "needs", "print(1)\n", extra_files={"requirements.txt": "fakebrian >= 1.1\n"})
    assert cli("submit", str(folder), "--no-start").returncode == 0, "a version that exists must pass"


# ----- failures, told once --------------------------------------------------------------

FAILING = """
import json, sys
params = json.loads(sys.argv[1])
def check(p):
    raise ValueError("the grid has no value for tau")
check(params)
"""


@pytest.mark.slow
def test_twenty_identical_failures_print_as_one_group_with_the_users_paths(home, tmp_path):
    folder, params = make_job(tmp_path / "grid", FAILING, params=[{"i": i} for i in range(20)])
    sub = submit(str(folder), "--params", str(params))
    waited = cli("wait", sub["job"], "--timeout", "300")
    assert waited.returncode == 1, waited.stderr
    assert "20 tasks failed (tasks 0-19)" in waited.stderr
    status = cli("status", sub["job"], check=True).stdout
    assert status.count("ValueError: the grid has no value for tau") == 1, status
    assert "20 tasks failed with the same error (tasks 0-19)" in status
    # The traceback points into the user's folder, not into the spool it ran from.
    assert f'File "{folder / "main.py"}", line 6' in status, status
    assert "/tasks/" not in status


BRIAN_FAILING = """
import brian2
raise RuntimeError("an equation without units")
"""


@pytest.mark.slow
@pytest.mark.brian
def test_brians_debug_files_come_back_with_a_failed_tasks_logs(home, tmp_path):
    folder, _ = make_job(tmp_path / "brianfail", BRIAN_FAILING)
    sub = submit(str(folder))
    assert cli("wait", sub["job"], "--timeout", "300").returncode == 1
    task = Path(sub["results"]) / "0"
    logs = sorted(p.name for p in task.iterdir())
    assert any(re.fullmatch(r"brian_debug_.*\.log", n) for n in logs), logs
    assert any(re.fullmatch(r"brian_script_.*\.py", n) for n in logs), logs
    script = next(task.glob("brian_script_*.py")).read_text()
    assert "an equation without units" in script
    # Brian's "please include this file" names the copy the user has, not the deleted task folder.
    status = cli("status", sub["job"], check=True).stdout
    debug = next(task.glob("brian_debug_*.log"))
    assert str(debug) in status or "brian_debug" not in status, status


# ----- a fix is one command ----------------------------------------------------------------

BROKEN = """
import json, os, sys
p = json.loads(sys.argv[1])
raise SystemExit("version 1 is broken")
"""
FIXED = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
json.dump({"version": 2, "i": p["i"]}, open("results/out.json", "w"))
"""


@pytest.mark.slow
def test_retry_after_a_fix_repacks_and_remove_keeps_results(home, tmp_path):
    folder, params = make_job(tmp_path / "fixme", BROKEN, params=[{"i": 0}, {"i": 1}])
    sub = submit(str(folder), "--params", str(params))
    assert cli("wait", sub["job"], "--timeout", "120").returncode == 1

    (folder / "main.py").write_text(FIXED)
    (folder / "helper.py").write_text("X = 1\n")
    plain = cli("retry", sub["job"], check=True)
    assert "queued 2 failed or cancelled tasks" in plain.stdout
    assert "changed since it was submitted (main.py changed, helper.py added)" in plain.stderr
    assert f"fix: sparecycles retry {sub['job']} --repack" in plain.stderr
    assert cli("wait", sub["job"], "--timeout", "120").returncode == 1, "a plain retry runs what was packed"

    repacked = cli("retry", sub["job"], "--repack", check=True)
    assert "with the folder as it is now" in repacked.stdout and not repacked.stderr
    assert cli("wait", sub["job"], "--timeout", "120").returncode == 0
    status = json.loads(cli("status", sub["job"], "--json", check=True).stdout)
    assert status["id"] == sub["job"] and status["counts"]["done"] == 2
    for i in (0, 1):
        assert json.loads((Path(sub["results"]) / str(i) / "out.json").read_text()) == {"version": 2, "i": i}
    assert "changed" not in cli("retry", sub["job"], check=True).stderr, "now it runs the folder as it is"

    removed = cli("remove", sub["job"], check=True)
    assert f"its results stay in {sub['results']}" in removed.stdout
    assert job_ids() == []
    assert (Path(sub["results"]) / "1" / "out.json").is_file()
    assert cli("status", sub["job"]).returncode == 3


def test_remove_refuses_an_unfinished_job_and_deletes_results_only_when_asked(home, tmp_path):
    folder, _ = make_job(tmp_path / "queued", "print(1)\n")
    sub = submit(str(folder), "--no-start")
    refused = cli("remove", sub["job"])
    assert refused.returncode == 3 and f"fix: cancel it first: sparecycles cancel {sub['job']}" in refused.stderr
    cli("cancel", sub["job"], check=True)
    Path(sub["results"]).mkdir(parents=True)
    (Path(sub["results"]) / "kept.txt").write_text("x")
    removed = cli("remove", sub["job"], "--results", check=True)
    assert "deleted its results folder" in removed.stdout
    assert not Path(sub["results"]).exists() and job_ids() == []


def test_brians_debug_files_are_packed_on_a_slave_without_following_links(tmp_path):
    """The slave's side (a remote host packs; the master's own cores move): regular
    debug files travel, a link a task named like one is left alone."""
    import tarfile

    from trayapp.slave.spool import Spool, SpoolTask

    spool = Spool(tmp_path / "spool").ensure()
    task = SpoolTask(token="ab" * 8, master="m", job="j", idx=0, params={}, main="main.py", archive_sha="0" * 64)
    scratch = spool.task_dir(task.token) / "tmp"
    scratch.mkdir(parents=True)
    (scratch / "brian_debug_x1.log").write_text("debug")
    (scratch / "brian_script_x2.py").write_text("script")
    (scratch / "other.txt").write_text("not asked for")
    secret = tmp_path / "lenders-secret.txt"
    secret.write_text("private")
    os.symlink(secret, scratch / "brian_debug_link.log")
    path, _sha, _size = spool.pack_results(task, 1 << 20)
    with tarfile.open(path) as tar:
        names = sorted(tar.getnames())
        assert names == ["brian_debug_x1.log", "brian_script_x2.py"]
        assert tar.extractfile("brian_debug_x1.log").read() == b"debug"
