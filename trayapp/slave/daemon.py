"""``sparecycles slave``: the slave engine behind a Unix socket, for agents to reach.

One daemon runs per SpareCycles home (``slave.lock``). Stopping it (SIGTERM,
Ctrl-C) stops its tasks, since they run on someone's PC; they are reported to
their masters as lost, and run again elsewhere. A daemon killed outright
leaves them running; the next one adopts them from the spool.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

from trayapp.slave.agent import socket_path
from trayapp.config import Config
from trayapp.home import Home
from trayapp.locks import InstanceLock
from trayapp.errors import UserError
from trayapp.slave.builder import build_engine
from trayapp.status import AttemptOutcome

log = logging.getLogger("sparecycles.slave")


def run_slave_daemon(home: Home, config: Config, identity: tuple[str, str], slots: int | None = None,
                     idle_after: float | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    lock = InstanceLock(home.slave_lock)
    if not lock.acquire(wait_s=2.0):
        raise UserError(f"a slave daemon is already running for {home.data_dir} (pid {lock.holder()})",
                        "use that one, or stop it first; SPARECYCLES_HOME selects another home")
    engine = build_engine(config, home, identity, home.spool_dir, slots=slots)
    path = socket_path(home)
    path.unlink(missing_ok=True)  # left by a daemon that was killed; the lock says none runs now
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)  # only this user may talk to the daemon
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(16)
    signal.signal(signal.SIGTERM, engine.request_stop)
    signal.signal(signal.SIGINT, engine.request_stop)
    log.info("slave daemon for %s: %d slots, tasks run with %s (Python %s, Brian %s); listening on %s",
             home.data_dir, engine.settings.slots, engine.settings.python, engine.versions.get("python"),
             engine.versions.get("brian") or "not installed", path)
    engine.on_state_change = lambda d: log.info("state: %s%s (%d running)", d["state"],
                                                f" ({d['reason']})" if d.get("reason") else "", d["running"])
    # Lend the PC only while its user is away.
    from trayapp.idle.watch import watch_idle

    watcher = watch_idle(engine, config, idle_after)
    try:
        engine.serve(listener)
        stopped = engine.stop_all_tasks(AttemptOutcome.HOST_LOST, "the slave daemon was stopped")
        engine.flush_all()
        log.info("slave daemon stopping; stopped %d running task(s)", stopped)
    finally:
        if watcher is not None:
            watcher.stop()
        if engine.cgroups is not None:
            engine.cgroups.close()
        listener.close()
        path.unlink(missing_ok=True)
        lock.release()
    return 0
