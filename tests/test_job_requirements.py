"""A job's requirements from sparecycles.toml and requirements.txt, checked at
submit time, with a word on what each will need."""

from __future__ import annotations

import pytest

from conftest import make_job
from trayapp.errors import UserError
from trayapp.job.submit import submit_job


def test_requirements_txt_joins_the_manifest_and_submit_says_what_each_needs(app, tmp_path):
    folder, _ = make_job(tmp_path / "job", "print(1)\n", extra_files={
        "sparecycles.toml": 'requires = ["brian2 >= 2.5"]\n',
        "requirements.txt": "# plots\nmatplotlib  # for figures\nbrian2 >= 2.5\n\nscipy >= 1.0 ; python_version >= '3'\n"})
    sub = submit_job(app.store, app.home, app.config, folder)
    row = app.store._db.execute("SELECT requires FROM jobs WHERE id=?", (sub.job.id,)).fetchone()[0]
    assert row == '["brian2 >= 2.5", "matplotlib", "scipy >= 1.0 ; python_version >= \'3\'"]'
    notes = "\n".join(sub.notes)
    assert "brian2 >= 2.5: this PC's task environment has brian2" in notes
    assert "matplotlib: will be installed on each host that lacks it, about 15 s the first time" in notes


@pytest.mark.parametrize("line, problem", [
    ("brian2 >>> 2", "line 2: 'brian2 >>> 2' is not a valid requirement"),
    ("-e ./mypackage", "line 2: pip option '-e' is not supported"),
    ("--index-url https://example.org/simple", "line 2: pip option '--index-url' is not supported"),
    # Locations instead of packages: the installer would build whatever they point at.
    ("evilpkg @ file:///home/me/evilpkg", "line 2: 'evilpkg @ file:///home/me/evilpkg' names a URL"),
    ("mypkg @ https://example.org/mypkg-1.0.tar.gz", "line 2: 'mypkg @ https://example.org/mypkg-1.0.tar.gz' names"),
    ("git+https://example.org/mypkg.git", "line 2: 'git\\+https://example.org/mypkg.git' is a location"),
    ("./mypkg", "line 2: './mypkg' is a location, not a package"),
    ("/home/me/mypkg", "line 2: '/home/me/mypkg' is a location, not a package"),
])
def test_a_malformed_requirements_line_is_refused_with_a_fix(app, tmp_path, line, problem):
    """Also in sparecycles.toml (below)."""
    folder, _ = make_job(tmp_path / "job", "print(1)\n", extra_files={"requirements.txt": f"numpy\n{line}\n"})
    with pytest.raises(UserError, match=problem) as caught:
        submit_job(app.store, app.home, app.config, folder)
    assert caught.value.fix
    assert app.store.jobs() == [], "nothing is queued when the input is wrong"


def test_a_location_in_the_manifest_is_refused_with_the_fix(app, tmp_path):
    folder, _ = make_job(tmp_path / "job", "print(1)\n", extra_files={
        "sparecycles.toml": 'requires = ["brian2", "evilpkg @ file:///home/me/evilpkg"]\n'})
    with pytest.raises(UserError, match="sparecycles.toml requires: 'evilpkg @ file:///home/me/evilpkg' names a URL"
                       ) as caught:
        submit_job(app.store, app.home, app.config, folder)
    assert "package_index or wheel_folder" in caught.value.fix and "job folder" in caught.value.fix
    assert app.store.jobs() == []


def test_many_requirement_names_are_checked_in_one_pass(app, tmp_path, monkeypatch):
    import subprocess

    started = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a) or real_run(*a, **k))
    names = [f"no-such-package-{i}" for i in range(300)]
    folder, _ = make_job(tmp_path / "job", "print(1)\n",
                         extra_files={"requirements.txt": "Packaging\n" + "\n".join(names) + "\n"})
    notes = submit_job(app.store, app.home, app.config, folder).notes
    assert len(started) == 1, f"{len(started)} interpreters started for 301 names"
    assert any(n.startswith("Packaging: this PC's task environment has Packaging") for n in notes), notes[:3]
    assert sum("will be installed" in n for n in notes) == 300


def test_installed_versions_match_names_as_pip_does():
    import sys

    from packaging.version import Version

    from trayapp.job.requirements import installed_versions

    found = installed_versions(sys.executable, ["packaging", "Packaging", "no_such.package"])
    assert Version(found["packaging"]) and found["Packaging"] == found["packaging"]
    assert found["no_such.package"] is None
