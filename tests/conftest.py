"""Shared fixtures: a private SpareCycles home per test, job folders, dispatchers.

Everything is real: tasks are real subprocesses of ``sys.executable``, the
queue is a real SQLite file, and CLI tests run the real ``python -m sparecycles``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from trayapp.app import App

# Tray apps started by tests (in process or as children) must not ask the public
# package index for updates: test traffic stays on this machine.
os.environ["SPARECYCLES_NO_UPDATE_CHECK"] = "1"
# Tasks in these tests leave markers and pids outside their own folders, which
# the sandbox forbids; tests/test_sandbox.py runs tasks in it (and removes this).
os.environ["SPARECYCLES_SANDBOX"] = "off"
from trayapp.config import Config
from trayapp.home import Home


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    root = tmp_path / "sparecycles home"
    monkeypatch.setenv("SPARECYCLES_HOME", str(root))
    yield Home.from_environment().ensure()
    _stop_background_dispatcher(root)


def _stop_background_dispatcher(root: Path) -> None:
    """End a dispatcher a CLI test started in the background, by its recorded pid."""
    lock = root / "dispatcher.lock"
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


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def cli(*args: str, env: dict | None = None, timeout: float = 120, check: bool = False,
        input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a child process."""
    result = subprocess.run([sys.executable, "-m", "sparecycles", *args], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, **(env or {})}, input=input_text)
    if check and result.returncode != 0:
        raise AssertionError(f"sparecycles {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


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


# ----- the pool: a real sshd on loopback and slave daemons behind it ---------------

from realparts import SlaveDaemon, Sshd  # noqa: E402


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


class Pool:
    """A master home (the test's SPARECYCLES_HOME) with slave daemons reached over sshd."""

    def __init__(self, tmp_path: Path, sshd: Sshd):
        self.tmp_path = tmp_path
        self.sshd = sshd
        self.slaves: dict[str, SlaveDaemon] = {}

    def add_slave(self, name: str, slots: int = 2, config: str = "", trust: bool = True,
                  start: bool = True) -> SlaveDaemon:
        home = self.tmp_path / f"slave-{name}"
        home.mkdir(parents=True, exist_ok=True)
        if config:
            (home / "config.toml").write_text(config)
        slave = SlaveDaemon(home, slots)
        if start:
            slave.start()
        self.slaves[name] = slave
        cli("hosts", "add", name, "--host", "127.0.0.1", "--port", str(self.sshd.port), "--user",
            os.environ.get("USER", "root"), "--key", str(self.sshd.client_key), "--agent-command",
            slave.agent_command, check=True)
        if trust:
            cli("hosts", "trust", name, "--fingerprint", self.sshd.host_key_fingerprint(), check=True)
        return slave

    def close(self) -> None:
        for slave in self.slaves.values():
            slave.stop()


@pytest.fixture
def pool(home, tmp_path, sshd):
    p = Pool(tmp_path, sshd)
    yield p
    p.close()


def start_master(*extra: str, env: dict | None = None) -> subprocess.Popen:
    """``sparecycles master`` for the test's home (or ``env``'s), as a child process."""
    return subprocess.Popen([sys.executable, "-m", "sparecycles", "master", *extra], stdout=subprocess.PIPE,
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
