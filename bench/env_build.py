"""Time to build a job environment (Brian 2 + matplotlib) with uv and with pip,
cold cache and warm cache, side by side.

Each build is what a slave does for a job with ``requires = ["brian2",
"matplotlib", "numpy < 2"]``: a fresh virtual environment from this venv's
interpreter, packages from the public index (PyPI). "Cold" uses an empty
download/wheel cache made for the run (so everything is downloaded); "warm"
builds a second environment with the cache the cold build filled. pip runs
with no configuration file, so a machine's local wheel folders do not help it.

    .venv/bin/python bench/env_build.py [--json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_workspace, machine_info, print_machine_info  # noqa: E402

from trayapp.install.envbuild import PackageSource, build_environment, directory_size, find_uv  # noqa: E402
from trayapp.install.taskenv import env_python  # noqa: E402

REQUIREMENTS = ("brian2", "matplotlib", "numpy<2")


def one_build(folder: Path, uv: str | None, cache: Path) -> dict:
    os.environ["UV_CACHE_DIR"] = str(cache)
    os.environ["PIP_CACHE_DIR"] = str(cache)
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    os.environ.pop("PIP_FIND_LINKS", None)
    began = time.perf_counter()
    build_environment(folder, sys.executable, REQUIREMENTS, PackageSource(), log=lambda _line: None, uv=uv, nice=0)
    seconds = time.perf_counter() - began
    version = subprocess.run([str(env_python(folder)), "-c", "import brian2, matplotlib; print(brian2.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return {"seconds": round(seconds, 1), "brian2": version, "mb": round(directory_size(folder) / 1e6)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    info = machine_info()
    print_machine_info(info)
    uv = find_uv()
    if uv is None:
        print("uv not found (pip install uv)", file=sys.stderr)
        return 1
    results = {}
    with bench_workspace("env-build-", keep=args.keep) as (root, _processes):
        for installer, binary in (("uv", uv), ("pip", None)):
            cache = root / f"{installer}-cache"
            for temperature in ("cold", "warm"):
                figures = one_build(root / f"{installer}-{temperature}", binary, cache)
                results[f"{installer} {temperature}"] = figures
                print(f"{installer:>4} {temperature}: {figures['seconds']:6.1f} s  "
                      f"(brian2 {figures['brian2']}, {figures['mb']} MB)", flush=True)
    print()
    print(f"{'':8}{'cold cache':>12}{'warm cache':>12}")
    for installer in ("uv", "pip"):
        print(f"{installer:8}{results[installer + ' cold']['seconds']:>10.1f} s"
              f"{results[installer + ' warm']['seconds']:>10.1f} s")
    print(f"uv is {results['pip cold']['seconds'] / results['uv cold']['seconds']:.1f}x faster cold, "
          f"{results['pip warm']['seconds'] / results['uv warm']['seconds']:.1f}x warm")
    if args.json:
        print(json.dumps({"machine": info, "requirements": REQUIREMENTS, "builds": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
