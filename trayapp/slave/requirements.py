"""What a slave's task environment offers: its Python and Brian versions
(reported to masters in the hello) and whether it meets a job's requirements
(``requires = ["brian2 >= 2.5"]`` in the job's manifest) as it is, or needs a
job environment built for them (:mod:`trayapp.slave.environments`).

What it offers is never stale: :class:`SitePackagesWatch` notices a package
installed or removed in the task environment (an ``update-brian``, a pip
install by hand) from the mtime of its site-packages folders, and both the
requirement answers and the versions are read again at once, without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Callable

from trayapp.install.taskenv import installed_distributions


class SitePackagesWatch:
    """The task environment's site-packages folders, and a stamp that changes
    whenever a distribution is installed or removed there (an os.stat per folder)."""

    def __init__(self, python: str):
        script = ("import json, os, sys, sysconfig\n"
                  "paths = {sysconfig.get_path('purelib'), sysconfig.get_path('platlib')}\n"
                  "paths |= {p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))}\n"
                  "print(json.dumps(sorted(p for p in paths if os.path.isdir(p))))")
        try:
            out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60).stdout
            self.folders = tuple(json.loads(out or "[]"))
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.folders = ()

    def stamp(self) -> float:
        newest = 0.0
        for folder in self.folders:
            try:
                newest = max(newest, os.stat(folder).st_mtime)
            except OSError:
                continue
        return newest


def probe_versions(python: str) -> dict:
    """Python and Brian versions of the task environment, reported to masters."""
    script = ("import platform, importlib.metadata as m\n"
              "try: b = m.version('brian2')\nexcept m.PackageNotFoundError: b = None\n"
              "print(platform.python_version()); print(b or '')")
    try:
        out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60).stdout.split("\n")
        return {"python": out[0].strip() or None, "brian": out[1].strip() or None}
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return {"python": None, "brian": None}


def refused_requirements(requires: list[str]) -> str | None:
    """Why a job's requirement lines cannot be built here at all (a URL, a path,
    a line that is no requirement), with the fix; None if every line names a package."""
    from trayapp.install.requirement import RequirementRefused, read_requirement

    for text in requires:
        try:
            read_requirement(text)
        except RequirementRefused as refused:
            return f"{refused.problem}; fix: {refused.fix}"
    return None


class RequirementChecker:
    """Checks a job's requirements (``brian2 >= 2.5``) against the task environment.

    What is installed is read in one go (every distribution, one interpreter
    start) and kept until the task environment changes (``watch``) or for
    ``ttl_s``. :meth:`cached` answers without starting anything, so the slave's
    loop never waits for an interpreter; :meth:`unmet` may start one: call it
    from a worker thread.
    """

    def __init__(self, python: str, ttl_s: float = 60.0, watch: SitePackagesWatch | None = None):
        self.python = python
        self.ttl_s = ttl_s
        self.watch = watch
        self._stamp = watch.stamp() if watch else 0.0
        self._inventory: tuple[float, float, dict[str, str]] | None = None  # (read at, stamp, versions)
        self._lock = threading.Lock()

    def cached(self) -> dict[str, str] | None:
        """The installed versions if the last reading is still good, else None (never blocks)."""
        known = self._inventory
        if known is None or time.monotonic() - known[0] >= self.ttl_s:
            return None
        if self.watch is not None and self.watch.stamp() != known[1]:
            return None
        return known[2]

    def inventory(self) -> dict[str, str]:
        """The installed versions, read again if stale (starts the task interpreter: blocks)."""
        with self._lock:
            known = self.cached()
            if known is not None:
                return known
            stamp = self.watch.stamp() if self.watch is not None else 0.0
            versions = installed_distributions(self.python)
            self._inventory = (time.monotonic(), stamp, versions)
            return versions

    def installed(self, name: str) -> str | None:
        from packaging.utils import canonicalize_name

        return self.inventory().get(canonicalize_name(name))

    def unmet(self, requires: list[str], installed: dict[str, str] | None = None) -> str | None:
        """Why this environment cannot run the job, or None if it can."""
        from packaging.utils import canonicalize_name

        from trayapp.install.requirement import RequirementRefused, read_requirement

        installed = self.inventory() if installed is None else installed
        problems = []
        for text in requires:
            try:
                requirement = read_requirement(text)
            except RequirementRefused as refused:
                problems.append(f"{refused.problem}; fix: {refused.fix}")
                continue
            have = installed.get(canonicalize_name(requirement.name))
            if have is None:
                problems.append(f"needs {text}, which is not installed here")
            elif not requirement.specifier.contains(have, prereleases=True):
                problems.append(f"needs {text}, has {requirement.name} {have}")
        return "; ".join(problems) or None


class VersionProbe:
    """The task environment's Python and Brian versions, read again when the
    environment changes (``watch``) or every ``ttl_s``, on a helper thread: the
    probe starts an interpreter, which must never hold up the slave engine.
    ``on_change`` is called (from that thread) after each new reading."""

    def __init__(self, python: str, ttl_s: float = 600.0, on_change: Callable[[], None] | None = None,
                 watch: SitePackagesWatch | None = None):
        self.python = python
        self.ttl_s = ttl_s
        self.on_change = on_change
        self.watch = watch
        self.seen_stamp = watch.stamp() if watch else 0.0
        self.versions = probe_versions(python)
        self._read_at = time.monotonic()
        self._probing = False

    def refresh(self) -> None:
        """Start a new reading if the environment changed or the last one is older than ``ttl_s``."""
        if self._probing:
            return
        changed = False
        if self.watch is not None and (stamp := self.watch.stamp()) != self.seen_stamp:
            self.seen_stamp, changed = stamp, True
        if not changed and time.monotonic() - self._read_at < self.ttl_s:
            return
        self._probing = True
        threading.Thread(target=self._probe, name="version-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            self.versions = probe_versions(self.python)  # one assignment: readers see old or new
        finally:
            self._read_at = time.monotonic()
            self._probing = False
            if self.on_change is not None:
                self.on_change()
