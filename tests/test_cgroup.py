"""Every process of a task is in the task's cgroup, even one forked and
orphaned at once, however late the slave gets round to the task.

CI found the race this guards against: the slave moved a task into its cgroup
just after starting it, and a busy moment (an fsync of the spool) let the task
fork and orphan a process first. That process was no longer a descendant, so
nothing moved it, and it ran on while the rest of the task was frozen.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
from conftest import wait_until

from trayapp.run.cgroup import TaskCgroups, own_cgroup
from trayapp.run.proctree import kill_tree
from trayapp.run.attempt import prepare, task_launch
from trayapp.run.posix import start_process

# Forks at once (no sleep anywhere before the fork): a child, and an orphan
# whose parent exits at once. Each notes its pid, then waits to be killed.
FORK_AT_ONCE = """
import json, os, sys, time
p = json.loads(sys.argv[1])
def note(role):
    open(os.path.join(p["pids"], f"{role}-{os.getpid()}"), "w").close()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        note("orphan"); time.sleep(600)
    os._exit(0)
if os.fork() == 0:
    note("child"); time.sleep(600)
note("main"); time.sleep(600)
"""


@pytest.fixture
def cgroups():
    groups = TaskCgroups.create()
    if groups is None:
        pytest.skip("this system does not let the slave create cgroups (the fallback is tested)")
    yield groups
    for token in groups.tokens():
        groups.kill(token)
    wait_until(lambda: all(groups.is_empty(t) for t in groups.tokens()), what="the test's tasks to die")
    groups.close()


def start_task(tmp_path: Path, token: str, procs: Path | None):
    template = tmp_path / "job"
    template.mkdir(exist_ok=True)
    (template / "main.py").write_text(FORK_AT_ONCE)
    pids = tmp_path / f"pids-{token}"
    pids.mkdir()
    params = {"pids": str(pids)}
    run_dir = tmp_path / f"run-{token}"
    prepare(run_dir, template, params)
    proc = start_process(task_launch(token, run_dir, python=sys.executable, main="main.py", params=params,
                                     job_id="j1", idx=0, nice=0), cgroup_procs=procs)
    return proc, pids


def roles(pids: Path) -> dict[str, int]:
    found = {}
    for path in pids.iterdir():
        role, _, pid = path.name.partition("-")
        found[role] = int(pid)
    return found


def group_of(pid: int) -> str:
    return Path(own_cgroup(f"/proc/{pid}/cgroup")).name


def test_a_task_started_with_its_cgroup_is_born_inside_with_every_process_it_forks(cgroups, tmp_path):
    procs = cgroups.prepare("born")
    # The slave never moves it: the wrapper's own first act is what puts it there.
    proc, pids = start_task(tmp_path, "born", procs)
    tree = wait_until(lambda: len(roles(pids)) == 3 and roles(pids), what="the task to fork")
    assert {role: group_of(pid) for role, pid in tree.items()} == dict.fromkeys(tree, "task-born")
    assert sorted(int(p) for p in procs.read_text().split()) == sorted([proc.pid, *tree.values()])

    # And the whole tree, orphan included, freezes with one write.
    assert cgroups.freeze("born")
    wait_until(lambda: "frozen 1" in (procs.parent / "cgroup.events").read_text(), what="the group to freeze")
    states = {role: open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] for role, pid in tree.items()}
    assert cgroups.freeze("born", False)
    assert cgroups.kill("born")
    wait_until(lambda: cgroups.is_empty("born"), what="the group to empty")
    # Frozen tasks sleep in the freezer: S (or D while it waits), never R.
    assert set(states.values()) <= {"S", "D"}, states


def test_a_task_adopted_after_a_restart_moves_with_its_orphans_into_the_new_slaves_cgroup(cgroups, tmp_path):
    # The first slave: its cgroup base, its task born inside.
    first = TaskCgroups(cgroups.base.parent / f"{cgroups.base.name}-first")
    first.base.mkdir()
    try:
        proc, pids = start_task(tmp_path, "kept", first.prepare("kept"))
        tree = wait_until(lambda: len(roles(pids)) == 3 and roles(pids), what="the task to fork")
        assert group_of(tree["orphan"]) == "task-kept"
        assert tree["orphan"] not in {c.pid for c in psutil.Process(proc.pid).children(True)}

        # The second slave adopts the task from the spool: the orphan comes along.
        assert cgroups.adopt("kept", proc.pid)
        moved = sorted(int(p) for p in (cgroups.base / "task-kept" / "cgroup.procs").read_text().split())
        assert moved == sorted([proc.pid, *tree.values()])
        assert first.is_empty("kept")
    finally:
        if not first.is_empty("kept"):
            first.kill("kept")
            wait_until(lambda: first.is_empty("kept"), what="the first slave's group to empty")
        first.close()
        kill_tree(proc.pid, None, "kept")


def test_a_task_without_a_cgroup_file_runs_as_before(tmp_path):
    proc, pids = start_task(tmp_path, "plain", None)
    tree = wait_until(lambda: len(roles(pids)) == 3 and roles(pids), what="the task to fork")
    assert group_of(tree["main"]) == Path(own_cgroup()).name
    for pid in tree.values():  # the orphan left the tree: killed by pid
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (proc.launch.task_dir / "exitcode").exists(), what="the wrapper to end")
    assert (proc.launch.task_dir / "exitcode").read_text().strip() == "137"  # sh: 128 + SIGKILL


def test_a_wrapper_that_cannot_join_its_cgroup_runs_nothing(tmp_path, monkeypatch):
    # The slave no longer moves a started task into its cgroup: the wrapper's own
    # join is the only one, so a failed join must stop it (the attempt is lost to
    # the host and runs again elsewhere), never let it run outside.
    import trayapp.run.posix as posix

    missing = tmp_path / "no-such-cgroup" / "cgroup.procs"
    # The wrapper as it was (its failed join ignored): the task runs, outside any cgroup.
    with monkeypatch.context() as old:
        old.setattr(posix, "_WRAPPER", posix._WRAPPER.replace(" || exit 125", ""))
        proc, pids = start_task(tmp_path, "before", missing)
        try:
            wait_until(lambda: len(roles(pids)) == 3, what="the task to run anyway")
        finally:
            kill_tree(proc.pid, proc.created, "before")
    proc, pids = start_task(tmp_path, "outside", missing)
    wait_until(proc.has_ended, what="the wrapper to give up")
    assert proc.popen.returncode == 125
    assert proc.exit_code() is None and list(pids.iterdir()) == []
