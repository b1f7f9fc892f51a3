"""A hostile or broken slave: speaks the protocol on stdin/stdout like ``sparecycles agent``.

Usage: ``python fake_agent.py MODE WORKDIR`` (a master starts it over SSH).
Self-contained on purpose (standard library only): it stands for a slave we do
not trust, not for our code. Everything it receives is appended to
``WORKDIR/received.jsonl``.

Modes:
- ``dotdot``, ``absolute``, ``symlink``, ``hardlink``, ``device``: plays a
  well-behaved slave, but the results archive of the one task it runs holds a
  normal file plus one member of that kind.
- ``clean``: plays a well-behaved slave (normal results only).
- ``MODE+inline``: as MODE, with the results archive inside the ``finished``
  message too (``results_inline``), its spooled copy removed (so only the
  message can deliver it); ``MODE+badinline``: the copy in the message is
  damaged, the spooled one intact.
- ``nopath``: reports the task succeeded, without any results archive.
- ``notjson``, ``v99``, ``grant_nan``: answers the master's hello with garbage
  (a line that is not JSON, or a message of protocol version 99), or answers
  the master's demand with a grant whose count is not a number.
- ``flood``: advertises one slot but grants 50 on every demand, and holds
  every task it starts "running" forever.
- ``devzero``: reports success with ``/dev/zero`` as its results archive.
- ``resultsfile``: its results archive holds ``results`` as a file, not a folder.
- ``badexit``: reports a clean results archive with an ``exit_code`` that is a JSON object.
- ``selfcancel``: reports the task it started as cancelled, unasked.
- ``oversize``: a clean results archive, announced as a terabyte (as a slave
  whose own ``max_results_mb`` is far above its master's would).
- ``stall``: asks for the job archive, and once it is uploaded stops the SFTP
  server of its own SSH connection (SIGSTOP), so that fetching its clean
  results stalls with no byte coming; it lets it go on (SIGCONT) when the
  master acknowledges the task, or at the end.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import sys
import tarfile
from pathlib import Path

# Member names the tests look for; the `..` name reaches the job's results
# folder from the master's staging folder (results/<job>/.incoming-x).
DOTDOT_MEMBER = "../escape.txt"
SYMLINK_MEMBER = "results/link"
HARDLINK_MEMBER = "results/hard"
DEVICE_MEMBER = "results/null"


def absolute_member(workdir: Path) -> str:
    return str(workdir / "absolute-canary.txt")


def symlink_target(workdir: Path) -> str:
    return str(workdir / "symlink-canary.txt")


def send(kind: str, **fields) -> None:
    sys.stdout.buffer.write((json.dumps({"v": 1, "type": kind, **fields}) + "\n").encode())
    sys.stdout.buffer.flush()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def craft_archive(mode: str, path: Path, workdir: Path, *, dotdot: str = DOTDOT_MEMBER,
                  normal: dict[str, bytes] | None = None) -> None:
    """A tar of normal files (``normal``) followed by one member of the kind ``mode`` names."""
    normal = normal or ({"stdout.txt": b"ran\n"} if mode == "resultsfile"
                        else {"results/ok.txt": b"a normal result\n", "stdout.txt": b"ran\n"})
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in normal.items():
            _add_bytes(tar, name, data)
        if mode in ("clean", "badexit"):
            pass
        elif mode == "resultsfile":
            _add_bytes(tar, "results", b"a file where a folder belongs\n")
        elif mode == "dotdot":
            _add_bytes(tar, dotdot, b"escaped\n")
        elif mode == "absolute":
            _add_bytes(tar, absolute_member(workdir), b"escaped\n")
        else:
            info = tarfile.TarInfo({"symlink": SYMLINK_MEMBER, "hardlink": HARDLINK_MEMBER,
                                    "device": DEVICE_MEMBER}[mode])
            if mode == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, symlink_target(workdir)
            elif mode == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, "results/ok.txt"
            else:
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info)


def _proc(pid: int) -> tuple[int, str]:
    """A process's parent and the first word of its command line (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    return ppid, Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")


def own_sftp_servers() -> list[int]:
    """The SFTP server processes of the SSH connection this agent runs in: children
    of its nearest ``sshd:`` ancestor (OpenSSH forks one per session)."""
    pid = os.getppid()
    while pid > 1 and not _proc(pid)[1].startswith("sshd"):
        pid = _proc(pid)[0]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid, command = _proc(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid and "sftp" in command:
                found.append(int(entry.name))
    return found


def main() -> int:
    mode, _, delivery = sys.argv[1].partition("+")
    workdir = Path(sys.argv[2])
    workdir.mkdir(parents=True, exist_ok=True)
    stopped: list[int] = []
    try:
        return converse(mode, delivery, workdir, stopped)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


def converse(mode: str, delivery: str, workdir: Path, stopped: list[int]) -> int:
    granted = False
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return 0
        with (workdir / "received.jsonl").open("ab") as log:
            log.write(line)
        message = json.loads(line)
        kind = message["type"]
        if kind == "hello":
            if mode == "notjson":
                sys.stdout.buffer.write(b"this is not JSON at all\n")
                sys.stdout.buffer.flush()
            elif mode == "v99":
                send("hello", v=99, slave="f" * 16, state="ready", slots=1)
            else:
                send("hello", slave="f" * 16, state="ready", slots=1, python="3.0.0", brian=None, protocol=1)
        elif kind == "sync":
            send("tasks", tasks=[])
        elif kind == "demand" and message["queued"] > 0 and mode == "flood":
            send("grant", n=50)
        elif kind == "demand" and message["queued"] > 0 and not granted:
            granted = True
            send("grant", n="lots" if mode == "grant_nan" else 1)
        elif kind == "need_archive" and mode == "stall":
            send("archive", sha=message["sha"], present=False, upload_path=str(workdir / "upload.tar"))
        elif kind == "need_archive":
            send("archive", sha=message["sha"], present=True)
        elif kind == "archive_uploaded":
            stopped += own_sftp_servers()
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            (workdir / "sftp_stopped").write_text(" ".join(map(str, stopped)))
            send("archive_ok", sha=message["sha"])
        elif kind == "ack":
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            stopped.clear()
        elif kind == "start":
            token = message["token"]
            send("started", token=token, pid=4242)
            if mode == "flood":
                continue
            report = {"token": token, "outcome": "succeeded", "exit_code": 0, "state": "finished",
                      "job": message["job"], "idx": message["idx"]}
            if mode == "badexit":
                report["exit_code"] = {"surprise": 1}
            if mode == "selfcancel":
                report.update(outcome="cancelled", exit_code=None)
            elif mode == "devzero":
                report.update(results_path="/dev/zero", results_sha="0" * 64)
            elif mode != "nopath":
                archive = workdir / f"{token}.tar"
                craft_archive("clean" if mode in ("oversize", "stall") else mode, archive, workdir)
                data = archive.read_bytes()
                report.update(results_path=str(archive), results_size=len(data),
                              results_sha=hashlib.sha256(data).hexdigest())
                if mode == "oversize":
                    report["results_size"] = 10 ** 12
                if delivery == "inline":
                    report["results_inline"] = base64.b64encode(data).decode()
                    archive.unlink()
                elif delivery == "badinline":
                    report["results_inline"] = base64.b64encode(data[:-1] + b"!").decode()
            send("finished", **report)
        elif kind == "bye":
            return 0


if __name__ == "__main__":
    sys.exit(main())
