"""Test tiers follow the fixtures a test uses: a test that starts the pool,
an X display, Brian or a SLURM cluster through a fixture is in that tier
without a hand-written marker (conftest.TIER_OF_FIXTURE), so the fast tier
(`scripts/test.sh --fast`) cannot pick it up by mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import TIER_OF_FIXTURE

TESTS = Path(__file__).resolve().parent


def collected(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         capture_output=True, text=True, cwd=TESTS.parent, timeout=300)
    assert out.returncode in (0, 5), out.stdout + out.stderr  # 5: nothing collected
    return {line.split("::")[1].split("[")[0] for line in out.stdout.splitlines() if "::" in line}


def test_a_test_is_in_the_tier_of_the_fixtures_it_uses():
    # test_host_kinds.py has no pool marker; two of its tests use the pool fixture.
    # test_sandbox.py has no brian marker; one of its tests uses the brian fixture.
    files = [str(TESTS / "test_host_kinds.py"), str(TESTS / "test_sandbox.py")]
    pool, brian = collected("-m", "pool", *files), collected("-m", "brian", *files)
    assert {"test_hosts_test_walks_an_ssh_host_from_its_key_to_the_slaves_hello",
            "test_hosts_test_stops_at_the_first_problem_and_names_the_fix"} <= pool
    assert brian == {"test_a_real_brian_simulation_compiles_and_runs_inside_the_sandbox"}
    fast = collected("-m", "not (pool or desktop or bundle or brian or slow or slurm)", *files)
    assert fast and not fast & (pool | brian)


def test_every_tier_a_fixture_gives_is_a_declared_marker(pytestconfig):
    declared = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert set(TIER_OF_FIXTURE.values()) <= declared
    assert "--strict-markers" in pytestconfig.getini("addopts")
