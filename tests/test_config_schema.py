"""Settings out of range, and config files that are not text, are refused at
start-up with the setting, its range and the way back, never a traceback."""

from __future__ import annotations

import pytest
from conftest import cli

from trayapp.config import load_config
from trayapp.errors import UserError


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
    ("slots = -2", "slots' must be 0 or more"),
    ("envs_max_gb = 0", "envs_max_gb' must be more than 0"),
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
