"""A SLURM cluster as a host: a real one-node cluster (tests/slurmcluster.py), its
login node the loopback sshd, the master the real ``sparecycles`` command."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import cli, make_job, run_master_to_the_end, start_master, stop_process, wait_until
from slurmcluster import SlurmCluster

pytestmark = pytest.mark.slurm

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
def cluster(tmp_path):
    c = SlurmCluster(tmp_path / "cluster", cpus=2, max_array_size=5).start()
    yield c
    c.stop()


def add_cluster(name: str, sshd, cluster: SlurmCluster, tmp_path: Path, *extra: str, trust: bool = True,
                port: int | None = None) -> None:
    cli("hosts", "add", name, "--kind", "slurm", "--host", "127.0.0.1", "--port", str(port or sshd.port),
        "--user", os.environ.get("USER", "root"), "--key", str(sshd.client_key),
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
