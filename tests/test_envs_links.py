"""A build step plants links where the slave later writes, reads or removes.

A sandboxed build runs a master's build backend (setup.py) with the
environment being built (``<key>.partial``) writable. Before, the slave kept
its record and its in-use markers inside that folder: a backend that made
``<partial>/in-use`` a link to the lender's ``~/.ssh`` had the slave's
housekeeping (``users()`` after every build) remove the lender's keys, and one
that made ``<partial>/sparecycles-env.json`` a link had the slave overwrite a
lender's file. The attack first succeeds with the old layout (the record
inside the environment, put back by a monkeypatch), then fails.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest

from trayapp.install.buildsandbox import BuildSandbox, build_sandbox_for
from trayapp.install.envbuild import PackageSource, find_uv
from trayapp.install.envs import EnvStore, canonical_requirements
from trayapp.run.sandbox import sandbox_status

# An in-tree build backend that plants links in the environment being built,
# then builds a real wheel, so the build succeeds and the slave goes on.
LINKING_BACKEND = """\
import base64, hashlib, os, zipfile

LINKS = {links!r}
PARTIAL = {partial!r}
META = "Metadata-Version: 2.1\\nName: linkpkg\\nVersion: 1.0\\n"


def _plant():
    for name, target in LINKS.items():
        path = os.path.join(PARTIAL, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.symlink(target, path)


def get_requires_for_build_wheel(config_settings=None):
    _plant()
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _plant()
    folder = os.path.join(metadata_directory, "linkpkg-1.0.dist-info")
    os.makedirs(folder)
    with open(os.path.join(folder, "METADATA"), "w") as out:
        out.write(META)
    return "linkpkg-1.0.dist-info"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _plant()
    files = {{"linkpkg/__init__.py": b"",
             "linkpkg-1.0.dist-info/METADATA": META.encode(),
             "linkpkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}}
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += "%s,sha256=%s,%d\\n" % (path, digest, len(data))
    record += "linkpkg-1.0.dist-info/RECORD,,\\n"
    name = "linkpkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr("linkpkg-1.0.dist-info/RECORD", record)
    return name
"""


def linking_sdist(wheels: Path, partial: Path, links: dict[str, str]) -> None:
    """``linkpkg-1.0.tar.gz`` in the wheel folder, whose backend plants ``links`` in ``partial``."""
    files = {"pyproject.toml": '[project]\nname = "linkpkg"\nversion = "1.0"\n'
                               '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
             "backend.py": LINKING_BACKEND.format(links=links, partial=str(partial)),
             "PKG-INFO": "Metadata-Version: 2.1\nName: linkpkg\nVersion: 1.0\n"}
    wheels.mkdir(parents=True, exist_ok=True)
    with tarfile.open(wheels / "linkpkg-1.0.tar.gz", "w:gz") as sdist:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"linkpkg-1.0/{name}")
            info.size = len(data)
            sdist.addfile(info, io.BytesIO(data))


@pytest.fixture
def lender_home(tmp_path) -> Path:
    home = tmp_path / "lender-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / ".bashrc").write_text("# the lender's own\n")
    return home


@pytest.mark.skipif(not sandbox_status()[0], reason="bubblewrap cannot run here")
@pytest.mark.parametrize("protected", [False, True], ids=["old-layout", "record-beside-the-environment"])
def test_links_a_build_plants_never_make_the_slave_remove_or_overwrite_lender_files(tmp_path, lender_home,
                                                                                    monkeypatch, protected):
    monkeypatch.delenv("SPARECYCLES_SANDBOX", raising=False)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    sandbox = build_sandbox_for(sys.executable, hidden=(str(lender_home), str(Path.home())), uv=find_uv(),
                                wheel_folder=str(wheels))
    envs = EnvStore(tmp_path / "envs", sys.executable, source=PackageSource(wheel_folder=str(wheels)),
                    sandbox=sandbox)
    if not protected:  # the old layout: the record and the in-use markers inside the environment
        monkeypatch.setattr(EnvStore, "meta_of", lambda self, key: self.root / key)
    requirements = canonical_requirements(["linkpkg"])
    key = envs.key_for(requirements)
    linking_sdist(wheels, envs.root / f"{key}.partial",
                  {"in-use": str(lender_home / ".ssh"), "sparecycles-env.json": str(lender_home / ".bashrc")})

    python = envs.build(requirements)  # built, then housekeeping: entries() and users() of every environment
    assert (envs.root / key / "in-use").is_symlink(), "the backend ran in the build and planted its links"
    envs.entries()
    if protected:
        assert (lender_home / ".ssh" / "id_ed25519").read_text() == "PRIVATE KEY"
        assert (lender_home / ".bashrc").read_text() == "# the lender's own\n"
        assert envs.python_of(key) == python and [e.key for e in envs.entries()] == [key]
        envs.mark_in_use(key, "t1", 1, 0.0)  # markers go beside the environment, never through its links
        assert not (lender_home / ".ssh" / "t1").exists() and (envs.meta_of(key) / "in-use" / "t1").is_file()
        envs.evict(everything=True)
        assert not (envs.root / key).exists() and not envs.meta_of(key).exists()
        assert (lender_home / ".ssh" / "id_ed25519").read_text() == "PRIVATE KEY"
    else:
        assert not (lender_home / ".ssh" / "id_ed25519").exists(), "the old way, the lender's key is removed"
        assert "requirements" in (lender_home / ".bashrc").read_text(), "the old way, a lender file is overwritten"


def test_sandboxed_builds_never_use_the_lenders_uv_cache_and_each_master_has_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "lender-cache"))
    envs = EnvStore(tmp_path / "envs", sys.executable, uv=False, sandbox=BuildSandbox(()))
    assert envs.cache_dir == tmp_path / "envs" / "uv-cache"
    assert envs.cache_for("alice") != envs.cache_for("bob")
    assert envs.cache_for("alice").parent == envs.cache_dir
    unsandboxed = EnvStore(tmp_path / "envs", sys.executable, uv=False)
    assert unsandboxed.cache_dir == tmp_path / "lender-cache", "outside a sandbox, uv's own choice stays"
