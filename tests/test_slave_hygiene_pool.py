"""The lender's perimeter tried as a hostile colleague would: real slave
daemons (tasks in real bubblewrap), a real sshd, a master with its own key.

Each attack is first shown to work against the old code path (patched back
into the daemon with a prelude), then to fail against today's."""

from __future__ import annotations

import inspect
import json
import os
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import cli, make_job, start_master, stop_process, wait_until
from support.daemons import SlaveDaemon
from support.pool import register_slave
from test_authorize import SSH_OPTIONS, USER, new_key
from test_slave_hygiene import old_pack_results

from trayapp.run.proctree import processes_with_marker
from trayapp.wire.archive import pack
from trayapp.wire.protocol import LineBuffer, decode, encode

pytestmark = pytest.mark.pool

NO_DISPLAY = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}  # no user session: the slave lends at once

# The daemon's packer as it was: a link in results/ travelled as its target.
OLD_PACKER = ("import os, tarfile\nfrom pathlib import Path\nimport trayapp.slave.spool as spool_module\n"
              "from trayapp.wire.archive import sha256_of\n"
              + inspect.getsource(old_pack_results) + "spool_module.Spool.pack_results = old_pack_results\n")

# The daemon as it was before its messages and task files were checked field by
# field, and before a handler's error cost only its connection.
UNCHECKED = textwrap.dedent("""
    import trayapp.slave.engine as engine, trayapp.slave.spool as spool
    from trayapp.wire.protocol import ProtocolError, decode
    engine.refusal = spool.refusal = lambda data, spec: None
    def old_read(self, session):  # today's, without its last-resort net for a handler's error
        try:
            lines, why = session.receive()
            for line in lines:
                message = decode(line)
                if session.principal is None:
                    session.principal, used = engine.identity.from_first_message(message)
                    if used:
                        continue
                self.handle(session, message)
        except ProtocolError as exc:
            why = f"protocol error: {exc}"
        if why:
            self._drop(session, why)
    engine.SlaveEngine._read = old_read
""")

LINKING_TASK = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
open("results/fine.txt", "w").write("fine")
os.symlink(p["key"], "results/k.txt")
"""


def run_job(folder: Path, params: Path) -> dict:
    job = json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json", check=True).stdout)
    master = start_master("--no-local", "--until-idle", "1")
    master.wait(120)
    stop_process(master)
    return job


def test_a_link_in_results_to_the_lenders_private_key_reached_the_master_and_is_refused_now(
        home, tmp_path, sshd):
    lender_key = tmp_path / "lender" / ".ssh" / "id_ed25519"
    lender_key.parent.mkdir(parents=True)
    lender_key.write_text("-----BEGIN OPENSSH PRIVATE KEY----- the lender's\n")
    lender_key.chmod(0o600)
    folder, params = make_job(tmp_path / "linker", LINKING_TASK, params=[{"key": str(lender_key)}])

    old = SlaveDaemon(tmp_path / "old-slave", slots=1, env=NO_DISPLAY)
    (old.home / "config.toml").parent.mkdir(parents=True)
    (old.home / "config.toml").write_text('sandbox = "on"\n')
    try:
        old.start(prelude=OLD_PACKER)
        register_slave("old", sshd, old)
        job = run_job(folder, params)
        leaked = Path(job["results"]) / "0" / "k.txt"
        assert leaked.read_text() == lender_key.read_text(), "the old packer sent the lender's key to the master"
        assert cli("hosts", "remove", "old").returncode == 0
    finally:
        old.stop()

    new = SlaveDaemon(tmp_path / "new-slave", slots=1, env=NO_DISPLAY)
    (new.home / "config.toml").parent.mkdir(parents=True)
    (new.home / "config.toml").write_text('sandbox = "on"\n')
    try:
        new.start()
        register_slave("new", sshd, new)
        job = run_job(folder, params)
    finally:
        new.stop()
    status = json.loads(cli("status", job["job"], "--json", check=True).stdout)
    task = status["tasks"][0]
    assert task["status"] == "failed", status
    assert "results/k.txt is a symbolic link" in task["message"], task["message"]
    assert not (Path(job["results"]) / "0" / "k.txt").exists()
    assert "results/k.txt is a symbolic link" in cli("status", job["job"], check=True).stdout


class HostileMaster:
    """A colleague holding their own restricted key (``slave authorize``),
    speaking the protocol to the slave through OpenSSH and the forced agent."""

    def __init__(self, sshd, key: Path):
        self.proc = subprocess.Popen(["ssh", "-i", str(key), "-p", str(sshd.port), *SSH_OPTIONS,
                                      f"{USER}@127.0.0.1", "sparecycles agent"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.inbox = LineBuffer()
        self.unread: list[dict] = []

    def send(self, kind: str, **fields) -> None:
        self.proc.stdin.write(encode(kind, **fields))
        self.proc.stdin.flush()

    def expect(self, *kinds: str, timeout: float = 60) -> dict | None:
        """The next message of one of ``kinds``; None if the connection closed first."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.unread):
                if message["type"] in kinds:
                    return self.unread.pop(i)
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {kinds} within {timeout} s; read {self.unread}")
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                return None
            self.unread += [decode(line) for line in self.inbox.feed(data)]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def start(master: HostileMaster, token: str, sha: str, params: dict | None = None, **fields) -> None:
    master.send("start", token=token, job="9abf0938", idx=0, params=params or {}, main="main.py", archive_sha=sha,
                **fields)


def test_a_malformed_start_crash_looped_the_daemon_and_is_refused_now(tmp_path, sshd):
    home = tmp_path / "lender"
    home.mkdir()
    (home / "config.toml").write_text('sandbox = "on"\n')
    key = new_key(tmp_path / "mallory")
    cli("slave", "authorize", f"{key}.pub", "--name", "mallory", "--file", str(sshd.folder / "authorized_keys"),
        env={"SPARECYCLES_HOME": str(home)}, check=True)
    # The job's archive, uploaded by this master earlier: the start runs for real.
    folder, _ = make_job(tmp_path / "job", "import json, sys, time\ntime.sleep(json.loads(sys.argv[1]).get('s', 0))\n")
    packed = pack(folder, ["main.py"], home / "spool" / "archives")
    (home / "spool" / "held" / "key-mallory").mkdir(parents=True)
    (home / "spool" / "held" / "key-mallory" / packed.sha256).touch()
    daemon = SlaveDaemon(home, slots=2, env=NO_DISPLAY)
    bad, leftovers = "ba" * 8, []

    # Before: the start is taken, the daemon dies on it, and again on every restart.
    try:
        daemon.start(prelude=UNCHECKED)
        mallory = HostileMaster(sshd, key)
        mallory.send("hello", master="ee" * 8, name="mallory")
        mallory.expect("hello")
        start(mallory, bad, packed.sha256, {"s": 60}, time_limit_s="x")  # still running at the restarts
        leftovers.append(bad)
        assert mallory.expect("started", "declined") is None, "the daemon died before it answered"
        assert daemon.proc.wait(30) != 0 and "TypeError" in daemon.log(), daemon.log()
        mallory.close()
        try:
            daemon.start(prelude=UNCHECKED)
        except RuntimeError:
            pass  # it may die before its socket even shows
        assert daemon.proc.wait(30) != 0, "a restart dies on the task file the malformed start left"
        assert daemon.log().count("TypeError") >= 2, daemon.log()

        # Now: the same home starts, leaving that task file alone with the reason...
        daemon.start()
        status = cli("status", env={"SPARECYCLES_HOME": str(home)}, check=True).stdout
        assert f"cannot take up the task in {home / 'spool' / 'tasks' / bad / 'task.json'}" in status, status
        assert "time_limit_s must be a number of seconds" in status
        # ...and a new malformed start is refused, the session and the daemon going on.
        mallory = HostileMaster(sshd, key)
        mallory.send("hello", master="ee" * 8, name="mallory")
        mallory.expect("hello")
        start(mallory, "bb" * 8, packed.sha256, time_limit_s="x")
        declined = mallory.expect("declined", "started")
        assert declined["type"] == "declined" and declined["retry"] is False, declined
        assert "time_limit_s must be a number of seconds" in declined["reason"], declined
        start(mallory, "bc" * 8, packed.sha256, time_limit_s=60)
        assert mallory.expect("started", "declined")["type"] == "started"
        leftovers.append("bc" * 8)
        finished = mallory.expect("finished")
        assert finished["token"] == "bc" * 8 and finished["outcome"] == "succeeded", finished
        assert daemon.proc.poll() is None
        mallory.close()
        daemon.stop()
        daemon.start()  # and it starts again as it should
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
        for token in leftovers:
            for process in processes_with_marker(token):
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass  # gone with its parent


def test_pause_and_status_say_so_when_the_daemon_is_too_busy_to_answer(tmp_path):
    daemon = SlaveDaemon(tmp_path / "desk", slots=1, env=NO_DISPLAY).start()
    env = {"SPARECYCLES_HOME": str(daemon.home), **NO_DISPLAY}
    try:
        os.kill(daemon.proc.pid, signal.SIGSTOP)  # busy: it accepts connections but answers nothing
        paused = cli("pause", "--for", "1h", env=env)
        assert paused.returncode != 0 and "Traceback" not in paused.stderr, paused.stderr
        assert "the slave daemon did not answer within 10 s: it is busy or stuck" in paused.stderr
        assert "it may still act on it when it catches up" in paused.stderr
        status = cli("status", env=env)
        assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
        assert "slave: not answering (the slave daemon did not answer within 10 s" in status.stdout
        os.kill(daemon.proc.pid, signal.SIGCONT)
        wait_until(lambda: "slave: paused" in cli("status", env=env).stdout, timeout=30,
                   what="the pause sent while it was busy to take effect")
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
        daemon.stop()
