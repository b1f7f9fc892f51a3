"""Collecting a task's results never writes through what the task left there:
a link or FIFO named like one of the master's own files is kept aside, unread."""

from __future__ import annotations

import json
import os

import pytest
from conftest import make_job, run_dispatcher

from trayapp.config import Config
from trayapp.job.submit import submit_job
from trayapp.master.results import MARKER_FILE, collected_by
from trayapp.status import JobStatus

# The task plants one entry in results/ (kind and name from its parameters)
# aimed at a file outside the results folder.
PLANTING_TASK = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
open("results/ok.txt", "w").write("fine")
place = os.path.join("results", p["name"])
if p["kind"] == "symlink":
    os.symlink(p["victim"], place)
elif p["kind"] == "hardlink":
    os.link(p["victim"], place)
else:
    os.mkfifo(place)
"""


@pytest.mark.parametrize("kind, name", [("symlink", "params.json"), ("symlink", MARKER_FILE),
                                        ("hardlink", MARKER_FILE), ("fifo", MARKER_FILE)])
def test_the_master_writes_its_files_without_following_what_the_task_left(app, tmp_path, kind, name,
                                                                          monkeypatch):
    victim = tmp_path / "victim.txt"
    if kind == "hardlink":
        victim.write_text("precious")
        # Unsandboxed path: a sandboxed task cannot see the victim to link to it.
        monkeypatch.setenv("SPARECYCLES_SANDBOX", "off")
    folder, _ = make_job(tmp_path / "planter", PLANTING_TASK)
    job = submit_job(app.store, app.home, Config(slots=2, poll_interval_s=0.05), folder,
                     param_sets=[{"kind": kind, "name": name, "victim": str(victim)}]).job
    run_dispatcher(app)

    assert app.store.job(job.id).status is JobStatus.DONE
    if kind == "hardlink":
        assert victim.read_text() == "precious"
    else:
        assert not victim.exists()
    task_results = app.config.results_root(app.home) / f"{job.name}-{job.id}" / "0"
    assert collected_by(task_results) == app.store.attempts(job.seq)[-1]["id"]
    assert json.loads((task_results / "params.json").read_text())["kind"] == kind
    kept = [p for p in task_results.iterdir() if p.name not in ("ok.txt", "params.json", MARKER_FILE,
                                                                "stdout.txt", "stderr.txt")]
    assert len(kept) == 1 and os.path.lexists(kept[0]), sorted(p.name for p in task_results.iterdir())


def test_the_results_cap_counts_what_the_task_printed(tmp_path):
    from trayapp.slave.spool import Spool, SpoolTask

    spool = Spool(tmp_path / "spool").ensure()
    task = SpoolTask(token="cd" * 8, master="m", job="j", idx=0, params={}, main="main.py", archive_sha="0" * 64)
    (spool.task_dir(task.token) / "work" / "results").mkdir(parents=True)
    (spool.task_dir(task.token) / "stdout.txt").write_bytes(b"chatter\n" * 400_000)  # 3.2 MB
    with pytest.raises(ValueError, match="exceed this host's cap of 1 MB"):
        spool.pack_results(task, 1 << 20)


@pytest.mark.parametrize("size, kept", [(3, True), (400_000, False)])
def test_packed_results_are_hashed_as_written_and_small_ones_kept_for_the_finished_message(tmp_path, size, kept):
    # The archive is not read back: its checksum and size come from what was written,
    # and a small one's bytes ride in the "finished" message; both must be the file's.
    import tarfile

    from trayapp.slave.spool import Spool, SpoolTask
    from trayapp.wire.archive import sha256_of

    spool = Spool(tmp_path / "spool").ensure()
    task = SpoolTask(token="ce" * 8, master="m", job="j", idx=0, params={}, main="main.py", archive_sha="0" * 64)
    (spool.task_dir(task.token) / "work" / "results").mkdir(parents=True)
    (spool.task_dir(task.token) / "work" / "results" / "out.bin").write_bytes(os.urandom(size))
    (spool.task_dir(task.token) / "stdout.txt").write_text("hello\n")
    path, sha, packed_size = spool.pack_results(task, 1 << 30)
    assert (sha, packed_size) == (sha256_of(path), path.stat().st_size)
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == ["results/out.bin", "stdout.txt"]
    assert spool.packed_results(task) == (path.read_bytes() if kept else None)
    assert spool.packed_results(task) is None, "taken once: a later report reads the file"
