"""Today's code opens what SpareCycles 0.1.0 left on disk, with nothing lost.

The files under ``fixtures/release-0.1.0`` were written by that release's own
code (``fixtures/make_release_fixtures.py`` says how); ``expected.json`` holds
what it wrote. Each test works on a copy.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import psutil
import pytest
from conftest import wait_until
from support.peer import ProtocolPeer
from support.queuefiles import assert_rows_kept, jobs_read_back, rows, user_version

from trayapp.master.kinds import KINDS
from trayapp.master.kinds.local import LocalSlave
from trayapp.master.kinds.ssh import SSHKind
from trayapp.master.schema import SCHEMA_VERSION
from trayapp.master.store import Store
from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import TASK_FORMAT, Spool
from trayapp.status import AttemptOutcome, TaskStatus
from trayapp.wire.archive import sha256_of

pytestmark = pytest.mark.slow

RELEASE = Path(__file__).parent / "fixtures" / "release-0.1.0"
EXPECTED = json.loads((RELEASE / "expected.json").read_text())
SWEEP = EXPECTED["sweep"]
DROPPED_COLUMNS = {"attempts": {"run_dir", "pid_created"}}  # never read since 0.1 (migration 2)


@pytest.fixture
def release(tmp_path) -> Path:
    copy = tmp_path / "release-0.1.0"
    shutil.copytree(RELEASE, copy, symlinks=True)
    return copy


# ----- the master's queue ------------------------------------------------------------


def test_the_queue_keeps_every_row_and_reaches_the_newest_version(release):
    path = release / "master" / "queue.sqlite3"
    assert user_version(path) == 0
    Store(path).close()
    assert user_version(path) == SCHEMA_VERSION
    assert_rows_kept(EXPECTED["queue"], path, DROPPED_COLUMNS)
    backup = path.with_name("queue.sqlite3.v0.bak")
    assert user_version(backup) == 0
    assert {t: rows(backup, t) for t in EXPECTED["queue"]} == EXPECTED["queue"], "the backup is the file as it was"


def test_the_upgraded_queue_reads_through_todays_store(release):
    store = Store(release / "master" / "queue.sqlite3")
    jobs = jobs_read_back(store, EXPECTED)
    failed = jobs[EXPECTED["jobs"]["failed"]]
    (bad,) = store.tasks(failed.seq)
    assert "tau must be positive" in bad.message and len(store.attempts(failed.seq)) == 2

    assert {h.name: h.kind for h in store.hosts()} == {"local": "local", "lab-pc": "ssh", "old-laptop": "ssh"}
    lab = store.host("lab-pc")
    login = SSHKind.login(lab)
    assert (login.address, login.port, login.user, login.key_path, login.agent_command, lab.slots, lab.state) == (
        "192.0.2.10", 2222, "alice", "~/.ssh/id_ed25519", "sparecycles agent", 3, "ready")
    assert KINDS.get("ssh").where(store.host("old-laptop")) == "192.0.2.11:22"  # no user was given: yours
    assert store.host("local").options == {}
    assert lab.info["name"] == "lab-pc" and lab.info["version"] == EXPECTED["release"]
    assert store.host("old-laptop").reason == "[Errno 113] No route to host"

    # What a restarted dispatcher reconciles: the attempts left open, per host.
    assert {a.token for a in store.open_attempts("lab-pc")} == {
        SWEEP["finished_on_slave"], SWEEP["killed_on_slave"], SWEEP["ended_on_slave"]}
    assert [a.token for a in store.open_attempts("local")] == [SWEEP["dispatched_local"]]
    # ...and the queue goes on: the two queued tasks of the sweep are claimed next.
    sweep = jobs[EXPECTED["jobs"]["running"]]
    claims = store.claim("lab-pc", 5)
    assert [(c.job_id, c.idx) for c in claims] == [(sweep.id, 4), (sweep.id, 5)]
    assert store.finish_attempt(claims[0].attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0) is TaskStatus.DONE
    store.close()


# ----- the slave's spool ---------------------------------------------------------------


def serve(spool_root: Path) -> tuple[SlaveEngine, LocalSlave, ProtocolPeer]:
    engine = SlaveEngine(Spool(spool_root), SlaveSettings(slots=2, python=sys.executable, nice=0),
                         slave_id=EXPECTED["slave"]["id"], runner=PosixRunner())
    local = LocalSlave(engine).start()
    master = ProtocolPeer(engine)
    master.hello(EXPECTED["master"]["id"], EXPECTED["master"]["name"])
    return engine, local, master


def held_tasks(master: ProtocolPeer) -> dict[str, dict]:
    master.send("sync")
    return {t["token"]: t for t in master.expect("tasks")["tasks"]}


def results_in(report: dict) -> dict:
    """The results archive a master would fetch, checked as it checks it."""
    archive = Path(report["results_path"])
    assert sha256_of(archive) == report["results_sha"]
    with tarfile.open(archive) as tar:
        return json.load(io.TextIOWrapper(tar.extractfile("results/rate.json")))


def test_a_slave_started_over_the_old_spool_reports_every_task(release):
    spool_root = release / "slave" / "spool"
    engine, local, master = serve(spool_root)
    try:
        held = held_tasks(master)
        assert engine.describe()["unreadable_tasks"] == {}
        assert held.keys() == set(EXPECTED["spool_tasks"])

        # Finished before the daemon stopped: the results wait, where this spool keeps them now.
        done = held[SWEEP["finished_on_slave"]]
        assert (done["state"], done["outcome"], done["exit_code"]) == ("finished", "succeeded", 0)
        assert Path(done["results_path"]).is_relative_to(spool_root)
        assert results_in(done) == {"rate_hz": 20}
        # Ended while no daemon ran: collected from its exit code file.
        ended = held[SWEEP["ended_on_slave"]]
        assert (ended["state"], ended["outcome"], ended["exit_code"]) == ("finished", "succeeded", 0)
        assert results_in(ended) == {"rate_hz": 60}
        # Killed meanwhile: reported lost (the master queues it again), not dropped.
        killed = held[SWEEP["killed_on_slave"]]
        assert (killed["state"], killed["outcome"]) == ("finished", AttemptOutcome.HOST_LOST.value)

        for archive_sha in EXPECTED["cached_archives"]:  # no re-upload of a job it has
            master.send("need_archive", sha=archive_sha)
            assert master.expect("archive", sha=archive_sha)["present"] is True
        for token in held:
            master.send("ack", token=token)
        wait_until(lambda: not any(Spool(spool_root).tasks.iterdir()), what="the acked tasks' folders to go")
    finally:
        local.stop()


def test_a_task_still_running_from_before_the_upgrade_is_adopted(release):
    spool_root = release / "slave" / "spool"
    token = SWEEP["killed_on_slave"]
    task_file = spool_root / "tasks" / token / "task.json"
    # As if the PC had not rebooted: the task's process runs on when the new
    # slave starts. The file keeps 0.1's format; only its pid is a live one.
    process = subprocess.Popen(["sh", "-c", "sleep 1.5; echo 0 >../exitcode"], cwd=task_file.parent / "work",
                               start_new_session=True)
    try:
        written = json.loads(task_file.read_text())
        assert "format" not in written
        task_file.write_text(json.dumps({**written, "pid": process.pid,
                                         "created": psutil.Process(process.pid).create_time()}))
        engine, local, master = serve(spool_root)
        try:
            assert held_tasks(master)[token]["state"] == "running"
            assert token in engine.running
            finished = master.expect("finished", token=token)
            assert (finished["outcome"], finished["exit_code"]) == ("succeeded", 0)
            assert json.loads(task_file.read_text())["format"] == TASK_FORMAT  # saved anew in today's format
        finally:
            local.stop()
    finally:
        process.kill()
        process.wait()
