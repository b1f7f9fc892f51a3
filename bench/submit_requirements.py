"""How long ``submit`` spends saying what a job's requirements need, per
requirement name: one interpreter per name (how it was, the baseline, run here
on fewer names) against one pass for all names (how it is).

    .venv/bin/python bench/submit_requirements.py [--names 1000] [--baseline-names 50]

Names are made up (``no-such-package-N``) plus a few installed ones, so both
the installed and the missing answer are exercised. Nothing is submitted; the
figures are of :func:`trayapp.job.submit.what_requirements_need`'s check alone.
"""

from __future__ import annotations

import argparse
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from trayapp.job.requirements import installed_versions  # noqa: E402
from trayapp.slave.requirements import RequirementChecker  # noqa: E402


def names(n: int) -> list[str]:
    return ["numpy", "packaging", "pip"] + [f"no-such-package-{i}" for i in range(max(0, n - 3))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--baseline-names", type=int, default=50)
    args = parser.parse_args()
    python = sys.executable

    few = names(args.baseline_names)
    began = time.perf_counter()
    checker = RequirementChecker(python)
    old = {name: checker.installed(name) for name in few}
    per_name_old = (time.perf_counter() - began) / len(few)

    many = names(args.names)
    began = time.perf_counter()
    new = installed_versions(python, many)
    whole_new = time.perf_counter() - began

    if any(old[name] != new[name] for name in few):
        print("the two ways disagree:", {n: (old[n], new[n]) for n in few if old[n] != new[n]})
        return 1
    print(f"one interpreter per name (before): {per_name_old * 1000:.0f} ms a name "
          f"({len(few)} names measured), so {args.names} names take about {per_name_old * args.names:.0f} s")
    print(f"one pass for all names (now):      {whole_new:.2f} s for {args.names} names "
          f"({whole_new / args.names * 1000:.1f} ms a name)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
