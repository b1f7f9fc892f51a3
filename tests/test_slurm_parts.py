"""The SLURM kind's pieces that need no cluster: reading squeue, options, the setup guard."""

from __future__ import annotations

import subprocess

import pytest

from trayapp.errors import UserError
from trayapp.master.slurm.options import SlurmOptions, slurm_minutes
from trayapp.master.slurm.script import SETUP_FAILED, with_setup
from trayapp.master.slurm.squeue import config_int, parse_config, parse_squeue


def test_squeue_lines_become_elements_by_array_and_index():
    text = ("12|0|RUNNING|None|sc-abc\n12|1|PENDING|JobArrayTaskLimit|sc-abc\n"
            "13|4|NODE_FAIL|None|sc-def\n99|N/A|RUNNING|None|someone else's job|with a bar\n")
    found = parse_squeue(text)
    assert set(found) == {("12", 0), ("12", 1), ("13", 4)}
    assert found[("12", 1)].state == "PENDING" and found[("12", 1)].reason == "JobArrayTaskLimit"
    assert found[("13", 4)].name == "sc-def"


def test_scontrol_config_values_are_read():
    config = parse_config("Configuration data as of x\nMaxArraySize            = 5\nMinJobAge = 30 sec\n"
                          "SLURM_VERSION = 22.05.8\n")
    assert config_int(config, "MaxArraySize") == 5 and config_int(config, "MinJobAge") == 30
    assert config_int(config, "MaxSubmitJobs") is None


@pytest.mark.parametrize("seconds, text", [(1, "0-00:01:00"), (60, "0-00:01:00"), (61, "0-00:02:00"),
                                           (7200, "0-02:00:00"), (90000, "1-01:00:00")])
def test_time_limits_round_up_to_whole_minutes(seconds, text):
    assert slurm_minutes(seconds) == text


def test_a_jobs_own_time_limit_and_memory_win_over_the_hosts():
    options = SlurmOptions.from_text(remote_root="~/sc", time="2h", mem="2G", partition="short", cpus_per_task=2)
    assert options.sbatch_options(None) == ["--no-requeue", "--cpus-per-task=2", "--partition=short",
                                            "--time=0-02:00:00", "--mem=2048M"]
    assert "--time=0-00:10:00" in options.sbatch_options(600)
    assert options.sbatch_options(600, 512)[-2:] == ["--time=0-00:10:00", "--mem=512M"]


@pytest.mark.parametrize("fields, says", [
    ({"remote_root": " "}, "--remote-root is empty"),
    ({"remote_root": "x", "throttle": 0}, "--throttle must be at least 1"),
    ({"remote_root": "x", "partition": "a b"}, "is not a SLURM partition name"),
    ({"remote_root": "x", "time": "soon"}, "--time:"),
])
def test_bad_options_are_refused_with_a_reason(fields, says):
    with pytest.raises(UserError, match=says):
        SlurmOptions.from_text(**fields)


def test_options_survive_the_queue():
    options = SlurmOptions.from_text(remote_root="/scratch/a", account="lab", setup="module load x", poll_s=5)
    assert SlurmOptions.from_dict(options.to_dict() | {"from_a_newer_release": 1}) == options


def bash(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, timeout=30)


def test_a_failing_setup_line_stops_the_command_even_when_it_is_not_the_last():
    result = bash(with_setup("no-such-command-here x; export KEPT=1", "echo ran"))
    assert result.returncode == SETUP_FAILED and "ran" not in result.stdout
    assert "the --setup lines failed" in result.stderr and "no-such-command-here" in result.stderr


def test_a_working_setup_keeps_its_exports_and_says_nothing():
    result = bash(with_setup("echo noise; export KEPT=yes", 'echo "kept=$KEPT"'))
    assert result.returncode == 0 and result.stdout == "kept=yes\n"
