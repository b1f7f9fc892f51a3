"""Task environments per requirement set: one cached virtual environment per
(requirements, Python version, platform) on each PC.

A job that names requirements (``requires`` in ``sparecycles.toml`` or a
``requirements.txt``) runs, on a PC whose task environment does not already
meet them, in an environment built once for that set and reused by every
later job with the same set. Layout under ``<data>/envs/``::

    <key>/                 a finished environment (renamed into place when complete)
    <key>.meta/sparecycles-env.json   what it holds: requirements, Python, size, build time
    <key>.meta/in-use/<token>   one file per task running in it: {pid, created}
    <key>.partial/         being built (removed if the build fails)
    <key>.lock             held while building, so two slots or two daemons never build one set twice
    <key>.log              the installer's output of the last build
    <key>.failed           why the last build failed; a new build is tried only after failure_ttl_s
    uv-cache/<master>/     the wheel cache of sandboxed builds, one per master (never the lender's own,
                           nor ``UV_CACHE_DIR``: builds write it, and a master's setup.py could poison
                           wheels another's build copies)

Whatever the slave itself writes or reads about an environment lives in
``<key>.meta/``, never inside ``<key>``: a sandboxed build step runs a
master's setup.py with ``<key>.partial`` writable, so anything in there may be
a link it planted (``in-use -> ~/.ssh``), and the slave, which has the
lender's rights, must never glob, read, write or remove through it.

An environment extends the task environment (:mod:`trayapp.install.envbuild`),
so its key also depends on what the task environment holds: after an
``update-brian`` the next job builds afresh. A build is done only when the
environment imports every requirement (:mod:`trayapp.install.envcheck`); when
it does not and the requirements pin a release, it is built again as of the
day that release was current (:mod:`trayapp.install.releases`), and the job
is told (``brian2 == 2.8.0: resolved as of 2025-01-22``).

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
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trayapp.install.buildsandbox import BuildSandbox, build_environment_variables
from trayapp.install.envbuild import (
    BuildPlan,
    EnvBuildError,
    PackageSource,
    build_environment,
    directory_size,
    find_uv,
    installer_name,
)
from trayapp.install.envcheck import CHECK_SCRIPT, CHECK_TIMEOUT_S, first_failure, parse_report
from trayapp.install.releases import resolve_as_of
from trayapp.install.taskenv import env_python, installed_distributions, site_folders, subprocess_environment
from trayapp.run.sandbox import readonly_folders
from trayapp.run.proctree import same_process

log = logging.getLogger(__name__)

META_NAME = "sparecycles-env.json"
_KEY = re.compile(r"[0-9a-f]{16}")  # an environment's folder name (environment_key)
META_SUFFIX = ".meta"  # <key>.meta/: the slave's own record of <key>, which no build can write
FAILURE_TTL_S = 600.0


def canonical_requirements(requires: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The set's one spelling ("Brian2 >= 2.5" and "brian2>=2.5" are one set), sorted."""
    from packaging.utils import canonicalize_name

    from trayapp.install.requirement import read_requirement

    spelt = set()
    for text in requires:
        requirement = read_requirement(text)
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
    note: str = ""  # e.g. "brian2 == 2.8.0: resolved as of 2025-01-22"


class EnvStore:
    """The environments of one PC, built from ``base_python`` (the task environment's interpreter)."""

    def __init__(self, root: Path, base_python: str, *, source: PackageSource = PackageSource(),
                 max_bytes: int = 5 << 30, failure_ttl_s: float = FAILURE_TTL_S,
                 clock: Callable[[], float] = time.time, uv: str | None | bool = True,
                 sandbox: BuildSandbox | None = None, cache_dir: Path | None = None):
        self.root = Path(root)
        self.sandbox = sandbox
        # A sandboxed build may write the wheel cache: never the lender's own (~/.cache/uv, or wherever
        # the daemon's UV_CACHE_DIR says), which the lender's uv uses outside any sandbox; each master
        # gets a folder of its own (cache_for); unsandboxed builds use whatever uv would.
        chosen = cache_dir or (self.root / "uv-cache" if sandbox else os.environ.get("UV_CACHE_DIR"))
        self.cache_dir = Path(chosen) if chosen else None
        # What each build under way is doing beyond installing (shown on its tasks), by key.
        self.notes: dict[str, str] = {}
        self.base_python = base_python
        self.source = source
        self.max_bytes = max_bytes
        self.failure_ttl_s = failure_ttl_s
        self.clock = clock
        self.uv = find_uv() if uv is True else (uv or None)
        self._identity: tuple[tuple, dict] | None = None
        self._task_env: tuple[tuple[str, ...], dict[str, str]] = ((), {})
        self._site_folders: tuple[str, ...] | None = None

    # ----- which environment ------------------------------------------------------

    def identity(self) -> dict:
        """Read again when the base interpreter or its packages change (an upgraded
        Python or Brian makes new keys). Starts interpreters: not on an event loop."""
        if self._site_folders is None:
            self._site_folders = site_folders(self.base_python)
        stamp = []
        for path in (self.base_python, *self._site_folders):
            try:
                stamp.append(os.stat(path).st_mtime)
            except OSError:
                stamp.append(0.0)
        if self._identity is None or self._identity[0] != tuple(stamp):
            installed = installed_distributions(self.base_python)
            self._task_env = (self._site_folders, installed)
            packages = hashlib.sha256(json.dumps(sorted(installed.items())).encode()).hexdigest()[:16]
            self._identity = (tuple(stamp), {**base_identity(self.base_python), "task_env": packages})
        return self._identity[1]

    def key_for(self, requirements: tuple[str, ...]) -> str:
        return environment_key(requirements, self.identity())

    def meta_of(self, key: str) -> Path:
        """The slave's own folder about ``key`` (its record, its in-use markers): beside the
        environment, where no build step can plant a link."""
        return self.root / f"{key}{META_SUFFIX}"

    def cache_for(self, master_folder: str) -> Path | None:
        """The wheel cache of builds for one master (its per-master folder name): a master's
        setup.py can write its own cache only, never wheels another master's build copies."""
        if self.sandbox is None or self.cache_dir is None or not master_folder:
            return self.cache_dir
        return self.cache_dir / master_folder

    def python_of(self, key: str) -> str | None:
        """The interpreter of a finished environment, or None if there is none."""
        folder = self.root / key
        if (self.meta_of(key) / META_NAME).is_file() and env_python(folder).exists():
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

    def build(self, requirements: tuple[str, ...], key: str | None = None, master_folder: str = "") -> str:
        """Build (or find, if another slot or process just built it) the environment
        for ``requirements``, for the master whose folder is ``master_folder`` (its wheel
        cache); returns its interpreter. Blocks: call it from a worker thread. Raises
        :class:`EnvBuildError` with the installer's error tail."""
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
            python = self._build_locked(key, requirements, self.cache_for(master_folder))
        self.evict(keep={key})
        return python

    def _build_locked(self, key: str, requirements: tuple[str, ...], cache: Path | None) -> str:
        partial, final, meta_dir = self.root / f"{key}.partial", self.root / key, self.meta_of(key)
        shutil.rmtree(final, ignore_errors=True)  # a folder without its record is a build that died
        shutil.rmtree(meta_dir, ignore_errors=True)
        began = time.monotonic()
        self.identity()
        task_site, installed = self._task_env
        plan = BuildPlan(requirements, task_site, installed)
        with (self.root / f"{key}.log").open("w", encoding="utf-8") as build_log:
            def note(line: str) -> None:
                build_log.write(line + "\n")
                log.info("env %s: %s", key, line)

            try:
                failure = self._build_and_check(partial, plan, note, cache)
                as_of = None
                if failure is not None:
                    as_of = self._as_of(requirements, note)
                    if as_of is None:
                        raise EnvBuildError(failure)
                    when, pin = as_of
                    self.notes[key] = f"{pin}: resolved as of {when:%Y-%m-%d}"
                    note(f"{failure}; building again as of {when.isoformat()} ({pin} was current then)")
                    plan = BuildPlan(requirements, task_site, installed, exclude_newer=when.isoformat())
                    try:
                        again = self._build_and_check(partial, plan, note, cache)
                    except EnvBuildError as exc:
                        again = str(exc)
                    if again is not None:
                        raise EnvBuildError(f"{failure} (resolved as of {when:%Y-%m-%d}, when {pin} was current, "
                                            f"it does not import either: {again})")
            except EnvBuildError as exc:
                shutil.rmtree(partial, ignore_errors=True)
                (self.root / f"{key}.failed").write_text(json.dumps({"when": self.clock(), "error": str(exc)}))
                note(f"failed: {exc}")
                raise
            finally:
                self.notes.pop(key, None)
        meta = {"requirements": list(requirements), **self.identity(), "built": self.clock(),
                "build_s": round(time.monotonic() - began, 1), "installer": installer_name(self.uv),
                "size_bytes": directory_size(partial), "task_python": self.base_python,
                "note": f"{as_of[1]}: resolved as of {as_of[0]:%Y-%m-%d}" if as_of else ""}
        os.replace(partial, final)
        # The record goes beside the environment, never into it (the build may have planted a link there);
        # written last, it is what makes the environment found.
        meta_dir.mkdir(exist_ok=True)
        (meta_dir / META_NAME).write_text(json.dumps(meta, indent=1))
        (self.root / f"{key}.failed").unlink(missing_ok=True)
        return str(env_python(final))

    def _build_and_check(self, partial: Path, plan: BuildPlan, note: Callable[[str], None],
                         cache: Path | None) -> str | None:
        """Build into ``partial`` (afresh); None if it imports every requirement, else why not."""
        shutil.rmtree(partial, ignore_errors=True)
        note(f"building {', '.join(plan.requirements)} with {installer_name(self.uv)} over {self.base_python}"
             + (f", as of {plan.exclude_newer}" if plan.exclude_newer else ""))
        build_environment(partial, self.base_python, plan, self.source, log=note, uv=self.uv,
                          sandbox=self.sandbox, cache_dir=cache)
        return self.import_problem(partial, plan.requirements, note)

    def import_problem(self, env_dir: Path, requirements: tuple[str, ...],
                       note: Callable[[str], None] = lambda _line: None) -> str | None:
        """Import each requirement's top-level modules in the environment at
        ``env_dir`` (in the build sandbox): None if all import, else what failed and the fix."""
        from packaging.requirements import Requirement

        scratch = Path(str(env_dir) + ".check")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        names = [Requirement(r).name for r in requirements]
        command = [str(env_python(env_dir)), "-c", CHECK_SCRIPT, *names]
        extra = {"MPLBACKEND": "Agg", "MPLCONFIGDIR": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
        env = build_environment_variables(subprocess_environment(), home=str(scratch), extra=extra)
        if self.sandbox is not None:
            checker = BuildSandbox(readonly_folders([*self.sandbox.readonly, str(env_dir)]), self.sandbox.bwrap)
            command = checker.wrap(command, scratch)
        note(f"$ import check of {', '.join(names)}")
        try:
            result = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, errors="replace",
                                    timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"importing {', '.join(names)} did not finish within {CHECK_TIMEOUT_S:.0f} s"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        report = parse_report(result.stdout)
        if report is None:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return f"the new environment's Python does not start ({tail})"
        failure = first_failure(report, requirements)
        note("import check: " + (failure.message if failure else "every requirement imports"))
        return failure.message if failure else None

    def _as_of(self, requirements: tuple[str, ...], note: Callable[[str], None]):
        if not self.uv:
            return None
        try:
            return resolve_as_of(requirements, self.source.index_url)
        except Exception as exc:  # noqa: BLE001 - no date means no second try, never a crash
            note(f"cannot read release dates from the index: {exc}")
            return None

    def entry_note(self, key: str) -> str:
        """What the build of ``key`` had to do beyond the plain resolution ("" if nothing)."""
        try:
            return str(json.loads((self.meta_of(key) / META_NAME).read_text()).get("note") or "")
        except (OSError, ValueError, AttributeError):
            return ""

    def readonly_paths_of(self, python: str) -> tuple[str, ...] | None:
        """What a task run by ``python`` needs read-only if ``python`` is one of these
        environments' (its folder and the build sandbox's folders), found without
        starting it: its ``.pth`` files are a master's code. None for another interpreter."""
        path = Path(python)
        folder = path.parent.parent
        if self.sandbox is None or folder.parent != self.root or not (self.meta_of(folder.name) / META_NAME).is_file():
            return None
        return readonly_folders([*self.sandbox.readonly, str(folder)])

    # ----- in use -------------------------------------------------------------------

    def mark_in_use(self, key: str, token: str, pid: int, created: float) -> None:
        """A task runs in ``key``: it is not evicted until that process is gone."""
        users = self.meta_of(key) / "in-use"
        users.mkdir(exist_ok=True)
        (users / token).write_text(json.dumps({"pid": pid, "created": created}))
        os.utime(self.meta_of(key) / META_NAME)  # the record's mtime is the last use

    def release(self, token: str) -> None:
        for marker in self.root.glob(f"*{META_SUFFIX}/in-use/{token}"):
            marker.unlink(missing_ok=True)

    def users(self, key: str) -> int:
        """Tasks still running in ``key``; markers of processes that are gone are removed."""
        alive = 0
        for marker in (self.meta_of(key) / "in-use").glob("*"):
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
            # Only finished environments: <key> with its <key>.meta record. Nothing inside <key> is
            # looked at (lstat of the folder itself only): a build could have planted anything there.
            if "." in folder.name or not folder.is_dir() or folder.is_symlink():
                continue
            meta_file = self.meta_of(folder.name) / META_NAME
            if not meta_file.is_file():
                if _KEY.fullmatch(folder.name):  # an older layout's, or a build that died: prune removes it
                    found.append(EnvInfo(folder.name, (), "?", 0, 0.0, 0.0, "?", folder.lstat().st_mtime, 0,
                                         damaged=f"it has no record {meta_file} (built by an older SpareCycles, "
                                                 f"or its build died)"))
                continue
            try:
                last_used = meta_file.stat().st_mtime
                meta = json.loads(meta_file.read_text())
                found.append(EnvInfo(folder.name, tuple(str(r) for r in meta.get("requirements", ())),
                                     str(meta.get("python", "?")), int(meta.get("size_bytes", 0)),
                                     float(meta.get("built", 0)), float(meta.get("build_s", 0)),
                                     str(meta.get("installer", "?")), last_used, self.users(folder.name),
                                     note=str(meta.get("note") or "")))
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
                shutil.rmtree(self.meta_of(entry.key), ignore_errors=True)
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
                  max_gb: float = 5.0, sandboxed: bool = False, hidden: tuple[str, ...] = ()) -> EnvStore:
    """The environments of the PC whose data folder is ``data_dir``, as its settings say;
    ``sandboxed``: builds and probes run in bubblewrap, never seeing ``hidden``."""
    from trayapp.install.buildsandbox import build_sandbox_for

    uv = find_uv()
    sandbox = build_sandbox_for(base_python, hidden=hidden, uv=uv, wheel_folder=wheel_folder) if sandboxed else None
    return EnvStore(Path(data_dir) / "envs", base_python, source=PackageSource(package_index, wheel_folder),
                    max_bytes=int(max_gb * (1 << 30)), uv=uv or None, sandbox=sandbox)
