"""Job environments on one PC: built for real (uv and pip, from a wheel folder,
so nothing leaves this machine), reused, remembered when they fail, built once
when two slots ask at once, and evicted least recently used under the cap."""

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
from fakeindex import make_wheel
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
    # The environment sees only its own packages, not the task environment's.
    assert subprocess.run([python, "-c", "import paramiko"], capture_output=True).returncode != 0


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
