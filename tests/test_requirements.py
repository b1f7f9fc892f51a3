"""A job's requirements against a real task environment: this venv (Brian
installed) and a bare venv (no Brian)."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trayapp.slave.requirements import RequirementChecker, probe_versions

BRIAN = importlib.metadata.version("brian2")  # the test environment installs it ([brian] extra)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return str(venv / "bin" / "python")


@pytest.mark.parametrize("requires", [[], ["brian2"], ["brian2 >= 2.5"], ["brian2 >= 2.5, < 99"],
                                      [f"brian2 == {BRIAN}"], ["brian2 >= 2.5", "numpy"]])
def test_requirements_met(requires):
    assert RequirementChecker(sys.executable).unmet(requires) is None


@pytest.mark.parametrize("requires, reason", [
    (["brian2 >= 99"], f"needs brian2 >= 99, has brian2 {BRIAN}"),
    (["brian2 < 2"], f"needs brian2 < 2, has brian2 {BRIAN}"),
    (["brian2 >= 2.5, < 2.6"], f"needs brian2 >= 2.5, < 2.6, has brian2 {BRIAN}"),
    (["no-such-package-here"], "needs no-such-package-here, which is not installed here"),
    (["brian2 >>> 2"], "'brian2 >>> 2' is not a valid requirement"),
    (["brian2 >= 99", "numpy >= 99"], f"needs brian2 >= 99, has brian2 {BRIAN}; needs numpy >= 99, has numpy"),
])
def test_requirements_unmet_say_which_and_what_is_there(requires, reason):
    assert RequirementChecker(sys.executable).unmet(requires).startswith(reason)


def test_an_environment_without_brian(bare_python):
    assert RequirementChecker(bare_python).unmet(["brian2 >= 2.5"]) == (
        "needs brian2 >= 2.5, which is not installed here")
    assert probe_versions(bare_python)["brian"] is None
    assert probe_versions(sys.executable) == {"python": "%d.%d.%d" % sys.version_info[:3], "brian": BRIAN}


def test_a_brian_installed_later_is_seen_once_the_cached_answer_expires(bare_python):
    checker = RequirementChecker(bare_python, ttl_s=0.0)
    assert checker.unmet(["brian2"]) is not None
    site = subprocess.run([bare_python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A distribution's metadata is all importlib.metadata reads: as pip leaves it.
    dist = Path(site) / f"brian2-{BRIAN}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: brian2\nVersion: {BRIAN}\n")
    try:
        assert checker.unmet(["brian2 >= 2.5"]) is None
    finally:
        shutil.rmtree(dist)


def test_a_package_installed_by_hand_is_seen_at_once_without_waiting_for_a_ttl(bare_python):
    from trayapp.slave.requirements import SitePackagesWatch, VersionProbe

    watch = SitePackagesWatch(bare_python)
    assert watch.folders, "the task environment's site-packages must be found"
    checker = RequirementChecker(bare_python, ttl_s=3600.0, watch=watch)
    probe = VersionProbe(bare_python, ttl_s=3600.0, watch=watch)
    assert checker.unmet(["brian2"]) is not None and probe.versions["brian"] is None
    dist = Path(watch.folders[0]) / f"brian2-{BRIAN}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: brian2\nVersion: {BRIAN}\n")
    try:
        assert checker.unmet(["brian2 >= 2.5"]) is None
        probe.refresh()  # reads again on its helper thread, since the folder changed
        deadline = time.monotonic() + 30
        while probe.versions["brian"] != BRIAN and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe.versions["brian"] == BRIAN
    finally:
        shutil.rmtree(dist)
