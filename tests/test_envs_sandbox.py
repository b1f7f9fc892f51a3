"""A job's requirements are a master's code: attacks on the lender through them.

Each attack first succeeds the old way (the location accepted, the build and
the probes outside the sandbox), then fails: a requirement that is a path to a
package whose build script writes into the lender's home, and a wheel from the
lab's own wheel folder with a ``.pth`` that runs code whenever the
environment's Python starts (it may run inside the sandbox, never outside)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fakeindex import make_wheel
from trayapp.install import requirement as requirement_module
from trayapp.install.buildsandbox import build_sandbox_for
from trayapp.install.envbuild import EnvBuildError, PackageSource, find_uv
from trayapp.install.envs import EnvStore, canonical_requirements
from trayapp.install.requirement import RequirementRefused
from trayapp.run.sandbox import Confinement, sandbox_status

pytestmark = pytest.mark.skipif(not sandbox_status()[0], reason="bubblewrap cannot run here")

# A package whose build backend, in its own tree, runs when the installer imports it.
EVIL_BACKEND = """\
import os
with open({target!r}, "w") as out:
    out.write("build script ran as uid %d, could read %s" % (os.getuid(), os.listdir({home!r})))

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("nothing to build")
"""


@pytest.fixture
def lender_home(tmp_path) -> Path:
    """Stands for the lender's home: a private key in it, and what attacks leave behind."""
    home = tmp_path / "lender-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    return home


def store(tmp_path: Path, wheels: Path, lender_home: Path, *, sandboxed: bool) -> EnvStore:
    sandbox = (build_sandbox_for(sys.executable, hidden=(str(lender_home), str(Path.home())), uv=find_uv(),
                                 wheel_folder=str(wheels)) if sandboxed else None)
    return EnvStore(tmp_path / "envs", sys.executable, source=PackageSource(wheel_folder=str(wheels)),
                    sandbox=sandbox, cache_dir=tmp_path / "uv-cache")


def evil_package(tmp_path: Path, lender_home: Path) -> Path:
    package = tmp_path / "evilpkg"
    package.mkdir()
    (package / "pyproject.toml").write_text('[project]\nname = "evilpkg"\ndynamic = ["version"]\n'
                                            '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                                            'backend-path = ["."]\n')
    (package / "backend.py").write_text(EVIL_BACKEND.format(target=str(lender_home / "pwned"),
                                                            home=str(lender_home / ".ssh")))
    return package


@pytest.mark.parametrize("protected", [False, True], ids=["old-behaviour", "refused-and-sandboxed"])
def test_a_path_requirement_cannot_run_its_build_script_as_the_lender(tmp_path, lender_home, monkeypatch,
                                                                       protected):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    line = f"evilpkg @ file://{evil_package(tmp_path, lender_home)}"
    if protected:
        with pytest.raises(RequirementRefused, match="names a URL") as refused:
            canonical_requirements([line])
        assert "package_index or wheel_folder" in refused.value.fix
    # Past the refusal (the old reading of a line), the build itself: outside the
    # sandbox it runs as the lender; inside, it sees neither the home nor the package.
    from packaging.requirements import Requirement

    monkeypatch.setattr(requirement_module, "read_requirement", Requirement)
    envs = store(tmp_path, wheels, lender_home, sandboxed=protected)
    with pytest.raises(EnvBuildError):
        envs.build(canonical_requirements([line]))
    if protected:
        assert not (lender_home / "pwned").exists(), "the build script reached the lender's home"
    else:
        assert "id_ed25519" in (lender_home / "pwned").read_text(), "the old way, the attack works"


@pytest.mark.parametrize("protected", [False, True], ids=["probed-outside", "probed-in-the-sandbox"])
def test_a_pth_file_from_the_wheel_folder_never_runs_outside_the_sandbox(tmp_path, lender_home, protected):
    wheels = tmp_path / "wheels"
    hook = f"import os; open({str(lender_home / 'pth-ran')!r}, 'w').write(str(os.listdir({str(lender_home)!r})))\n"
    make_wheel(wheels, "sc-hooked", "1.0", extra_files={"sc_hooked_hook.pth": hook})
    envs = store(tmp_path, wheels, lender_home, sandboxed=protected)
    python = envs.build(canonical_requirements(["sc-hooked"]))  # built, import-checked
    # The task runner's sandbox asks which folders to bind for this interpreter.
    confinement = Confinement(sandboxed=True, hidden=(str(lender_home),))
    if protected:
        confinement.readonly_of = envs.readonly_paths_of
    binds = confinement.readonly_for(python)
    if protected:
        assert not (lender_home / "pth-ran").exists(), "the .pth ran as the lender"
        assert str(Path(python).parent.parent) in binds, "the environment is bound for its tasks"
    else:
        assert ".ssh" in (lender_home / "pth-ran").read_text(), "the old way, the .pth runs as the lender"
