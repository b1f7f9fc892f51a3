"""Time and size of a job environment for ``brian2 >= 2.5`` + ``matplotlib``
(the lines a user writes for Brian's examples), built the way a slave used to
and the way it does now, side by side, in one run.

- "fresh (old)": a new virtual environment holding every package (what slaves
  did before environments extended the task environment); it needs the
  ``numpy < 2`` line users do not write, or Brian 2.9.0 does not import;
- "layered": what a slave does now (:class:`trayapp.install.envs.EnvStore`):
  an environment over this venv's task environment (Brian 2.9.0, numpy 1.26)
  that installs only matplotlib and what it lacks, built and import-checked
  in the bubblewrap sandbox (unsandboxed where bwrap cannot run);
- "pip fresh": the old build with pip, the fallback without uv.

Each with uv's (or pip's) cache cold (an empty cache made for the run) and
warm (the cache the cold build filled). Packages come from the public index.

    .venv/bin/python bench/env_build.py [--json] [--keep] [--no-pip]
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

from trayapp.install.buildsandbox import build_sandbox_for  # noqa: E402
from trayapp.install.envbuild import PackageSource, build_environment, directory_size, find_uv  # noqa: E402
from trayapp.install.envs import EnvStore, canonical_requirements  # noqa: E402
from trayapp.install.taskenv import env_python  # noqa: E402
from trayapp.run.sandbox import sandbox_status  # noqa: E402

USER_LINES = ("brian2 >= 2.5", "matplotlib")
OLD_LINES = (*USER_LINES, "numpy < 2")  # what the old fresh build needed to import at all


def _clean_env(cache: Path) -> None:
    os.environ["UV_CACHE_DIR"] = str(cache)
    os.environ["PIP_CACHE_DIR"] = str(cache)
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    os.environ.pop("PIP_FIND_LINKS", None)


def _imports(python: str) -> str:
    return subprocess.run([python, "-c", "import brian2, matplotlib, numpy; print(brian2.__version__, "
                                         "numpy.__version__)"], capture_output=True, text=True, check=True
                          ).stdout.strip()


def fresh_build(folder: Path, uv: str | None, cache: Path) -> dict:
    _clean_env(cache)
    began = time.perf_counter()
    build_environment(folder, sys.executable, OLD_LINES, PackageSource(), log=lambda _line: None, uv=uv, nice=0)
    seconds = time.perf_counter() - began
    return {"seconds": round(seconds, 1), "versions": _imports(str(env_python(folder))),
            "mb": round(directory_size(folder) / 1e6)}


def layered_build(root: Path, uv: str, cache: Path) -> dict:
    _clean_env(cache)
    sandboxed = sandbox_status()[0]
    sandbox = build_sandbox_for(sys.executable, hidden=(str(Path.home()),), uv=uv) if sandboxed else None
    store = EnvStore(root, sys.executable, uv=uv, sandbox=sandbox, cache_dir=cache)
    began = time.perf_counter()
    python = store.build(canonical_requirements(USER_LINES))
    seconds = time.perf_counter() - began
    return {"seconds": round(seconds, 1), "versions": _imports(python), "sandboxed": sandboxed,
            "mb": round(directory_size(Path(python).parent.parent) / 1e6)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-pip", action="store_true", help="skip the pip builds (a minute each)")
    args = parser.parse_args()
    info = machine_info()
    print_machine_info(info)
    uv = find_uv()
    if uv is None:
        print("uv not found (pip install uv)", file=sys.stderr)
        return 1
    results = {}
    with bench_workspace("env-build-", keep=args.keep) as (root, _processes):
        runs = [("fresh (old)", lambda t: fresh_build(root / f"fresh-{t}", uv, root / "uv-cache-fresh")),
                ("layered", lambda t: layered_build(root / f"layered-{t}", uv, root / "uv-cache-layered"))]
        if not args.no_pip:
            runs.append(("pip fresh", lambda t: fresh_build(root / f"pip-{t}", None, root / "pip-cache")))
        for name, run in runs:
            for temperature in ("cold", "warm"):
                figures = run(temperature)
                results[f"{name} {temperature}"] = figures
                print(f"{name:>12} {temperature}: {figures['seconds']:6.1f} s  {figures['mb']:4d} MB  "
                      f"(brian2, numpy: {figures['versions']})", flush=True)
    print()
    print(f"{'':14}{'cold cache':>12}{'warm cache':>12}{'size':>10}")
    for name, _run in runs:
        cold, warm = results[f"{name} cold"], results[f"{name} warm"]
        print(f"{name:14}{cold['seconds']:>10.1f} s{warm['seconds']:>10.1f} s{warm['mb']:>7d} MB")
    print(f"lines: old {', '.join(OLD_LINES)}; layered {', '.join(USER_LINES)} (over this venv's Brian and numpy)")
    if args.json:
        print(json.dumps({"machine": info, "builds": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
