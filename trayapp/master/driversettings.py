"""How a master drives its protocol hosts (:class:`~trayapp.master.driver.HostDriver`):
its identity, its pace, and how long it waits on a host before acting for it.
Built from the settings by the kinds that drive a slave over the protocol
(:mod:`trayapp.master.kinds.slavehost`)."""

from __future__ import annotations

from dataclasses import dataclass

from trayapp.config import Config


@dataclass
class DriverSettings:
    master_id: str
    master_name: str
    tick_s: float = 0.2
    # After this long unreachable, a host's unfinished tasks go back to the
    # queue to run elsewhere. A host that answers but has no daemon loses its
    # tasks at once: they died with the daemon.
    lost_after_s: float = 600.0
    backoff_max_s: float = 30.0
    # Results this master could not write are collected again after this,
    # doubling up to recollect_max_s, until the user has fixed the folder.
    recollect_s: float = 2.0
    recollect_max_s: float = 60.0
    # A host whose starts fail for this many different jobs in a row, or that
    # breaks the protocol, is asked for no work for quarantine_s.
    quarantine_after_jobs: int = 3
    quarantine_s: float = 300.0
    # No results download is bigger (beyond a slave's own cap, plus logs) or slower.
    max_results_bytes: int = 2048 << 20
    fetch_timeout_s: float = 900.0
    # A job a host declined for its requirements is offered there again after
    # this long, or as soon as the host's task environment changes.
    declined_for_s: float = 600.0
    # A host that does not report a task ended this long after its time limit
    # (and, if it never said the task started, prepare_s more) loses it
    # (trayapp.master.timelimit): a slave that never reports holds no task forever.
    time_limit_grace_s: float = 300.0
    time_limit_prepare_s: float = 2400.0

    @classmethod
    def from_config(cls, config: Config, identity: tuple[str, str]) -> "DriverSettings":
        """As the user's settings say, for the master ``identity`` (its id and readable name)."""
        return cls(*identity, tick_s=config.poll_interval_s, time_limit_grace_s=config.time_limit_grace_s,
                   max_results_bytes=config.max_results_mb << 20, fetch_timeout_s=config.fetch_timeout_s)
