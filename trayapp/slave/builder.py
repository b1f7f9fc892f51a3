"""The one recipe for a slave engine from the settings: the daemon that lends
this PC to masters and the master's own cores (an engine on a thread of the
master) are built alike, so a setting such as ``min_free_mb`` or a master's
cap means the same on both."""

from __future__ import annotations

import os
from pathlib import Path

from trayapp.config import Config
from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.install.envs import env_store_for
from trayapp.install.taskenv import task_interpreter
from trayapp.run.choice import task_runner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.fairshare import FairShare
from trayapp.slave.grants import GRANT_POLICIES
from trayapp.slave.spool import Spool


def bench_grant_policy() -> str:
    """"fair", or the unfair baseline bench/fair_share.py measures fair share
    against ("by_demand", set by ``SPARECYCLES_GRANT_POLICY`` in its slaves'
    environment). Not a setting: no user wants the baseline."""
    policy = os.environ.get("SPARECYCLES_GRANT_POLICY", "fair")
    if policy not in GRANT_POLICIES:
        raise UserError(f"SPARECYCLES_GRANT_POLICY is {policy!r}, not one of {', '.join(map(repr, GRANT_POLICIES))}",
                        "unset it (it exists for bench/fair_share.py only)")
    return policy


def build_engine(config: Config, home: Home, identity: tuple[str, str], spool_dir: Path, *,
                 in_process: bool = False, slots: int | None = None) -> SlaveEngine:
    """A slave engine keeping its tasks in ``spool_dir``; ``in_process``: it runs
    on a thread of the master (results handed over as folders, its runner lowers
    the engine thread's priority, no cgroups); ``slots`` overrides the configured number."""
    slave_id, name = identity
    settings = SlaveSettings(slots=slots or config.effective_slots,
                             python=task_interpreter(config.task_python, home=home),
                             nice=config.nice, max_results_mb=config.max_results_mb,
                             min_free_mb=config.min_free_mb, name=name, weights=config.master_weights,
                             caps=config.master_caps, grant_policy=bench_grant_policy(),
                             preempt=config.preempt, suspend_grace_s=config.suspend_grace_s, in_process=in_process,
                             max_task_memory_mb=config.max_task_memory_mb,
                             max_task_processes=config.max_task_processes,
                             max_task_disk_mb=config.max_task_disk_mb,
                             incoming_quota_gb=config.incoming_quota_gb)
    # A sandbox never shows a task the lender's home or this PC's SpareCycles data (other tasks, the daemon's socket).
    hidden = (str(Path.home()), str(Path(spool_dir).parent))
    runner = task_runner(in_process=in_process, sandbox=config.sandbox, network=config.sandbox_network,
                         python=settings.python, hidden=hidden, warm=config.warm_starts)
    # Environments are built and probed in the sandbox the tasks get (none where the lender chose none).
    confinement = getattr(runner, "confinement", None)
    sandboxed = bool(confinement is not None and confinement.sandboxed)
    envs = env_store_for(home.data_dir, settings.python, package_index=config.package_index,
                         wheel_folder=config.wheel_folder, max_gb=config.envs_max_gb, sandboxed=sandboxed,
                         hidden=(*hidden, str(home.data_dir)))
    if sandboxed:
        confinement.readonly_of = envs.readonly_paths_of
    return SlaveEngine(Spool(spool_dir), settings, slave_id=slave_id, runner=runner,
                       fairshare=FairShare(half_life_s=config.fair_share_half_life_s), envs=envs)
