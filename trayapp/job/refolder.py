"""A job's folder for the jobs service (:class:`trayapp.master.jobs.Jobs`, which
gets this from :mod:`trayapp.app`: the queue's side knows nothing of folders):
submitting it, what changed in it since, and packing it again (``retry --repack``)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from trayapp.config import Config
from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.job.folder import list_job_files, open_job_folder
from trayapp.job.manifest import load_manifest
from trayapp.job.requirements import job_requirements
from trayapp.job.submit import Submission, check_before_queueing, submit_job
from trayapp.master.store import JobRecord, Store
from trayapp.wire.archive import PackedArchive, pack


class JobFolders:
    def __init__(self, home: Home, config: Config):
        self.home = home
        self.config = config

    def submit(self, store: Store, folder: str | Path, **options) -> Submission:
        """Check ``folder``, pack it and queue its tasks in ``store`` (see :func:`submit_job`)."""
        return submit_job(store, self.home, self.config, folder, **options)

    def change(self, job: JobRecord) -> str | None:
        """What changed in the job's folder since it was packed, in a few words, or None."""
        root = Path(job.folder)
        if not root.is_dir():
            return f"the folder {root} is gone"
        try:
            files = list_job_files(root, load_manifest(root).exclude)
            now = {rel: _file_digest(root / rel) for rel in files}
        except (UserError, OSError) as exc:
            return f"the folder cannot be read now: {exc}"
        try:
            then = _archive_digests(Path(job.archive_path))
        except (OSError, tarfile.TarError):
            return None  # nothing to compare with: say nothing rather than guess
        changed = sorted(n for n in now.keys() & then.keys() if now[n] != then[n])
        added, removed = sorted(now.keys() - then.keys()), sorted(then.keys() - now.keys())
        parts = [f"{_some(names)} {what}" for names, what in ((changed, "changed"), (added, "added"),
                                                               (removed, "removed")) if names]
        return ", ".join(parts) or None

    def repack(self, job: JobRecord) -> tuple[PackedArchive, tuple[str, ...]]:
        """The folder packed as it is now, checked as submit checks it, and its requirements."""
        folder = open_job_folder(job.folder, main=job.main, param_sets=[{}])
        requires = job_requirements(folder.root, folder.manifest)
        check_before_queueing(self.home, self.config, folder.root, folder.main, requires)
        packed = pack(folder.root, folder.files, self.home.archives_dir)
        return packed, requires


def _some(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:  # follows a link, as pack() does
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _archive_digests(archive: Path) -> dict[str, str]:
    """Per file in one of our own archives (made by pack(), never a host's), its sha256."""
    found = {}
    with tarfile.open(archive, "r:") as tar:
        for member in tar:
            if member.isfile():
                digest = hashlib.sha256()
                source = tar.extractfile(member)
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
                found[member.name] = digest.hexdigest()
    return found
