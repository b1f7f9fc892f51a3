"""Brian's compile-once path through the pool, beside the runtime targets.

The example job ``resources/standalone`` (the demo's Brunel-style network,
500 neurons + 400 Poisson sources) runs on one slave daemon with one slot
behind a loopback sshd (``master --no-local``, sandbox on, as a lab runs it):
one job (a sweep of TASKS parameter sets) per target, one job after the other:

* ``numpy``: Brian's runtime device, numpy code: no compiler (the demo's);
* ``cython``: the runtime device, Cython code compiled into the slot's Cython
  cache: the first task compiles, later ones load the cached modules;
* ``standalone``: the C++ standalone device with ``run_args``: the first task
  on the slot builds the binary in the slot's cache, later ones write the
  sources again, find them unchanged and only run the binary.

The job's manifest names ``brian2`` for warm starts, so later tasks of a job
fork from an interpreter that has imported it (the first starts cold). With
one slot the tasks run one after the other: the first is timed from just
before ``submit`` to when the master collected its result, each later one from
the result before (the master's ``collected`` stamp): what a task costs the
slot through the pool (start, code generation, compile or not, simulation,
results back over SFTP). Figures: the first task on the slot, and the median
of the later ones, per target; the task's own ``run_s`` (the simulation
proper) beside.

    .venv/bin/python bench/brian_standalone.py [--tasks 4] [--duration-ms 1000] [--json]

Exit status 0 when every task succeeded with the expected ``compiled`` flags;
1 when something broke.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BenchError,
    bench_workspace,
    exit_cleanly_on_sigterm,
    loadavg,
    machine_info,
    median,
    print_machine_info,
    sparecycles,
    tail,
)
from _pool import Pool, wait_job_done, with_leftovers  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "resources" / "standalone"
TARGETS = ("numpy", "cython", "standalone")


MARKER_FILE = ".sparecycles.json"  # trayapp.master.results.MARKER_FILE: when the master collected a result


def run_job(pool: Pool, root: Path, target: str, tasks: int, duration_ms: float) -> list[dict]:
    """One job of ``tasks`` tasks of ``target`` (a sweep, as a user submits it) on the one slot:
    the first task's time from submit to its result, each later one's from the result before."""
    params = root / f"{target}.json"
    params.write_text(json.dumps([{"target": target, "input_rate_hz": 40 + 5 * k, "duration_ms": duration_ms}
                                  for k in range(tasks)]))
    t0 = time.time()
    submitted, _ = sparecycles(["submit", str(EXAMPLE), "--params", str(params), "--name", target,
                                "--json", "--no-start"], pool.master_env)
    info = json.loads(submitted.stdout)
    wait_job_done(pool.master_home, info["job"], timeout=3600, master=pool.master)
    results, runs = Path(info["results"]), []
    for k in range(tasks):
        try:
            summary = json.loads((results / str(k) / "summary.json").read_text())
            collected = json.loads((results / str(k) / MARKER_FILE).read_text())["collected"]
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"{target} task {k}: no result ({exc})\n{tail(pool.master_log)}") from exc
        runs.append({"target": target, "k": k, "collected": collected, "run_s": summary["run_s"],
                     "compiled": summary.get("compiled"), "build_s": summary.get("build_s"),
                     "rate_hz": summary["rate_hz"]})
    runs.sort(key=lambda r: r["collected"])  # one slot: they ran one after the other
    for before, run in zip([{"collected": t0}] + runs, runs):
        run["seconds"] = run["collected"] - before["collected"]
    if target == "standalone" and [r["compiled"] for r in runs] != [True] + [False] * (tasks - 1):
        raise BenchError(f"standalone: compiled flags in run order {[r['compiled'] for r in runs]}, "
                         "expected only the first")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4, help="tasks per target, one after the other (>= 2)")
    parser.add_argument("--duration-ms", type=float, default=1000.0, help="simulated time per task")
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (for debugging)")
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error("--tasks must be at least 2 (a first task and later ones)")
    exit_cleanly_on_sigterm()
    info = machine_info()
    print(f"Brian targets through the pool: {args.tasks} one-task jobs per target on 1 slave x 1 slot "
          f"(sandbox on), {args.duration_ms:g} ms simulated each")
    print_machine_info(info)
    runs: list[dict] = []
    root_seen, broken = None, None
    try:
        with bench_workspace("sparecycles-bench-standalone-", keep=args.keep) as (root, processes):
            root_seen = root
            with Pool(root, processes) as pool:
                pool.add_slave("a", 1)
                pool.start_master()
                pool.wait_connected(timeout=600)  # a loaded machine starts the agent slowly
                for target in TARGETS:
                    for n, r in enumerate(run_job(pool, root, target, args.tasks, args.duration_ms)):
                        runs.append(r)
                        print(f"  {target:<10} task {n + 1} on the slot: {r['seconds']:6.2f} s through the pool "
                              f"(simulation {r['run_s']:.2f} s)", flush=True)
    except BenchError as exc:
        broken = str(exc)
    finally:
        broken = with_leftovers(broken, root_seen)
    if broken:
        print(f"\nBROKEN: {broken}", file=sys.stderr)
        return 1

    summary = {}
    for target in TARGETS:
        mine = [r for r in runs if r["target"] == target]  # in the order they ran
        summary[target] = {"first_s": mine[0]["seconds"], "later_s": median([r["seconds"] for r in mine[1:]]),
                           "later_run_s": median([r["run_s"] for r in mine[1:]])}
    numpy_later = summary["numpy"]["later_s"]
    print("\nper task through the pool (first on the slot; median of the later ones; the simulation proper):")
    for target in TARGETS:
        s = summary[target]
        print(f"  {target:<10} first {s['first_s']:6.2f} s   later {s['later_s']:6.2f} s "
              f"({s['later_s'] / numpy_later:.2f}x numpy)   simulation {s['later_run_s']:.2f} s")
    standalone = summary["standalone"]
    print(f"standalone: the compile costs {standalone['first_s'] - standalone['later_s']:.1f} s once per slot; "
          f"it pays for itself after {max(0.0, (standalone['first_s'] - standalone['later_s'])) / max(1e-9, numpy_later - standalone['later_s']):.1f} "
          f"tasks against numpy" if numpy_later > standalone["later_s"] else
          "standalone: later tasks are no faster than numpy at this size (raise --duration-ms)")
    print(f"load average at end {loadavg()} (other load on this shared machine inflates every figure)")
    if args.json:
        print(json.dumps({"benchmark": "brian_standalone", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "machine": info, "tasks": args.tasks, "duration_ms": args.duration_ms,
                          "loadavg_at_end": loadavg(), "runs": runs, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
