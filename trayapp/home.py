"""Where SpareCycles keeps its files.

One :class:`Home` names every folder the app writes to. ``SPARECYCLES_HOME``
puts all of them under one folder, so several masters and slaves can live on
one machine (tests, benchmarks); otherwise each goes where the platform expects
it (``platformdirs``: XDG folders on Linux, ``~/Library`` on macOS, ``%APPDATA%``
on Windows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "sparecycles"


@dataclass(frozen=True)
class Home:
    config_dir: Path
    data_dir: Path
    log_dir: Path

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "Home":
        environ = os.environ if environ is None else environ
        root = environ.get("SPARECYCLES_HOME")
        if root:
            root_path = Path(root).expanduser().absolute()
            return cls(root_path, root_path, root_path / "logs")
        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        return cls(Path(dirs.user_config_dir), Path(dirs.user_data_dir), Path(dirs.user_log_dir))

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def queue_db(self) -> Path:
        return self.data_dir / "queue.sqlite3"

    @property
    def archives_dir(self) -> Path:
        """Packed job folders, one file per content hash."""
        return self.data_dir / "archives"

    @property
    def spool_dir(self) -> Path:
        """The slave's spool (``trayapp.slave.spool``): what its masters' SFTP may reach."""
        return self.data_dir / "spool"

    @property
    def default_results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def dispatcher_lock(self) -> Path:
        return self.data_dir / "dispatcher.lock"

    def ensure(self) -> "Home":
        """Create the folders, private to this user: the queue holds parameters,
        the spool other people's jobs, the config folder known_hosts."""
        for folder in (self.config_dir, self.data_dir, self.log_dir, self.archives_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.stat().st_mode & 0o077:
                folder.chmod(0o700)  # made by an older version, or by hand
        return self


def keep_files_private() -> None:
    """Everything this process creates from now on is readable by its user only
    (files 0600, folders 0700): results, logs, spool and queue alike, also those
    outside the SpareCycles folders (a results root the user chose)."""
    os.umask(0o077)
