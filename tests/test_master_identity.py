"""A master is its key: two hostile colleagues, each authorized with ``slave authorize``.

The lender's slave engine runs in this process behind its real Unix socket
(so the old behaviour can be switched back on with a monkeypatch); the masters
reach it the real way, through sshd, the forced command, the agent and the
bwrap-confined SFTP server. Tasks run in the sandbox. Each attack is first
shown working with the protection off, then failing with it on.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import paramiko
import pytest

from conftest import cli
from support.peer import ProtocolPeer
from support.sshd import Sshd
from support.waiting import wait_until
from trayapp.config import Config
from trayapp.home import Home
from trayapp.install.selfcommand import sparecycles_command
from trayapp.slave import identity
from trayapp.slave.builder import build_engine
from trayapp.slave.endpoint import Listener
from trayapp.slave.spool import Spool
from trayapp.wire.archive import pack

pytestmark = pytest.mark.pool

USER = os.environ.get("USER", "root")
ALICE_ID, BOB_ID = "a11ce00000000001", "b0b0000000000002"


def new_key(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def protection_off(monkeypatch) -> None:
    """The slave as it was: the id a hello claims owns the tasks, anyone may
    pause it, and every master hears about every other."""
    monkeypatch.setattr(identity.Principal, "owner", lambda self, claimed: claimed)
    monkeypatch.setattr(identity.Principal, "account", property(lambda self: None))
    monkeypatch.setattr(identity.Principal, "may_control", property(lambda self: True))
    monkeypatch.setattr(identity, "shown_to_master", lambda state, account: state)


# The forced command as it was: the SFTP server saw the whole incoming/ and results/.
OLD_FORCED = """\
import sys
import trayapp.slave.forced as forced
forced.transfer_folders = lambda spool, master: (spool.ensure().incoming, spool.results)
from sparecycles.launch import main
sys.exit(main())
"""


class Lender:
    """A lender's PC: sshd with alice's and bob's keys authorized by ``slave
    authorize``, and a slave engine listening on the home's socket."""

    def __init__(self, tmp_path: Path, old_sftp_for_alice: bool = False, unrestricted: bool = False):
        self.home_dir = tmp_path / "lender" / "sparecycles"
        self.home_dir.mkdir(parents=True)
        self.sshd = Sshd(tmp_path / "sshd")
        keys_file = self.sshd.folder / "authorized_keys"
        keys_file.write_text("")
        self.keys = {}
        for name in ("alice", "bob"):
            self.keys[name] = new_key(tmp_path / name, "id_ed25519")
            cli("slave", "authorize", f"{self.keys[name]}.pub", "--name", name, "--file", str(keys_file),
                env={"SPARECYCLES_HOME": str(self.home_dir)}, check=True)
        if unrestricted:  # the older setup: plain lines, and sshd saying which key logged in
            keys_file.write_text("".join(f"{self.keys[name].with_suffix('.pub').read_text().strip()}\n"
                                         for name in ("alice", "bob")))
            self.sshd.config.write_text(self.sshd.config.read_text() + "ExposeAuthInfo yes\n")
        self.agent_command = (f"env SPARECYCLES_HOME={shlex.quote(str(self.home_dir))} "
                              f"{shlex.join(sparecycles_command('agent'))}")
        if old_sftp_for_alice:
            wrapper = tmp_path / "old_forced.py"
            wrapper.write_text(OLD_FORCED)
            lines = keys_file.read_text().splitlines(keepends=True)
            keys_file.write_text("".join(line.replace(" -m sparecycles agent --forced alice",
                                                      f" {wrapper} agent --forced alice")
                                         for line in lines))
        self.sshd.start()
        self.home = Home.from_environment({"SPARECYCLES_HOME": str(self.home_dir)})
        self.engine = build_engine(Config(slots=2, sandbox="on"), self.home, ("5e5e5e5e5e5e5e5e", "lender@pc"),
                                   self.home.spool_dir)
        self.listener = Listener(self.home)
        self.thread = threading.Thread(target=self.engine.serve, args=(self.listener.socket,),
                                       kwargs={"poll_s": 0.05}, daemon=True)
        self.thread.start()
        self.clients: list[paramiko.SSHClient] = []

    def connect(self, who: str) -> tuple[ProtocolPeer, paramiko.SFTPClient]:
        """``who``'s master: the agent over SSH (whatever command it asks for, the key
        decides), and its SFTP session."""
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", port=self.sshd.port, username=USER, key_filename=str(self.keys[who]),
                       look_for_keys=False, allow_agent=False)
        self.clients.append(client)
        channel = client.get_transport().open_session()
        channel.exec_command(self.agent_command)  # a restricted key runs its forced command whatever this says
        return ProtocolPeer(sock=channel, timeout=60), client.open_sftp()

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.engine.request_stop()
        self.thread.join(20)
        self.engine.stop_all_tasks(identity_outcome(), "the test ended")
        self.engine.close()
        self.listener.close()
        self.sshd.stop()


def identity_outcome():
    from trayapp.status import AttemptOutcome

    return AttemptOutcome.HOST_LOST


def job_archive(tmp_path: Path, main: str) -> Path:
    folder = tmp_path / f"job-{abs(hash(main)) % 10**8}"
    folder.mkdir()
    (folder / "main.py").write_text(main)
    return pack(folder, ["main.py"], tmp_path / "archives").path


def start(peer: ProtocolPeer, archive: Path, token: str, job: str = "jobjobjob1") -> dict:
    fields = dict(token=token, job=job, idx=0, params={}, main="main.py", archive_sha=archive.stem,
                  time_limit_s=None, requires=[], memory_mb=None)
    peer.send("start", **fields)
    return fields


def run_task(peer: ProtocolPeer, sftp, archive: Path, token: str) -> dict:
    peer.upload(archive, put=sftp.put)
    peer.send("demand", queued=1)
    peer.expect("grant")
    start(peer, archive, token)
    return peer.expect("finished", token=token)


QUICK = """
import os
os.makedirs("results", exist_ok=True)
open("results/secret.txt", "w").write("bob's result")
"""
SLOW = "import time\ntime.sleep(300)\n"
T1, T2 = "b0b00000000000000000000000000001", "b0b00000000000000000000000000002"


@pytest.mark.parametrize("protected", [False, True], ids=["protection off", "protection on"])
def test_a_key_cannot_take_another_masters_tasks_results_or_slave(tmp_path, monkeypatch, protected):
    if not protected:
        protection_off(monkeypatch)
    lender = Lender(tmp_path, old_sftp_for_alice=not protected)
    try:
        bob, bob_sftp = lender.connect("bob")
        bob.hello(BOB_ID, "bob@lab-03")
        quick, slow = job_archive(tmp_path, QUICK), job_archive(tmp_path, SLOW)
        done = run_task(bob, bob_sftp, quick, T1)
        assert done["outcome"] == "succeeded"
        bob.upload(slow, put=bob_sftp.put)
        bob.send("demand", queued=1)
        bob.expect("grant")
        start(bob, slow, T2)
        bob.expect("started", token=T2)

        # Alice's key: what the slave tells her about the others (the old slave listed
        # their ids, names and use), then claiming Bob's id.
        alice, alice_sftp = lender.connect("alice")
        hello = alice.hello(ALICE_ID, "alice@lab-01")
        told = repr(hello)
        alice.send("bye")
        alice, alice_sftp = lender.connect("alice")
        alice.hello(BOB_ID, "alice@lab-01")
        alice.send("sync")
        handed_over = {t["token"] for t in alice.expect("tasks")["tasks"]}
        # Bob's results file, by the path the slave told Bob.
        try:
            stolen = alice_sftp.open(done["results_path"]).read()
        except IOError:
            stolen = None
        # Alice replays Bob's token: the old slave answered with Bob's results.
        start(alice, quick, T1)
        if protected:
            assert alice.closed_by_engine(), "a start with another master's token closes the connection"
            alice, alice_sftp = lender.connect("alice")
            alice.hello(BOB_ID, "alice@lab-01")
            replayed = None
        else:
            replayed = alice.expect("finished", token=T1)
        alice.send("cancel", token=T2)
        alice.expect("finished", token=T2)
        alice.send("ack", token=T1)
        alice.send("control", action="pause", until=None)
        alice.expect("state", "error")
        alice.send("sync")  # answered after the ack and the control: they were handled
        alice.expect("tasks")

        bob.send("sync")
        left = {t["token"]: t["state"] for t in bob.expect("tasks")["tasks"]}
        paused = lender.engine.availability.paused_until is not None
        if not protected:  # the attacks, working
            assert hello["master_names"] == {BOB_ID: "bob", ALICE_ID: "alice"} and BOB_ID in hello["usage"]
            assert handed_over == {T1, T2}
            assert stolen is not None and replayed is not None and replayed.get("results_sha") == done["results_sha"]
            assert left == {}, "Bob's finished task acked by Alice, his running task cancelled by her"
            assert paused
        else:
            assert not {"master_names", "usage", "running_by_master"} & hello.keys()
            assert "bob" not in told and BOB_ID not in told
            assert hello["other_masters"] == 1 and hello["running_mine"] == 0
            assert handed_over == set()
            assert stolen is None
            assert left == {T1: "finished", T2: "running"}
            assert not paused, "only the lender pauses the slave"
    finally:
        lender.close()


CACHE_PLANTER = """
import os
cache = os.environ["CYTHON_CACHE_DIR"]
os.makedirs(cache, exist_ok=True)
open(os.path.join(cache, "brian_planted.py"), "w").write("print('alice runs in your task')")
"""
CACHE_LOOKER = """
import os
os.makedirs("results", exist_ok=True)
found = os.path.exists(os.path.join(os.environ["CYTHON_CACHE_DIR"], "brian_planted.py"))
open("results/found.txt", "w").write(str(found))
"""


@pytest.mark.parametrize("protected", [False, True], ids=["protection off", "protection on"])
def test_a_masters_compiler_cache_is_its_own(tmp_path, monkeypatch, protected):
    if not protected:
        protection_off(monkeypatch)
    lender = Lender(tmp_path)
    try:
        alice, alice_sftp = lender.connect("alice")
        alice.hello(ALICE_ID, "alice@lab-01")
        assert run_task(alice, alice_sftp, job_archive(tmp_path, CACHE_PLANTER), "a" * 32)["outcome"] == "succeeded"
        bob, bob_sftp = lender.connect("bob")
        bob.hello(BOB_ID, "bob@lab-03")
        looker = job_archive(tmp_path, CACHE_LOOKER)
        assert run_task(bob, bob_sftp, looker, "b" * 32)["outcome"] == "succeeded"
        found = lender.engine.spool.results / ("unbound" if not protected else "key-bob") / f"{'b' * 32}.tar"
        import tarfile

        with tarfile.open(found) as tar:
            text = tar.extractfile("results/found.txt").read().decode()
        assert text == ("True" if not protected else "False")
        # Bob's own second task shares his cache: compiled code is still reused.
        if protected:
            bob_cache = lender.engine._cache_of(lender.engine.tasks["b" * 32], 0)
            assert bob_cache.parent.parent.name == "key-bob" and bob_cache.parent.name == "0"
    finally:
        lender.close()


@pytest.mark.parametrize("protected", [False, True], ids=["protection off", "protection on"])
def test_a_key_cannot_write_into_another_masters_upload(tmp_path, monkeypatch, protected):
    lender = Lender(tmp_path, old_sftp_for_alice=not protected)
    try:
        bob, bob_sftp = lender.connect("bob")
        bob.hello(BOB_ID, "bob@lab-03")
        archive = job_archive(tmp_path, QUICK)
        bob.send("need_archive", sha=archive.stem)
        upload = bob.expect("archive")["upload_path"]
        bob_sftp.put(str(archive), upload)
        alice, alice_sftp = lender.connect("alice")
        try:
            handle = alice_sftp.open(upload, "r+")
        except IOError:
            handle = None
        assert (handle is not None) is (not protected)
        if handle is not None:
            handle.write(b"x")  # the write the old slave let through (see test_spool_uploads for after the check)
            handle.close()
        bob.send("archive_uploaded", sha=archive.stem, path=upload)
        verdict = bob.expect("archive_ok", "archive_bad")
        assert verdict["type"] == ("archive_ok" if protected else "archive_bad")
    finally:
        lender.close()


@pytest.mark.parametrize("protected", [False, True], ids=["protection off", "protection on"])
def test_unrestricted_keys_are_told_apart_by_the_fingerprint_sshd_exposes(tmp_path, monkeypatch,
                                                                        protected):
    if not protected:
        protection_off(monkeypatch)
    lender = Lender(tmp_path, unrestricted=True)
    try:
        bob, bob_sftp = lender.connect("bob")
        bob.hello(BOB_ID, "bob@lab-03")
        assert run_task(bob, bob_sftp, job_archive(tmp_path, QUICK), T1)["outcome"] == "succeeded"
        alice, _ = lender.connect("alice")
        alice.hello(BOB_ID, "alice@lab-01")
        alice.send("sync")
        handed_over = {t["token"] for t in alice.expect("tasks")["tasks"]}
        assert handed_over == (set() if protected else {T1})
        if protected:
            owners = {task.master.split("#")[0] for task in lender.engine.tasks.values()}
            assert len(owners) == 1 and owners.pop().startswith("fingerprint:SHA256:")
    finally:
        lender.close()


@pytest.mark.parametrize("protected", [False, True], ids=["protection off", "protection on"])
def test_a_key_cannot_learn_which_archives_another_master_sent(tmp_path, monkeypatch, protected):
    """Alice guesses the files of Bob's job, hashes her guess and asks the slave:
    the old slave said whether Bob had sent them (and ran her task on them)."""
    if not protected:  # the slave as it was: present for anyone once anyone sent it
        monkeypatch.setattr(Spool, "holds", lambda self, sha, folder: self.has_archive(sha))
    lender = Lender(tmp_path)
    try:
        bob, bob_sftp = lender.connect("bob")
        bob.hello(BOB_ID, "bob@lab-03")
        secret = job_archive(tmp_path, QUICK)
        assert run_task(bob, bob_sftp, secret, T1)["outcome"] == "succeeded"

        alice, alice_sftp = lender.connect("alice")
        alice.hello(ALICE_ID, "alice@lab-01")
        alice.send("need_archive", sha=secret.stem)  # her guess: the hash of the files she thinks Bob sent
        guessed = alice.expect("archive")
        alice.send("need_archive", sha="0" * 64)  # a hash nobody sent
        nobody = alice.expect("archive")
        alice.send("demand", queued=1)
        alice.expect("grant")
        start(alice, secret, "a" * 32)  # a task on Bob's archive, without sending it
        answer = alice.expect("started", "declined")
        if not protected:
            assert guessed["present"] and not nobody["present"], "the guess confirmed"
            assert answer["type"] == "started"
            alice.expect("finished", token="a" * 32)
            return
        assert not guessed["present"] and guessed.keys() == nobody.keys(), "told nothing a guess can use"
        assert answer["type"] == "declined" and "send it first" in answer["reason"], answer
        # Sending the bytes herself (she has them) makes them hers; the slave keeps one copy,
        # and Bob is not asked to send them again.
        assert alice.upload(secret, put=alice_sftp.put)["type"] == "archive_ok"
        assert alice.upload(secret, put=alice_sftp.put)["present"]
        assert bob.upload(secret, put=bob_sftp.put)["present"]
        assert [p.name for p in lender.engine.spool.archives.iterdir()] == [secret.name]
        start(alice, secret, "a" * 32)
        assert alice.expect("finished", token="a" * 32)["outcome"] == "succeeded"
    finally:
        lender.close()
