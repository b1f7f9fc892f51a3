"""Cold and warm start of the bundled tray app to its tray icon, against a bare
PyQt6 tray icon in the same run (target: under 2 s).

Builds the PyInstaller bundle into a temporary folder with installer/build.sh
(about 20 s) unless ``--bundle DIR`` names a built one, then runs
installer/measure.py on it: bundle and tarball size, start to ``--version``,
to the agent's answer, and to the icon embedded in ``trayer`` on Xvfb, cold
(the bundle's files evicted from the page cache) and warm.

    .venv/bin/python bench/bundle_start.py [--bundle dist/sparecycles]

Needs the build prerequisites (pyinstaller in the venv) and Xvfb, trayer and
xwininfo for the tray figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a built one-folder bundle (default: build one now)")
    args = parser.parse_args()
    measure = [sys.executable, str(ROOT / "installer" / "measure.py")]
    if args.bundle:
        return subprocess.run([*measure, str(args.bundle)]).returncode
    with tempfile.TemporaryDirectory(prefix="sparecycles-bench-bundle-") as tmp:
        # build.sh measures what it built (installer/measure.py) and prints it.
        return subprocess.run(["bash", str(ROOT / "installer" / "build.sh"), "--dist", tmp],
                              env={**os.environ, "PYTHON": sys.executable}).returncode


if __name__ == "__main__":
    raise SystemExit(main())
