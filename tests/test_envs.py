"""Job environments on one PC: built for real (uv and pip, from a wheel folder
or a package index on 127.0.0.1, so nothing leaves this machine), layered over
the task environment (what it has and the requirements allow is kept), checked
by importing what they hold, resolved as of an older date when a pin needs it,
reused, remembered when they fail, built once when two slots ask at once, and
evicted least recently used under the cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from conftest import cli
from fakeindex import FakeIndex, make_wheel
from trayapp.install.buildsandbox import build_sandbox_for
from trayapp.install.envbuild import EnvBuildError, PackageSource, find_uv
from trayapp.install.envs import EnvStore, canonical_requirements


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    for name, version in (("sc-alpha", "1.0"), ("sc-alpha", "2.0"), ("sc-beta", "1.0"), ("sc-gamma", "1.0")):
        make_wheel(folder, name, version)
    return folder


def store_at(root: Path, wheels: Path, **kw) -> EnvStore:
    return EnvStore(root, sys.executable, source=PackageSource(wheel_folder=str(wheels)), **kw)


def version_in(python: str, module: str) -> str:
    return subprocess.run([python, "-c", f"import {module}; print({module}.VERSION)"], capture_output=True,
                          text=True, check=True).stdout.strip()


def own_packages(python: str) -> set[str]:
    """The top-level packages installed in the environment's own site-packages."""
    site = next(Path(python).parent.parent.glob("lib/python*/site-packages"))
    return {p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")
            and not p.name.startswith("_")}


def builds_logged(root: Path) -> int:
    return sum(path.read_text().count("building ") for path in root.glob("*.log"))


@pytest.mark.parametrize("uv", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["uv", "pip"])
def test_an_environment_is_built_once_and_found_again(tmp_path, wheels, uv):
    if uv:
        assert find_uv(), "uv is a dependency: its binary must be found"
    store = store_at(tmp_path / "envs", wheels, uv=uv)
    requirements = canonical_requirements(["sc-alpha == 1.0", "sc_beta"])
    python = store.build(requirements)
    assert version_in(python, "sc_alpha") == "1.0" and version_in(python, "sc_beta") == "1.0"
    # The same set however it is spelt and ordered: one key, found without a build.
    again = canonical_requirements(["SC-Beta", "sc-alpha==1.0"])
    assert store.key_for(again) == store.key_for(requirements)
    assert store.python_of(store.key_for(again)) == python
    assert store.build(again) == python
    assert builds_logged(store.root) == 1
    [entry] = store.entries()
    assert entry.requirements == requirements and entry.installer == ("uv" if uv else "pip")
    assert entry.size_bytes > 0 and entry.python == "%d.%d.%d" % sys.version_info[:3]
    # It extends the task environment: what that has (paramiko, here) imports too.
    assert subprocess.run([python, "-c", "import paramiko"], capture_output=True).returncode == 0


def test_a_failed_build_names_the_package_and_is_not_tried_again_for_a_while(tmp_path, wheels):
    now = [1000.0]
    store = store_at(tmp_path / "envs", wheels, clock=lambda: now[0], failure_ttl_s=600)
    requirements = ("sc-nonexistent==1.0",)
    with pytest.raises(EnvBuildError, match="sc-nonexistent") as first:
        store.build(requirements)
    key = store.key_for(requirements)
    assert store.recent_failure(key) == str(first.value)
    assert not (store.root / key).exists() and not (store.root / f"{key}.partial").exists()
    with pytest.raises(EnvBuildError, match="sc-nonexistent"):
        store.build(requirements)
    assert builds_logged(store.root) == 1, "a remembered failure must not run the installer again"
    now[0] += 601
    assert store.recent_failure(key) is None
    with pytest.raises(EnvBuildError):
        store.build(requirements)


def test_two_slots_asking_at_once_share_one_build(tmp_path, wheels):
    store = store_at(tmp_path / "envs", wheels)
    results, errors = [], []

    def ask():
        try:
            results.append(store.build(("sc-gamma",)))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(set(results)) == 1 and len(results) == 3
    assert builds_logged(store.root) == 1


def test_least_recently_used_go_first_and_one_in_use_never(tmp_path, wheels):
    store = store_at(tmp_path / "envs", wheels)
    a = store.build(("sc-alpha==1.0",))
    key_a = store.key_for(("sc-alpha==1.0",))
    me = psutil.Process()
    store.mark_in_use(key_a, "token-a", me.pid, me.create_time())  # a live task holds it
    store.build(("sc-alpha==2.0",))
    size = max(e.size_bytes for e in store.entries())
    store.max_bytes = int(size * 2.5)  # room for two
    store.build(("sc-beta",))
    keys = {e.key for e in store.entries()}
    assert key_a in keys, "an environment a task runs in must never be evicted"
    assert store.key_for(("sc-alpha==2.0",)) not in keys, "the least recently used one goes"
    assert store.key_for(("sc-beta",)) in keys
    assert [e.users for e in store.entries() if e.key == key_a] == [1]
    # A marker whose process is gone does not hold the environment.
    store.mark_in_use(key_a, "token-a", me.pid, me.create_time() - 100)
    assert store.users(key_a) == 0
    assert Path(a).exists()


def test_envs_list_and_prune_on_the_command_line(home, wheels):
    (home.config_file).write_text(f'wheel_folder = "{wheels}"\n')
    store = store_at(home.data_dir / "envs", wheels)
    store.build(("sc-alpha==1.0",))
    listed = json.loads(cli("envs", "list", "--json", check=True).stdout)
    assert [e["requirements"] for e in listed] == [["sc-alpha==1.0"]]
    assert "sc-alpha==1.0" in cli("envs", "list", check=True).stdout
    pruned = json.loads(cli("envs", "prune", "--json", check=True).stdout)
    assert len(pruned["removed"]) == 1 and pruned["freed_bytes"] > 0
    assert json.loads(cli("envs", "list", "--json", check=True).stdout) == []
    assert not any(p.name.endswith(".evicting") for p in store.root.iterdir())


# ----- layered over the task environment, checked by import, resolved as of a date ----------------

# sc-delta 1.0 was written against sc-alpha 1.x and declares no cap: with 2.0 it fails at import,
# as brian2 2.8.0 does with today's numpy.
DELTA_NEEDS_OLD_ALPHA = ("import sc_alpha\nif sc_alpha.VERSION.startswith('2'):\n"
                         "    raise AttributeError(\"module 'sc_alpha' has no attribute 'old_api'\")\n")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A package index on 127.0.0.1 with PEP 700 upload times, as PyPI's JSON API gives them."""
    root = tmp_path_factory.mktemp("index")
    wheels = root / "wheels"
    with FakeIndex(root / "served", json_api=True) as served:
        for name, version, when, kw in (
                ("sc-alpha", "1.0", "2023-12-01T00:00:00Z", {}),
                ("sc-alpha", "2.0", "2024-09-01T00:00:00Z", {}),
                ("sc-delta", "1.0", "2024-01-01T00:00:00Z", {"requires": ("sc-alpha",), "init": DELTA_NEEDS_OLD_ALPHA}),
                ("sc-delta", "1.1", "2024-06-01T00:00:00Z", {"requires": ("sc-alpha",)}),
                ("sc-plot", "1.0", "2024-02-01T00:00:00Z", {"requires": ("sc-alpha >= 1.0",)})):
            served.add(name, make_wheel(wheels, name, version, **kw), upload_time=when)
        yield served


@pytest.fixture(scope="module")
def task_env(tmp_path_factory, index) -> str:
    """A task environment that has sc-alpha 1.0 (the lender's tested set, as Brian 2.9.0 with numpy 1.26)."""
    venv = tmp_path_factory.mktemp("task-env") / "venv"
    uv = find_uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=120)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--index-url",
                    index.url, "sc-alpha==1.0"], check=True, timeout=120)
    return str(venv / "bin" / "python")


def sandboxed_store(root: Path, base_python: str, index_url: str) -> EnvStore:
    sandbox = build_sandbox_for(base_python, hidden=(str(Path.home()),), uv=find_uv())
    return EnvStore(root / "envs", base_python, source=PackageSource(index_url=index_url), sandbox=sandbox,
                    cache_dir=root / "uv-cache")


def test_an_environment_keeps_what_the_task_environment_has_and_installs_only_the_rest(tmp_path, index, task_env):
    store = sandboxed_store(tmp_path, task_env, index.url)
    # sc-plot needs sc-alpha >= 1.0: the task environment's 1.0 is kept, though 2.0 is the newest.
    python = store.build(canonical_requirements(["sc-alpha >= 1.0", "sc-plot"]))
    assert own_packages(python) == {"sc_plot"}, "only what the task environment lacks is installed"
    assert version_in(python, "sc_alpha") == "1.0"
    # A requirement the task environment's version does not meet: installed beside it, and it wins.
    python = store.build(canonical_requirements(["sc-alpha == 2.0"]))
    assert own_packages(python) == {"sc_alpha"} and version_in(python, "sc_alpha") == "2.0"


def test_an_environment_that_does_not_import_fails_its_build_once_naming_package_versions_and_fix(tmp_path, index):
    store = sandboxed_store(tmp_path, sys.executable, index.url)
    requirements = canonical_requirements(["sc-delta", "sc-alpha >= 2"])  # 1.1 fixed it; 1.0 wants alpha 1
    python = store.build(requirements)
    assert version_in(python, "sc_delta") == "1.1"
    pinned = canonical_requirements(["sc-delta == 1.0", "sc-alpha >= 2"])  # no date can meet both
    with pytest.raises(EnvBuildError) as failed:
        store.build(pinned)
    assert str(failed.value).startswith('sc-delta 1.0 does not import with sc-alpha 2.0 (AttributeError: module '
                                        "'sc_alpha' has no attribute 'old_api'): add \"sc-alpha < 2\" to requires")
    assert store.recent_failure(store.key_for(pinned)) == str(failed.value), "the job is told once, not per task"
    assert store.python_of(store.key_for(pinned)) is None


def test_a_pin_of_an_older_release_is_resolved_as_of_when_it_was_current(tmp_path, index):
    store = sandboxed_store(tmp_path, sys.executable, index.url)
    requirements = canonical_requirements(["sc-delta == 1.0"])  # exactly what the user writes: no cap on sc-alpha
    notes = []
    store.notes = NoteSpy(notes)
    python = store.build(requirements)
    assert version_in(python, "sc_delta") == "1.0" and version_in(python, "sc_alpha") == "1.0"
    assert notes == ["sc-delta == 1.0: resolved as of 2024-06-01"], "said on the job's tasks while it builds"
    key = store.key_for(requirements)
    assert store.entry_note(key) == "sc-delta == 1.0: resolved as of 2024-06-01", "and kept with the environment"
    assert [e.note for e in store.entries()] == [store.entry_note(key)], "envs list shows it"
    assert "--exclude-newer 2024-06-01" in (store.root / f"{key}.log").read_text()
    log_before = (store.root / f"{key}.log").read_text()
    assert store.build(requirements) == python, "kept"
    assert (store.root / f"{key}.log").read_text() == log_before, "not resolved again"


class NoteSpy(dict):
    """The store's notes of builds under way, recording each one set."""

    def __init__(self, seen: list):
        super().__init__()
        self.seen = seen

    def __setitem__(self, key, value):
        self.seen.append(value)
        super().__setitem__(key, value)
