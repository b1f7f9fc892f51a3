"""The real command line, run as a child process, as users and scripts run it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import ECHO_TASK, cli, make_job


def submit_json(*args: str) -> dict:
    result = cli("submit", *args, "--json", check=True)
    return json.loads(result.stdout)


@pytest.mark.slow
def test_submit_wait_status_results(home, tmp_path):
    folder, params = make_job(tmp_path / "sweep", ECHO_TASK, params=[{"x": 1}, {"x": 2}, {"x": 3}])
    sub = submit_json(str(folder), "--params", str(params))
    assert sub["tasks"] == 3 and sub["dispatcher_started"]
    waited = cli("wait", sub["job"], "--timeout", "60")
    assert waited.returncode == 0, waited.stderr
    # Piped output gets plain progress lines, not a redrawn bar.
    assert re.search(rf"sweep-{sub['job']}: 3/3 done", waited.stderr)
    assert "\r" not in waited.stderr

    status = json.loads(cli("status", sub["job"], "--json", check=True).stdout)
    assert status["status"] == "done" and status["counts"]["done"] == 3
    assert [t["params"] for t in status["tasks"]] == [{"x": 1}, {"x": 2}, {"x": 3}]
    results = cli("results", sub["job"], check=True).stdout.strip()
    assert results == sub["results"]
    assert json.loads((Path(results) / "2" / "out.json").read_text())["params"] == {"x": 3}

    listing = cli("status", check=True).stdout
    assert re.search(rf"^{sub['job']}\s+sweep\s+done\s+3\s+0\s+3\s", listing, re.MULTILINE)
    assert json.loads(cli("status", "--json", check=True).stdout)[0]["id"] == sub["job"]


@pytest.mark.slow
def test_status_of_a_failed_job_shows_exit_code_and_stderr_tail(home, tmp_path):
    body = "import sys\nprint('bad parameter', file=sys.stderr)\nsys.exit(4)\n"
    folder, _ = make_job(tmp_path / "broken", body)
    sub = submit_json(str(folder), "--name", "broken-run")
    waited = cli("wait", sub["job"], "--timeout", "60")
    assert waited.returncode == 1
    assert "1 failed" in waited.stderr
    status = cli("status", sub["job"], check=True).stdout
    # The golden shape of a failed job's status: header, folder, results, task table, failure detail.
    expected = (
        f"job {sub['job']} (broken-run): failed, 0/1 done, 1 failed\n"
        f"folder  {folder} (main: main.py)\n"
        f"results {sub['results']}\n"
        "TASK  STATE   HOST   EXIT  PARAMS\n"
        "0     failed  local  4     -\n"
        "\n"
        "task 0 failed: exit code 4; stderr ends with:\n"
        "bad parameter\n"
    )
    assert status == expected


@pytest.mark.slow
def test_wait_times_out_with_exit_code_2(home, tmp_path):
    folder, _ = make_job(tmp_path / "never", "print('hi')\n")
    sub = submit_json(str(folder), "--no-start")
    waited = cli("wait", sub["job"], "--timeout", "0.5", "--quiet")
    assert waited.returncode == 2
    assert "timed out" in waited.stderr


@pytest.mark.slow
def test_cancel_from_the_command_line(home, tmp_path):
    folder, params = make_job(tmp_path / "slow", "import time; time.sleep(60)\n", params=[{}] * 3)
    sub = submit_json(str(folder), "--params", str(params), "--no-start")
    out = cli("cancel", sub["job"], check=True).stdout
    assert "cancelled 3 unfinished tasks" in out
    assert cli("wait", sub["job"], "--timeout", "5", "--quiet").returncode == 1
    assert json.loads(cli("status", sub["job"], "--json").stdout)["status"] == "cancelled"
    retried = cli("retry", sub["job"], check=True).stdout
    assert "queued 3 failed or cancelled tasks" in retried


@pytest.mark.parametrize("setup,args,problem,fix", [
    (lambda t: None, ["{t}/missing"], "does not exist", "check the path"),
    (lambda t: (t / "file.py").write_text("x"), ["{t}/file.py"], "is a file, not a job folder", "folder"),
    (lambda t: (t / "empty").mkdir(), ["{t}/empty"], "no main script", "add main.py"),
    (lambda t: [make_job(t / "two", "", main_name="main_a.py"), make_job(t / "two", "", main_name="main_b.py")],
     ["{t}/two"], "several main scripts: main_a.py, main_b.py", "--main"),
    (lambda t: [make_job(t / "j", ""), (t / "p.json").write_text('[{"a": 1},\n {"a": 2,}\n]')],
     ["{t}/j", "--params", "{t}/p.json"], "p.json", ""),
    (lambda t: [make_job(t / "j", ""), (t / "p.json").write_text('[{"a": 1}, 5]')],
     ["{t}/j", "--params", "{t}/p.json"], "#2", ""),
    (lambda t: [make_job(t / "j", ""), (t / "p.csv").write_text("a,b\n1,2\n3\n")],
     ["{t}/j", "--params", "{t}/p.csv"], "p.csv line 3", ""),
    (lambda t: [make_job(t / "j", ""), (t / "p.toml").write_text("a = [1, 2\nb = 3\n")],
     ["{t}/j", "--params", "{t}/p.toml"], "p.toml", "line 2"),
])
def test_bad_input_is_one_clear_message_and_queues_nothing(home, tmp_path, setup, args, problem, fix):
    setup(tmp_path)
    result = cli("submit", *[a.format(t=tmp_path) for a in args])
    assert result.returncode == 3, result.stderr
    message = result.stderr
    assert problem in message
    assert fix in message
    assert "Traceback" not in message
    assert "fix:" in message
    assert json.loads(cli("status", "--json").stdout) == []  # nothing half-queued


def test_json_syntax_error_names_file_and_line(home, tmp_path):
    make_job(tmp_path / "j", "")
    (tmp_path / "p.json").write_text('[{"a": 1},\n {"a": 2,}\n]')
    result = cli("submit", str(tmp_path / "j"), "--params", str(tmp_path / "p.json"))
    assert re.search(r"p\.json.*line 2", result.stderr), result.stderr


def test_unknown_job_and_bad_duration(home):
    result = cli("status", "nosuchjob")
    assert result.returncode == 3
    assert "no job 'nosuchjob'" in result.stderr and "sparecycles status" in result.stderr
    result = cli("wait", "x", "--timeout", "soon")
    assert result.returncode == 2 and "soon" in result.stderr


@pytest.mark.slow
def test_second_dispatcher_for_the_same_home_is_refused(home, tmp_path):
    first = subprocess.Popen([sys.executable, "-m", "sparecycles", "master"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        from conftest import wait_until

        wait_until(lambda: (home.dispatcher_lock.exists() and home.dispatcher_lock.read_text().strip()
                            == str(first.pid)), what="the first dispatcher to take the lock")
        second = cli("master", timeout=30)
        assert second.returncode == 3
        assert "already running" in second.stderr and str(first.pid) in second.stderr
        assert cli("master", "--quiet-if-running", timeout=30).returncode == 0
    finally:
        first.terminate()
        first.wait(20)


@pytest.mark.slow
def test_wait_on_a_terminal_draws_a_progress_bar(home, tmp_path):
    folder, params = make_job(tmp_path / "tty", ECHO_TASK, params=[{}] * 2)
    sub = submit_json(str(folder), "--params", str(params))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal's size
    proc = subprocess.Popen([sys.executable, "-m", "sparecycles", "wait", sub["job"], "--timeout", "60"],
                            stdin=follower, stdout=follower, stderr=follower, env=os.environ.copy())
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(60) == 0
    os.close(leader)
    text = output.decode(errors="replace")
    assert "100%" in text and "2/2" in text and "\r" in text


def test_resource_requests_not_acted_on_are_said_at_submit(home, tmp_path):
    # memory is acted on (each task's cap, tests/test_sandbox.py); cores > 1 is not
    folder, params = make_job(tmp_path / "big", ECHO_TASK, params=[{"x": 1}],
                              extra_files={"sparecycles.toml": '[resources]\nmemory = "2 GB"\ncores = 4\n'})
    result = cli("submit", str(folder), "--params", str(params), "--no-start", "--json", check=True)
    notes = json.loads(result.stdout)["notes"]
    assert len(notes) == 1 and "cores = 4" in notes[0], notes
    assert "sparecycles: note: sparecycles.toml asks for cores = 4" in result.stderr
    plain, _ = make_job(tmp_path / "plain", ECHO_TASK, extra_files={"sparecycles.toml": "[resources]\ncores = 1\n"})
    quiet = cli("submit", str(plain), "--no-start", check=True)
    assert "note:" not in quiet.stderr and json.loads(
        cli("submit", str(plain), "--no-start", "--json", check=True).stdout)["notes"] == []
