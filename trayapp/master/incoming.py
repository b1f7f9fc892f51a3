"""A host's results archive, unpacked straight into the folder it becomes.

Settling a trivial task cost the master more in folders than in bytes: a
temporary folder, a staging folder in it, ``results/`` in that, a rename, a
move, then removing what was left (on a journalling file system each folder
made or removed is a journal transaction, per task). Here the archive (the
bytes of the ``finished`` message, or the fetched file) is unpacked once, into
one new hidden folder beside where the task's results go, already laid out as
the task's results folder: what the task wrote in ``results/`` at its top, its
logs and Brian's debug files beside (under another name if the task used
theirs). Putting it in place (:func:`trayapp.master.results.place`) is then
one rename, and a crash before it leaves a hidden folder, never a results
folder that looks whole.

The archive is hostile (it comes from another PC). Every member is checked
before anything is written, as :func:`trayapp.wire.archive.unpack` checks a
job archive (only plain files and folders, relative names without ``..``,
bounded depth, an end-of-archive marker), and more, as only a results archive
must: its layout (``results`` a folder, the logs files: the host is
misbehaving otherwise), no sparse member (it expands beyond the bytes that
came), at most ``max_bytes`` in all, no name twice, none both a file and a
folder. Files are created with ``O_EXCL | O_NOFOLLOW`` in the folder this
master just made, with the permissions tarfile's ``data`` filter gives (no
set-id bits, no group or other write); members outside the layout are checked,
then left out. Names are not resolved on disk (no ``realpath`` per member, the
cost of ``extractall``'s filter): nothing in the new folder can be a link.
"""

from __future__ import annotations

import io
import os
import secrets
import tarfile
from pathlib import Path, PurePosixPath

from trayapp.master.bounds import HostMisbehaved
from trayapp.master.results import LOG_FILES, free_name, is_debug_file
from trayapp.wire.archive import UnsafeArchiveError, check_members, require_end_marker

STAGING_PREFIX = ".incoming-"
# Bounds on what checking an archive holds in memory (its members, their folders'
# paths): far beyond any task's results, far below what hurts the master.
MAX_MEMBERS = 200_000
MAX_FOLDER_PARTS = 1_000_000
_CHUNK = 1 << 20
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class NameClash(OSError):
    """A file and a folder whose names this file system takes for one: results it cannot hold."""

    def __init__(self, rel: tuple[str, ...]):
        super().__init__(f"'{'/'.join(rel)}' names both a file and a folder on this master's file system "
                         "(it does not tell those names apart)")


def new_staging_folder(root: Path) -> Path:
    """A new, empty hidden folder in ``root`` (made if needed). Made with the
    default permissions, not mkdtemp's private ones: it becomes the task's
    results folder, as readable as any other folder the user makes."""
    while True:
        path = root / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except FileNotFoundError:  # the job's first results
            root.mkdir(parents=True, exist_ok=True)
            continue
        return path


def unpack_results(archive: Path | bytes, staging: Path, *, max_bytes: int) -> None:
    """Unpack a results archive (a file, or its bytes) into ``staging`` (new and
    empty), laid out as the task's results folder. Raises
    :class:`UnsafeArchiveError` for hostile content, :class:`HostMisbehaved`
    for a layout no slave packs, ``tarfile.TarError`` for a damaged archive,
    ``OSError`` when this side cannot write; what was written is then the
    caller's to remove (with ``staging``)."""
    source = {"fileobj": io.BytesIO(archive)} if isinstance(archive, bytes) else {"name": archive}
    with tarfile.open(mode="r:", **source) as tar:
        members = []
        for member in tar:  # read header by header: refused before a flood of members fills memory
            members.append(member)
            if len(members) > MAX_MEMBERS:
                raise UnsafeArchiveError(f"its results hold more than {MAX_MEMBERS} files and folders; results "
                                         "this large are best written into fewer, larger files")
        check_members(members)
        require_end_marker(tar)
        folders, files, logs = _layout(members, max_bytes)
        made: set[tuple[str, ...]] = {()}
        for rel in folders:
            _make_folders(staging, rel, made)
        for member, rel in files:
            _make_folders(staging, rel[:-1], made)
            _write(tar, member, staging.joinpath(*rel))
        for member, name in logs:
            _write(tar, member, staging / free_name(staging, name))


def _layout(members: list[tarfile.TarInfo], max_bytes: int):
    """Where each member goes: (folders, (file, its path) pairs, (log, its name) pairs), or why none may."""
    folders: list[tuple[str, ...]] = []
    files: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
    logs: list[tuple[tarfile.TarInfo, str]] = []
    seen_files: set[tuple[str, ...]] = set()
    seen_folders: set[tuple[str, ...]] = set()
    total = folder_parts = 0
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.issparse():
            raise UnsafeArchiveError(f"archive member '{member.name}' is a sparse file; only plain files "
                                     "and folders are allowed")
        if member.isfile():
            total += member.size
            if total > max_bytes:
                raise UnsafeArchiveError(f"archive member '{member.name}' brings its files past "
                                         f"{max_bytes / 1e6:.0f} MB, more than this master takes")
        if not parts:
            if member.isdir():
                continue  # "." : the archive's own top
            raise UnsafeArchiveError(f"archive member '{member.name}' has no name")
        if parts in seen_files or (member.isfile() and parts in seen_folders):
            raise UnsafeArchiveError(f"archive member '{member.name}' is in the archive twice, or both "
                                     "a file and a folder")
        # Deepest folder first, up to the first one seen: its own were checked when it
        # was. Every folder is kept as its path: bounded, or a deep archive of empty
        # files would need memory growing with the square of its depth.
        for depth in range(len(parts) - 1, 0, -1):
            if parts[:depth] in seen_folders:
                break
            if parts[:depth] in seen_files:
                raise UnsafeArchiveError(f"archive member '{member.name}' is inside a file")
            seen_folders.add(parts[:depth])
            folder_parts += depth
        if len(members) > MAX_MEMBERS or folder_parts > MAX_FOLDER_PARTS:
            raise UnsafeArchiveError(f"its folders and files are too many or nest too deep (at most {MAX_MEMBERS} "
                                     f"files and folders, and {MAX_FOLDER_PARTS} folder names counted along "
                                     "their paths); results this large are best written into fewer, larger files")
        (seen_folders if member.isdir() else seen_files).add(parts)
        top = parts[0]
        if top == "results":
            if member.isdir():
                if len(parts) > 1:
                    folders.append(parts[1:])
            elif len(parts) > 1:
                files.append((member, parts[1:]))
            else:
                raise HostMisbehaved("its results archive has 'results' as the wrong kind of file")
        elif top in LOG_FILES:
            if len(parts) > 1 or not member.isfile():
                raise HostMisbehaved(f"its results archive has '{top}' as the wrong kind of file")
            logs.append((member, top))
        elif len(parts) == 1 and member.isfile() and is_debug_file(top):
            logs.append((member, top))
        # Anything else no slave packs: checked above, then left out.
    # The logs first, then Brian's debug files: a name the task took goes to the later one.
    logs.sort(key=lambda log: (LOG_FILES.index(log[1]) if log[1] in LOG_FILES else len(LOG_FILES), log[1]))
    return folders, files, logs


def _make_folders(staging: Path, rel: tuple[str, ...], made: set[tuple[str, ...]]) -> None:
    have = len(rel)
    while have and rel[:have] not in made:  # the deepest one made already (its own are too)
        have -= 1
    for depth in range(have + 1, len(rel) + 1):
        try:
            os.mkdir(staging.joinpath(*rel[:depth]))
        except FileExistsError:
            # Two names this file system takes for one (case or Unicode form
            # insensitive, e.g. macOS, SMB shares): both folders' files go in one.
            if not staging.joinpath(*rel[:depth]).is_dir():
                raise NameClash(rel[:depth]) from None
        made.add(rel[:depth])


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    mode = member.mode & 0o755  # as tarfile's data filter: no set-id bits, no group or other write,
    if not mode & 0o100:  # executable only if its owner may run it, and always the owner's to read and write
        mode &= ~0o111
    mode |= 0o600
    try:
        fd = os.open(path, _NEW_FILE, 0o600)
    except FileExistsError:  # a name this file system takes for another one's (see _make_folders)
        path = path.parent / free_name(path.parent, path.name)
        fd = os.open(path, _NEW_FILE, 0o600)
    try:
        source = tar.extractfile(member)
        while chunk := source.read(_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        try:
            os.utime(fd, (member.mtime, member.mtime))
        except (OSError, OverflowError, ValueError):
            pass  # a time this file system cannot hold: the file keeps the time it was written
    finally:
        os.close(fd)
