"""The life of a remote host as its driver sees it, whatever kind of host it is.

A remote host (a desktop slave over SSH, a SLURM cluster's login node, a
kind yet to come) is driven by one thread with its own queue connection, and
every kind goes through the same cycle: connect (again and again, with a
growing wait), drive the host until told to stop or the connection fails,
and meanwhile keep the host's row and its tasks honest:

- unreachable since when, timed by one monotonic clock, so a wall clock set
  back or forward neither loses tasks early nor keeps them forever;
- after ``lost_after_s`` unreachable, its unfinished tasks go back to the
  queue to run elsewhere (it may come back: what it then reports is
  reconciled, never collected twice);
- a host that sends what no honest host sends is quarantined, its tasks
  requeued, and no connection is tried until the quarantine ends.

:class:`RemoteHost` owns that cycle; a kind's driver subclasses it and
keeps only what is its own: :meth:`RemoteHost._drive` (the conversation with
a slave, or arrays, squeue and markers on a cluster) and, if it has any, its
own kinds of failure (:meth:`RemoteHost._connect_failed`,
:meth:`RemoteHost._session_failed`). Results settling, the other half every
kind shares, is :mod:`trayapp.master.settling`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from trayapp.master.bounds import HostMisbehaved
from trayapp.master.quarantine import Quarantine
from trayapp.master.store import Store
from trayapp.wire.links import LinkClosed
from trayapp.wire.protocol import ProtocolError

log = logging.getLogger(__name__)


class RemoteHost(threading.Thread):
    """One host's driver thread: its connection cycle, reachability, requeueing and quarantine."""

    thread_prefix = "host"
    backoff_min_s = 0.5

    def __init__(self, name: str, store_factory: Callable[[], Store], connect: Callable[[], Any], *,
                 lost_after_s: float, backoff_max_s: float, quarantine: Quarantine,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(name=f"{self.thread_prefix}-{name}", daemon=True)
        self.host = name
        self._store_factory = store_factory
        self._connect = connect
        self.lost_after_s = lost_after_s
        self.backoff_max_s = backoff_max_s
        self.quarantine = quarantine
        self._clock = clock
        self._stopping = threading.Event()
        self._retiring = False
        self.inflight: dict[str, Any] = {}  # token -> the kind's record of an attempt there
        self.store: Store | None = None
        self.connected = threading.Event()
        self._unreachable_since: float | None = None

    # ----- what the dispatcher calls ---------------------------------------------------

    def stop(self, *, retire: bool = False) -> None:
        """Stop driving the host; ``retire``: the host was removed, so whatever
        it still runs or holds for us is cancelled first (its tasks run elsewhere)."""
        self._retiring = self._retiring or retire
        self._stopping.set()

    def is_connected(self) -> bool:
        return self.connected.is_set()

    # ----- the cycle ---------------------------------------------------------------------

    def run(self) -> None:
        self.store = self._store_factory()
        backoff = self.backoff_min_s
        try:
            while not self._stopping.is_set():
                try:
                    link = self._connect()
                except Exception as exc:  # noqa: BLE001 - any failure to connect means "try later"
                    self._connect_failed(exc)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                try:
                    self._drive(link)
                    backoff = self.backoff_min_s
                except Exception as exc:  # noqa: BLE001 - sorted by _session_failed; a bug must not stop a host
                    self._session_failed(exc)
                finally:
                    if self.connected.is_set():
                        # It answered this time: a host that restarted after
                        # serving us is tried again soon, not after the longest wait.
                        backoff = self.backoff_min_s
                    self.connected.clear()
                    link.close()
                if not self._stopping.is_set():
                    self._stopping.wait(max(backoff, self.quarantine.seconds_left))
                    backoff = min(backoff * 2, self.backoff_max_s)
        finally:
            self.store.close()

    def _drive(self, link: Any) -> None:
        """Drive the host over ``link`` until :meth:`stop`; call :meth:`_reached`
        once it answered. Raising ends this connection (see :meth:`_session_failed`)."""
        raise NotImplementedError

    def _connect_failed(self, exc: Exception) -> None:
        """Connecting failed: the host is unreachable for now. A kind may tell
        apart what a person must fix (a refused key) and show it otherwise."""
        self._unreachable(str(exc))

    def _session_failed(self, exc: Exception) -> None:
        """The connection ended with ``exc``: sorted here into a host that broke
        the rules, a lost connection, and our own bug. A kind handles its own
        exceptions first, then calls this."""
        if isinstance(exc, HostMisbehaved):
            self._misbehaved(str(exc))
        elif isinstance(exc, (LinkClosed, ProtocolError, OSError, EOFError)):
            log.warning("host %s: connection lost: %s", self.host, exc)
            self._unreachable(f"connection lost: {exc}")
        else:
            log.error("host %s: unexpected error", self.host, exc_info=exc)
            self._unreachable(f"internal error ({exc}); see the log")

    # ----- reachability --------------------------------------------------------------------

    def _reached(self) -> None:
        """The host answered: it is no longer unreachable."""
        self._unreachable_since = None
        self.connected.set()

    def _unreachable(self, reason: str) -> None:
        now = self._clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
        self.store.set_host_state(self.host, "unreachable", reason)
        self._while_unreachable()
        away = now - self._unreachable_since
        if away >= self.lost_after_s:
            self._requeue_all(f"host unreachable for {away:.0f} s")

    def _while_unreachable(self) -> None:
        """What a kind still settles for a host it cannot reach (e.g. tasks long past their time limit)."""

    def _requeue_all(self, why: str) -> None:
        """Every attempt open on the host goes back to the queue, to run elsewhere."""
        self.store.lose_open_attempts(self.host, f"{self.host}: {why}")
        self.inflight.clear()

    # ----- quarantine ----------------------------------------------------------------------

    def _misbehaved(self, why: str) -> None:
        log.error("host %s broke the protocol: %s", self.host, why)
        self.quarantine.impose(f"it broke the protocol: {why}")
        self._requeue_all(f"the host broke the protocol ({why}); the task will run elsewhere")
        self._show_quarantine()

    def _show_quarantine(self) -> None:
        """Show the quarantine on the host's row (a kind shows it over its own state)."""
        self.store.set_host_state(self.host, "quarantined", self.quarantine.describe(), seen=True)
