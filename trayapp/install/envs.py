"""Task environments per requirement set: one cached virtual environment per
(requirements, Python version, platform) on each PC.

A job that names requirements (``requires`` in ``sparecycles.toml`` or a
``requirements.txt``) runs, on a PC whose task environment does not already
meet them, in an environment built once for that set and reused by every
later job with the same set. Layout under ``<data>/envs/``::

    <key>/                 a finished environment (renamed into place when complete)
    <key>/sparecycles-env.json   what it holds: requirements, Python, size, build time
    <key>/in-use/<token>   one file per task running in it: {pid, created}
    <key>.partial/         being built (removed if the build fails)
    <key>.lock             held while building, so two slots or two daemons never build one set twice
    <key>.log              the installer's output of the last build
    <key>.failed           why the last build failed; a new build is tried only after failure_ttl_s

Housekeeping keeps the environments under a disk cap (``envs_max_gb``) by
evicting the least recently used, never one a task runs in;
``sparecycles envs list|prune`` show and clear them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trayapp.install.envbuild import (
    EnvBuildError,
    PackageSource,
    build_environment,
    directory_size,
    find_uv,
    installer_name,
)
from trayapp.install.taskenv import env_python
from trayapp.run.proctree import same_process

log = logging.getLogger(__name__)

META_NAME = "sparecycles-env.json"
FAILURE_TTL_S = 600.0


def canonical_requirements(requires: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The set's one spelling ("Brian2 >= 2.5" and "brian2>=2.5" are one set), sorted."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    spelt = set()
    for text in requires:
        requirement = Requirement(text)
        requirement.name = canonicalize_name(requirement.name)
        spelt.add(str(requirement))
    return tuple(sorted(spelt))


def describe_requirements(requirements: tuple[str, ...], limit: int = 4) -> str:
    shown = ", ".join(requirements[:limit])
    return shown + (f" and {len(requirements) - limit} more" if len(requirements) > limit else "")


def base_identity(python: str) -> dict:
    """The base interpreter's Python version and platform: what an environment's key depends on."""
    script = ("import platform, sys, sysconfig; "
              "print(platform.python_version()); print(sysconfig.get_platform()); print(sys.implementation.name)")
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    version, plat, implementation = out.split()[:3]
    return {"python": version, "platform": plat, "implementation": implementation}


def environment_key(requirements: tuple[str, ...], identity: dict) -> str:
    blob = json.dumps({"requirements": list(requirements), **identity}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EnvInfo:
    """One environment on disk, for ``envs list`` and eviction."""

    key: str
    requirements: tuple[str, ...]
    python: str
    size_bytes: int
    built: float
    build_s: float
    installer: str
    last_used: float
    users: int  # tasks running in it now
    damaged: str | None = None  # why its record cannot be read: listed, and removed by prune


class EnvStore:
    """The environments of one PC, built from ``base_python`` (the task environment's interpreter)."""

    def __init__(self, root: Path, base_python: str, *, source: PackageSource = PackageSource(),
                 max_bytes: int = 5 << 30, failure_ttl_s: float = FAILURE_TTL_S,
                 clock: Callable[[], float] = time.time, uv: str | None | bool = True):
        self.root = Path(root)
        self.base_python = base_python
        self.source = source
        self.max_bytes = max_bytes
        self.failure_ttl_s = failure_ttl_s
        self.clock = clock
        self.uv = find_uv() if uv is True else (uv or None)
        self._identity: tuple[float, dict] | None = None

    # ----- which environment ------------------------------------------------------

    def identity(self) -> dict:
        """Read again when the base interpreter changes (an upgraded Python makes new keys)."""
        try:
            stamp = os.stat(self.base_python).st_mtime
        except OSError:
            stamp = 0.0
        if self._identity is None or self._identity[0] != stamp:
            self._identity = (stamp, base_identity(self.base_python))
        return self._identity[1]

    def key_for(self, requirements: tuple[str, ...]) -> str:
        return environment_key(requirements, self.identity())

    def python_of(self, key: str) -> str | None:
        """The interpreter of a finished environment, or None if there is none."""
        folder = self.root / key
        if (folder / META_NAME).is_file() and env_python(folder).exists():
            return str(env_python(folder))
        return None

    def recent_failure(self, key: str) -> str | None:
        """Why the last build of ``key`` failed, if it failed less than ``failure_ttl_s`` ago."""
        try:
            record = json.loads((self.root / f"{key}.failed").read_text())
        except (OSError, ValueError):
            return None
        if self.clock() - float(record.get("when", 0)) >= self.failure_ttl_s:
            return None
        return str(record.get("error") or "the build failed")

    # ----- building -----------------------------------------------------------------

    def build(self, requirements: tuple[str, ...], key: str | None = None) -> str:
        """Build (or find, if another slot or process just built it) the environment
        for ``requirements``; returns its interpreter. Blocks: call it from a worker
        thread. Raises :class:`EnvBuildError` with the installer's error tail."""
        key = key or self.key_for(requirements)
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f"{key}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if we die
            python = self.python_of(key)
            if python:
                return python
            failure = self.recent_failure(key)
            if failure:
                raise EnvBuildError(failure)
            python = self._build_locked(key, requirements)
        self.evict(keep={key})
        return python

    def _build_locked(self, key: str, requirements: tuple[str, ...]) -> str:
        partial, final = self.root / f"{key}.partial", self.root / key
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # a folder without its record is a build that died
        began = time.monotonic()
        with (self.root / f"{key}.log").open("w", encoding="utf-8") as build_log:
            def note(line: str) -> None:
                build_log.write(line + "\n")
                log.info("env %s: %s", key, line)

            note(f"building {', '.join(requirements)} with {installer_name(self.uv)} from {self.base_python}")
            try:
                build_environment(partial, self.base_python, requirements, self.source, log=note, uv=self.uv)
            except EnvBuildError as exc:
                shutil.rmtree(partial, ignore_errors=True)
                (self.root / f"{key}.failed").write_text(json.dumps({"when": self.clock(), "error": str(exc)}))
                note(f"failed: {exc}")
                raise
        meta = {"requirements": list(requirements), **self.identity(), "built": self.clock(),
                "build_s": round(time.monotonic() - began, 1), "installer": installer_name(self.uv),
                "size_bytes": directory_size(partial)}
        (partial / META_NAME).write_text(json.dumps(meta, indent=1))
        os.replace(partial, final)
        (self.root / f"{key}.failed").unlink(missing_ok=True)
        return str(env_python(final))

    # ----- in use -------------------------------------------------------------------

    def mark_in_use(self, key: str, token: str, pid: int, created: float) -> None:
        """A task runs in ``key``: it is not evicted until that process is gone."""
        users = self.root / key / "in-use"
        users.mkdir(exist_ok=True)
        (users / token).write_text(json.dumps({"pid": pid, "created": created}))
        os.utime(self.root / key / META_NAME)  # the record's mtime is the last use

    def release(self, token: str) -> None:
        for marker in self.root.glob(f"*/in-use/{token}"):
            marker.unlink(missing_ok=True)

    def users(self, key: str) -> int:
        """Tasks still running in ``key``; markers of processes that are gone are removed."""
        alive = 0
        for marker in (self.root / key / "in-use").glob("*"):
            try:
                record = json.loads(marker.read_text())
                running = same_process(int(record["pid"]), float(record["created"])) is not None
            except (OSError, ValueError, KeyError, TypeError):
                running = False
            if running:
                alive += 1
            else:
                marker.unlink(missing_ok=True)
        return alive

    # ----- housekeeping ---------------------------------------------------------------

    def entries(self) -> list[EnvInfo]:
        found = []
        if not self.root.is_dir():
            return found
        for folder in sorted(self.root.iterdir()):
            meta_file = folder / META_NAME
            if not folder.is_dir() or not meta_file.is_file():
                continue
            try:
                last_used = meta_file.stat().st_mtime
                meta = json.loads(meta_file.read_text())
                found.append(EnvInfo(folder.name, tuple(str(r) for r in meta.get("requirements", ())),
                                     str(meta.get("python", "?")), int(meta.get("size_bytes", 0)),
                                     float(meta.get("built", 0)), float(meta.get("build_s", 0)),
                                     str(meta.get("installer", "?")), last_used, self.users(folder.name)))
            except OSError:
                continue
            except (ValueError, TypeError, AttributeError) as exc:  # not JSON, or fields of the wrong kind
                found.append(EnvInfo(folder.name, (), "?", 0, 0.0, 0.0, "?", last_used, self.users(folder.name),
                                     damaged=f"its record {meta_file} cannot be read ({type(exc).__name__}: "
                                             f"{str(exc)[:120]})"))
        return found

    def evict(self, keep: set[str] = frozenset(), *, everything: bool = False) -> list[EnvInfo]:
        """Remove least recently used environments until they fit under ``max_bytes``
        (or all of them with ``everything``), never one in use or in ``keep``."""
        entries = sorted(self.entries(), key=lambda e: e.last_used)
        total = sum(e.size_bytes for e in entries)
        removed = []
        for entry in entries:
            if not everything and total <= self.max_bytes:
                break
            if entry.users or entry.key in keep:
                continue
            lock_path = self.root / f"{entry.key}.lock"
            with lock_path.open("a") as lock:
                try:  # a build of the same key holds it: leave that one alone
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                # Renamed first, so a task never finds a half-deleted environment.
                doomed = self.root / f"{entry.key}.evicting"
                os.replace(self.root / entry.key, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            total -= entry.size_bytes
            removed.append(entry)
            log.info("env %s (%s) removed: %s", entry.key, ", ".join(entry.requirements),
                     "pruned" if everything else "least recently used, over the disk cap")
        return removed

    def forget_failures(self) -> int:
        failed = list(self.root.glob("*.failed")) if self.root.is_dir() else []
        for path in failed:
            path.unlink(missing_ok=True)
        return len(failed)


def env_store_for(data_dir: Path, base_python: str, *, package_index: str = "", wheel_folder: str = "",
                  max_gb: float = 5.0) -> EnvStore:
    """The environments of the PC whose data folder is ``data_dir``, as its settings say."""
    return EnvStore(Path(data_dir) / "envs", base_python, source=PackageSource(package_index, wheel_folder),
                    max_bytes=int(max_gb * (1 << 30)))
