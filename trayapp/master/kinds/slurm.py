"""The ``slurm`` host kind: a cluster reached through its login node over SSH.

Its login node is reached as a desktop slave is (same connection code, host-key
trust and keyring, so ``hosts trust`` works the same); tasks go there as job
arrays (:mod:`trayapp.master.slurm`), never through a daemon of ours. Its row
shows what a cluster can report: tasks in flight, pending and running, and how
long the oldest has waited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from trayapp.errors import UserError
from trayapp.humantime import duration
from trayapp.master.kinds.kind import AddOption, Column, Finding, KindContext, QueueFacts
from trayapp.master.kinds.login import SSHLogin, login_options, login_record
from trayapp.master.kinds.ssh import SSHKind, log_in
from trayapp.master.slurm.options import DEFAULT_POLL_S, SlurmOptions
from trayapp.master.store import HostRecord

if TYPE_CHECKING:
    # The driver and the probe speak SSH (paramiko): loaded when a driver is
    # built or a host tested, not by every command that looks up the kinds.
    from trayapp.master.slurm.driver import SlurmDriver

_OPTION_NAMES = ("remote_root", "partition", "account", "qos", "time", "mem", "cpus_per_task", "python", "setup",
                 "max_in_flight", "throttle")


class SlurmKind(SSHKind):
    name = "slurm"
    summary = "a SLURM cluster, reached through its login node over SSH (tasks go as job arrays)"
    options = (
        *login_options("address of the cluster's login node"),
        AddOption("--remote-root", "folder on the cluster's shared file system for jobs and results",
                  required=True),
        AddOption("--partition", "SLURM partition (default: the cluster's)"),
        AddOption("--account", "SLURM account to charge"),
        AddOption("--qos", "SLURM quality of service"),
        AddOption("--time", "a task's time limit when its job sets none, e.g. 2h"),
        AddOption("--mem", "memory per task, e.g. 2G"),
        AddOption("--cpus-per-task", "cores per task (its thread limit too)", type=int),
        AddOption("--python", "the Python tasks use on the compute nodes (default: python3)"),
        AddOption("--setup", 'shell lines run before every SLURM command and in every batch script, '
                             'e.g. "module load python/3.11"'),
        AddOption("--max-in-flight", "tasks submitted there and unfinished, at most (default: 200)", type=int),
        AddOption("--throttle", "elements of one array running at once (default: 50)", type=int),
        AddOption("--poll", f"how often to ask squeue, e.g. 30s (default: {DEFAULT_POLL_S:g}s)"),
    )
    columns = (
        Column("in_flight", "In flight"),
        Column("pending", "Pending"),
        Column("running", "Running"),
        Column("oldest_pending_s", "Oldest pending", duration),
    )

    def record(self, values: dict) -> dict:
        from trayapp.units import parse_duration

        login = login_record(values)
        try:
            poll_s = parse_duration(values["poll"]) if values["poll"] else None
        except ValueError as exc:
            raise UserError(f"--poll: {exc}") from None
        options = SlurmOptions.from_text(poll_s=poll_s, **{k: values[k] for k in _OPTION_NAMES})
        return {"options": {**login, **options.to_dict()}}

    def next_step(self, host: HostRecord) -> str:
        return (f"next: check the login node's key fingerprint and trust it: sparecycles hosts trust {host.name}\n"
                f"then see what the cluster allows and what SpareCycles will do: sparecycles hosts test {host.name}")

    def build_driver(self, host: HostRecord, context: KindContext) -> SlurmDriver:
        from trayapp.master.slurm.driver import SlurmDriver, SlurmSettings
        from trayapp.wire.ssh import shell_connector

        return SlurmDriver(host.name, context.open_store, shell_connector(context.home)(SSHLogin.of(host)),
                           SlurmOptions.from_dict(host.options),
                           SlurmSettings(max_results_mb=context.config.max_results_mb,
                                         fetch_timeout_s=context.config.fetch_timeout_s))

    def describe(self, host: HostRecord, facts: QueueFacts) -> dict:
        info = host.info
        return {**SSHLogin.of(host).fields(), "in_flight": info.get("in_flight", facts.running), "pending": info.get("pending"),
                "running": info.get("running"), "oldest_pending_s": info.get("oldest_pending_s") or None,
                "python": host.options.get("python")}

    def test(self, host: HostRecord, context: KindContext) -> Iterator[Finding]:
        from trayapp.master.slurm.probe import probe
        from trayapp.wire.ssh import SSHShell

        login = SSHLogin.of(host)
        shell = yield from log_in(login, context, lambda: SSHShell(login, context.home.known_hosts).open())
        try:
            yield Finding("login", f"{login.user}@{login.address}")
            for label, text in probe(shell, SlurmOptions.from_dict(host.options), host.name):
                yield Finding(label, text)
        finally:
            shell.close()
