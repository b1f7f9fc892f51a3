"""The login node: every SLURM command and file move SpareCycles makes on a cluster.

One SSH connection (:class:`trayapp.wire.ssh.SSHShell`); each call is one
shell script over one exec channel, with the host's ``--setup`` lines first.
Nothing runs on the cluster but SLURM's own clients, coreutils and tar.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from trayapp.master.slurm.options import SlurmOptions
from trayapp.master.slurm.script import SETUP_FAILED, Layout, shell_word, submit_script, with_setup
from trayapp.master.slurm.squeue import SQUEUE_ARGS, Element, parse_config, parse_squeue
from trayapp.master.store import Claim
from trayapp.wire.ssh import CommandResult, SSHShell

q = shlex.quote
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ClusterProblem(Exception):
    """Something about the cluster or the host's settings that a person must fix;
    ``fix`` says how. Tasks go back to the queue meanwhile."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix

    def __str__(self) -> str:
        return f"{self.problem}; fix: {self.fix}"


class SlurmBusy(Exception):
    """The controller did not answer (timeouts): try again at the next poll."""


@dataclass(frozen=True)
class Finished:
    """What a task's folder says once its ``done`` marker is there."""

    exit_code: int | None
    results_size: int | None  # bytes of results.tar, None if the wrapper wrote none
    wrapper_error: str | None  # the wrapper could not run the task (no interpreter, --setup failed...)
    # sha256 of results.tar as the wrapper computed it on the compute node; None
    # from a wrapper of an earlier release (the fetch is then not checked against one).
    results_sha: str | None = None


@dataclass
class Snapshot:
    """One poll: SLURM's queue and the marker files of the tasks asked about."""

    elements: dict[tuple[str, int], Element]
    done: dict[str, Finished] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # token -> when its wrapper began (cluster clock)
    chunks: dict[str, str] = field(default_factory=dict)  # chunk id -> SLURM array id, when asked for


class Cluster:
    def __init__(self, shell: SSHShell, options: SlurmOptions, host_name: str):
        self.shell = shell
        self.options = options
        self.host_name = host_name
        self.layout: Layout | None = None
        self._job_folders: set[str] = set()  # archives known to be unpacked there

    def run(self, body: str, timeout: float = 120.0) -> CommandResult:
        result = self.shell.run(with_setup(self.options.setup, body), timeout)
        if result.code == SETUP_FAILED:
            raise ClusterProblem(result.stderr.strip() or "the --setup lines failed",
                                 f"correct --setup (try the lines in a shell on the login node), then "
                                 f"'sparecycles hosts remove {self.host_name}' and add it again")
        return result

    def prepare(self) -> Layout:
        """Expand and create the remote root; check the SLURM clients are there."""
        result = self.run(f'root={shell_word(self.options.remote_root)}\nmkdir -p "$root/archives" "$root/jobs" "$root/chunks" "$root/tasks" '
                          f'|| exit 3\ncd "$root" && pwd -P\ncommand -v sbatch >/dev/null || exit 4\n')
        if result.code == 3 or result.code == 1 and not result.stdout.strip():
            raise ClusterProblem(f"cannot create --remote-root {self.options.remote_root} on {self.host_name}: "
                                 f"{result.stderr.strip()}", "choose a folder you can write on the cluster's "
                                 "shared file system (e.g. --remote-root ~/sparecycles)")
        if result.code == 4:
            raise ClusterProblem(f"no sbatch on {self.host_name}'s PATH",
                                 "add the lines that make SLURM's commands available to --setup "
                                 "(e.g. --setup 'module load slurm')")
        self.layout = Layout(result.stdout.strip().splitlines()[-1])
        return self.layout

    def config(self) -> dict[str, str]:
        result = self.run("scontrol show config")
        if result.code != 0:
            raise SlurmBusy(f"scontrol show config failed: {result.stderr.strip()}")
        return parse_config(result.stdout)

    # ----- jobs and arrays -----------------------------------------------------------

    def ensure_job_folder(self, archive: Path, sha: str) -> None:
        """The job's archive unpacked under jobs/<sha>, uploaded only if absent."""
        job = self.layout.job(sha)
        if sha in self._job_folders or self.run(f"test -d {q(job)}").code == 0:
            self._job_folders.add(sha)
            return
        upload = f"{self.layout.root}/archives/.{sha}.part"
        self.shell.put(archive, upload)
        result = self.run(f"""\
set -e
sum=$(sha256sum {q(upload)} 2>/dev/null || shasum -a 256 {q(upload)})
[ "${{sum%% *}}" = {q(sha)} ] || {{ rm -f {q(upload)}; echo "checksum mismatch" >&2; exit 5; }}
mv {q(upload)} {q(self.layout.archive(sha))}
tmp=$(mktemp -d {q(self.layout.root)}/jobs/.{sha}.XXXXXX)
tar -xf {q(self.layout.archive(sha))} -C "$tmp"
mv -T "$tmp" {q(job)} 2>/dev/null || rm -rf "$tmp"
test -d {q(job)}
""")
        if result.code != 0:
            raise OSError(f"could not place the job archive on {self.host_name}: {result.stderr.strip()}")
        self._job_folders.add(sha)

    def submit(self, chunk_id: str, claims: list[Claim]) -> str:
        """Submit one array; SLURM's id for it. Raises :class:`ClusterProblem` when
        sbatch refuses, :class:`SlurmBusy` when the controller keeps timing out."""
        result = self.run(submit_script(self.layout, self.options, chunk_id, claims))
        if result.code == 0 and result.stdout.strip():
            return result.stdout.strip().splitlines()[-1]
        message = result.stderr.strip()
        if result.code == 75:
            raise SlurmBusy(f"sbatch: {message}")
        raise ClusterProblem(f"sbatch refused the job: {message}", sbatch_fix(message, self.host_name))

    def poll(self, tokens: list[str], with_chunks: bool = False) -> Snapshot:
        """SLURM's queue (one squeue for all arrays) and the markers of ``tokens``."""
        listing = ""
        if with_chunks:
            listing = (f'for c in {q(self.layout.root)}/chunks/*/; do [ -e "$c/jobid" ] && '
                       f'echo "chunk $(basename "$c") $(cat "$c/jobid")"; done\n')
        # Shell builtins only for tasks still under way: the loop costs next to
        # nothing however many tasks are in flight.
        result = self.run(f"""\
{" ".join(q(a) for a in SQUEUE_ARGS)} || exit 6
echo "--- markers"
cd {q(self.layout.root)}/tasks || exit 1
for t in {" ".join(tokens)}; do
    if [ -e "$t/done" ]; then
        code=-; [ -e "$t/exitcode" ] && read -r code <"$t/exitcode"
        size=$(stat -c %s "$t/results.tar" 2>/dev/null) || size=-
        sha=; [ -e "$t/results.sha256" ] && read -r sha _ <"$t/results.sha256"
        error=-; [ -e "$t/wrapper_error" ] && error=$(base64 -w0 <"$t/wrapper_error")
        echo "done $t ${{code:--}} $size ${{sha:--}} $error"
    elif [ -e "$t/started" ]; then
        read -r _ _ when _ <"$t/started"
        echo "started $t $when"
    fi
done
{listing}true
""")
        if result.code == 6:
            raise SlurmBusy(f"squeue failed: {result.stderr.strip()}")
        if result.code != 0:
            raise OSError(f"could not read the task folders on {self.host_name}: {result.stderr.strip()}")
        queue, _, markers = result.stdout.partition("--- markers\n")
        snapshot = Snapshot(parse_squeue(queue))
        for line in markers.splitlines():
            word, *rest = line.split()
            if word == "done" and len(rest) == 5:
                token, code, size, sha, error = rest
                snapshot.done[token] = Finished(_int_or_none(code), _int_or_none(size),
                                                None if error == "-" else _decoded(error),
                                                sha if _SHA256.fullmatch(sha) else None)
            elif word == "started" and rest:
                snapshot.started[rest[0]] = float(rest[1]) if len(rest) > 1 and rest[1].isdigit() else 0.0
            elif word == "chunk" and len(rest) == 2:
                snapshot.chunks[rest[0]] = rest[1]
        return snapshot

    def chunk_tokens(self) -> dict[str, list[str]]:
        """Every chunk folder's tokens, element by element (after a restart)."""
        result = self.run(f'cd {q(self.layout.root)}/chunks && for c in */; do '
                          f'[ -e "$c/tasks.tsv" ] && cut -f1 "$c/tasks.tsv" | sed "s|^|${{c%/}} |"; done; true')
        chunks: dict[str, list[str]] = {}
        for line in result.stdout.splitlines():
            chunk_id, _, token = line.partition(" ")
            chunks.setdefault(chunk_id, []).append(token.strip())
        return chunks

    def cancel(self, ids: list[str], batch: int = 200) -> None:
        """scancel arrays (``123``) or elements (``123_4``), a few hundred per call."""
        for start in range(0, len(ids), batch):
            self.run("scancel " + " ".join(q(i) for i in ids[start:start + batch]) + " 2>&1; true")

    # ----- results ----------------------------------------------------------------------

    def results_path(self, token: str) -> str:
        """Where a task's results archive is, fetched by :mod:`trayapp.master.settling` like a slave's."""
        return f"{self.layout.task(token)}/results.tar"

    def stderr_tail(self, token: str) -> str:
        return self.run(f"tail -c 2000 {q(self.layout.task(token))}/stderr.txt 2>/dev/null; true").stdout

    def forget(self, tokens: list[str], chunk_ids: list[str] = ()) -> None:
        """Remove the remote folders of settled tasks and finished arrays."""
        paths = [self.layout.task(t) for t in tokens] + [self.layout.chunk(c) for c in chunk_ids]
        for start in range(0, len(paths), 200):
            self.run("rm -rf " + " ".join(q(p) for p in paths[start:start + 200]) + "; true")


def _int_or_none(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None


def _decoded(text: str) -> str:
    try:
        return base64.b64decode(text).decode(errors="replace").strip() or "the batch wrapper failed"
    except ValueError:
        return "the batch wrapper failed"


def sbatch_fix(message: str, host: str) -> str:
    lowered = message.lower()
    if "partition" in lowered:
        return f"check the partition name with 'sinfo' on the login node, then add {host} again with --partition"
    if "account" in lowered or "qos" in lowered or "association" in lowered:
        return "check your account and QOS with 'sacctmgr show assoc user=$USER', then add the host again"
    if "time limit" in lowered:
        return "lower the job's time limit (submit --time-limit) or the host's --time below the partition's limit"
    if "memory" in lowered or "node configuration" in lowered:
        return "ask for less memory or fewer CPUs (--mem, --cpus-per-task) than the partition's nodes have"
    return "run the same sbatch on the login node to see why, and adjust the host's options"
