"""``sparecycles envs list|prune``: the job environments built on this PC.

Each environment holds the packages of one requirement set (see
:mod:`trayapp.install.envs`); they are rebuilt on demand, so pruning only costs
the next job of that set its first build.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from trayapp.app import App
from trayapp.cli.output import EXIT_OK, table

if TYPE_CHECKING:
    from trayapp.install.envs import EnvStore


def add_envs_parser(verbs) -> None:
    envs = verbs.add_parser("envs", help="job environments on this PC (one per requirement set)")
    actions = envs.add_subparsers(dest="envs_verb", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="environments with their packages, size and last use")
    p.add_argument("--json", action="store_true")
    p = actions.add_parser("prune", help="remove every environment no task runs in now, and forget failed builds")
    p.add_argument("--json", action="store_true")


def env_store(app: App) -> EnvStore:
    # Here, not at the top: every CLI verb loads this module, few need environments.
    from trayapp.install.envs import env_store_for
    from trayapp.install.taskenv import task_interpreter

    python = task_interpreter(app.config.task_python, home=app.home, create=False) or ""
    return env_store_for(app.home.data_dir, python, package_index=app.config.package_index,
                         wheel_folder=app.config.wheel_folder, max_gb=app.config.envs_max_gb)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n < (1 << 30) else f"{n / (1 << 30):.1f} GB"


def cmd_envs(app: App, args) -> int:
    from trayapp.install.envs import describe_requirements

    store = env_store(app)
    if args.envs_verb == "prune":
        removed = store.evict(everything=True)
        forgotten = store.forget_failures()
        if args.json:
            print(json.dumps({"removed": [e.key for e in removed], "freed_bytes": sum(e.size_bytes for e in removed),
                              "failures_forgotten": forgotten}))
        else:
            kept = len(store.entries())
            print(f"removed {len(removed)} environment{'s' if len(removed) != 1 else ''} "
                  f"({_size(sum(e.size_bytes for e in removed))})"
                  + (f"; {kept} kept because tasks run in them" if kept else ""))
        return EXIT_OK
    entries = store.entries()
    if args.json:
        print(json.dumps([{"key": e.key, "requirements": list(e.requirements), "python": e.python,
                           "size_bytes": e.size_bytes, "built": e.built, "build_s": e.build_s,
                           "installer": e.installer, "last_used": e.last_used, "in_use": e.users,
                           "damaged": e.damaged, "note": e.note}
                          for e in entries], indent=2))
    elif not entries:
        print(f"no job environments on this PC yet ({store.root})")
    else:
        rows = [[e.key, "(damaged record)" if e.damaged else describe_requirements(e.requirements)
                 + (f" ({e.note.partition(': ')[2]})" if e.note else ""), e.python, _size(e.size_bytes),
                 f"{e.build_s:.0f} s ({e.installer})", time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)),
                 str(e.users)] for e in entries]
        print(table(["ENV", "REQUIREMENTS", "PYTHON", "SIZE", "BUILT IN", "LAST USED", "TASKS"], rows))
        total = sum(e.size_bytes for e in entries)
        print(f"{_size(total)} of {_size(store.max_bytes)} (envs_max_gb) in {store.root}")
        for e in entries:
            if e.damaged:
                print(f"environment {e.key}: {e.damaged}; fix: 'sparecycles envs prune' removes it "
                      "(it is built again when a job needs it)")
    return EXIT_OK
