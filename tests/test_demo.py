"""``sparecycles demo``: a real Brian sweep on the local pool, and the no-Brian path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli


@pytest.mark.brian
def test_demo_runs_the_brian_sweep_and_summarises_rates(home):
    result = cli("demo", "--timeout", "300", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    match = re.search(r"^results: (.+)$", out, re.MULTILINE)
    assert match, out
    results = Path(match.group(1))
    assert "6/6 tasks done" in out
    rates = {}
    for i in range(6):
        summary = json.loads((results / str(i) / "summary.json").read_text())
        rates[(summary["input_rate_hz"], summary["g_inh"])] = summary["rate_hz"]
        assert (results / str(i) / "spikes.npz").stat().st_size > 0
        assert f"{summary['rate_hz']:6.1f} Hz" in out
    # The model's physics, as a check that Brian really ran: more drive, more
    # spikes; more inhibition, fewer.
    for g in (5, 7):
        assert rates[(40, g)] < rates[(55, g)] < rates[(75, g)]
    for drive in (40, 55, 75):
        assert rates[(drive, 7)] < rates[(drive, 5)]


def test_demo_without_brian_says_how_to_install_it(home, tmp_path):
    bare = tmp_path / "bare env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    python = bare / "bin" / "python"
    result = cli("demo", env={"SPARECYCLES_TASK_PYTHON": str(python)})
    assert result.returncode == 3
    assert "Brian 2 is not installed in the task environment" in result.stderr
    assert f"{python} -m pip install 'brian2>=2.5' 'numpy<2'" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(cli("status", "--json").stdout) == []  # nothing was queued
