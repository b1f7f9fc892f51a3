"""The sandbox a job environment is built and probed in.

Whatever a job's requirements bring is a master's code: a source package's
``setup.py`` runs while the installer builds it, a ``.pth`` file in a wheel
runs whenever the environment's Python starts. So the installer (uv or pip),
the import check and any other start of an environment's interpreter run in
bubblewrap, like a task (:mod:`trayapp.run.sandbox`): the system and the task
environment read-only, the environment being built the only writable folder
besides the installer's wheel cache, ``HOME`` and ``/tmp`` private, the
lender's home and the slave's data folder absent. The network is there only
for the installer's steps, and only when packages come from an index (with
only a wheel folder, nothing is fetched at all).

Where the lender turned the sandbox off (or has none), the same commands run
unwrapped: the lender chose to run masters' code as themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trayapp.run.sandbox import Sandbox, interpreter_paths, readonly_folders, sandboxed_argv

# Variables an installer may see besides the sandbox's harmless ones: its own
# cache and switches, never the lender's pip or uv configuration.
_INSTALLER_VARIABLES = ("UV_CACHE_DIR", "PIP_CACHE_DIR", "UV_LINK_MODE", "UV_NO_CONFIG", "UV_NO_PROGRESS", "UV_PYTHON_DOWNLOADS",
                        "PIP_CONFIG_FILE", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_INPUT", "MPLBACKEND",
                        "MPLCONFIGDIR", "PYTHONDONTWRITEBYTECODE", "TMPDIR")
_KEPT = ("PATH", "LANG", "LANGUAGE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
_KEPT_PREFIXES = ("LC_",)


@dataclass(frozen=True)
class BuildSandbox:
    """How this PC wraps builds and probes of job environments."""

    readonly: tuple[str, ...]  # the task environment's folders, the installer's, the wheel folder
    bwrap: str = "bwrap"

    def wrap(self, argv: list[str], work_dir: Path, *, writable: tuple[Path, ...] = (),
             network: bool = False) -> list[str]:
        return sandboxed_argv(argv, work_dir, writable=writable,
                              sandbox=Sandbox(self.readonly, network=network, bwrap=self.bwrap))


def build_sandbox_for(base_python: str, *, hidden: tuple[str, ...], uv: str | None, wheel_folder: str = "",
                      bwrap: str = "bwrap") -> BuildSandbox:
    """The sandbox for environments built from ``base_python`` (the task environment)."""
    extra = [os.path.dirname(os.path.realpath(uv))] if uv else []
    if wheel_folder:
        extra.append(str(Path(wheel_folder).expanduser()))
    # /etc is bound, but on systemd-resolved hosts its resolv.conf is a link into /run.
    extra.append(os.path.dirname(os.path.realpath("/etc/resolv.conf")))
    base = interpreter_paths(base_python, hidden=hidden)
    return BuildSandbox(readonly_folders([*base, *extra], hidden=hidden), bwrap=bwrap)


def build_environment_variables(environ: dict[str, str], *, home: str, extra: dict[str, str]) -> dict[str, str]:
    """What a build or probe step sees: harmless variables, a private ``HOME``, ``extra``."""
    kept = {k: v for k, v in environ.items() if k in _KEPT or k.startswith(_KEPT_PREFIXES)}
    kept.update({k: v for k, v in extra.items() if k in _INSTALLER_VARIABLES or k == "PYTHONNOUSERSITE"})
    kept["HOME"] = home
    kept.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return kept
