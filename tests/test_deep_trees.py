"""Folder trees a thousand levels deep, made by a hostile task or master: the
slave's walks and removals used Python's recursion (RecursionError), and an
error there in the engine's tick stopped the daemon. Each attack first shown
with the old behaviour, then refused with a clear message while the daemon
goes on."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from conftest import wait_until
from test_sandbox import Slave, slave_factory  # noqa: F401 - the fixture, used by name

from trayapp.run import taskfiles
from trayapp.slave import spool as spool_module
from trayapp.slave import transfers
from trayapp.slave.engine import SlaveEngine
from trayapp.wire import archive
from trayapp.wire.archive import UnsafeArchiveError, unpack

LEVELS = 1500
_remove_tree = taskfiles.remove_tree  # the real one, whatever a test patches


@pytest.fixture(autouse=True)
def _no_deep_leftovers(tmp_path):
    """pytest's own clean-up of old temporary folders recurses too (and would fail
    every later run on this machine): what a test left deep goes here."""
    yield
    for entry in tmp_path.iterdir():
        _remove_tree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()

DEEP_RESULTS = f"""
import os
os.makedirs("results", exist_ok=True)
fd = os.open("results", os.O_RDONLY)
for _ in range({LEVELS}):
    os.mkdir("d", dir_fd=fd)
    sub = os.open("d", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = sub
os.close(os.open("leaf.txt", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
print("made it deep")
"""


def make_deep(folder: Path, levels: int = LEVELS) -> None:
    """``folder/a/a/.../a`` ``levels`` deep, made through descriptors (paths that long do not open)."""
    folder.mkdir(parents=True)
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir("a", dir_fd=fd)
        sub = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(fd)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the old loop's death
@pytest.mark.parametrize("protected", [False, True], ids=["old-walk-and-tick", "capped-and-guarded"])
def test_a_task_nesting_its_results_1500_deep_is_refused_and_the_daemon_goes_on(slave_factory, tmp_path,
                                                                                 monkeypatch, protected):
    if not protected:  # the old behaviour: an unbounded walk, and no guard around settling a task
        unbounded = taskfiles.plain_files
        monkeypatch.setattr(spool_module, "plain_files", lambda fd, prefix: unbounded(fd, prefix, depth=10**6))
        monkeypatch.setattr(SlaveEngine, "_finish_guarded", lambda self, task, attempt: self._finish(task, attempt))
    slave: Slave = slave_factory("deep", sandbox="on")
    token = slave.start(tmp_path, DEEP_RESULTS)
    if not protected:
        wait_until(lambda: not slave.thread.is_alive(), timeout=120, what="the engine's loop to die")
        return
    finished = slave.finished(token)
    assert finished["outcome"] == "rejected", finished
    assert f"is nested more than {archive.MAX_DEPTH} folders deep" in finished["message"], finished
    assert not (slave.engine.spool.task_dir(token) / "work").exists(), "the deep folder is removed all the same"
    after = slave.start(tmp_path, "print('still serving')\n")
    assert slave.finished(after)["outcome"] == "succeeded" and slave.thread.is_alive()


def deep_archive(levels: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"print('hi')\n"
        for name in ("main.py", "a/" * levels + "x.txt"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("protected", [False, True], ids=["old-unlimited", "capped"])
def test_a_job_archive_nested_1500_deep_is_refused_before_anything_is_written(tmp_path, monkeypatch, protected):
    if not protected:
        monkeypatch.setattr(archive, "MAX_DEPTH", 10**6)
    data = deep_archive(LEVELS)
    if not protected:  # unpacked, then copied into a task folder as the slave does: Python's recursion gives out
        with pytest.raises(RecursionError):
            unpack(data, tmp_path / "unpacked")
            shutil.copytree(tmp_path / "unpacked", tmp_path / "task")
        return
    with pytest.raises(UnsafeArchiveError, match=f"nested {LEVELS} folders deep; at most {archive.MAX_DEPTH}"):
        unpack(data, tmp_path / "unpacked")
    assert not (tmp_path / "unpacked").exists() and list(tmp_path.iterdir()) == []
    unpack(deep_archive(archive.MAX_DEPTH), tmp_path / "fits")  # as deep as allowed still unpacks


@pytest.mark.parametrize("protected", [False, True], ids=["old-rmtree", "any-depth"])
def test_a_folder_1500_deep_in_a_masters_upload_folder_is_cleaned_away(tmp_path, monkeypatch, protected):
    # What a master's SFTP session can make in its own incoming folder (mkdir a, a/a, ...).
    incoming = tmp_path / "incoming"
    make_deep(incoming / "mallory" / "junk")
    if not protected:
        monkeypatch.setattr(transfers, "remove_tree", lambda path: shutil.rmtree(path, ignore_errors=True))
        with pytest.raises(RecursionError):
            transfers.clean_incoming(incoming, time.time(), quota_bytes=1 << 30, abandoned_after_s=3600)
        return
    gone = transfers.clean_incoming(incoming, time.time(), quota_bytes=1 << 30, abandoned_after_s=3600)
    assert gone == [str(incoming / "mallory" / "junk")] and list((incoming / "mallory").iterdir()) == []


def test_remove_tree_takes_any_depth_and_folders_made_unreadable(tmp_path):
    make_deep(tmp_path / "tree", 3000)
    fd = os.open(tmp_path / "tree", os.O_RDONLY)
    for _ in range(2000):  # a folder deep down made unreadable, as a task may leave one
        sub = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.fchmod(fd, 0)
    os.close(fd)
    taskfiles.remove_tree(tmp_path / "tree")
    assert not (tmp_path / "tree").exists()
