"""Reading what a task made, from outside its sandbox, as hostile content.

The slave packs a task's ``results/``, reads the tail of its ``stderr.txt``,
its exit code and its ``task.json``, measures its folder and removes it, all
with the lender's rights and outside the sandbox. A task that could make the
slave follow a link would get, through its results, a file of the lender's
it cannot open itself (``results/k.txt -> ~/.ssh/id_ed25519``). So every
read here:

- opens each folder and file relative to its parent's descriptor with
  ``O_NOFOLLOW``: a link is never followed, at any depth, even if the task
  swaps a folder for a link while the slave walks;
- checks what it opened with ``fstat``: only regular files and folders are
  read; a link, FIFO, socket or device is refused with its name
  (:class:`NotPlainFile`), as the master refuses them in a results archive;
- opens with ``O_NONBLOCK``, so a FIFO in a file's place cannot block the slave.

Hard links need no rule of their own: inside the sandbox a task sees none of
the lender's files, and ``link()`` across the sandbox's bind mounts fails
with ``EXDEV`` (and ``fs.protected_hardlinks`` forbids linking files one
cannot read), so a hard link in ``results/`` can only be to the task's own
files. A task run without a sandbox (the lender's ``sandbox = "off"``) has
the lender's rights anyway.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from trayapp.wire.archive import MAX_DEPTH

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_OPEN_FOLDER = _OPEN | os.O_DIRECTORY


class NotPlainFile(ValueError):
    """Something a task made that is not a regular file or folder; says what and
    where. A ValueError: the task's doing, not a fault of this PC."""

    def __init__(self, name: str, kind: str):
        super().__init__(f"{name} is {kind}: only plain files and folders come back from a task "
                         f"(write the data itself there instead)")
        self.name = name
        self.kind = kind


def kind_of(mode: int) -> str:
    """What a file mode is, in words."""
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a special file")


def _open(name: str | Path, *, dir_fd: int | None, folder: bool, shown: str) -> int:
    """``name`` opened without following a link: NotPlainFile if it is a link or
    a special file (looked at before it is opened: opening a device may act on
    it), IsADirectoryError/NotADirectoryError if it is the other plain kind."""
    _check_kind(os.lstat(name, dir_fd=dir_fd).st_mode, folder, shown)
    try:
        fd = os.open(name, _OPEN_FOLDER if folder else _OPEN, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link since the lstat
            raise NotPlainFile(shown, "a symbolic link") from None
        raise
    try:
        _check_kind(os.fstat(fd).st_mode, folder, shown)  # swapped since the lstat? O_NOFOLLOW saw no link
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_kind(mode: int, folder: bool, shown: str) -> None:
    if stat.S_ISDIR(mode) == folder and (folder or stat.S_ISREG(mode)):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file", shown)
    if stat.S_ISREG(mode):
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", shown)
    raise NotPlainFile(shown, kind_of(mode))


def open_regular(path: str | Path, *, dir_fd: int | None = None, shown: str | None = None) -> int:
    """A read-only descriptor of the regular file ``path`` (relative to ``dir_fd``
    if given); FileNotFoundError if absent, NotPlainFile if not a regular file."""
    return _open(path, dir_fd=dir_fd, folder=False, shown=shown or str(path))


def open_folder_fd(path: str | Path, *, dir_fd: int | None = None, shown: str | None = None) -> int:
    """A descriptor of the folder ``path``, never reached through a link (the caller closes it)."""
    return _open(path, dir_fd=dir_fd, folder=True, shown=shown or str(path))


@contextmanager
def open_folder(path: str | Path, *, dir_fd: int | None = None, shown: str | None = None) -> Iterator[int]:
    """A descriptor of the folder ``path``, never reached through a link."""
    fd = open_folder_fd(path, dir_fd=dir_fd, shown=shown)
    try:
        yield fd
    finally:
        os.close(fd)


def read_regular(path: str | Path, limit: int, *, dir_fd: int | None = None) -> bytes:
    """Up to ``limit`` bytes of a regular file (never a link's target, never a FIFO)."""
    fd = open_regular(path, dir_fd=dir_fd)
    try:
        chunks, left = [], limit
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def tail_of(path: Path, max_bytes: int = 2000, max_lines: int = 20) -> str:
    """The last lines of a task's output file (what a failed task's message shows);
    empty when it is missing or not a regular file."""
    try:
        fd = open_regular(path)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - max_bytes), os.SEEK_SET)
        data = os.read(fd, max_bytes)
    except OSError:
        return ""
    finally:
        os.close(fd)
    lines = data.decode("utf-8", "replace").splitlines()[-max_lines:]
    return "\n".join(lines)


class TooDeep(ValueError):
    """A folder a task made nests deeper than an archive may (the task's doing)."""

    def __init__(self, name: str, depth: int):
        super().__init__(f"{name[:80]}... is nested more than {depth} folders deep: results may nest at most "
                         f"{depth} (keep them in a flatter folder)")


def plain_files(folder_fd: int, prefix: str, depth: int = MAX_DEPTH) -> Iterator[tuple[str, int]]:
    """Every regular file under the open folder ``folder_fd``, in name order,
    as (``prefix/relative/name``, an open descriptor the caller may read and
    must not close). Raises NotPlainFile at the first entry that is neither a
    file nor a folder: nothing a task made is ever followed or skipped silently;
    and :class:`TooDeep` for folders nested deeper than ``depth`` (one
    descriptor and one frame per level)."""
    with os.scandir(folder_fd) as listing:
        names = sorted(entry.name for entry in listing)
    for name in names:
        shown = f"{prefix}/{name}"
        mode = os.lstat(name, dir_fd=folder_fd).st_mode
        if stat.S_ISDIR(mode):
            if depth <= 0:
                raise TooDeep(shown, MAX_DEPTH)
            with open_folder(name, dir_fd=folder_fd, shown=shown) as sub:
                yield from plain_files(sub, shown, depth - 1)
        elif stat.S_ISREG(mode):
            fd = open_regular(name, dir_fd=folder_fd, shown=shown)  # it may have changed since the lstat
            try:
                yield shown, fd
            finally:
                os.close(fd)
        else:
            raise NotPlainFile(shown, kind_of(mode))


def disk_usage(folder: Path) -> int:
    """The bytes the files under ``folder`` occupy on disk (blocks, each hard-linked
    file once), walked depth first without following links; 0 when it is missing.
    Entries that vanish during the walk are skipped (the task may be writing as it
    is measured); any other error (a folder it cannot open, nesting deeper than
    this process may hold descriptors) is raised: what cannot be measured is not
    taken to be small."""
    try:
        top = os.open(folder, _OPEN_FOLDER)
    except FileNotFoundError:
        return 0
    seen: set[tuple[int, int]] = set()
    total = 0
    stack: list[tuple[int, list[str]]] = []
    try:
        stack.append((top, _names(top)))
        while stack:
            fd, names = stack[-1]
            if not names:
                os.close(stack.pop()[0])
                continue
            name = names.pop()
            try:
                st = os.lstat(name, dir_fd=fd)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    sub = os.open(name, _OPEN_FOLDER, dir_fd=fd)
                    stack.append((sub, _names(sub)))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed, or replaced by a file, since it was listed
    finally:
        for fd, _ in stack:
            os.close(fd)
    return total


def _names(fd: int) -> list[str]:
    with os.scandir(fd) as listing:
        return [entry.name for entry in listing]


def remove_tree(folder: Path) -> None:
    """Remove a folder a task (or a master's SFTP) wrote into, as completely as this user can.

    The walk goes by descriptors from the top and never follows a link, even
    one a live process swaps in for a folder meanwhile; a folder the task made
    unreadable (mode 000: as its owner, the lender may open it up again) is made
    ``rwx`` for its owner through its own descriptor, then removed in turn. A
    tree deeper than Python's recursion (or this process's descriptors) reach
    is first cut into shallow pieces (:func:`_bring_up_deep_folders`), then
    removed again. Whatever still resists is left (and logged by nobody: the
    next clean-up of the spool tries again)."""
    try:
        _rmtree_opening_up(folder)
    except (OSError, RecursionError):
        pass
    if os.path.lexists(folder) and stat.S_ISDIR(os.lstat(folder).st_mode):
        try:
            _bring_up_deep_folders(folder)
            _rmtree_opening_up(folder)
        except (OSError, RecursionError):
            pass


# Folders this deep below the one being removed are moved up into it first:
# rmtree recurses once per level and holds a descriptor or two per level.
_REMOVE_DEPTH = 100


def _bring_up_deep_folders(folder: Path) -> None:
    """Move every folder more than ``_REMOVE_DEPTH`` levels below ``folder`` up into
    ``folder`` itself (under a new name), until none is; never follows a link.
    Each moved folder is walked once more, so the work stays one walk of the tree."""
    top = os.open(folder, _OPEN_FOLDER)
    try:
        todo: list[str | None] = [None]  # None: the top itself; else a folder moved up into it
        while todo:
            start = todo.pop()
            try:
                if start is not None:
                    _open_up_at(top, start)  # a folder this walk moved here itself
                first = top if start is None else os.open(start, _OPEN_FOLDER, dir_fd=top)
            except OSError:
                continue
            stack = [(first, [])]
            try:
                stack[0] = (first, _names(first))
                while stack:
                    fd, names = stack[-1]
                    if not names:
                        done = stack.pop()[0]
                        if done != top:
                            os.close(done)
                        continue
                    name = names.pop()
                    try:
                        if not stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                            continue
                        if len(stack) >= _REMOVE_DEPTH:
                            moved = f".deep-{secrets.token_hex(8)}"
                            os.rename(name, moved, src_dir_fd=fd, dst_dir_fd=top)
                            todo.append(moved)
                            continue
                        _open_up_at(fd, name)  # a folder (just seen): opened up, never through a link
                        sub = os.open(name, _OPEN_FOLDER, dir_fd=fd)
                    except (FileNotFoundError, NotADirectoryError, PermissionError):
                        continue
                    stack.append((sub, _names(sub)))
            finally:
                for fd, _ in stack:
                    if fd != top:
                        os.close(fd)
    finally:
        os.close(top)


def _rmtree_opening_up(folder: Path) -> None:
    """Remove ``folder`` and everything in it, walking by descriptors from the top
    only: a folder (or one above it) swapped for a link while this runs is never
    followed, and a folder the task made unreadable is opened up through its own
    descriptor first. Raises RecursionError (or leaves what it could not open)
    on trees deeper than Python's recursion: :func:`remove_tree` handles those."""
    try:
        top = os.open(folder, _OPEN_FOLDER)
    except FileNotFoundError:
        return
    except OSError:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            os.unlink(folder)  # a file or a link: removed, never followed
            return
        _open_up_at(os.open(folder.parent, _OPEN_FOLDER), folder.name, close_dir=True)
        top = os.open(folder, _OPEN_FOLDER)
    try:
        _empty_opening_up(top)
    finally:
        os.close(top)
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _empty_opening_up(fd: int) -> None:
    opened = False
    for name in _names(fd):
        try:
            _remove_at(fd, name)
        except PermissionError:
            if opened:
                continue
            opened = True  # a folder that is readable but not writable: opened up once, tried again
            try:
                os.chmod(f"/proc/self/fd/{fd}", 0o700)
                _remove_at(fd, name)
            except OSError:
                pass
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone meanwhile, or swapped for something else: the next pass sees it
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EMFILE):
                continue  # what resists stays for the next clean-up (or the deep-tree pass)
            raise


def _remove_at(fd: int, name: str) -> None:
    """Remove ``name`` in the folder ``fd``: a file or link unlinked, a folder emptied
    through its own descriptor (opened up first if the task locked it), then removed."""
    if not stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
        os.unlink(name, dir_fd=fd)
        return
    try:
        sub = os.open(name, _OPEN_FOLDER, dir_fd=fd)
    except PermissionError:
        _open_up_at(fd, name)
        sub = os.open(name, _OPEN_FOLDER, dir_fd=fd)
    try:
        _empty_opening_up(sub)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=fd)


def _open_up_at(dir_fd: int, name: str, *, close_dir: bool = False) -> None:
    """Make the folder ``name`` in ``dir_fd`` rwx for its owner (as the lender owns
    what its tasks made), never through a link: it is opened O_PATH|O_NOFOLLOW|
    O_DIRECTORY (a link, even one swapped in after a look, is refused) and changed
    through that descriptor."""
    try:
        path = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{path}", 0o700)
        finally:
            os.close(path)
    finally:
        if close_dir:
            os.close(dir_fd)
