"""One cgroup v2 per task attempt, so the whole tree stops with one write.

A task's processes can leave its process group (``setsid``) and be orphaned
away from its process tree; they cannot leave their cgroup. Where the slave
may create cgroups (root, or a systemd service with ``Delegate=yes``), each
attempt gets ``<slave's cgroup>/sparecycles-<pid>/task-<token>``:

- ``cgroup.kill`` (Linux 5.14+) SIGKILLs every process in it at once: the
  fast path of preemption;
- ``cgroup.freeze`` suspends them all (the ``preempt = "suspend"`` setting)
  and thaws them again;
- the parent's ``cpu.stat`` counts every task's CPU time, which the idle
  policy subtracts to see the *other* programs' load;
- ``memory.max`` and ``pids.max`` hold a task to its caps (:mod:`trayapp.run.caps`),
  where the memory and pids controllers reach our cgroup.

Where cgroups cannot be used (no cgroup2 mount, no write access, an old
kernel), :meth:`TaskCgroups.create` returns None and the slave falls back to
the process group + descendants + environment-marker sweep of
:mod:`trayapp.run.proctree`, which it also runs after a cgroup kill, for the rare
process forked before the task was moved into its cgroup.
``SPARECYCLES_CGROUPS=off`` in the slave's environment forces the fallback.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import psutil

from trayapp.run.caps import TaskCaps

log = logging.getLogger(__name__)

_PREFIX = "sparecycles-"


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or
    ``/sys/fs/cgroup/unified`` on a hybrid system)."""
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split()[4])
    return None


def own_cgroup(proc_cgroup: str = "/proc/self/cgroup") -> str | None:
    try:
        for line in Path(proc_cgroup).read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return None


class TaskCgroups:
    def __init__(self, base: Path):
        self.base = base
        self._groups: dict[str, Path] = {}

    @classmethod
    def create(cls) -> "TaskCgroups | None":
        """A cgroup for this slave's tasks, or None (and why, in the log) if this
        system does not let us make one."""
        if os.environ.get("SPARECYCLES_CGROUPS") == "off":  # benchmarks compare with the fallback
            log.info("cgroups turned off (SPARECYCLES_CGROUPS=off): using process groups")
            return None
        mount, mine = cgroup2_mount(), own_cgroup()
        if mount is None or mine is None:
            log.info("no cgroup v2 here: tasks are stopped by process group and marker sweep")
            return None
        parent = mount / mine.lstrip("/")
        _remove_abandoned(parent)
        base = parent / f"{_PREFIX}{os.getpid()}"
        try:
            base.mkdir(exist_ok=True)
            if not (base / "cgroup.kill").exists():
                base.rmdir()
                log.info("cgroup v2 without cgroup.kill (kernel before 5.14): using process groups")
                return None
            probe = base / "probe"
            probe.mkdir(exist_ok=True)
            probe.rmdir()
            _enable_controllers(base, ("memory", "pids"))
        except OSError as exc:
            log.info("cannot create cgroups under %s (%s): tasks are stopped by process group and "
                     "marker sweep", parent, exc.strerror or exc)
            return None
        log.info("tasks run in cgroups under %s", base)
        return cls(base)

    def prepare(self, token: str) -> Path | None:
        """Make the attempt's cgroup before the task starts; the ``cgroup.procs``
        file that the task's wrapper writes its own pid to as its first act, so
        every process of the task is born inside. Moving a task in after it
        started races with it: a process forked and orphaned in between (its
        parent exited, so it is no longer a descendant) would stay outside and
        run on while the rest is frozen."""
        group = self.base / f"task-{token}"
        try:
            group.mkdir(exist_ok=True)
        except OSError as exc:
            log.warning("could not create a cgroup for task %s: %s", token, exc)
            return None
        self._groups[token] = group
        return group / "cgroup.procs"

    def limit(self, token: str, caps: TaskCaps) -> TaskCaps:
        """Hold the attempt's cgroup to ``caps`` as far as its controllers allow;
        returns the caps left for resource limits to hold."""
        group = self._groups.get(token)
        if group is None:
            return caps
        left = caps
        if caps.memory_mb and _write_if_present(group, "memory.max", str(caps.memory_mb << 20)):
            _write_if_present(group, "memory.swap.max", "0")  # swapping is not a way around the cap
            _write_if_present(group, "memory.oom.group", "1")  # over the cap, the whole task ends
            left = replace(left, memory_mb=None)
        if caps.processes and _write_if_present(group, "pids.max", str(caps.processes)):
            left = replace(left, processes=None)
        return left

    def oom_killed(self, token: str) -> bool:
        """Whether the kernel killed a process of the attempt for going over ``memory.max``."""
        group = self._groups.get(token)
        try:
            events = (group / "memory.events").read_text() if group is not None else ""
        except OSError:
            return False
        return any(line.split()[0] == "oom_kill" and int(line.split()[1]) > 0
                   for line in events.splitlines() if len(line.split()) == 2)

    def adopt(self, token: str, pid: int, *, born_inside: bool = False) -> bool:
        """Move a task and whatever it already forked into its own cgroup.

        ``born_inside``: the task was started with :meth:`prepare`'s file, so
        its wrapper joins the group before it forks anything; moving the root
        here too only covers the instant before the wrapper's write."""
        group = self.base / f"task-{token}"
        try:
            group.mkdir(exist_ok=True)
            # The root first: what it forks from then on is born inside. What
            # it forked before is moved after it, until a look finds nothing
            # new (a child may fork between our look and its move).
            moved: set[int] = set()
            pending = [pid] if born_inside else [pid, *_members_of_own_group(pid, group.name)]
            for _ in range(10):
                for one in pending:
                    try:
                        (group / "cgroup.procs").write_text(str(one))
                    except ProcessLookupError:
                        pass  # it exited meanwhile
                    moved.add(one)
                if born_inside:
                    break
                try:
                    pending = [p.pid for p in psutil.Process(pid).children(recursive=True) if p.pid not in moved]
                except psutil.Error:
                    pending = []
                if not pending:
                    break
        except OSError as exc:
            log.warning("could not move task %s into a cgroup: %s", token, exc)
            self._groups.pop(token, None)
            return False
        self._groups[token] = group
        return True

    def members(self, token: str) -> list[int] | None:
        """The processes in the attempt's cgroup (a short file: no scan of /proc); None without one."""
        group = self._groups.get(token)
        if group is None:
            return None
        try:
            return [int(one) for one in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return None

    def move_members(self, source: str, token: str, keep: set[int]) -> bool:
        """Move every process of ``source``'s cgroup but ``keep`` into ``token``'s, until a
        look finds none left (one moved may have forked meanwhile: its child was born in
        ``source``; forking and moving exclude each other in the kernel, so a look after
        the last move sees every child born before it)."""
        group = self._groups.get(token)
        if group is None:
            return False
        try:
            for _ in range(10):
                pending = [pid for pid in self.members(source) or () if pid not in keep]
                if not pending:
                    return True
                for pid in pending:
                    try:
                        (group / "cgroup.procs").write_text(str(pid))
                    except ProcessLookupError:
                        pass  # it exited meanwhile
        except OSError as exc:
            log.warning("could not move task %s's processes into its cgroup: %s", token, exc)
            return False
        return not [pid for pid in self.members(source) or () if pid not in keep]

    def has(self, token: str) -> bool:
        return token in self._groups

    def kill(self, token: str) -> bool:
        """SIGKILL every process of the attempt, at once; False if it has no cgroup."""
        return self._write(token, "cgroup.kill", "1")

    def freeze(self, token: str, frozen: bool = True) -> bool:
        return self._write(token, "cgroup.freeze", "1" if frozen else "0")

    def is_empty(self, token: str) -> bool:
        group = self._groups.get(token)
        if group is None:
            return True
        try:
            return "populated 0" in (group / "cgroup.events").read_text()
        except OSError:
            return True

    def release(self, token: str) -> None:
        """Remove the attempt's cgroup once its processes are gone."""
        group = self._groups.get(token)
        if group is None:
            return
        try:
            group.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return  # still populated (a process is exiting): tried again later
        del self._groups[token]

    def tokens(self) -> list[str]:
        return list(self._groups)

    def cpu_seconds(self) -> float | None:
        """CPU time used by every task so far (the base cgroup counts its children)."""
        try:
            for line in (self.base / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            pass
        return None

    def close(self) -> None:
        for token in list(self._groups):
            self.release(token)
        try:
            self.base.rmdir()
        except OSError:
            pass  # a task still runs in it (the daemon left it running): a later daemon cleans up

    def _write(self, token: str, name: str, value: str) -> bool:
        group = self._groups.get(token)
        if group is None:
            return False
        try:
            (group / name).write_text(value)
        except OSError as exc:
            log.warning("cgroup %s: writing %s failed: %s", group, name, exc)
            return False
        return True


def _enable_controllers(base: Path, names: tuple[str, ...]) -> None:
    """Offer the task cgroups the controllers our parent lets us have (each
    alone: one the parent lacks must not keep the others out)."""
    for name in names:
        try:
            (base / "cgroup.subtree_control").write_text(f"+{name}")
        except OSError:
            log.info("no %s controller for task cgroups under %s: rlimits hold that cap instead", name, base)


def _write_if_present(group: Path, name: str, value: str) -> bool:
    try:
        (group / name).write_text(value)
    except OSError:
        return False  # the controller is not enabled here
    return True


def _members_of_own_group(pid: int, name: str) -> list[int]:
    """The processes in ``pid``'s current cgroup if it is one named ``name``: a
    task adopted after a restart is still in the group its first slave made,
    with its orphans, which are no longer its descendants."""
    try:
        path = own_cgroup(f"/proc/{pid}/cgroup")
        mount = cgroup2_mount()
        if path is None or mount is None or Path(path).name != name:
            return []
        text = (mount / path.lstrip("/") / "cgroup.procs").read_text()
    except OSError:
        return []
    return [int(one) for one in text.split() if int(one) != pid]


def _remove_abandoned(parent: Path) -> None:
    """Cgroups left by slave daemons that died (their pid is no longer one):
    thawed, and removed once empty."""
    try:
        bases = [p for p in parent.iterdir() if p.name.startswith(_PREFIX) and p.is_dir()]
    except OSError:
        return
    for base in bases:
        pid = base.name[len(_PREFIX):]
        if pid.isdigit() and psutil.pid_exists(int(pid)) and int(pid) != os.getpid():
            continue
        for group in [g for g in base.iterdir() if g.is_dir()]:
            try:
                # A daemon killed while its tasks were suspended: the next one
                # adopts them from the spool, so they must run again.
                (group / "cgroup.freeze").write_text("0")
                group.rmdir()
            except OSError:
                pass
        try:
            base.rmdir()
        except OSError:
            pass
