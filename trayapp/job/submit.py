"""Submitting a job: check the folder, pack it once, queue one task per parameter set.

The ``submit`` verb: the CLI calls it, and so do the tray window's drop zone,
its submit dialog and the Python API (``sparecycles.submit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trayapp.wire.archive import pack
from trayapp.config import Config
from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.job.folder import JobFolder, open_job_folder
from trayapp.job.manifest import Manifest
from trayapp.job.requirements import check_resolvable, installed_versions, job_requirements, requirement_notes
from trayapp.job.syntax import check_main_compiles
from trayapp.master.store import JobRecord, Store


@dataclass(frozen=True)
class Submission:
    job: JobRecord
    folder: JobFolder
    archive_size: int
    notes: tuple[str, ...] = ()  # what the user should know, though nothing is wrong enough to refuse


def submit_job(store: Store, home: Home, config: Config, folder: str | Path, *, params: str | Path | None = None,
               param_sets: list[dict] | None = None, name: str | None = None, main: str | None = None,
               time_limit_s: float | None = None, retries: int | None = None,
               follow_links: bool = False) -> Submission:
    """Queue ``folder`` as a job, with the sets of the parameter file ``params``
    or the given ``param_sets`` (JSON values; see :mod:`trayapp.taskparams` for
    sets that are not). Raises :class:`UserError` before anything is queued if
    the folder or its parameters are wrong, so a bad submission never leaves
    half a job behind."""
    job_folder = open_job_folder(folder, main=main, params=params, param_sets=param_sets, follow_links=follow_links)
    job_name = name or job_folder.name
    check_job_name(job_name)
    manifest = job_folder.manifest
    requires = job_requirements(job_folder.root, manifest)
    check_before_queueing(home, config, job_folder.root, job_folder.main, requires)
    packed = pack(job_folder.root, job_folder.files, home.archives_dir)
    job = store.add_job(
        name=job_name, folder=str(job_folder.root), main=job_folder.main, archive_sha=packed.sha256,
        archive_path=str(packed.path), params_file=str(job_folder.params_file) if job_folder.params_file else None,
        param_sets=job_folder.param_sets, results_root=config.results_root(home),
        retries=retries if retries is not None else (manifest.retries or config.default_retries),
        time_limit_s=time_limit_s if time_limit_s is not None else manifest.time_limit_s,
        requires=requires, memory_mb=manifest.memory_mb)
    notes = unhonoured_requests(manifest) + (what_requirements_need(home, config, requires) if requires else ())
    return Submission(job, job_folder, packed.size, notes)


def check_before_queueing(home: Home, config: Config, root: Path, main: str, requires: tuple[str, ...]) -> None:
    """Mistakes every host would make the same way, refused once here: a main
    script that does not compile, a requirement the lab's index has no version of."""
    from packaging.requirements import Requirement

    from trayapp.install.taskenv import task_interpreter

    python = task_interpreter(config.task_python, home=home, create=False)
    check_main_compiles(root, main, python)
    if requires and (config.package_index or config.wheel_folder):
        versions = installed_versions(python, [Requirement(text).name for text in requires]) if python else {}
        check_resolvable(requires, index_url=config.package_index, wheel_folder=config.wheel_folder,
                         installed=versions.get)


def what_requirements_need(home: Home, config: Config, requires: tuple[str, ...]) -> tuple[str, ...]:
    """Per requirement: met by this PC's task environment, or to be installed (and
    about how long that takes, from the environments built here before)."""
    from packaging.requirements import Requirement

    from trayapp.install.envbuild import find_uv, installer_name
    from trayapp.install.envs import env_store_for
    from trayapp.install.taskenv import task_interpreter

    installer = installer_name(find_uv())
    python = task_interpreter(config.task_python, home=home, create=False)
    if python is None:
        return requirement_notes(requires, lambda _name: None, [], installer)
    past = [e.build_s for e in env_store_for(home.data_dir, python).entries()]
    versions = installed_versions(python, [Requirement(text).name for text in requires])
    return requirement_notes(requires, versions.get, past, installer)


# The results folder is "<name>-<job id>"; most file systems allow 255 bytes a name.
MAX_NAME_CHARS = 100


def check_job_name(name: str) -> None:
    """A name that can be a folder name and a line in the ``status`` table."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"job name '{name}' cannot be used as a folder name", "choose a name without slashes")
    if len(name) > MAX_NAME_CHARS:
        raise UserError(f"the job name is {len(name)} characters long, more than {MAX_NAME_CHARS}",
                        "choose a shorter name with --name")
    if any(not ch.isprintable() for ch in name):
        raise UserError(f"the job name {name!r} holds a line break or another control character",
                        "choose a name of printable characters with --name")


def unhonoured_requests(manifest: Manifest) -> tuple[str, ...]:
    """The manifest's resource requests this version reads but does not act on
    yet, said at submit time rather than silently dropped."""
    notes = []
    if manifest.cores > 1:
        notes.append(f"sparecycles.toml asks for cores = {manifest.cores}, but this version runs every task in "
                     "one slot, with OMP_NUM_THREADS, MKL_NUM_THREADS, OPENBLAS_NUM_THREADS and "
                     "NUMEXPR_NUM_THREADS set to 1")
    return tuple(notes)
