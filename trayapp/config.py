"""Settings shared by the CLI, the dispatcher and the settings dialog.

Stored as TOML in ``Home.config_file``. Every key is optional; a missing file
means all defaults. Unknown keys are an error rather than silently ignored, so
a typo in a lab-wide config does not quietly fall back to a default.

:class:`Config` is the one table of settings (``trayapp.config_schema`` says
what a row holds): loading, checking, the settings dialog and the README's
table (``scripts/settings_table.py``) are all built from it. A new setting is
one field here, then run that script.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from trayapp.config_schema import MASTER, SLAVE, Range, setting, table_of
from trayapp.errors import UserError
from trayapp.home import Home

log = logging.getLogger(__name__)


def _default_slots() -> int:
    """One slot per core this process may use: the affinity mask where the OS
    has one (a container or `taskset` may allow fewer cores than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


# Python and its compiler (Brian's code generation) need a few processes of their own.
MIN_TASK_PROCESSES = 16
MODES = ("", "master", "slave")
SANDBOX_MODES = ("auto", "on", "off")
# Settings an older release had; a file that still has one loads, with a warning.
RETIRED = {"grant_policy": "it only served a benchmark's baseline (bench/fair_share.py now sets "
                           "SPARECYCLES_GRANT_POLICY for its slaves)"}


@dataclass(frozen=True)
class Config:
    """Every setting, once: its type and default, and (``setting``) its help, its
    allowed values, the mode it concerns and its row in the settings dialog."""

    mode: str = setting("", "what this PC does; empty: the tray app asks on its first start",
                        choices=(("", "not chosen yet: the tray app asks"),
                                 ("master", "Master: run my jobs on this PC and the lab's slaves"),
                                 ("slave", "Slave: lend this PC to the lab while I am away")),
                        label="Mode", fix="or the tray app asks on its next start")
    slots: int = setting(0, "tasks at once on this PC (its own jobs as a master, lent as a slave)",
                         range=Range(1, zero_means="all cores"), label="Cores to use or lend")
    task_python: str = setting("", "the interpreter tasks run with; empty: SpareCycles' own "
                                   "(SPARECYCLES_TASK_PYTHON for one run)")
    nice: int = setting(10, "the Unix niceness of tasks: they yield the CPU to whatever the PC's user runs; "
                            "0 runs them at normal priority (and normal I/O priority)",
                        range=Range(0, 19))
    max_results_mb: int = setting(2048, "most results one task may send back; a slave refuses more, a master "
                                        "does not take more", range=Range(0, meaning="megabytes"))
    min_free_mb: int = setting(200, "a PC with less free disk than this takes no work",
                               range=Range(0, meaning="megabytes"))
    envs_max_gb: float = setting(5.0, "disk job environments (a job's own requirements, built once per set) may "
                                      "use; beyond it the least recently used are evicted",
                                 range=Range(0, low_open=True, meaning="gigabytes"))
    # The lender's protection (trayapp.run.choice, trayapp.run.sandbox).
    sandbox: str = setting("auto", "the bubblewrap sandbox tasks run in",
                           choices=(("auto", "other masters' tasks only in a sandbox (none: lend nothing); this "
                                             "PC's own tasks in one where bwrap exists"),
                                    ("on", "always, or run nothing"),
                                    ("off", "no sandbox: tasks can read and change your files (a warning)")),
                           fix='"auto" (the default) protects this PC from the tasks it runs')
    sandbox_network: bool = setting(False, "sandboxed tasks may use the network")
    max_task_memory_mb: int = setting(0, "most memory one task may use",
                                      range=Range(0, meaning="megabytes; 0 = three quarters of this PC's memory"))
    max_task_processes: int = setting(512, "most processes (and threads) one task may have",
                                      range=Range(MIN_TASK_PROCESSES, zero_means="no cap",
                                                  meaning="processes and threads of one task; fewer cannot run "
                                                          "Python and its compiler"))
    max_task_disk_mb: int = setting(0, "most disk one task's folder may fill",
                                    range=Range(0, meaning="megabytes; 0 = its slot's share of half the free disk"))
    # trayapp.run.warm: both a master's own cores and a slave's slots.
    warm_starts: bool = setting(True, "fork a job's tasks from an interpreter that imported its modules once per "
                                      "slot (Linux; a job's warm_start = false wins); off: every task starts a "
                                      "fresh interpreter")
    check_updates: bool = setting(True, "the tray app looks for newer Brian / SpareCycles releases at start-up "
                                        "(SPARECYCLES_NO_UPDATE_CHECK=1 turns it off too)")
    package_index: str = setting("", "a lab's PyPI mirror (PEP 503/691 simple index URL) for updates and job "
                                     "requirements; empty: the public PyPI")
    wheel_folder: str = setting("", "a folder of wheels to install from instead (or beside package_index)")

    run_locally: bool = setting(True, "a master also runs tasks on its own cores (master --no-local for one run)",
                                mode=MASTER, label="Run my jobs on this PC too")
    results_dir: str = setting("", "where jobs' results go; empty: the data folder's results", mode=MASTER,
                               unit="folder", label="Results folder")
    default_retries: int = setting(0, "how often a failed task runs again unless its job says otherwise",
                                   mode=MASTER, range=Range(0, 100))
    poll_interval_s: float = setting(0.2, "how often the dispatcher looks for new jobs and cancellations",
                                     mode=MASTER, range=Range(0.01, 3600, meaning="seconds"))
    time_limit_grace_s: float = setting(300.0, "a task on another PC that has not reported this long past its "
                                               "job's time limit is given up (the slave stops it at the limit)",
                                        mode=MASTER, range=Range(1, meaning="seconds past a job's time limit"))
    fetch_timeout_s: float = setting(900.0, "a task whose results take longer than this to arrive from its host "
                                            "(a stalled transfer, any kind of host) fails with that reason",
                                     mode=MASTER, range=Range(1, meaning="seconds one task's results may take"))

    # When a slave lends the PC (trayapp.idle).
    idle_detection: str = setting("auto", "when this PC lends itself", mode=SLAVE,
                                  choices=(("auto", "Only while I am away"),
                                           ("off", "All the time (a dedicated compute PC)")),
                                  label="Lend this PC")
    idle_after_s: float = setting(300.0, "no keyboard or mouse input this long: the user is away", mode=SLAVE,
                                  range=Range(0, meaning="seconds"), unit="minutes",
                                  label="I am away after (no keyboard or mouse)")
    max_foreign_cpu: float = setting(0.5, "work only while other programs (not tasks) use less than this share "
                                          "of all cores: the user may have left a computation of their own",
                                     mode=SLAVE, range=Range(0, 1, low_open=True, meaning="a share of all cores"),
                                     unit="percent", label="Busy when my programs use more than")
    on_battery: str = setting("pause", "what a laptop on battery does", mode=SLAVE,
                              choices=(("pause", "lend nothing"), ("work", "lend itself as on mains power")))
    # Idle again means idle_after_s without input, so the grace must exceed it for
    # a short visit to cost the task nothing (HTCondor's MaxSuspendTime is 10 min too).
    preempt: str = setting("kill", "what happens to running tasks when the user comes back", mode=SLAVE,
                           choices=(("kill", "Stop them at once (they run again elsewhere)"),
                                    ("suspend", "Suspend them; stop them only if I stay")),
                           label="When I come back, running tasks")
    suspend_grace_s: float = setting(600.0, "suspended tasks are stopped if the PC is not idle again within this",
                                     mode=SLAVE, range=Range(0, meaning="seconds"), unit="minutes",
                                     label="Stop suspended tasks after")

    # Fair share between masters (trayapp.slave.fairshare): by the name a master's
    # key was authorized with (an unrestricted key: the name or id it gives).
    fair_share_half_life_s: float = setting(3600.0, "recent use decays with this half-life, so yesterday's "
                                                    "sweep does not count against anyone today", mode=SLAVE,
                                            range=Range(0, low_open=True, meaning="seconds"))
    master_weights: dict = setting({}, 'a master\'s weight in the fair share, 1 unless listed: { "head" = 2 }',
                                   mode=SLAVE, range=Range(0, low_open=True))
    master_caps: dict = setting({}, 'most slots a master may hold here at once: { "bob" = 1 }', mode=SLAVE,
                                range=Range(0, low_open=True), whole_entries=True)
    incoming_quota_gb: float = setting(4.0, "unfinished uploads each master may keep on this PC; beyond it "
                                            "its largest go at the next clean-up (every minute)", mode=SLAVE,
                                       range=Range(0, low_open=True, meaning="GiB per master"))

    @property
    def effective_slots(self) -> int:
        return self.slots if self.slots > 0 else _default_slots()

    def results_root(self, home: Home) -> Path:
        return Path(self.results_dir).expanduser() if self.results_dir else home.default_results_dir


SETTINGS = table_of(Config)


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
    known = {s.name: s for s in SETTINGS}
    values = {}
    for key, value in raw.items():
        if key in RETIRED:
            # An old file must still start the program; saving from the settings dialog drops the line.
            log.warning("%s: '%s' is no longer a setting and is ignored: %s; delete the line", path, key,
                        RETIRED[key])
            continue
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"{path}: unknown setting '{key}'{hint}",
                            f"known settings: {', '.join(sorted(known))}")
        values[key] = known[key].check(path, value)
    return replace(Config(), **values)


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
