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


# ----- hostile values: what `hosts add --kind slurm` takes reaches a shell on the cluster -----

class LocalBash:
    """The login node's shell, as :class:`trayapp.wire.ssh.SSHShell` runs it (``bash -s``), on this PC."""

    def run(self, script: str, timeout: float = 120.0):
        from trayapp.wire.ssh import CommandResult

        done = bash(script)
        return CommandResult(done.returncode, done.stdout, done.stderr)


def run_wrapper(tmp_path, options: SlurmOptions):
    """One element of a job array as SLURM would run it: the generated batch script under bash."""
    from trayapp.master.slurm.script import Layout, wrapper
    from trayapp.master.store import Claim

    layout = Layout(str(tmp_path / "remote"))
    chunk = tmp_path / "remote" / "chunks" / "c1"
    chunk.mkdir(parents=True)
    (chunk / "tasks.tsv").write_text('tok1\t0\t{}\t-\n')
    (tmp_path / "remote" / "jobs" / ("a" * 64)).mkdir(parents=True)
    claim = Claim(1, "tok1", "job1", "j", 1, 0, {}, "main.py", f"/x/{'a' * 64}.tar", str(tmp_path / "res"), None)
    script = tmp_path / "run.sh"
    script.write_text(wrapper(layout, options, "c1", claim))
    subprocess.run(["bash", str(script)], env={"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "0",
                                               "SLURM_ARRAY_JOB_ID": "7", "HOME": str(tmp_path)},
                   capture_output=True, text=True, timeout=60, cwd=tmp_path)
    return tmp_path / "remote" / "tasks" / "tok1"


def test_python_with_a_command_substitution_is_text_in_the_batch_script_not_a_command(tmp_path, monkeypatch):
    import trayapp.master.slurm.options as options_module
    import trayapp.master.slurm.script as script_module

    marker = tmp_path / "pwned"
    # `hosts add` refuses such a value now (below); a queue written before holds it as it was typed.
    with monkeypatch.context() as unchecked:
        unchecked.setattr(options_module, "_check_path", lambda flag, value: None)
        options = SlurmOptions.from_text(remote_root="~/sc", python=f"py$(touch {marker})")
    # The old behaviour: the interpreter's name pasted into the script as it was typed.
    with monkeypatch.context() as old:
        old.setattr(script_module, "shell_word", lambda text: text)
        run_wrapper(tmp_path / "old", options)
    assert marker.exists(), "the attack should work with quoting off"
    marker.unlink()

    out = run_wrapper(tmp_path / "new", options)
    assert not marker.exists(), "--python ran a command on the cluster"
    said = (out / "wrapper_error").read_text()
    assert f"the task interpreter py$(touch {marker}) is not there" in said, said


def test_a_remote_root_that_closes_its_quotes_stays_a_folder_name(tmp_path, monkeypatch):
    import trayapp.master.slurm.cluster as cluster_module
    from trayapp.master.slurm.cluster import Cluster

    marker = tmp_path / "pwned"
    root = f'{tmp_path}/r"; touch {marker}; echo "'
    options = SlurmOptions.from_text(remote_root=root)
    # The old behaviour: root="<as typed>" in the login node's script.
    with monkeypatch.context() as old:
        old.setattr(cluster_module, "shell_word", lambda text: f'"{text}"')
        Cluster(LocalBash(), options, "cluster").prepare()
    assert marker.exists(), "the attack should work with the old quoting"
    marker.unlink()

    layout = Cluster(LocalBash(), options, "cluster").prepare()
    assert not marker.exists(), "--remote-root ran a command on the login node"
    assert layout.root == root and (tmp_path / f'r"; touch {marker}; echo "' / "tasks").is_dir()


def test_remote_root_and_python_keep_their_home_and_variables(tmp_path):
    from trayapp.master.slurm.cluster import Cluster

    options = SlurmOptions.from_text(remote_root="~/sc/$USER")
    bash_home = tmp_path / "home"
    bash_home.mkdir()
    script_env = f"export HOME={bash_home} USER=alice\n"

    class Shell(LocalBash):
        def run(self, script, timeout=120.0):
            return super().run(script_env + script, timeout)

    layout = Cluster(Shell(), options, "cluster").prepare()
    assert layout.root == str(bash_home / "sc" / "alice")


@pytest.mark.parametrize("args, says", [
    (["--remote-root", "/scratch/a\nb"], "--remote-root holds a line break"),
    (["--remote-root", "/scratch/$(id -u)"], "asks the shell for more than a variable"),
    (["--python", "python3\ntouch x"], "--python holds a line break"),
    (["--python", "`id`"], "asks the shell for more than a variable"),
    (["--python", "py$(touch x)"], "asks the shell for more than a variable"),
    (["--host", ""], "--host '' is empty"),
    (["--host", "a\nb"], "--host holds a line break"),
    (["--user", "me\nProxyCommand x"], "--user holds a line break"),
    (["--setup", "module load x\0"], "--setup holds control characters"),
])
def test_hosts_add_slurm_refuses_what_cannot_be_a_value_with_the_fix(home, args, says):
    from support.commands import sparecycles

    base = {"--host": "login.example.org", "--remote-root": "~/sc"}
    given = dict(zip(args[::2], args[1::2]))
    argv = [x for flag, value in {**base, **given}.items() for x in (flag, value)]
    if "\0" in "".join(argv):  # no argv can carry NUL: the option goes in through the API the window uses
        from trayapp.app import App

        with pytest.raises(UserError, match=says) as info:
            App(home).hosts().add("cluster", "slurm", {k.lstrip("-").replace("-", "_"): v for k, v in
                                                       {**base, **given}.items()})
        assert info.value.fix
        return
    result = sparecycles("hosts", "add", "cluster", "--kind", "slurm", *argv)
    assert result.returncode == 3 and says in result.stderr and "fix:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
