"""The task runner seam: the slave engine runs tasks through any TaskRunner,
and the POSIX runner adopts attempts a previous slave started."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import stat
import sys

import pytest
from conftest import make_job, pid_alive, wait_until
from support.peer import ProtocolPeer

from trayapp.master.kinds.local import LocalSlave
from trayapp.run.attempt import prepare, task_launch
from trayapp.run.posix import PosixRunner
from trayapp.run.runner import Launch
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool
from trayapp.wire.archive import pack

REPORT_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])
json.dump({"wrapped": os.environ.get("WRAPPED_BY"), "task": os.environ["SPARECYCLES_TASK"],
           "threads": os.environ["OMP_NUM_THREADS"], "cwd": os.getcwd()},
          open(os.path.join(p["out"], f"{p['i']}.json"), "w"))
time.sleep(p["sleep"])
"""


class WrappingRunner:
    """What a sandboxed runner does, reduced to the seam: it wraps the argv it
    is given and records every launch; the POSIX runner does the rest."""

    def __init__(self):
        self.inner = PosixRunner()
        self.launches: list[Launch] = []

    def start(self, launch: Launch):
        self.launches.append(launch)
        return self.inner.start(dataclasses.replace(launch, argv=("env", "WRAPPED_BY=test", *launch.argv)))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_engine_runs_tasks_through_a_runner_of_another_kind_with_one_slot_each(tmp_path):
    runner = WrappingRunner()
    engine = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=2, python=sys.executable, nice=0),
                         slave_id="e" * 16, runner=runner)
    local = LocalSlave(engine).start()
    try:
        folder, _ = make_job(tmp_path / "job", REPORT_TASK)
        archive = pack(folder, ["main.py"], tmp_path / "packed")
        master = ProtocolPeer(engine, timeout=20)
        master.hello()
        assert master.upload(archive.path, archive.sha256)["type"] in ("archive_ok", "archive")
        out = tmp_path / "out"
        out.mkdir()
        tokens = []
        for i in range(2):
            tokens.append(secrets.token_hex(8))
            master.send("start", token=tokens[-1], job="j1", idx=i, params={"out": str(out), "i": i, "sleep": 0.5},
                        main="main.py", archive_sha=archive.sha256, time_limit_s=60, cores=2)
            assert master.expect("started", "declined")["type"] == "started"
        finished = [master.expect("finished") for _ in tokens]
    finally:
        local.stop()
    assert {m["outcome"] for m in finished} == {"succeeded"}
    seen = [json.loads((out / f"{i}.json").read_text()) for i in range(2)]
    assert [s["wrapped"] for s in seen] == ["test", "test"]
    assert [s["task"] for s in seen] == ["0", "1"] and {s["threads"] for s in seen} == {"2"}
    # Both ran at once, so each held a slot of its own; the launch says all a sandbox needs.
    assert sorted(launch.slot for launch in runner.launches) == [0, 1]
    for launch, report in zip(runner.launches, seen):
        assert launch.argv[0] == sys.executable and launch.argv[1] == "main.py"
        assert report["cwd"] == str(launch.work_dir) and launch.task_dir.name == launch.token
        assert (launch.cores, launch.nice, launch.time_limit_s) == (2, 0, 60)


SLEEPER = "import sys, time\ntime.sleep(float(sys.argv[1]))\nsys.exit(3)\n"


def sleeper(tmp_path, seconds: float) -> Launch:
    template = tmp_path / "job"
    template.mkdir(exist_ok=True)
    (template / "main.py").write_text(SLEEPER)
    token = secrets.token_hex(8)
    launch = task_launch(token, tmp_path / token, python=sys.executable, main="main.py", params={}, job_id="j",
                         idx=0, nice=0)
    prepare(launch.task_dir, template, {})
    return dataclasses.replace(launch, argv=(sys.executable, "main.py", str(seconds)))


@pytest.mark.parametrize("seconds", [0.0, 60.0])
def test_a_restarted_slaves_runner_adopts_what_the_spool_recorded(tmp_path, seconds):
    first = PosixRunner()
    launch = sleeper(tmp_path, seconds)
    started = first.start(launch)
    pid, created = started.pid, started.created
    if seconds == 0:
        wait_until(started.has_ended, what="the short task to end")
    # The slave is gone; its successor has only the spool's record.
    adopted = PosixRunner().adopt(launch, pid, created)
    if seconds == 0:
        assert adopted.has_ended() and adopted.exit_code() == 3
        return
    assert not adopted.has_ended() and pid_alive(pid)
    adopted.kill_whole_tree()
    adopted.close()
    wait_until(lambda: not pid_alive(pid), what="the adopted task to die")
    started.popen.wait(5)
    assert adopted.has_ended() and adopted.exit_code() is None


def test_a_recycled_pid_is_not_adopted(tmp_path):
    runner = PosixRunner()
    launch = sleeper(tmp_path, 60.0)
    task = runner.start(launch)
    try:
        # Same pid, another start time: another process, as after a reboot.
        assert PosixRunner().adopt(launch, task.pid, task.created - 3600).has_ended()
    finally:
        task.kill_whole_tree()
        task.close()


def test_a_task_gets_a_copy_of_its_job_folder_as_it_was_unpacked(tmp_path):
    # The copy is made with fewer system calls than shutil.copytree: same files,
    # folders, modes and times, and a copy (what the task writes stays its own).
    template = tmp_path / "unpacked"
    (template / "pkg" / "data").mkdir(parents=True)
    (template / "main.py").write_text("print('hi')\n")
    (template / "run.sh").write_text("#!/bin/sh\n")
    (template / "run.sh").chmod(0o755)
    (template / "pkg" / "data" / "big.bin").write_bytes(os.urandom(3 << 20))
    (template / "pkg" / "empty.txt").write_bytes(b"")
    os.utime(template / "main.py", (1_600_000_000, 1_600_000_001))
    os.utime(template / "pkg", (1_600_000_000, 1_600_000_002))

    prepare(tmp_path / "task", template, {"i": 3})
    shutil.copytree(template, tmp_path / "by_copytree")

    def seen(root):
        return {p.relative_to(root).as_posix(): (stat.S_IMODE(p.stat().st_mode), p.stat().st_mtime_ns,
                                                 p.read_bytes() if p.is_file() else None)
                for p in root.rglob("*")}

    work = tmp_path / "task" / "work"
    assert {k: v for k, v in seen(work).items() if k != "params.json"} == seen(tmp_path / "by_copytree")
    assert json.loads((work / "params.json").read_text()) == {"i": 3}
    (work / "main.py").write_text("changed")
    assert (template / "main.py").read_text() == "print('hi')\n"

    (work / "left.txt").write_text("from a start that crashed half-way")
    prepare(tmp_path / "task", template, {"i": 4})  # the same task started again: a fresh copy
    assert not (work / "left.txt").exists() and (work / "main.py").read_text() == "print('hi')\n"


def test_a_file_system_that_copies_nothing_in_kernel_still_gets_whole_copies(tmp_path, monkeypatch):
    """copy_file_range may copy part of a file and then return 0 (FUSE, some NFS
    mounts): the rest is copied by reads and writes, never a silently cut file.
    No such file system exists here: the call is wrapped to behave like one."""
    from trayapp.run import attempt

    template = tmp_path / "template"
    template.mkdir()
    data = os.urandom(3 << 20)
    (template / "weights.bin").write_bytes(data)
    real = os.copy_file_range
    calls = []

    def first_mib_then_nothing(src, dst, count, *args):
        calls.append(count)
        return real(src, dst, min(count, 1 << 20)) if len(calls) == 1 else 0

    monkeypatch.setattr(attempt.os, "copy_file_range", first_mib_then_nothing)
    attempt.copy_job_folder(template, tmp_path / "copy")
    assert len(calls) == 2 and (tmp_path / "copy" / "weights.bin").read_bytes() == data


def test_a_link_in_a_job_folder_template_is_refused_not_followed(tmp_path):
    """The template is an archive this slave unpacked (no links get in): if one were
    there, copying it would read the lender's file with the lender's rights."""
    from trayapp.run import attempt

    secret = tmp_path / "lenders-secret"
    secret.write_text("private\n")
    template = tmp_path / "template"
    template.mkdir()
    (template / "main.py").write_text("print(1)\n")
    (template / "leak").symlink_to(secret)
    with pytest.raises(OSError, match="neither a file nor a folder"):
        attempt.copy_job_folder(template, tmp_path / "copy")
    assert not (tmp_path / "copy" / "leak").exists()
