"""What ``import sparecycles`` costs a task: this tree beside a baseline commit, same run.

Every task that calls ``sparecycles.task_params()`` pays it. For each tree the
script runs a fresh interpreter ``--runs`` times with ``-X importtime`` and
takes the cumulative time Python reports for the ``sparecycles`` module (so
the interpreter's own start is left out), and the whole wall time of
``python -c "import sparecycles"`` minus that of ``python -c pass``. Runs of
the two trees alternate, so load on the shared machine hits both alike. The
baseline is a ``git worktree`` of ``--base`` (default ea88aac: before imports
were made lazy) in a temporary folder; each tree is imported from its own
folder (the working folder comes first on ``sys.path``).

Usage: ``.venv/bin/python bench/import_time.py [--runs 15] [--base COMMIT] [--json]``
Target: under 60 ms for this tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 60.0


def import_ms(tree: Path) -> float:
    """The cumulative import time of ``sparecycles`` in a fresh interpreter, from -X importtime."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sparecycles"], cwd=tree,
                          capture_output=True, text=True, check=True, env=_env())
    for line in done.stderr.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[2].strip() == "sparecycles":
            return int(fields[1]) / 1000
    raise RuntimeError(f"no import of sparecycles reported in {tree}:\n{done.stderr[-2000:]}")


def wall_ms(tree: Path, code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=tree, check=True, env=_env())
    return (time.perf_counter() - started) * 1000


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def imported_from(tree: Path) -> str:
    return subprocess.run([sys.executable, "-c", "import sparecycles; print(sparecycles.__file__)"], cwd=tree,
                          capture_output=True, text=True, check=True, env=_env()).stdout.strip()


def measure(trees: dict[str, Path], runs: int) -> dict[str, dict[str, float]]:
    samples = {name: {"import": [], "wall": []} for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            samples[name]["import"].append(import_ms(tree))
            samples[name]["wall"].append(wall_ms(tree, "import sparecycles") - wall_ms(tree, "pass"))
    return {name: {kind: statistics.median(values) for kind, values in kinds.items()}
            for name, kinds in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--base", default="ea88aac")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="sparecycles-import-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base), args.base], cwd=ROOT, check=True)
        try:
            trees = {f"base {args.base}": base, f"this tree ({head.strip()})": ROOT}
            for tree in trees.values():
                where = imported_from(tree)
                if not where.startswith(str(tree)):
                    raise RuntimeError(f"in {tree}, sparecycles came from {where}")
            figures = measure(trees, args.runs)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    print(f"import sparecycles, median of {args.runs} runs (load average {os.getloadavg()[0]:.2f}):")
    for name, values in figures.items():
        print(f"  {name:<28} -X importtime {values['import']:7.1f} ms   wall minus bare python {values['wall']:7.1f} ms")
    ours = figures[list(figures)[-1]]["import"]
    print(f"target: under {TARGET_MS:.0f} ms: {'met' if ours < TARGET_MS else 'NOT met'} ({ours:.1f} ms)")
    if args.json:
        print(json.dumps({"runs": args.runs, "target_ms": TARGET_MS, "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
