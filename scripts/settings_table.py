"""Write the README's settings table from the one table (trayapp/config.py).

    .venv/bin/python scripts/settings_table.py          # rewrite README.md's table
    .venv/bin/python scripts/settings_table.py --check  # exit 1 if README.md's table is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

from trayapp.config import SETTINGS
from trayapp.config_schema import markdown_table, with_table

README = Path(__file__).resolve().parent.parent / "README.md"


def main(argv: list[str]) -> int:
    old = README.read_text(encoding="utf-8")
    new = with_table(old, markdown_table(SETTINGS))
    if "--check" in argv:
        if new != old:
            print(f"{README}: the settings table is stale; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
