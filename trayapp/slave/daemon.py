"""``sparecycles slave``: the slave engine behind a Unix socket, for agents to reach.

One daemon runs per SpareCycles home (``slave.lock``). Stopping it (SIGTERM,
Ctrl-C) stops its tasks, since they run on someone's PC; they are reported to
their masters as lost, and run again elsewhere. A daemon killed outright
leaves them running; the next one adopts them from the spool.
"""

from __future__ import annotations

import logging
import signal
import sys

from trayapp.config import Config
from trayapp.home import Home
from trayapp.locks import InstanceLock
from trayapp.errors import UserError
from trayapp.slave.builder import build_engine
from trayapp.slave.endpoint import Listener

log = logging.getLogger("sparecycles.slave")


def run_slave_daemon(home: Home, config: Config, identity: tuple[str, str], slots: int | None = None,
                     idle_after: float | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    lock = InstanceLock(home.slave_lock)
    if not lock.acquire(wait_s=2.0):
        raise UserError(f"a slave daemon is already running for {home.data_dir} (pid {lock.holder()})",
                        "use that one, or stop it first; SPARECYCLES_HOME selects another home")
    engine = build_engine(config, home, identity, home.spool_dir, slots=slots)
    listener = Listener(home)
    signal.signal(signal.SIGTERM, engine.request_stop)
    signal.signal(signal.SIGINT, engine.request_stop)
    log.info("slave daemon for %s: %d slots, tasks run with %s (Python %s, Brian %s); listening on %s",
             home.data_dir, engine.settings.slots, engine.settings.python, engine.versions.get("python"),
             engine.versions.get("brian") or "not installed", listener.path)
    engine.on_state_change = lambda d: log.info("state: %s%s (%d running)", d["state"],
                                                f" ({d['reason']})" if d.get("reason") else "", d["running"])
    # Lend the PC only while its user is away.
    from trayapp.idle.watch import watch_idle

    watcher = watch_idle(config, report=engine.availability.report_idle, has_tasks=lambda: bool(engine.running),
                         task_cpu_seconds=engine.runner.task_cpu_seconds, idle_after_s=idle_after)
    try:
        stopped = engine.serve(listener.socket, stop_tasks=True, why_stopped="the slave daemon was stopped")
        log.info("slave daemon stopping; stopped %d running task(s)", stopped)
    finally:
        if watcher is not None:
            watcher.stop()
        engine.close()
        listener.close()
        lock.release()
    return 0
