"""The optional ``sparecycles.toml`` in a job folder: how to run the job.

Without this file SpareCycles guesses (the single ``main_*.py``, the single
parameter file, one core, no limits). With it, a job folder says explicitly::

    main = "main_sim.py"        # which script to run (needed when several main_*.py exist)
    params = "sweep.toml"       # default parameter file, relative to the job folder
    exclude = ["data/raw/", "*.h5"]   # gitignore-style patterns not to send to workers
    requires = ["brian2 >= 2.5"]      # packages the script needs (PEP 508)
    retries = 2                 # how often a task whose own code fails is tried again
    warm = ["mymodel"]          # modules to import once per slot and fork tasks from (besides main's imports)
    warm_start = false          # start every task in a fresh interpreter (default: forked warm)

    [resources]
    memory = "2 GB"             # each task's cap; also "512 MB", "2G", "512 MiB", or a plain integer = MB
    cores = 1
    time_limit = "10m"          # "90", "90s", "10m", "2h", "1h30m", "1.5h"; plain number = seconds

Every key is optional. Unknown keys are errors (with a "did you mean"), because
a misspelt ``time_limt`` silently ignored would cost someone a night of CPU.
Memory units are binary: 1 GB = 1 GiB = 1024 MB.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NoReturn

from trayapp.errors import UserError
from trayapp.units import parse_duration, parse_memory_mb
from trayapp.job.params import describe_value, parse_toml, read_text, toml_key_line

try:  # the real PEP 508 grammar when available; a rough check otherwise
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pragma: no cover - packaging is a dependency
    Requirement = None

MANIFEST_NAME = "sparecycles.toml"
TOP_KEYS = ("main", "params", "exclude", "requires", "retries", "warm", "warm_start", "resources")
RESOURCE_KEYS = ("memory", "cores", "time_limit")

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ROUGH_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,\s.-]*\])?\s*([<>=!~]=?=?\s*[\w.*+!-]+\s*,?\s*)*"
                                r"(;.*)?")


@dataclass(frozen=True)
class Manifest:
    """The settings of one job folder; the defaults are what a missing file means."""

    main: str | None = None
    params: str | None = None
    exclude: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    memory_mb: int | None = None
    cores: int = 1
    time_limit_s: float | None = None
    retries: int = 0
    # Modules the warm parent imports besides the main script's own imports
    # (trayapp.run.warmmodules); warm_start = false: every task starts cold.
    warm: tuple[str, ...] = ()
    warm_start: bool = True


def load_manifest(folder: Path) -> Manifest:
    """Read ``folder/sparecycles.toml``; a folder without one gets ``Manifest()``."""
    path = Path(folder) / MANIFEST_NAME
    if not os.path.lexists(path):  # lexists: a broken symlink is reported, not ignored
        return Manifest()
    text = read_text(path, "settings file")
    name = str(path)
    doc = parse_toml(text, name, 'fix the TOML there (text needs "quotes", lists are ["a", "b"])')
    check = _Checker(name, text)

    check.known_keys(doc, TOP_KEYS, None)
    resources = doc.get("resources", {})
    if not isinstance(resources, dict):
        check.fail("resources", None, f"'resources' must be a table, but is {describe_value(resources)}",
                   'write the line [resources] and put memory, cores and time_limit below it')
    check.known_keys(resources, RESOURCE_KEYS, "resources")

    fields: dict[str, object] = {}
    if "main" in doc:
        fields["main"] = check.main_script(doc["main"])
    if "params" in doc:
        fields["params"] = check.params_path(doc["params"])
    if "exclude" in doc:
        fields["exclude"] = check.strings("exclude", doc["exclude"], '"*.h5"')
    if "requires" in doc:
        fields["requires"] = tuple(check.requirement(r) for r in check.strings("requires", doc["requires"], '"numpy"'))
    if "retries" in doc:
        fields["retries"] = check.integer("retries", None, doc["retries"], 0)
    if "warm" in doc:
        fields["warm"] = tuple(check.module_name(m) for m in check.strings("warm", doc["warm"], '"mymodel"'))
    if "warm_start" in doc:
        if not isinstance(doc["warm_start"], bool):
            check.wrong_type("warm_start", None, doc["warm_start"], "true or false", "warm_start = false")
        fields["warm_start"] = doc["warm_start"]
    if "cores" in resources:
        fields["cores"] = check.integer("cores", "resources", resources["cores"], 1)
    if "memory" in resources:
        fields["memory_mb"] = check.converted("memory", resources["memory"], parse_memory_mb, (str, int),
                                              'memory = "2 GB"')
    if "time_limit" in resources:
        fields["time_limit_s"] = check.converted("time_limit", resources["time_limit"], parse_duration,
                                                 (str, int, float), 'time_limit = "10m"')
    return Manifest(**fields)


class _Checker:
    """Validates values of one manifest file; every failure names the file, key and line."""

    def __init__(self, name: str, text: str):
        self.name, self.text = name, text

    def fail(self, key: str, table: str | None, problem: str, fix: str) -> NoReturn:
        line = toml_key_line(self.text, key, table)
        raise UserError(f"{self.name}{f' line {line}' if line else ''}: {problem}", fix)

    def known_keys(self, table: dict, known: tuple[str, ...], table_name: str | None) -> None:
        other_known = RESOURCE_KEYS if table_name is None else TOP_KEYS
        for key in table:
            if key in known:
                continue
            label = f"[{table_name}] {key}" if table_name else key
            if key in other_known:
                fix = (f"'{key}' belongs under [resources]: move it below the [resources] line" if table_name is None
                       else f"'{key}' belongs at the top of the file: move it above the [resources] line")
            else:
                close = difflib.get_close_matches(key, known, n=1)
                fix = (f"did you mean '{close[0]}'? " if close else "") + f"Known keys: {', '.join(known)}"
            self.fail(key, table_name, f"unknown setting '{label}'", fix)

    def wrong_type(self, key: str, table: str | None, value: object, expected: str, example: str) -> NoReturn:
        label = f"[{table}] {key}" if table else key
        self.fail(key, table, f"{label} must be {expected}, but is {describe_value(value)}", f"write e.g. {example}")

    def main_script(self, value: object) -> str:
        if not isinstance(value, str):
            self.wrong_type("main", None, value, "a file name", 'main = "main_sim.py"')
        if not value.strip():
            self.fail("main", None, "main is empty", 'give the name of the script to run, e.g. main = "main_sim.py"')
        if any(sep in value for sep in "/\\:") or value in (".", ".."):
            self.fail("main", None, f"main = {value!r} must be a file name in the job folder, not a path",
                      'put the script at the top of the job folder and give just its name, e.g. main = "main_sim.py"')
        if not value.lower().endswith(".py"):
            self.fail("main", None, f"main = {value!r} is not a Python script (it must end in .py)",
                      'give the name of the .py file to run, e.g. main = "main_sim.py"')
        return value

    def params_path(self, value: object) -> str:
        if not isinstance(value, str):
            self.wrong_type("params", None, value, "a file name", 'params = "sweep.toml"')
        fix = 'put the parameter file inside the job folder and give its path relative to it, e.g. params = "sweep.toml"'
        if not value.strip():
            self.fail("params", None, "params is empty", fix)
        if PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor:
            self.fail("params", None, f"params = {value!r} is an absolute path; it must be relative to the job folder", fix)
        depth = 0
        for part in value.replace("\\", "/").split("/"):
            depth += -1 if part == ".." else 0 if part in ("", ".") else 1
            if depth < 0:  # "sub/../p.csv" is fine, "../p.csv" leaves the folder the workers get
                self.fail("params", None, f"params = {value!r} points outside the job folder", fix)
        return value

    def strings(self, key: str, value: object, example: str) -> tuple[str, ...]:
        if isinstance(value, str):
            self.fail(key, None, f"{key} must be a list of strings, but is a single string",
                      f"put it in brackets: {key} = [{json.dumps(value)}]")
        if not isinstance(value, list):
            self.wrong_type(key, None, value, "a list of strings", f"{key} = [{example}]")
        for number, item in enumerate(value, 1):
            if not isinstance(item, str) or not item.strip():
                found = describe_value(item) if not isinstance(item, str) else "empty"
                self.fail(key, None, f"{key} item #{number} must be a non-empty string, but is {found}",
                          f'write every item in "quotes", e.g. {key} = [{example}]')
        return tuple(value)

    def requirement(self, text: str) -> str:
        fix = 'write a package name with an optional version, e.g. "brian2 >= 2.5" or "numpy"'
        if Requirement is not None:
            try:
                Requirement(text)
            except InvalidRequirement as e:
                first_line = str(e).splitlines()[0]
                self.fail("requires", None, f"requires: {text!r} is not a valid requirement ({first_line})", fix)
        elif not _ROUGH_REQUIREMENT.fullmatch(text.strip()):
            self.fail("requires", None, f"requires: {text!r} is not a valid requirement", fix)
        return text

    def module_name(self, text: str) -> str:
        if not _MODULE.fullmatch(text.strip()):
            self.fail("warm", None, f"warm: {text!r} is not a module name",
                      'give the names you would write after "import", e.g. warm = ["brian2", "mymodel"]')
        return text.strip()

    def integer(self, key: str, table: str | None, value: object, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.wrong_type(key, table, value, "a whole number", f"{key} = {minimum + 1}")
        if value < minimum:
            label = f"[{table}] {key}" if table else key
            self.fail(key, table, f"{label} = {value} is too small: it must be at least {minimum}",
                      f"write e.g. {key} = {minimum + 1}")
        return value

    def converted(self, key: str, value: object, parse, types: tuple[type, ...], example: str):
        if not isinstance(value, types) or isinstance(value, bool):
            self.wrong_type(key, "resources", value, "text or a number" if float in types
                            else "text or a whole number", example)
        try:
            return parse(value)
        except ValueError as e:
            self.fail(key, "resources", f"[resources] {key}: {e}", f"write e.g. {example}")
