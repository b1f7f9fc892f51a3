"""A SLURM cluster as a host: a real one-node cluster (tests/support/slurm.py), its
login node the loopback sshd, the master the real ``sparecycles`` command."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import cli, make_job, run_master_to_the_end, start_master, stop_process, wait_until
from support.slurm import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.pool, pytest.mark.slow]

# Writes its parameters and SLURM's view of it to results/, and a line to a
# log outside the job so that a task run twice shows.
SLURM_TASK = """
import json, os, sys, time
params = json.loads(sys.argv[1])
with open(params["runs_log"], "a") as log:
    log.write(os.environ["SPARECYCLES_TASK"] + "\\n")
time.sleep(params.get("sleep", 0))
os.makedirs("results", exist_ok=True)
with open("results/out.json", "w") as fh:
    json.dump({"params": params, "task": os.environ["SPARECYCLES_TASK"], "job": os.environ["SPARECYCLES_JOB"],
               "file_params": json.load(open("params.json")), "array": os.environ.get("SLURM_ARRAY_JOB_ID"),
               "threads": os.environ.get("OMP_NUM_THREADS"), "cwd": os.getcwd()}, fh)
if params.get("fail"):
    sys.exit(3)
"""


@pytest.fixture
def cluster(slurm):
    return slurm  # conftest's, so the test is in the slurm tier


def add_cluster(name: str, sshd, cluster: SlurmCluster, tmp_path: Path, *extra: str, trust: bool = True,
                port: int | None = None) -> None:
    cli("hosts", "add", name, "--kind", "slurm", "--host", "127.0.0.1", "--port", str(port or sshd.port),
        "--user", sshd.user, "--key", str(sshd.client_key),
        "--remote-root", str(tmp_path / f"remote-{name}"), "--python", sys.executable,
        "--setup", cluster.setup, "--poll", "1s", "--throttle", "4", *extra, check=True)
    if trust:
        cli("hosts", "trust", name, "--fingerprint", sshd.host_key_fingerprint(), check=True)


def submit_sweep(tmp_path: Path, n: int, **params) -> tuple[str, Path]:
    runs_log = tmp_path / "runs.log"
    folder, params_file = make_job(tmp_path / "sweep", SLURM_TASK,
                                   params=[{"i": i, "runs_log": str(runs_log), **params} for i in range(n)])
    out = cli("submit", str(folder), "--params", str(params_file), "--no-start", "--json", check=True)
    return json.loads(out.stdout)["job"], runs_log


def runs(runs_log: Path) -> list[int]:
    return sorted(int(line) for line in runs_log.read_text().split()) if runs_log.exists() else []


def results_of(home, job_id: str) -> Path:
    return Path(cli("results", job_id, check=True).stdout.strip())


def test_a_sweep_runs_as_several_arrays_and_every_result_comes_back_once(home, sshd, cluster, tmp_path):
    add_cluster("cluster", sshd, cluster, tmp_path)
    job_id, runs_log = submit_sweep(tmp_path, 12)
    status, out = run_master_to_the_end(job_id, timeout=240)
    assert status["status"] == "done", (status, out, cluster.logs())
    assert runs(runs_log) == list(range(12))  # each task ran exactly once
    root = results_of(home, job_id)
    arrays = set()
    for i in range(12):
        result = json.loads((root / str(i) / "out.json").read_text())
        assert result["params"]["i"] == i and result["task"] == str(i) and result["job"] == job_id
        assert result["file_params"] == result["params"]
        assert result["threads"] == "1"
        assert (root / str(i) / "stdout.txt").exists()
        arrays.add(result["array"])
    assert len(arrays) >= 3, arrays  # MaxArraySize 5: 12 tasks need three arrays at least
    # Nothing is left on the cluster: no array in SLURM's queue, no task folder.
    assert not cluster.jobs_in_queue() or all(
        s in ("COMPLETED",) for s in cluster.client("squeue", "-h", "-r", "--states=all", "-o", "%T").stdout.split())
    assert not any((tmp_path / "remote-cluster" / "tasks").iterdir())
    assert not any((tmp_path / "remote-cluster" / "chunks").iterdir())


def test_cancelling_a_job_clears_slurms_queue_of_it(home, sshd, cluster, tmp_path):
    add_cluster("cluster", sshd, cluster, tmp_path)
    job_id, runs_log = submit_sweep(tmp_path, 8, sleep=120)
    master = start_master("--no-local")
    try:
        wait_until(lambda: runs(runs_log), timeout=60, interval=0.2, what="tasks running on the cluster")
        assert cluster.jobs_in_queue()
        cli("cancel", job_id, check=True)
        cancelled = time.monotonic()
        wait_until(lambda: not cluster.jobs_in_queue(), timeout=30, interval=0.2, what="SLURM's queue to empty")
        took = time.monotonic() - cancelled
    finally:
        out = stop_process(master)
    status = json.loads(cli("status", job_id, "--json", check=True).stdout)
    assert status["status"] == "cancelled", (status, out)
    assert took < 30
    print(f"cancel cleared SLURM's queue in {took:.1f} s")


def test_hosts_list_and_test_describe_the_cluster(home, sshd, cluster, tmp_path):
    add_cluster("cluster", sshd, cluster, tmp_path)
    out = cli("hosts", "test", "cluster")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "host key: ssh-ed25519" in out.stdout and "sbatch: --test-only accepts arrays" in out.stdout
    assert "sacct: does not work here" in out.stdout
    assert "MaxArraySize 5" in out.stdout and "MinJobAge 30 s" in out.stdout
    assert "plan: arrays of up to 5 tasks" in out.stdout
    job_id, runs_log = submit_sweep(tmp_path, 6, sleep=30)
    master = start_master("--no-local")
    try:
        wait_until(lambda: runs(runs_log), timeout=60, interval=0.2, what="tasks running on the cluster")
        def row():
            hosts = json.loads(cli("hosts", "list", "--json", check=True).stdout)
            return next(h for h in hosts if h["name"] == "cluster")
        wait_until(lambda: row().get("running"), timeout=20, what="the row to show running tasks")
        shown = row()
        assert shown["kind"] == "slurm" and shown["state"] == "ready"
        assert shown["in_flight"] == 6 and shown["pending"] + shown["running"] == 6, shown
        table = cli("hosts", "list", check=True).stdout
        assert "IN FLIGHT" in table and "PENDING" in table, table
        assert [line.split()[:3] for line in table.splitlines() if line.startswith("cluster")] == \
            [["cluster", "slurm", "ready"]], table
        cli("cancel", job_id, check=True)
    finally:
        stop_process(master)


def test_slurmd_killed_mid_task_and_restarted_loses_and_repeats_nothing(home, sshd, cluster, tmp_path):
    add_cluster("cluster", sshd, cluster, tmp_path)
    job_id, runs_log = submit_sweep(tmp_path, 6, sleep=4)
    master = start_master("--no-local", "--until-idle", "2")
    try:
        wait_until(lambda: runs(runs_log), timeout=60, interval=0.1, what="a task running on the cluster")
        cluster.kill_slurmd(signal.SIGKILL)
        time.sleep(3)  # tasks running now finish while the node daemon is gone
        cluster.start_slurmd()
        assert master.wait(240) == 0
    finally:
        out = stop_process(master)
    status = json.loads(cli("status", job_id, "--json", check=True).stdout)
    assert status["status"] == "done", (status, out, cluster.logs())
    assert runs(runs_log) == list(range(6)), runs(runs_log)
    root = results_of(home, job_id)
    assert all((root / str(i) / "out.json").exists() for i in range(6))


def test_master_killed_mid_job_and_restarted_loses_and_repeats_nothing(home, sshd, cluster, tmp_path):
    add_cluster("cluster", sshd, cluster, tmp_path)
    job_id, runs_log = submit_sweep(tmp_path, 12, sleep=3)
    master = start_master("--no-local")
    try:
        # Some tasks done, some running, some pending in SLURM, some not yet submitted.
        wait_until(lambda: len(runs(runs_log)) >= 3, timeout=90, interval=0.1, what="a few tasks to start")
        master.send_signal(signal.SIGKILL)
        master.wait(10)
    finally:
        stop_process(master)
    time.sleep(4)  # the cluster goes on without the master; some finish meanwhile
    status, out = run_master_to_the_end(job_id, timeout=240)
    assert status["status"] == "done", (status, out, cluster.logs())
    assert runs(runs_log) == list(range(12)), runs(runs_log)
    root = results_of(home, job_id)
    assert all((root / str(i) / "out.json").exists() for i in range(12))
    assert not cluster.jobs_in_queue()


def all_queued(job_id: str) -> list[dict] | None:
    """The job's tasks if every one of them is queued (none lost, none failed)."""
    tasks = json.loads(cli("status", job_id, "--json", check=True).stdout)["tasks"]
    return tasks if all(t["status"] == "queued" for t in tasks) else None


def host_row(name: str) -> dict:
    return next(h for h in json.loads(cli("hosts", "list", "--json", check=True).stdout) if h["name"] == name)


def wait_for_state(name: str, state: str, timeout: float) -> dict:
    """The host's ``hosts list`` row once it shows ``state``."""
    return wait_until(lambda: (row := host_row(name))["state"] == state and row, timeout=timeout, interval=0.2,
                      what=f"{name}'s row to show {state}")


@pytest.mark.parametrize("case, extra, on_row, in_test", [
    ("partition", ["--partition", "nosuch"], "sbatch refused the job", "sbatch --test-only refused"),
    ("memory", ["--mem", "100000G"], "sbatch refused the job", "sbatch --test-only refused"),
    ("setup", ["--setup", "SETUP; no-such-module-command python/3.11"], "the --setup lines failed",
     "the --setup lines failed"),
    ("python", ["--python", "/nonexistent/bin/python3"], "the task interpreter /nonexistent/bin/python3 is not there",
     "python: /nonexistent/bin/python3 is not on the login node"),
])
def test_bad_settings_show_on_the_hosts_row_and_in_hosts_test_and_lose_no_task(
        home, sshd, cluster, tmp_path, case, extra, on_row, in_test):
    extra = [e.replace("SETUP", cluster.setup) for e in extra]
    add_cluster("cluster", sshd, cluster, tmp_path, *extra)
    tested = cli("hosts", "test", "cluster")
    assert in_test in tested.stdout + tested.stderr, tested.stdout + tested.stderr
    if case != "python":  # only a job on a compute node can tell the interpreter is missing there
        assert tested.returncode == 3 and "fix:" in tested.stderr, tested.stdout + tested.stderr
    job_id, runs_log = submit_sweep(tmp_path, 3)
    master = start_master("--no-local")
    try:
        row = wait_for_state("cluster", "error", timeout=60)
        assert on_row in row["reason"] and "fix:" in row["reason"], row
        # Back in the queue, no retry used, nothing failed.
        tasks = wait_until(lambda: all_queued(job_id), timeout=30, interval=0.2,
                           what="the tasks to be back in the queue")
        assert all(t["failures"] == 0 for t in tasks), tasks
    finally:
        stop_process(master)
    assert runs(runs_log) == []
    assert not cluster.jobs_in_queue()


def test_an_unreachable_login_node_shows_on_its_row_and_keeps_the_tasks(home, sshd, cluster, tmp_path):
    from support.net import free_port

    add_cluster("cluster", sshd, cluster, tmp_path, port=free_port(), trust=False)
    tested = cli("hosts", "test", "cluster")
    # hosts test names the step that failed and the likely fix, for a cluster's login node as for a desktop.
    assert tested.returncode == 3 and "reachable: nothing answers SSH at" in tested.stderr, tested.stderr
    assert "--port" in tested.stderr, tested.stderr
    job_id, _ = submit_sweep(tmp_path, 2)
    master = start_master("--no-local")
    try:
        assert "cannot reach cluster" in wait_for_state("cluster", "unreachable", timeout=30)["reason"]
    finally:
        stop_process(master)
    assert all_queued(job_id)


# What a task sees of its parameter set, the API's way and argv's.
API_TASK = """
import json, os, sys
import sparecycles
params = sparecycles.task_params()
os.makedirs("results", exist_ok=True)
with open("results/seen.json", "w") as fh:
    json.dump({"repr": repr(params), "argv": sys.argv[1], "pickled": os.path.exists("params.pkl")}, fh)
"""


def test_pickled_parameter_sets_reach_tasks_on_the_cluster_intact(home, sshd, cluster, tmp_path):
    import subprocess
    import textwrap

    add_cluster("cluster", sshd, cluster, tmp_path)
    make_job(tmp_path / "exact", API_TASK)
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent("""
        import sparecycles
        from fractions import Fraction
        job = sparecycles.submit("exact", params=[Fraction(1, 3), {"rate": 5}], start=False)
        print(job.id)
    """))
    job_id = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            check=True).stdout.split()[-1]
    status, out = run_master_to_the_end(job_id, timeout=120)
    assert status["status"] == "done", (status, out)
    root = results_of(home, job_id)
    first = json.loads((root / "0" / "seen.json").read_text())
    second = json.loads((root / "1" / "seen.json").read_text())
    assert first == {"repr": "Fraction(1, 3)", "argv": '{"__sparecycles_pickle__": "params.pkl"}', "pickled": True}
    assert second == {"repr": "{'rate': 5}", "argv": '{"rate": 5}', "pickled": False}


# ----- results limits: the same as a desktop slave's, in the same words (tests/test_hostile_slave.py) -----

# Waits for the test's go-ahead, then writes `size` bytes of results.
WAITING_TASK = """
import json, os, sys, time
params = json.loads(sys.argv[1])
while not os.path.exists(params["go"]):
    time.sleep(0.2)
os.makedirs("results", exist_ok=True)
with open("results/data.bin", "wb") as fh:
    fh.write(b"x" * params["size"])
"""


def submit_waiting_task(tmp_path: Path, size: int) -> tuple[str, Path]:
    go = tmp_path / "go"
    folder, params_file = make_job(tmp_path / "waiting", WAITING_TASK, params=[{"go": str(go), "size": size}])
    out = cli("submit", str(folder), "--params", str(params_file), "--no-start", "--json", check=True)
    return json.loads(out.stdout)["job"], go


def sftp_servers(sshd) -> list:
    """The SFTP server processes of the test sshd's connections (one per SFTP session)."""
    import psutil

    found = []
    for p in psutil.Process(sshd.proc.pid).children(recursive=True):
        try:
            if "sftp" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_results_over_the_masters_cap_fail_the_task_as_from_a_desktop(home, sshd, cluster, tmp_path):
    from support.results_refused import assert_results_refused

    # 1 MB, plus the 64 MB every host's archive may hold beyond it for the logs: 70 MB is over.
    home.config_file.write_text("max_results_mb = 1\n")
    add_cluster("cluster", sshd, cluster, tmp_path)
    job_id, go = submit_waiting_task(tmp_path, 70 << 20)
    go.touch()
    status, out = run_master_to_the_end(job_id, timeout=180)
    assert_results_refused(status["tasks"][0], "oversized", host="cluster")
    assert not list(home.default_results_dir.rglob("data.bin")), "nothing may be moved into place"
    assert not list((tmp_path / "remote-cluster" / "tasks").iterdir()), "the refused results are removed there"


def test_a_results_download_that_stalls_fails_the_task_as_from_a_desktop(home, sshd, cluster, tmp_path):
    import signal as signals

    from support.results_refused import assert_results_refused

    home.config_file.write_text("fetch_timeout_s = 3\n")
    add_cluster("cluster", sshd, cluster, tmp_path)
    job_id, go = submit_waiting_task(tmp_path, 1000)
    master = start_master("--no-local")
    stopped = []
    try:
        # The job archive went up by SFTP before sbatch: that session is the one the results come back by.
        wait_until(lambda: list((tmp_path / "remote-cluster" / "tasks").glob("*/started")), timeout=120,
                   what="the task to start on the cluster")
        stopped = wait_until(lambda: sftp_servers(sshd), timeout=30, what="the master's SFTP session")
        for p in stopped:
            p.send_signal(signals.SIGSTOP)
        go.touch()
        task = wait_until(lambda: (t := json.loads(cli("status", job_id, "--json").stdout)["tasks"][0])["status"]
                          in ("failed", "done") and t, timeout=120, what="the task to be settled")
    finally:
        for p in stopped:
            p.send_signal(signals.SIGCONT)
        out = stop_process(master)
    assert_results_refused(task, "stalled", host="cluster")
    assert "Traceback" not in out, out
