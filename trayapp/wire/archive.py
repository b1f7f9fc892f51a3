"""Job archives: a job folder packed once, named by the sha256 of its bytes.

Packing is deterministic (sorted names, fixed owner, time and permission bits)
so the same content always gives the same hash: a host that already holds an
archive is never sent it again, and resubmitting an unchanged folder costs
nothing. The format is plain tar: lab networks are fast, simulation data
compresses poorly, and an uncompressed stream hashes and transfers at disk speed.

Unpacking treats every archive as hostile (it may come from another PC):
links, devices, absolute names and ``..`` are refused before anything is
written, and extraction then also goes through tarfile's ``data`` filter.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Archive members get this mtime so that touching a file without changing it
# does not change the hash. 2000-01-01: old enough to be obviously synthetic,
# new enough that tools comparing timestamps do not choke on the epoch.
FIXED_MTIME = 946684800
_CHUNK = 1 << 20
# How many folders deep an archive (a job's, a task's results) may nest. No job
# comes near it; Python's copy and walk recurse once or twice per level, so a
# tree a thousand levels deep raised RecursionError in the slave's loop.
MAX_DEPTH = 200


class UnsafeArchiveError(Exception):
    """The archive holds something that must not be unpacked; says what."""


@dataclass(frozen=True)
class PackedArchive:
    sha256: str
    path: Path
    size: int
    file_count: int


class _HashingWriter(io.RawIOBase):
    """Counts and hashes bytes on their way to a file, so packing reads the data once."""

    def __init__(self, raw):
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._raw.write(data)


def pack(folder: Path, files: list[str], archives_dir: Path) -> PackedArchive:
    """Pack ``files`` (POSIX paths relative to ``folder``) into ``archives_dir``.

    The archive is written to a temporary name and renamed into place, so a
    crash never leaves a half-written file under a valid hash.
    """
    archives_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".packing-", suffix=".tar", dir=archives_dir)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = _HashingWriter(raw)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel in sorted(files):
                    _add_file(tar, folder / rel, rel)
            raw.flush()
            os.fsync(raw.fileno())
        sha = writer.sha.hexdigest()
        final = archives_dir / f"{sha}.tar"
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return PackedArchive(sha, final, writer.size, len(files))


def _add_file(tar: tarfile.TarFile, source: Path, name: str) -> None:
    # stat() follows a symlink on purpose: a link to a data file travels as
    # the file's content, because the link's target will not exist on a slave.
    st = source.stat()
    info = tarfile.TarInfo(name)
    info.size = st.st_size
    info.mtime = FIXED_MTIME
    # Private once unpacked on a slave: another user there has no business reading the job.
    info.mode = 0o700 if st.st_mode & stat.S_IXUSR else 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with source.open("rb") as fh:
        tar.addfile(info, fh)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_members(members: list[tarfile.TarInfo]) -> None:
    """Refuse anything but plain files and folders with safe relative names,
    nested at most :data:`MAX_DEPTH` folders deep."""
    for member in members:
        name = member.name
        depth = name.rstrip("/").count("/")
        if depth > MAX_DEPTH:
            raise UnsafeArchiveError(f"archive member '{name[:80]}...' is nested {depth} folders deep; "
                                     f"at most {MAX_DEPTH} are allowed")
        kind = ("symlink" if member.issym() else "hard link" if member.islnk()
                else "device or fifo" if (member.isdev() or member.isfifo())
                else None if (member.isfile() or member.isdir()) else "special file")
        if kind:
            raise UnsafeArchiveError(f"archive member '{name}' is a {kind}; only files and folders are allowed")
        path = PurePosixPath(name)
        if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise UnsafeArchiveError(f"archive member '{name}' has an absolute path")
        if ".." in path.parts or "\\" in name:
            raise UnsafeArchiveError(f"archive member '{name}' points outside its folder")


def unpack(archive: Path | bytes, destination: Path) -> None:
    """Unpack ``archive`` (a file, or its bytes) into a new folder ``destination`` (atomically).

    Raises :class:`UnsafeArchiveError` for hostile content and
    ``tarfile.TarError`` for a corrupted or truncated file; in both cases
    nothing is left at ``destination``.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        source = {"fileobj": io.BytesIO(archive)} if isinstance(archive, bytes) else {"name": archive}
        with tarfile.open(mode="r:", **source) as tar:
            members = tar.getmembers()
            check_members(members)
            require_end_marker(tar)
            tar.extractall(staging, members=members, filter="data")
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def require_end_marker(tar: tarfile.TarFile) -> None:
    # tarfile takes a missing or damaged header after the first member for the
    # end of the archive, so a file cut at a member boundary would "unpack"
    # with members silently missing. A complete archive ends with two zero blocks.
    tar.fileobj.seek(tar.offset)
    if tar.fileobj.read(2 * tarfile.BLOCKSIZE) != bytes(2 * tarfile.BLOCKSIZE):
        raise tarfile.ReadError("truncated or damaged archive: no end-of-archive marker")


class ChecksumMismatchError(tarfile.TarError):
    """The archive's bytes do not hash to its name: damaged on disk or in transit."""


def ensure_unpacked(archive: Path, unpacked_root: Path, *, verified: bool = False) -> Path:
    """The archive's content as a folder, unpacked once and shared read-only
    as the template every task folder is copied from. The archive must hash to
    its own name; a damaged one is refused, never run. ``verified``: the
    caller hashed these very bytes a moment ago (an upload just checked)."""
    target = unpacked_root / archive.stem
    if not target.is_dir():
        unpacked_root.mkdir(parents=True, exist_ok=True)
        actual = archive.stem if verified else sha256_of(archive)
        if actual != archive.stem:
            raise ChecksumMismatchError(f"archive {archive.name} is damaged (its content hashes to {actual[:12]}…)")
        try:
            unpack(archive, target)
        except OSError:
            # Another process may have unpacked it at the same moment.
            if not target.is_dir():
                raise
    return target
