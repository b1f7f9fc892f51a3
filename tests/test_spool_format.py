"""The slave spool's task files name their format: old ones are upgraded as
they are read, unknown ones are refused loudly and left untouched."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import subprocess
import sys

import psutil

import pytest
from conftest import make_job
from support.peer import ProtocolPeer

from trayapp.cli.main import describe_slave_state
from trayapp.master.kinds.local import LocalSlave
from trayapp.run.posix import PosixRunner
from trayapp.slave import engine as engine_module
from trayapp.slave import spool as spool_module
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import TASK_FORMAT, Spool, SpoolTask
from trayapp.wire.archive import pack
from trayapp.wire.protocol import REQUIRED, TASK_REPORT

TOKEN = "0a1b2c3d4e5f6071"


def a_task(**changes) -> SpoolTask:
    fields = dict(token=TOKEN, master="a1b2c3d4e5f60718", job="9abf0938", idx=2, params={"rate": 30},
                  main="main.py", archive_sha="4" * 64, state="finished", pid=4242, created=1.5e9, started=1.5e9,
                  ended=1.5e9 + 3, outcome="succeeded", exit_code=0)
    return SpoolTask(**{**fields, **changes})


def save(spool: Spool, task: SpoolTask) -> None:
    spool.task_dir(task.token).mkdir(parents=True)  # made by the task's start, before its first save
    spool.save(task)


def write_task_file(spool: Spool, data: dict) -> None:
    folder = spool.task_dir(data["token"])
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps(data))


@contextlib.contextmanager
def serving(tmp_path, source: str, spool: Spool | None = None):
    """An engine on ``spool`` serving the master's own cores, and a master that said
    hello and uploaded a job whose main script is ``source``: (engine, master, archive sha)."""
    folder, _ = make_job(tmp_path / "job", source)
    packed = pack(folder, ["main.py"], tmp_path / "packed")
    engine = SlaveEngine(spool or Spool(tmp_path / "spool"), SlaveSettings(slots=1, python=sys.executable, nice=0),
                         slave_id="5" * 16, runner=PosixRunner())
    local = LocalSlave(engine).start()
    try:
        master = ProtocolPeer(engine)
        master.hello()
        master.upload(packed.path, packed.sha256)
        yield engine, master, packed.sha256
    finally:
        local.stop()


def test_a_task_file_names_its_format_and_reads_back_as_it_was_saved(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    task = a_task(results_path=str(spool.results / f"{TOKEN}.tar"), results_sha="5" * 64, results_size=10240)
    save(spool, task)
    on_disk = json.loads((spool.task_dir(TOKEN) / "task.json").read_text())
    assert on_disk["format"] == TASK_FORMAT
    assert on_disk["results_path"] == f"results/{TOKEN}.tar"  # relative: the spool may move
    assert spool.load_all() == [task] and spool.unreadable == {}


def test_a_moved_spool_still_finds_its_results(tmp_path):
    spool = Spool(tmp_path / "old place").ensure()
    save(spool, a_task(results_path=str(spool.results / TOKEN)))  # the local host's results folder
    (tmp_path / "old place").rename(tmp_path / "new place")
    (task,) = Spool(tmp_path / "new place").load_all()
    assert task.results_path == str(tmp_path / "new place" / "results" / TOKEN)


def test_an_unversioned_file_of_release_0_1_is_upgraded_as_it_is_read(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    old = {**dataclasses.asdict(a_task()), "results_path": f"/elsewhere/spool/results/{TOKEN}.tar", "extra": {}}
    write_task_file(spool, old)
    (task,) = spool.load_all()
    assert task.results_path == str(spool.results / f"{TOKEN}.tar")
    assert dataclasses.replace(task, results_path=None) == a_task()
    assert "format" not in json.loads((spool.task_dir(TOKEN) / "task.json").read_text()), "reading must not write"


@pytest.mark.parametrize("content, why", [
    (json.dumps({**dataclasses.asdict(a_task()), "format": TASK_FORMAT + 1}), "newer SpareCycles"),
    (json.dumps({**dataclasses.asdict(a_task()), "format": TASK_FORMAT, "priority": 3}), "unknown fields priority"),
    (json.dumps({"format": TASK_FORMAT, "token": TOKEN}), "incomplete"),
    ('{"token": "0a1b2c3d4e5f6071", "mas', "not valid JSON"),
])
def test_a_task_file_this_version_cannot_read_is_reported_and_left_untouched(tmp_path, caplog, content, why):
    spool = Spool(tmp_path / "spool").ensure()
    path = spool.task_dir(TOKEN) / "task.json"
    path.parent.mkdir()
    path.write_text(content)
    save(spool, a_task(token="1" * 16))  # a readable neighbour is still taken up
    engine = SlaveEngine(spool, SlaveSettings(slots=1, python=sys.executable), slave_id="5" * 16,
                         runner=PosixRunner())
    with caplog.at_level(logging.ERROR):
        engine.recover()
    assert list(engine.tasks) == ["1" * 16]
    assert why in spool.unreadable[path]
    assert str(path) in caplog.text and why in caplog.text
    state = engine.describe()
    assert why in state["unreadable_tasks"][str(path)]
    assert f"cannot take up the task in {path}: " in describe_slave_state(state)
    assert path.read_text() == content, "a file this version cannot read must stay as it was"
    engine.close()


def test_every_change_to_the_spool_record_is_a_new_task_format():
    # Changing SpoolTask changes what task.json means: bump TASK_FORMAT, append
    # the upgrade from the previous format, and update this list.
    assert [f.name for f in dataclasses.fields(SpoolTask)] == [
        "token", "master", "job", "idx", "params", "main", "archive_sha", "time_limit_s", "cores", "memory_mb",
        "slot", "state", "pid", "created", "started", "ended", "outcome", "exit_code", "message", "results_path",
        "results_sha", "results_size"]
    assert TASK_FORMAT == 3 and len(spool_module._UPGRADES) == TASK_FORMAT


def a_live_process(tmp_path):
    work = tmp_path / "live"
    work.mkdir(exist_ok=True)
    process = subprocess.Popen(["sleep", "30"], cwd=work, start_new_session=True)
    return process, psutil.Process(process.pid).create_time()


@pytest.mark.parametrize("format_", [2, 3])
def test_a_running_task_is_adopted_in_the_slot_it_held_whichever_format_kept_it(tmp_path, format_):
    # Format 2 kept the slot in a file beside task.json; format 3 in the record: a
    # slave upgraded with tasks running adopts them where they are (slot and cache).
    spool = Spool(tmp_path / "spool").ensure()
    process, created = a_live_process(tmp_path)
    try:
        record = {**dataclasses.asdict(a_task(state="running", pid=process.pid, created=created, outcome=None,
                                              exit_code=None, ended=None)), "format": format_}
        if format_ == 2:
            del record["slot"]
            write_task_file(spool, record)
            (spool.task_dir(TOKEN) / "slot").write_text("1")
        else:
            write_task_file(spool, {**record, "slot": 1})
        assert spool.load(spool.task_dir(TOKEN) / "task.json").slot == (None if format_ == 2 else 1)
        engine = SlaveEngine(spool, SlaveSettings(slots=2, python=sys.executable), slave_id="5" * 16,
                             runner=PosixRunner())
        engine.recover()
        assert [handle.launch.slot for handle in engine.running.handles()] == [1]
        assert engine.running.free_slot() == 0, "the adopted task holds slot 1; the next task gets slot 0"
        engine.close()
    finally:
        process.kill()
        process.wait()


def test_a_task_started_now_keeps_its_slot_in_its_record_and_no_slot_file(tmp_path):
    with serving(tmp_path, "import time; time.sleep(30)\n") as (engine, master, sha):
        master.send("start", token=TOKEN, job="j1", idx=0, params={}, main="main.py", archive_sha=sha)
        started = master.expect("started", token=TOKEN)
        record = engine.spool.load(engine.spool.task_dir(TOKEN) / "task.json")
        assert (record.slot, record.pid) == (0, started["pid"])
        assert record.created is not None and record.state == "running"
        assert not (engine.spool.task_dir(TOKEN) / "slot").exists()
        master.send("cancel", token=TOKEN)
        master.expect("finished", token=TOKEN)


def test_an_empty_task_file_is_a_start_that_never_completed_and_the_token_can_start(tmp_path):
    # The first save writes the record in place (no temporary file, no rename): a slave
    # killed between its create and its write leaves an empty file, and no process.
    spool = Spool(tmp_path / "spool").ensure()
    spool.task_dir(TOKEN).mkdir()
    (spool.task_dir(TOKEN) / "task.json").write_bytes(b"")
    assert spool.load_all() == [] and spool.unreadable == {}
    with serving(tmp_path, "open('results.txt', 'w').write('ok')\n", spool) as (engine, master, sha):
        master.send("start", token=TOKEN, job="j1", idx=0, params={}, main="main.py", archive_sha=sha)
        finished = master.expect("finished", token=TOKEN)
    assert finished["outcome"] == "succeeded"
    assert spool.load(spool.task_dir(TOKEN) / "task.json").state == "finished"


def test_a_first_save_never_overwrites_a_record_in_place(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    save(spool, a_task(state="running"))
    spool.save(a_task(state="running", pid=77), first=True)  # a record there: replaced whole, atomically
    (task,) = spool.load_all()
    assert task.pid == 77
    assert [p.name for p in spool.task_dir(TOKEN).iterdir()] == ["task.json"], "no temporary file left"


@dataclasses.dataclass
class GrownSpoolTask(SpoolTask):
    """What a later release might keep about a task for itself."""

    sandbox_dir: str = "/var/lib/sparecycles/sandbox"


def test_what_a_task_tells_its_master_is_the_protocols_list_not_the_spool_record():
    grown = GrownSpoolTask(**dataclasses.asdict(a_task()))
    assert grown.summary() == a_task().summary()
    assert list(grown.summary()) == list(TASK_REPORT)
    assert "params" not in TASK_REPORT  # the master knows them; a big sweep would bloat every report


def test_a_field_added_to_the_spool_record_does_not_change_the_finished_message(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "SpoolTask", GrownSpoolTask)
    with serving(tmp_path, "open('results.txt', 'w').write('ok')\n") as (engine, master, sha):
        master.send("start", token=TOKEN, job="j1", idx=0, params={}, main="main.py", archive_sha=sha)
        finished = master.expect("finished", token=TOKEN)
        master.send("sync")
        (held,) = master.expect("tasks")["tasks"]
    assert isinstance(engine.tasks[TOKEN], GrownSpoolTask), "the engine must have used the grown record"
    assert finished.keys() == {"v", "type", *TASK_REPORT, "results_inline"}
    assert finished["outcome"] == "succeeded" and set(REQUIRED["finished"]) <= finished.keys()
    assert held.keys() == set(TASK_REPORT)


def test_a_start_again_of_a_task_whose_file_cannot_be_read_leaves_the_file_alone(tmp_path):
    folder, _ = make_job(tmp_path / "job", "print('ran')\n")
    packed = pack(folder, ["main.py"], tmp_path / "packed")
    spool = Spool(tmp_path / "spool").ensure()
    newer = {**dataclasses.asdict(a_task(state="running", archive_sha=packed.sha256)), "format": TASK_FORMAT + 1}
    write_task_file(spool, newer)
    engine = SlaveEngine(spool, SlaveSettings(slots=1, python=sys.executable, nice=0), slave_id="5" * 16,
                         runner=PosixRunner())
    local = LocalSlave(engine).start()
    try:
        master = ProtocolPeer(engine)
        master.hello("a1b2c3d4e5f60718")
        master.upload(packed.path, packed.sha256)
        master.send("start", token=TOKEN, job="9abf0938", idx=2, params={}, main="main.py", archive_sha=packed.sha256)
        declined = master.expect("declined", token=TOKEN)
    finally:
        local.stop()
    assert "newer SpareCycles" in declined["reason"] and declined["retry"] is True
    assert json.loads((spool.task_dir(TOKEN) / "task.json").read_text()) == newer
    assert not (spool.task_dir(TOKEN) / "work").exists()


def test_changes_are_appended_to_the_record_and_read_back_merged(tmp_path):
    # One record, then a line per change: what a restarted engine reads is what the engine held.
    with serving(tmp_path, "open('results.txt', 'w').write('ok')\n") as (engine, master, sha):
        master.send("start", token=TOKEN, job="j1", idx=0, params={"rate": [1, 2]}, main="main.py",
                    archive_sha=sha)
        master.expect("finished", token=TOKEN)
        held = dataclasses.replace(engine.tasks[TOKEN])
    path = engine.spool.task_dir(TOKEN) / "task.json"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["format"] == TASK_FORMAT and lines[0]["state"] == "running"
    assert set(lines[1]) == {"pid", "created"} and lines[2]["state"] == "finished"
    assert Spool(engine.spool.root).load(path) == held


def test_a_change_cut_short_by_a_crash_is_left_out_and_a_damaged_record_is_reported(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    save(spool, a_task(state="running", outcome=None, exit_code=None, ended=None))
    path = spool.task_dir(TOKEN) / "task.json"
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"state":"fini')  # the PC lost power during the write
    (task,) = spool.load_all()
    assert task.state == "running" and spool.unreadable == {}
    path.write_bytes(whole + b'{"state":"fini\n{"pid":5}\n')  # not a crash: damage
    assert spool.load_all() == [] and "not valid JSON" in spool.unreadable[path]
    path.write_bytes(whole + b'{"format":1}\n')
    assert spool.load_all() == [] and "not a change to the record" in spool.unreadable[path]


def test_an_append_that_fails_half_way_is_followed_by_the_whole_record(tmp_path, monkeypatch):
    # A full disk may take half a line: the record is then rewritten whole (temporary
    # file, rename), never left with a damaged line in its middle.
    spool = Spool(tmp_path / "spool").ensure()
    spool.task_dir(TOKEN).mkdir()
    spool.save(a_task(state="running", pid=None, outcome=None, exit_code=None, ended=None), first=True)
    path = spool.task_dir(TOKEN) / "task.json"

    def half_then_full(target, data):
        with open(target, "ab") as fh:
            fh.write(b'{"pid":42,"crea')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module, "append_json_line", half_then_full)
    spool.save(a_task(state="running", pid=42, outcome=None, exit_code=None, ended=None))
    monkeypatch.undo()
    assert len(path.read_text().splitlines()) == 1
    spool.save(a_task(pid=42))  # and the next change is appended to the rewritten record
    assert len(path.read_text().splitlines()) == 2
    (task,) = Spool(spool.root).load_all()
    assert task == a_task(pid=42)


def test_a_first_record_larger_than_a_page_is_never_seen_half_written(tmp_path):
    """A process killed mid-write can leave a cut regular file when the write spans
    pages (measured: 9 of 120 kills while writing 900 KiB parameter sets): a large
    first record is written aside and linked in whole. Killed here, right after the
    bytes are written but before they are linked, the record is simply not there
    (a start that never completed), never a cut one the spool reports as damaged."""
    code = f"""
import os, sys
sys.path[:0] = {sys.path!r}
from pathlib import Path
from trayapp.slave import spool
real_link = os.link
def link_then_die(*a, **k):
    os.kill(os.getpid(), 9)
os.link = link_then_die
spool.write_new_json(Path(sys.argv[1]), {{"params": "x" * 900_000}})
"""
    path = tmp_path / "task.json"
    died = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60)
    assert died.returncode == -9
    assert not path.exists()  # only the aside copy was written (left in the task folder)
    spool_module.write_new_json(path, {"params": "y" * 900_000})
    assert json.loads(path.read_bytes()) == {"params": "y" * 900_000}
    with pytest.raises(FileExistsError):
        spool_module.write_new_json(path, {"params": "z" * 900_000})
    assert json.loads(path.read_bytes())["params"][0] == "y"
    small = tmp_path / "small.json"
    spool_module.write_new_json(small, {"params": {"rate": 3}})  # one page: written in place
    with pytest.raises(FileExistsError):
        spool_module.write_new_json(small, {"params": {"rate": 4}})
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["small.json", "task.json"]
