"""Tests for trayapp.wire.archive: deterministic packing and paranoid unpacking."""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
from pathlib import Path

import pytest

from trayapp.wire.archive import (
    FIXED_MTIME,
    ChecksumMismatchError,
    UnsafeArchiveError,
    ensure_unpacked,
    pack,
    sha256_of,
    unpack,
)


def write_files(folder: Path, files: dict[str, bytes | str]) -> list[str]:
    """Create ``files`` (relative POSIX path -> content) under ``folder``; returns the names."""
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
    return sorted(files)


def make_job(tmp_path: Path, files: dict[str, bytes | str] | None = None) -> tuple[Path, list[str]]:
    folder = tmp_path / "job"
    names = write_files(folder, files or {"main.py": "print('hi')\n", "data/input.csv": "a,b\n1,2\n"})
    return folder, names


def members_of(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, mode="r:") as tar:
        return {m.name: m for m in tar.getmembers()}


# ---------------------------------------------------------------- packing: determinism

def test_packing_twice_gives_same_hash_and_identical_bytes(tmp_path):
    folder, names = make_job(tmp_path)
    first = pack(folder, names, tmp_path / "archives1")
    second = pack(folder, list(reversed(names)), tmp_path / "archives2")  # order of the list must not matter
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.size == second.size == first.path.stat().st_size
    assert first.file_count == second.file_count == 2


def test_changing_only_mtime_keeps_the_hash(tmp_path):
    folder, names = make_job(tmp_path)
    before = pack(folder, names, tmp_path / "a1")
    os.utime(folder / "main.py", (1_700_000_000, 1_700_000_000))
    os.utime(folder / "data" / "input.csv", (12345, 12345))
    after = pack(folder, names, tmp_path / "a2")
    assert after.sha256 == before.sha256


def test_changing_one_byte_changes_the_hash(tmp_path):
    folder, names = make_job(tmp_path, {"main.py": "x = 1\n"})
    before = pack(folder, names, tmp_path / "a")
    (folder / "main.py").write_text("x = 2\n")  # same size, one byte different
    after = pack(folder, names, tmp_path / "a")
    assert after.sha256 != before.sha256
    assert after.size == before.size


def test_adding_a_file_changes_the_hash(tmp_path):
    folder, names = make_job(tmp_path)
    before = pack(folder, names, tmp_path / "a")
    write_files(folder, {"extra.txt": ""})  # even an empty file is content
    after = pack(folder, names + ["extra.txt"], tmp_path / "a")
    assert after.sha256 != before.sha256
    assert after.file_count == before.file_count + 1


def test_members_have_normalised_owner_time_and_mode(tmp_path):
    folder, names = make_job(tmp_path, {"run.sh": "#!/bin/sh\n", "plain.txt": "text"})
    os.chmod(folder / "run.sh", 0o700)  # group/other bits of the source must not leak into the archive
    os.chmod(folder / "plain.txt", 0o600)
    os.chown(folder / "plain.txt", 1234, 5678)  # tests run as root, like CI
    os.utime(folder / "plain.txt", (1_600_000_000, 1_600_000_000))
    members = members_of(pack(folder, names, tmp_path / "a").path)
    assert sorted(members) == ["plain.txt", "run.sh"]
    for member in members.values():
        assert member.isfile()
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == FIXED_MTIME
    # Private to the user who runs the task, executable bit kept.
    assert members["run.sh"].mode == 0o700
    assert members["plain.txt"].mode == 0o600


def test_executable_bit_survives_pack_and_unpack(tmp_path):
    folder, names = make_job(tmp_path, {"tool": "#!/bin/sh\necho hi\n", "data.txt": "d"})
    os.chmod(folder / "tool", 0o755)
    os.chmod(folder / "data.txt", 0o644)
    packed = pack(folder, names, tmp_path / "a")
    out = tmp_path / "out"
    unpack(packed.path, out)
    assert stat.S_IMODE((out / "tool").stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "data.txt").stat().st_mode) == 0o600
    assert (out / "tool").stat().st_mtime == FIXED_MTIME


def test_executable_bit_changes_the_hash(tmp_path):
    folder, names = make_job(tmp_path, {"tool": "#!/bin/sh\n"})
    os.chmod(folder / "tool", 0o644)
    before = pack(folder, names, tmp_path / "a")
    os.chmod(folder / "tool", 0o755)
    after = pack(folder, names, tmp_path / "a")
    assert after.sha256 != before.sha256


# ---------------------------------------------------------------- packing: naming and temporary files

def test_archive_is_named_by_its_sha256(tmp_path):
    folder, names = make_job(tmp_path)
    archives = tmp_path / "deep" / "archives"  # created on demand
    packed = pack(folder, names, archives)
    assert packed.path == archives / f"{packed.sha256}.tar"
    assert sha256_of(packed.path) == packed.sha256 == packed.path.stem
    assert len(packed.sha256) == 64
    assert [p.name for p in archives.iterdir()] == [packed.path.name], "no .packing-* leftovers"


def test_failed_pack_leaves_no_temporary_or_final_file(tmp_path):
    folder, names = make_job(tmp_path)
    archives = tmp_path / "archives"
    # The missing file sorts last, so real members have already been written when it fails.
    with pytest.raises(FileNotFoundError):
        pack(folder, names + ["zz_missing.dat"], archives)
    assert list(archives.iterdir()) == []


def test_symlink_to_a_file_is_packed_as_its_content(tmp_path):
    folder, _ = make_job(tmp_path, {"main.py": "", "data/real.csv": "x,y\n1,2\n"})
    os.symlink("data/real.csv", folder / "alias.csv")
    packed = pack(folder, ["alias.csv", "data/real.csv", "main.py"], tmp_path / "a")
    members = members_of(packed.path)
    assert members["alias.csv"].isfile() and not members["alias.csv"].issym()
    assert members["alias.csv"].size == len(b"x,y\n1,2\n")
    out = tmp_path / "out"
    unpack(packed.path, out)
    assert not (out / "alias.csv").is_symlink()
    assert (out / "alias.csv").read_bytes() == b"x,y\n1,2\n"


# ---------------------------------------------------------------- round trip

def test_round_trip_reproduces_every_file(tmp_path):
    big = random.Random(42).randbytes(5 * 1024 * 1024)
    files = {
        "main.py": "print('hi')\n",
        "empty.txt": b"",
        "big.bin": big,
        "with space/file name.txt": "spaces\n",
        "données/résumé αβγ.json": '{"ключ": "值"}',
        "a/b/c/d/deep.txt": "deep\n",
        "binary.dat": bytes(range(256)) * 4,
    }
    folder, names = make_job(tmp_path, files)
    packed = pack(folder, names, tmp_path / "a")
    assert packed.file_count == len(files)
    out = tmp_path / "out"
    unpack(packed.path, out)
    unpacked = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert unpacked == sorted(files)
    for rel, content in files.items():
        expected = content.encode("utf-8") if isinstance(content, str) else content
        assert (out / rel).read_bytes() == expected, rel
    assert (out / "big.bin").stat().st_size == 5 * 1024 * 1024


def test_unpack_leaves_no_staging_folder(tmp_path):
    folder, names = make_job(tmp_path)
    packed = pack(folder, names, tmp_path / "a")
    parent = tmp_path / "unpacked"
    unpack(packed.path, parent / "dest")
    assert [p.name for p in parent.iterdir()] == ["dest"]


def test_ensure_unpacked_unpacks_only_once(tmp_path):
    folder, names = make_job(tmp_path)
    packed = pack(folder, names, tmp_path / "archives")
    root = tmp_path / "unpacked"
    first = ensure_unpacked(packed.path, root)
    assert first == root / packed.sha256
    assert (first / "main.py").read_text() == "print('hi')\n"
    inode = (first / "main.py").stat().st_ino
    (first / "marker").write_text("still here")  # a re-extraction would replace the whole folder
    second = ensure_unpacked(packed.path, root)
    assert second == first
    assert (second / "marker").read_text() == "still here"
    assert (second / "main.py").stat().st_ino == inode
    assert sorted(p.name for p in root.iterdir()) == [packed.sha256]


# ---------------------------------------------------------------- hostile archives

def build_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """Write a tar by hand, with whatever names and types the test wants."""
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_member(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def special_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null
    return info


HOSTILE = {
    "dotdot": lambda outside: [(file_member("../escape.txt"), b"pwned")],
    "dotdot_nested": lambda outside: [(file_member("sub/../../escape.txt"), b"pwned")],
    "absolute": lambda outside: [(file_member(str(outside / "abs.txt")), b"pwned")],
    "symlink_inside": lambda outside: [(file_member("a.txt"), b"ok"),
                                       (special_member("link", tarfile.SYMTYPE, "a.txt"), None)],
    "symlink_outside": lambda outside: [(special_member("link", tarfile.SYMTYPE, str(outside)), None)],
    "hard_link": lambda outside: [(file_member("a.txt"), b"ok"),
                                  (special_member("hard", tarfile.LNKTYPE, "a.txt"), None)],
    "char_device": lambda outside: [(special_member("null", tarfile.CHRTYPE), None)],
    "fifo": lambda outside: [(special_member("pipe", tarfile.FIFOTYPE), None)],
    "backslash": lambda outside: [(file_member("..\\evil.txt"), b"pwned")],
    "benign_then_hostile": lambda outside: [(file_member("aaa_benign.txt"), b"fine"),
                                            (file_member("../escape.txt"), b"pwned")],
}
# The member each case must name in its error message.
HOSTILE_NAME = {"dotdot": "../escape.txt", "dotdot_nested": "sub/../../escape.txt", "absolute": "abs.txt",
                "symlink_inside": "link", "symlink_outside": "link", "hard_link": "hard",
                "char_device": "null", "fifo": "pipe", "backslash": "..\\evil.txt",
                "benign_then_hostile": "../escape.txt"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_is_written(tmp_path, case):
    # Layout: tmp/outside (canary target), tmp/work/inner/dest (destination);
    # staging happens in tmp/work/inner, so "../escape.txt" would land in tmp/work.
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = build_tar(tmp_path / "hostile.tar", HOSTILE[case](outside))
    inner = tmp_path / "work" / "inner"
    dest = inner / "dest"

    with pytest.raises(UnsafeArchiveError) as info:
        unpack(archive, dest)

    assert HOSTILE_NAME[case] in str(info.value)
    assert not dest.exists()
    assert list(inner.iterdir()) == [], "no staging folder .dest-* left behind"
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["inner"], "nothing escaped one level up"
    assert list(outside.iterdir()) == [], "canary folder outside the destination untouched"
    assert not (tmp_path / "escape.txt").exists()


def test_hostile_member_error_names_the_member_and_reason(tmp_path):
    archive = build_tar(tmp_path / "h.tar", [(special_member("data/link", tarfile.SYMTYPE, "/etc/passwd"), None)])
    with pytest.raises(UnsafeArchiveError, match=r"archive member 'data/link' is a symlink"):
        unpack(archive, tmp_path / "dest")
    archive = build_tar(tmp_path / "h2.tar", [(file_member("../x"), b"")])
    with pytest.raises(UnsafeArchiveError, match=r"archive member '\.\./x' points outside its folder"):
        unpack(archive, tmp_path / "dest")


def test_ensure_unpacked_refuses_hostile_archive_without_leaving_a_template(tmp_path):
    built = build_tar(tmp_path / "hostile.tar", [(file_member("ok.txt"), b"ok"),
                                                 (special_member("dev", tarfile.CHRTYPE), None)])
    # Named by its true hash, so it is the content check that must refuse it.
    archive = built.rename(tmp_path / f"{sha256_of(built)}.tar")
    root = tmp_path / "unpacked"
    with pytest.raises(UnsafeArchiveError):
        ensure_unpacked(archive, root)
    assert list(root.iterdir()) == []


def test_ensure_unpacked_refuses_an_archive_whose_bytes_do_not_match_its_hash(tmp_path):
    folder, names = make_job(tmp_path, {"main.py": b"print(1)\n", "data.bin": b"D" * 4000})
    packed = pack(folder, names, tmp_path / "archives")
    data = bytearray(packed.path.read_bytes())
    data[1024] ^= 0x01  # one flipped bit inside a member's data: tar itself cannot notice
    packed.path.write_bytes(bytes(data))
    root = tmp_path / "unpacked"
    with pytest.raises(ChecksumMismatchError, match="damaged"):
        ensure_unpacked(packed.path, root)
    assert not (root / packed.sha256).exists()


# ---------------------------------------------------------------- corrupted archives

@pytest.fixture
def two_file_archive(tmp_path) -> tuple[Path, dict[str, tarfile.TarInfo]]:
    folder, names = make_job(tmp_path, {"a.txt": b"A" * 5000, "b.txt": b"B" * 3000})
    packed = pack(folder, names, tmp_path / "archives")
    return packed.path, members_of(packed.path)


def assert_corrupt_refused(tmp_path: Path, data: bytes, message: str) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(data)
    parent = tmp_path / "unpacked"
    with pytest.raises(tarfile.ReadError, match=message):
        unpack(broken, parent / "dest")
    assert list(parent.iterdir()) == [], "neither the destination nor a staging folder is left"


def test_archive_truncated_inside_last_members_data_is_refused(tmp_path, two_file_archive):
    archive, members = two_file_archive
    cut = members["b.txt"].offset_data + 1000
    assert_corrupt_refused(tmp_path, archive.read_bytes()[:cut], "unexpected end of data")


def test_archive_truncated_inside_first_members_data_is_refused(tmp_path, two_file_archive):
    archive, members = two_file_archive
    cut = members["a.txt"].offset_data + 100
    assert_corrupt_refused(tmp_path, archive.read_bytes()[:cut], "unexpected end of data")


@pytest.mark.parametrize("damage", ["cut_at_member_boundary", "cut_inside_second_header",
                                    "second_header_corrupted"])
def test_archive_damaged_before_a_later_member_is_refused(tmp_path, two_file_archive, damage):
    # tarfile treats a missing, cut-off or invalid header after the first member as
    # the end of the archive, so without an extra check the copy silently lacks b.txt.
    archive, members = two_file_archive
    data = bytearray(archive.read_bytes())
    second = members["b.txt"].offset
    if damage == "cut_at_member_boundary":
        data = data[:second]
    elif damage == "cut_inside_second_header":
        data = data[:second + 300]
    else:
        data[second] ^= 0xFF  # first byte of the name: the header checksum no longer matches
    broken = tmp_path / "broken.tar"
    broken.write_bytes(bytes(data))
    dest = tmp_path / "unpacked" / "dest"
    with pytest.raises(tarfile.TarError):
        unpack(broken, dest)
    assert not dest.exists()


def test_random_garbage_is_refused(tmp_path):
    garbage = random.Random(7).randbytes(8192)
    assert_corrupt_refused(tmp_path, garbage, "invalid header")


def test_empty_file_is_refused(tmp_path):
    assert_corrupt_refused(tmp_path, b"", "empty file")
