"""The queue: claiming, settling, and several processes at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trayapp.errors import UserError
from trayapp.status import AttemptOutcome, JobStatus, TaskStatus
from trayapp.master.store import Store


def add(store: Store, tmp_path: Path, n: int, name: str = "job", retries: int = 0):
    return store.add_job(name=name, folder=str(tmp_path), main="main.py", archive_sha="0" * 64,
                         archive_path=str(tmp_path / "a.tar"), params_file=None,
                         param_sets=[{"i": i} for i in range(n)], results_root=tmp_path / "results",
                         retries=retries)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "queue.sqlite3")
    yield s
    s.close()


def test_queue_uses_wal(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_claim_takes_oldest_job_first_in_task_order(store, tmp_path):
    first, second = add(store, tmp_path, 3, "first"), add(store, tmp_path, 3, "second")
    claims = store.claim("local", 4)
    assert [(c.job_id, c.idx) for c in claims] == [(first.id, 0), (first.id, 1), (first.id, 2), (second.id, 0)]
    assert claims[0].params == {"i": 0}
    assert store.job(first.id).status is JobStatus.RUNNING
    assert store.claim("local", 0) == []


def test_preemption_and_host_loss_do_not_use_up_retries(store, tmp_path):
    job = add(store, tmp_path, 1, retries=0)
    for outcome in (AttemptOutcome.PREEMPTED, AttemptOutcome.HOST_LOST, AttemptOutcome.PREEMPTED):
        [claim] = store.claim("local", 1)
        assert store.finish_attempt(claim.attempt_id, outcome) is TaskStatus.QUEUED
    [claim] = store.claim("local", 1)
    assert store.finish_attempt(claim.attempt_id, AttemptOutcome.EXITED, exit_code=1) is TaskStatus.FAILED
    task = store.tasks(job.seq)[0]
    assert task.failures == 1 and task.exit_code == 1
    assert store.job(job.id).status is JobStatus.FAILED
    # History is kept: every attempt is a row that says how it ended.
    assert [a["outcome"] for a in store.attempts(job.seq)] == ["preempted", "host_lost", "preempted", "exited"]


def test_cancel_then_late_finish_does_not_resurrect_the_task(store, tmp_path):
    job = add(store, tmp_path, 2)
    claims = store.claim("local", 1)
    assert store.cancel_job(job.id) == 2
    assert not store.attempt_is_wanted(claims[0].attempt_id)
    assert store.mark_running(claims[0].attempt_id, 123) is False
    assert store.finish_attempt(claims[0].attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0) is None
    assert {t.status for t in store.tasks(job.seq)} == {TaskStatus.CANCELLED}
    assert store.job(job.id).status is JobStatus.CANCELLED
    assert store.claim("local", 5) == []


def test_retry_requeues_failed_and_cancelled_only(store, tmp_path):
    job = add(store, tmp_path, 3)
    a, b, c = store.claim("local", 3)
    store.mark_running(a.attempt_id, 1)
    store.finish_attempt(a.attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0)
    store.finish_attempt(b.attempt_id, AttemptOutcome.EXITED, exit_code=2)
    store.cancel_job(job.id)
    assert [t.status for t in store.tasks(job.seq)] == [TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED]
    assert store.retry_job(job.id) == 2
    assert [t.status for t in store.tasks(job.seq)] == [TaskStatus.DONE, TaskStatus.QUEUED, TaskStatus.QUEUED]
    assert store.tasks(job.seq)[1].failures == 0
    assert store.job(job.id).status is JobStatus.RUNNING


def test_job_lookup_by_id_prefix_and_name(store, tmp_path):
    job = add(store, tmp_path, 1, "sweep")
    newer = add(store, tmp_path, 1, "sweep")
    assert store.job(job.id).seq == job.seq
    prefix = next(job.id[:n] for n in range(1, 9) if not newer.id.startswith(job.id[:n]))
    assert store.job(prefix).seq == job.seq
    assert store.job("sweep").seq == newer.seq  # a name means its newest job
    with pytest.raises(UserError, match="no job 'nope'") as info:
        store.job("nope")
    assert "sparecycles status" in info.value.fix
    with pytest.raises(UserError, match="no job"):
        store.job("%")  # LIKE wildcards are taken literally


def test_results_dir_is_named_after_job_and_id(store, tmp_path):
    job = add(store, tmp_path, 1, "my sweep")
    assert Path(job.results_dir) == tmp_path / "results" / f"my sweep-{job.id}"


@pytest.mark.slow
def test_many_processes_claim_and_submit_at_once_without_losing_or_doubling(tmp_path):
    db = tmp_path / "queue.sqlite3"
    seed = Store(db)
    add(seed, tmp_path, 300, "big")
    seed.close()
    claimer = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from trayapp.master.store import Store
        from trayapp.status import AttemptOutcome
        s = Store({str(db)!r})
        got = []
        idle = 0
        while idle < 200:  # 2 s without work: the submitters are done
            claims = s.claim(sys.argv[1], 3)
            if not claims:
                idle += 1; time.sleep(0.01); continue
            idle = 0
            for c in claims:
                s.mark_running(c.attempt_id, 1)
                s.finish_attempt(c.attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0)
                got.append([c.job_id, c.idx])
        print(json.dumps(got))
    """)
    submitter = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pathlib import Path
        from trayapp.master.store import Store
        s = Store({str(db)!r})
        for k in range(5):
            s.add_job(name=f"late{{sys.argv[1]}}-{{k}}", folder="f", main="main.py", archive_sha="0"*64,
                      archive_path="a", params_file=None, param_sets=[{{"k": k}}] * 10,
                      results_root=Path({str(tmp_path)!r}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", claimer, f"host{n}"], stdout=subprocess.PIPE, text=True)
             for n in range(4)]
    subs = [subprocess.Popen([sys.executable, "-c", submitter, str(n)]) for n in range(3)]
    for p in subs:
        assert p.wait(120) == 0
    claimed = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        claimed += [tuple(x) for x in json.loads(out)]

    check = Store(db)
    assert check._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    jobs = check.jobs()
    assert len(jobs) == 16
    total = sum(j.total for j in jobs)
    assert total == 300 + 3 * 5 * 10
    assert len(claimed) == len(set(claimed)), "a task was claimed twice"
    assert len(claimed) == total, "a task was never claimed"
    assert all(j.status is JobStatus.DONE for j in jobs)


def test_every_change_leaves_an_event_in_order(store, tmp_path):
    job = add(store, tmp_path, 2, retries=1)
    first, second = store.claim("lab-07", 2)
    store.mark_running(first.attempt_id, 1)
    store.note_running_task(first.attempt_id, "results wait: disk full")
    store.finish_attempt(first.attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0)
    store.finish_attempt(second.attempt_id, AttemptOutcome.EXITED, exit_code=1, message="exit code 1")
    (again,) = store.claim("local", 1)
    # Its "started" was lost (a master killed in between): the report that it succeeded still counts.
    assert store.finish_attempt(again.attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0) is TaskStatus.DONE
    events = [(r["kind"], r["job_seq"], r["idx"], r["detail"]) for r in
              store._db.execute("SELECT kind, job_seq, idx, detail FROM events ORDER BY id")]
    seq = job.seq
    assert events == [
        ("submitted", seq, None, f"2 tasks from {tmp_path}"),
        ("job_running", seq, None, None),
        ("note", seq, 0, "results wait: disk full"),
        ("succeeded", seq, 0, None),
        ("exited", seq, 1, "exit code 1"),  # one retry left: queued again
        ("succeeded", seq, 1, None),
        ("job_done", seq, None, None),
    ]
    # The note was the task's message only while it ran.
    assert [t.message for t in store.tasks(seq)] == [None, None]
