"""Uploads in the slave's spool: what is hashed is what is unpacked, and the
masters' incoming folders do not fill the lender's disk."""

from __future__ import annotations

import os
import time

import pytest

from trayapp.config import load_config
from trayapp.slave.builder import build_engine
from trayapp.slave.spool import Spool
from trayapp.slave.transfers import Transfers, clean_incoming
from trayapp.wire.archive import ChecksumMismatchError, ensure_unpacked, pack, sha256_of


def old_accept_upload(self, sha, uploaded, folder):
    """The slave as it was: hash the upload in place, then rename it into archives/."""
    assert sha256_of(uploaded) == sha
    os.replace(uploaded, self.archive_path(sha))


def job_archive(tmp_path, text: str):
    folder = tmp_path / "job"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(text)
    return pack(folder, ["main.py"], tmp_path / "packed")


@pytest.mark.parametrize("protected", [False, True], ids=["protection off", "protection on"])
def test_writing_through_a_handle_kept_open_on_an_upload_changes_nothing_after_the_check(tmp_path, monkeypatch,
                                                                                         protected):
    if not protected:
        monkeypatch.setattr(Spool, "accept_upload", old_accept_upload)
    spool = Spool(tmp_path / "spool").ensure()
    good = job_archive(tmp_path, "print('bob ' * 20)\n")
    upload = spool.upload_path(good.sha256, "key-bob")
    upload.write_bytes(good.path.read_bytes())
    # Someone keeps a write handle on the upload (an SFTP session does it with an open file).
    handle = os.open(upload, os.O_RDWR)
    try:
        spool.accept_upload(good.sha256, upload, "key-bob")
        evil = job_archive(tmp_path / "evil", "print('alice')\n")  # no longer than the good main.py
        os.pwrite(handle, evil.path.read_bytes(), 0)  # after the check and the rename
    finally:
        os.close(handle)
    unpacked = ensure_unpacked(spool.archive_path(good.sha256), spool.unpacked, verified=True)
    ran = (unpacked / "main.py").read_text()
    assert ran == ("print('alice')\n" if not protected else "print('bob ' * 20)\n")
    assert not upload.exists()


def test_an_upload_through_a_link_or_into_another_masters_folder_is_refused(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    good = job_archive(tmp_path, "print(1)\n")
    theirs = spool.upload_path(good.sha256, "key-bob")
    theirs.write_bytes(good.path.read_bytes())
    with pytest.raises(ChecksumMismatchError, match="not an upload slot of this master"):
        spool.accept_upload(good.sha256, theirs, "key-alice")
    link = spool.upload_path(good.sha256, "key-alice")
    link.symlink_to(theirs)
    with pytest.raises(OSError):
        spool.accept_upload(good.sha256, link, "key-alice")
    assert not spool.has_archive(good.sha256) and theirs.exists()


def test_abandoned_uploads_go_after_a_day_and_beyond_the_quota_at_once(tmp_path):
    incoming = Spool(tmp_path / "spool").ensure().incoming
    now = time.time()
    alice, bob = incoming / "key-alice", incoming / "key-bob"
    for folder in (alice, bob):
        folder.mkdir()
    old = alice / ".upload-old"
    old.write_bytes(b"x" * 100)
    os.utime(old, (now - 25 * 3600, now - 25 * 3600))  # left by a master before the slave restarted
    fresh = alice / ".upload-fresh"
    fresh.write_bytes(b"x" * 100)
    big, small = bob / ".upload-big", bob / ".upload-small"
    big.write_bytes(b"x" * 900)
    small.write_bytes(b"x" * 200)
    (bob / "a-folder").mkdir()
    gone = clean_incoming(incoming, now, quota_bytes=1000, abandoned_after_s=24 * 3600)
    assert sorted(os.path.basename(p) for p in gone) == [".upload-big", ".upload-old", "a-folder"]
    assert fresh.exists() and small.exists() and not old.exists() and not big.exists()


def test_the_engine_cleans_incoming_at_its_first_tick(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    transfers = Transfers(spool, min_free_mb=0, quota_bytes=10, abandoned_after_s=60)
    folder, _ = spool.master_folders("key-alice")
    (folder / ".upload-1").write_bytes(b"x" * 11)
    transfers.tick(time.time())
    assert list(folder.iterdir()) == []


def test_the_lenders_incoming_quota_reaches_the_clean_up(home):
    home.config_file.write_text("incoming_quota_gb = 0.5\n")
    engine = build_engine(load_config(home), home, ("5e5e5e5e5e5e5e5e", "lender@pc"), home.spool_dir)
    try:
        assert engine.transfers.quota_bytes == 1 << 29
        folder, _ = engine.spool.master_folders("key-alice")
        with (folder / ".upload-big").open("wb") as fh:
            fh.truncate((1 << 29) + 1)  # sparse: over the quota without filling the disk
        (folder / ".upload-small").write_bytes(b"x")
        engine.transfers.tick(time.time())
        assert [p.name for p in folder.iterdir()] == [".upload-small"]
    finally:
        engine.close()
