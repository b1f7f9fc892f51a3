"""Per-slot caches and scratch space, so N Brian tasks on one PC never collide.

Brian compiles generated code with Cython into a cache folder shared by every
process of the user (``~/.cython/brian_extensions``), and C++ standalone
builds run ``make -j`` (a compiler per core, for each task). On a slave with N
slots that means N processes racing on one cache and N×N compilers. Each task
gets instead:

- the Cython cache of its master in its *slot*
  (``<spool>/slot-cache/<master>/<n>/cython``): kept from one task of that
  master in that slot to the next, so compiled code is reused, but never
  shared by two tasks running at once, nor seen by another master's task
  (a task could plant modules under Brian's own names there for the next);
  set through ``CYTHON_CACHE_DIR`` and ``codegen.runtime.cython.cache_dir`` in
  a ``brian_preferences`` file;
- the slot's folder itself in ``SPARECYCLES_SLOT_CACHE``, for what a job
  builds once per slot and reuses, such as a Brian C++ standalone binary run
  with ``run_args`` (``resources/standalone``);
- ``TMPDIR`` in its own task folder (removed with it);
- ``make -j<cores>`` for standalone builds (``MAKEFLAGS`` and
  ``devices.cpp_standalone.extra_make_args_unix``);
- ``MPLBACKEND=Agg``: a task has no display; plots go to files.

A ``brian_preferences`` the user put in the job folder is kept; our keys are
added after it, except those the user set.
"""

from __future__ import annotations

import re
from pathlib import Path

PREFERENCES_FILE = "brian_preferences"
CACHE_KEY = "codegen.runtime.cython.cache_dir"
MAKE_KEY = "devices.cpp_standalone.extra_make_args_unix"


def slot_cache_dir(spool_root: Path, slot: int, master_folder: str) -> Path:
    """The Cython cache of one master in one slot of this PC (``master_folder``:
    :attr:`trayapp.slave.identity.Principal.folder`)."""
    if not master_folder or "/" in master_folder or master_folder.startswith("."):
        raise ValueError(f"not a master's folder name: {master_folder!r}")
    return Path(spool_root) / "slot-cache" / master_folder / str(slot) / "cython"


def preference_keys(text: str) -> set[str]:
    """The full names of the keys a Brian preferences file sets (Brian's own reading rules)."""
    keys, bases = set(), []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if section := re.match(r"\[([^\]]*)\]", line):
            bases = section.group(1).strip().split(".")
        elif entry := re.match(r"(.*?)=(.*)", line):
            keys.add(".".join(bases + entry.group(1).strip().split(".")))
    return keys


def brian_preferences_text(cache_dir: Path, cores: int = 1, user_text: str = "") -> str:
    """A ``brian_preferences`` file: the user's own lines, then ours for the keys they did not set."""
    ours = {CACHE_KEY: repr(str(cache_dir)), MAKE_KEY: repr([f"-j{max(1, cores)}"])}
    missing = {key: value for key, value in ours.items() if key not in preference_keys(user_text)}
    if not missing:
        return user_text
    lines = [user_text.rstrip("\n"), ""] if user_text.strip() else []
    lines.append("# added by SpareCycles: this slot's own Cython cache, and make limited to the task's cores")
    for key, value in missing.items():
        section, name = key.rsplit(".", 1)
        lines += [f"[{section}]", f"{name} = {value}"]
    return "\n".join(lines) + "\n"


def prepare_task_caches(work: Path, run_dir: Path, cache_dir: Path, cores: int = 1) -> None:
    """Write the task's ``brian_preferences`` and make its cache and scratch folders."""
    if not cache_dir.is_dir():  # made by the slot's first task: one stat for the others
        cache_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tmp").mkdir(exist_ok=True)  # run_dir exists: the task's work folder is in it
    preferences = work / PREFERENCES_FILE
    user_text = preferences.read_text(encoding="utf-8", errors="replace") if preferences.is_file() else ""
    preferences.write_text(brian_preferences_text(cache_dir, cores, user_text), encoding="utf-8")


def task_cache_environment(run_dir: Path, cache_dir: Path, cores: int = 1) -> dict[str, str]:
    """The environment variables that point a task at its caches and scratch folder."""
    return {"CYTHON_CACHE_DIR": str(cache_dir), "SPARECYCLES_SLOT_CACHE": str(cache_dir.parent),
            "TMPDIR": str(run_dir / "tmp"), "MAKEFLAGS": f"-j{max(1, cores)}", "MPLBACKEND": "Agg"}


def task_writable(run_dir: Path, cache_dir: Path) -> tuple[Path, ...]:
    """What a task may write besides its working folder: its slot's caches and its scratch folder."""
    return cache_dir.parent, run_dir / "tmp"
