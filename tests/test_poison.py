"""Tasks that can never succeed: refused at submit where that can be known, and
otherwise failed with the reason after two host-side failures, never re-run
forever while other work waits behind them.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import ECHO_TASK, BackgroundDispatcher, cli, make_job, wait_until

from trayapp.config import Config
from trayapp.job.submit import submit_job
from trayapp.status import JobStatus

from trayapp.taskparams import PICKLE_KEY

# Over Linux's limit on one argument (MAX_ARG_STRLEN, 128 KiB), under the line limit.
POISON_SET = {"blob": "x" * 200_000}
# A pickled set travels in the start message: over the protocol's 1 MiB line.
POISON_PICKLE = {PICKLE_KEY: "A" * 1_200_000}


def test_a_parameter_set_too_big_for_the_command_line_is_refused_at_submit(home, tmp_path):
    folder, params = make_job(tmp_path / "big", ECHO_TASK, params=[{"a": 1}, POISON_SET])
    result = cli("submit", str(folder), "--params", str(params), "--no-start")
    assert result.returncode == 3, result.stderr
    assert "parameter set #2" in result.stderr and "kB" in result.stderr
    assert "file in the job folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(cli("status", "--json").stdout) in ([], {"jobs": []})


@pytest.mark.slow
@pytest.mark.parametrize("poison, reason", [(POISON_SET, "Argument list too long"),
                                            (POISON_PICKLE, "cannot be sent to a host")])
def test_a_poison_task_fails_within_a_minute_while_other_work_completes(app, tmp_path, poison, reason):
    """A set already queued (an older version let it in) that no host can start:
    it fails with the reason, the job behind it runs, no host is left unusable."""
    home = app.home
    config = Config(slots=2, poll_interval_s=0.05)
    poison_folder, _ = make_job(tmp_path / "poison", ECHO_TASK)
    good_folder, good_params = make_job(tmp_path / "good", ECHO_TASK, params=[{"n": i} for i in range(4)])
    poison_job = submit_job(app.store, home, config, poison_folder, param_sets=[{"n": 0}]).job
    with app.store._write() as db:  # what a queue filled before the submit check holds
        db.execute("UPDATE tasks SET params=? WHERE job_seq=?", (json.dumps(poison), poison_job.seq))
    good = submit_job(app.store, home, config, good_folder, params=good_params).job
    began = time.monotonic()
    with BackgroundDispatcher(home, config):
        wait_until(lambda: app.store.job(poison_job.id).status is JobStatus.FAILED
                   and app.store.job(good.id).status is JobStatus.DONE, timeout=60, what="both jobs settled")
    assert time.monotonic() - began < 60
    task = app.store.tasks(poison_job.seq)[0]
    assert reason in (task.message or ""), task.message
    assert len(app.store.attempts(poison_job.seq)) <= 2
    assert not list(home.data_dir.rglob("*.partial"))


PACK_UNDER_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
from pathlib import Path
from trayapp.slave.spool import Spool, SpoolTask

spool = Spool(Path(sys.argv[1])).ensure()
task = SpoolTask(token="ab" * 8, master="m", job="j", idx=0, params={}, main="main.py", archive_sha="0" * 64)
results = spool.task_dir(task.token) / "work" / "results"
results.mkdir(parents=True)
(results / "big.bin").write_bytes(b"x" * 1_000_000)
# Like a full disk: writes past 64 kB fail (EFBIG) instead of killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    spool.pack_results(task, 10 << 20)
except OSError as exc:
    print("failed:", exc.strerror)
"""


def test_results_that_cannot_be_packed_leave_no_partial_file(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PACK_UNDER_A_FILE_SIZE_LIMIT, str(tmp_path / "spool")],
                          capture_output=True, text=True, timeout=60)
    assert "failed: File too large" in done.stdout, done.stdout + done.stderr
    assert not list((tmp_path / "spool").rglob("*.partial"))
