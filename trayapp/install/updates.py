"""Is there a newer Brian (or SpareCycles)? And "Update Brian".

:func:`check_for_updates` compares the Brian installed in the *task
environment* (asked in a subprocess of that interpreter, as
:func:`trayapp.slave.requirements.probe_versions` does) and the app's own version with the
newest final releases on the package index: the public PyPI by default, a lab
mirror (``package_index``, any PEP 503/691 simple index) or a folder of wheels
(``wheel_folder``). It never raises for a network problem: offline, the
report carries the error text and the tray stays silent. The tray calls it
from a worker thread at start-up when ``check_updates`` is on; the CLI's
``check-updates`` prints it.

:func:`update_brian` runs ``<task python> -m pip install --upgrade brian2``
against the same source. pip resolves and downloads everything before it
removes the installed version, so a failed update (no network, a broken
wheel) leaves the old Brian working. The app's own bundle is never touched.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename, \
    parse_wheel_filename
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from trayapp import __version__
from trayapp.config import Config
from trayapp.errors import UserError
from trayapp.install.taskenv import subprocess_environment, task_interpreter

PUBLIC_INDEX = "https://pypi.org/simple/"
BRIAN = "brian2"
APP = "sparecycles"
INDEX_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 900.0
SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"


@dataclass(frozen=True)
class PackageUpdate:
    name: str
    current: str | None  # None: not installed
    latest: str | None  # None: the index could not be read or has no release (for ``python``)
    # A newer release that the task interpreter's Python cannot install
    # (its Requires-Python), with what it needs: reported, never offered.
    newer_elsewhere: str | None = None
    needs_python: str | None = None
    python: str | None = None  # the task interpreter's version, e.g. "3.11.7"

    def blocked(self) -> str | None:
        """In words, why a newer release is not offered, with the fix; None if nothing is held back."""
        if not self.newer_elsewhere:
            return None
        return (f"{self.name} {self.newer_elsewhere} is out but needs Python {self.needs_python}, and the task "
                f"environment has Python {self.python}; {self.latest or 'no release'} is the newest for it.\n"
                f"  fix: choose a task interpreter with a newer Python (task_python in the settings), then "
                f"sparecycles update-brian")

    @property
    def available(self) -> bool:
        if self.latest is None:
            return False
        if self.current is None:
            return True
        try:
            return Version(self.latest) > Version(self.current)
        except InvalidVersion:
            return False


@dataclass(frozen=True)
class UpdateReport:
    brian: PackageUpdate
    app: PackageUpdate
    source: str  # the index URL or wheel folder asked
    error: str | None = None  # e.g. offline; the tray says nothing then

    @property
    def offline(self) -> bool:
        return self.error is not None

    def to_json(self) -> dict:
        data = asdict(self)
        data["brian"]["available"] = self.brian.available
        data["brian"]["held_back"] = self.brian.blocked()
        data["app"]["available"] = self.app.available
        return data


@dataclass(frozen=True)
class InstallResult:
    ok: bool
    package: str
    before: str | None
    after: str | None
    python: str
    output: str  # pip's output, kept for the log / an error dialog
    held_back: str | None = None  # a newer release this Python cannot install, with the fix (PackageUpdate.blocked)

    @property
    def changed(self) -> bool:
        return self.before != self.after


# ----- reading an index --------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, bool, str | None]] = []  # (file name, yanked, Requires-Python)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            attrs = dict(attrs)
            href = attrs.get("href") or ""
            self.links.append((href.split("#")[0].rstrip("/").rsplit("/", 1)[-1], "data-yanked" in attrs,
                               attrs.get("data-requires-python")))


@dataclass(frozen=True)
class ReleaseFile:
    filename: str
    requires_python: str | None = None  # PEP 503 data-requires-python / PEP 691 requires-python

    def runs_on(self, python: str | None) -> bool:
        """Whether an interpreter of version ``python`` may install it (unknown: yes)."""
        if not python or not self.requires_python:
            return True
        try:
            return SpecifierSet(self.requires_python).contains(python, prereleases=True)
        except InvalidSpecifier:
            return True


def version_of_file(filename: str, package: str) -> Version | None:
    """The version a distribution file (wheel or sdist) holds, if it is ``package``'s."""
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return version if canonicalize_name(name) == canonicalize_name(package) else None


def newest(filenames: list[str], package: str) -> str | None:
    versions = [v for v in (version_of_file(f, package) for f in filenames) if v and not v.is_prerelease]
    return str(max(versions)) if versions else None


def newest_for(files: list[ReleaseFile], package: str, python: str | None) -> tuple[str | None, str | None, str | None]:
    """The newest final release installable on Python ``python``; and, if a newer
    one exists only for other Pythons, that one and its Requires-Python."""
    fitting = newest([f.filename for f in files if f.runs_on(python)], package)
    overall = newest([f.filename for f in files], package)
    if overall is None or overall == fitting:
        return fitting, None, None
    needs = sorted({f.requires_python for f in files if f.requires_python
                    and str(version_of_file(f.filename, package)) == overall})
    return fitting, overall, " or ".join(needs) or "a newer Python"


def files_on_index(index_url: str, package: str, timeout: float = INDEX_TIMEOUT_S) -> list[str]:
    """The not-yanked file names of ``package`` on a simple index."""
    return [f.filename for f in release_files_on_index(index_url, package, timeout)]


def release_files_on_index(index_url: str, package: str, timeout: float = INDEX_TIMEOUT_S) -> list[ReleaseFile]:
    """The not-yanked file names of ``package`` on a PEP 503 (HTML) or PEP 691 (JSON) simple index."""
    url = urljoin(index_url.rstrip("/") + "/", canonicalize_name(package) + "/")
    request = urllib.request.Request(url, headers={"Accept": SIMPLE_ACCEPT, "User-Agent": f"sparecycles/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        kind = response.headers.get_content_type()
        body = response.read().decode(response.headers.get_content_charset() or "utf-8")
    if kind.endswith("+json") or kind == "application/json":
        files = json.loads(body).get("files", [])
        return [ReleaseFile(f["filename"], f.get("requires-python")) for f in files if not f.get("yanked")]
    parser = _Links()
    parser.feed(body)
    return [ReleaseFile(name, requires) for name, yanked, requires in parser.links if not yanked]


def files_in_folder(folder: str | Path) -> list[str]:
    return [p.name for p in Path(folder).expanduser().iterdir() if p.is_file()]


def latest_release(package: str, *, index_url: str = "", wheel_folder: str = "",
                   timeout: float = INDEX_TIMEOUT_S) -> str | None:
    """The newest final release of ``package`` in the wheel folder and/or on the index.

    Raises OSError (URLError is one) when the index cannot be read.
    """
    files = _release_files(package, index_url=index_url, wheel_folder=wheel_folder, timeout=timeout)
    return newest([f.filename for f in files], package)


def _release_files(package: str, *, index_url: str, wheel_folder: str, timeout: float) -> list[ReleaseFile]:
    names: list[ReleaseFile] = []
    if wheel_folder:
        names += [ReleaseFile(name, _wheel_requires_python(Path(wheel_folder).expanduser() / name))
                  for name in files_in_folder(wheel_folder)]
    if index_url or not wheel_folder:
        try:
            names += release_files_on_index(index_url or PUBLIC_INDEX, package, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # 404: the index does not carry this package at all
                raise
        except (ValueError, http.client.HTTPException) as exc:  # a malformed URL or body, a cut connection
            raise OSError(str(exc) or type(exc).__name__) from exc
    return names


def versions_available(package: str, *, index_url: str = "", wheel_folder: str = "",
                       timeout: float = INDEX_TIMEOUT_S) -> list[Version]:
    """Every version of ``package`` (pre-releases too) in the wheel folder and/or
    on the index, oldest first; none if the index does not carry it (404).
    Raises OSError when the index cannot be read."""
    files = _release_files(package, index_url=index_url, wheel_folder=wheel_folder, timeout=timeout)
    return sorted({v for v in (version_of_file(f.filename, package) for f in files) if v})


def _wheel_requires_python(path: Path) -> str | None:
    """A wheel's Requires-Python, from its METADATA (a folder of wheels has no index page to say it)."""
    if path.suffix != ".whl":
        return None
    try:
        with zipfile.ZipFile(path) as wheel:
            name = next((n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = wheel.read(name).decode("utf-8", "replace") if name else ""
    except (OSError, zipfile.BadZipFile, KeyError):
        return None
    found = re.search(r"^Requires-Python:\s*(.+?)\s*$", text.split("\n\n", 1)[0], re.MULTILINE)
    return found.group(1) if found else None


def python_version(python: str | None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """The version of the interpreter ``python`` ("3.11.7"), asked in a subprocess."""
    if not python:
        return None
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=timeout, env=subprocess_environment()).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip() or None


def describe_versions(versions: list[Version], most: int = 5) -> str:
    shown = ", ".join(str(v) for v in versions[-most:])
    return f"versions {'…, ' if len(versions) > most else ''}{shown}"


def installed_version(python: str | None, package: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """``package``'s version in the environment of ``python``, asked in a subprocess."""
    if not python:
        return None
    script = ("import sys, importlib.metadata as m\n"
              "try: print(m.version(sys.argv[1]))\nexcept m.PackageNotFoundError: print('')")
    try:
        out = subprocess.run([python, "-c", script, package], capture_output=True, text=True, timeout=timeout,
                             env=subprocess_environment()).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[-1] if out else None


def describe_source(config: Config) -> str:
    return " + ".join(s for s in (config.wheel_folder, config.package_index) if s) or PUBLIC_INDEX


# ----- the two verbs ------------------------------------------------------------------

def check_for_updates(config: Config, *, brian_package: str = BRIAN, app_package: str = APP,
                      app_version: str = __version__, python: str | None = None,
                      timeout: float = INDEX_TIMEOUT_S) -> UpdateReport:
    """Current and newest versions of Brian (in the task environment) and of the app.

    Slow (network, a subprocess): call it off the GUI thread. Never raises for
    an unreachable index or a missing task environment.
    """
    if python is None:
        try:
            python = task_interpreter(config.task_python, create=False)
        except UserError:
            python = None
    current_brian = installed_version(python, brian_package)
    task_python = python_version(python)
    error = None
    brian = PackageUpdate(brian_package, current_brian, None, python=task_python)
    latest_app = None
    try:
        brian = brian_update(config, brian_package, current_brian, task_python, timeout)
        latest_app = latest_release(app_package, index_url=config.package_index, wheel_folder=config.wheel_folder,
                                    timeout=timeout)
    except (OSError, json.JSONDecodeError) as exc:
        error = f"could not read {describe_source(config)}: {getattr(exc, 'reason', None) or exc}"
    return UpdateReport(brian, PackageUpdate(app_package, app_version, latest_app), describe_source(config), error)


def brian_update(config: Config, package: str, current: str | None, task_python: str | None,
                 timeout: float = INDEX_TIMEOUT_S) -> PackageUpdate:
    """Brian's newest release for the task interpreter's Python, and a newer one
    it cannot install (Requires-Python), if any. Raises OSError offline."""
    files = _release_files(package, index_url=config.package_index, wheel_folder=config.wheel_folder,
                           timeout=timeout)
    fitting, newer, needs = newest_for(files, package, task_python)
    return PackageUpdate(package, current, fitting, newer, needs, task_python)


def check_at_start_up(config: Config) -> UpdateReport | None:
    """What the tray app runs in a worker thread at start-up: None when
    ``check_updates`` is off, or when SPARECYCLES_NO_UPDATE_CHECK is set (the
    test suite sets it: its tray apps must not reach the public index)."""
    if not config.check_updates or os.environ.get("SPARECYCLES_NO_UPDATE_CHECK"):
        return None
    return check_for_updates(config)


def pip_source_args(config: Config) -> list[str]:
    """pip options for the configured source: a mirror, a wheel folder, or both."""
    args: list[str] = []
    if config.package_index:
        args += ["--index-url", config.package_index]
    if config.wheel_folder:
        if not config.package_index:
            args.append("--no-index")  # a lab folder of wheels is meant to work offline
        args += ["--find-links", str(Path(config.wheel_folder).expanduser())]
    return args


def update_brian(config: Config, *, package: str = BRIAN, python: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = INSTALL_TIMEOUT_S) -> InstallResult:
    """Install the newest ``package`` into the task environment with pip.

    Creates the managed environment of the bundle if needed. A failure is
    reported in the result (``ok`` False, pip's output), never half-applied.
    """
    python = python or task_interpreter(config.task_python)
    before = installed_version(python, package)
    # pip itself only warns when the index is unreachable and an old version
    # is installed ("requirement already satisfied", exit 0): ask first, so
    # an offline update is reported as the failure it is.
    try:
        held_back = brian_update(config, package, before, python_version(python)).blocked()
    except (OSError, json.JSONDecodeError) as exc:
        return InstallResult(False, package, before, before, python,
                             f"ERROR: could not read {describe_source(config)}: {getattr(exc, 'reason', None) or exc}")
    command = [python, "-m", "pip", "install", "--upgrade", "--disable-pip-version-check",
               *pip_source_args(config), package]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             env=subprocess_environment(env))
        ok, output = run.returncode == 0, run.stdout + run.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, output = False, f"{' '.join(command)}: {exc}"
    after = installed_version(python, package)
    return InstallResult(ok, package, before, after, python, output, held_back)


def last_line_of(output: str) -> str:
    """pip's most telling line (its final error) for a one-line message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"(ERROR|error)\b", line)]
    return (errors or lines or ["no output"])[-1]
