"""The forced command of a master's key: the agent, a confined SFTP server, or nothing.

sshd runs ``sparecycles agent --forced MASTER`` for every request made with a key
that ``slave authorize`` wrote (:mod:`trayapp.slave.authorize`), and puts what the
master asked for in ``SSH_ORIGINAL_COMMAND``: an exec request's command line as
sent; for the ``sftp`` subsystem, the server's own ``Subsystem`` command
(``internal-sftp``, or ``/usr/lib/openssh/sftp-server`` with its options: seen
with OpenSSH 9.2); nothing for a shell. What runs:

- an agent command (``... sparecycles agent``, whatever path or ``env`` comes
  before it): this slave's agent, for this home. The master picks no program;
  a host's ``--agent-command`` keeps working as long as it ends that way;
- SFTP: OpenSSH's ``sftp-server`` inside bubblewrap, which sees this master's
  own ``incoming/<master>/`` (read-write, for archive uploads) and
  ``results/<master>/`` (read-only, for results) at their own absolute paths,
  and no other master's, so the paths the slave hands the master
  hold inside too; besides them only ``/usr`` read-only (the server and its
  libraries), bwrap's minimal ``/dev`` and a one-line ``/etc/passwd`` (sftp-server
  looks its user up), on a read-only root. No
  home, ``/etc``, ``/tmp``, network, symlinks or hard links. Without bubblewrap,
  SFTP is refused, never served unconfined;
- anything else: refused with a message on stderr and exit status 1.

Every refusal is also a line in ``<logs>/ssh-keys.log``, so the lender can see
which master tried what.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from trayapp.home import Home
from trayapp.slave.agent import run_agent
from trayapp.slave.identity import KEY, Principal
from trayapp.slave.spool import Spool

SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server",
                "/usr/lib/ssh/sftp-server", "/usr/lib/sftp-server")
# Top-level folders that hold programs and libraries next to /usr (symlinks into it on a merged-/usr system).
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The master only writes uploads and reads results; a link could point a later reader outside the spool.
_DENIED_REQUESTS = "symlink,hardlink"
EXIT_REFUSED = 1


def refusal_log(home: Home) -> Path:
    return home.ssh_keys_log


def is_sftp_request(words: list[str]) -> bool:
    return bool(words) and (words[0] == "internal-sftp" or Path(words[0]).name == "sftp-server")


def is_agent_command(words: list[str]) -> bool:
    """``sparecycles agent``, ``/opt/SpareCycles/sparecycles agent``, ``python -m sparecycles agent``, ..."""
    return len(words) >= 2 and words[-1] == "agent" and Path(words[-2]).name.lower().startswith("sparecycles")


def run_forced(home: Home, master: str, original_command: str | None) -> int:
    """Serve one request made with ``master``'s restricted key."""
    try:
        words = shlex.split(original_command or "")
    except ValueError:
        words = []
    if is_agent_command(words):
        return run_agent(home, forced=master)
    if is_sftp_request(words):
        return serve_confined_sftp(home, master)
    asked = f"the command {original_command!r}" if original_command else "a shell"
    return refuse(home, master, f"asked for {asked}; this key may only run the SpareCycles agent and its file "
                                "transfers (the lender set it up with 'sparecycles slave authorize')")


def refuse(home: Home, master: str, why: str) -> int:
    print(f"sparecycles: refused: {why}", file=sys.stderr, flush=True)
    try:
        home.log_dir.mkdir(parents=True, exist_ok=True)
        with refusal_log(home).open("a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} master {master}: {why}\n")
    except OSError:
        pass  # the refusal stands even where it cannot be written down
    return EXIT_REFUSED


def serve_confined_sftp(home: Home, master: str) -> int:
    bwrap = shutil.which("bwrap")
    server = next((path for path in SFTP_SERVERS if os.access(path, os.X_OK)), None)
    if bwrap is None:
        return refuse(home, master, "file transfer needs bubblewrap (bwrap) to keep it inside the spool, and it "
                                    "is not installed; install the package 'bubblewrap'")
    if server is None:
        return refuse(home, master, f"no OpenSSH sftp-server found (looked in {', '.join(SFTP_SERVERS)}); "
                                    "install OpenSSH's SFTP server (Debian: openssh-sftp-server)")
    try:
        spool = Spool(home.spool_dir).ensure()
        folders = transfer_folders(spool, master)
    except OSError as exc:
        return refuse(home, master, f"cannot prepare the spool {home.spool_dir}: {exc.strerror or exc}")
    passwd_in, passwd_out = os.pipe()
    with os.fdopen(passwd_out, "w") as out:
        out.write(_passwd_line(spool.root))  # one short line: fits in the pipe before bwrap reads it
    try:
        done = subprocess.run(confinement(bwrap, spool, passwd_in, folders) + [server, *sftp_server_options(spool)],
                              stdin=0, stdout=1, stderr=subprocess.PIPE, pass_fds=(passwd_in,),
                              env={"PATH": "/usr/bin:/bin", "HOME": str(spool.root)})
    finally:
        os.close(passwd_in)
    if done.returncode != 0 and done.stderr:
        return refuse(home, master, "the confined SFTP server failed: "
                                    + done.stderr.decode(errors="replace").strip()[-500:])
    return done.returncode


def transfer_folders(spool: Spool, master: str) -> tuple[Path, Path]:
    """What the master's SFTP may reach: its own incoming and results folders."""
    return spool.master_folders(Principal(KEY, master).folder)


def confinement(bwrap: str, spool: Spool, passwd_fd: int, folders: tuple[Path, Path]) -> list[str]:
    """bubblewrap's arguments: a fresh root with the system read-only and the
    master's two transfer folders (``folders``: its incoming and results), at
    the same paths as outside."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr", "--dev", "/dev", "--ro-bind-data", str(passwd_fd), "/etc/passwd"]
    for folder in _SYSTEM_DIRS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    incoming, results = folders
    args += ["--bind", str(incoming), str(incoming),
             "--ro-bind", str(results), str(results),
             "--remount-ro", "/", "--chdir", str(spool.root)]  # the folders bwrap made on the way stay empty
    return args


def sftp_server_options(spool: Spool) -> list[str]:
    return ["-d", str(spool.root), "-u", "077", "-P", _DENIED_REQUESTS]


def _passwd_line(spool_root: Path) -> str:
    try:
        me = pwd.getpwuid(os.getuid())
        name, gid = me.pw_name, me.pw_gid
    except KeyError:
        name, gid = "sparecycles", os.getgid()
    return f"{name}:x:{os.getuid()}:{gid}::{spool_root}:/usr/sbin/nologin\n"
