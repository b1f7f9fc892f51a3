"""Fair share between three masters with unequal queues, on two real slaves.

Three masters (own SPARECYCLES_HOME each) share two slave daemons with two
slots each behind a real sshd on 127.0.0.1. Their queues differ 4:2:1. For the
time all three had demand, the script prints each master's share of the
slot-seconds and Jain's fairness index J = (sum x)^2 / (n * sum x^2), which is
1.0 for perfect equality and 1/n when one master takes everything.

Baseline, measured in the same run: the same scenario with the slaves granting
slots in proportion to each master's queue length (``SPARECYCLES_GRANT_POLICY=by_demand``
in the slave daemons' environment: not a user setting, no user wants it), which
is what a slave picking a random *task* does.

The masters arrive one after another, largest queue first, STAGGER seconds
apart (default 3 s): the first fills every slot before the others show up,
as in the issue's scenario, so the figure covers newcomers claiming their
share from an incumbent. ``--stagger 0`` starts them together.

Fair share runs twice: with ``--no-local`` (the slaves' slots are all there
is) and in the default configuration, each master also running tasks on its
own cores; the shares are of the slaves' slot-seconds either way.

Target: J >= 0.95 under fair share, in both configurations.

    .venv/bin/python bench/fair_share.py [--task-s 0.3] [--queues 240,120,60] [--stagger 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.daemons import SlaveDaemon  # noqa: E402
from support.pool import register_slave  # noqa: E402
from support.sshd import Sshd  # noqa: E402

from trayapp.master.store import Store  # noqa: E402

TASK = """
import json, os, sys, time
time.sleep(json.loads(sys.argv[1])["s"])
os.makedirs("results", exist_ok=True)
open("results/ok", "w").write("1")
"""


def cli(home: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "sparecycles", *args], capture_output=True, text=True,
                         env={**os.environ, "SPARECYCLES_HOME": str(home)})
    if out.returncode:
        raise SystemExit(f"sparecycles {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def run_scenario(root: Path, policy: str, queues: list[int], task_s: float, stagger_s: float,
                 local: bool = False) -> dict:
    sshd = Sshd(root / "sshd").start()
    slaves, masters = [], []
    try:
        for k in range(2):
            home = root / f"slave{k}"
            home.mkdir(parents=True)
            slaves.append(SlaveDaemon(home, slots=2, env={"SPARECYCLES_GRANT_POLICY": policy}).start())
        homes = []
        for m, n in enumerate(queues):
            home = root / f"master{m}"
            for k, slave in enumerate(slaves):
                register_slave(f"s{k}", sshd, slave, {"SPARECYCLES_HOME": str(home)})
            job = root / f"job{m}"
            job.mkdir()
            (job / "main.py").write_text(TASK)
            params = root / f"params{m}.json"
            params.write_text(json.dumps([{"i": i, "s": task_s} for i in range(n)]))
            cli(home, "submit", str(job), "--params", str(params), "--no-start")
            homes.append(home)
        for m, home in enumerate(homes):
            if m:
                time.sleep(stagger_s)  # the earlier masters hold every slot by now
            where = [] if local else ["--no-local"]
            masters.append(subprocess.Popen([sys.executable, "-m", "sparecycles", "master", *where,
                                             "--until-idle", "1"], env={**os.environ, "SPARECYCLES_HOME": str(home)},
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for proc in masters:
            if proc.wait(1800) != 0:
                raise SystemExit("a master failed")
        spans = []
        for home in homes:
            store = Store(home / "queue.sqlite3")
            job = store.jobs()[0]
            if job.status.value != "done":
                raise SystemExit(f"job of {home.name} ended {job.status.value}")
            spans.append([(r["started"], r["ended"]) for r in store.attempts(job.seq)
                          if r["outcome"] == "succeeded" and r["host"] != "local"])
            store.close()
    finally:
        for proc in masters:
            if proc.poll() is None:
                proc.kill()
        for slave in slaves:
            slave.stop()
        sshd.stop()
    # The window in which every master still had queued work: from the last
    # master's first start to the first master's last start.
    start = max(min(s for s, _ in spans_m) for spans_m in spans)
    end = min(max(s for s, _ in spans_m) for spans_m in spans)
    slot_seconds = [sum(max(0.0, min(e, end) - max(s, start)) for s, e in spans_m) for spans_m in spans]
    total = sum(slot_seconds)
    shares = [x / total for x in slot_seconds]
    jain = total ** 2 / (len(slot_seconds) * sum(x * x for x in slot_seconds))
    return {"policy": policy, "local": local, "window_s": end - start, "shares": shares, "jain": jain}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", default="240,120,60", help="tasks per master")
    parser.add_argument("--task-s", type=float, default=0.3, help="seconds each task sleeps")
    parser.add_argument("--stagger", type=float, default=3.0, help="seconds between the masters' arrivals")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    queues = [int(x) for x in args.queues.split(",")]
    results = []
    for policy, local in (("fair", False), ("fair", True), ("by_demand", False)):
        with tempfile.TemporaryDirectory(prefix="sc-fairshare-") as tmp:
            started = time.monotonic()
            result = run_scenario(Path(tmp), policy, queues, args.task_s, args.stagger, local)
            result["wall_s"] = time.monotonic() - started
            results.append(result)
    print(f"3 masters with queues {queues} of {args.task_s:g} s tasks on 2 slaves x 2 slots (real sshd, loopback), "
          f"arriving {args.stagger:g} s apart")
    for r in results:
        shares = "  ".join(f"M{i}({queues[i]}): {s:5.1%}" for i, s in enumerate(r["shares"]))
        label = "baseline: by queue length"
        if r["policy"] == "fair":
            label = "fair share, own cores on" if r["local"] else "fair share, --no-local"
        print(f"{label:27s} {shares}   Jain index {r['jain']:.3f}  (window {r['window_s']:.1f} s)")
    fair = min(results[0]["jain"], results[1]["jain"])
    print(f"target: Jain index >= 0.95 under fair share, with and without own cores -> "
          f"{'MET' if fair >= 0.95 else 'NOT MET'} ({results[0]['jain']:.3f}, {results[1]['jain']:.3f})")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
