"""Per-task overhead of SpareCycles over SSH, against GNU parallel and bare spawns.

The same trivial ``main.py`` (reads ``{"i": k}`` from argv[1], writes
``results/out-<k>.txt`` holding k) runs in four ways, with the same number of
tasks in flight (CONCURRENCY = slaves x slots per slave, default 2 x 2 = 4,
issue 22's set-up: 100 tasks through 2 slaves x 2 slots):

* SpareCycles: a loopback sshd (``tests/support/sshd.Sshd``) and SLAVES slave
  daemons (``sparecycles slave --slots S``, each in its own home) registered
  in a master home with ``hosts add`` + ``hosts trust --fingerprint``; one
  ``master --no-local`` runs for the whole benchmark and has connected to
  every slave before any timing starts (its connect time is reported apart).
  A run is timed from just before ``submit --no-start`` of TASKS tasks until
  the queue says the job has no unfinished task (polled every 50 ms,
  in-process and read-only: what ``status`` reads, without spawning an
  interpreter 20 times a second). Results come back over SFTP; every one of
  ``<results>/<k>/out-<k>.txt`` is checked. The sandbox is on (the default;
  ``--sandbox off`` for information).
* release: the same, with the code of an earlier release (default 0.1.0,
  commit 9ea5e1c) in its own venv (``_release.py`` builds it once under
  ``~/.cache/sparecycles-bench``): its own sshd, slave daemons, agents,
  master and CLI, the same task interpreter. ``--release none`` skips it.
* GNU parallel: the same sshd and client key, one sshlogin
  ``CONCURRENCY/ssh -p PORT -i KEY -o UserKnownHostsFile=... -o BatchMode=yes
  root@127.0.0.1`` (CONCURRENCY job slots on it: both "slaves" are the same
  sshd on 127.0.0.1, so one sshlogin with 2 slots and two sshlogins with 1 are
  the same thing to GNU parallel: every job opens its own ssh connections
  either way), ``--wd REMOTE/{k}`` (a folder per task, like SpareCycles' task
  folders), ``--transferfile main.py``, ``--return results/out-{k}.txt``,
  ``--cleanup``. GNU parallel opens several ssh connections per task (rsync
  there, the job, rsync back, cleanup), so it runs PARALLEL_TASKS tasks
  (default 20) and is compared per task. ``PARALLEL_HOME`` points into the
  benchmark's temporary folder so it leaves nothing in ~/.parallel.
* bare: TASKS ``sys.executable main.py '{"i": k}'`` spawns, CONCURRENCY at a
  time, in one local folder: the least any runner could do.

Figures (medians over the repeats; the kinds alternate order between repeats):

* per-task wall time = wall / tasks, and slot time per task = wall / tasks x
  CONCURRENCY (what one task costs one slot);
* ratio = GNU parallel's slot time per task / SpareCycles' (target >= 40x);
* today / release = SpareCycles' wall time / the release's, per repeat
  (target <= 1.05: no slower than 0.1.0, sandbox and all);
* SpareCycles' per-task overhead over bare spawns =
  (T_sparecycles - T_bare) x CONCURRENCY / TASKS (target <= 25 ms);
* where the time goes: CPU seconds per task of the master, the slave daemons,
  the sshd side (sshd sessions + agents) and the task trees (what the slave
  daemons reaped: wrapper, sandbox and task), measured over each run.

    .venv/bin/python bench/ssh_overhead.py [--tasks 100] [--parallel-tasks 20] [--repeats 3]
        [--slaves 2] [--slots-per-slave 2] [--release 9ea5e1c|none] [--sandbox on|off]
        [--task-nice N] [--json]

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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

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
from _release import RELEASE_0_1_0, release_program  # noqa: E402

MARKER_FILE = ".sparecycles.json"  # trayapp.master.results.MARKER_FILE, spelled out
TARGET_RATIO = 40.0  # issue 22 (was 20x)
TARGET_OVERHEAD_MS = 25.0
TARGET_VS_RELEASE = 1.05  # issue 22: within 1.05x of release 0.1.0, sandbox on
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


def _task_cpu(slaves: list[psutil.Process]) -> float:
    """CPU seconds of the slave daemons' task trees (wrapper, sandbox, task): the
    ``cpu.stat`` of the cgroup each daemon makes its tasks' cgroups in (it keeps
    the usage of removed children), else what the daemon reaped (which misses
    what a sandbox's pid namespace reaps itself)."""
    total = 0.0
    for proc in slaves:
        try:
            own = next(line[3:] for line in Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()
                       if line.startswith("0::"))
            stat = Path(CGROUP2) / own.lstrip("/") / f"sparecycles-{proc.pid}" / "cpu.stat"
            usage = next(line for line in stat.read_text().splitlines() if line.startswith("usage_usec "))
            total += int(usage.split()[1]) / 1e6
        except (OSError, StopIteration, ValueError):
            try:
                t = proc.cpu_times()
                total += t.children_user + t.children_system
            except psutil.Error:
                pass
    return total


def _cgroup2_mount() -> str:
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return left.split()[4]
    except OSError:
        pass
    return "/sys/fs/cgroup"


CGROUP2 = _cgroup2_mount()


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
    cpu0 = (_cpu([master]), _cpu(slaves), _cpu(sshd_side), _task_cpu(slaves))
    t0, t0_epoch = time.perf_counter(), time.time()
    submitted, submit_s = pool.cli(["submit", str(job), "--params", str(params), "--name", f"ssh-{tag}",
                                    "--json", "--no-start"])
    info = json.loads(submitted.stdout)
    t_done = wait_job_done(pool.master_home, info["job"], timeout=120 + 2.0 * tasks, master=pool.master)
    elapsed = t_done - t0
    cpu1 = (_cpu([master]), _cpu(slaves), _cpu(sshd_side), _task_cpu(slaves))
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
                                "sshd_and_agents": (cpu1[2] - cpu0[2]) / tasks * 1000,
                                "tasks": (cpu1[3] - cpu0[3]) / tasks * 1000}}


def warm_up(pool: Pool, root: Path, job: Path, concurrency: int, *, baselines: bool = True) -> None:
    """Page cache, the job archive on every slave, one short parallel run: nothing timed."""
    if baselines:
        run_bare(root / "warmup-bare", 4 * concurrency, concurrency)
    params = write_params(root / f"warmup-params-{pool.root.name}.json", 4 * concurrency)
    run_sparecycles(pool, job, params, 4 * concurrency, "warmup")
    if baselines:
        run_parallel(pool, root, 2, concurrency, "warmup")


# ----- the report -------------------------------------------------------------------------

def per_task(run: dict, concurrency: int) -> tuple[float, float]:
    """(wall ms per task, slot ms per task)."""
    wall = run["seconds"] / run["tasks"] * 1000
    return wall, wall * concurrency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks for SpareCycles and the bare baseline")
    parser.add_argument("--parallel-tasks", type=int, default=20,
                        help="tasks for GNU parallel (it opens several ssh connections per task; compared per task)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slaves", type=int, default=2, help="slave daemons behind the loopback sshd")
    parser.add_argument("--slots-per-slave", type=int, default=2,
                        help="slots of each slave daemon; CONCURRENCY = slaves x this, used by every runner")
    parser.add_argument("--release", default=RELEASE_0_1_0, metavar="COMMIT",
                        help="also run an earlier release's code side by side (default 0.1.0, %(default)s); "
                             "'none' to skip")
    parser.add_argument("--release-cache", type=Path, metavar="DIR",
                        help="where the release's tree and venv are built (default ~/.cache/sparecycles-bench)")
    parser.add_argument("--sandbox", choices=("on", "off"), default="on",
                        help="today's slaves with the bubblewrap sandbox (default, what users get) or without")
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
        print(f"BROKEN: missing {', '.join(missing)} (Debian: openssh-server openssh-client parallel rsync; "
              "scripts/system-packages.sh installs them)", file=sys.stderr)
        return 1
    exit_cleanly_on_sigterm()
    concurrency = args.slaves * args.slots_per_slave
    release = None if args.release.lower() == "none" else args.release
    try:
        release_prog = release_program(release, args.release_cache) if release else None
    except BenchError as exc:
        print(f"BROKEN: cannot build release {release}: {exc}", file=sys.stderr)
        return 1

    info = machine_info()
    nice = "SpareCycles' default" if args.task_nice is None else args.task_nice
    print(f"SpareCycles over SSH: {args.tasks} trivial tasks on {args.slaves} slave daemon(s) x "
          f"{args.slots_per_slave} slot(s) behind a loopback sshd, sandbox {args.sandbox}"
          f"{f', and the same with release {release} ({release_prog[0]})' if release else ''}; "
          f"GNU parallel {args.parallel_tasks} tasks; bare {args.tasks} spawns; concurrency {concurrency}; "
          f"{args.repeats} repeats; task niceness {nice}")
    print_machine_info(info)

    runs: list[dict] = []
    extra: dict = {}
    root_seen: Path | None = None
    broken: str | None = None
    try:
        with bench_workspace("sparecycles-bench-ssh-", keep=args.keep) as (root, processes):
            root_seen = root
            job = write_job(root / "trivial", TRIVIAL_MAIN)
            params = write_params(root / "params.json", args.tasks)
            with ExitStack() as stack:
                pools = {"sparecycles": stack.enter_context(_start_pool(root, processes, args, None))}
                if release:
                    pools["release"] = stack.enter_context(_start_pool(root / "release", processes, args,
                                                                       release_prog))
                for kind, pool in pools.items():
                    extra[f"{kind}_connect_seconds"] = seconds = pool.wait_connected()
                    print(f"{kind}: master connected to {args.slaves} slave(s) over SSH in {seconds:.2f} s "
                          f"(sshd on 127.0.0.1:{pool.sshd.port}); warming up", flush=True)
                    warm_up(pool, root, job, concurrency, baselines=kind == "sparecycles")
                today = pools["sparecycles"]
                # Today's code and the release's run back to back (which goes first
                # alternates), so the load of the shared machine is as alike as it gets.
                units = [["bare"], list(pools), ["parallel"]]
                for repeat in range(1, args.repeats + 1):
                    shift = (repeat - 1) % len(units)
                    pair = list(pools) if repeat % 2 else list(reversed(pools))
                    order = [kind for unit in units[shift:] + units[:shift]
                             for kind in (pair if unit == list(pools) else unit)]
                    result: dict = {"repeat": repeat, "order": order}
                    for kind in order:
                        if kind == "bare":
                            result["bare"] = run_bare(root / f"bare-{repeat}", args.tasks, concurrency)
                        elif kind == "parallel":
                            result["parallel"] = run_parallel(today, root, args.parallel_tasks, concurrency,
                                                              str(repeat))
                        else:
                            result[kind] = run_sparecycles(pools[kind], job, params, args.tasks, f"{kind}-{repeat}")
                    if args.parallel_controlmaster:
                        result["parallel_controlmaster"] = run_parallel(today, root, args.parallel_tasks, concurrency,
                                                                        f"{repeat}-cm", controlmaster=True)
                    spare = result["sparecycles"]
                    result["overhead_ms"] = ((spare["seconds"] - result["bare"]["seconds"]) * concurrency
                                             / args.tasks * 1000)
                    result["ratio"] = per_task(result["parallel"], concurrency)[1] / per_task(spare, concurrency)[1]
                    if release:
                        result["vs_release"] = spare["seconds"] / result["release"]["seconds"]
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

    measured = ("bare", "sparecycles") + (("release",) if release else ()) + ("parallel",) + (
        ("parallel_controlmaster",) if args.parallel_controlmaster else ())
    summary = {kind: {"wall_ms_per_task": med(kind, 0), "slot_ms_per_task": med(kind, 1),
                      "seconds": median([r[kind]["seconds"] for r in runs])} for kind in measured}
    ratio = median([r["ratio"] for r in runs])
    overhead = median([r["overhead_ms"] for r in runs])
    ratio_met, overhead_met = ratio >= TARGET_RATIO, overhead <= TARGET_OVERHEAD_MS
    vs_release = median([r["vs_release"] for r in runs]) if release else None
    print()
    print(f"medians over {args.repeats} repeats, concurrency {concurrency} "
          f"(wall = wall time / tasks; slot = wall x {concurrency} / tasks, what a task costs one slot):")
    for kind, label in _LABELS:
        if kind in summary:
            print(f"  {label:<15} {summary[kind]['wall_ms_per_task']:8.1f} ms wall/task "
                  f"{summary[kind]['slot_ms_per_task']:8.1f} ms slot/task "
                  f"({summary[kind]['seconds']:.2f} s for {runs[0][kind]['tasks']} tasks)")
    if release:
        print(f"SpareCycles today / release {release}, wall time: {vs_release:.3f}x   target <= "
              f"{TARGET_VS_RELEASE:g}x  -> {'MET' if vs_release <= TARGET_VS_RELEASE else 'NOT MET'} "
              f"(per repeat: {', '.join(format(r['vs_release'], '.3f') for r in runs)})")
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
            "sandbox": args.sandbox, "release": release, "task_nice": args.task_nice, "loadavg_at_end": loadavg(),
            **extra, "runs": runs, "summary": summary, "ratio": ratio, "target_ratio": TARGET_RATIO,
            "ratio_met": ratio_met, "overhead_ms_per_task": overhead, "target_overhead_ms": TARGET_OVERHEAD_MS,
            "overhead_met": overhead_met, "vs_release": vs_release, "target_vs_release": TARGET_VS_RELEASE,
        }))
    return 0


@contextmanager
def _start_pool(root: Path, processes, args, program: list[str] | None) -> Iterator[Pool]:
    """A loopback sshd, ``args.slaves`` slave daemons and a master, of this
    checkout (``program`` None) or of another installation."""
    root.mkdir(parents=True, exist_ok=True)
    with Pool(root, processes, task_nice=args.task_nice, program=program) as pool:
        if program is None and args.sandbox == "off":
            pool.slave_env = {**pool.slave_env, "SPARECYCLES_SANDBOX": "off"}
        for n in range(args.slaves):
            pool.add_slave(chr(ord("a") + n), args.slots_per_slave)
        pool.start_master()
        yield pool


_LABELS = (("bare", "bare spawn"), ("sparecycles", "SpareCycles"), ("release", "release"),
           ("parallel", "GNU parallel"), ("parallel_controlmaster", "GNU parallel -M"))


def _print_repeat(result: dict, concurrency: int) -> None:
    parts = []
    for kind, label in _LABELS:
        if kind in result:
            run = result[kind]
            wall, slot = per_task(run, concurrency)
            parts.append(f"{label} {run['tasks']} in {run['seconds']:.2f} s ({wall:.1f} ms wall, {slot:.1f} ms slot)")
    print(f"repeat {result['repeat']} ({' > '.join(result['order'])}): " + "; ".join(parts))
    vs = f", today/release {result['vs_release']:.3f}x" if "vs_release" in result else ""
    print(f"    ratio {result['ratio']:.1f}x, overhead {result['overhead_ms']:.1f} ms/task{vs}")
    for kind in ("sparecycles", "release"):
        if kind not in result:
            continue
        spare = result[kind]
        cpu = spare["cpu_ms_per_task"]
        print(f"    {kind}: submit {spare['submit_seconds'] * 1000:.0f} ms, first result written "
              f"{spare['first_result_after_s']:.2f} s after submit began, {spare['steady_ms_between_results']:.1f} "
              f"ms between collected results, seen done {spare['done_after_last_collected_s'] * 1000:.0f} ms after "
              f"the last; hosts {','.join(spare['hosts'])}; CPU ms/task: master {cpu['master']:.1f}, slave daemons "
              f"{cpu['slave_daemons']:.1f}, sshd+agents {cpu['sshd_and_agents']:.1f}, task trees {cpu['tasks']:.1f}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
