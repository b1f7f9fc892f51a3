"""The ``sparecycles`` command: a verb goes to the CLI, no verb starts the tray app.

The CLI (:mod:`trayapp.cli`) must work where PyQt6 is missing, so it does not
import the GUI; it is handed :func:`start_tray` instead, and calls it only when
the user asked for the tray app.
"""

from __future__ import annotations

import sys

from trayapp.cli.main import main as cli_main
from trayapp.home import keep_files_private


def start_tray(mode: str | None, background: bool) -> int:
    # Imported here, not at the top: verbs must not pay for loading Qt.
    from sparecycles_ui.app import main as tray_main

    return tray_main(mode=mode, background=background)


def main(argv: list[str] | None = None) -> int:
    keep_files_private()
    return cli_main(argv, start_tray=start_tray)


if __name__ == "__main__":
    sys.exit(main())
