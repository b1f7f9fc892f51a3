"""The one table of settings: values of the wrong type, out of range or not
among the choices, and config files that are not text, are refused at start-up
with the setting, the value, what is allowed and the way back, never a
traceback; the README's table is the table's; a retired setting loads."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from trayapp.config import SETTINGS, Config, load_config, save_config
from trayapp.config_schema import BOTH, MASTER, SLAVE, markdown_table, with_table
from trayapp.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("line, phrase", [
    ("poll_interval_s = -1", "poll_interval_s' must be from 0.01 to 3600"),
    ("poll_interval_s = 0", "poll_interval_s' must be from 0.01"),
    ("nice = -5", "nice' must be from 0 to 19"),
    ("nice = 20", "nice' must be from 0 to 19"),
    ("max_results_mb = -1", "max_results_mb' must be 0 or more"),
    ("min_free_mb = -200", "min_free_mb' must be 0 or more"),
    ("default_retries = -1", "default_retries' must be from 0 to 100"),
    ("idle_after_s = nan", "idle_after_s' must be 0 or more"),
    ("suspend_grace_s = inf", "suspend_grace_s' must be 0 or more"),
    ("fair_share_half_life_s = 0", "fair_share_half_life_s' must be more than 0"),
    ("max_foreign_cpu = 0.0", "max_foreign_cpu' must be from 0 (excluded) to 1"),
    ("slots = -2", "slots' must be 1 or more, or 0 for all cores"),
    ("envs_max_gb = 0", "envs_max_gb' must be more than 0"),
    ("incoming_quota_gb = 0", "incoming_quota_gb' must be more than 0"),
    ("incoming_quota_gb = -4", "incoming_quota_gb' must be more than 0"),
    ("max_task_memory_mb = -1", "max_task_memory_mb' must be 0 or more"),
    ("max_task_processes = 3", "max_task_processes' must be 16 or more, or 0 for no cap"),
])
def test_a_setting_out_of_its_range_is_refused_with_the_range(home, line, phrase):
    home.config_file.write_text(line + "\n")
    with pytest.raises(UserError) as error:
        load_config(home)
    assert phrase in error.value.problem, error.value.problem
    assert "delete the line to use the default" in error.value.fix


def test_settings_in_range_load(home):
    home.config_file.write_text("poll_interval_s = 0.5\nnice = 19\nmax_results_mb = 0\nmax_task_processes = 0\n")
    config = load_config(home)
    assert (config.poll_interval_s, config.nice, config.max_results_mb, config.max_task_processes) == (0.5, 19, 0, 0)


def test_a_binary_config_file_gets_a_message_not_a_traceback(home):
    home.config_file.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    result = cli("status")
    assert result.returncode == 3, result.stderr
    assert "not a text file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("line, phrase, fix", [
    ('nice = "low"', "setting 'nice' must be a whole number, not 'low'", "default (10)"),
    ("nice = 2.5", "setting 'nice' must be a whole number, not 2.5", "default (10)"),
    ('run_locally = "yes"', "setting 'run_locally' must be true or false, not 'yes'", "default (true)"),
    ("results_dir = 3", "setting 'results_dir' must be text in quotes, not 3", 'default ("")'),
    ('preempt = "pause"', "setting 'preempt' must be one of 'kill', 'suspend', not 'pause'", 'default ("kill")'),
    ('on_battery = "charge"', "setting 'on_battery' must be one of 'pause', 'work', not 'charge'", "default"),
    ('mode = "boss"', "setting 'mode' must be one of '', 'master', 'slave', not 'boss'", "asks on its next start"),
    ("master_weights = 2", "setting 'master_weights' must be a table, not 2", "default ({})"),
])
def test_a_wrong_value_names_the_setting_the_value_and_the_fix(home, line, phrase, fix):
    home.config_file.write_text(line + "\n")
    with pytest.raises(UserError) as error:
        load_config(home)
    assert error.value.problem == f"{home.config_file}: {phrase}"
    assert str(home.config_file) in error.value.fix and fix in error.value.fix


def test_a_master_table_entry_is_checked(home):
    home.config_file.write_text('master_caps = { "bob" = 1.5 }\n')
    with pytest.raises(UserError, match=r"master_caps.bob must be a whole number of slots, not 1.5"):
        load_config(home)
    home.config_file.write_text('master_weights = { "head" = -1 }\n')
    with pytest.raises(UserError, match=r"master_weights.head must be a positive number, not -1"):
        load_config(home)
    home.config_file.write_text('master_weights = { "head" = 2 }\nmaster_caps = { "bob" = 1 }\n')
    config = load_config(home)
    assert (config.master_weights, config.master_caps) == ({"head": 2}, {"bob": 1})


def test_every_row_of_the_table_is_complete():
    assert [s.name for s in SETTINGS] == list(Config.__dataclass_fields__)
    for s in SETTINGS:
        assert s.help and s.mode in (BOTH, MASTER, SLAVE), s.name
        assert isinstance(s.default, s.type), s.name
        if s.type in (int, float, dict):
            assert s.range is not None, f"{s.name}: a number needs its range"
        if s.type in (int, float):
            assert s.range.holds(s.default) and math.isfinite(s.default), s.name
        if s.choices:
            assert s.default in s.values, s.name


def test_the_readme_settings_table_is_the_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_table(readme, markdown_table(SETTINGS)) == readme, \
        "README.md's settings table is stale: run .venv/bin/python scripts/settings_table.py"
    for s in SETTINGS:
        assert f"| `{s.name}` |" in readme
    # The script says so too, and a stale table can be seen to fail.
    check = [sys.executable, str(ROOT / "scripts" / "settings_table.py"), "--check"]
    assert subprocess.run(check, capture_output=True).returncode == 0
    stale = with_table(readme, markdown_table(SETTINGS[1:]))
    assert stale != readme


def test_an_old_config_with_grant_policy_loads_with_a_warning_and_saving_drops_it(home, caplog):
    home.config_file.write_text('grant_policy = "by_demand"\nnice = 5\n')
    with caplog.at_level(logging.WARNING, logger="trayapp.config"):
        config = load_config(home)
    assert config.nice == 5 and not hasattr(config, "grant_policy")
    assert "'grant_policy' is no longer a setting and is ignored" in caplog.text
    assert "delete the line" in caplog.text
    save_config(home, config)
    assert home.config_file.read_text() == "nice = 5\n"
    assert cli("status").returncode == 0  # and the command starts


def test_the_fair_share_baseline_is_chosen_by_the_bench_environment_only(monkeypatch):
    from trayapp.slave.builder import bench_grant_policy

    monkeypatch.delenv("SPARECYCLES_GRANT_POLICY", raising=False)
    assert bench_grant_policy() == "fair"
    monkeypatch.setenv("SPARECYCLES_GRANT_POLICY", "by_demand")
    assert bench_grant_policy() == "by_demand"
    monkeypatch.setenv("SPARECYCLES_GRANT_POLICY", "random")
    with pytest.raises(UserError, match="SPARECYCLES_GRANT_POLICY is 'random'"):
        bench_grant_policy()
