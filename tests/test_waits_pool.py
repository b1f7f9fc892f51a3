"""No job waits in silence: two real slaves behind a real sshd, one paused by its
user, the other declining the job. Plain ``status`` and ``wait`` say why; a
requirement no index has fails the job at once instead of waiting for the
paused PC.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from conftest import cli, make_job, start_master, stop_process, wait_until
from fakeindex import FakeIndex, make_wheel

pytestmark = [pytest.mark.pool, pytest.mark.slow]


@pytest.fixture(autouse=True)
def sandbox_on(monkeypatch):
    monkeypatch.delenv("SPARECYCLES_SANDBOX", raising=False)


@pytest.fixture
def lab(pool, tmp_path):
    """lab-07 installs from the lab's index (a real one on 127.0.0.1); lab-08 is paused for an hour."""
    with FakeIndex(tmp_path / "index") as index:
        index.add("fakebrian", make_wheel(tmp_path / "wheels", "fakebrian", "1.0"))
        pool.add_slave("lab-07", slots=1, config=f'package_index = "{index.url}"\nmax_task_memory_mb = 200\n')
        paused = pool.add_slave("lab-08", slots=1)
        result = subprocess.run([sys.executable, "-m", "sparecycles", "pause", "--for", "1h", "--json"],
                                capture_output=True, text=True, timeout=60, env={**paused.env})
        assert result.returncode == 0, result.stderr
        until = time.strftime("%H:%M", time.localtime(json.loads(result.stdout)["paused_until"]))
        master = start_master("--no-local")
        try:
            wait_until(lambda: "paused until" in cli("hosts", "list").stdout, timeout=60,
                       what="the master to see lab-08 paused")
            yield until
        finally:
            print(stop_process(master)[-3000:])


def submit(folder) -> str:
    return json.loads(cli("submit", str(folder), "--no-start", "--json", check=True).stdout)["job"]


def test_a_requirement_that_exists_nowhere_fails_at_once_naming_it(lab, tmp_path):
    folder, _ = make_job(tmp_path / "needs", "print(1)\n",
                         extra_files={"requirements.txt": "sparecycles-no-such-package == 1.0\n"})
    began = time.monotonic()
    job = submit(folder)
    waiter = subprocess.Popen([sys.executable, "-m", "sparecycles", "wait", job, "--timeout", "120"],
                              stderr=subprocess.PIPE, text=True)
    wait_until(lambda: "sparecycles-no-such-package" in cli("status", job).stdout, timeout=60,
               what="plain status to name the package")
    _, err = waiter.communicate(timeout=90)
    assert waiter.returncode == 1, err
    assert time.monotonic() - began < 60, "wait must end within a minute, not wait for the paused PC"
    status = cli("status", job).stdout
    assert "sparecycles-no-such-package cannot be installed" in status and "lab-07 declined" in status


def test_a_job_declined_for_what_a_host_could_change_waits_and_says_for_whom(lab, tmp_path):
    folder, _ = make_job(tmp_path / "big", "print(1)\n",
                         extra_files={"sparecycles.toml": '[resources]\nmemory = "500 MB"\n'})
    job = submit(folder)
    wait_until(lambda: "declined by lab-07" in cli("status", job).stdout, timeout=60,
               what="status to say lab-07 declined")
    status = cli("status", job).stdout
    print(status)
    line = next(line for line in status.splitlines() if " wait" in line and "declined" in line)
    assert re.search(r"declined by lab-07: the job asks for 500 MB of memory per task; this PC lends at most 200 MB",
                     line), status
    assert f"lab-08 paused until {lab}" in line, status
    listing = cli("status").stdout
    assert f"{job} waits: declined by lab-07" in listing
    as_json = json.loads(cli("status", job, "--json").stdout)
    assert as_json["status"] == "queued"
    assert {(w["code"], w["host"]) for w in as_json["waiting"]} == {("declined", "lab-07"), ("paused", "lab-08")}
    assert as_json["tasks"][0]["why"] == as_json["why"]
    waited = cli("wait", job, "--timeout", "5")
    print(waited.stderr)
    assert waited.returncode == 2
    assert waited.stderr.count("waits: declined by lab-07") == 1, waited.stderr
