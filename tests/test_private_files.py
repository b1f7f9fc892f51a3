"""A job folder sends only what is in it, and everything SpareCycles writes is
private to its user: checked by mode bits and by really trying as another user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ECHO_TASK, cli, make_job, run_master_to_the_end

from trayapp.errors import UserError
from trayapp.job.folder import open_job_folder

OTHER_USER = "sparecycles-other"
# Root reads everything; without these capabilities it obeys file modes like anyone.
AS_ORDINARY_ROOT = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


# ----- job folders ---------------------------------------------------------------------

def test_links_pointing_outside_the_folder_are_refused_with_the_list_and_the_fix(tmp_path):
    secrets_dir = tmp_path / "dot-ssh"
    secrets_dir.mkdir()
    (secrets_dir / "id_ed25519").write_text("PRIVATE KEY")
    folder, _ = make_job(tmp_path / "job", "print('hi')\n", extra_files={"data/inside.csv": "a\n1\n"})
    os.symlink(secrets_dir / "id_ed25519", folder / "key")
    os.symlink(secrets_dir, folder / "ssh")
    os.symlink("data/inside.csv", folder / "alias.csv")  # inside: fine
    with pytest.raises(UserError) as error:
        open_job_folder(folder)
    assert "key -> " in error.value.problem and "ssh/ -> " in error.value.problem
    assert "alias.csv" not in error.value.problem
    assert "--follow-links" in error.value.fix and "copy" in error.value.fix
    files = open_job_folder(folder, follow_links=True).files
    assert {"key", "ssh/id_ed25519", "alias.csv"} <= set(files)


def test_submit_refuses_an_outside_link_unless_asked_to_follow_it(home, tmp_path):
    folder, _ = make_job(tmp_path / "job", "print('hi')\n")
    (tmp_path / "shadow").write_text("root:x:0")
    os.symlink(tmp_path / "shadow", folder / "shadow")
    refused = cli("submit", str(folder), "--no-start")
    assert refused.returncode == 3 and "point outside the job folder" in refused.stderr, refused.stderr
    assert cli("submit", str(folder), "--no-start", "--follow-links").returncode == 0


def test_unreadable_files_and_folders_are_named_not_a_traceback(home, tmp_path):
    folder, _ = make_job(tmp_path / "job", "print('hi')\n", extra_files={"locked/a.txt": "x", "b.txt": "y"})
    os.chmod(folder / "b.txt", 0)
    os.chmod(folder / "locked", 0)
    try:
        result = subprocess.run([*AS_ORDINARY_ROOT, *cli_command("submit", str(folder), "--no-start")],
                                capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(folder / "locked", 0o755)
    assert result.returncode == 3, result.stderr
    assert "cannot read" in result.stderr and "b.txt" in result.stderr and "locked/" in result.stderr
    assert "Traceback" not in result.stderr


def test_names_that_are_not_utf8_get_a_message_not_a_traceback(home, tmp_path):
    folder, _ = make_job(tmp_path / "job", "print('hi')\n")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "w") as fh:
        fh.write("latin-1 name")
    result = cli("submit", str(folder), "--no-start")
    assert result.returncode == 3 and "not valid UTF-8" in result.stderr and "caf" in result.stderr, result.stderr
    odd = os.path.join(os.fsencode(tmp_path), b"r\xe9sultats")
    os.mkdir(odd)
    (Path(os.fsdecode(odd)) / "main.py").write_text("print('hi')\n")
    result = cli("submit", os.fsdecode(odd), "--no-start")
    assert result.returncode == 3 and "not valid UTF-8" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def cli_command(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "sparecycles", *args]


# ----- private files -------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER], check=True)
        return pwd.getpwnam(OTHER_USER)


def readable_by(user: pwd.struct_passwd, path: Path) -> bool:
    command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    command += ["ls", str(path)] if path.is_dir() else ["cat", str(path)]
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


def not_private(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        if path.name in skip or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root)} {mode:o}")
    return found


@pytest.mark.pool
def test_master_and_slave_files_are_private_to_their_user(pool, tmp_path, monkeypatch, other_user, request):
    # Under a folder anyone may enter, so only SpareCycles' own modes protect the files.
    open_root = Path(tempfile.mkdtemp(prefix="sparecycles-private-"))
    request.addfinalizer(lambda: shutil.rmtree(open_root, ignore_errors=True))
    os.chmod(open_root, 0o755)
    master_home = open_root / "master"
    monkeypatch.setenv("SPARECYCLES_HOME", str(master_home))
    slave = pool.add_slave("s", slots=2)
    folder, params = make_job(tmp_path / "job", ECHO_TASK, params=[{"secret": "hunter2"}, {"secret": "x"}])
    job = json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json",
                         check=True).stdout)
    status, _ = run_master_to_the_end(job["job"])
    assert status["status"] == "done", status
    cli("master", "--until-idle", "0.5", check=True)  # the local cores' side too

    assert not_private(master_home) == []
    assert not_private(slave.home, skip=("slave-daemon.log",)) == []
    results = Path(job["results"])
    for path in (master_home / "queue.sqlite3", master_home / "known_hosts", results / "0" / "out.json",
                 master_home):
        assert path.exists() or path.name == "known_hosts", path
        if path.exists():
            assert not readable_by(other_user, path), path
