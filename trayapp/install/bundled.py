"""Files shipped with SpareCycles (the demo job, icons), wherever it is installed.

From a wheel they live in the ``sparecycles_resources`` package; from a source
checkout or a PyInstaller bundle, in ``resources/`` next to ``trayapp/``.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path


def resource_path(*parts: str) -> Path:
    candidates = []
    try:
        candidates.append(Path(str(resources.files("sparecycles_resources"))))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "resources")
    if hasattr(sys, "_MEIPASS"):  # PyInstaller unpacks data files here
        candidates.append(Path(sys._MEIPASS) / "resources")
    for base in candidates:
        path = base.joinpath(*parts)
        if path.exists():
            return path
    raise FileNotFoundError(f"SpareCycles resource {'/'.join(parts)} is missing; reinstall SpareCycles")
