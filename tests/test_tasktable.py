"""The task view's queue queries, Qt-free: every task with its attempts, grouped
failures, retrying chosen tasks, and where a task's output is read from."""

from __future__ import annotations

import os

from conftest import ECHO_TASK, make_job
from trayapp.job.submit import submit_job
from trayapp.master.tasktable import failure_groups, param_names, read_tail, task_log, task_rows
from trayapp.status import AttemptOutcome


def _job(app, tmp_path, n=4):
    folder, params = make_job(tmp_path / "lif", ECHO_TASK, params=[{"rate": r, "g": 5} for r in range(n)])
    return submit_job(app.store, app.home, app.config, folder, params=params).job


def test_task_rows_carry_attempts_host_times_and_exit_codes(app, tmp_path):
    job = _job(app, tmp_path)
    first = app.store.claim("lab-07", 1)[0]
    app.store.mark_running(first.attempt_id, 11)
    app.store.finish_attempt(first.attempt_id, AttemptOutcome.PREEMPTED)  # back to the queue
    claims = app.store.claim("lab-08", 3)
    for claim in claims:
        app.store.mark_running(claim.attempt_id, 12)
    app.store.finish_attempt(claims[0].attempt_id, AttemptOutcome.EXITED, exit_code=3,
                             message="Traceback...\nValueError: rate 0 is too low")
    app.store.finish_attempt(claims[1].attempt_id, AttemptOutcome.EXITED, exit_code=3,
                             message="other text\nValueError: rate 0 is too low")
    rows = {r.idx: r for r in task_rows(app.store, job.seq)}
    assert param_names(list(rows.values())) == ["rate", "g"]
    assert rows[0].attempts == 2 and rows[0].host == "lab-08" and rows[0].status == "failed"
    assert rows[0].exit_code == 3 and rows[0].elapsed_s(10**10) is not None and rows[0].ended is not None
    assert rows[2].status == "running" and rows[2].ended is None and rows[2].token
    assert rows[3].attempts == 0 and rows[3].elapsed_s(0) is None
    # Identical failures (same exit code, same last line) are one group.
    assert failure_groups(list(rows.values())) == [("exit code 3: ValueError: rate 0 is too low", [0, 1])]


def test_retry_only_the_chosen_tasks(app, tmp_path):
    job = _job(app, tmp_path)
    for claim in app.store.claim("lab-07", 4):
        app.store.mark_running(claim.attempt_id, 1)
        app.store.finish_attempt(claim.attempt_id, AttemptOutcome.EXITED, exit_code=1)
    assert app.store.retry_job(job.id, [1, 3, 99]) == 2
    assert [t.status.value for t in app.store.tasks(job.seq)] == ["failed", "queued", "failed", "queued"]


def test_a_running_local_task_s_output_is_read_from_the_spool_and_links_are_not_followed(app, tmp_path):
    job = _job(app, tmp_path, 2)
    claim = app.store.claim("local", 1)[0]
    app.store.mark_running(claim.attempt_id, 1)
    live = app.home.local_spool_dir / "tasks" / claim.token
    live.mkdir(parents=True)
    (live / "stdout.txt").write_text("step 1\nstep 2\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("the lender's secret")
    os.symlink(secret, live / "stderr.txt")  # a task that swapped its log for a link
    row = next(r for r in task_rows(app.store, job.seq) if r.idx == claim.idx)
    log = task_log(app.home, job, row)
    assert log.stdout == "step 1\nstep 2\n" and "running on this PC" in log.where
    assert log.stderr == "" and read_tail(live / "stderr.txt") == ""
    other = next(r for r in task_rows(app.store, job.seq) if r.idx != claim.idx)
    assert task_log(app.home, job, other).where.startswith("queued")
