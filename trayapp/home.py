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

    # ----- the config folder ----------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def identity_file(self) -> Path:
        """This PC's stable id as a master, told to slaves."""
        return self.config_dir / "id"

    @property
    def known_hosts(self) -> Path:
        """The slaves' SSH host keys the user trusted."""
        return self.config_dir / "known_hosts"

    # ----- the data folder: the master's --------------------------------------------------

    @property
    def queue_db(self) -> Path:
        return self.data_dir / "queue.sqlite3"

    @property
    def archives_dir(self) -> Path:
        """Packed job folders, one file per content hash."""
        return self.data_dir / "archives"

    @property
    def map_dir(self) -> Path:
        """Job folders that ``sparecycles.map`` generates (a function and its runner)."""
        return self.data_dir / "map"

    @property
    def default_results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def dispatcher_lock(self) -> Path:
        return self.data_dir / "dispatcher.lock"

    @property
    def dispatcher_starting_lock(self) -> Path:
        """Held by whoever is starting a background dispatcher, until the child holds the real one."""
        return self.data_dir / "dispatcher.starting"

    @property
    def local_spool_dir(self) -> Path:
        """The spool of the slave engine inside the dispatcher (the "local" host)."""
        return self.data_dir / "local-spool"

    @property
    def tray_lock(self) -> Path:
        """Held by the one tray app running for this home."""
        return self.data_dir / "trayapp.lock"

    # ----- the data folder: the slave daemon's ----------------------------------------------

    @property
    def spool_dir(self) -> Path:
        """The slave daemon's tasks: their archives, run folders and records; the
        part of the disk its masters' SFTP may reach (``trayapp.slave.spool``)."""
        return self.data_dir / "spool"

    @property
    def slave_lock(self) -> Path:
        return self.data_dir / "slave.lock"

    @property
    def slave_socket(self) -> Path:
        """Where the slave daemon listens, if the path fits a socket address
        (:func:`trayapp.slave.agent.socket_path` has the fallback)."""
        return self.data_dir / "slave.sock"

    @property
    def task_env_dir(self) -> Path:
        """The virtual environment the bundle creates for tasks (Brian in it)."""
        return self.data_dir / "task-env"

    # ----- the log folder ---------------------------------------------------------------------

    @property
    def ssh_keys_log(self) -> Path:
        """What masters' restricted keys tried and were refused (``slave authorize``)."""
        return self.log_dir / "ssh-keys.log"

    @property
    def dispatcher_log(self) -> Path:
        """The output of a dispatcher started in the background (by ``submit``)."""
        return self.log_dir / "dispatcher.log"

    def mode_log(self, mode: str) -> Path:
        """The output of the tray app's engine child in ``mode`` (master or slave)."""
        return self.log_dir / f"{mode}.log"

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
