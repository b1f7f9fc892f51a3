"""The PyInstaller bundle's entry point: the tray app, the CLI and the agent in one executable.

The bundle has no Python of its own to run ``-m sparecycles``: SpareCycles
starts itself through :func:`trayapp.install.selfcommand.sparecycles_command`,
which gives this program its arguments directly.
"""

import os
import sys


def _restore_library_path() -> None:
    # PyInstaller's bootloader points LD_LIBRARY_PATH at the bundle for this
    # process; programs it starts (a system Python for tasks, ssh, pip) must
    # see the user's own value. This process's loader already has what it needs.
    for var in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"):
        orig = os.environ.pop(var + "_ORIG", None)
        if orig is not None:
            os.environ[var] = orig
        else:
            os.environ.pop(var, None)


def main() -> int:
    _restore_library_path()
    from sparecycles.launch import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
