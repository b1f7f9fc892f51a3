"""Today's code opens a queue of version 4 (main at b0ff62d), with nothing lost.

That queue kept every host's SSH login in columns of the hosts table, with
placeholders for the local host and a sentinel agent command for a SLURM
cluster; migration 5 moved the login into the options of the kinds that log
in. ``fixtures/queue-v4`` was written by that code
(``fixtures/make_queue_v4_fixture.py`` says how); ``expected.json`` holds what
it wrote. Each test works on a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli
from support.queuefiles import assert_rows_kept, jobs_read_back, rows, user_version

from trayapp.master.hosts import host_views
from trayapp.master.kinds import KINDS
from trayapp.master.kinds.login import SSHLogin
from trayapp.master.kinds.ssh import SSHKind
from trayapp.master.schema import SCHEMA_VERSION
from trayapp.master.slurm.options import SlurmOptions
from trayapp.master.store import Store
from trayapp.master.waits import declines_of
from trayapp.status import AttemptOutcome, TaskStatus

FIXTURE = Path(__file__).parent / "fixtures" / "queue-v4"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
SWEEP = EXPECTED["sweep"]


@pytest.fixture
def queue(tmp_path) -> Path:
    copy = tmp_path / "queue-v4"
    shutil.copytree(FIXTURE, copy)
    return copy / "master" / "queue.sqlite3"


def test_the_fixture_is_what_version_4_wrote(queue):
    # Read from a copy: SQLite opening the fixture itself would add files beside it.
    assert EXPECTED["queue_version"] == 4 and user_version(queue) == 4
    hosts = {h["name"]: h for h in EXPECTED["queue"]["hosts"]}
    # The shapes this upgrade is for: placeholders and a sentinel in the login columns.
    assert (hosts["local"]["address"], hosts["local"]["port"], hosts["local"]["agent_command"]) == (
        "this PC", 0, "(in-process)")
    assert hosts["hpc"]["agent_command"] == "(none: a SLURM cluster)"


def test_every_row_is_kept_and_the_login_moves_into_the_kinds_options(queue):
    Store(queue).close()
    assert user_version(queue) == SCHEMA_VERSION
    assert_rows_kept(EXPECTED["queue"], queue, dropped={})
    backup = queue.with_name("queue.sqlite3.v4.bak")
    assert user_version(backup) == 4
    assert {t: rows(backup, t) for t in EXPECTED["queue"]} == EXPECTED["queue"], "the backup is the file as it was"


def test_hosts_of_every_kind_read_back_with_all_their_fields(queue):
    store = Store(queue)
    assert {h.name: h.kind for h in store.hosts()} == {"local": "local", "lab-pc": "ssh", "old-laptop": "ssh",
                                                       "hpc": "slurm"}
    local, lab, laptop, hpc = (store.host(n) for n in ("local", "lab-pc", "old-laptop", "hpc"))

    assert local.options == {} and (local.state, local.info["slots"]) == ("ready", 4)
    assert SSHKind.login(lab) == SSHLogin("lab-pc", "192.0.2.10", 2222, "alice", "~/.ssh/id_ed25519",
                                          "/opt/sc/bin/sparecycles agent")
    assert (lab.slots, lab.state, lab.reason, lab.info["share"]) == (3, "busy", "in use: keyboard touched 20 s ago",
                                                                      0.75)
    assert SSHKind.login(laptop) == SSHLogin("old-laptop", "192.0.2.11", 22, "bob", None, "sparecycles agent")
    assert (laptop.state, laptop.reason) == ("unreachable", "[Errno 113] No route to host")
    assert SSHLogin.of(hpc) == SSHLogin("hpc", "login.hpc.example.org", 22, "alice", "~/.ssh/hpc_key", None)
    assert SlurmOptions.from_dict(hpc.options) == SlurmOptions(
        remote_root="/scratch/$USER/sc", partition="short", account="lab42", qos="normal", time_s=7200.0,
        mem_mb=4096, cpus_per_task=2, python="/opt/py311/bin/python3", setup="module load python/3.11",
        max_in_flight=100, throttle=20, poll_s=45.0)

    views = {v.name: v for v in host_views(store, master_id="m")}
    assert {n: v.where for n, v in views.items()} == {
        "local": "this PC", "lab-pc": "alice@192.0.2.10:2222", "old-laptop": "bob@192.0.2.11:22",
        "hpc": "alice@login.hpc.example.org:22"}
    assert views["lab-pc"].to_json()["trusted_pickles"] is True and views["hpc"].fields["pending"] == 1
    assert (views["lab-pc"].fields["address"], views["lab-pc"].fields["port"]) == ("192.0.2.10", 2222)
    assert "address" not in views["local"].fields, "this PC has no address to show"
    assert KINDS.get("slurm").key_endpoint(hpc) == ("login.hpc.example.org", 22)
    store.close()


def test_jobs_tasks_and_declines_read_back_and_the_queue_goes_on(queue):
    store = Store(queue)
    jobs = jobs_read_back(store, EXPECTED)

    sweep = jobs[EXPECTED["jobs"]["running"]]
    assert declines_of(store, sweep.seq) == {
        "old-laptop": ("requirements", "cannot install brian2>=2.5: no index reachable from old-laptop"),
        "hpc": ("memory", "asks for 1500 MB a task; the partition allows 1024")}
    assert [a.token for a in store.open_attempts("lab-pc")] == SWEEP["on_lab"]
    assert [a.token for a in store.open_attempts("hpc")] == [SWEEP["on_hpc"]]
    assert [a.token for a in store.open_attempts("local")] == [SWEEP["dispatched_local"]]

    claims = store.claim("lab-pc", 5)
    assert [(c.job_id, c.idx) for c in claims] == [(sweep.id, 4), (sweep.id, 5), (sweep.id, 6)]
    assert {(c.requires, c.memory_mb, c.time_limit_s) for c in claims} == {(("brian2>=2.5", "scipy"), 1500, 3600.0)}
    assert store.finish_attempt(claims[0].attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0) is TaskStatus.DONE
    store.close()


def test_hosts_list_on_the_upgraded_queue_shows_every_host_where_it_is(home):
    # What a user sees first after upgrading: the CLI on the queue their install has.
    shutil.copyfile(FIXTURE / "master" / "queue.sqlite3", home.queue_db)
    listed = {row["name"]: row for row in json.loads(cli("hosts", "list", "--json", check=True).stdout)}
    assert {n: r["kind"] for n, r in listed.items()} == {"hpc": "slurm", "lab-pc": "ssh", "local": "local",
                                                        "old-laptop": "ssh"}
    assert (listed["lab-pc"]["address"], listed["lab-pc"]["port"], listed["lab-pc"]["cap"]) == ("192.0.2.10", 2222, 3)
    assert (listed["hpc"]["address"], listed["hpc"]["python"]) == ("login.hpc.example.org", "/opt/py311/bin/python3")
    assert "address" not in listed["local"] and listed["lab-pc"]["trusted_pickles"] is True
    assert user_version(home.queue_db) == SCHEMA_VERSION
