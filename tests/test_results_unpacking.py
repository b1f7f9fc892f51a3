"""A host's results archive unpacked straight into its staging folder
(trayapp.master.incoming): laid out as the task's results folder, and every
hostile member refused before anything is written."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from trayapp.master import incoming
from trayapp.master.bounds import HostMisbehaved
from trayapp.master.incoming import new_staging_folder, unpack_results
from trayapp.wire.archive import UnsafeArchiveError

MB = 1 << 20


def member(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, linkname: str = "",
           pax: dict | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, linkname, 1_700_000_000
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null
    info.pax_headers = pax or {}
    return info


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is None:
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_the_archive_becomes_the_task_results_folder(tmp_path):
    archive = tar_bytes((member("stdout.txt"), b"printed\n"), (member("stderr.txt"), b""),
                        (member("results/a.txt"), b"a"), (member("results/deep/er/b.bin"), b"b"),
                        (member("results/stdout.txt"), b"the task's own\n"),
                        (member("brian_debug_1.log"), b"debug"), (member("results/empty", tarfile.DIRTYPE), None),
                        (member("leftover/x.txt"), b"no slave packs this"))
    staging = new_staging_folder(tmp_path / "job")
    unpack_results(archive, staging, max_bytes=MB)
    assert tree(staging) == {"a.txt": b"a", "brian_debug_1.log": b"debug", "deep": None, "deep/er": None,
                             "deep/er/b.bin": b"b", "empty": None, "stderr.txt": b"",
                             "stdout.sparecycles1.txt": b"printed\n", "stdout.txt": b"the task's own\n"}
    assert [p.name for p in (tmp_path / "job").iterdir()] == [staging.name]
    assert staging.name.startswith(".incoming-")
    assert (staging / "a.txt").stat().st_mtime == 1_700_000_000


def test_permissions_are_those_of_tarfiles_data_filter(tmp_path):
    modes = {"setuid": 0o4777, "private": 0o000, "run": 0o750, "doc": 0o664, "odd": 0o611}
    archive = tar_bytes(*((member(f"results/{name}", mode=mode), b"x") for name, mode in modes.items()))
    staging = new_staging_folder(tmp_path)
    unpack_results(archive, staging, max_bytes=MB)
    got = {p.name: stat.S_IMODE(p.stat().st_mode) for p in staging.iterdir()}
    assert got == {"setuid": 0o755, "private": 0o600, "run": 0o750, "doc": 0o644, "odd": 0o600}
    assert got == {name: tarfile.data_filter(member(name, mode=mode), str(tmp_path)).mode
                   for name, mode in modes.items()}


HOSTILE = {
    "dotdot": [(member("results/../../escape.txt"), b"pwned")],
    "dotdot_top": [(member("../escape.txt"), b"pwned")],
    "absolute": [(member("/tmp/sparecycles-abs-canary.txt"), b"pwned")],
    "symlink": [(member("results/ok.txt"), b"ok"), (member("results/link", tarfile.SYMTYPE, linkname="/etc"), None)],
    "hard_link": [(member("results/ok.txt"), b"ok"),
                  (member("results/hard", tarfile.LNKTYPE, linkname="results/ok.txt"), None)],
    "device": [(member("results/null", tarfile.CHRTYPE), None)],
    "fifo_outside_the_layout": [(member("pipe", tarfile.FIFOTYPE), None)],
    "twice": [(member("results/a.txt"), b"first"), (member("results/a.txt"), b"second")],
    "file_and_folder": [(member("results/a"), b"a file"), (member("results/a/b.txt"), b"inside it")],
    "oversized": [(member("results/one.bin"), b"1" * (MB // 2 + 1)), (member("results/two.bin"), b"2" * (MB // 2))],
    "sparse": [(member("results/bomb", pax={"GNU.sparse.map": f"{64 * MB - 5},5", "GNU.sparse.size": str(64 * MB),
                                             "GNU.sparse.name": "results/bomb"}), b"hello")],
}
REASON = {"dotdot": "points outside its folder", "dotdot_top": "points outside its folder",
          "absolute": "has an absolute path", "symlink": "is a symlink", "hard_link": "is a hard link",
          "device": "is a device or fifo", "fifo_outside_the_layout": "is a device or fifo",
          "twice": "in the archive twice", "file_and_folder": "inside a file",
          "oversized": "more than this master takes", "sparse": "is a sparse file"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_member_is_refused_before_anything_is_written(tmp_path, case):
    job = tmp_path / "results" / "job-1"
    staging = new_staging_folder(job)
    with pytest.raises(UnsafeArchiveError, match=REASON[case]):
        unpack_results(tar_bytes(*HOSTILE[case]), staging, max_bytes=MB)
    if case not in ("twice", "file_and_folder"):  # found once the folder began to be written: the caller removes it
        assert list(staging.iterdir()) == []
    assert [p.name for p in job.iterdir()] == [staging.name]
    assert [p.name for p in tmp_path.iterdir()] == ["results"] and not Path("/tmp/sparecycles-abs-canary.txt").exists()


def test_without_the_sparse_check_a_small_archive_fills_the_masters_disk(tmp_path, monkeypatch):
    archive = tar_bytes(*HOSTILE["sparse"])
    assert len(archive) < 16 << 10
    monkeypatch.setattr(tarfile.TarInfo, "issparse", lambda self: False)  # the protection off
    staging = new_staging_folder(tmp_path / "off")
    unpack_results(archive, staging, max_bytes=1 << 30)
    assert (staging / "bomb").stat().st_size == 64 * MB  # the attack works: 64 MB from 10 kB
    monkeypatch.undo()
    with pytest.raises(UnsafeArchiveError, match="sparse"):
        unpack_results(archive, new_staging_folder(tmp_path / "on"), max_bytes=1 << 30)


@pytest.mark.parametrize("members, name", [
    ([(member("results"), b"a file where a folder belongs")], "results"),
    ([(member("stdout.txt", tarfile.DIRTYPE), None)], "stdout.txt"),
    ([(member("stderr.txt/inside"), b"x")], "stderr.txt"),
])
def test_a_layout_no_slave_packs_is_the_hosts_misbehaviour(tmp_path, members, name):
    with pytest.raises(HostMisbehaved, match=f"'{name}' as the wrong kind of file"):
        unpack_results(tar_bytes(*members), new_staging_folder(tmp_path), max_bytes=MB)


def test_a_truncated_archive_is_damaged_not_unpacked(tmp_path):
    archive = tar_bytes((member("results/a.txt"), b"a" * 2000), (member("results/b.txt"), b"b"))
    with pytest.raises(tarfile.TarError):
        unpack_results(archive[:2048], new_staging_folder(tmp_path), max_bytes=MB)


def test_a_new_staging_folder_has_the_users_default_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        staging = new_staging_folder(tmp_path / "made" / "on demand")
    finally:
        os.umask(old)
    assert stat.S_IMODE(staging.stat().st_mode) == 0o755  # it becomes the results folder: not mkdtemp's 0o700
    assert incoming.STAGING_PREFIX == ".incoming-"


def _deep_members(count: int, depth: int) -> list[tarfile.TarInfo]:
    """``count`` empty files, each ``depth`` folders deep under a top folder of its own."""
    return [member(f"results/{i}/" + "d/" * (depth - 2) + "f") for i in range(count)]


def test_a_deep_archive_of_empty_files_is_refused_before_it_fills_the_masters_memory(monkeypatch):
    """A hostile slave's archive of empty files, each 199 folders deep under its own
    top folder: passes the depth and size checks, and every folder's path was kept.
    Unbounded (the protection off), checking 400 members (~600 KB of archive) takes
    ~60 MB (squared in the depth; 8000 members took 1.4 GB); bounded, it is refused."""
    import tracemalloc

    members = _deep_members(400, 199)

    def peak_of_layout() -> tuple[int, Exception | None]:
        tracemalloc.start()
        try:
            incoming._layout(members, MB)
            problem = None
        except UnsafeArchiveError as exc:
            problem = exc
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return peak, problem

    monkeypatch.setattr(incoming, "MAX_FOLDER_PARTS", 10**12)
    peak_off, problem = peak_of_layout()
    assert problem is None and peak_off > 40 * MB, peak_off

    monkeypatch.undo()
    peak_on, problem = peak_of_layout()
    assert problem is not None and "too many or nest too deep" in str(problem), problem
    assert "fewer, larger files" in str(problem)
    assert peak_on < peak_off / 3, (peak_on, peak_off)


def test_an_archive_of_too_many_members_is_refused(monkeypatch):
    monkeypatch.setattr(incoming, "MAX_MEMBERS", 50)
    members = [member(f"results/{i}.txt") for i in range(51)]
    with pytest.raises(UnsafeArchiveError, match="too many"):
        incoming._layout(members, MB)
    incoming._layout(members[:50], MB)  # at the bound: taken


def test_many_files_in_a_few_deep_folders_are_taken(tmp_path):
    """The bound counts folders once: an honest result of many files deep in one tree is unpacked."""
    deep = "results/" + "/".join(f"level{n}" for n in range(150))
    archive = tar_bytes(*[(member(f"{deep}/f{i}.txt"), str(i).encode()) for i in range(3000)])
    staging = new_staging_folder(tmp_path / "job")
    unpack_results(archive, staging, max_bytes=MB)
    folder = staging.joinpath(*[f"level{n}" for n in range(150)])
    assert len(list(folder.iterdir())) == 3000 and (folder / "f2999.txt").read_bytes() == b"2999"


def test_names_a_case_insensitive_file_system_takes_for_one_keep_both_files(tmp_path, monkeypatch):
    """On macOS or an SMB share ``V.npy`` and ``v.npy`` are one name: the second file
    is kept under another name (not lost, not an endless "cannot write here"). This
    kernel has no case-insensitive file system: names are folded by wrapping the
    two calls that create them (the only mock here)."""
    staging = new_staging_folder(tmp_path / "job")

    def folded(path):
        rel = os.path.relpath(path, staging)
        return os.path.join(staging, rel.lower()) if not rel.startswith("..") else path

    real_open, real_mkdir = os.open, os.mkdir
    monkeypatch.setattr(incoming.os, "open", lambda path, *a, **k: real_open(folded(path), *a, **k))
    monkeypatch.setattr(incoming.os, "mkdir", lambda path, *a, **k: real_mkdir(folded(path), *a, **k))
    archive = tar_bytes((member("results/V.npy"), b"upper"), (member("results/v.npy"), b"lower"),
                        (member("results/Sub/a.txt"), b"a1"), (member("results/sub/b.txt"), b"b"))
    unpack_results(archive, staging, max_bytes=MB)
    monkeypatch.undo()
    assert tree(staging) == {"sub": None, "sub/a.txt": b"a1", "sub/b.txt": b"b",
                             "v.npy": b"upper", "v.sparecycles1.npy": b"lower"}


def test_a_forked_tasks_traceback_points_into_the_users_folder_as_a_cold_ones_does():
    """A task forked warm ran in its warm parent's box, not in its own task folder:
    its traceback is rewritten to the user's job folder too (the full suite found a
    warm task's spool paths shown to the user, and its failures not grouped with
    the cold first task's)."""
    from trayapp.master.results import paths_in_job_folder

    token = "0a1b2c3d4e5f6071"
    cold = f'File "/home/lender/spool/tasks/{token}/work/main.py", line 6, in <module>\n'
    warm = 'File "/home/lender/spool/warm/4242-17/work/task/main.py", line 6, in <module>\n'
    debug = "see /home/lender/spool/warm/4242-17/tmp/brian_debug_x.log"
    expected = 'File "/home/ana/sweep/main.py", line 6, in <module>\n'
    assert paths_in_job_folder(cold, token, "/home/ana/sweep/", "/r/3") == expected
    assert paths_in_job_folder(warm, token, "/home/ana/sweep/", "/r/3") == expected
    assert paths_in_job_folder(debug, token, "/home/ana/sweep", "/r/3") == "see /r/3/brian_debug_x.log"


def test_a_flood_of_members_is_refused_while_the_headers_are_read(tmp_path, monkeypatch):
    """The member bound holds before every header is in memory (a 2 GB archive of empty
    files is ~4 million headers): reading stops at the first member past it."""
    monkeypatch.setattr(incoming, "MAX_MEMBERS", 50)
    archive = tar_bytes(*[(member(f"results/{i}.txt"), b"") for i in range(500)])
    read = []
    real_next = tarfile.TarFile.next
    monkeypatch.setattr(tarfile.TarFile, "next", lambda self: read.append(1) or real_next(self))
    staging = new_staging_folder(tmp_path / "job")
    with pytest.raises(UnsafeArchiveError, match="more than 50"):
        unpack_results(archive, staging, max_bytes=MB)
    assert len(read) <= 52 and list(staging.iterdir()) == []
