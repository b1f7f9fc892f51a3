"""The ``slurm`` host kind: a cluster reached through its login node over SSH.

Tasks go as job arrays (:mod:`trayapp.master.slurm`); this module is what the
rest of the master sees of the kind: its ``hosts add`` options, its driver,
its row in ``hosts list`` and its ``hosts test``.
"""

from __future__ import annotations

import argparse
from typing import Callable

from trayapp.master.slurm.driver import SlurmDriver, SlurmSettings
from trayapp.master.slurm.options import DEFAULT_POLL_S, SlurmOptions
from trayapp.master.slurm.probe import Finding, probe
from trayapp.master.store import HostRecord, Store
from trayapp.wire.ssh import SSHShell

KIND = "slurm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("with --kind slurm (a cluster; --host is its login node)")
    group.add_argument("--remote-root", help="folder on the cluster's shared file system for jobs and results")
    group.add_argument("--partition")
    group.add_argument("--account")
    group.add_argument("--qos")
    group.add_argument("--time", help="a task's time limit when its job sets none, e.g. 2h")
    group.add_argument("--mem", help="memory per task, e.g. 2G")
    group.add_argument("--cpus-per-task", type=int)
    group.add_argument("--python", help="the Python tasks use on the compute nodes (default: python3)")
    group.add_argument("--setup", help='shell lines run before every SLURM command and in every batch script, '
                                       'e.g. "module load python/3.11"')
    group.add_argument("--max-in-flight", type=int, help="tasks submitted and unfinished at most (default 200)")
    group.add_argument("--throttle", type=int, help="elements of one array running at once (default 50)")
    group.add_argument("--poll", help=f"how often to ask squeue (default {DEFAULT_POLL_S:g}s)")


def options_from_args(args: argparse.Namespace) -> SlurmOptions:
    from trayapp.errors import UserError
    from trayapp.units import parse_duration

    if not args.remote_root:
        raise UserError("a cluster needs --remote-root", "name a folder on its shared file system, e.g. "
                        "--remote-root '~/sparecycles'")
    poll_s = None
    if args.poll:
        try:
            poll_s = parse_duration(args.poll)
        except ValueError as exc:
            raise UserError(f"--poll: {exc}") from None
    return SlurmOptions.from_text(remote_root=args.remote_root, time=args.time, mem=args.mem,
                                  partition=args.partition, account=args.account, qos=args.qos,
                                  cpus_per_task=args.cpus_per_task, python=args.python, setup=args.setup,
                                  max_in_flight=args.max_in_flight, throttle=args.throttle, poll_s=poll_s)


def make_driver(host: HostRecord, store_factory: Callable[[], Store],
                connect: Callable[[], SSHShell], *, max_results_mb: int = 2048) -> SlurmDriver:
    return SlurmDriver(host.name, store_factory, connect, SlurmOptions.from_dict(host.options),
                       SlurmSettings(max_results_mb=max_results_mb))


def row(host: HostRecord) -> dict:
    """What ``hosts list`` shows of a cluster instead of slots."""
    info = host.info
    return {"in_flight": info.get("in_flight"), "pending": info.get("pending"), "running": info.get("running"),
            "oldest_pending_s": info.get("oldest_pending_s")}


def test(host: HostRecord, connect: Callable[[], SSHShell]) -> list[Finding]:
    options = SlurmOptions.from_dict(host.options)
    return probe(connect, options, host.name, options.poll_s)
