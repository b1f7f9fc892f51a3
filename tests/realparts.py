"""Real components for tests: an OpenSSH server on loopback and slave daemons.

Nothing here is mocked: ``Sshd`` runs the system's ``/usr/sbin/sshd`` with its
own host key, authorized_keys and a free port on 127.0.0.1; ``SlaveDaemon``
runs ``sparecycles slave`` in its own SPARECYCLES_HOME. Every process started
here is ended here, by its own pid.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Sshd:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (folder / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        self.config = folder / "sshd_config"
        self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {folder}/sshd.pid
AuthorizedKeysFile {folder}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
MaxStartups 100
MaxSessions 100
LogLevel ERROR
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Sshd":
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.folder / "sshd.log", "ab"))
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        """Stop the server and every connection it serves, as if the PC went away."""
        if self.proc is None:
            return
        try:
            victims = [psutil.Process(self.proc.pid)] + psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            victims = []
        for proc in victims:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)
        self.proc.wait(10)
        self.proc = None

    def host_key_fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.host_key.with_suffix(".pub"))],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]


class SlaveDaemon:
    """``sparecycles slave`` in its own home, as a real child process."""

    def __init__(self, home: Path, slots: int = 2, env: dict | None = None):
        self.home = home
        self.slots = slots
        self.env = {**os.environ, "SPARECYCLES_HOME": str(home), **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SlaveDaemon":
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "sparecycles", "slave", "--slots", str(self.slots)],
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.home / "slave-daemon.log", "ab"))
        from trayapp.slave.endpoint import socket_path
        from trayapp.home import Home

        sock = socket_path(Home.from_environment({"SPARECYCLES_HOME": str(self.home)}))
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"slave daemon did not start: {self.log()}")
            time.sleep(0.05)
        return self

    @property
    def agent_command(self) -> str:
        return (f"env SPARECYCLES_HOME={shlex.quote(str(self.home))} "
                f"{shlex.quote(sys.executable)} -m sparecycles agent")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log(self) -> str:
        try:
            return (self.home / "slave-daemon.log").read_text()
        except OSError:
            return ""


class ProtocolPeer:
    """A master reduced to one protocol session with a slave engine: a socket
    pair handed to an in-process engine (``engine``), or the Unix socket of a
    running slave daemon (``path``). Messages it is not asked for stay unread
    until they are; it remembers the last ``state`` the engine announced."""

    MASTER_ID = "0123456789abcdef"

    def __init__(self, engine=None, *, path: Path | None = None, timeout: float = 10.0):
        from trayapp.wire.protocol import LineBuffer

        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(path))
        else:
            self.sock, theirs = socket.socketpair()
            self.sock.settimeout(timeout)
            engine.add_connection(theirs)
        self._inbox = LineBuffer()
        self._unread: list[dict] = []
        self.state: str | None = None

    def send(self, kind: str, **fields) -> None:
        from trayapp.wire.protocol import encode

        self.sock.sendall(encode(kind, **fields))

    def expect(self, *kinds: str, **match) -> dict:
        """The first message of one of ``kinds`` whose fields equal ``match``."""
        from trayapp.wire.protocol import decode

        while True:
            for i, message in enumerate(self._unread):
                if message["type"] in kinds and all(message.get(k) == v for k, v in match.items()):
                    return self._unread.pop(i)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"the engine closed the session while we waited for {kinds}; "
                                     f"unread: {self._unread}")
            for line in self._inbox.feed(data):
                message = decode(line)
                if message["type"] in ("state", "hello"):
                    self.state = message["state"]
                self._unread.append(message)

    def hello(self, master: str = MASTER_ID, name: str = "test master") -> dict:
        self.send("hello", master=master, name=name)
        return self.expect("hello")

    def wait_state(self, state: str) -> None:
        """Until the engine says it is in ``state``; the state messages read on the way are dropped."""
        while self.state != state:
            self.expect("state")
        self._unread = [m for m in self._unread if m["type"] != "state"]

    def upload(self, archive: Path, sha: str | None = None) -> dict:
        """Send an archive the way a master does (unless the engine has it); the
        engine's verdict (``archive_ok``/``archive_bad``, or its ``archive`` reply)."""
        import shutil

        from trayapp.wire.archive import sha256_of

        sha = sha or sha256_of(archive)
        self.send("need_archive", sha=sha)
        reply = self.expect("archive")
        if reply["present"]:
            return reply
        shutil.copyfile(archive, reply["upload_path"])
        self.send("archive_uploaded", sha=sha, path=reply["upload_path"])
        verdict = self.expect("archive_ok", "archive_bad")
        assert verdict["sha"] == sha, verdict
        return verdict

    def closed_by_engine(self) -> bool:
        """True once the engine has closed this session (recv gives b"")."""
        try:
            while self.sock.recv(65536):
                pass
        except socket.timeout:
            return False
        except ConnectionResetError:
            pass
        return True
