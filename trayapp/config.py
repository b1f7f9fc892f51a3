"""Settings shared by the CLI, the dispatcher and the settings dialog.

Stored as TOML in ``Home.config_file``. Every key is optional; a missing file
means all defaults. Unknown keys are an error rather than silently ignored, so
a typo in a lab-wide config does not quietly fall back to a default.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from trayapp.config_schema import check_ranges
from trayapp.errors import UserError
from trayapp.home import Home


def _default_slots() -> int:
    """One slot per core this process may use: the affinity mask where the OS
    has one (a container or `taskset` may allow fewer cores than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    slots: int = 0  # 0 = one per core, resolved by ``effective_slots``
    run_locally: bool = True  # a master also runs tasks on its own cores
    results_dir: str = ""  # empty = Home.default_results_dir
    task_python: str = ""  # empty = the interpreter running SpareCycles
    nice: int = 10  # tasks yield the CPU to whatever the PC's user runs
    default_retries: int = 0
    poll_interval_s: float = 0.2  # how often the dispatcher looks for new work
    # A master gives up a task on another PC this long past its job's time limit
    # if that PC has not reported it ended (the slave stops it at the limit).
    time_limit_grace_s: float = 300.0
    max_results_mb: int = 2048  # a slave refuses to send back more than this per task, a master to take more
    # A master gives up fetching one task's results after this long (a stalled
    # transfer, any kind of host): the task fails with that reason.
    fetch_timeout_s: float = 900.0
    # Fair share on a slave: recent use decays with this half-life, so
    # yesterday's sweep does not count against anyone today.
    fair_share_half_life_s: float = 3600.0
    # By the name a master's key was authorized with (an unrestricted key: the name or id it gives).
    master_weights: dict = field(default_factory=dict)  # master -> weight, default 1
    master_caps: dict = field(default_factory=dict)  # master -> most slots at once
    grant_policy: str = "fair"  # "by_demand": the unfair baseline bench/fair_share.py compares against
    min_free_mb: int = 200  # a slave with less free disk takes no work
    # Idle detection. "auto": lend the PC only while its user is away (a headless service with
    # nobody logged in is always idle); "off": lend it all the time, as a
    # dedicated compute box would.
    idle_detection: str = "auto"
    idle_after_s: float = 300.0  # no keyboard/mouse input this long = the user is away
    # Work only while other programs use less than this share of all cores
    # (tasks excluded): the user may have left a long computation of their own.
    max_foreign_cpu: float = 0.5
    on_battery: str = "pause"  # "pause": a laptop on battery lends nothing; "work": it does
    # When the user returns: "kill" every task at once (they rerun elsewhere),
    # or "suspend" them and kill them only if the PC is not idle again within
    # suspend_grace_s. Idle again means idle_after_s without input, so the
    # grace must exceed it for a short visit to cost the task nothing
    # (HTCondor's MaxSuspendTime is 10 min too).
    preempt: str = "kill"
    suspend_grace_s: float = 600.0
    mode: str = ""  # "master" or "slave"; empty: the tray app asks on its first start
    # Updates.
    check_updates: bool = True  # the tray app looks for newer Brian / SpareCycles releases at start-up
    package_index: str = ""  # PEP 503/691 simple index URL (a lab mirror); empty = the public PyPI
    wheel_folder: str = ""  # a folder of wheels to update from instead (or beside package_index)
    # Job environments (a job's own requirements, built once per set on each PC)
    # are evicted, least recently used first, beyond this much disk.
    envs_max_gb: float = 5.0
    # The lender's protection (trayapp.run.choice, trayapp.run.sandbox).
    # "auto": tasks from other masters run only in a sandbox (none: lend
    # nothing); this PC's own tasks use it where it exists. "on": always, or
    # run nothing. "off": no sandbox, tasks can read and change your files.
    sandbox: str = "auto"
    sandbox_network: bool = False  # sandboxed tasks may use the network
    max_task_memory_mb: int = 0  # most memory one task may use; 0 = three quarters of this PC's
    max_task_processes: int = 512  # most processes (and threads) one task may have; 0 = no cap
    max_task_disk_mb: int = 0  # most disk one task's folder may fill; 0 = its slot's share of half the free disk

    @property
    def effective_slots(self) -> int:
        return self.slots if self.slots > 0 else _default_slots()

    def results_root(self, home: Home) -> Path:
        return Path(self.results_dir).expanduser() if self.results_dir else home.default_results_dir


def _check_master_table(path: Path, key: str, value) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{path}: '{key}' must be a table of master name = number",
                        f'e.g. {key} = {{ "alice@lab-07" = 2 }}')
    for master, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
            raise UserError(f"{path}: {key}.{master} must be a positive number, not {number!r}")
        if key == "master_caps" and not isinstance(number, int):
            raise UserError(f"{path}: {key}.{master} must be a whole number of slots, not {number!r}")
    return dict(value)


def load_config(home: Home) -> Config:
    path = home.config_file
    if not path.exists():
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc}", "fix the TOML syntax or delete the file to use defaults") from exc
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file (not UTF-8)",
                        "write the settings as TOML text, or delete the file to use defaults") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}",
                        "make it readable, or delete it to use defaults") from None
    known = {f.name: f for f in fields(Config)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"{path}: unknown setting '{key}'{hint}",
                            f"known settings: {', '.join(sorted(known))}")
        expected = type(getattr(Config(), key))
        if expected is dict:
            value = _check_master_table(path, key, value)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise UserError(f"{path}: setting '{key}' must be {expected.__name__}, not {value!r}")
        values[key] = value
    config = replace(Config(), **values)
    check_ranges(path, config)
    if config.grant_policy not in ("fair", "by_demand"):
        raise UserError(f"{path}: grant_policy must be 'fair' or 'by_demand', not {config.grant_policy!r}")
    for key, allowed in (("idle_detection", ("auto", "off")), ("on_battery", ("pause", "work")),
                         ("preempt", ("kill", "suspend"))):
        if getattr(config, key) not in allowed:
            raise UserError(f"{path}: {key} must be one of {', '.join(map(repr, allowed))}, "
                            f"not {getattr(config, key)!r}")
    if config.sandbox not in SANDBOX_MODES:
        raise UserError(f"{path}: sandbox must be one of {', '.join(map(repr, SANDBOX_MODES))}, "
                        f"not {config.sandbox!r}", '"auto" (the default) protects this PC from the tasks it runs')
    if config.mode not in MODES:
        raise UserError(f"{path}: mode must be \"master\" or \"slave\", not {config.mode!r}",
                        "or delete the line, and the tray app asks on its next start")
    return config


MODES = ("", "master", "slave")
SANDBOX_MODES = ("auto", "on", "off")


def save_config(home: Home, config: Config) -> Path:
    """Write ``config`` where :func:`load_config` reads it; returns the path.

    Only settings that differ from the defaults are written, so the file stays
    short and a later version's better default reaches users who never chose.
    The file is replaced atomically (temp file + rename): a crash mid-write
    leaves the old settings, never half a file. Comments in it are not kept.
    """
    import tomli_w

    defaults = Config()
    values = {f.name: getattr(config, f.name) for f in fields(Config)
              if getattr(config, f.name) != getattr(defaults, f.name)}
    path = home.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with tmp.open("wb") as fh:
            tomli_w.dump(values, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
