"""The core must work on a headless machine without PyQt6."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import trayapp


def test_trayapp_imports_without_pyqt6():
    # A meta-path finder that refuses PyQt6 stands in for a machine without it,
    # whether or not PyQt6 is installed here.
    modules = sorted(m.name for m in pkgutil.iter_modules(trayapp.__path__, "trayapp."))
    assert "trayapp.store" in modules and "trayapp.dispatcher" in modules
    script = textwrap.dedent(f"""
        import importlib, sys
        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PyQt6", "PyQt5", "PySide6", "ui"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, NoQt())
        for name in {modules!r}:
            if name != "trayapp.__main__":
                importlib.import_module(name)
        leaked = [m for m in sys.modules if m.split(".")[0] in ("PyQt6", "ui")]
        assert not leaked, leaked
        print("ok", len({modules!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_no_trayapp_module_imports_qt_or_ui():
    # Catches an import hidden inside a function, which the import test above
    # would only hit when that function runs.
    import re
    from pathlib import Path

    qt_import = re.compile(r"^\s*(import|from)\s+(PyQt\d|PySide\d|ui)\b", re.MULTILINE)
    for path in Path(trayapp.__file__).parent.glob("*.py"):
        assert not qt_import.search(path.read_text(encoding="utf-8")), f"{path.name} imports Qt or ui"
