"""``sparecycles hosts test NAME`` for a cluster: what works, what SLURM allows, what we will do."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from trayapp.master.slurm.cluster import Cluster, ClusterProblem, SlurmBusy, sbatch_fix
from trayapp.master.slurm.options import SlurmOptions
from trayapp.master.slurm.squeue import config_int
from trayapp.wire.links import LinkClosed
from trayapp.wire.ssh import ClientKeyError, HostKeyError, SSHShell


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str | None = None

    def line(self) -> str:
        return f"{'ok ' if self.ok else 'BAD'}  {self.what}" + (f"\n     fix: {self.fix}" if self.fix else "")


def probe(connect, options: SlurmOptions, host_name: str, poll_s: float) -> list[Finding]:
    """Every check, in order; stops at the first one the rest depend on."""
    findings: list[Finding] = []
    try:
        shell: SSHShell = connect()
    except (LinkClosed, HostKeyError, ClientKeyError) as exc:
        return [Finding(False, f"SSH to the login node: {exc}",
                        "check --host/--port/--user/--key, and 'sparecycles hosts trust' the login node")]
    findings.append(Finding(True, f"SSH to the login node {shell.host.address}:{shell.host.port}"))
    try:
        cluster = Cluster(shell, options, host_name)
        try:
            layout = cluster.prepare()
        except ClusterProblem as exc:
            return findings + [Finding(False, exc.problem, exc.fix)]
        findings.append(Finding(True, f"--setup works and SLURM's commands are there; remote root {layout.root}"))
        findings += _test_submission(cluster, options, host_name)
        findings += _limits(cluster, options, poll_s)
        python = cluster.run(f"command -v {shlex.quote(options.python)}")
        findings.append(Finding(True, f"--python {options.python} is {python.stdout.strip()} on the login node")
                        if python.code == 0 else
                        Finding(True, f"--python {options.python} is not on the login node's PATH; tasks will "
                                "say so on the host's row if the compute nodes lack it too"))
    finally:
        shell.close()
    return findings


def _test_submission(cluster: Cluster, options: SlurmOptions, host_name: str) -> list[Finding]:
    args = " ".join(shlex.quote(a) for a in ["sbatch", "--test-only", "--array=0-1",
                                             *options.sbatch_options(None), "--wrap", "true"])
    result = cluster.run(f"{args} 2>&1")
    if result.code != 0:
        return [Finding(False, f"sbatch --test-only refused the job: {result.stdout.strip()}",
                        sbatch_fix(result.stdout, host_name))]
    accounting = cluster.run("sacct -n -X -S now-1hours -o JobID 2>&1 | head -n 3")
    found = [Finding(True, f"sbatch --test-only accepts arrays with {' '.join(options.sbatch_options(None))}: "
                           f"{result.stdout.strip().splitlines()[-1] if result.stdout.strip() else 'ok'}")]
    if accounting.code == 0 and "disabled" not in accounting.stdout.lower() and "error" not in accounting.stdout.lower():
        found.append(Finding(True, "sacct works: tasks that vanish without a marker are looked up there"))
    else:
        found.append(Finding(True, f"sacct does not work here ({accounting.stdout.strip()[:120]}); tasks are "
                                   "judged by squeue states and their marker files only"))
    return found


def _limits(cluster: Cluster, options: SlurmOptions, poll_s: float) -> list[Finding]:
    try:
        config = cluster.config()
    except SlurmBusy as exc:
        return [Finding(False, str(exc), "check that the SLURM controller is up ('sinfo' on the login node)")]
    array_size = config_int(config, "MaxArraySize") or 1001
    min_age = config_int(config, "MinJobAge")
    max_submit = config_int(config, "MaxSubmitJobs")
    budget = min(options.max_in_flight, max_submit or 10 ** 9)
    found = [Finding(True, f"MaxArraySize {array_size}, MinJobAge {min_age if min_age is not None else '?'} s, "
                           f"MaxSubmitJobs {max_submit or 'unlimited'}"),
             Finding(True, f"will submit arrays of up to {min(array_size, budget)} tasks, at most {budget} in "
                           f"flight, {options.throttle} running at once per array; polling squeue every {poll_s:g} s")]
    if min_age is not None and 0 < min_age < 2 * poll_s:
        found.append(Finding(False, f"MinJobAge ({min_age} s) is shorter than two polls ({2 * poll_s:g} s): a task "
                                    "SLURM ends (time limit, node failure) may vanish before it is seen",
                             "poll more often (--poll) or ask the admins for a longer MinJobAge"))
    return found
