"""Small things a careless user hits at the command line: long or multi-line
job names, a closed pipe, and many submits at once."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ECHO_TASK, cli, make_job


@pytest.mark.parametrize("name, phrase", [("x" * 300, "more than 100"), ("two\nlines", "line break")])
def test_a_job_name_that_cannot_work_is_refused(home, tmp_path, name, phrase):
    folder, _ = make_job(tmp_path / "job", ECHO_TASK)
    result = cli("submit", str(folder), "--name", name, "--no-start")
    assert result.returncode == 3 and phrase in result.stderr, result.stderr


@pytest.mark.slow
def test_status_into_a_closed_pipe_prints_no_traceback(home, tmp_path):
    for n in range(30):
        folder, _ = make_job(tmp_path / f"job{n}", ECHO_TASK)
        cli("submit", str(folder), "--no-start", check=True)
    pipeline = subprocess.run(f"{sys.executable} -m sparecycles status | head -1", shell=True,
                              capture_output=True, text=True, timeout=60)
    assert pipeline.stdout.startswith("JOB"), pipeline.stdout
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr, pipeline.stderr


@pytest.mark.slow
def test_many_submits_at_once_start_one_dispatcher(home, tmp_path):
    folder, _ = make_job(tmp_path / "job", "print('hi')\n")
    submits = [subprocess.Popen([sys.executable, "-m", "sparecycles", "submit", str(folder)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(12)]
    finished = [p.communicate(timeout=120) for p in submits]
    assert all(p.returncode == 0 for p in submits), [err for p, (_, err) in zip(submits, finished) if p.returncode]
    outputs = [out for out, _ in finished]
    assert sum("started a background dispatcher" in out for out in outputs) == 1, outputs


@pytest.mark.pool
def test_a_changed_host_key_is_not_replaced_by_yes_alone(pool, home):
    from test_pool_faults import replace_host_key


    pool.add_slave("a", start=False)
    replace_host_key(pool.sshd, "ed25519")
    before = home.known_hosts.read_bytes()
    blind = cli("hosts", "trust", "a", "--replace", "--yes", input_text="")
    assert blind.returncode == 3 and "--fingerprint" in blind.stderr, (blind.stdout, blind.stderr)
    assert home.known_hosts.read_bytes() == before
    checked = cli("hosts", "trust", "a", "--replace", "--fingerprint", pool.sshd.host_key_fingerprint())
    assert checked.returncode == 0, checked.stderr


def test_a_host_whose_secret_cannot_be_stored_is_not_left_added(home):
    result = cli("hosts", "add", "lab-07", "--host", "127.0.0.1", "--ask-secret", input_text="hunter2\n",
                 env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert result.returncode == 3 and "keyring" in result.stderr, result.stderr
    assert "lab-07" not in cli("hosts", "list", "--json").stdout
