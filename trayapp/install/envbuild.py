"""Building one virtual environment for a job's requirements, with uv or pip.

An environment *extends* the task environment rather than replacing it: a
``.pth`` file in its site-packages puts the task environment's site folders
after its own on ``sys.path``, and only what the task environment lacks, or
has at a version the requirements exclude, is installed into it. So a job
with ``brian2 >= 2.5`` and ``matplotlib`` on a PC whose task environment has
Brian 2.9.0 with numpy 1.26 gets matplotlib (a release that works with that
numpy) and nothing else: the Brian the lender tested stays.

Why layering by ``.pth`` and not ``--system-site-packages``: the task
environment is usually itself a virtual environment (the app's, or the
bundle's managed one), and a venv made from a venv sees the *base*
interpreter's site-packages, not the task environment's.

With uv, the set is resolved first (``uv pip compile``) with the task
environment's versions as preferences (the output file given to uv already
lists them, as pip-tools does), then exactly the resolved packages the task
environment lacks are installed with ``--no-deps``. pip sees the layered
packages as installed and, by its only-if-needed rule, keeps the ones that
satisfy, so it needs no extra step. ``exclude_newer`` resolves as of a date
(uv's ``--exclude-newer``; pip has no equivalent, the date is ignored there).

uv (the ``uv`` package ships its binary in its wheel) is used where it is
found: it resolves and installs a Brian + matplotlib environment in seconds
from its shared wheel cache, where pip takes about a minute. Packages come
from the lab's ``package_index`` (a mirror) and/or ``wheel_folder`` when set;
with only a wheel folder nothing is fetched from the network at all (an
offline lab). Otherwise from the public index.

Every step runs in the build sandbox (:mod:`trayapp.install.buildsandbox`)
when one is given. The environment is made at the path given (the caller
builds into a temporary name and renames it when this returns); the
installer's whole output goes to ``log``, and a failure raises
:class:`EnvBuildError` carrying the output's tail, which is what the job's
status shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trayapp.install.buildsandbox import BuildSandbox, build_environment_variables
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


@dataclass(frozen=True)
class BuildPlan:
    """What to build: the requirements, and the task environment it extends."""

    requirements: tuple[str, ...]
    task_site: tuple[str, ...] = ()  # the task environment's site folders, layered under the new one
    installed: dict[str, str] = field(default_factory=dict)  # their distributions: {canonical name: version}
    exclude_newer: str | None = None  # resolve as of this date (RFC 3339), or with the newest releases


LAYER_PTH = "_sparecycles_task_env.pth"
WORK = ".sparecycles-build"  # inside the environment (the only folder a sandboxed build may write): its scratch
PINS_LIMIT = 4 << 20  # bytes of the resolver's output read back at most


def site_packages(env_dir: Path) -> Path:
    """The environment's own site-packages folder (exists once the venv is made)."""
    if os.name == "nt":
        return env_dir / "Lib" / "site-packages"
    found = sorted((env_dir / "lib").glob("python*/site-packages"))
    if not found:
        raise EnvBuildError(f"the new environment at {env_dir} has no site-packages folder")
    return found[0]


class _Steps:
    """Runs the build's commands, in the sandbox when there is one."""

    def __init__(self, target: Path, log: Callable[[str], None], nice: int, sandbox: BuildSandbox | None,
                 cache_dir: Path | None, network: bool):
        self.target, self.log, self.nice, self.sandbox = target, log, nice, sandbox
        self.cache_dir, self.network = cache_dir, network

    def run(self, command: list[str], *, network: bool = False) -> str:
        extra = {"UV_NO_CONFIG": "1", "UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never",
                 "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
                 "PYTHONNOUSERSITE": "1"}
        writable: tuple[Path, ...] = ()
        # The sandbox's /tmp is a small tmpfs: downloads and builds get room on disk, inside the environment
        # (made once before the first step: afterwards the slave makes nothing in there, see build_environment).
        extra["TMPDIR"] = str(self.target / WORK / "tmp")
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            extra["UV_CACHE_DIR"] = extra["PIP_CACHE_DIR"] = str(self.cache_dir)
        if self.sandbox is not None:
            extra["UV_LINK_MODE"] = "copy"  # the cache is another mount in the sandbox: no hard links across
            writable = (self.cache_dir,)
        if self.sandbox is None:
            env = subprocess_environment()
            for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
                env.pop(name, None)  # the new environment must see only its own packages
            env.update(extra)
            argv = command
        else:
            home = "/tmp"
            env = build_environment_variables(subprocess_environment(), home=home, extra=extra)
            argv = self.sandbox.wrap(command, self.target, writable=writable, network=network and self.network)
        return _run(argv, self.log, self.nice, env, shown=command)


def build_environment(target: Path, base_python: str, plan: BuildPlan | tuple[str, ...], source: PackageSource,
                      *, log: Callable[[str], None], uv: str | None = None, nice: int = 10,
                      sandbox: BuildSandbox | None = None, cache_dir: Path | None = None) -> None:
    """Make a virtual environment at ``target`` from ``base_python`` that extends
    the task environment with ``plan``'s requirements."""
    if not isinstance(plan, BuildPlan):
        plan = BuildPlan(tuple(plan))
    target.mkdir(parents=True, exist_ok=True)
    work = target / WORK
    # The slave writes its inputs (requirements.in, the preferred pins) before a master's code has run
    # (uv venv runs none), each as a new file ("x": never through a link); after the resolver has run
    # setup.py files with this folder writable, it only reads the pins back without following links
    # and passes what to install on the command line (no file of ours to overwrite in there).
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    steps = _Steps(target, log, nice, sandbox, cache_dir, network=bool(source.index_url or not source.wheel_folder))
    python = str(env_python(target))
    if uv:
        steps.run([uv, "venv", "--quiet", "--allow-existing", "--python", base_python, str(target)])
    else:
        steps.run([base_python, "-m", "venv", str(target)])
    layer(target, plan.task_site)
    _write_new(work / "requirements.in", "".join(f"{r}\n" for r in plan.requirements))
    try:
        if uv:
            _install_with_uv(steps, uv, python, work, plan, source)
        else:
            if plan.exclude_newer:
                log(f"pip cannot resolve as of {plan.exclude_newer}: resolving with the newest releases")
            steps.run([python, "-m", "pip", "install", "--no-input", "-r", str(work / "requirements.in"),
                       *source.arguments()], network=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def layer(target: Path, task_site: tuple[str, ...]) -> None:
    """Put the task environment's site folders after the environment's own on its ``sys.path``."""
    if task_site:
        _write_new(site_packages(target) / LAYER_PTH, "".join(f"{folder}\n" for folder in task_site))


def _write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet (a link in its place is refused, never followed)."""
    with open(path, "x", encoding="utf-8") as out:
        out.write(text)


def read_pins(work: Path) -> str:
    """The resolver's output in ``work``, read without following a link at any depth
    (a setup.py run by the resolver could have swapped it or its folder for one)."""
    from trayapp.run.taskfiles import open_folder, read_regular

    try:
        with open_folder(work.parent) as env_fd, open_folder(work.name, dir_fd=env_fd) as work_fd:
            data = read_regular("resolved.txt", PINS_LIMIT, dir_fd=work_fd)
    except (OSError, ValueError) as exc:
        raise EnvBuildError(f"the resolver's output in {work} cannot be read as a plain file: {exc}") from exc
    return data.decode("utf-8", "replace")


def _install_arguments(missing: list[tuple[str, str]]) -> list[str]:
    """``name==version`` of each pin, checked to be one (never an option: the pins came from
    a folder a master's setup.py could write)."""
    from packaging.requirements import InvalidRequirement, Requirement

    arguments = []
    for name, version in missing:
        text = f"{name}=={version}"
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise EnvBuildError(f"the resolver's output has a line that is not a package pin: {text[:200]!r}") from exc
        arguments.append(text)
    return arguments


def _install_with_uv(steps: _Steps, uv: str, python: str, work: Path, plan: BuildPlan,
                     source: PackageSource) -> None:
    pins = work / "resolved.txt"
    # uv prefers the versions an existing output file lists: the task environment's.
    _write_new(pins, "".join(f"{name}=={version}\n" for name, version in sorted(plan.installed.items())))
    as_of = ["--exclude-newer", plan.exclude_newer] if plan.exclude_newer else []
    steps.run([uv, "pip", "compile", str(work / "requirements.in"), "-o", str(pins), "--python", python,
               "--no-header", "--no-annotate", "--quiet", *as_of, *source.arguments()], network=True)
    missing = [line for line in resolved_pins(read_pins(work))
               if plan.installed.get(line[0]) != line[1]]
    if not missing:
        steps.log("the task environment has every package the requirements need")
        return
    steps.log("installing what the task environment lacks: " + ", ".join(f"{n} {v}" for n, v in missing))
    # Compiled now: tasks see the environment read-only, and sympy or Brian from source takes seconds.
    steps.run([uv, "pip", "install", "--python", python, "--no-deps", "--compile-bytecode", *source.arguments(),
               *_install_arguments(missing)],
              network=True)


def resolved_pins(text: str) -> list[tuple[str, str]]:
    """``(canonical name, version)`` of each ``name==version`` line of a compiled requirements file."""
    from packaging.utils import canonicalize_name

    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found.append((canonicalize_name(name.split("[", 1)[0].strip()), version.strip()))
    return found


def _run(command: list[str], log: Callable[[str], None], nice: int, env: dict[str, str],
         shown: list[str]) -> str:
    prefix = ["nice", "-n", str(nice)] if nice > 0 and shutil.which("nice") else []
    log("$ " + " ".join(shown))
    try:
        result = subprocess.run(prefix + command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", timeout=BUILD_TIMEOUT_S,
                                env=env)
    except subprocess.TimeoutExpired as exc:
        raise EnvBuildError(f"{Path(shown[0]).name} did not finish within {BUILD_TIMEOUT_S:.0f} s") from exc
    except OSError as exc:
        raise EnvBuildError(f"cannot run {command[0]}: {exc}") from exc
    for line in result.stdout.splitlines():
        log(line)
    if result.returncode != 0:
        raise EnvBuildError(output_tail(result.stdout) or f"{Path(shown[0]).name} exited {result.returncode}")
    return result.stdout


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
