"""The task environment: the Python interpreter tasks (and Brian) run with.

Which one, in this order:

1. ``SPARECYCLES_TASK_PYTHON`` (a test or a one-off run names another one);
2. the ``task_python`` setting;
3. from a pip install, the app's own interpreter (``sys.executable``);
4. in the PyInstaller bundle, a *managed* virtual environment under the data
   folder, created on first use with the system's ``python3 -m venv``. The
   bundle's executable is the app, not a Python: running ``-c`` scripts or
   ``-m pip`` with it would start SpareCycles again.

If the bundle finds no system Python to build its environment with, the user
gets a :class:`UserError` saying how to set ``task_python``. Updating Brian
(:mod:`trayapp.install.updates`) installs into whatever this module picks, never into
the app.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.install.selfcommand import is_frozen

SYSTEM_PYTHONS = ("python3", "python")
CREATE_TIMEOUT_S = 300.0


def env_python(env_dir: Path) -> Path:
    """The interpreter of the virtual environment at ``env_dir``."""
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def task_python_setting_fix() -> str:
    return ('install Python 3 (python3 with its venv module, e.g. "apt install python3-venv"), '
            'or name an interpreter that has Brian in config.toml: task_python = "/path/to/python3"')


def find_system_python(environ: dict[str, str] | None = None) -> str | None:
    """A Python on PATH that is not the bundle itself, or None."""
    environ = os.environ if environ is None else environ
    own = Path(sys.executable).resolve()
    for name in SYSTEM_PYTHONS:
        found = shutil.which(name, path=environ.get("PATH"))
        if found and Path(found).resolve() != own:
            return found
    return None


def subprocess_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` fit for programs that are not the bundle.

    PyInstaller's bootloader points ``LD_LIBRARY_PATH`` at the bundle's own
    libraries and keeps the user's value in ``LD_LIBRARY_PATH_ORIG``; a system
    Python started with the bundle's libssl or libpython may fail in odd ways.
    """
    env = dict(os.environ if environ is None else environ)
    for var in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"):
        orig = env.pop(var + "_ORIG", None)
        if orig is not None:
            env[var] = orig
        elif is_frozen():
            env.pop(var, None)
    return env


def create_managed_env(env_dir: Path, system_python: str | None) -> str:
    """Create the managed environment (with pip) with ``system_python``; returns its interpreter."""
    if system_python is None:
        raise UserError("SpareCycles needs a Python interpreter to run tasks, and found none on this PC",
                        task_python_setting_fix())
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its final place and renamed, so a half-made environment
    # (power cut, missing venv module) is never taken for a finished one.
    partial = env_dir.with_name(env_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        result = subprocess.run([system_python, "-m", "venv", str(partial)], capture_output=True, text=True,
                                timeout=CREATE_TIMEOUT_S, env=subprocess_environment())
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"could not create the task environment with {system_python}: {exc}",
                        task_python_setting_fix()) from exc
    if result.returncode != 0 or not env_python(partial).exists():
        shutil.rmtree(partial, ignore_errors=True)
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"could not create the task environment with {system_python} -m venv: {detail[0]}",
                        task_python_setting_fix())
    os.replace(partial, env_dir)
    return str(env_python(env_dir))


def task_interpreter(task_python: str = "", *, home: Home | None = None, create: bool = True,
                     environ: dict[str, str] | None = None, frozen: bool | None = None) -> str | None:
    """The interpreter tasks run with (see the module docstring for the order).

    With ``create=False`` a managed environment that does not exist yet is not
    made, and None is returned instead (an update check must not spend a
    minute building one).
    """
    environ = os.environ if environ is None else environ
    named = environ.get("SPARECYCLES_TASK_PYTHON") or task_python
    if named:
        return named
    if not (is_frozen() if frozen is None else frozen):
        return sys.executable
    env_dir = (home or Home.from_environment(environ)).task_env_dir
    python = env_python(env_dir)
    if python.exists():
        return str(python)
    if not create:
        return None
    return create_managed_env(env_dir, find_system_python(environ))


# Every distribution an interpreter sees, first on sys.path winning (as imports do).
_INVENTORY = """
import json, importlib.metadata as m
found = {}
for dist in m.distributions():
    name = dist.metadata["Name"]
    if name:
        found.setdefault(name, dist.version)
print(json.dumps(found))
"""

_SITE_FOLDERS = """
import json, os, sys, sysconfig
paths = [sysconfig.get_path('purelib'), sysconfig.get_path('platlib')]
paths += [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]
print(json.dumps([p for p in dict.fromkeys(paths) if os.path.isdir(p)]))
"""


def installed_distributions(python: str) -> dict[str, str]:
    """``{canonical name: version}`` of every distribution ``python`` sees, in one
    subprocess however many names are asked about. Empty if it cannot say.
    Only for the task environment (the lender's): a job environment is probed in the sandbox."""
    from packaging.utils import canonicalize_name

    try:
        out = subprocess.run([python, "-c", _INVENTORY], capture_output=True, text=True, timeout=60,
                             env=subprocess_environment()).stdout
        found = json.loads(out or "{}")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {canonicalize_name(str(name)): str(version) for name, version in found.items()}


def site_folders(python: str) -> tuple[str, ...]:
    """The task environment's site-packages folders, in import order: what a job
    environment layers itself over (:mod:`trayapp.install.envbuild`)."""
    try:
        out = subprocess.run([python, "-c", _SITE_FOLDERS], capture_output=True, text=True, timeout=60,
                             env=subprocess_environment()).stdout
        return tuple(str(p) for p in json.loads(out or "[]"))
    except (OSError, subprocess.TimeoutExpired, ValueError, TypeError):
        return ()
