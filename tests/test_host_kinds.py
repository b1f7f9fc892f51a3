"""Host kinds: a new kind is one module plus one registration.

The throwaway ``batch`` kind below stands for a batch cluster: its driver is
not a protocol slave's HostDriver but a thread of its own that claims tasks
from the queue and "runs" them by writing their results. Registered in a copy
of the registry, the dispatcher, the hosts service and ``hosts add``'s parser
take it with no change of theirs.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import ECHO_TASK, cli, make_job

from trayapp.cli.hosts import add_host_verbs
from trayapp.errors import UserError
from trayapp.job.submit import submit_job
from trayapp.master.dispatcher import Dispatcher
from trayapp.master.hosts import Hosts
from trayapp.master.kinds import KINDS, AddOption, Column, HostKind, KindContext
from trayapp.master.store import HostRecord
from trayapp.status import AttemptOutcome, JobStatus


class BatchDriver:
    """Runs every task it can claim at once by writing its results, as a
    cluster would after its batch system ran them; reports what is in flight."""

    def __init__(self, host: HostRecord, context: KindContext):
        self.host = host
        self.context = context
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batch-{host.name}", daemon=True)
        self.started = self.retired = False

    def start(self) -> None:
        self.started = True
        self._thread.start()

    def stop(self, *, retire: bool = False) -> None:
        self.retired = self.retired or retire
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_connected(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        store = self.context.open_store()
        while not self._stopping.wait(0.05):
            claims = store.claim(self.host.name, 3)
            store.set_host_state(self.host.name, "working" if claims else "ready",
                                 info={"in_flight": len(claims), "pending": store.count_queued()}, seen=True)
            for claim in claims:
                store.mark_running(claim.attempt_id, 0)
                out = Path(claim.results_dir) / str(claim.idx)
                out.mkdir(parents=True, exist_ok=True)
                (out / "out.json").write_text(json.dumps({"params": claim.params,
                                                          "partition": self.host.options["partition"]}))
                store.finish_attempt(claim.attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0)


class BatchKind(HostKind):
    name = "batch"
    summary = "a batch cluster (a test's stand-in)"
    options = (AddOption("--partition", "where its jobs queue", required=True),
               AddOption("--slots", "at most this many of our tasks at once", type=int))
    columns = (Column("in_flight", "In flight"), Column("pending", "Pending"), Column("partition", "Partition"))

    def record(self, values: dict) -> dict:
        return {"slots": values["slots"], "options": {"partition": values["partition"]}}

    def build_driver(self, host: HostRecord, context: KindContext) -> BatchDriver:
        self.driver = BatchDriver(host, context)
        return self.driver

    def describe(self, host, facts) -> dict:
        return {"in_flight": host.info.get("in_flight"), "pending": host.info.get("pending"),
                "partition": host.options["partition"], "running": facts.running}


def test_the_dispatcher_drives_a_kind_registered_in_one_line(app, tmp_path):
    batch = BatchKind()
    kinds = KINDS.with_kind(batch)
    app.config = replace(app.config, run_locally=False)  # only the cluster runs tasks
    context = app.kind_context()
    Hosts(app.store, context, kinds).add("farm", "batch", {"partition": "short"})
    params = [{"x": i} for i in range(7)]
    folder, params_file = make_job(tmp_path / "sweep", ECHO_TASK, params=params)
    job = submit_job(app.store, app.home, app.config, folder, params=params_file).job

    dispatcher = Dispatcher(app.store, context, kinds=kinds)
    threading.Timer(30, dispatcher.request_stop).start()  # a kind not driven fails the test, not hangs it
    stats = dispatcher.run(until_idle=0.3)

    assert app.store.job(job.id).status is JobStatus.DONE and stats.succeeded == 7
    assert {a["host"] for a in app.store.attempts(job.seq)} == {"farm"}
    for i, p in enumerate(params):
        assert json.loads((Path(job.results_dir) / str(i) / "out.json").read_text()) == {"params": p,
                                                                                    "partition": "short"}
    assert batch.driver.started and not batch.driver._thread.is_alive(), "the dispatcher stops what it started"
    row = {v.name: v for v in Hosts(app.store, context, kinds).rows()}["farm"]
    assert (row.kind, row.state, row.fields["partition"], row.fields["pending"]) == ("batch", "ready", "short", 0)
    cells = dict(zip((c.key for c in kinds.columns()), row.cells(kinds.columns())))
    assert (cells["in_flight"], cells["pending"], cells["partition"]) == ("0", "0", "short")
    assert cells["slots"] is None and cells["brian"] is None  # not a cluster's
    assert "batch" not in [k.name for k in KINDS], "the shared registry is untouched"


def test_a_removed_host_of_any_kind_is_retired(app, tmp_path):
    batch = BatchKind()
    kinds = KINDS.with_kind(batch)
    app.config = replace(app.config, run_locally=False)
    context = app.kind_context()
    hosts = Hosts(app.store, context, kinds)
    hosts.add("farm", "batch", {"partition": "long"})
    dispatcher = Dispatcher(app.store, context, kinds=kinds)
    dispatcher._refresh_hosts()
    assert set(dispatcher.drivers) == {"farm"} and batch.driver.started
    hosts.remove("farm")
    dispatcher._refresh_hosts()
    assert dispatcher.drivers == {} and batch.driver.retired
    batch.driver.join(5)


def test_hosts_add_parses_each_kinds_own_options():
    kinds = KINDS.with_kind(BatchKind())
    parser = argparse.ArgumentParser()
    add_host_verbs(parser.add_subparsers(dest="verb"), kinds)
    args = parser.parse_args(["add", "farm", "--kind", "batch", "--partition", "short", "--slots", "40"])
    assert (args.kind, args.partition, args.slots, args.port) == ("batch", "short", 40, None)
    assert parser.parse_args(["add", "pc"]).kind == "ssh"


def test_a_kind_refuses_options_it_does_not_take_and_wants_its_required_ones(app):
    kinds = KINDS.with_kind(BatchKind())
    hosts = Hosts(app.store, app.kind_context(), kinds)
    with pytest.raises(UserError, match="--port is not an option of batch hosts") as refused:
        hosts.add("farm", "batch", {"partition": "short", "port": 22})
    assert "--partition, --slots" in refused.value.fix
    with pytest.raises(UserError, match="--partition is required for batch hosts"):
        hosts.add("farm", "batch", {})
    with pytest.raises(UserError, match="--host is required for ssh hosts"):
        hosts.add("pc", "ssh", {"host": None})
    assert app.store.hosts() == []


def test_registering_a_clashing_kind_is_a_programming_error():
    class Clash(BatchKind):
        name = "clash"
        options = (AddOption("--port", "a port of another type"),)  # ssh's --port is a number

    with pytest.raises(ValueError, match="--port"):
        KINDS.with_kind(Clash())
    with pytest.raises(ValueError, match="registered already"):
        KINDS.with_kind(type("Again", (BatchKind,), {"name": "ssh"})())


def test_hosts_add_with_an_unknown_kind_lists_the_known_ones(home):
    result = cli("hosts", "add", "farm", "--kind", "slurmish", "--host", "127.0.0.1")
    assert result.returncode == 3, result.stderr
    assert "unknown host kind 'slurmish'" in result.stderr and "use one of: ssh" in result.stderr
    assert "Traceback" not in result.stderr
    refused = cli("hosts", "add", "me", "--kind", "local")
    assert refused.returncode == 3 and "hosts of kind 'local' are not added by hand" in refused.stderr
    assert json.loads(cli("hosts", "list", "--json", check=True).stdout) == []


def test_hosts_list_shows_the_kind_and_keeps_the_old_json_fields(home):
    cli("hosts", "add", "pc", "--host", "127.0.0.1", "--port", "2222", "--slots", "3", check=True)
    (row,) = json.loads(cli("hosts", "list", "--json", check=True).stdout)
    old = {"name", "address", "port", "user", "state", "reason", "slots", "running", "running_all_masters",
           "last_seen", "python", "brian", "share"}
    assert old <= set(row) and (row["kind"], row["port"], row["cap"]) == ("ssh", 2222, 3)
    text = cli("hosts", "list", check=True).stdout.splitlines()
    assert text[0].split()[:3] == ["HOST", "KIND", "STATE"] and text[1].split()[:3] == ["pc", "ssh", "unknown"]


def test_this_pcs_own_cores_cannot_be_removed(app):
    app.store.ensure_local_host("local")
    with pytest.raises(UserError, match="'local' is this PC's own cores; it cannot be removed"):
        app.hosts().remove("local")
    assert [h.name for h in app.store.hosts()] == ["local"]


def test_hosts_test_walks_an_ssh_host_from_its_key_to_the_slaves_hello(pool):
    pool.add_slave("a")
    found = cli("hosts", "test", "a")
    assert found.returncode == 0, found.stderr
    lines = dict(line.split(": ", 1) for line in found.stdout.splitlines())
    assert lines["host key"].endswith(f" {pool.sshd.host_key_fingerprint()}, trusted"), found.stdout
    assert "2 slot(s)" in lines["slave"] and "Python 3" in lines["slave"], found.stdout
    assert lines["a"] == "ok"


def test_hosts_test_stops_at_the_first_problem_and_names_the_fix(pool):
    pool.add_slave("new", trust=False, start=False)
    untrusted = cli("hosts", "test", "new")
    assert untrusted.returncode == 3 and "reachable: 127.0.0.1" in untrusted.stdout
    assert "not trusted yet" in untrusted.stderr and "sparecycles hosts trust new" in untrusted.stderr
    pool.add_slave("idle", start=False)
    offline = cli("hosts", "test", "idle")
    assert offline.returncode == 3 and "login: " in offline.stdout
    assert "no slave daemon is running" in offline.stderr and "Traceback" not in offline.stderr


def test_this_pcs_engine_is_built_with_the_same_settings_as_the_slave_daemons(app):
    from trayapp.slave.builder import build_engine

    app.config = replace(app.config, min_free_mb=1234, max_results_mb=77, master_weights={"ana@pc": 2},
                         master_caps={"ana@pc": 1}, fair_share_half_life_s=60.0)
    local = app.kind_context().build_local_engine()
    daemon = build_engine(app.config, app.home, app.identity(), app.home.spool_dir)
    assert local.settings.in_process and not daemon.settings.in_process
    assert replace(local.settings, in_process=False) == daemon.settings
    assert local.settings.min_free_mb == 1234 and local.settings.caps == {"ana@pc": 1}
    assert local.fairshare.half_life_s == daemon.fairshare.half_life_s == 60.0
    assert local.spool.root != daemon.spool.root
