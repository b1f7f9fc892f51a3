"""``python -m trayapp`` is the same as the ``sparecycles`` command."""

from trayapp.cli import main

raise SystemExit(main())
