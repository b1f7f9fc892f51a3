"""An OpenSSH server on loopback: the system's ``/usr/sbin/sshd`` with its own
host key, client key, authorized_keys and a free port on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from support.net import free_port, wait_for_port

SSHD = "/usr/sbin/sshd"


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

    @property
    def user(self) -> str:
        """Whom the client logs in as: whoever runs the tests (root in CI)."""
        return "root" if os.geteuid() == 0 else (os.environ.get("USER") or "root")

    def host_key_fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.host_key.with_suffix(".pub"))],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]
