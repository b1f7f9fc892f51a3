"""The ``sparecycles`` command line.

Each verb is a thin handler over functions the tray app will call too. Exit
codes: 0 success; 1 the job has failed or cancelled tasks (``wait``, ``demo``);
2 ``wait`` timed out (and argparse's usage errors); 3 a problem with the
user's input, printed as one message naming the problem and the fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from typing import Callable

from trayapp import __version__, humantime
from trayapp.app import App
from trayapp.cli.hosts import HANDLERS as host_handlers, add_host_verbs
from trayapp.cli.envs import add_envs_parser, cmd_envs
from trayapp.cli.output import (EXIT_FAILED_TASKS, EXIT_OK, EXIT_USAGE, EXIT_USER_ERROR, exit_for,
                                table)
from trayapp.errors import UserError
from trayapp.units import parse_duration
from trayapp.master.jobview import JobView, job_views, view_of
from trayapp.master.progress import wait_for_job
from trayapp.status import TaskStatus
from trayapp.master.store import JobRecord, TaskRecord
from trayapp.taskparams import pickled_bytes



def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparecycles", description=(
        "Run parameter sweeps of Python simulations on this PC's spare cores and the lab's idle PCs."))
    parser.add_argument("--version", action="version", version=f"sparecycles {__version__}")
    # With no verb: the tray app.
    parser.add_argument("--mode", choices=("master", "slave"),
                        help="with no verb: start the tray app in this mode (saved in the settings)")
    parser.add_argument("--background", action="store_true",
                        help="with no verb: start the tray app in the tray, without opening its window "
                             "(how the start at login runs it)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    p = verbs.add_parser("submit", help="queue a job folder, one task per parameter set")
    p.add_argument("folder", help="the job folder (holds main.py)")
    p.add_argument("--params", help="parameter file: JSON list of objects, CSV with header, or TOML grid")
    p.add_argument("--name", help="job name (default: the folder's name)")
    p.add_argument("--main", help="main script, when the folder has several main_*.py")
    p.add_argument("--time-limit", type=_duration, help="stop a task after this long, e.g. 90s, 10m, 2h")
    p.add_argument("--retries", type=int, help="run a task whose own code fails up to this many more times")
    p.add_argument("--no-start", action="store_true", help="only queue; do not start a background dispatcher")
    p.add_argument("--follow-links", action="store_true",
                   help="send what symbolic links pointing outside the folder point to (refused otherwise)")
    p.add_argument("--json", action="store_true")

    p = verbs.add_parser("status", help="list jobs, or one job's tasks")
    p.add_argument("job", nargs="?", help="job id, id prefix, or name")
    p.add_argument("--json", action="store_true")

    p = verbs.add_parser("wait", help="wait for a job: exit 0 all done, 1 some failed, 2 timed out")
    p.add_argument("job")
    p.add_argument("--timeout", type=_duration)
    p.add_argument("--quiet", action="store_true", help="no progress display")

    p = verbs.add_parser("results", help="print the job's results folder")
    p.add_argument("job")

    p = verbs.add_parser("cancel", help="cancel a job's unfinished tasks")
    p.add_argument("job")
    p = verbs.add_parser("retry", help="queue a job's failed and cancelled tasks again")
    p.add_argument("job")
    p.add_argument("--repack", action="store_true",
                   help="pack the job's folder as it is now (after a fix) and run the retried tasks with it")
    p = verbs.add_parser("remove", help="forget a finished job (its results folder stays unless --results)")
    p.add_argument("job")
    p.add_argument("--results", action="store_true", help="delete the job's results folder too")

    p = verbs.add_parser("master", help="run the dispatcher in the foreground")
    p.add_argument("--slots", type=int, help="tasks at once on this PC (default: settings, else one per core)")
    p.add_argument("--no-local", action="store_true", help="run no tasks on this PC, only on hosts")
    p.add_argument("--until-idle", type=_duration, help="exit after the queue has been empty this long")
    p.add_argument("--quiet-if-running", action="store_true", help="exit 0 if a dispatcher already runs")

    p = verbs.add_parser("slave", help="run the slave daemon in the foreground: lend this PC to masters")
    p.add_argument("--slots", type=int, help="tasks at once (default: settings, else one per core)")
    p.add_argument("--idle-after", type=_duration, metavar="SECONDS",
                   help="lend the PC after this long without keyboard/mouse input (default: settings, 5 min)")
    slave_verbs = p.add_subparsers(dest="slave_verb", metavar="ACTION")
    p = slave_verbs.add_parser("authorize", help="let a master's SSH key reach this PC's agent, and nothing else",
                               description="Write a restricted line for a master's public key into "
                                           "authorized_keys: no shell, no forwarding, only the agent and "
                                           "file transfer inside the spool.")
    p.add_argument("pubkey", nargs="?", metavar="PUBKEY_FILE", help="the master's public key (.pub file)")
    p.add_argument("--name", help="what to call this master (list and revoke go by it)")
    p.add_argument("--file", help="the authorized_keys file (default: ~/.ssh/authorized_keys)")
    p.add_argument("--replace", action="store_true", help="give an already authorized name this key")
    p.add_argument("--list", action="store_true", help="list the masters authorized here")
    p.add_argument("--revoke", metavar="MASTER", help="remove this master's key")
    p.add_argument("--json", action="store_true")

    p = verbs.add_parser("agent", help="the protocol endpoint a master starts over SSH (not for people)")
    p.add_argument("--forced", metavar="MASTER",
                   help="run as the forced command of MASTER's restricted key (written by 'slave authorize')")

    for verb, text in (("pause", "stop lending this PC (running tasks stop at once)"),
                       ("donate", "lend this PC even while you use it")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("--for", dest="duration", type=_duration, help="e.g. 1h; default: until 'resume'")
        p.add_argument("--json", action="store_true")
    p = verbs.add_parser("resume", help="back to normal: lend this PC while it is idle")
    p.add_argument("--json", action="store_true")

    hosts = verbs.add_parser("hosts", help="the slaves this master sends work to")
    host_verbs = hosts.add_subparsers(dest="host_verb", metavar="ACTION", required=True)
    add_host_verbs(host_verbs)

    p = verbs.add_parser("demo", help="run the bundled Brian sweep on this PC and summarise it")
    p.add_argument("--timeout", type=_duration)
    p = verbs.add_parser("autostart", help="start SpareCycles when you log in (enable, disable, status)")
    p.add_argument("action", choices=("enable", "disable", "status"))
    p.add_argument("--json", action="store_true")
    p = verbs.add_parser("check-updates", help="compare Brian (task environment) and SpareCycles with the index")
    p.add_argument("--json", action="store_true")
    p = verbs.add_parser("update-brian", help="install the newest Brian into the task environment with pip")
    p.add_argument("--json", action="store_true")
    add_envs_parser(verbs)
    return parser


def main(argv: list[str] | None = None, start_tray: Callable[[str | None, bool], int] | None = None) -> int:
    """Run one verb. ``start_tray`` is how the tray app starts (no verb); the
    ``sparecycles`` command passes it, so the core never imports the GUI."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        return start_tray_app(parser, start_tray, args.mode, args.background)
    if args.mode is not None or args.background:
        parser.error("--mode and --background go with no verb (they start the tray app)")
    try:
        code = HANDLERS[args.verb](App.from_environment(), args)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
        return code
    except UserError as exc:
        print(f"sparecycles: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`status | head`): nothing left to say, and the
        # interpreter must not complain while flushing at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def start_tray_app(parser: argparse.ArgumentParser, start_tray: Callable[[str | None, bool], int] | None,
                   mode: str | None, background: bool = False) -> int:
    """``sparecycles`` alone: the tray app (PyQt6, package ``ui``); without
    PyQt6 (or from ``python -m trayapp``) the user gets the help and a hint."""
    if start_tray is None:
        parser.print_help()
        print("\nsparecycles: no verb given\n  fix: name a verb above, or start the tray app with "
              "`sparecycles` (python -m sparecycles)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return start_tray(mode, background)
    except ImportError as exc:
        parser.print_help()
        print(f"\nsparecycles: the tray app needs PyQt6 ({exc})\n  fix: pip install PyQt6, or use the verbs above",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except UserError as exc:
        print(f"sparecycles: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


# ----- verbs -------------------------------------------------------------------

def cmd_submit(app: App, args) -> int:
    submitted = app.jobs().submit(args.folder, start=not args.no_start, params=args.params, name=args.name,
                                  main=args.main, time_limit_s=args.time_limit, retries=args.retries,
                                  follow_links=args.follow_links)
    sub, job, dispatcher_pid = submitted.submission, submitted.job, submitted.dispatcher_pid
    for note in sub.notes:
        print(f"sparecycles: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"job": job.id, "name": job.name, "tasks": job.total, "results": job.results_dir,
                          "archive": job.archive_sha, "archive_bytes": sub.archive_size,
                          "main": job.main, "dispatcher_started": dispatcher_pid, "notes": list(sub.notes)}))
        return EXIT_OK
    print(f"queued job {job.id} ({job.name}): {job.total} task{'s' if job.total != 1 else ''} running {job.main}, "
          f"{len(sub.folder.files)} files packed ({_size(sub.archive_size)})")
    print(f"results will appear in {job.results_dir}")
    if dispatcher_pid:
        print(f"started a background dispatcher (pid {dispatcher_pid}); follow it with: sparecycles wait {job.id}")
    elif args.no_start:
        print("not starting a dispatcher (--no-start): run 'sparecycles master' to run the queue")
    else:
        print(f"a dispatcher is already running; follow the job with: sparecycles wait {job.id}")
    return EXIT_OK


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _job_json(job: JobRecord, view: JobView) -> dict:
    """A job in ``status --json``: its view (counts, in flight, why it waits, time
    left) and what the view leaves out (folder, archive, limits)."""
    return {"waiting": [w.to_json() for w in view.waits], "why": view.why,
            "id": view.id, "name": view.name, "status": view.status.value, "total": view.total,
            "counts": view.counts, "in_flight": view.in_flight, "left_s": view.left_s(time.time()),
            "folder": job.folder, "main": job.main,
            "results": view.results_dir, "archive": job.archive_sha, "created": view.created,
            "finished": view.finished, "retries": job.retries, "time_limit_s": job.time_limit_s,
            "waiting_on": view.waiting_on}


def _task_json(task: TaskRecord) -> dict:
    return {"index": task.idx, "status": task.status.value, "params": task.params, "host": task.host,
            "outcome": task.outcome, "exit_code": task.exit_code, "failures": task.failures,
            "message": task.message}


def _when(ts: float | None) -> str:
    return humantime.moment(ts) if ts else "-"


def cmd_status(app: App, args) -> int:
    if args.job is None:
        jobs = job_views(app.store)
        slave = _local_slave_state(app)
        if args.json:
            print(json.dumps([_job_json(j, v) for j, v in jobs], indent=2))
        elif not jobs:
            print("no jobs yet; queue one with: sparecycles submit FOLDER --params FILE")
        else:
            rows = [[v.id, v.name, v.status.value, str(v.done), str(v.failed), str(v.total), _when(v.created)]
                    for _, v in jobs]
            print(table(["JOB", "NAME", "STATE", "DONE", "FAILED", "TASKS", "SUBMITTED"], rows))
            for _, v in jobs:
                if v.why:
                    print(f"{v.id} waits: {v.why}")
        if isinstance(slave, UserError) and not args.json:
            print(f"slave: not answering ({slave.problem})")
        elif slave is not None and not args.json:
            print(describe_slave_state(slave))
        return EXIT_OK
    job = app.store.job(args.job)
    view = view_of(app.store, job)
    tasks = app.store.tasks(job.seq)
    if args.json:
        print(json.dumps({**_job_json(job, view), "tasks": [
            {**_task_json(t), "why": view.why if t.status is TaskStatus.QUEUED else None} for t in tasks]},
            indent=2))
        return EXIT_OK
    print(f"job {job.id} ({job.name}): {view.status.value}, {view.describe_counts()}")
    if view.why:
        queued = view.queued
        print(f"{queued} queued task{'s' if queued != 1 else ''} wait{'s' if queued == 1 else ''}: {view.why}")
    print(f"folder  {job.folder} (main: {job.main})")
    print(f"results {job.results_dir}")
    rows = [[str(t.idx), t.status.value, t.host or "-",
             "-" if t.exit_code is None else str(t.exit_code), _short_params(t.params)] for t in tasks]
    print(table(["TASK", "STATE", "HOST", "EXIT", "PARAMS"], rows))
    for indices, status, message in grouped_messages(tasks):
        if len(indices) == 1:
            print(f"\ntask {indices[0]} {status.value}: {message}")
        else:
            print(f"\n{len(indices)} tasks {status.value} with the same error (tasks {describe_indices(indices)}): "
                  f"{message}")
    return EXIT_OK


def grouped_messages(tasks: list[TaskRecord]) -> list[tuple[list[int], TaskStatus, str | None]]:
    """The tasks worth a word below the table (failed ones; others with a note),
    those with the same state and message together, in task order."""
    groups: dict[tuple[TaskStatus, str | None], list[int]] = {}
    for t in tasks:
        under_way = t.status in (TaskStatus.DISPATCHED, TaskStatus.RUNNING)  # e.g. why its results wait
        if t.status is TaskStatus.FAILED or (t.message and (under_way or t.status is TaskStatus.QUEUED and t.failures)):
            groups.setdefault((t.status, t.message), []).append(t.idx)
    return [(indices, status, message) for (status, message), indices in groups.items()]


def describe_indices(indices: list[int], most: int = 8) -> str:
    """``[0, 1, 2, 3, 7]`` -> ``"0-3, 7"``."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    return ", ".join(parts[:most]) + (", …" if len(parts) > most else "")


def _local_slave_state(app: App) -> dict | UserError | None:
    """The slave daemon's state if one runs for this home (``status`` shows it),
    or why it did not say (busy, stuck, just stopped)."""
    from trayapp.slave import control as slavecontrol, endpoint

    if not endpoint.daemon_may_run(app.home):
        return None
    try:
        return slavecontrol.slave_state(app.home)
    except UserError as exc:
        return exc


def _short_params(params: dict, width: int = 60) -> str:
    pickled = pickled_bytes(params)
    if pickled is not None:  # only the task unpickles it
        return f"(pickled, {len(pickled):,} bytes)"
    text = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items()) or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_wait(app: App, args) -> int:
    ref = app.store.job(args.job)
    if app.dispatcher_lock.holder() is None and ref.status.value in ("queued", "running"):
        print("sparecycles: no dispatcher is running for this home, so nothing will progress; "
              "start one with 'sparecycles master' (submit starts one unless --no-start)", file=sys.stderr)
    job = wait_for_job(app.store, app.store.job(args.job).id, timeout=args.timeout, show=not args.quiet)
    code = exit_for(job)
    if code != EXIT_OK and not args.quiet:
        for indices, status, message in grouped_messages(app.store.tasks(job.seq)):
            if status is TaskStatus.FAILED:
                print(f"{len(indices)} task{'s' if len(indices) != 1 else ''} failed "
                      f"(tasks {describe_indices(indices)}): {message}", file=sys.stderr)
                break  # the first error; `status JOB` lists them all
    return code


def cmd_results(app: App, args) -> int:
    print(app.store.job(args.job).results_dir)
    return EXIT_OK


def cmd_cancel(app: App, args) -> int:
    job = app.store.job(args.job)
    n = app.jobs().cancel(job.id)
    print(f"cancelled {n} unfinished task{'s' if n != 1 else ''} of job {job.id}")
    return EXIT_OK


def cmd_retry(app: App, args) -> int:
    result = app.jobs().retry(args.job, repack=args.repack)
    if warning := result.warning():
        print(f"sparecycles: note: {warning}", file=sys.stderr)
    print(result.describe())
    return EXIT_OK


def cmd_remove(app: App, args) -> int:
    removed = app.jobs().remove(args.job, results=args.results)
    job = removed.job
    print(f"removed job {job.id} ({job.name}) from the queue; " +
          (f"deleted its results folder {job.results_dir}" if removed.results_removed
           else f"its results stay in {job.results_dir}"))
    return EXIT_OK


def cmd_master(app: App, args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.slots is not None:
        if args.slots < 1:
            raise UserError(f"--slots must be at least 1, not {args.slots}")
        app.config = replace(app.config, slots=args.slots)
    if args.no_local:
        app.config = replace(app.config, run_locally=False)
    lock = app.dispatcher_lock
    if not lock.acquire(wait_s=2.0):
        if args.quiet_if_running:
            return EXIT_OK
        raise UserError(f"a dispatcher is already running for {app.home.data_dir} (pid {lock.holder()})",
                        "use that one, or stop it first; SPARECYCLES_HOME selects another home")
    try:
        dispatcher = app.dispatcher()
        dispatcher.install_signal_handlers()
        logging.info("dispatcher for %s: %d local slots, tasks run with %s", app.home.data_dir, dispatcher.slots,
                     dispatcher.python)
        stats = dispatcher.run(until_idle=args.until_idle)
        logging.info("dispatcher stopping: %d started, %d succeeded, %d failed", stats.started, stats.succeeded,
                     stats.failed)
    finally:
        lock.release()
    return EXIT_OK


def cmd_demo(app: App, args) -> int:
    from trayapp.cli.demo import run_demo

    return run_demo(app, timeout=args.timeout)


def cmd_slave(app: App, args) -> int:
    from trayapp.slave.daemon import run_slave_daemon

    if args.slave_verb == "authorize":
        from trayapp.cli.authorize import cmd_authorize

        return cmd_authorize(app, args)
    if args.slots is not None and args.slots < 1:
        raise UserError(f"--slots must be at least 1, not {args.slots}")
    return run_slave_daemon(app.home, app.config, app.identity(), slots=args.slots, idle_after=args.idle_after)


def cmd_slave_verb(app: App, args) -> int:
    from trayapp.slave import control as slavecontrol

    if args.verb == "resume":
        state = slavecontrol.resume(app.home)
    else:
        state = getattr(slavecontrol, args.verb)(app.home, args.duration)
    if args.json:
        print(json.dumps(state))
    else:
        print(describe_slave_state(state))
    return EXIT_OK


def describe_slave_state(state: dict) -> str:
    text = f"slave: {state['state']}"
    if state.get("reason"):
        text += f" ({state['reason']})"
    if state.get("donating") and state["state"] != "donating":  # lent, though its user is away anyway
        text += f" (lent by its user {humantime.until(state.get('donating_until') or None)})"
    text += f", {state['running']} of {state['slots']} slots busy"
    usage = state.get("usage") or {}
    total = sum(usage.values())
    names = dict(state.get("master_names") or {})
    labels = {m: names.get(m, m) for m in usage}
    clashing = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    labels = {m: f"{label} ({m[:6]})" if label in clashing else label for m, label in labels.items()}
    if total:
        shares = ", ".join(f"{labels[m]} {u / total:.0%}" for m, u in sorted(usage.items(), key=lambda x: -x[1]))
        text += f"\nrecent use by master: {shares}"
    for path, why in (state.get("unreadable_tasks") or {}).items():
        text += f"\ncannot take up the task in {path}: {why}"
    return text


def cmd_agent(app: App, args) -> int:
    from trayapp.slave.agent import run_agent

    if args.forced is not None:
        from trayapp.slave.forced import run_forced

        return run_forced(app.home, args.forced, os.environ.get("SSH_ORIGINAL_COMMAND"))
    return run_agent(app.home)


def cmd_hosts(app: App, args) -> int:
    return host_handlers[args.host_verb](app, args)


def cmd_autostart(app: App, args) -> int:
    from trayapp.install.autostart import autostart_for_platform, login_command

    backend = autostart_for_platform()
    if args.action == "enable":
        state = backend.enable(login_command())
    elif args.action == "disable":
        state = backend.disable()
    else:
        state = backend.status()
    if args.json:
        print(json.dumps(state.to_json()))
    elif state.enabled:
        print(f"SpareCycles starts at login: {state.where}")
    else:
        print(f"SpareCycles does not start at login (no {state.where})")
    return EXIT_OK


def cmd_check_updates(app: App, args) -> int:
    from trayapp.install.updates import check_for_updates

    report = check_for_updates(app.config)
    if args.json:
        print(json.dumps(report.to_json()))
        return EXIT_OK
    if report.offline:
        print(f"sparecycles: no update check: {report.error}", file=sys.stderr)
    for label, pkg in (("Brian (task environment)", report.brian), ("SpareCycles", report.app)):
        state = ("update available" if pkg.available else "up to date" if pkg.latest else "newest unknown")
        for_python = f" for Python {pkg.python}" if pkg.python else ""
        print(f"{label}: installed {pkg.current or 'none'}, newest{for_python} {pkg.latest or '?'}: {state}")
        if held_back := pkg.blocked():
            print(f"  note: {held_back}")
    return EXIT_OK


def cmd_update_brian(app: App, args) -> int:
    from trayapp.install.updates import last_line_of, update_brian

    result = update_brian(app.config)
    if args.json:
        print(json.dumps({"ok": result.ok, "before": result.before, "after": result.after,
                          "python": result.python, "output": result.output, "held_back": result.held_back}))
    elif result.ok:
        print(f"Brian {result.after} in {result.python}" +
              (f" (was {result.before or 'not installed'})" if result.changed else " (already the newest)"))
    else:
        print(f"sparecycles: updating Brian failed; {result.before or 'no Brian'} stays installed\n"
              f"  pip: {last_line_of(result.output)}", file=sys.stderr)
    if result.held_back and not args.json:
        print(f"sparecycles: note: {result.held_back}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED_TASKS


HANDLERS = {"envs": cmd_envs, "submit": cmd_submit, "status": cmd_status, "wait": cmd_wait, "results": cmd_results,
            "cancel": cmd_cancel, "retry": cmd_retry, "remove": cmd_remove, "master": cmd_master, "demo": cmd_demo,
            "slave": cmd_slave, "agent": cmd_agent, "hosts": cmd_hosts, "pause": cmd_slave_verb,
            "donate": cmd_slave_verb, "resume": cmd_slave_verb,
            "autostart": cmd_autostart, "check-updates": cmd_check_updates,
            "update-brian": cmd_update_brian}
