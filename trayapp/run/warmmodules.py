"""Which modules a job's warm parent imports (:mod:`trayapp.run.warm`).

The main script's top-level imports (module level, and inside module-level
``if``/``try``/``with`` blocks, never inside a function) plus the
manifest's ``warm = ["mymodule"]`` list; ``warm_start = false`` in the
manifest turns warm starts off for the job. A job whose imports are all
from the standard library runs forked too: a fork saves the interpreter's own
start and the sandbox's (~40 ms and ~6.5 ms of CPU here), which is most of a
trivial task's cost. A name that is
a module of the job folder itself (``model.py`` next to the script) is left
to the task, which imports its own copy, unless the manifest lists it.
Whether a name resolves to an installed package is decided inside the
sandbox, by the task's own interpreter (the warm parent skips what it cannot
find, and a cold task then fails on it as it would anyway).

The slave reads the manifest from the job's unpacked archive; the master
validated it at submission (:mod:`trayapp.job.manifest`), so a file that
does not parse here simply means cold starts.
"""

from __future__ import annotations

import ast
import functools
import logging
from pathlib import Path

# trayapp.job.manifest.MANIFEST_NAME: run/ does not import job/ (job/ imports install/, which imports run/).
MANIFEST_NAME = "sparecycles.toml"

log = logging.getLogger(__name__)


def script_imports(source: str) -> list[str]:
    """The top-level package names the script imports at module level, in order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    names: list[str] = []
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.append(node.module.split(".")[0])
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            pending[0:0] = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", []),
                            *[s for h in getattr(node, "handlers", []) for s in h.body]]
    return [n for n in dict.fromkeys(names) if n != "__future__"]


def manifest_warmth(job_folder: Path) -> tuple[bool, tuple[str, ...]]:
    """(``warm_start``, ``warm``) from the job's manifest; (True, ()) without one."""
    path = job_folder / MANIFEST_NAME
    if not path.is_file():
        return True, ()
    try:
        import tomllib

        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, ImportError) as exc:
        log.info("cold starts for %s: its manifest could not be read here (%s)", job_folder, exc)
        return False, ()
    extra = doc.get("warm", [])
    extra = tuple(n for n in extra if isinstance(n, str)) if isinstance(extra, list) else ()
    return doc.get("warm_start", True) is not False, extra


@functools.lru_cache(maxsize=256)
def warm_modules(job_folder: Path, main: str) -> tuple[str, ...]:
    """What the job's warm parent imports; empty for a cold start. Read once per
    unpacked archive (its folder is named by its content's hash: it never changes)."""
    enabled, extra = manifest_warmth(job_folder)
    if not enabled:
        return ()
    try:
        source = (job_folder / main).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    own = lambda name: (job_folder / f"{name}.py").exists() or (job_folder / name).is_dir()  # noqa: E731
    imports = [name for name in script_imports(source) if not own(name)]
    # The manifest's names come last: the job's own module may import the packages above.
    # A script importing nothing still forks: the parent then imports only what it has (sys).
    return tuple(dict.fromkeys([*imports, *extra])) or ("sys",)
