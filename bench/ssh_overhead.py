"""Per-task overhead of SpareCycles over SSH, against GNU parallel and bare spawns.

The same trivial ``main.py`` (reads ``{"i": k}`` from argv[1], writes
``results/out-<k>.txt`` holding k) runs in three ways, with the same number of
tasks in flight (CONCURRENCY = slaves x slots per slave, default 2 x 1 = 2,
the machine's 2 cores):

* SpareCycles: a loopback sshd (``tests/support/sshd.Sshd``) and SLAVES slave
  daemons (``sparecycles slave --slots S``, each in its own home) registered
  in a master home with ``hosts add`` + ``hosts trust --fingerprint``; one
  ``master --no-local`` runs for the whole benchmark and has connected to
  every slave before any timing starts (its connect time is reported apart).
  A run is timed from just before ``submit --no-start`` of TASKS tasks until
  the queue says the job has no unfinished task (polled every 50 ms,
  in-process and read-only: what ``status`` reads, without spawning an
  interpreter 20 times a second). Results come back over SFTP; every one of
  ``<results>/<k>/out-<k>.txt`` is checked.
* GNU parallel: the same sshd and client key, one sshlogin
  ``CONCURRENCY/ssh -p PORT -i KEY -o UserKnownHostsFile=... -o BatchMode=yes
  root@127.0.0.1`` (CONCURRENCY job slots on it: both "slaves" are the same
  sshd on 127.0.0.1, so one sshlogin with 2 slots and two sshlogins with 1 are
  the same thing to GNU parallel: every job opens its own ssh connections
  either way), ``--wd REMOTE/{k}`` (a folder per task, like SpareCycles' task
  folders), ``--transferfile main.py``, ``--return results/out-{k}.txt``,
  ``--cleanup``. GNU parallel opens several ssh connections per task (rsync
  there, the job, rsync back, cleanup), so it runs PARALLEL_TASKS tasks
  (default 40) and is compared per task. ``PARALLEL_HOME`` points into the
  benchmark's temporary folder so it leaves nothing in ~/.parallel.
* bare: TASKS ``sys.executable main.py '{"i": k}'`` spawns, CONCURRENCY at a
  time, in one local folder: the least any runner could do.

Figures (medians over the repeats; the kinds alternate order between repeats):

* per-task wall time = wall / tasks, and slot time per task = wall / tasks x
  CONCURRENCY (what one task costs one slot);
* ratio = GNU parallel's slot time per task / SpareCycles' (target >= 20x);
* SpareCycles' per-task overhead over bare spawns =
  (T_sparecycles - T_bare) x CONCURRENCY / TASKS (target <= 25 ms);
* where the time goes: CPU seconds per task of the master, the slave daemons
  and the sshd side (sshd sessions + agents), measured over each run.

    .venv/bin/python bench/ssh_overhead.py [--tasks 400] [--parallel-tasks 40] [--repeats 3]
        [--slaves 2] [--slots-per-slave 1] [--task-nice N] [--json]

Needs /usr/sbin/sshd, ssh, GNU parallel and rsync (GNU parallel's
--transferfile/--return use it). All traffic goes to 127.0.0.1.

Exit status: 0 when every run completed correctly (whether or not the targets
are met: this is a measurement, not a test), 1 when something broke (a task
failed, a result is missing or wrong, a process was left behind).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from _common import (  # noqa: E402
    PYTHON,
    TRIVIAL_MAIN,
    BenchError,
    bare_spawns,
    bench_workspace,
    count_bare_results,
    count_results,
    exit_cleanly_on_sigterm,
    loadavg,
    machine_info,
    median,
    print_machine_info,
    sparecycles,
    tail,
    write_job,
    write_params,
)
from _pool import Pool, job_counts, with_leftovers, wait_job_done  # noqa: E402

MARKER_FILE = ".sparecycles.json"  # trayapp.master.results.MARKER_FILE, spelled out
TARGET_RATIO = 20.0
TARGET_OVERHEAD_MS = 25.0
TOOLS = ("/usr/sbin/sshd", "ssh", "parallel", "rsync")


# ----- bare spawns -------------------------------------------------------------------

def run_bare(folder: Path, tasks: int, concurrency: int) -> dict:
    result = {"tasks": tasks, **bare_spawns(folder, tasks, concurrency)}
    shutil.rmtree(folder, ignore_errors=True)
    return result


# ----- GNU parallel --------------------------------------------------------------------

def parallel_command(pool: Pool, remote: Path, concurrency: int, controlmaster: bool) -> list[str]:
    sshlogin = f"{concurrency}/{pool.ssh_command()} root@127.0.0.1"
    return ["parallel", "--colsep", "\t", "--sshlogin", sshlogin, *(["--controlmaster"] if controlmaster else []),
            "--workdir", f"{remote}/{{1}}", "--transferfile", "main.py", "--return", "results/out-{1}.txt",
            "--cleanup", "--halt", "never", PYTHON, "main.py", "{2}"]


def run_parallel(pool: Pool, root: Path, tasks: int, concurrency: int, tag: str, controlmaster: bool = False) -> dict:
    local = write_job(root / f"parallel-{tag}-local", TRIVIAL_MAIN)
    remote = root / f"parallel-{tag}-remote"  # the "remote" side: another folder on this PC
    lines = "".join(f"{k}\t{json.dumps({'i': k})}\n" for k in range(tasks))
    command = parallel_command(pool, remote, concurrency, controlmaster)
    env = {**pool.master_env, "PARALLEL_HOME": str(root / "parallel-home")}
    t0 = time.perf_counter()
    done = subprocess.run(command, input=lines, text=True, cwd=local, env=env, capture_output=True)
    elapsed = time.perf_counter() - t0
    ok = count_bare_results(local / "results", tasks)
    left_remote = [p for p in remote.rglob("*") if p.is_file()] if remote.exists() else []
    if done.returncode != 0 or ok != tasks:
        raise BenchError(f"GNU parallel ({tag}) exited {done.returncode}, {ok}/{tasks} results returned:\n"
                         f"{done.stderr.strip()[-2000:]}")
    if left_remote:
        raise BenchError(f"GNU parallel --cleanup left {len(left_remote)} files in {remote}")
    shutil.rmtree(local, ignore_errors=True)
    shutil.rmtree(remote, ignore_errors=True)
    return {"tasks": tasks, "seconds": elapsed, "results_ok": ok}


# ----- SpareCycles ------------------------------------------------------------------------

def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _sshd_side(pool: Pool) -> list[psutil.Process]:
    """The sshd sessions serving the master and the agents they started (they live as long as the connections)."""
    try:
        return psutil.Process(pool.sshd.proc.pid).children(recursive=True)
    except psutil.Error:
        return []


def run_sparecycles(pool: Pool, job: Path, params: Path, tasks: int, tag: str) -> dict:
    master = psutil.Process(pool.master.pid)
    slaves = [psutil.Process(s.proc.pid) for s in pool.slaves.values()]
    sshd_side = _sshd_side(pool)
    cpu0 = (_cpu([master]), _cpu(slaves), _cpu(sshd_side))
    t0, t0_epoch = time.perf_counter(), time.time()
    submitted, submit_s = sparecycles(["submit", str(job), "--params", str(params), "--name", f"ssh-{tag}",
                                       "--json", "--no-start"], pool.master_env)
    info = json.loads(submitted.stdout)
    t_done = wait_job_done(pool.master_home, info["job"], timeout=120 + 2.0 * tasks, master=pool.master)
    elapsed = t_done - t0
    cpu1 = (_cpu([master]), _cpu(slaves), _cpu(sshd_side))
    status = job_counts(pool, info["job"])
    results = Path(info["results"])
    ok = count_results(results, tasks)
    problems = []
    if status["status"] != "done" or status["counts"].get("done") != tasks:
        problems.append(f"job {info['job']} is {status['status']}: {status['counts']}")
    if ok != tasks:
        problems.append(f"{ok}/{tasks} results correct in {results}")
    if problems:
        raise BenchError("SpareCycles run: " + "; ".join(problems) + f"\nmaster log ends:\n{tail(pool.master_log)}")
    markers = [json.loads((results / str(k) / MARKER_FILE).read_text()) for k in range(tasks)]
    collected = sorted(m["collected"] for m in markers)
    hosts = sorted({m["host"] for m in markers})
    first_written = min((results / str(k) / f"out-{k}.txt").stat().st_mtime for k in range(tasks))
    steady = (collected[-1] - collected[0]) / (tasks - 1) if tasks > 1 else float("nan")
    shutil.rmtree(results, ignore_errors=True)
    return {"tasks": tasks, "seconds": elapsed, "submit_seconds": submit_s, "results_ok": ok, "hosts": hosts,
            "first_result_after_s": first_written - t0_epoch, "done_after_last_collected_s":
                (t0_epoch + elapsed) - collected[-1],
            "steady_ms_between_results": steady * 1000,
            "cpu_ms_per_task": {"master": (cpu1[0] - cpu0[0]) / tasks * 1000,
                                "slave_daemons": (cpu1[1] - cpu0[1]) / tasks * 1000,
                                "sshd_and_agents": (cpu1[2] - cpu0[2]) / tasks * 1000}}


def warm_up(pool: Pool, root: Path, job: Path, concurrency: int) -> None:
    """Page cache, the job archive on every slave, one short parallel run: nothing timed."""
    run_bare(root / "warmup-bare", 4 * concurrency, concurrency)
    params = write_params(root / "warmup-params.json", 4 * len(pool.slaves))
    run_sparecycles(pool, job, params, 4 * len(pool.slaves), "warmup")
    run_parallel(pool, root, 2, concurrency, "warmup")


# ----- the report -------------------------------------------------------------------------

def per_task(run: dict, concurrency: int) -> tuple[float, float]:
    """(wall ms per task, slot ms per task)."""
    wall = run["seconds"] / run["tasks"] * 1000
    return wall, wall * concurrency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=400, help="tasks for SpareCycles and the bare baseline")
    parser.add_argument("--parallel-tasks", type=int, default=40,
                        help="tasks for GNU parallel (it opens several ssh connections per task; compared per task)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slaves", type=int, default=2, help="slave daemons behind the loopback sshd")
    parser.add_argument("--slots-per-slave", type=int, default=1,
                        help="slots of each slave daemon; CONCURRENCY = slaves x this, used by every runner")
    parser.add_argument("--task-nice", type=int, metavar="N",
                        help="niceness of SpareCycles' tasks (the slaves' config 'nice'; default SpareCycles' "
                             "default, 10). Bare spawns and GNU parallel's jobs run at the benchmark's niceness")
    parser.add_argument("--parallel-controlmaster", action="store_true",
                        help="also run GNU parallel with --controlmaster (ssh connection reuse), for information")
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (for debugging)")
    args = parser.parse_args(argv)
    if min(args.tasks, args.parallel_tasks, args.repeats, args.slaves, args.slots_per_slave) < 1:
        parser.error("--tasks, --parallel-tasks, --repeats, --slaves and --slots-per-slave must be at least 1")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"BROKEN: missing {', '.join(missing)} (Debian: openssh-server openssh-client parallel rsync)",
              file=sys.stderr)
        return 1
    exit_cleanly_on_sigterm()
    concurrency = args.slaves * args.slots_per_slave

    info = machine_info()
    nice = "SpareCycles' default" if args.task_nice is None else args.task_nice
    print(f"SpareCycles over SSH: {args.tasks} trivial tasks on {args.slaves} slave daemon(s) x "
          f"{args.slots_per_slave} slot(s) behind a loopback sshd; GNU parallel {args.parallel_tasks} tasks; "
          f"bare {args.tasks} spawns; concurrency {concurrency}; {args.repeats} repeats; task niceness {nice}")
    print_machine_info(info)

    runs: list[dict] = []
    extra: dict = {}
    root_seen: Path | None = None
    broken: str | None = None
    try:
        with bench_workspace("sparecycles-bench-ssh-", keep=args.keep) as (root, processes):
            root_seen = root
            with Pool(root, processes, task_nice=args.task_nice) as pool:
                for n in range(args.slaves):
                    pool.add_slave(chr(ord("a") + n), args.slots_per_slave)
                pool.start_master()
                extra["connect_seconds"] = pool.wait_connected()
                job = write_job(root / "trivial", TRIVIAL_MAIN)
                params = write_params(root / "params.json", args.tasks)
                print(f"master connected to {args.slaves} slave(s) over SSH in {extra['connect_seconds']:.2f} s "
                      f"(sshd on 127.0.0.1:{pool.sshd.port}); warming up", flush=True)
                warm_up(pool, root, job, concurrency)
                kinds = ["bare", "sparecycles", "parallel"]
                for repeat in range(1, args.repeats + 1):
                    shift = (repeat - 1) % len(kinds)
                    order = kinds[shift:] + kinds[:shift]
                    result: dict = {"repeat": repeat, "order": order}
                    for kind in order:
                        if kind == "bare":
                            result["bare"] = run_bare(root / f"bare-{repeat}", args.tasks, concurrency)
                        elif kind == "sparecycles":
                            result["sparecycles"] = run_sparecycles(pool, job, params, args.tasks, str(repeat))
                        else:
                            result["parallel"] = run_parallel(pool, root, args.parallel_tasks, concurrency,
                                                              str(repeat))
                    if args.parallel_controlmaster:
                        result["parallel_controlmaster"] = run_parallel(pool, root, args.parallel_tasks, concurrency,
                                                                        f"{repeat}-cm", controlmaster=True)
                    spare = result["sparecycles"]
                    result["overhead_ms"] = ((spare["seconds"] - result["bare"]["seconds"]) * concurrency
                                             / args.tasks * 1000)
                    result["ratio"] = per_task(result["parallel"], concurrency)[1] / per_task(spare, concurrency)[1]
                    runs.append(result)
                    _print_repeat(result, concurrency)
    except BenchError as exc:
        broken = str(exc)
    finally:
        broken = with_leftovers(broken, root_seen)
    if broken:
        print(f"\nBROKEN: {broken}", file=sys.stderr)
        return 1

    def med(kind: str, index: int) -> float:
        return median([per_task(r[kind], concurrency)[index] for r in runs])

    summary = {kind: {"wall_ms_per_task": med(kind, 0), "slot_ms_per_task": med(kind, 1)}
               for kind in ("bare", "sparecycles", "parallel") + (("parallel_controlmaster",)
                                                                  if args.parallel_controlmaster else ())}
    ratio = median([r["ratio"] for r in runs])
    overhead = median([r["overhead_ms"] for r in runs])
    ratio_met, overhead_met = ratio >= TARGET_RATIO, overhead <= TARGET_OVERHEAD_MS
    print()
    print(f"medians over {args.repeats} repeats, concurrency {concurrency} "
          f"(wall = wall time / tasks; slot = wall x {concurrency} / tasks, what a task costs one slot):")
    for kind, label in (("bare", "bare spawn"), ("sparecycles", "SpareCycles"), ("parallel", "GNU parallel"),
                        ("parallel_controlmaster", "GNU parallel -M")):
        if kind in summary:
            print(f"  {label:<15} {summary[kind]['wall_ms_per_task']:8.1f} ms wall/task "
                  f"{summary[kind]['slot_ms_per_task']:8.1f} ms slot/task")
    print(f"GNU parallel / SpareCycles per task: {ratio:.1f}x   target >= {TARGET_RATIO:g}x  "
          f"-> {'MET' if ratio_met else 'NOT MET'}")
    print(f"SpareCycles per-task overhead over a bare local spawn: {overhead:.1f} ms   "
          f"target <= {TARGET_OVERHEAD_MS:g} ms  -> {'MET' if overhead_met else 'NOT MET'}")
    print(f"load average at end {loadavg()} (other load on this shared machine inflates every figure)")
    if args.json:
        print(json.dumps({
            "benchmark": "ssh_overhead", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": info,
            "tasks": args.tasks, "parallel_tasks": args.parallel_tasks, "repeats": args.repeats,
            "slaves": args.slaves, "slots_per_slave": args.slots_per_slave, "concurrency": concurrency,
            "task_nice": args.task_nice, "loadavg_at_end": loadavg(), **extra, "runs": runs, "summary": summary,
            "ratio": ratio, "target_ratio": TARGET_RATIO, "ratio_met": ratio_met,
            "overhead_ms_per_task": overhead, "target_overhead_ms": TARGET_OVERHEAD_MS,
            "overhead_met": overhead_met,
        }))
    return 0


def _print_repeat(result: dict, concurrency: int) -> None:
    parts = []
    for kind, label in (("bare", "bare"), ("sparecycles", "sparecycles"), ("parallel", "parallel"),
                        ("parallel_controlmaster", "parallel -M")):
        if kind in result:
            run = result[kind]
            wall, slot = per_task(run, concurrency)
            parts.append(f"{label} {run['tasks']} in {run['seconds']:.2f} s ({wall:.1f} ms wall, {slot:.1f} ms slot)")
    print(f"repeat {result['repeat']} ({' > '.join(result['order'])}): " + "; ".join(parts))
    spare = result["sparecycles"]
    cpu = spare["cpu_ms_per_task"]
    print(f"    ratio {result['ratio']:.1f}x, overhead {result['overhead_ms']:.1f} ms/task; sparecycles: submit "
          f"{spare['submit_seconds'] * 1000:.0f} ms, first result written {spare['first_result_after_s']:.2f} s "
          f"after submit began, {spare['steady_ms_between_results']:.1f} ms between collected results, "
          f"seen done {spare['done_after_last_collected_s'] * 1000:.0f} ms after the last; hosts "
          f"{','.join(spare['hosts'])}; CPU ms/task: master {cpu['master']:.1f}, slave daemons "
          f"{cpu['slave_daemons']:.1f}, sshd+agents {cpu['sshd_and_agents']:.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
