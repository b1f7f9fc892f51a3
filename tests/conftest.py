"""Shared fixtures: a private SpareCycles home per test, job folders, dispatchers.

Everything is real: tasks are real subprocesses of ``sys.executable``, the
queue is a real SQLite file, and CLI tests run the real ``python -m sparecycles``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from trayapp.app import App

# Tray apps started by tests (in process or as children) must not ask the public
# package index for updates: test traffic stays on this machine.
os.environ["SPARECYCLES_NO_UPDATE_CHECK"] = "1"
# A test that loses the home it was given (a monkeypatch undone, a child started
# without it) must not open the real ~/.local/share/sparecycles of whoever runs
# the suite: it lands in this throwaway folder instead, and fails (_no_stray_home).
STRAY_HOME = Path(tempfile.mkdtemp(prefix="sparecycles-tests-")) / "stray home"
os.environ["SPARECYCLES_HOME"] = str(STRAY_HOME)
from support.commands import sparecycles as cli  # noqa: E402 - the tests' short name for it
from support.pool import Pool  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from support.waiting import wait_until  # noqa: E402,F401 - for the tests
from support.xvfb import have_xvfb  # noqa: E402
from trayapp.config import Config  # noqa: E402
from trayapp.home import Home  # noqa: E402
from trayapp.install.selfcommand import sparecycles_command  # noqa: E402

needs_xvfb = pytest.mark.skipif(not have_xvfb(), reason="needs Xvfb and xdotool (scripts/system-packages.sh)")

# Where tests save screenshots: a temporary folder, named at the end of the
# run, unless this names one (scripts/screenshots.sh: docs/screenshots).
# Tests never write into the repository on their own.
SCREENSHOTS_ENV = "SPARECYCLES_SCREENSHOTS_DIR"
_screenshot_folders: list[Path] = []


# A test is in the tier of the real parts its fixtures start (directly or through
# another fixture): marked by hand, a test using the pool without its marker ran
# in the fast tier. Slow and bundle tests are still marked by hand.
TIER_OF_FIXTURE = {"pool": "pool", "sshd": "pool", "xvfb": "desktop", "desktop": "desktop", "brian": "brian",
                   "slurm": "slurm"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        marked = {mark.name for mark in item.iter_markers()}
        for tier in {TIER_OF_FIXTURE[name] for name in item.fixturenames if name in TIER_OF_FIXTURE} - marked:
            item.add_marker(tier)


@pytest.fixture(autouse=True)
def _no_stray_home():
    yield
    if STRAY_HOME.exists():
        shutil.rmtree(STRAY_HOME, ignore_errors=True)
        pytest.fail("this test (or a process it started) used a SpareCycles home it was not given: "
                    "keep SPARECYCLES_HOME set to the test's own home (the `home` fixture) for every call")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    root = tmp_path / "sparecycles home"
    monkeypatch.setenv("SPARECYCLES_HOME", str(root))
    home = Home.from_environment().ensure()
    yield home
    _stop_background_dispatcher(home)


def _stop_background_dispatcher(home: Home) -> None:
    """End a dispatcher a CLI test started in the background, by its recorded pid."""
    lock = home.dispatcher_lock
    if not lock.exists():
        return
    from trayapp.locks import InstanceLock

    pid = InstanceLock(lock).holder()
    if pid and pid > 0:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    named = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(named).absolute() if named else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    _screenshot_folders.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter):
    for folder in _screenshot_folders:
        shots = sorted(p.name for p in folder.glob("*.png"))
        if shots:
            terminalreporter.write_line(f"screenshots in {folder}: {', '.join(shots)} "
                                        f"(scripts/screenshots.sh puts them in docs/screenshots/)")


@pytest.fixture
def app(home) -> App:
    # Fast polling keeps tests quick; two slots mirror the CI machine.
    return App(home, Config(slots=2, poll_interval_s=0.05))


def make_job(folder: Path, main_body: str, *, params: list[dict] | None = None, main_name: str = "main.py",
             extra_files: dict[str, str] | None = None) -> tuple[Path, Path | None]:
    """Write a job folder (and a JSON parameter file beside it); returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / main_name).write_text(textwrap.dedent(main_body), encoding="utf-8")
    for name, text in (extra_files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    params_file = None
    if params is not None:
        params_file = folder.parent / f"{folder.name}-params.json"
        params_file.write_text(json.dumps(params), encoding="utf-8")
    return folder, params_file


# A task that writes its parameter set to results/out.json.
ECHO_TASK = """
import json, os, sys
params = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
with open("results/out.json", "w") as fh:
    json.dump({"params": params, "task": os.environ["SPARECYCLES_TASK"],
               "job": os.environ["SPARECYCLES_JOB"], "file_params": json.load(open("params.json"))}, fh)
print("task", os.environ["SPARECYCLES_TASK"], "ok")
"""


def run_dispatcher(app: App, until_idle: float = 0.3):
    """Run a dispatcher in this thread until the queue has been idle for a moment."""
    return app.dispatcher().run(until_idle=until_idle)


class BackgroundDispatcher:
    """A dispatcher on its own thread with its own queue connection, like a
    separate process but stoppable and inspectable from the test."""

    def __init__(self, home: Home, config: Config):
        self._home, self._config = home, config
        self.dispatcher = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        app = App(self._home, self._config)
        self.dispatcher = app.dispatcher()
        self._ready.set()
        self.dispatcher.run()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.dispatcher.request_stop()
        self._thread.join(20)
        assert not self._thread.is_alive(), "dispatcher did not stop"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def xvfb():
    """A real X display (Xvfb) with xdotool input; modules may define their own."""
    from support.xvfb import Xvfb

    server = Xvfb().start()
    yield server
    server.key("shift")  # ends listener threads still waiting for an event (trayapp.idle.userinput)
    server.stop()


@pytest.fixture
def brian():
    """Real Brian 2 (the `brian` tier): the module, which tasks run with this interpreter import too."""
    import brian2

    return brian2


@pytest.fixture
def slurm(tmp_path):
    """A one-node SLURM cluster of the test's own (the `slurm` tier)."""
    from support.slurm import SlurmCluster

    cluster = SlurmCluster(tmp_path / "cluster", cpus=2, max_array_size=5).start()
    yield cluster
    cluster.stop()


# ----- the pool: a real sshd on loopback and slave daemons behind it ---------------

@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.fixture
def pool(home, tmp_path, sshd):
    """Slave daemons registered with the test's home (its SPARECYCLES_HOME)."""
    p = Pool(tmp_path, sshd)
    yield p
    p.close()


def start_master(*extra: str, env: dict | None = None) -> subprocess.Popen:
    """``sparecycles master`` for the test's home (or ``env``'s), as a child process."""
    return subprocess.Popen(sparecycles_command("master", *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def run_master_to_the_end(job_id: str, timeout: float = 120) -> tuple[dict, str]:
    """``master --no-local --until-idle 1`` until the queue is idle: the job's
    ``status --json`` and the master's output."""
    master = start_master("--no-local", "--until-idle", "1")
    try:
        assert master.wait(timeout) == 0
    finally:
        out = stop_process(master)
    return json.loads(cli("status", job_id, "--json").stdout), out


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""
