"""The pool under faults: untrusted or changed host keys, bad `hosts` input, missing
daemons, hostile archives both ways, damaged transfers, protocol garbage, and
slaves that cannot take work (results cap, full or read-only disk), plus key
passphrases from the OS keyring.

Everything is real: a real sshd on loopback, real slave daemons, real
``sparecycles`` child processes; the only stand-in is ``fakes/fake_agent.py``,
a slave we must not trust.
"""

from __future__ import annotations

import base64
import getpass
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keyring
import keyring.backend
import pytest
from conftest import ECHO_TASK, cli, make_job, run_dispatcher, wait_until
from support.tasks import all_ended, running_scripts
from fakes import fake_agent
from support.peer import ProtocolPeer

from trayapp.wire.archive import pack, sha256_of
from trayapp.slave.availability import SlaveState
from trayapp.job.submit import submit_job
from trayapp.master.kinds.local import LocalSlave
from trayapp.master.kinds.login import SSHLogin
from trayapp.wire.links import LocalLink
from trayapp.wire.protocol import MAX_LINE, encode
from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool
from trayapp.wire.ssh import (
    ClientKeyError,
    SSHLink,
    fetch_host_key,
    store_secret,
    trust_host_key,
)
from trayapp.master.store import Store

pytestmark = pytest.mark.pool

FAKE_AGENT = Path(fake_agent.__file__)
HOSTILE_KINDS = ["dotdot", "absolute", "symlink", "hardlink", "device"]


# ----- helpers: the command line, a master process, host state -------------------------------

def submit(folder: Path, params: Path | None = None) -> dict:
    args = ["submit", str(folder), "--no-start", "--json"] + (["--params", str(params)] if params else [])
    return json.loads(cli(*args, check=True).stdout)


def echo_job(tmp_path: Path, n: int = 2, name: str = "sweep") -> dict:
    folder, params = make_job(tmp_path / name, ECHO_TASK, params=[{"i": i} for i in range(n)])
    return submit(folder, params)


def job_status(job_id: str) -> dict:
    return json.loads(cli("status", job_id, "--json", check=True).stdout)


def hosts_json() -> dict[str, dict]:
    return {h["name"]: h for h in json.loads(cli("hosts", "list", "--json", check=True).stdout)}


def host_row(home, name: str):
    store = Store(home.queue_db)
    try:
        return store.host(name)
    finally:
        store.close()


def wait_for_host_state(home, name: str, state: str, timeout: float = 20.0):
    return wait_until(lambda: (h := host_row(home, name)).state == state and h, timeout=timeout,
                      what=f"host {name} to be {state}")


class Master:
    """``sparecycles master --no-local`` as a child process, its output in a file
    (a pipe nobody reads would stall it once full)."""

    def __init__(self, tmp_path: Path, *extra: str):
        self.log_path = tmp_path / f"master-{time.monotonic_ns()}.log"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Master":
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "sparecycles", "master", "--no-local", *self.extra],
                                         stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            if self.wait(20) is None:
                self.proc.kill()
                self.proc.wait(10)


def run_master(tmp_path: Path, timeout: float) -> tuple[int | None, str]:
    """Run the master until the queue is idle (or ``timeout``); its exit code (None: stopped) and log."""
    with Master(tmp_path, "--until-idle", "1") as master:
        code = master.wait(timeout)
    return code, master.log()


def run_master_until_idle(tmp_path: Path, timeout: float = 60.0) -> str:
    code, log = run_master(tmp_path, timeout)
    assert code == 0, f"master exited with {code}:\n{log}"
    return log


def add_fake_host(pool, name: str, mode: str, workdir: Path) -> None:
    """A host behind the real sshd whose "agent" is the hostile fake."""
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_AGENT))} {mode} {shlex.quote(str(workdir))}"
    cli("hosts", "add", name, "--host", "127.0.0.1", "--port", str(pool.sshd.port), "--user",
        os.environ.get("USER", "root"), "--key", str(pool.sshd.client_key), "--agent-command", command, check=True)
    cli("hosts", "trust", name, "--fingerprint", pool.sshd.host_key_fingerprint(), check=True)


def received_by_fake(workdir: Path) -> list[dict]:
    path = workdir / "received.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def replace_host_key(sshd, key_type: str) -> None:
    """The slave PC was reinstalled: same address and port, new host key."""
    sshd.stop()
    for path in (sshd.host_key, sshd.host_key.with_suffix(".pub")):
        path.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, *(["-b", "2048"] if key_type == "rsa" else []),
                    "-N", "", "-f", str(sshd.host_key)], check=True)
    sshd.start()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


# ----- helpers: an in-process slave engine driven message by message --------------------------

@pytest.fixture
def engine(tmp_path):
    eng = SlaveEngine(Spool(tmp_path / "slave" / "spool"), SlaveSettings(slots=2, python=sys.executable, nice=0),
                      slave_id="e" * 16, runner=PosixRunner())
    runner = LocalSlave(eng).start()
    yield eng
    runner.stop()


# ===== 1-3: host keys ========================================================================

def test_unknown_host_key_is_refused_until_the_user_trusts_it(pool, home, tmp_path):
    slave = pool.add_slave("a", trust=False)
    job = echo_job(tmp_path, n=2)
    with Master(tmp_path):
        wait_for_host_state(home, "a", "unreachable")
    host = hosts_json()["a"]
    assert host["state"] == "unreachable"
    assert "not trusted" in host["reason"] and "sparecycles hosts trust a" in host["reason"], host
    status = job_status(job["job"])
    assert status["status"] == "queued"
    assert [(t["status"], t["host"]) for t in status["tasks"]] == [("queued", None)] * 2
    assert list((slave.home / "spool" / "archives").iterdir()) == [], "nothing may reach an untrusted host"

    trusted = cli("hosts", "trust", "a", "--fingerprint", pool.sshd.host_key_fingerprint())
    assert trusted.returncode == 0, trusted.stderr
    run_master_until_idle(tmp_path)
    status = job_status(job["job"])
    assert status["status"] == "done"
    assert {t["host"] for t in status["tasks"]} == {"a"}


@pytest.mark.parametrize("new_key_type", ["ed25519", "rsa"])
def test_changed_host_key_is_refused_and_replaced_only_with_replace(pool, home, tmp_path, new_key_type):
    pool.add_slave("a")
    old = pool.sshd.host_key_fingerprint()
    replace_host_key(pool.sshd, new_key_type)
    new = pool.sshd.host_key_fingerprint()
    assert new != old
    job = echo_job(tmp_path, n=1)
    known = home.known_hosts
    trusted_before = known.read_bytes()

    with Master(tmp_path):
        wait_for_host_state(home, "a", "unreachable")
    reason = hosts_json()["a"]["reason"]
    assert "CHANGED" in reason and "--replace" in reason and new in reason, reason
    assert job_status(job["job"])["tasks"][0]["status"] == "queued"

    refused = cli("hosts", "trust", "a", "--fingerprint", new, input_text="")
    assert refused.returncode == 3, (refused.stdout, refused.stderr)
    assert "CHANGED" in refused.stderr and new in refused.stderr and "--replace" in refused.stderr
    assert known.read_bytes() == trusted_before, "a refused trust must not touch known_hosts"

    replaced = cli("hosts", "trust", "a", "--fingerprint", new, "--replace", input_text="")
    assert replaced.returncode == 0, replaced.stderr
    run_master_until_idle(tmp_path)
    assert job_status(job["job"])["status"] == "done"


@pytest.mark.parametrize("args, expected", [
    (["--fingerprint", "SHA256:" + base64.b64encode(bytes(32)).decode().rstrip("=")], ["does not match"]),
    ([], ["without confirmation", "--fingerprint"]),
], ids=["wrong-fingerprint", "no-terminal"])
def test_trust_refuses_a_wrong_fingerprint_or_no_confirmation(pool, home, args, expected):
    pool.add_slave("a", trust=False, start=False)
    result = cli("hosts", "trust", "a", *args, input_text="")  # stdin is a pipe, not a terminal
    assert result.returncode == 3, (result.stdout, result.stderr)
    for phrase in expected:
        assert phrase in result.stderr, result.stderr
    assert pool.sshd.host_key_fingerprint() in result.stdout + result.stderr, "the real fingerprint is shown"
    assert not home.known_hosts.exists()


# ===== 4: hosts add/remove/list input ========================================================

def test_hosts_list_on_a_fresh_home_is_empty(home):
    result = cli("hosts", "list", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("args, message", [
    (["a", "--host", "10.0.0.9"], "a host named 'a' exists already"),
    (["local", "--host", "10.0.0.9"], "'local' is the name of this PC's own cores"),
    (["b", "--host", "10.0.0.9", "--port", "0"], "--port must be between 1 and 65535, not 0"),
    (["b", "--host", "10.0.0.9", "--port", "65536"], "--port must be between 1 and 65535, not 65536"),
    (["b", "--host", "10.0.0.9", "--slots", "0"], "--slots must be at least 1, not 0"),
], ids=["duplicate", "local", "port-0", "port-65536", "slots-0"])
def test_hosts_add_refuses_bad_input(home, args, message):
    cli("hosts", "add", "a", "--host", "10.0.0.1", check=True)
    before = cli("hosts", "list", "--json", check=True).stdout
    result = cli("hosts", "add", *args)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert cli("hosts", "list", "--json", check=True).stdout == before, "a refused add must change nothing"


def test_hosts_remove_of_an_unknown_host(home):
    result = cli("hosts", "remove", "nope")
    assert result.returncode == 3
    assert "no host 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_removing_a_host_while_it_runs_tasks_stops_them_there_and_frees_its_spool(pool, home, tmp_path):
    slave = pool.add_slave("a")
    folder, params = make_job(tmp_path / "long", "import time; time.sleep(600)\n", params=[{"i": i} for i in range(2)])
    job = submit(folder, params)
    with Master(tmp_path) as master:
        running = wait_until(lambda: len(running_scripts(job["job"])) == 2 and running_scripts(job["job"]),
                             what="both tasks to run on the slave")
        result = cli("hosts", "remove", "a", check=True)
        assert "its 2 unfinished task(s) will run elsewhere" in result.stdout
        wait_until(lambda: all_ended(p for procs in running.values() for p in procs),
                   what="the slave to stop the removed host's tasks")
        tasks_dir = slave.home / "spool" / "tasks"
        wait_until(lambda: list(tasks_dir.iterdir()) == [], what="the slave to free its spool", timeout=10)
        statuses = [t["status"] for t in job_status(job["job"])["tasks"]]
        assert statuses == ["queued", "queued"], (statuses, master.log())


# ===== 5: no daemon ==========================================================================

def test_host_without_slave_daemon_is_offline_and_its_job_stays_queued(pool, home, tmp_path):
    pool.add_slave("a", start=False)
    job = echo_job(tmp_path, n=2)
    with Master(tmp_path) as master:
        wait_for_host_state(home, "a", "offline")
        assert master.proc.poll() is None
    host = hosts_json()["a"]
    assert host["state"] == "offline"
    assert "no slave daemon is running" in host["reason"] and "sparecycles slave" in host["reason"], host
    status = job_status(job["job"])
    assert status["status"] == "queued"
    assert [(t["status"], t["failures"]) for t in status["tasks"]] == [("queued", 0)] * 2


# ===== 6: hostile results from a slave =======================================================

HOSTILE_RESULT_MESSAGES = {
    "dotdot": f"archive member '{fake_agent.DOTDOT_MEMBER}' points outside its folder",
    "absolute": "has an absolute path",
    "symlink": f"archive member '{fake_agent.SYMLINK_MEMBER}' is a symlink",
    "hardlink": f"archive member '{fake_agent.HARDLINK_MEMBER}' is a hard link",
    "device": f"archive member '{fake_agent.DEVICE_MEMBER}' is a device or fifo",
}


@pytest.mark.parametrize("delivery", ["", "+inline"], ids=["by-sftp", "inline"])
@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_results_archive_is_refused_and_nothing_escapes(pool, home, tmp_path, kind, delivery):
    workdir = tmp_path / "evil"
    add_fake_host(pool, "evil", kind + delivery, workdir)
    job = echo_job(tmp_path, n=1)
    log = run_master_until_idle(tmp_path)

    task = job_status(job["job"])["tasks"][0]
    assert (task["status"], task["outcome"], task["host"]) == ("failed", "rejected", "evil"), log
    assert "refused the results archive from evil" in task["message"], task
    assert HOSTILE_RESULT_MESSAGES[kind] in task["message"], task
    if kind == "absolute":
        assert fake_agent.absolute_member(workdir) in task["message"]
    results = Path(job["results"])
    # The `..` member would land at results/escape.txt; the others point into workdir.
    assert not (results / "escape.txt").exists()
    assert not Path(fake_agent.absolute_member(workdir)).exists()
    assert not Path(fake_agent.symlink_target(workdir)).exists()
    assert not (results / "0").exists(), "no results folder may come from a refused archive"
    assert files_under(results) == [], "staging folders must be cleaned up"
    assert not [p for p in tmp_path.rglob("*") if p.is_symlink() or p.name == "escape.txt"]
    acked = [m["token"] for m in received_by_fake(workdir) if m["type"] == "ack"]
    assert len(acked) == 1, "the slave is told to drop the refused results"


def test_small_results_inside_the_finished_message_need_no_transfer(pool, home, tmp_path):
    workdir = tmp_path / "inline"
    add_fake_host(pool, "inline", "clean+inline", workdir)  # the spooled copy is gone: SFTP would fail
    job = echo_job(tmp_path, n=1)
    log = run_master_until_idle(tmp_path)
    task = job_status(job["job"])["tasks"][0]
    assert (task["status"], task["host"]) == ("done", "inline"), log
    assert (Path(job["results"]) / "0" / "ok.txt").read_text() == "a normal result\n"
    assert (Path(job["results"]) / "0" / "stdout.txt").read_text() == "ran\n"


def test_damaged_inline_results_are_fetched_from_the_slaves_spool_instead(pool, home, tmp_path):
    workdir = tmp_path / "slip"
    add_fake_host(pool, "slip", "clean+badinline", workdir)
    job = echo_job(tmp_path, n=1)
    log = run_master_until_idle(tmp_path)
    task = job_status(job["job"])["tasks"][0]
    assert (task["status"], task["host"]) == ("done", "slip"), log
    assert (Path(job["results"]) / "0" / "ok.txt").read_text() == "a normal result\n"
    assert "in its message are damaged; fetching them" in log


def test_results_the_master_cannot_write_wait_on_the_slave_until_fixed(pool, home, tmp_path):
    slave = pool.add_slave("a")
    job = echo_job(tmp_path, n=4)
    results = Path(job["results"])
    shutil.rmtree(results, ignore_errors=True)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("a file where the job's results folder should be\n")  # root ignores permissions

    def waiting_tasks():
        return [t for t in job_status(job["job"])["tasks"] if "cannot write the results" in (t["message"] or "")]

    with Master(tmp_path) as master:
        waiting = wait_until(waiting_tasks, what="a task to say why its results wait")
        assert "the results wait on a and are collected as soon as it works" in waiting[0]["message"]
        assert hosts_json()["a"]["state"] in ("ready", "working"), "the host is fine: it is not its fault"
        spooled = [p for p in (slave.home / "spool" / "results").rglob("*") if p.is_file()]
        assert spooled, "the results wait in the slave's spool"
        results.unlink()  # the user fixes it
        wait_until(lambda: job_status(job["job"])["status"] == "done", timeout=60, what="the job to finish")
        log = master.log()
    assert "connection lost" not in log, log
    for i in range(4):
        assert json.loads((results / str(i) / "out.json").read_text())["params"] == {"i": i}
    assert [t["message"] for t in job_status(job["job"])["tasks"]] == [None] * 4
    wait_until(lambda: not [p for p in (slave.home / "spool" / "results").rglob("*") if p.is_file()],
               what="the slave's spool to empty")


def test_slave_claiming_success_without_results_does_not_derail_the_master(pool, home, tmp_path):
    workdir = tmp_path / "evil"
    add_fake_host(pool, "evil", "nopath", workdir)
    job = echo_job(tmp_path, n=1)
    with Master(tmp_path, "--until-idle", "1") as master:
        code = master.wait(20)
    task = job_status(job["job"])["tasks"][0]
    reason = host_row(home, "evil").reason or ""
    assert "internal error" not in reason, f"host reason {reason!r}; master log:\n{master.log()}"
    assert code == 0 and task["status"] == "failed", (task, master.log())
    assert "results" in task["message"]


# ===== 7: hostile job archive at a slave =====================================================

HOSTILE_JOB_MESSAGES = {
    "dotdot": "archive member '../../../escape.txt' points outside its folder",
    "absolute": "has an absolute path",
    "symlink": f"archive member '{fake_agent.SYMLINK_MEMBER}' is a symlink",
    "hardlink": f"archive member '{fake_agent.HARDLINK_MEMBER}' is a hard link",
    "device": f"archive member '{fake_agent.DEVICE_MEMBER}' is a device or fifo",
}


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_job_archive_is_declined_for_good_by_the_slave(engine, tmp_path, kind):
    canaries = tmp_path / "canaries"
    hostile = tmp_path / "hostile.tar"
    # From the engine's staging folder (spool/unpacked/.<sha>-x) three `..` leave the spool.
    fake_agent.craft_archive(kind, hostile, canaries, dotdot="../../../escape.txt",
                             normal={"main.py": b"print('hi')\n"})
    sha = sha256_of(hostile)
    peer = ProtocolPeer(engine)
    peer.hello()
    assert peer.upload(hostile, sha)["type"] == "archive_ok"  # intact bytes: only unpacking can tell
    peer.send("start", token="ab" * 8, job="j1", idx=0, params={}, main="main.py", archive_sha=sha)
    declined = peer.expect("declined")
    assert declined["token"] == "ab" * 8 and declined["retry"] is False, declined
    assert declined["reason"].startswith("refused the job archive: ") and declined["code"] == "archive_unsafe"
    assert HOSTILE_JOB_MESSAGES[kind] in declined["reason"], declined
    spool = engine.spool.root
    assert list(spool.parent.iterdir()) == [spool], "nothing may be written beside the spool"
    assert not [p for p in tmp_path.rglob("*") if p.is_symlink() or p.name == "escape.txt"]
    assert not canaries.exists()
    assert list(engine.spool.unpacked.iterdir()) == [] and list(engine.spool.tasks.iterdir()) == []
    assert engine.state is SlaveState.READY and engine.tasks == {}

    # The refusal does not poison the engine: a sound job still runs on the same session.
    folder, _ = make_job(tmp_path / "good", "import os\nos.makedirs('results')\nopen('results/r', 'w').write('1')\n")
    good = pack(folder, ["main.py"], tmp_path / "packed")
    assert peer.upload(good.path, good.sha256)["type"] == "archive_ok"
    peer.send("start", token="cd" * 8, job="j2", idx=0, params={}, main="main.py", archive_sha=good.sha256)
    assert peer.expect("started")["token"] == "cd" * 8
    finished = peer.expect("finished")
    assert (finished["token"], finished["outcome"]) == ("cd" * 8, "succeeded"), finished


# ===== 8: damaged archives are re-sent, never run ============================================

def echo_job_in(app, tmp_path, n: int = 2):
    folder, params = make_job(tmp_path / "job", ECHO_TASK, params=[{"i": i} for i in range(n)])
    return submit_job(app.store, app.home, app.config, folder, params=params).job


class DamagingLink:
    """A LocalLink whose first upload arrives with one byte flipped, as over a bad line."""

    def __init__(self, inner: LocalLink, puts: list[str]):
        self._inner, self._puts = inner, puts
        self.label = inner.label
        self.results_in_place = inner.results_in_place

    def fileno(self) -> int:
        return self._inner.fileno()

    def send(self, data: bytes) -> None:
        self._inner.send(data)

    def recv(self) -> bytes:
        return self._inner.recv()

    def fetch(self, remote: str, local: Path, **bounds) -> None:
        self._inner.fetch(remote, local, **bounds)

    def close(self) -> None:
        self._inner.close()

    def put(self, local: Path, remote: str) -> None:
        self._puts.append(remote)
        if len(self._puts) == 1:
            data = bytearray(local.read_bytes())
            data[len(data) // 2] ^= 0xFF
            Path(remote).write_bytes(bytes(data))
        else:
            self._inner.put(local, remote)


def test_archive_damaged_in_transit_is_sent_again_and_the_tasks_run_once(app, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="trayapp.master.driver")
    puts: list[str] = []
    monkeypatch.setattr(LocalSlave, "link", lambda self: DamagingLink(LocalLink(self.engine), puts))
    job = echo_job_in(app, tmp_path)
    run_dispatcher(app)

    assert app.store.job(job.id).status.value == "done"
    assert len(puts) == 2 and puts[0] != puts[1], puts
    damaged = [r.getMessage() for r in caplog.records if "arrived damaged" in r.getMessage()]
    assert len(damaged) == 1 and "damaged in transit" in damaged[0], damaged
    # Each task ran exactly once: one attempt each, and its results came back.
    assert [(a["idx"], a["outcome"]) for a in app.store.attempts(job.seq)] == [(0, "succeeded"), (1, "succeeded")]
    assert [json.loads((Path(job.results_dir) / str(i) / "out.json").read_text())["params"]["i"]
            for i in range(2)] == [0, 1]
    spool_copy = app.home.data_dir / "local-spool" / "archives" / f"{job.archive_sha}.tar"
    assert sha256_of(spool_copy) == job.archive_sha


class RefusingLink(DamagingLink):
    """A LocalLink whose first upload fails as on a full disk (or over the slave's incoming quota)."""

    def put(self, local: Path, remote: str) -> None:
        self._puts.append(time.monotonic())
        if len(self._puts) == 1:
            raise OSError(28, "No space left on device")
        self._inner.put(local, remote)


def test_an_archive_the_host_cannot_take_is_not_sent_again_and_again(app, tmp_path, monkeypatch):
    # Before: the tasks went back to the queue and the host took them at once, failing the
    # same upload in a loop. Now the job is not offered there for declined_for_s, and waits
    # (the host may free space) rather than fail, as it is the only host.
    from trayapp.master.driversettings import DriverSettings

    puts: list[float] = []
    monkeypatch.setattr(LocalSlave, "link", lambda self: RefusingLink(LocalLink(self.engine), puts))
    job = echo_job_in(app, tmp_path)
    tuned = DriverSettings(*app.identity(), declined_for_s=6.0)
    app.dispatcher(tuned=(tuned,)).run(until_idle=0.3)

    assert app.store.job(job.id).status.value == "done"
    assert len(puts) == 2 and puts[1] - puts[0] >= 5.0, f"sent again after {puts[1] - puts[0]:.1f} s"
    lost = [a for a in app.store.attempts(job.seq) if a["outcome"] == "host_lost"]
    assert lost and "No space left on device" in (app.store.tasks(job.seq)[0].message or lost[0]["message"] or "")


def test_archive_damaged_on_the_slaves_disk_is_declined_and_sent_again(app, tmp_path):
    job = echo_job_in(app, tmp_path)
    spool = Spool(app.home.data_dir / "local-spool")
    # An earlier session uploaded the archive (verified and unpacked on arrival);
    # the unpacked copy was cleaned away since, then the slave's disk damaged the archive.
    seed = SlaveEngine(spool, SlaveSettings(slots=1, python=sys.executable), slave_id="e" * 16,
                       runner=PosixRunner())
    runner = LocalSlave(seed).start()
    try:
        peer = ProtocolPeer(seed)
        peer.hello()
        assert peer.upload(Path(job.archive_path), job.archive_sha)["type"] == "archive_ok"
        peer.sock.close()
    finally:
        runner.stop()
    assert (spool.unpacked / job.archive_sha).is_dir(), "unpacked on arrival"
    shutil.rmtree(spool.unpacked / job.archive_sha)
    on_slave = spool.archive_path(job.archive_sha)
    with on_slave.open("r+b") as fh:
        fh.seek(700)
        byte = fh.read(1)
        fh.seek(700)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert sha256_of(on_slave) != job.archive_sha and sha256_of(Path(job.archive_path)) == job.archive_sha

    run_dispatcher(app)
    assert app.store.job(job.id).status.value == "done"
    attempts = app.store.attempts(job.seq)
    declined = [a for a in attempts if a["outcome"] == "host_lost"]
    # Each task ran exactly once: its other attempts were declined (host_lost) before it started.
    assert any("is damaged" in a["message"] for a in declined), [dict(a) for a in attempts]
    assert sorted(a["idx"] for a in attempts if a["outcome"] != "host_lost") == [0, 1]
    assert all(a["outcome"] == "succeeded" for a in attempts if a["outcome"] != "host_lost")
    assert sha256_of(on_slave) == job.archive_sha, "the master sent the archive again"


# ===== 9: protocol garbage ===================================================================

@pytest.mark.parametrize("garbage, logged", [
    (b"this is not json\n", "not valid JSON"),
    (b'{"v": 99, "type": "hello", "master": "0123456789abcdef"}\n', "protocol version 99 is not 1"),
    (b'[1, 2, 3]\n', "a message must be a JSON object"),
    (encode("sync"), "'sync' before 'hello'"),
    (b"x" * (MAX_LINE + 10), "a line longer than"),
], ids=["not-json", "version-99", "not-an-object", "before-hello", "runaway-line"])
def test_engine_closes_a_session_that_sends_garbage_and_serves_the_others(engine, caplog, garbage, logged):
    caplog.set_level(logging.WARNING, logger="trayapp.slave.engine")
    good = ProtocolPeer(engine)
    assert good.hello()["slave"] == "e" * 16
    bad = ProtocolPeer(engine)
    try:
        bad.sock.sendall(garbage)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed before all of a runaway line was read
    assert bad.closed_by_engine(), "the engine must close a session that sent garbage"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("closing connection" in w and logged in w for w in warnings), warnings
    # The well-behaved session is untouched, and so is a new one.
    good.send("sync")
    assert good.expect("tasks")["tasks"] == []
    assert ProtocolPeer(engine).hello()["slave"] == "e" * 16


@pytest.mark.parametrize("mode, phrase", [
    ("notjson", "not valid JSON"),
    ("v99", "protocol version 99"),
    ("grant_nan", "grant"),
])
def test_master_treats_a_garbage_speaking_host_as_unreachable(pool, home, tmp_path, mode, phrase):
    workdir = tmp_path / "babble"
    add_fake_host(pool, "babble", mode, workdir)
    job = echo_job(tmp_path, n=1)
    with Master(tmp_path) as master:
        row = wait_for_host_state(home, "babble", "unreachable")
        assert master.proc.poll() is None, "the master must survive a garbage-speaking host"
    assert row.reason.startswith("connection lost: ") and phrase in row.reason, (row.reason, master.log())
    assert master.proc.returncode == 0 and "Traceback" not in master.log(), master.log()
    host = hosts_json()["babble"]
    assert host["state"] == "unreachable"
    task = job_status(job["job"])["tasks"][0]
    assert (task["status"], task["failures"]) == ("queued", 0), task


# ===== 10-11: slaves that cannot take (all) work =============================================

BLOB_TASK = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
open("results/blob.bin", "wb").write(os.urandom(int(p["mb"] * (1 << 20))))
print("wrote", p["mb"], "MB")
"""


def test_results_over_the_hosts_cap_are_rejected_small_ones_kept(pool, tmp_path):
    slave = pool.add_slave("a", config="max_results_mb = 1\n")
    # 0 MB: results inside the finished message; 0.9 MB: over the inline limit, fetched by SFTP.
    folder, params = make_job(tmp_path / "big", BLOB_TASK, params=[{"mb": 3}, {"mb": 0}, {"mb": 0.9}])
    job = submit(folder, params)
    log = run_master_until_idle(tmp_path)

    big, small, medium = job_status(job["job"])["tasks"]
    assert (big["status"], big["outcome"]) == ("failed", "rejected"), (big, log)
    assert "exceed this host's cap of 1 MB" in big["message"] and "3.1 MB" in big["message"], big
    assert small["status"] == medium["status"] == "done", (small, medium)
    assert (Path(job["results"]) / "1" / "blob.bin").read_bytes() == b""
    assert (Path(job["results"]) / "2" / "blob.bin").stat().st_size == int(0.9 * (1 << 20))
    assert not (Path(job["results"]) / "0" / "blob.bin").exists()
    spool = slave.home / "spool"
    assert list((spool / "tasks").iterdir()) == [] and not [p for p in (spool / "results").rglob("*") if p.is_file()]


SLEEPY_TASK = """
import json, os, sys, time
time.sleep(0.3)
os.makedirs("results", exist_ok=True)
json.dump({"home": os.environ.get("SPARECYCLES_HOME")}, open("results/where.json", "w"))
"""


def run_and_check_only_healthy_worked(tmp_path: Path, job: dict, broken: str, expected_reason: list[str]) -> None:
    # A short timeout: with a healthy slave of 2 slots, 6 short tasks take a few seconds.
    code, log = run_master(tmp_path, timeout=30)
    state = hosts_json()[broken]
    assert state["state"] == "unavailable" and all(p in (state["reason"] or "") for p in expected_reason), (
        f"{broken} should be unavailable ({expected_reason}), is {state['state']} ({state['reason']})")
    status = job_status(job["job"])
    assert code == 0 and status["status"] == "done", (code, status, log)
    assert {t["host"] for t in status["tasks"]} == {"healthy"}, [(t["index"], t["host"]) for t in status["tasks"]]


def test_slave_with_too_little_free_disk_is_unavailable_and_takes_no_work(pool, tmp_path):
    pool.add_slave("full", config="min_free_mb = 100000000\n")
    pool.add_slave("healthy")
    folder, params = make_job(tmp_path / "job", SLEEPY_TASK, params=[{}] * 6)
    job = submit(folder, params)
    run_and_check_only_healthy_worked(tmp_path, job, "full", ["MB free", "needs 100000000 MB"])


def test_slave_with_read_only_spool_is_unavailable_and_takes_no_work(pool, tmp_path):
    readonly = pool.add_slave("readonly")
    pool.add_slave("healthy")
    spool = str(readonly.home / "spool")
    subprocess.run(["mount", "--bind", spool, spool], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", spool], check=True)
        with pytest.raises(OSError):
            (Path(spool) / "probe").write_text("x")
        folder, params = make_job(tmp_path / "job", SLEEPY_TASK, params=[{}] * 6)
        job = submit(folder, params)
        run_and_check_only_healthy_worked(tmp_path, job, "readonly", ["cannot write to the spool", "Read-only"])
    finally:
        subprocess.run(["umount", spool], check=True)


# ===== 12: key passphrase from the OS keyring ================================================

class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self):
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.secrets.get((service, username))

    def set_password(self, service, username, password):
        self.secrets[(service, username)] = password

    def delete_password(self, service, username):
        self.secrets.pop((service, username), None)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


PASSPHRASE = "s3cret-Passphrase-7f2a"


@pytest.mark.parametrize("stored", [PASSPHRASE, None, "not-the-passphrase"], ids=["stored", "none", "wrong"])
def test_key_passphrase_comes_from_the_keyring_and_never_touches_disk(app, sshd, tmp_path, memory_keyring,
                                                                      monkeypatch, stored):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # only the key file may authenticate
    key = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)], check=True)
    with (sshd.folder / "authorized_keys").open("a") as fh:
        fh.write(key.with_suffix(".pub").read_text())
    host = SSHLogin("k", "127.0.0.1", port=sshd.port, user=os.environ.get("USER") or getpass.getuser(),
                    key_path=str(key), agent_command="cat")
    trust_host_key(app.home, "127.0.0.1", sshd.port, fetch_host_key("127.0.0.1", sshd.port))
    if stored is not None:
        store_secret(host, stored)
        assert memory_keyring.secrets == {("sparecycles", f"{host.user}@127.0.0.1:{sshd.port}"): stored}

    link = SSHLink(host, app.home.known_hosts)
    if stored == PASSPHRASE:
        link.open()
        try:
            link.send(b"ping\n")  # the agent command is `cat`: an echo proves the channel works
            assert link.recv() == b"ping\n"
        finally:
            link.close()
    else:
        # No passphrase, or a wrong one: a message that says which, not paramiko's "Invalid key".
        expected = "not in the OS keyring" if stored is None else "wrong passphrase"
        with pytest.raises(ClientKeyError, match=expected):
            link.open()
    secrets = {s.encode() for s in (PASSPHRASE, stored) if s}
    leaks = [p for p in files_under(app.home.data_dir) if p.is_file() and any(s in p.read_bytes() for s in secrets)]
    assert leaks == []
    assert files_under(app.home.data_dir), "the home holds the queue at least: the search looked somewhere"
