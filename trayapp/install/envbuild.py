"""Building one virtual environment for a job's requirements, with uv or pip.

uv (the ``uv`` package ships its binary in its wheel) is used where it is
found: it resolves and installs a Brian + matplotlib environment in seconds
from its shared wheel cache, where pip takes about a minute. Without uv, the
base interpreter's ``venv`` module and the new environment's pip do the same.

Packages come from the lab's ``package_index`` (a mirror) and/or
``wheel_folder`` when set; with only a wheel folder nothing is fetched from
the network at all (an offline lab). Otherwise from the public index.

The environment is made at the path given (the caller builds into a
temporary name and renames it when this returns); the installer's whole
output goes to ``log``, and a failure raises :class:`EnvBuildError` carrying
the output's tail, which is what the job's status shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trayapp.install.taskenv import env_python, subprocess_environment

BUILD_TIMEOUT_S = 1800.0
TAIL_LINES = 6
TAIL_CHARS = 800


class EnvBuildError(Exception):
    """The installer failed; ``str()`` is the tail of its output, for people to read."""


@dataclass(frozen=True)
class PackageSource:
    """Where packages come from: the lab's mirror and/or wheel folder, else the public index."""

    index_url: str = ""
    wheel_folder: str = ""

    def arguments(self) -> list[str]:
        """Installer options (the same spelling for ``uv pip`` and pip)."""
        args = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        if self.wheel_folder:
            args += ["--find-links", str(Path(self.wheel_folder).expanduser())]
            if not self.index_url:
                args.append("--no-index")  # offline: the folder is all there is
        return args


def find_uv() -> str | None:
    """The uv binary: the one the ``uv`` package installed beside us, else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def installer_name(uv: str | None) -> str:
    return "uv" if uv else "pip"


def build_environment(target: Path, base_python: str, requirements: tuple[str, ...], source: PackageSource, *,
                      log: Callable[[str], None], uv: str | None = None, nice: int = 10) -> None:
    """Make a virtual environment at ``target`` from ``base_python`` with ``requirements`` installed."""
    requirements_file = target.with_name(target.name + ".requirements.txt")
    requirements_file.write_text("".join(f"{r}\n" for r in requirements), encoding="utf-8")
    try:
        python = str(env_python(target))
        if uv:
            steps = [[uv, "venv", "--quiet", "--python", base_python, str(target)],
                     [uv, "pip", "install", "--python", python, "-r", str(requirements_file), *source.arguments()]]
        else:
            steps = [[base_python, "-m", "venv", str(target)],
                     [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                      "-r", str(requirements_file), *source.arguments()]]
        for command in steps:
            _run(command, log, nice)
    finally:
        requirements_file.unlink(missing_ok=True)


def _run(command: list[str], log: Callable[[str], None], nice: int) -> None:
    prefix = ["nice", "-n", str(nice)] if nice > 0 and shutil.which("nice") else []
    log("$ " + " ".join(command))
    env = subprocess_environment()
    env.pop("PYTHONPATH", None)  # the new environment must see only its own packages
    env.pop("VIRTUAL_ENV", None)
    try:
        result = subprocess.run(prefix + command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", timeout=BUILD_TIMEOUT_S,
                                env=env)
    except subprocess.TimeoutExpired as exc:
        raise EnvBuildError(f"{Path(command[0]).name} did not finish within {BUILD_TIMEOUT_S:.0f} s") from exc
    except OSError as exc:
        raise EnvBuildError(f"cannot run {command[0]}: {exc}") from exc
    for line in result.stdout.splitlines():
        log(line)
    if result.returncode != 0:
        raise EnvBuildError(output_tail(result.stdout) or f"{Path(command[0]).name} exited {result.returncode}")


def output_tail(output: str) -> str:
    """The last lines of an installer's output that say something (no blank lines, no progress)."""
    lines = [line.strip() for line in output.splitlines()
             if line.strip() and not line.startswith("Using Python")]  # uv's note of where, not what failed
    tail = " ".join(lines[-TAIL_LINES:])
    return tail if len(tail) <= TAIL_CHARS else "…" + tail[-TAIL_CHARS:]


# What uv and pip print when the index answered and has no such package or
# version: nothing a host can change (unlike a network error, a full disk or a
# compiler missing), so the job fails at the first host that says so.
_UNRESOLVABLE = (
    re.compile(r"Because (?P<name>[A-Za-z0-9._-]+) was not found in the package registry"),
    re.compile(r"Because there is no version of (?P<name>[A-Za-z0-9._-]+)"),
    re.compile(r"No matching distribution found for (?P<name>[A-Za-z0-9._-]+)"),
)
_NETWORK = re.compile(r"NewConnectionError|Failed to establish|name resolution|Failed to fetch|error sending request"
                      r"|Connection refused|timed out|offline", re.IGNORECASE)


def unresolvable_package(output: str) -> str | None:
    """The package an installer's output says exists in no matching version on
    the index, or None (another failure, or the index could not be reached)."""
    if _NETWORK.search(output):
        return None
    for pattern in _UNRESOLVABLE:
        found = pattern.search(output)
        if found:
            return found.group("name")
    return None


def directory_size(path: Path) -> int:
    """Bytes under ``path``, counting each hard-linked file once (uv links from its cache)."""
    seen, total = set(), 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
