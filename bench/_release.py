"""An earlier release of SpareCycles, installed beside this checkout, for side-by-side benchmarks.

A figure such as "100 tasks took 3.9 s against 3.3 s for release 0.1.0" is
worth something only when both ran on the same machine, in the same minutes,
alternating: the load other sessions put on a shared machine moves every
figure by more than the difference. So a benchmark that compares with a
release runs that release's own code in the same run:

* the release's tree is the commit's files (``git archive COMMIT``, i.e. the
  content of a detached worktree, without registering one in the shared
  repository), unpacked under ``CACHE/release-COMMIT/tree``;
* its own virtual environment ``CACHE/release-COMMIT/venv`` with the tree
  installed as a regular (not editable) package, so nothing of this checkout's
  ``trayapp`` can stand in for the release's;
* its ``sparecycles`` console script is the program every process of the
  release's side runs: slave daemons, agents (over SSH), the master and the
  CLI calls. Tasks run with the benchmark's interpreter on both sides
  (``SPARECYCLES_TASK_PYTHON``, which 0.1.0 already honours).

Built once and reused (``.complete`` marks a finished build). The same by hand:

    git archive 9ea5e1c | tar -x -C /tmp/rel/tree
    python3 -m venv /tmp/rel/venv && /tmp/rel/venv/bin/pip install /tmp/rel/tree
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import BenchError

REPO = Path(__file__).resolve().parent.parent
RELEASE_0_1_0 = "9ea5e1c"  # the 0.1.0 release: the baseline issue 22 measures against


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparecycles-bench"


def release_program(commit: str, cache: Path | None = None, *, log=print) -> list[str]:
    """The ``sparecycles`` command of ``commit``'s code in its own venv (built if missing)."""
    full = _resolve(commit)
    folder = (cache or default_cache()) / f"release-{full[:12]}"
    program = folder / "venv" / "bin" / "sparecycles"
    if (folder / ".complete").exists() and program.exists():
        return [str(program)]
    log(f"building release {full[:12]} in {folder} (once; later runs reuse it)", flush=True)
    t0 = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    tree = folder / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", full], stdout=subprocess.PIPE)
    _run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() != 0:
        raise BenchError(f"git archive {full} failed")
    base = getattr(sys, "_base_executable", None) or sys.executable  # a venv's python makes no nested venv
    _run([base, "-m", "venv", str(folder / "venv")])
    _run([str(folder / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          str(tree)])
    if not program.exists():
        raise BenchError(f"release {full[:12]} installed no 'sparecycles' command in {folder / 'venv'}")
    (folder / ".complete").write_text(full + "\n")
    log(f"built release {full[:12]} in {time.perf_counter() - t0:.0f} s", flush=True)
    return [str(program)]


def _resolve(commit: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"no commit {commit!r} in {REPO}: {done.stderr.strip()}")
    return done.stdout.strip()


def _run(args: list[str], **kwargs) -> None:
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr.strip()[-2000:]}")
