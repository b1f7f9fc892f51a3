"""``sparecycles hosts test NAME`` for a cluster, once logged in to its login node:
what works, what SLURM allows, and what SpareCycles will do there."""

from __future__ import annotations

import shlex
from typing import Iterator

from trayapp.errors import UserError
from trayapp.master.slurm.cluster import Cluster, ClusterProblem, SlurmBusy, sbatch_fix
from trayapp.master.slurm.options import SlurmOptions
from trayapp.master.slurm.script import shell_word
from trayapp.master.slurm.squeue import config_int
from trayapp.wire.ssh import SSHShell


def probe(shell: SSHShell, options: SlurmOptions, host_name: str) -> Iterator[tuple[str, str]]:
    """Each check as (label, what was found); raises UserError (problem and fix)
    at the first one that fails."""
    cluster = Cluster(shell, options, host_name)
    try:
        layout = cluster.prepare()
    except ClusterProblem as exc:
        raise UserError(exc.problem, exc.fix) from None
    yield "setup", ("--setup works; " if options.setup.strip() else "") + "sbatch, squeue and scancel are there"
    yield "remote root", layout.root
    args = " ".join(shlex.quote(a) for a in ["sbatch", "--test-only", "--array=0-1", *options.sbatch_options(None),
                                             "--wrap", "true"])
    tried = cluster.run(f"{args} 2>&1")
    said = tried.stdout.strip().splitlines()[-1] if tried.stdout.strip() else ""
    if tried.code != 0:
        raise UserError(f"sbatch --test-only refused the job: {said or tried.stderr.strip()}",
                        sbatch_fix(tried.stdout, host_name))
    yield "sbatch", f"--test-only accepts arrays with {' '.join(options.sbatch_options(None))}: {said}"
    accounting = cluster.run("sacct -n -X -S now-1hours -o JobID 2>&1 | head -n 3")
    if accounting.code == 0 and not any(w in accounting.stdout.lower() for w in ("disabled", "error")):
        yield "sacct", "works: tasks that vanish without a marker can be looked up there"
    else:
        yield "sacct", (f"does not work here ({accounting.stdout.strip()[:120]}); tasks are judged by squeue "
                        "states and their marker files only")
    try:
        config = cluster.config()
    except SlurmBusy as exc:
        raise UserError(str(exc), "check that the SLURM controller is up ('sinfo' on the login node)") from None
    array_size = config_int(config, "MaxArraySize") or 1001
    min_age = config_int(config, "MinJobAge")
    max_submit = config_int(config, "MaxSubmitJobs")
    budget = min(options.max_in_flight, max_submit or 10 ** 9)
    yield "limits", (f"MaxArraySize {array_size}, MinJobAge {min_age if min_age is not None else '?'} s, "
                     f"MaxSubmitJobs {max_submit or 'unlimited'}")
    yield "plan", (f"arrays of up to {min(array_size, budget)} tasks, at most {budget} in flight, "
                   f"{options.throttle} running at once per array; squeue every {options.poll_s:g} s")
    if min_age is not None and 0 < min_age < 2 * options.poll_s:
        yield "warning", (f"MinJobAge ({min_age} s) is shorter than two polls ({2 * options.poll_s:g} s): a task "
                          "SLURM ends (time limit, node failure) may vanish before it is seen; poll more often")
    python = cluster.run(f"command -v {shell_word(options.python)}")
    yield "python", (f"{options.python} is {python.stdout.strip()} on the login node" if python.code == 0 else
                     f"{options.python} is not on the login node's PATH; if the compute nodes lack it too, the "
                     "first task says so on the host's row")
