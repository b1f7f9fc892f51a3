"""After a build: does the environment import what the job asked for?

An installer is content when every declared dependency is met, but declared
is not enough: brian2 2.9.0 declares no cap on numpy, and with numpy 2.4 it
dies at ``import brian2``. A job in such an environment would fail task by
task with the same traceback. So each requirement's top-level modules are
imported in the new environment (in the build sandbox: a ``.pth`` or an
``__init__`` is a master's code) and a failure fails the build, once, with
the package, the versions involved and a fix::

    brian2 2.9.0 does not import with numpy 2.4.6 (AttributeError: type object
    'numpy.ndarray' has no attribute 'ptp'): add "numpy < 2" to requires

The other package to blame is the one the error message names, else the last
one the traceback passes through.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

CHECK_TIMEOUT_S = 300.0
_MAX_ERROR_CHARS = 300

# Runs inside the new environment: for each requirement (argv), its distribution's
# top-level modules, each imported; the answer is one JSON line, on stdout's last line.
CHECK_SCRIPT = r"""
import importlib, importlib.metadata as m, json, re, sys, traceback

def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()

dists = {}
for dist in m.distributions():
    if dist.metadata["Name"]:
        dists.setdefault(canonical(dist.metadata["Name"]), dist)
owners = {}
try:
    for module, names in m.packages_distributions().items():
        for name in names:
            owners.setdefault(canonical(name), []).append(module)
except Exception:
    pass

def top_level(name, dist):
    text = dist.read_text("top_level.txt") or ""
    found = [line.strip() for line in text.splitlines() if line.strip()]
    found = found or owners.get(name, [])
    if not found:
        for path in dist.files or ():
            first = str(path).split("/")[0]
            if first.endswith(".py"):
                found.append(first[:-3])
            elif "." not in first and first not in ("bin", "__pycache__"):
                found.append(first)
    return sorted({f for f in found if f.isidentifier() and not f.startswith("_")})

report = {"versions": {n: d.version for n, d in dists.items()}, "modules": {}, "failures": []}
for name in map(canonical, sys.argv[1:]):
    dist = dists.get(name)
    if dist is None:
        report["failures"].append({"name": name, "module": None, "error": "not installed", "files": []})
        continue
    modules = top_level(name, dist)
    report["modules"][name] = modules
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as exc:
            files = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
            report["failures"].append({"name": name, "module": module,
                                       "error": f"{type(exc).__name__}: {exc}", "files": files[-40:]})
            break
print(json.dumps(report))
"""


@dataclass(frozen=True)
class ImportFailure:
    """A requirement whose modules do not import: ``message`` names it, its culprit and the fix."""

    message: str
    culprit: str | None  # the other distribution to blame, if one is found


def parse_report(stdout: str) -> dict | None:
    """The check script's report (its last line of output), or None if there is none."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and isinstance(report.get("failures"), list):
            return report
    return None


def first_failure(report: dict, requirements: tuple[str, ...]) -> ImportFailure | None:
    """What to tell the user about the report's first failure (None: everything imported)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    failures = [f for f in report.get("failures", []) if isinstance(f, dict)]
    if not failures:
        return None
    failure = failures[0]
    versions = {str(k): str(v) for k, v in (report.get("versions") or {}).items()}
    name = str(failure.get("name"))
    error = str(failure.get("error"))[:_MAX_ERROR_CHARS]
    written = next((r for r in requirements if canonicalize_name(Requirement(r).name) == name), name)
    if error == "not installed":
        return ImportFailure(f"{name} is not in the environment after the build (requires {written!r})", None)
    culprit = _culprit(name, error, [str(f) for f in failure.get("files") or []], versions)
    version = versions.get(name, "?")
    if culprit is None:
        return ImportFailure(f"{name} {version} does not import ({error}): pin a release of {name} that works "
                             f'here, e.g. "{name} == <version>", or name the dependency to hold back', None)
    have = versions.get(culprit, "?")
    return ImportFailure(f"{name} {version} does not import with {culprit} {have} ({error}): "
                         f'add "{culprit} < {_cap(have)}" to requires', culprit)


def _culprit(name: str, error: str, files: list[str], versions: dict[str, str]) -> str | None:
    others = [n for n in versions if n != name]
    for other in sorted(others, key=len, reverse=True):  # "numpy" in "type object 'numpy.ndarray'"
        module = other.replace("-", "_")
        if re.search(rf"(?<![\w.]){re.escape(module)}(?![\w])", error):
            return other
    for path in reversed(files):
        parts = path.replace("\\", "/").split("/")
        for other in others:
            if other.replace("-", "_") in parts and name.replace("-", "_") not in parts[-2:]:
                return other
    return None


def _cap(version: str) -> str:
    """The release series below which a working version is likely: numpy 2.4.6 → 2, pkg 0.13.1 → 0.13."""
    parts = re.findall(r"\d+", version)
    if not parts:
        return version
    if parts[0] != "0" or len(parts) == 1:
        return parts[0]
    return f"0.{parts[1]}"
