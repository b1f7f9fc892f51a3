"""What ``hosts add NAME --kind slurm`` takes: a cluster's own settings.

Kept in the host's ``options`` (JSON in the queue), beside the login node's
address, port, user and key (:mod:`trayapp.master.kinds.login`), as for any
host reached over SSH.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

from trayapp.errors import UserError, refuse_control_characters
from trayapp.units import parse_duration, parse_memory_mb

DEFAULT_POLL_S = 30.0
# The one kind of expansion a path option gets on the cluster: ``$NAME`` or
# ``${NAME}`` (``/scratch/$USER/sc``), and a leading ``~``. Everything else is
# quoted (:func:`trayapp.master.slurm.script.shell_word`).
VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")


def _check_path(flag: str, value: str) -> None:
    refuse_control_characters(flag, value)
    rest = VARIABLE.sub("", value)
    if "$" in rest or "`" in rest:
        raise UserError(f"{flag} {value!r} asks the shell for more than a variable",
                        f"{flag} may use ~ and $NAME variables (e.g. /scratch/$USER/sparecycles), "
                        "not $(...), `...` or other expansions")


@dataclass(frozen=True)
class SlurmOptions:
    remote_root: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_s: float | None = None  # a task's limit when its job sets none
    mem_mb: int | None = None
    cpus_per_task: int = 1
    python: str = "python3"  # the interpreter tasks use on the compute nodes
    setup: str = ""  # shell lines run before every SLURM command and in every batch script
    max_in_flight: int = 200  # tasks submitted and not yet settled, at most
    throttle: int = 50  # elements of one array running at once (the %N of --array)
    poll_s: float = DEFAULT_POLL_S

    def __post_init__(self) -> None:
        if not self.remote_root.strip():
            raise UserError("--remote-root is empty", "name a folder on the cluster's shared file system, "
                            "e.g. --remote-root ~/sparecycles or /scratch/$USER/sparecycles")
        _check_path("--remote-root", self.remote_root)
        if not self.python.strip():
            raise UserError("--python is empty", "name the interpreter on the compute nodes, e.g. --python python3")
        _check_path("--python", self.python)
        refuse_control_characters("--setup", self.setup, lines=True)
        for name in ("cpus_per_task", "max_in_flight", "throttle"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not (math.isfinite(self.poll_s) and self.poll_s > 0):
            raise UserError(f"--poll must be more than zero seconds, not {self.poll_s}")
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[\w.,@+-]+", value):
                raise UserError(f"--{name} {value!r} is not a SLURM {name} name",
                                f"use the name 'sinfo' or 'sacctmgr' shows, e.g. --{name} normal")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SlurmOptions":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_text(cls, *, remote_root: str, time: str | None = None, mem: str | None = None,
                  **rest) -> "SlurmOptions":
        """From what a person typed (``--time 2h``, ``--mem 2G``)."""
        try:
            time_s = parse_duration(time) if time else None
        except ValueError as exc:
            raise UserError(f"--time: {exc}") from None
        try:
            mem_mb = parse_memory_mb(mem) if mem else None
        except ValueError as exc:
            raise UserError(f"--mem: {exc}") from None
        return cls(remote_root=remote_root, time_s=time_s, mem_mb=mem_mb,
                   **{k: v for k, v in rest.items() if v is not None})

    def sbatch_options(self, time_limit_s: float | None, memory_mb: int | None = None) -> list[str]:
        """sbatch's options for a job's arrays; the job's own time limit and
        memory request win over the host's ``--time`` and ``--mem``."""
        args = ["--no-requeue", f"--cpus-per-task={self.cpus_per_task}"]
        for name in ("partition", "account", "qos"):
            if getattr(self, name):
                args.append(f"--{name}={getattr(self, name)}")
        limit = time_limit_s or self.time_s
        if limit:
            args.append(f"--time={slurm_minutes(limit)}")
        memory = memory_mb or self.mem_mb
        if memory:
            args.append(f"--mem={memory}M")
        return args


def slurm_minutes(seconds: float) -> str:
    """SLURM's ``--time`` as D-HH:MM:SS, rounded up to a whole minute (SLURM's resolution)."""
    total = max(60, math.ceil(seconds / 60) * 60)
    days, rest = divmod(int(total), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}-{hours:02d}:{rest // 60:02d}:00"
