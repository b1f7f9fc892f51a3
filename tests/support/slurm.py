"""A real one-node SLURM cluster for tests: munged, slurmctld and slurmd on this machine.

Everything lives in one folder of its own: munged runs with its own key,
socket, pid, log and seed files; slurmctld and slurmd read a ``slurm.conf``
written there (free ports, state and spool folders inside, no accounting, a
small ``MaxArraySize`` so that splitting work into several arrays is really
exercised). Clients find the cluster through ``SLURM_CONF``, as they would
after a ``module load`` on a real login node: :attr:`SlurmCluster.setup`
is the line a host's ``--setup`` takes. Every daemon is started here as a
foreground child and ended here by its own pid; job steps still running at
the end are cancelled first, then swept by the spool folder they hold.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from support.net import free_port

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")


def slurm_is_installed() -> bool:
    return all(shutil.which(name) or Path("/usr/sbin", name).exists() for name in SLURM_BINARIES)


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """One node (this machine, ``cpus`` CPUs) in one partition ``debug``."""

    def __init__(self, folder: Path, *, cpus: int = 2, max_array_size: int = 5, min_job_age: int = 30,
                 max_submit_jobs: int | None = None):
        self.folder = folder
        self.cpus = cpus
        self.max_array_size = max_array_size
        self.node = socket.gethostname()
        self.cluster_name = f"sc{os.getpid() % 100000}"
        self.conf = folder / "slurm.conf"
        self.munge_socket = folder / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        folder.mkdir(parents=True, exist_ok=True)
        for sub in ("munge", "state", "spool", "log"):
            (folder / sub).mkdir(exist_ok=True)
        os.chmod(folder / "munge", 0o700)
        self._write_config(min_job_age, max_submit_jobs)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client of this cluster (sbatch, squeue, ...)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def setup(self) -> str:
        """What a login node's ``--setup`` says to reach this cluster."""
        return f"export SLURM_CONF={self.conf}"

    def _write_config(self, min_job_age: int, max_submit_jobs: int | None) -> None:
        memory = max(1000, psutil.virtual_memory().total // (1 << 20) // 4)
        self.real_memory_mb = memory
        extra = f"MaxSubmitJobs={max_submit_jobs}\n" if max_submit_jobs else ""
        self.conf.write_text(f"""\
ClusterName={self.cluster_name}
SlurmctldHost=localhost
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.folder}/state
SlurmdSpoolDir={self.folder}/spool
SlurmctldPidFile={self.folder}/slurmctld.pid
SlurmdPidFile={self.folder}/slurmd.pid
SlurmctldLogFile={self.folder}/log/slurmctld.log
SlurmdLogFile={self.folder}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MaxArraySize={self.max_array_size}
MinJobAge={min_job_age}
{extra}SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")

    # ----- the daemons ------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        if not slurm_is_installed():
            raise RuntimeError("SLURM or munge is not installed: run scripts/system-packages.sh "
                               "(it installs slurm-wlm and munge)")
        try:
            self._start_munged()
            self._start("slurmctld", [_binary("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self.start_slurmd()
            self.wait_until_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munged(self) -> None:
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        munge = self.folder / "munge"
        self._start("munged", [_binary("munged"), "-F", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                               f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"])
        self._wait_for(self.munge_socket.exists, "munged's socket", 20)

    def start_slurmd(self) -> None:
        self._start("slurmd", [_binary("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])

    def _start(self, name: str, command: list[str]) -> None:
        log = open(self.folder / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def kill_slurmd(self, sig: int = signal.SIGKILL) -> None:
        """Kill the node daemon (its job steps live on, as on a real node)."""
        proc = self.procs.pop("slurmd")
        proc.send_signal(sig)
        proc.wait(30)

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        """Until ``sinfo`` shows the node idle (or mixed/allocated: up and serving)."""
        def node_is_up() -> bool:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}: {self.logs()}")
            state = self.client("sinfo", "-h", "-n", self.node, "-o", "%T", check=False).stdout.strip()
            return state.rstrip("*~#") in ("idle", "mixed", "allocated")
        self._wait_for(node_is_up, "the node to be idle in sinfo", timeout)

    def _wait_for(self, predicate, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}: {self.logs()}")
            time.sleep(0.2)

    def client(self, *command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(list(command), env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def jobs_in_queue(self) -> list[str]:
        """Job ids (``123_4`` for array elements) squeue shows, in any state it keeps."""
        out = self.client("squeue", "-h", "-r", "-o", "%i", check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def logs(self) -> str:
        parts = []
        for path in sorted((self.folder / "log").glob("*")) + [self.folder / "munge" / "munged.log"]:
            try:
                parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel what still runs, then end every daemon and job step of this cluster by pid."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            ids = self.jobs_in_queue()
            if ids:
                self.client("scancel", *sorted({i.split("_")[0] for i in ids}), check=False, timeout=20)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        for step in self.job_steps():
            try:
                step.kill()
            except psutil.NoSuchProcess:
                pass

    def job_steps(self) -> list[psutil.Process]:
        """slurmstepd processes of this cluster's node (found by its spool folder in their
        open files or command line), with everything they started."""
        spool = str(self.folder / "spool")
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] != "slurmstepd":
                continue
            try:
                mine = spool in " ".join(proc.info["cmdline"] or []) or any(
                    f.path.startswith(spool) for f in proc.open_files()) or str(proc.cwd()).startswith(spool)
            except psutil.Error:
                continue
            if mine:
                try:
                    found += [proc, *proc.children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
        return found
