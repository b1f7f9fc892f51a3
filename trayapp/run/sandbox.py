"""A task's sandbox on Linux: bubblewrap (``bwrap``) around its command.

What a task sees is built from nothing, not carved out of the whole system:

- the system, read-only: ``/usr``, ``/etc``, ``/opt`` and the ``/bin``,
  ``/sbin``, ``/lib*`` links or folders;
- its task environment, read-only: the folders the task interpreter imports
  from (its prefix, its base prefix, its ``sys.path``), probed once;
- its own folder, writable, at its own path, as its working directory and
  ``HOME``;
- its slot's compiler cache (Cython, Brian) and its scratch folder
  (``TMPDIR``), writable, at their own paths (see :mod:`trayapp.run.taskcache`);
- a private ``/tmp`` and ``/dev/shm`` (small tmpfs each), a fresh ``/proc`` and
  a minimal, read-only ``/dev``; the rest of the sandbox's root is read-only too.

Everything else is simply absent: the lender's home, ``/root``, ``/home``,
``/run/user``, the host's ``/tmp``, the slave's data folder with its spool
(other tasks' folders) and the daemon's socket. Each task gets new user, pid,
IPC, UTS and network namespaces: it sees no other process (so no
``/proc/<pid>/cwd`` into another task), cannot signal the lender's programs,
and has no network, abstract Unix sockets included, unless the lender allows
the network (``sandbox_network = true``).

The slave still sees and kills every process of the task from outside: they
are descendants of ``bwrap``, they keep the attempt's marker variable, and
they sit in the task's cgroup. ``--die-with-parent`` and the pid namespace
(its init's death kills everything in it) end the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trayapp.run.caps import TaskCaps, limits_prefix
from trayapp.run.runner import Launch

UNSANDBOXED_WARNING = 'tasks run without a sandbox (sandbox = "off"): they can read and change your files'

# The private /tmp and /dev/shm live in memory, which a task's cgroup counts
# in its memory cap but an rlimit does not: kept small, since TMPDIR points
# into the task's folder anyway, and /dev/shm only holds the semaphores and
# the odd shared array of multiprocessing.
PRIVATE_TMP_BYTES = 64 << 20
PRIVATE_SHM_BYTES = 64 << 20

SYSTEM_FOLDERS = ("/usr", "/etc", "/opt")
SYSTEM_LINKS_OR_FOLDERS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# What a task's environment keeps from the slave's: the rest (SSH agent,
# D-Bus and display addresses, tokens a lender's shell exported) stays out.
KEPT_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONHASHSEED",
                  "TMPDIR", "CYTHON_CACHE_DIR", "MAKEFLAGS", "MPLBACKEND")
KEPT_PREFIXES = ("LC_", "SPARECYCLES_", "OMP_", "OPENBLAS_", "MKL_", "NUMEXPR_")
# The slave's own settings among SPARECYCLES_* name the lender's folders.
DROPPED_VARIABLES = ("SPARECYCLES_HOME",)

_PROBE = """
import importlib.util, json, sys
paths = [sys.prefix, sys.base_prefix, *sys.path]
for name in ("sparecycles", "trayapp"):
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is not None:
        paths += list(spec.submodule_search_locations or [])
print(json.dumps(paths))
"""


@dataclass(frozen=True)
class Sandbox:
    """How this slave wraps its tasks: what :func:`sandboxed_argv` needs beyond the task."""

    readonly_paths: tuple[str, ...]
    network: bool = False
    bwrap: str = "bwrap"


def sandbox_status(bwrap: str | None = None) -> tuple[bool, str]:
    """Whether tasks can be sandboxed here, and in words why not (or how)."""
    found = bwrap or shutil.which("bwrap")
    if not found:
        return False, ("bubblewrap (bwrap) is not installed, so tasks cannot be sandboxed: install it "
                       "(Debian/Ubuntu: sudo apt install bubblewrap)")
    try:
        probe = subprocess.run([found, "--unshare-all", "--unshare-user", "--die-with-parent",
                                "--ro-bind", "/", "/", "--", "true"],
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap ({found}) could not be run: {exc}"
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        return False, (f"bubblewrap cannot create a sandbox here ({why}): unprivileged user namespaces "
                       "may be disabled (sysctl kernel.unprivileged_userns_clone=1, or an AppArmor "
                       "restriction on user namespaces)")
    return True, f"tasks run in a bubblewrap sandbox ({found})"


def interpreter_paths(python: str, *, hidden: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The folders the task interpreter imports from, to bind read-only.

    A folder that is, or contains, one of ``hidden`` (the lender's home, the
    slave's data folder) is left out, so a task environment living directly in
    the home cannot drag the whole home into the sandbox."""
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        found = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        found = []
    # The interpreter's own file and where its symlinks lead (a venv's python
    # points at the base installation's).
    found += [str(Path(python).parent), str(Path(os.path.realpath(python)).parent.parent)]
    return readonly_folders(found, hidden=hidden)


def readonly_folders(candidates: list[str], *, hidden: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Existing folders among ``candidates``, each once, none inside another,
    and none that would expose a ``hidden`` folder."""
    resolved = set()
    for one in candidates:
        if not one or not os.path.isdir(one):
            continue
        path = os.path.realpath(one)
        if any(_is_within(h, path) for h in hidden) or path == "/":
            continue
        if any(_is_within(path, system) for system in SYSTEM_FOLDERS):
            continue  # already bound with the system
        resolved.add(path)
    kept = [p for p in sorted(resolved) if not any(p != q and _is_within(p, q) for q in resolved)]
    return tuple(kept)


def _is_within(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def sandboxed_argv(argv: list[str], task_dir: Path, *, writable: tuple[Path, ...] = (),
                   sandbox: Sandbox) -> list[str]:
    """``argv`` wrapped to run inside the sandbox, in ``task_dir``, with only
    ``task_dir`` and the ``writable`` folders (made if missing) writable."""
    wrapped = [sandbox.bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
               "--die-with-parent", "--new-session"]
    if sandbox.network:
        wrapped.append("--share-net")
    for folder in SYSTEM_FOLDERS:
        if os.path.isdir(folder):
            wrapped += ["--ro-bind", folder, folder]
    for name in SYSTEM_LINKS_OR_FOLDERS:
        if os.path.islink(name):
            wrapped += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            wrapped += ["--ro-bind", name, name]
    # bwrap's /dev and its root are tmpfs of half the RAM, writable by the task,
    # and a tmpfs is memory an rlimit does not count: /dev/shm gets a small
    # tmpfs of its own, then /dev and the root are made read-only (last, below).
    wrapped += ["--proc", "/proc", "--dev", "/dev", "--size", str(PRIVATE_SHM_BYTES), "--tmpfs", "/dev/shm",
                "--remount-ro", "/dev", "--size", str(PRIVATE_TMP_BYTES), "--tmpfs", "/tmp"]
    for folder in sandbox.readonly_paths:
        wrapped += ["--ro-bind", folder, folder]
    for folder in (task_dir, *writable):
        Path(folder).mkdir(parents=True, exist_ok=True)
        wrapped += ["--bind", str(folder), str(folder)]
    wrapped += ["--remount-ro", "/", "--chdir", str(task_dir), "--", *argv]
    return wrapped


def sandboxed_environment(env: dict[str, str], task_dir: Path) -> dict[str, str]:
    """The task's environment inside the sandbox: only harmless variables of
    the slave's and the task's own, with ``HOME`` in the task's folder."""
    kept = {k: v for k, v in env.items()
            if (k in KEPT_VARIABLES or k.startswith(KEPT_PREFIXES)) and k not in DROPPED_VARIABLES}
    kept["HOME"] = str(task_dir)
    kept.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return kept


class Confinement:
    """How a runner holds each attempt in: inside a bubblewrap sandbox (``sandboxed``)
    or not (the lender chose ``sandbox = "off"``, or the master's own cores have
    no bubblewrap), and within rlimits for the caps its cgroup could not hold.

    Besides its own folder, a sandboxed attempt may write the launch's
    ``writable`` folders (its slot's caches, its scratch folder). ``hidden``
    folders (the lender's home, the slave's data folder) are never bound, even
    where a task interpreter lives inside one."""

    def __init__(self, *, sandboxed: bool = False, network: bool = False, hidden: tuple[str, ...] = (),
                 bwrap: str = "bwrap"):
        # Job environments' interpreters are never started outside a sandbox (a
        # wheel's .pth is a master's code): their folders come from here instead
        # (trayapp.install.envs.EnvStore.readonly_paths_of; None = not one of them).
        self.readonly_of: Callable[[str], tuple[str, ...] | None] = lambda _python: None
        self.sandboxed = sandboxed
        self.network = network
        self.hidden = hidden
        self.bwrap = bwrap
        self._readonly: dict[str, tuple[str, ...]] = {}  # per task interpreter (job environments have their own)

    def wrap(self, launch: Launch, env: dict[str, str], limits: TaskCaps) -> tuple[list[str], dict[str, str]]:
        """The command and environment that run ``launch.argv`` confined, in its work folder;
        ``env`` is its whole environment, ``limits`` the caps left for rlimits."""
        argv = list(launch.argv)
        if not self.sandboxed:
            # Outside a user namespace the process count is the lender's whole
            # account's: only a cgroup can hold it there.
            return limits_prefix(limits.memory_mb, None, limits.disk_mb) + argv, env
        inner = limits_prefix(limits.memory_mb, limits.processes, limits.disk_mb) + argv
        sandbox = Sandbox(self.readonly_for(argv[0]), network=self.network, bwrap=self.bwrap)
        return (sandboxed_argv(inner, launch.work_dir, writable=launch.writable, sandbox=sandbox),
                sandboxed_environment(env, launch.work_dir))

    def readonly_for(self, python: str) -> tuple[str, ...]:
        """What the sandbox binds read-only for tasks run by ``python``, probed once per interpreter."""
        if python not in self._readonly:
            known = self.readonly_of(python)
            self._readonly[python] = known if known is not None else interpreter_paths(python, hidden=self.hidden)
        return self._readonly[python]
