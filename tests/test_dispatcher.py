"""The local pool end to end: real task processes, real queue, real results."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

import psutil

from conftest import ECHO_TASK, BackgroundDispatcher, cli, make_job, run_dispatcher, wait_until
from support.tasks import all_ended, task_processes

from trayapp.config import Config
from trayapp.job.submit import submit_job
from trayapp.status import JobStatus, TaskStatus


def submit(app, folder, params_file=None, **kwargs):
    return submit_job(app.store, app.home, app.config, folder, params=params_file, **kwargs).job


def test_every_parameter_set_gets_its_results_folder(app, tmp_path):
    params = [{"rate": r, "label": f"r{r}"} for r in range(5)]
    folder, params_file = make_job(tmp_path / "sweep", ECHO_TASK, params=params,
                                   extra_files={"lib/helper.py": "X = 1\n"})
    job = submit(app, folder, params_file)
    stats = run_dispatcher(app)

    job = app.store.job(job.id)
    assert job.status is JobStatus.DONE
    assert stats.succeeded == 5
    for i, p in enumerate(params):
        out = Path(job.results_dir) / str(i)
        data = json.loads((out / "out.json").read_text())
        assert data["params"] == p and data["file_params"] == p
        assert data["task"] == str(i) and data["job"] == job.id
        assert (out / "stdout.txt").read_text() == f"task {i} ok\n"
        assert json.loads((out / "params.json").read_text()) == p
    assert Path(job.results_dir).name == f"sweep-{job.id}"
    # Task folders and results archives are removed once acknowledged.
    spool = app.home.data_dir / "local-spool"
    assert list((spool / "tasks").iterdir()) == [] and not [p for p in (spool / "results").rglob("*") if p.is_file()]


def test_no_parameter_file_means_one_task_with_empty_parameters(app, tmp_path):
    folder, _ = make_job(tmp_path / "single", ECHO_TASK)
    job = submit(app, folder)
    run_dispatcher(app)
    out = json.loads((Path(app.store.job(job.id).results_dir) / "0" / "out.json").read_text())
    assert out["params"] == {}


def test_each_task_gets_a_fresh_copy_of_the_folder(app, tmp_path):
    # Every task appends to the same file in its folder: with a shared folder
    # the later tasks would see the earlier tasks' lines.
    body = """
    import os
    with open("shared.txt", "a") as fh:
        fh.write("x\\n")
    os.makedirs("results", exist_ok=True)
    open("results/lines.txt", "w").write(open("shared.txt").read())
    """
    folder, params_file = make_job(tmp_path / "fresh", body, params=[{}] * 4, extra_files={"shared.txt": ""})
    job = submit(app, folder, params_file)
    run_dispatcher(app)
    for i in range(4):
        assert (Path(app.store.job(job.id).results_dir) / str(i) / "lines.txt").read_text() == "x\n"
    assert (folder / "shared.txt").read_text() == ""  # the user's folder is never touched


def test_task_that_crashes_is_failed_with_exit_code_and_stderr_tail(app, tmp_path):
    body = """
    import json, sys
    p = json.loads(sys.argv[1])
    if p["n"] == 1:
        print("computing...")
        raise ValueError("negative conductance in layer 3")
    import os; os.makedirs("results", exist_ok=True)
    """
    folder, params_file = make_job(tmp_path / "crashy", body, params=[{"n": 0}, {"n": 1}, {"n": 2}])
    job = submit(app, folder, params_file)
    run_dispatcher(app)

    job = app.store.job(job.id)
    assert job.status is JobStatus.FAILED
    tasks = {t.idx: t for t in app.store.tasks(job.seq)}
    assert [tasks[i].status for i in range(3)] == [TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.DONE]
    assert tasks[1].exit_code == 1
    assert "exit code 1" in tasks[1].message
    assert "ValueError: negative conductance in layer 3" in tasks[1].message
    # The failed task's logs come home too, so the user can read all of them.
    assert "computing..." in (Path(job.results_dir) / "1" / "stdout.txt").read_text()
    assert "Traceback" in (Path(job.results_dir) / "1" / "stderr.txt").read_text()


def test_failing_task_is_retried_up_to_the_limit(app, tmp_path):
    # Fails on its first two runs, succeeds on the third. Each attempt gets a
    # fresh copy of the job folder, so it counts its runs in its slot's cache,
    # the one folder of its own that outlives an attempt (one slot: always the same).
    app.config = Config(slots=1, poll_interval_s=0.05)
    body = """
    import os, sys
    counter = os.path.join(os.environ["CYTHON_CACHE_DIR"], "runs.txt")
    with open(counter, "a") as fh:
        fh.write("run\\n")
    runs = open(counter).read().count("run")
    os.makedirs("results", exist_ok=True)
    open("results/runs.txt", "w").write(str(runs))
    if runs < 3:
        sys.exit(7)
    """
    folder, _ = make_job(tmp_path / "flaky", body)
    job = submit(app, folder, retries=2)
    run_dispatcher(app)
    task = app.store.tasks(app.store.job(job.id).seq)[0]
    assert task.status is TaskStatus.DONE
    assert task.failures == 2
    assert [a["outcome"] for a in app.store.attempts(job.seq)] == ["exited", "exited", "succeeded"]
    assert (Path(app.store.job(job.id).results_dir) / "0" / "runs.txt").read_text() == "3"


def test_task_without_results_folder_is_done_with_empty_results(app, tmp_path):
    folder, _ = make_job(tmp_path / "quiet", "print('nothing to keep')\n")
    job = submit(app, folder)
    run_dispatcher(app)
    job = app.store.job(job.id)
    assert job.status is JobStatus.DONE
    out = Path(job.results_dir) / "0"
    assert sorted(p.name for p in out.iterdir()) == [".sparecycles.json", "params.json", "stderr.txt",
                                                     "stdout.txt"]


@pytest.mark.slow
def test_task_that_never_ends_is_stopped_at_its_time_limit(app, tmp_path):
    body = """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    import os
    os.makedirs("results", exist_ok=True)
    open("results/child-started", "w").close()
    time.sleep(600)
    """
    folder, params_file = make_job(tmp_path / "forever", body, params=[{}, {}])
    job = submit(app, folder, params_file, time_limit_s=1.5)
    started = time.monotonic()
    run_dispatcher(app)
    assert time.monotonic() - started < 20
    job = app.store.job(job.id)
    tasks = app.store.tasks(job.seq)
    assert [t.status for t in tasks] == [TaskStatus.FAILED, TaskStatus.FAILED]
    assert all(t.outcome == "timed_out" and "time limit of 1.5 s" in t.message for t in tasks)
    assert all((Path(job.results_dir) / str(i) / "child-started").exists() for i in range(2))
    # The children carry the job's marker in their environment: none is left.
    assert task_processes(job.id) == {}


def test_task_runs_at_low_priority_in_its_own_session(app, tmp_path):
    body = """
    import json, os, psutil
    os.makedirs("results", exist_ok=True)
    json.dump({"nice": os.nice(0), "sid": os.getsid(0), "pid": os.getpid(), "ppid": os.getppid(),
               "ionice": int(psutil.Process().ionice().ioclass),
               "threads": os.environ.get("OMP_NUM_THREADS")}, open("results/me.json", "w"))
    """
    folder, _ = make_job(tmp_path / "prio", body)
    job = submit(app, folder)
    run_dispatcher(app)
    me = json.loads((Path(app.store.job(job.id).results_dir) / "0" / "me.json").read_text())
    assert me["nice"] >= os.nice(0) + 10
    assert me["ionice"] == int(psutil.IOPRIO_CLASS_IDLE), "its disk use waits for the PC's user"
    assert me["sid"] != os.getsid(0)
    assert me["threads"] == "1"


def test_unicode_and_spaces_in_paths(app, tmp_path):
    folder, params_file = make_job(tmp_path / "Größe mit Leerzeichen ✓", ECHO_TASK,
                                   params=[{"name": "naïve ünïcode"}],
                                   extra_files={"daten/übung 1.txt": "ok"})
    app.config = Config(slots=2, poll_interval_s=0.05, results_dir=str(tmp_path / "Ergebnisse ü"))
    job = submit(app, folder, params_file)
    run_dispatcher(app)
    job = app.store.job(job.id)
    assert job.status is JobStatus.DONE
    out = Path(job.results_dir) / "0" / "out.json"
    assert json.loads(out.read_text())["params"] == {"name": "naïve ünïcode"}
    assert out.is_relative_to(tmp_path / "Ergebnisse ü")


def test_cancel_kills_the_whole_process_tree(app, tmp_path):
    # The task starts a child, a grandchild, and a process that calls setsid()
    # to leave the task's process group; cancelling must end all of them. The
    # test finds them from outside (their pids inside a sandbox mean nothing here).
    body = """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
        "time.sleep(600)"])
    escapee = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)"])
    time.sleep(600)
    """
    folder, params_file = make_job(tmp_path / "tree", body, params=[{}, {}])
    job = submit(app, folder, params_file)
    with BackgroundDispatcher(app.home, app.config) as bg:
        def trees():
            sleepers = {idx: [p for p in procs if "import time; time.sleep(600)" in " ".join(p.cmdline())
                              or "os.setsid()" in " ".join(p.cmdline())]
                        for idx, procs in task_processes(job.id).items()}
            # each task: its child's inline script, the grandchild, the escapee
            return sleepers if len(sleepers) == 2 and all(len(s) >= 3 for s in sleepers.values()) else None

        wait_until(trees, what="both tasks to start their process trees")
        everything = [p for procs in task_processes(job.id).values() for p in procs]
        app.store.cancel_job(job.id)
        wait_until(lambda: not bg.dispatcher.drivers["local"].engine.running, what="the slave engine to drop the tasks")
        wait_until(lambda: all_ended(everything), timeout=5, what="every process of the cancelled tasks to die")
    job = app.store.job(job.id)
    assert job.status is JobStatus.CANCELLED
    assert {t.status for t in app.store.tasks(job.seq)} == {TaskStatus.CANCELLED}


@pytest.mark.slow
def test_slots_limit_how_many_tasks_run_at_once(app, tmp_path):
    # Each task records when it ran; with 2 slots no three intervals overlap.
    body = """
    import json, os, time
    start = time.time(); time.sleep(0.3)
    os.makedirs("results", exist_ok=True)
    json.dump([start, time.time()], open("results/span.json", "w"))
    """
    folder, params_file = make_job(tmp_path / "slots", body, params=[{}] * 6)
    job = submit(app, folder, params_file)
    run_dispatcher(app)
    spans = [json.loads((Path(app.store.job(job.id).results_dir) / str(i) / "span.json").read_text())
             for i in range(6)]
    for start, _ in spans:
        overlapping = sum(1 for s, e in spans if s <= start < e)
        assert overlapping <= 2
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) == 2


@pytest.mark.slow
def test_slots_default_to_one_per_core(app, tmp_path):
    cores = len(os.sched_getaffinity(0))
    app.config = Config(poll_interval_s=0.05)  # slots = 0: the default
    assert app.config.slots == 0 and app.config.effective_slots == cores
    body = """
    import json, os, time
    start = time.time(); time.sleep(0.5)
    os.makedirs("results", exist_ok=True)
    json.dump([start, time.time()], open("results/span.json", "w"))
    """
    n = 2 * cores + 1
    folder, params_file = make_job(tmp_path / "cores", body, params=[{}] * n)
    job = submit(app, folder, params_file)
    run_dispatcher(app)
    spans = [json.loads((Path(app.store.job(job.id).results_dir) / str(i) / "span.json").read_text())
             for i in range(n)]
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) == cores


def test_retry_verb_reruns_failed_tasks_and_keeps_old_output(app, tmp_path, monkeypatch):
    # The fix reaches the task through its environment (SPARECYCLES_* variables
    # pass the sandbox), as a fixed input file would on the user's side.
    body = """
    import os, sys
    fixed = os.environ.get("SPARECYCLES_TEST_FIXED") == "yes"
    os.makedirs("results", exist_ok=True)
    open("results/state.txt", "w").write("ok" if fixed else "broken")
    sys.exit(0 if fixed else 3)
    """
    folder, _ = make_job(tmp_path / "fixme", body)
    job = submit(app, folder)
    run_dispatcher(app)
    assert app.store.job(job.id).status is JobStatus.FAILED
    monkeypatch.setenv("SPARECYCLES_TEST_FIXED", "yes")
    assert app.store.retry_job(job.id) == 1
    run_dispatcher(app)
    job = app.store.job(job.id)
    assert job.status is JobStatus.DONE
    results = Path(job.results_dir)
    assert (results / "0" / "state.txt").read_text() == "ok"
    assert (results / "0.previous" / "state.txt").read_text() == "broken"


@pytest.mark.slow
def test_results_folder_that_cannot_be_written_keeps_results_waiting_and_says_why(app, tmp_path):
    app.config = Config(slots=2, poll_interval_s=0.05, results_dir=str(tmp_path / "results"))
    folder, params_file = make_job(tmp_path / "blocked", ECHO_TASK, params=[{"i": i} for i in range(6)])
    job = submit(app, folder, params_file)
    results = Path(job.results_dir)
    results.parent.mkdir(parents=True, exist_ok=True)
    if results.exists():
        results.rmdir()
    results.write_text("a file where the job's results folder should be\n")  # root ignores permissions

    def waiting():
        return [t for t in app.store.tasks(job.seq) if t.message and "cannot write the results" in t.message]

    with BackgroundDispatcher(app.home, app.config):
        blocked = wait_until(waiting, what="a task to say why its results wait")
        message = blocked[0].message
        assert f"cannot write the results of job {job.id} to {results}: " in message, message
        assert "Free disk space, or make sure that folder can be created" in message, message
        assert "the results wait on local and are collected as soon as it works" in message, message
        time.sleep(1.0)  # a retry or two go by
        tasks = app.store.tasks(job.seq)
        # Nothing is lost or failed, and no more of the job's tasks start while its results cannot
        # be written (a slot freed before the first refusal may have taken one: 2 slots, 2 more).
        assert {t.status for t in tasks} <= {TaskStatus.RUNNING, TaskStatus.DISPATCHED, TaskStatus.QUEUED}, tasks
        assert sum(t.status is TaskStatus.QUEUED for t in tasks) >= 2, tasks
        status = cli("status", job.id).stdout
        # One such task shows its reason on its line; several are one group of the same error.
        assert re.search(r"running(: | with the same error \(tasks [0-9, -]+\): )cannot write the results of job",
                         status), status
        results.unlink()  # the user fixes it
        wait_until(lambda: app.store.job(job.id).status is JobStatus.DONE, timeout=60, what="the job to finish")

    for i in range(6):
        assert json.loads((results / str(i) / "out.json").read_text())["params"] == {"i": i}
    attempts = app.store.attempts(job.seq)
    assert sorted(a["idx"] for a in attempts) == list(range(6)), "each task ran exactly once"
    assert all(t.message is None for t in app.store.tasks(job.seq))


LOCK_RACE = """
import sys, time
from pathlib import Path
from trayapp.locks import InstanceLock
lock, role, fails, n = InstanceLock(Path(sys.argv[1])), sys.argv[2], 0, 0
end = time.monotonic() + 2
while time.monotonic() < end:
    n += 1
    if role == "ask":
        lock.holder()
    elif lock.acquire():
        lock.release()
    else:
        fails += 1
print(n, fails)
"""


@pytest.mark.slow
def test_asking_who_runs_the_queue_never_stops_a_dispatcher_from_starting(tmp_path):
    # `wait`, `status` and the tray ask all the time; a dispatcher starting at
    # that very moment must get the lock (before, asking took it for an instant).
    import subprocess
    import sys

    lock = tmp_path / "dispatcher.lock"
    asker = subprocess.Popen([sys.executable, "-c", LOCK_RACE, str(lock), "ask"], stdout=subprocess.PIPE, text=True)
    taker = subprocess.Popen([sys.executable, "-c", LOCK_RACE, str(lock), "take"], stdout=subprocess.PIPE, text=True)
    asked, _ = map(int, asker.communicate(30)[0].split())
    took, failed = map(int, taker.communicate(30)[0].split())
    assert asked > 100 and took > 100, (asked, took)
    assert failed == 0, f"{failed} of {took} starts found the lock taken by a mere question"


def test_the_lock_holder_is_read_from_the_kernel_lock_table(tmp_path):
    from trayapp.locks import InstanceLock, _flock_holder

    path = tmp_path / "dispatcher.lock"
    lock = InstanceLock(path)
    assert lock.holder() is None
    assert lock.acquire()
    try:
        assert lock.holder() == os.getpid()
        st = os.stat(path)
        # An overlay file system shows the layer's device: the pid the holder wrote must match then.
        table = tmp_path / "locks"
        table.write_text(f"1: FLOCK  ADVISORY  WRITE {os.getpid()} 00:99:{st.st_ino} 0 EOF\\n")
        assert _flock_holder(path, str(table)) is True
        table.write_text(f"1: FLOCK  ADVISORY  WRITE 1 00:99:{st.st_ino} 0 EOF\\n")
        assert _flock_holder(path, str(table)) is False
        assert _flock_holder(path, str(tmp_path / "no such table")) is None  # not Linux: probe by locking
    finally:
        lock.release()
    assert lock.holder() is None
