"""The spool's trash: a task folder leaves its place at once and is deleted
off the engine's thread, with remove_tree's care (a link is never followed)."""

from __future__ import annotations

import os

from trayapp.slave.spool import Spool


def test_a_discarded_folder_is_gone_at_once_and_deleted_without_following_links(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    outside = tmp_path / "lender"
    outside.mkdir()
    (outside / "secret.txt").write_text("keep me")
    task = spool.tasks / "t1"
    (task / "work" / "locked").mkdir(parents=True)
    (task / "work" / "out.txt").write_text("x")
    os.symlink(outside, task / "work" / "link")  # a task's link to the lender's files
    (task / "work" / "locked").chmod(0)

    spool.trash.discard(task)
    assert not task.exists()  # its path is free at once
    spool.trash.wait()
    assert list(spool.trash.folder.iterdir()) == []
    assert (outside / "secret.txt").read_text() == "keep me"


def test_what_a_stopped_slave_left_in_the_trash_is_deleted_at_the_next_start(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    left = spool.trash.folder / "t2-abc"
    (left / "work").mkdir(parents=True)
    (left / "work" / "big.bin").write_bytes(b"x" * 1000)
    again = Spool(spool.root)  # a new slave's
    again.trash.empty()
    again.trash.wait()
    assert not left.exists()


def test_a_missing_folder_is_nothing_to_discard(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    spool.trash.discard(spool.tasks / "never-made")
    spool.trash.wait()
    assert not spool.trash.folder.exists() or list(spool.trash.folder.iterdir()) == []
