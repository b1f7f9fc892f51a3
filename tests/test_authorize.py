"""A master's key written by ``slave authorize`` reaches the agent and the spool, nothing else.

Every attack is tried for real against the system's sshd on 127.0.0.1 with the
line the command wrote: a shell, commands, a pty, port forwarding, and SFTP
outside the spool. A job then runs end to end through the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import stat
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from conftest import cli, make_job, run_master_to_the_end
from support.daemons import SlaveDaemon
from support.sshd import Sshd
from trayapp.slave.authorize import forced_command
from trayapp.slave.forced import is_agent_command, is_sftp_request

pytestmark = pytest.mark.pool

USER = os.environ.get("USER", "root")


def new_key(folder: Path, name: str = "master_ed25519") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@master", "-f", str(key)], check=True)
    return key


def authorize(*args: str, slave_home: Path, **env) -> subprocess.CompletedProcess:
    return cli("slave", "authorize", *args, env={"SPARECYCLES_HOME": str(slave_home), **env})


@pytest.fixture
def slave_home(tmp_path) -> Path:
    home = tmp_path / "lender" / "sparecycles"
    home.mkdir(parents=True)
    (home / "config.toml").write_text("# the lender's settings: no master may read this\n")
    return home


@pytest.fixture
def key(tmp_path) -> Path:
    return new_key(tmp_path / "master-keys")


@pytest.fixture
def restricted_sshd(sshd, key, slave_home) -> Sshd:
    """The test sshd, with ``key`` authorized (restricted) for master alice beside its usual key."""
    authorize(f"{key}.pub", "--name", "alice", "--file", str(sshd.folder / "authorized_keys"), slave_home=slave_home,
              ).check_returncode()
    return sshd


SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")


def ssh(server: Sshd, key: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """OpenSSH's own client, as a person holding the master's key would use it."""
    return subprocess.run(["ssh", "-i", str(key), "-p", str(server.port), *SSH_OPTIONS, f"{USER}@127.0.0.1", *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# ----- the authorized_keys file ------------------------------------------------------------

def test_the_line_is_restricted_forced_and_tagged_and_other_lines_stay(sshd, key, slave_home):
    keys_file = sshd.folder / "authorized_keys"
    keys_file.write_text(keys_file.read_text() + "# a comment of the lender's\nno-final-newline")
    before = keys_file.read_bytes()
    done = authorize(f"{key}.pub", "--name", "alice", "--file", str(keys_file), slave_home=slave_home)
    assert done.returncode == 0, done.stderr
    lines = keys_file.read_bytes().splitlines(keepends=True)
    assert b"".join(lines[:-1]) == before + b"\n", "other lines must stay byte for byte"
    ours = lines[-1].decode()
    blob = Path(f"{key}.pub").read_text().split()[1]
    assert ours.startswith('restrict,command="env SPARECYCLES_HOME=') and f" {blob} sparecycles:alice\n" in ours
    assert f"{slave_home} " in ours and ' agent --forced alice" ssh-ed25519 ' in ours
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert "runs only" in done.stdout and "hosts add" in done.stdout


def test_default_file_is_created_in_a_private_ssh_folder(tmp_path, key, slave_home):
    lender = tmp_path / "lender-home"
    lender.mkdir()
    done = authorize(f"{key}.pub", "--name", "alice", slave_home=slave_home, HOME=str(lender))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((lender / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE((lender / ".ssh" / "authorized_keys").stat().st_mode) == 0o600
    assert [p.name for p in (lender / ".ssh").iterdir()] == ["authorized_keys"], "no temporary file left behind"


def test_list_duplicate_replace_and_revoke(tmp_path, key, slave_home):
    keys_file = tmp_path / "ak"
    other = new_key(tmp_path / "bob-keys", "bob")
    args = ("--file", str(keys_file))
    assert authorize(f"{key}.pub", "--name", "alice", *args, slave_home=slave_home).returncode == 0
    assert authorize(f"{other}.pub", "--name", "bob", *args, slave_home=slave_home).returncode == 0

    listed = json.loads(authorize("--list", "--json", *args, slave_home=slave_home).stdout)
    assert [(m["name"], m["line"]) for m in listed] == [("alice", 1), ("bob", 2)]
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True).stdout.split()[1]
    assert listed[0]["fingerprint"] == fingerprint
    assert "alice" in authorize("--list", *args, slave_home=slave_home).stdout

    again = authorize(f"{other}.pub", "--name", "alice", *args, slave_home=slave_home)
    assert again.returncode == 3 and "already authorized" in again.stderr and "--replace" in again.stderr
    same_key = authorize(f"{key}.pub", "--name", "carol", *args, slave_home=slave_home)
    assert same_key.returncode == 3 and "already authorized as master 'alice'" in same_key.stderr
    third = new_key(tmp_path / "alice-new", "alice2")
    assert authorize(f"{third}.pub", "--name", "alice", "--replace", *args, slave_home=slave_home).returncode == 0
    listed = json.loads(authorize("--list", "--json", *args, slave_home=slave_home).stdout)
    assert sorted(m["name"] for m in listed) == ["alice", "bob"] and len(keys_file.read_text().splitlines()) == 2
    assert Path(f"{third}.pub").read_text().split()[1] in keys_file.read_text()

    assert authorize("--revoke", "bob", *args, slave_home=slave_home).returncode == 0
    listed = json.loads(authorize("--list", "--json", *args, slave_home=slave_home).stdout)
    assert [m["name"] for m in listed] == ["alice"]
    missing = authorize("--revoke", "bob", *args, slave_home=slave_home)
    assert missing.returncode == 3 and "no master named 'bob'" in missing.stderr
    assert "authorized: alice" in missing.stderr


def test_a_key_that_already_has_a_plain_line_is_refused(sshd, slave_home):
    # The sshd fixture's own key has an unrestricted line: sshd would use that one.
    done = authorize(f"{sshd.client_key}.pub", "--name", "alice", "--file", str(sshd.folder / "authorized_keys"),
                     slave_home=slave_home)
    assert done.returncode == 3 and "full shell" in done.stderr and "delete line 1" in done.stderr


@pytest.mark.parametrize("content, expected", [
    (None, "no key file"),
    ("private", "is a PRIVATE key"),
    ("hello, this is not a key\n", "not an OpenSSH public key"),
    ("", "is empty"),
    ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x\n", "damaged"),  # an RSA blob labelled ed25519
    ("ssh-ed25519 !!!notbase64!!! x\n", "damaged"),
    ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n", "ssh-keygen -i"),
    ("two", "holds 2 keys"),
])
def test_bad_key_files_are_refused_with_the_fix(tmp_path, key, slave_home, content, expected):
    given = tmp_path / "given.pub"
    if content == "private":
        given = key
    elif content == "two":
        given.write_text(Path(f"{key}.pub").read_text() * 2)
    elif content is not None:
        given.write_text(content)
    keys_file = tmp_path / "ak"
    done = authorize(str(given), "--name", "alice", "--file", str(keys_file), slave_home=slave_home)
    assert done.returncode == 3, done
    assert expected in done.stderr and "fix:" in done.stderr, done.stderr
    assert not keys_file.exists(), "nothing may be written for a bad key"


@pytest.mark.parametrize("args, expected", [
    (("KEY",), "add --name"),
    (("KEY", "--name", "two words"), "cannot name a master"),
    (("--list", "--revoke", "x"), "exactly one of"),
])
def test_bad_command_lines_are_refused(tmp_path, key, slave_home, args, expected):
    args = tuple(f"{key}.pub" if a == "KEY" else a for a in args)
    done = authorize(*args, "--file", str(tmp_path / "ak"), slave_home=slave_home)
    assert done.returncode == 3 and expected in done.stderr, done.stderr


# ----- what the key can do over a real sshd --------------------------------------------------

def test_the_key_gives_no_shell_no_command_and_no_pty(restricted_sshd, key, tmp_path, slave_home):
    planted = tmp_path / "planted"
    for command in (["id"], ["bash", "-c", f"'id; touch {planted}'"], [f"touch {planted}"],
                    ["sparecycles agent; touch " + str(planted)], []):
        done = ssh(restricted_sshd, key, "-T", *command)
        assert done.returncode != 0 and "uid=" not in done.stdout, (command, done)
        assert "refused" in done.stderr and "only run the SpareCycles agent" in done.stderr, (command, done)
    with_pty = ssh(restricted_sshd, key, "-tt", "id")
    assert with_pty.returncode != 0 and "uid=" not in with_pty.stdout, with_pty
    assert not planted.exists()
    log = (slave_home / "logs" / "ssh-keys.log").read_text()
    assert "master alice: asked for the command 'id'" in log and "master alice: asked for a shell" in log
    # The usual (unrestricted) key of the fixture still gets its shell: the test can fail.
    assert "uid=" in ssh(restricted_sshd, restricted_sshd.client_key, "id").stdout


def test_the_key_forwards_no_ports(restricted_sshd, key):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    reached = []

    def serve():
        listener.settimeout(15)
        try:
            conn, _ = listener.accept()
            reached.append(True)
            conn.sendall(b"secret banner of a lender's service\n")
            conn.close()
        except OSError:
            pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        stdio = ssh(restricted_sshd, key, "-W", f"127.0.0.1:{port}")
        assert stdio.returncode != 0 and "secret banner" not in stdio.stdout, stdio
        remote = ssh(restricted_sshd, key, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22")
        assert remote.returncode != 0, remote
        # Through the fixture's unrestricted key the same forward works: the check is real.
        works = ssh(restricted_sshd, restricted_sshd.client_key, "-W", f"127.0.0.1:{port}")
        assert "secret banner" in works.stdout and reached, works
        reached.clear()
    finally:
        listener.close()
        server.join(5)


def test_the_key_runs_the_agent_of_the_lenders_home(restricted_sshd, key, slave_home):
    # No daemon runs: the agent itself answers that, for the home the line names,
    # whatever agent command (and home) the master asks for.
    done = ssh(restricted_sshd, key, "env SPARECYCLES_HOME=/elsewhere python3 -m sparecycles agent")
    message = json.loads(done.stdout)
    assert message["type"] == "error" and message["offline"] and str(slave_home) in message["reason"], done


def test_odd_paths_survive_the_quoting_of_sshd_and_the_shell(sshd, key, tmp_path):
    odd_home = tmp_path / 'it\'s a "home" $HOME \\ `x`'
    odd_home.mkdir()
    authorize(f"{key}.pub", "--name", "alice", "--file", str(sshd.folder / "authorized_keys"),
              slave_home=odd_home).check_returncode()
    done = ssh(sshd, key, "sparecycles agent")
    assert str(odd_home) in json.loads(done.stdout)["reason"], done
    listed = json.loads(authorize("--list", "--json", "--file", str(sshd.folder / "authorized_keys"),
                                  slave_home=odd_home).stdout)
    assert shlex.split(listed[0]["command"])[1] == f"SPARECYCLES_HOME={odd_home}"


def test_a_bundle_is_started_by_its_own_executable():
    # Frozen by PyInstaller, sys.executable is the app itself: the line runs it with the agent verb.
    command = forced_command(["/opt/Spare Cycles/sparecycles"], "alice", {})
    assert shlex.split(command) == ["/opt/Spare Cycles/sparecycles", "agent", "--forced", "alice"]


@pytest.mark.parametrize("subsystem", ["internal-sftp", "/usr/lib/openssh/sftp-server -l INFO"])
def test_sftp_through_the_key_reaches_only_the_spool(tmp_path, key, slave_home, subsystem):
    # sshd tells the forced command the configured Subsystem line: both usual ones must be served.
    server = Sshd(tmp_path / "sshd")
    server.config.write_text(server.config.read_text().replace("internal-sftp", subsystem))
    authorize(f"{key}.pub", "--name", "alice", "--file", str(server.folder / "authorized_keys"),
              slave_home=slave_home).check_returncode()
    secret = tmp_path / "lender" / "secret.txt"
    secret.write_text("the lender's secret")
    secret.chmod(0o600)
    spool = slave_home / "spool"
    incoming, results = spool / "incoming" / "key-alice", spool / "results" / "key-alice"
    results.mkdir(parents=True)
    (results / "ready.tar").write_bytes(b"results of a task")
    server.start()
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port=server.port, username=USER, key_filename=str(key), look_for_keys=False,
                       allow_agent=False)
        sftp = client.open_sftp()
        # What the master needs: uploads into its incoming/, results read from its results/.
        with sftp.open(str(incoming / ".upload-abc"), "wb") as fh:
            fh.write(b"archive bytes")
        assert (incoming / ".upload-abc").read_bytes() == b"archive bytes"
        assert stat.S_IMODE((incoming / ".upload-abc").stat().st_mode) == 0o600
        assert sftp.open(str(results / "ready.tar")).read() == b"results of a task"

        for path in (secret, slave_home / "config.toml", Path("/etc/shadow"), Path("/etc/hostname"),
                     Path.home() / ".bashrc", Path(f"{key}"), server.host_key):
            with pytest.raises(IOError):
                sftp.open(str(path)).read()
        passwd = sftp.open("/etc/passwd").read().decode()
        assert len(passwd.splitlines()) == 1 and passwd.split(":")[5] == str(spool), passwd  # only its own user
        for folder in (Path.home(), tmp_path, "/tmp", "/home", "/root", "/run", "/var"):
            if Path(folder) not in Path(spool).parents:
                with pytest.raises(IOError):
                    sftp.listdir(str(folder))
        assert sftp.listdir(str(tmp_path)) == ["lender"] and sftp.listdir(str(slave_home)) == ["spool"]
        assert sorted(sftp.listdir(str(spool))) == ["incoming", "results"], "archives of other masters stay hidden"
        assert sftp.listdir(str(spool / "results")) == ["key-alice"], "other masters' results stay hidden"
        for path in (tmp_path / "planted", results / "forged.tar", slave_home / "config.toml",
                     spool / "planted", spool / "incoming" / "planted", Path("/usr/planted")):
            with pytest.raises(IOError):
                sftp.open(str(path), "wb").write(b"x")
            assert not path.exists() or path == slave_home / "config.toml"
        assert "no master may read this" in (slave_home / "config.toml").read_text()
        with pytest.raises(IOError):
            sftp.symlink(str(secret), str(incoming / "link"))
        with pytest.raises(IOError):
            sftp.rename(str(incoming / ".upload-abc"), str(results / "x.tar"))
    finally:
        client.close()
        server.stop()


def test_without_bubblewrap_sftp_is_refused_and_logged(tmp_path, slave_home):
    empty_path = tmp_path / "no-bwrap-here"
    empty_path.mkdir()
    done = cli("agent", "--forced", "alice",
               env={"SPARECYCLES_HOME": str(slave_home), "SSH_ORIGINAL_COMMAND": "internal-sftp",
                    "PATH": str(empty_path)})
    assert done.returncode == 1 and done.stdout == "", done
    assert "needs bubblewrap" in done.stderr and "install the package 'bubblewrap'" in done.stderr
    assert "master alice: file transfer needs bubblewrap" in (slave_home / "logs" / "ssh-keys.log").read_text()


def test_what_counts_as_the_agent_and_as_sftp():
    for agent in ("sparecycles agent", "/opt/SpareCycles/SpareCycles agent", "env A=b python -m sparecycles agent",
                  "sparecycles.exe agent"):
        assert is_agent_command(agent.split()), agent
    for other in ("agent", "bash -c agent", "sparecycles agent --forced x", "sparecycles status", ""):
        assert not is_agent_command(other.split()), other
    for sftp in ("internal-sftp", "/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server -f AUTH"):
        assert is_sftp_request(sftp.split()), sftp
    assert not is_sftp_request("scp -t /tmp".split()) and not is_sftp_request([])


# ----- a master's job through the restricted key ------------------------------------------

# Results over the inline limit: they must come back by SFTP from the spool.
BIG_RESULT_TASK = """
import hashlib, json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
data = hashlib.sha256(str(p["i"]).encode()).digest() * (400 * 1024 // 32)
open("results/blob.bin", "wb").write(data)
print("ran", p["i"], os.getcwd())  # its folder in the lender's spool (the sandbox binds it at its own path)
"""


def test_a_master_runs_a_job_through_the_restricted_key(home, restricted_sshd, key, slave_home, tmp_path):
    slave = SlaveDaemon(slave_home, slots=2).start()
    try:
        cli("hosts", "add", "lender", "--host", "127.0.0.1", "--port", str(restricted_sshd.port), "--user", USER,
            "--key", str(key), check=True)  # the default agent command: the key decides what runs
        cli("hosts", "trust", "lender", "--fingerprint", restricted_sshd.host_key_fingerprint(), check=True)
        folder, params = make_job(tmp_path / "job", BIG_RESULT_TASK, params=[{"i": i} for i in range(4)],
                                  extra_files={"data/input.bin": "x" * 300_000})
        job = json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json",
                             check=True).stdout)
        status, out = run_master_to_the_end(job["job"])
        assert status["status"] == "done", (status, out, slave.log())
        for i in range(4):
            expected = hashlib.sha256(str(i).encode()).digest() * (400 * 1024 // 32)
            assert (Path(job["results"]) / str(i) / "blob.bin").read_bytes() == expected
            ran = (Path(job["results"]) / str(i) / "stdout.txt").read_text().split()
            # In the slave's spool: its own task folder, or (forked warm) its warm parent's box.
            spool = slave_home / "spool"
            assert ran[:2] == ["ran", str(i)] and (Path(ran[2]).is_relative_to(spool / "tasks")
                                                   or Path(ran[2]).is_relative_to(spool / "warm")), ran
        assert {t["host"] for t in status["tasks"]} == {"lender"}
        spool = slave_home / "spool"
        assert [p.name for p in (spool / "archives").iterdir()] == [f"{job['archive']}.tar"]
        assert [p.name for p in (spool / "incoming").iterdir()] == ["key-alice"]
        assert list((spool / "incoming" / "key-alice").iterdir()) == []
        assert list((spool / "results" / "key-alice").iterdir()) == []
    finally:
        slave.stop()


SLEEPY_TASK = """
import os, time
time.sleep(0.3)
os.makedirs("results", exist_ok=True)
open("results/done.txt", "w").write("done")
"""


def test_a_slave_without_bubblewrap_refuses_file_transfer_and_its_master_says_why(pool, key, slave_home, tmp_path):
    pool.add_slave("healthy")
    keys_file = pool.sshd.folder / "authorized_keys"
    authorize(f"{key}.pub", "--name", "alice", "--file", str(keys_file), slave_home=slave_home).check_returncode()
    # The lender's PC as if bubblewrap were not installed: the forced command finds no bwrap.
    keys_file.write_text(keys_file.read_text().replace('command="env ', 'command="env PATH=/nonexistent '))
    slave = SlaveDaemon(slave_home, slots=2).start()
    try:
        cli("hosts", "add", "nobwrap", "--host", "127.0.0.1", "--port", str(pool.sshd.port), "--user", USER,
            "--key", str(key), check=True)
        cli("hosts", "trust", "nobwrap", "--fingerprint", pool.sshd.host_key_fingerprint(), check=True)
        folder, params = make_job(tmp_path / "job", SLEEPY_TASK, params=[{}] * 6)
        job = json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json",
                             check=True).stdout)
        status, out = run_master_to_the_end(job["job"])
        assert status["status"] == "done" and {t["host"] for t in status["tasks"]} == {"healthy"}, (status, out)
        hosts = {h["name"]: h for h in json.loads(cli("hosts", "list", "--json", check=True).stdout)}
        assert hosts["nobwrap"]["state"] == "unavailable", hosts["nobwrap"]
        assert "refused file transfer" in hosts["nobwrap"]["reason"], hosts["nobwrap"]
        assert "needs bubblewrap" in hosts["nobwrap"]["reason"], hosts["nobwrap"]  # the master's hint
        assert "file transfer needs bubblewrap" in (slave_home / "logs" / "ssh-keys.log").read_text()
    finally:
        slave.stop()
