"""``python -m trayapp VERB``: the command-line verbs alone.

The tray app (no verb) is started by ``sparecycles`` / ``python -m sparecycles``,
which sits above both the core and the GUI.
"""

from trayapp.cli.main import main
from trayapp.home import keep_files_private

keep_files_private()
raise SystemExit(main())
