"""Per-task overhead of SpareCycles on a SLURM cluster, against bare ``sbatch --array``.

Both run the same trivial ``main.py`` (writes ``results/out-<i>.txt``) as TASKS
tasks on the same one-node test cluster (``tests/support/slurm.py``: munged,
slurmctld, slurmd on this machine, CPUS CPUs, MaxArraySize ARRAY), in the same
run, alternating which goes first between repeats:

* SpareCycles: the cluster registered with ``hosts add --kind slurm`` (login
  node = a loopback sshd, ``--poll POLL``), one ``master --no-local`` that has
  connected before timing starts. Timed from just before ``submit --no-start``
  until the queue says the job has no unfinished task (results fetched by SFTP,
  checked and moved into place; every ``<results>/<i>/out-<i>.txt`` checked).
* bare: the same tasks as ``sbatch --parsable --array=0-(m-1)`` arrays of the
  same sizes (MaxArraySize), a wrapper that runs ``python main.py '{"i": N}'``
  in a per-task folder, submitted directly on this machine, and ``squeue``
  polled every POLL s until none of the arrays is listed: what a person
  scripting it by hand would do. Results are checked the same way.

Figures (medians over the repeats): wall time of each, per-task wall time, and
SpareCycles' overhead per task = (T_sparecycles - T_bare) / TASKS, in seconds of
wall time; the slot time per task = that x CPUS.

    .venv/bin/python bench/slurm_overhead.py [--tasks 20] [--repeats 3] [--poll 1] [--array 5] [--json]

Needs slurm-wlm and munge (scripts/system-packages.sh) and /usr/sbin/sshd; all
traffic stays on 127.0.0.1. Exit 0 when every run completed correctly, 1 when
something broke.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(_BENCH))
from _common import (PYTHON, TRIVIAL_MAIN, BenchError, bench_workspace,  # noqa: E402
                     count_results, exit_cleanly_on_sigterm, home_env, machine_info, median, print_machine_info,
                     sparecycles, write_job, write_params)
from _pool import wait_job_done, with_leftovers  # noqa: E402  (puts tests/ on sys.path)
from support.slurm import SlurmCluster  # noqa: E402
from support.sshd import Sshd  # noqa: E402

BARE_WRAPPER = """#!/bin/bash
out={out}/$((SLURM_ARRAY_TASK_ID + {offset}))
mkdir -p "$out" && cp {job}/main.py "$out/" && cd "$out" || exit 1
{python} main.py "{{\\"i\\": $((SLURM_ARRAY_TASK_ID + {offset}))}}"
"""


def run_sparecycles(root: Path, env: dict, job: Path, tasks: int, run: int) -> dict:
    params = write_params(root / f"params-{run}.json", tasks)
    t0 = time.perf_counter()
    done, _ = sparecycles(["submit", str(job), "--params", str(params), "--no-start", "--json"], env)
    job_id = json.loads(done.stdout)["job"]
    finished = wait_job_done(Path(env["SPARECYCLES_HOME"]), job_id, timeout=600, poll=0.05)
    elapsed = finished - t0
    results = Path(json.loads(done.stdout)["results"])
    return {"seconds": elapsed, "results_ok": count_results(results, tasks)}


def run_bare(root: Path, cluster: SlurmCluster, job: Path, tasks: int, array: int, poll: float, run: int) -> dict:
    out = root / f"bare-{run}"
    out.mkdir()
    t0 = time.perf_counter()
    arrays = []
    for offset in range(0, tasks, array):
        size = min(array, tasks - offset)
        script = out / f"run-{offset}.sh"
        script.write_text(BARE_WRAPPER.format(out=shlex.quote(str(out)), offset=offset, job=shlex.quote(str(job)),
                                              python=shlex.quote(PYTHON)))
        script.chmod(0o755)
        done = cluster.client("sbatch", "--parsable", f"--array=0-{size - 1}", f"--output={out}/slurm-%A_%a.out",
                              str(script))
        arrays.append(done.stdout.strip().split(";")[0])
    while True:
        listed = cluster.client("squeue", "-h", "-j", ",".join(arrays), "-o", "%i", check=False).stdout.split()
        if not listed:
            break
        time.sleep(poll)
    elapsed = time.perf_counter() - t0
    ok = sum(1 for i in range(tasks) if (out / str(i) / "results" / f"out-{i}.txt").exists()
             and (out / str(i) / "results" / f"out-{i}.txt").read_text() == str(i))
    return {"seconds": elapsed, "results_ok": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--poll", type=float, default=1.0, help="squeue poll interval of both, s")
    parser.add_argument("--array", type=int, default=5, help="the cluster's MaxArraySize")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    info = machine_info()
    report: dict = {"machine": info, "tasks": args.tasks, "poll_s": args.poll, "max_array_size": args.array,
                    "cpus": args.cpus, "runs": []}
    broken = None
    root_seen = None
    with bench_workspace("sc-slurm-bench-") as (root, processes):
        root_seen = root
        sshd = cluster = None
        try:
            sshd = Sshd(root / "sshd").start()
            cluster = SlurmCluster(root / "cluster", cpus=args.cpus, max_array_size=args.array).start()
            env = home_env(root / "master-home")
            job = write_job(root / "job", TRIVIAL_MAIN)
            sparecycles(["hosts", "add", "hpc", "--kind", "slurm", "--host", "127.0.0.1", "--port", str(sshd.port),
                         "--user", sshd.user, "--key", str(sshd.client_key), "--remote-root", str(root / "remote"),
                         "--python", PYTHON, "--setup", cluster.setup, "--poll", f"{args.poll:g}s"], env)
            sparecycles(["hosts", "trust", "hpc", "--fingerprint", sshd.host_key_fingerprint()], env)
            with (root / "master.log").open("ab") as log:
                master = processes.start([PYTHON, "-m", "sparecycles", "master", "--no-local"], env,
                                         stdout=log, stderr=subprocess.STDOUT)
            connect_t0 = time.perf_counter()
            while json.loads(sparecycles(["hosts", "list", "--json"], env)[0].stdout)[0]["state"] != "ready":
                if master.poll() is not None or time.perf_counter() - connect_t0 > 60:
                    raise BenchError(f"the master did not connect to the cluster: {(root / 'master.log').read_text()}")
                time.sleep(0.2)
            report["connect_s"] = time.perf_counter() - connect_t0
            for run in range(args.repeats):
                order = ("sparecycles", "bare") if run % 2 == 0 else ("bare", "sparecycles")
                figures = {}
                for kind in order:
                    if kind == "sparecycles":
                        figures[kind] = run_sparecycles(root, env, job, args.tasks, run)
                    else:
                        figures[kind] = run_bare(root, cluster, job, args.tasks, args.array, args.poll, run)
                    if figures[kind]["results_ok"] != args.tasks:
                        raise BenchError(f"{kind} run {run}: {figures[kind]['results_ok']}/{args.tasks} results")
                report["runs"].append(figures)
        except BenchError as exc:
            broken = str(exc)
        finally:
            if cluster is not None:
                cluster.stop()
            if sshd is not None:
                sshd.stop()
    broken = with_leftovers(broken, root_seen)
    if report["runs"]:
        sc = median([r["sparecycles"]["seconds"] for r in report["runs"]])
        bare = median([r["bare"]["seconds"] for r in report["runs"]])
        report["median"] = {"sparecycles_s": sc, "bare_s": bare,
                            "sparecycles_per_task_s": sc / args.tasks, "bare_per_task_s": bare / args.tasks,
                            "overhead_per_task_s": (sc - bare) / args.tasks,
                            "overhead_slot_s_per_task": (sc - bare) / args.tasks * args.cpus}
    if args.json:
        print(json.dumps({**report, "broken": broken}, indent=2))
    else:
        print_machine_info(info)
        print(f"{args.tasks} trivial tasks on a one-node test cluster ({args.cpus} CPUs, MaxArraySize {args.array}), "
              f"squeue every {args.poll:g} s, {len(report['runs'])} repeats")
        if "connect_s" in report:
            print(f"master connected to the login node in {report['connect_s']:.1f} s (not timed below)")
        for n, r in enumerate(report["runs"]):
            print(f"  run {n}: sparecycles {r['sparecycles']['seconds']:.1f} s, bare sbatch {r['bare']['seconds']:.1f} s")
        if "median" in report:
            m = report["median"]
            print(f"median: sparecycles {m['sparecycles_s']:.1f} s ({m['sparecycles_per_task_s']:.2f} s/task), "
                  f"bare sbatch --array {m['bare_s']:.1f} s ({m['bare_per_task_s']:.2f} s/task)")
            print(f"SpareCycles' overhead: {m['overhead_per_task_s']:+.2f} s of wall time per task "
                  f"({m['overhead_slot_s_per_task']:+.2f} slot-seconds per task)")
        if broken:
            print(f"BROKEN: {broken}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
