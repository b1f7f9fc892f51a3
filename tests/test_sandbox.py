"""The lender's protection, tried as a hostile master would: real bubblewrap,
real attacks from inside tasks run by a real slave engine.

Each attack is first shown to work with ``sandbox = "off"``, so a sandbox
that silently let it through would fail here, not pass.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import make_job, wait_until
from support.peer import ProtocolPeer

from trayapp.run.choice import task_runner
from trayapp.run.proctree import processes_with_marker
from trayapp.run.taskcache import slot_cache_dir
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool
from trayapp.status import AttemptOutcome
from trayapp.wire.archive import pack

ATTACKS = """
import json, os, socket, sys
p = json.loads(sys.argv[1])
tried = {}

def attempt(name, action):
    try:
        action()
        tried[name] = "done"
    except Exception as exc:
        tried[name] = f"refused: {type(exc).__name__}: {exc}"

attempt("read the lender's 0600 file", lambda: open(os.path.join(p["lender"], "secret.txt")).read())
attempt("list the lender's home", lambda: os.listdir(p["lender"]))
attempt("write into the lender's home", lambda: open(os.path.join(p["lender"], "planted.txt"), "w").write("x"))
attempt("connect to a loopback TCP port", lambda: socket.create_connection(("127.0.0.1", p["port"]), timeout=3))

def daemon_socket():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(p["daemon_socket"])
attempt("connect to the slave daemon's socket", daemon_socket)
attempt("read another task's folder", lambda: open(p["other_task_file"]).read())
print(json.dumps(tried))
"""

VICTIM = """
import time
open("victim-secret.txt", "w").write("another master's data")
time.sleep(120)
"""



def sandboxed_runner(sandbox: str, data: Path, *, in_process: bool = False):
    """The runner a slave daemon whose data folder is ``data`` gets for these settings."""
    return task_runner(in_process=in_process, sandbox=sandbox, python=sys.executable,
                       hidden=(str(Path.home()), str(data)))


class Slave:
    """A slave engine on a thread, with a daemon's Unix socket, and one master session."""

    def __init__(self, root: Path, *, sandbox: str, **settings):
        self.socket_path = root / "data" / "slave.sock"
        self.socket_path.parent.mkdir(parents=True)
        self.engine = SlaveEngine(Spool(root / "data" / "spool"),
                                  SlaveSettings(slots=2, python=sys.executable, nice=0, **settings),
                                  slave_id="5e" * 8, runner=sandboxed_runner(sandbox, root / "data"))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(4)
        self.thread = threading.Thread(target=self.engine.serve, args=(listener,), kwargs={"poll_s": 0.05},
                                       daemon=True)
        self.thread.start()
        self.master = ProtocolPeer(self.engine, timeout=300)
        self.master.hello()
        self.archives: dict[str, object] = {}

    def start(self, root: Path, body: str, params: dict | None = None, **fields) -> str:
        folder, _ = make_job(root / f"job-{len(self.archives)}", body)
        packed = pack(folder, ["main.py"], root / "packed")
        self.master.upload(Path(packed.path), packed.sha256)
        token = secrets.token_hex(8)
        self.master.send("start", token=token, job="j1", idx=len(self.archives), params=params or {},
                         main="main.py", archive_sha=packed.sha256, **fields)
        self.archives[token] = packed
        reply = self.master.expect("started", "declined")
        assert reply["type"] == "started", reply
        return token

    def finished(self, token: str) -> dict:
        return self.master.expect("finished", token=token)

    def output(self, token: str, name: str = "stdout.txt") -> str:
        with tarfile.open(self.engine.spool.results / "unbound" / f"{token}.tar") as tar:
            return tar.extractfile(name).read().decode()

    def stop(self) -> None:
        self.engine.request_stop()
        self.thread.join(10)
        self.engine.stop_all_tasks(AttemptOutcome.HOST_LOST, "the test is over")
        self.engine.close()


@pytest.fixture
def slave_factory(tmp_path):
    made = []

    def make(name: str, **settings) -> Slave:
        made.append(Slave(tmp_path / name, **settings))
        return made[-1]

    yield make
    for slave in made:
        slave.stop()


@pytest.fixture
def lender_home(tmp_path):
    home = tmp_path / "lender"
    home.mkdir()
    secret = home / "secret.txt"
    secret.write_text("the lender's secret")
    secret.chmod(0o600)
    return home


@pytest.fixture
def loopback_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def attack_results(slave: Slave, tmp_path: Path, lender: Path, port: int) -> dict:
    victim = slave.start(tmp_path, VICTIM)
    victim_file = slave.engine.spool.task_dir(victim) / "work" / "victim-secret.txt"
    wait_until(victim_file.exists, what="the other task to write its file")
    token = slave.start(tmp_path, ATTACKS, {"lender": str(lender), "port": port,
                                            "daemon_socket": str(slave.socket_path),
                                            "other_task_file": str(victim_file)})
    finished = slave.finished(token)
    assert finished["outcome"] == "succeeded", finished
    return json.loads(slave.output(token))


def test_every_attack_works_without_the_sandbox_and_fails_inside_it(slave_factory, tmp_path, lender_home,
                                                                     loopback_port):
    bare = attack_results(slave_factory("bare", sandbox="off"), tmp_path, lender_home, loopback_port)
    assert all(result == "done" for result in bare.values()), bare
    (lender_home / "planted.txt").unlink()

    inside = attack_results(slave_factory("sandboxed", sandbox="on"), tmp_path, lender_home, loopback_port)
    assert inside.keys() == bare.keys()
    assert all(result.startswith("refused") for result in inside.values()), inside
    assert sorted(p.name for p in lender_home.iterdir()) == ["secret.txt"]


def test_a_sandboxed_task_sees_its_folder_as_home_and_a_private_tmp(slave_factory, tmp_path, monkeypatch):
    # The slave's data folder is the lender's business: its path must not reach the task.
    monkeypatch.setenv("SPARECYCLES_HOME", str(tmp_path / "lender data"))
    slave = slave_factory("sandboxed", sandbox="on")
    scratch = f"/tmp/scratch-{secrets.token_hex(4)}"
    stray = Path("/tmp") / f"sparecycles-host-tmp-{secrets.token_hex(4)}"
    stray.write_text("host")
    try:
        token = slave.start(tmp_path, f"""
import os, tempfile
print(os.environ["HOME"] == os.getcwd(), tempfile.gettempdir().startswith(os.path.dirname(os.getcwd())),
      os.path.exists({str(stray)!r}), os.getpid() < 10, sorted(os.environ).count("SSH_AUTH_SOCK"),
      "SPARECYCLES_HOME" in os.environ)
open({scratch!r}, "w").write("mine")
""")
        assert slave.finished(token)["outcome"] == "succeeded"
        assert slave.output(token).split() == ["True", "True", "False", "True", "0", "False"]
        assert not Path(scratch).exists()
    finally:
        stray.unlink()


BRIAN = """
import os
from brian2 import NeuronGroup, PoissonInput, SpikeMonitor, ms, mV, Hz, prefs, run
prefs.codegen.target = "cython"
G = NeuronGroup(50, "dv/dt = -v / (10*ms) : volt", threshold="v > 10*mV", reset="v = 0*mV", method="exact")
drive = PoissonInput(G, "v", 20, 100*Hz, weight=1*mV)  # kept: run() collects only named objects
spikes = SpikeMonitor(G)
run(200 * ms)
print(spikes.num_spikes, prefs.codegen.runtime.cython.cache_dir)
"""


def test_a_real_brian_simulation_compiles_and_runs_inside_the_sandbox(slave_factory, tmp_path, brian):
    slave = slave_factory("sandboxed", sandbox="on")
    token = slave.start(tmp_path, BRIAN)
    finished = slave.finished(token)
    assert finished["outcome"] == "succeeded", finished
    spikes, cache = slave.output(token).split()
    assert int(spikes) > 0
    slot_cache = slot_cache_dir(slave.engine.spool.root, 0, "unbound")
    assert cache == str(slot_cache)
    assert list(slot_cache.glob("**/*.so")), "Cython's compiled code stays in the slot's cache"


# What a compile-once job does (resources/standalone): build with g++ in its
# slot's cache, run the binary from there. Beside that cache (another slot's,
# another master's) it must neither write nor read.
SLOT_CACHE = """
import json, os, pathlib, subprocess
slot = pathlib.Path(os.environ["SPARECYCLES_SLOT_CACHE"])
tried = {}
def attempt(name, action):
    try:
        tried[name] = action()
    except Exception as exc:
        tried[name] = f"refused: {type(exc).__name__}: {exc}"
def build(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hello.cpp").write_text("#include <cstdio>\\nint main() { std::puts(\\"built\\"); }\\n")
    subprocess.run(["g++", "-o", str(folder / "hello"), str(folder / "hello.cpp")], check=True)
    return subprocess.run([str(folder / "hello")], capture_output=True, text=True).stdout.strip()
attempt("build in its slot", lambda: build(slot / "brian-standalone"))
attempt("build in another slot", lambda: build(slot.parent / "1" / "brian-standalone"))
attempt("build in another master's", lambda: build(slot.parent.parent / "other-master" / "0" / "brian-standalone"))
attempt("read another master's", lambda: (slot.parent.parent / "other-master" / "0" / "planted.txt").read_text())
print(json.dumps(tried))
"""


def test_a_task_builds_with_gxx_in_its_slot_cache_and_touches_nothing_beside_it(slave_factory, tmp_path):
    for sandbox in ("off", "on"):
        slave = slave_factory(f"slot-cache-{sandbox}", sandbox=sandbox)
        slot = slot_cache_dir(slave.engine.spool.root, 0, "unbound").parent
        other_slot, other_master = slot.parent / "1", slot.parent.parent / "other-master" / "0"
        other_master.mkdir(parents=True)
        (other_master / "planted.txt").write_text("another master's")
        token = slave.start(tmp_path, SLOT_CACHE)
        assert slave.finished(token)["outcome"] == "succeeded"
        tried = json.loads(slave.output(token))
        assert tried["build in its slot"] == "built" and (slot / "brian-standalone" / "hello").is_file(), tried
        reached = [(other_slot / "brian-standalone" / "hello").exists(),
                   (other_master / "brian-standalone" / "hello").exists(),
                   tried["read another master's"] == "another master's"]
        if sandbox == "off":
            assert reached == [True, True, True], tried
        else:  # (what it wrote there, if anything, went to the sandbox's own empty root)
            assert reached == [False, False, False], tried


@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_a_task_allocating_four_times_its_cap_fails_with_a_memory_reason(slave_factory, tmp_path, sandbox):
    slave = slave_factory(f"capped-{sandbox}", sandbox=sandbox)
    token = slave.start(tmp_path, "block = bytearray(4 * 300 << 20)\nprint('allocated')\n", memory_mb=300)
    finished = slave.finished(token)
    assert finished["outcome"] == "exited", finished
    assert "over its memory cap of 300 MB" in finished["message"], finished["message"]
    assert "allocated" not in slave.output(token)


def test_a_job_asking_for_more_memory_than_the_slave_lends_is_declined(slave_factory, tmp_path):
    slave = slave_factory("small", sandbox="on", max_task_memory_mb=256)
    folder, _ = make_job(tmp_path / "big", "print('hi')\n")
    packed = pack(folder, ["main.py"], tmp_path / "packed")
    slave.master.upload(Path(packed.path), packed.sha256)
    slave.master.send("start", token="ab" * 8, job="j1", idx=0, params={}, main="main.py",
                      archive_sha=packed.sha256, memory_mb=1024)
    declined = slave.master.expect("declined")
    assert declined["requirements"] and "at most 256 MB" in declined["reason"], declined


FORK_BOMB = """
import os, sys, time
forked, refused = 0, None
deadline = time.monotonic() + 20
while forked < 300 and time.monotonic() < deadline:
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        forked += 1
    except OSError as exc:
        refused = exc.strerror
        break
print(forked, refused, flush=True)
open("bomb-done", "w").close()
time.sleep(600)
"""

PROCESS_CAP = 40


def test_a_fork_bomb_stays_in_its_slot_and_dies_with_its_task(slave_factory, tmp_path):
    slave = slave_factory("bombed", sandbox="on", max_task_processes=PROCESS_CAP)
    bomb = slave.start(tmp_path, FORK_BOMB, time_limit_s=60)
    done = slave.engine.spool.task_dir(bomb) / "work" / "bomb-done"
    wait_until(done.exists, timeout=60, what="the fork bomb to stop forking")
    # The kernel holds root (this slave, here) to no RLIMIT_NPROC, and this host has
    # no pids cgroup controller for it: the cap itself is tried as a lender below.
    forked = (slave.engine.spool.task_dir(bomb) / "stdout.txt").read_text().split()[0]

    began = time.monotonic()
    slave.master.send("sync")
    slave.master.expect("tasks")
    assert time.monotonic() - began < 2.0, "the engine answers while the bomb's processes sit in its slot"
    other = slave.start(tmp_path, "print(sum(range(1000)))\n")
    assert slave.finished(other)["outcome"] == "succeeded" and slave.output(other).strip() == "499500"

    assert len(processes_with_marker(bomb)) > int(forked)
    slave.master.send("cancel", token=bomb)
    slave.master.expect("finished", token=bomb)
    wait_until(lambda: not processes_with_marker(bomb), timeout=10, what="every process of the bomb to be gone")


def test_without_bubblewrap_a_slave_lends_nothing_unless_its_lender_opts_out(tmp_path, monkeypatch):
    # Unsandboxed path: the lender's own setting must decide, whatever the caller's environment says.
    monkeypatch.delenv("SPARECYCLES_SANDBOX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no bwrap to be found
    strict = SlaveEngine(Spool(tmp_path / "strict"), SlaveSettings(slots=1, python=sys.executable),
                         slave_id="a1" * 8, runner=sandboxed_runner("auto", tmp_path))
    assert not strict.accepts_work() and strict.state.value == "unavailable"
    assert "bubblewrap (bwrap) is not installed" in strict.describe()["reason"]
    assert 'sandbox = "off"' in strict.describe()["reason"]

    own = SlaveEngine(Spool(tmp_path / "own"), SlaveSettings(slots=1, python=sys.executable, in_process=True),
                      slave_id="a2" * 8, runner=sandboxed_runner("auto", tmp_path, in_process=True))
    assert own.accepts_work() and "your own tasks run without a sandbox" in own.describe()["reason"]

    opted_out = SlaveEngine(Spool(tmp_path / "off"), SlaveSettings(slots=1, python=sys.executable),
                            slave_id="a3" * 8, runner=sandboxed_runner("off", tmp_path))
    assert opted_out.accepts_work() and opted_out.state.value == "ready"
    assert "without a sandbox" in opted_out.describe()["reason"] and opted_out.describe()["sandbox"] == "off"


def test_the_sandbox_settings_are_checked(home):
    from trayapp.config import load_config
    from trayapp.errors import UserError

    for text, words in (('sandbox = "maybe"', "setting 'sandbox' must be one of 'auto', 'on', 'off'"),
                        ("max_task_memory_mb = -1", "max_task_memory_mb' must be 0 or more (megabytes"),
                        ("max_task_processes = 3", "max_task_processes' must be 16 or more, or 0 for no cap")):
        home.config_file.write_text(text + "\n")
        with pytest.raises(UserError) as error:
            load_config(home)
        assert words in error.value.problem
    home.config_file.write_text('sandbox = "off"\nsandbox_network = true\nmax_task_memory_mb = 512\n')
    config = load_config(home)
    assert (config.sandbox, config.sandbox_network, config.max_task_memory_mb) == ("off", True, 512)


def test_the_tray_shows_a_slave_lending_without_a_sandbox_as_a_warning():
    from sparecycles_ui.traylook import slave_look

    look = slave_look({"state": "ready", "slots": 2, "running": 0, "warning": "tasks run without a sandbox"})
    assert "Warning: tasks run without a sandbox" in look.tooltip


BOUNDED_BOMB = """
import os, time
forked = 0
try:
    while forked < 120:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        forked += 1
except OSError as exc:
    print("refused after", forked, exc.strerror)
else:
    print("forked", forked)
"""


@pytest.mark.parametrize("capped", [False, True])
def test_the_process_cap_stops_a_lenders_fork_bomb_inside_the_sandbox(capped):
    """As a lender (not root: the kernel exempts root) with the system's Python.
    The user namespace counts the task's processes alone, so the cap does not
    count the lender's own programs."""
    from trayapp.run.caps import limits_prefix
    from trayapp.run.sandbox import Sandbox, sandboxed_argv

    lender = 65534
    with tempfile.TemporaryDirectory(prefix="sparecycles-lender-") as folder:  # pytest's tmp_path is root's alone
        task = Path(folder) / "task"
        task.mkdir()
        (task / "bomb.py").write_text(BOUNDED_BOMB)
        os.chown(task, lender, lender)
        Path(folder).chmod(0o755)
        argv = (limits_prefix(None, PROCESS_CAP) if capped else []) + ["/usr/bin/python3", "bomb.py"]
        run = subprocess.run(sandboxed_argv(argv, task, sandbox=Sandbox(())), capture_output=True,
                             text=True, timeout=60, user=lender, group=lender, extra_groups=[], cwd="/")
    assert run.returncode == 0, run.stderr
    if capped:
        words = run.stdout.split()
        assert words[:2] == ["refused", "after"] and int(words[2]) < PROCESS_CAP, run.stdout
    else:
        assert run.stdout.strip() == "forked 120"


def test_the_masters_own_cores_sandbox_its_tasks_and_status_says_which_went_over_its_memory(home, tmp_path,
                                                                                           monkeypatch):
    from conftest import cli

    body = """
    import os, sys
    print("sandboxed" if os.environ["HOME"] == os.getcwd() and os.getpid() < 10 else "bare", flush=True)
    if sys.argv[1] != "{}":
        block = bytearray(800 << 20)
    """
    folder, params = make_job(tmp_path / "hungry", body, params=[{}, {"grow": True}],
                              extra_files={"sparecycles.toml": '[resources]\nmemory = "200 MB"\n'})
    submitted = json.loads(cli("submit", str(folder), "--params", str(params), "--json", check=True).stdout)
    assert cli("wait", submitted["job"], "--timeout", "120").returncode == 1
    status = json.loads(cli("status", submitted["job"], "--json", check=True).stdout)
    small, big = status["tasks"]
    assert small["status"] == "done" and big["status"] == "failed", status
    assert "over its memory cap of 200 MB" in big["message"], big
    assert (Path(submitted["results"]) / "0" / "stdout.txt").read_text().strip() == "sandboxed"
    assert "over its memory cap of 200 MB" in cli("status", submitted["job"], check=True).stdout
