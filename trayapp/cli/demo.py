"""``sparecycles demo``: the bundled Brian sweep, end to end on this PC.

It is the first thing a new user runs, so it checks what usually goes wrong
(no Brian in the task environment) before queueing anything, and ends with
where the results are and what they say.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from trayapp.app import App
from trayapp.cli.output import exit_for
from trayapp.install.bundled import resource_path
from trayapp.install.taskenv import task_interpreter
from trayapp.master.progress import wait_for_job
from trayapp.status import TaskStatus

EXIT_NO_BRIAN = 3


def brian_is_installed(python: str) -> bool:
    # find_spec, not import: importing brian2 takes a second; finding it, milliseconds.
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('brian2') else 1)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run_demo(app: App, *, timeout: float | None = None, out=None) -> int:
    out = out or sys.stdout
    python = task_interpreter(app.config.task_python, home=app.home)
    if not brian_is_installed(python):
        print(f"sparecycles demo: Brian 2 is not installed in the task environment ({python}).\n"
              f"  fix: install it there with\n"
              f"         {python} -m pip install 'brian2>=2.5' 'numpy<2'\n"
              f"       (or, for a pip install of SpareCycles: pip install 'sparecycles[brian]'),\n"
              f"       then run 'sparecycles demo' again.", file=sys.stderr)
        return EXIT_NO_BRIAN
    folder = resource_path("demo")
    started = time.monotonic()
    jobs = app.jobs()
    job = jobs.submit(folder, start=False, params=folder / "params.toml", name="brian-demo").job
    print(f"queued the Brian demo sweep as job {job.id}: {job.total} parameter sets on "
          f"{app.config.effective_slots} local slot(s)", file=out, flush=True)
    jobs.ensure_dispatcher()
    job = wait_for_job(app.store, job.id, timeout=timeout)
    elapsed = time.monotonic() - started
    code = exit_for(job)
    print(summarize(app, job.id, elapsed), file=out)
    return code


def summarize(app: App, job_id: str, elapsed: float) -> str:
    job = app.store.job(job_id)
    rows = []
    for task in app.store.tasks(job.seq):
        summary_file = Path(job.results_dir) / str(task.idx) / "summary.json"
        if task.status is TaskStatus.DONE and summary_file.exists():
            rows.append((task.params, json.loads(summary_file.read_text())["rate_hz"]))
    lines = [f"results: {job.results_dir}"]
    for params, rate in rows:
        lines.append(f"  input_rate_hz={params.get('input_rate_hz')!s:>4}  g_inh={params.get('g_inh')!s:>3}"
                     f"  ->  {rate:6.1f} Hz")
    if rows:
        (low_p, low), (high_p, high) = min(rows, key=lambda r: r[1]), max(rows, key=lambda r: r[1])
        lines.append(
            f"{len(rows)}/{job.total} tasks done in {elapsed:.1f} s: excitatory firing rate from {low:.1f} Hz "
            f"(input {low_p.get('input_rate_hz')} Hz, g={low_p.get('g_inh')}) to {high:.1f} Hz "
            f"(input {high_p.get('input_rate_hz')} Hz, g={high_p.get('g_inh')})")
    else:
        lines.append(f"no task of the demo finished; see: sparecycles status {job.id}")
    return "\n".join(lines)
