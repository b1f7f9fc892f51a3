"""Hosts that explain themselves: ``hosts test`` names the step that failed and
its likely fix, exits non-zero for a slave that cannot run tasks, and ``hosts
list`` keeps each reason on its own line. A real sshd on 127.0.0.1, real slaves."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import cli, start_master, stop_process, wait_until
from support.net import free_port
from support.pool import register_slave
from support.daemons import SlaveDaemon

pytestmark = [pytest.mark.pool]


@pytest.fixture(autouse=True)
def sandbox_on(monkeypatch):
    monkeypatch.delenv("SPARECYCLES_SANDBOX", raising=False)


def path_without_bwrap(folder: Path) -> str:
    """A PATH with every program of this machine's except bubblewrap (a PC without it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for directory in os.environ["PATH"].split(os.pathsep):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name != "bwrap" and not (folder / name).exists():
                (folder / name).symlink_to(Path(directory) / name)
    return str(folder)


def test_hosts_test_fails_for_a_slave_without_bubblewrap_and_says_why(pool, tmp_path):
    home = tmp_path / "slave-nobwrap"
    slave = SlaveDaemon(home, 1, env={"PATH": path_without_bwrap(tmp_path / "bin")}).start()
    pool.slaves["nobwrap"] = slave
    register_slave("nobwrap", pool.sshd, slave)
    tested = cli("hosts", "test", "nobwrap")
    assert tested.returncode == 3, tested.stdout + tested.stderr
    assert "reachable: " in tested.stdout and "login: " in tested.stdout and "nobwrap: ok" not in tested.stdout
    assert "sparecycles: slave: nobwrap answers but cannot run tasks: bubblewrap (bwrap) is not installed" \
        in tested.stderr, tested.stderr
    pool.add_slave("fine", slots=1)
    assert cli("hosts", "test", "fine").returncode == 0


def test_a_refused_connection_names_the_port(home):
    port = free_port()  # nothing listens there
    cli("hosts", "add", "lab-09", "--host", "127.0.0.1", "--port", str(port), check=True)
    tested = cli("hosts", "test", "lab-09")
    assert tested.returncode == 3
    assert f"reachable: nothing answers SSH at 127.0.0.1:{port} (connection refused)" in tested.stderr
    assert f"is sshd running on 127.0.0.1, on port {port}?" in tested.stderr and "--port" in tested.stderr


def test_a_key_the_lender_did_not_authorize_names_slave_authorize_and_its_fingerprint(home, sshd, tmp_path):
    key = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=60)
    shown = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True).stdout
    fingerprint = shown.split()[1]
    cli("hosts", "add", "lab-10", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user, "--key", str(key),
        check=True)
    cli("hosts", "trust", "lab-10", "--fingerprint", sshd.host_key_fingerprint(), check=True)
    tested = cli("hosts", "test", "lab-10")
    assert tested.returncode == 3
    assert "host key: " in tested.stdout
    assert "sparecycles: login: " in tested.stderr
    assert f"has the lender run `sparecycles slave authorize` with this key? its fingerprint is {fingerprint}" \
        in tested.stderr, tested.stderr


@pytest.mark.slow
def test_hosts_list_keeps_reasons_on_their_own_line_and_trust_refreshes_the_state(pool, tmp_path):
    pool.add_slave("lab-11", slots=1, trust=False)
    master = start_master("--no-local")
    try:
        wait_until(lambda: "not trusted" in cli("hosts", "list").stdout, timeout=60,
                   what="the master to find the key untrusted")
        listing = cli("hosts", "list", check=True).stdout.splitlines()
        row = next(line for line in listing if line.startswith("lab-11"))
        assert row.split()[2] == "unreachable" and "trusted" not in row, listing
        assert any(line.startswith("  lab-11 unreachable: ") and "not trusted" in line for line in listing)
        assert max(len(line) for line in listing) < 120 or "trusted" in listing[-1]
        cli("hosts", "trust", "lab-11", "--fingerprint", pool.sshd.host_key_fingerprint(), check=True)
        assert "not trusted" not in cli("hosts", "list", check=True).stdout, "stale right after trust"
        row = {h["name"]: h for h in json.loads(cli("hosts", "list", "--json", check=True).stdout)}["lab-11"]
        assert row["state"] in ("connecting", "ready"), row
        wait_until(lambda: {h["name"]: h for h in json.loads(cli("hosts", "list", "--json").stdout)}
                   ["lab-11"]["state"] == "ready", timeout=60, what="the master to connect")
    finally:
        print(stop_process(master)[-2000:])
