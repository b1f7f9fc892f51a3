"""One attempt's folder and command: what a task gets, whichever runner runs it.

The job folder contract (see the design page) says a task runs in a fresh
copy of its job folder, gets its parameter set as JSON in ``sys.argv[1]``
and in ``params.json`` (a pickled set as ``params.pkl``, see
:mod:`trayapp.taskparams`), and ``SPARECYCLES_TASK``/``SPARECYCLES_JOB`` in
its environment. Each attempt also gets its slot's compiler cache and a
scratch folder (:mod:`trayapp.run.taskcache`). This module turns that into a
:class:`~trayapp.run.runner.Launch`.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from trayapp.run.runner import Launch
from trayapp.run.taskfiles import remove_tree
from trayapp.run.taskcache import prepare_task_caches, task_cache_environment, task_writable
from trayapp.taskparams import task_argument, write_task_params

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def prepare(task_dir: Path, template: Path, params: object, *, cache_dir: Path | None = None,
            cores: int = 1) -> None:
    """Make the attempt's folder: a fresh copy of the job folder plus params.json
    (and params.pkl), and, given its slot's ``cache_dir``, its caches and scratch folder."""
    work = task_dir / "work"
    try:
        task_dir.mkdir(parents=True)
    except FileExistsError:
        if os.path.lexists(work):  # left over from a start that crashed half-way
            remove_tree(work)
    copy_job_folder(template, work)
    write_task_params(work, params)
    if cache_dir is not None:
        prepare_task_caches(work, task_dir, cache_dir, cores)


def copy_job_folder(template: Path, target: Path) -> None:
    """A fresh copy of the unpacked job folder ``template`` (made by this slave from
    a checked archive: plain files and folders only) at ``target``, modes and
    times kept. What shutil.copytree does, in half the system calls per file: no
    look for extended attributes (an archive carries none), no second stat, the
    times and mode set through the new file's descriptor. Anything but a plain
    file or folder (none should be there) is refused: never followed."""
    os.mkdir(target, 0o700)
    with os.scandir(template) as entries:
        for entry in entries:
            source, copy = entry.path, os.path.join(target, entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                copy_job_folder(Path(source), Path(copy))
            elif stat.S_ISREG(st.st_mode):
                _copy_file(source, copy, st)
            else:  # the template is an archive this slave unpacked: only files and folders
                raise OSError(f"{source} is neither a file nor a folder; a job folder holds only those")
    st = os.stat(template)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_file(source: str, copy: str, st: os.stat_result) -> None:
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        out = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            left = st.st_size
            while left > 0:
                try:
                    done = os.copy_file_range(src, out, left)
                except OSError:
                    done = 0
                if done == 0:
                    # Not between these two file systems, or one that copies nothing
                    # this way (FUSE, some NFS): plain reads and writes from where it
                    # stopped (the descriptors' offsets moved with what it copied).
                    with os.fdopen(os.dup(src), "rb") as fin, os.fdopen(os.dup(out), "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                    break
                left -= done
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        os.close(src)


def task_launch(token: str, task_dir: Path, *, python: str, main: str, params: object, job_id: str, idx: int,
                slot: int = 0, cores: int = 1, nice: int = 10, time_limit_s: float | None = None,
                memory_mb: int | None = None, max_processes: int | None = None, disk_mb: int | None = None,
                cache_dir: Path | None = None) -> Launch:
    """The attempt's launch; ``python`` is the task environment's interpreter or
    its job environment's, ``cache_dir`` its slot's compiler cache."""
    env = {
        "SPARECYCLES_TASK": str(idx),
        "SPARECYCLES_JOB": job_id,
        "PYTHONUNBUFFERED": "1",  # so stdout.txt shows progress while the task runs
    }
    # One slot is one core: numerical libraries must not each spawn a thread
    # per core, or N tasks on N cores fight over N*N threads.
    for variable in _THREAD_VARIABLES:
        env[variable] = str(cores)
    writable: tuple[Path, ...] = ()
    if cache_dir is not None:
        env.update(task_cache_environment(task_dir, cache_dir, cores))
        writable = task_writable(task_dir, cache_dir)
    return Launch(token=token, task_dir=task_dir, argv=(python, main, task_argument(params)), env=env, slot=slot,
                  cores=cores, nice=nice, time_limit_s=time_limit_s, memory_mb=memory_mb,
                  max_processes=max_processes, disk_mb=disk_mb, writable=writable)

