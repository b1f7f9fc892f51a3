"""The shape of the code: the core works without Qt, and imports form no circles.

The import graph is read from the source (``ast``), so an import hidden inside a
function, or made by name through ``importlib.import_module("...")``, counts as
much as one at the top of a file.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import trayapp

ROOT = Path(trayapp.__file__).resolve().parents[1]
PACKAGES = ("trayapp", "ui", "sparecycles")  # folders of the tree
# Folders that install under a name of their own (setup.py): modules are named as installed.
INSTALLED_AS = {"ui": "sparecycles_ui"}
QT = ("PyQt6", "PyQt5", "PySide6", "PySide2")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = INSTALLED_AS.get(parts[0], parts[0])
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, me: str | None = None) -> set[str]:
    """Every module ``path`` (module ``me``) imports: statements anywhere in it,
    and ``importlib.import_module("literal")`` / ``__import__("literal")`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = me or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            # `from pkg import mod` imports the module pkg.mod when there is one
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                names.add(node.args[0].value)
    return names


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        edges = set()
        for imported in imported_names(path):
            # resolve to the longest project module it names
            parts = imported.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            if parts and ".".join(parts) != name:
                edges.add(".".join(parts))
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def folder_of(module: str) -> str:
    """The folder a module lives in: trayapp.slave.engine -> trayapp.slave;
    a module directly in trayapp/ is its own room (trayapp.app, trayapp.config)."""
    parts = module.split(".")
    if parts[0] != "trayapp" or len(parts) <= 2:
        return module if parts[0] == "trayapp" else parts[0]
    return ".".join(parts[:2])


def test_modules_import_in_no_circle():
    cycle = find_cycle(project_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_folders_import_in_no_circle():
    # Rooms with doors: a folder may use another only one way round.
    graph: dict[str, set[str]] = {}
    for module, edges in project_graph().items():
        room = folder_of(module)
        graph.setdefault(room, set()).update(folder_of(e) for e in edges if folder_of(e) != room)
    cycle = find_cycle(graph)
    assert cycle is None, "folder circle: " + " -> ".join(cycle)


def test_cycle_finder_sees_a_circle():
    # The two tests above pass on an empty answer; prove the finder can say no.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_importlib_imports_are_seen(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import importlib\ndef f():\n    return importlib.import_module('sparecycles_ui.app')\n")
    assert "sparecycles_ui.app" in imported_names(source, "trayapp.probe")


def test_no_core_module_imports_qt_or_ui():
    offenders = []
    for module, path in ((module_name(p), p) for pkg in ("trayapp", "sparecycles")
                         for p in (ROOT / pkg).rglob("*.py")):
        for imported in imported_names(path):
            top = imported.split(".")[0]
            if top in QT or (top == "sparecycles_ui" and not module.startswith("sparecycles.launch")):
                offenders.append(f"{module} imports {imported}")
    assert not offenders, offenders


def test_nothing_imports_the_gui_by_its_folder_name():
    # ui/ installs as sparecycles_ui: an import of "ui" works from the source tree
    # (its folder is on the path) and fails from the wheel.
    offenders = [f"{name} imports {imported}" for name, path in
                 ((module_name(p), p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
                 for imported in imported_names(path) if imported.split(".")[0] == "ui"]
    assert not offenders, offenders
    assert module_name(ROOT / "ui" / "app.py") == "sparecycles_ui.app"


def test_trayapp_imports_without_pyqt6():
    # A meta-path finder that refuses PyQt6 stands in for a machine without it,
    # whether or not PyQt6 is installed here.
    modules = sorted(m.name for m in pkgutil.walk_packages(trayapp.__path__, "trayapp."))
    assert "trayapp.master.store" in modules and "trayapp.slave.engine" in modules
    script = textwrap.dedent(f"""
        import importlib, sys
        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PyQt6", "PyQt5", "PySide6", "sparecycles_ui"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, NoQt())
        for name in {modules!r}:
            if name != "trayapp.__main__":
                importlib.import_module(name)
        import sparecycles, sparecycles.launch
        leaked = [m for m in sys.modules if m.split(".")[0] in ("PyQt6", "sparecycles_ui")]
        assert not leaked, leaked
        print("ok", len({modules!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_the_readme_folder_map_names_every_package_of_the_core():
    """The README's folder map is where a newcomer looks first: a package
    missing from it (as SLURM's once was) is a folder nobody finds."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    folder_map = readme.split("### Folder map", 1)[1].split("```", 2)[1]
    first_words = [line.split()[0] for line in folder_map.splitlines() if line.startswith(" ") and line.strip()]
    named = {word.rstrip("/") for word in first_words if word.endswith("/")}
    packages = {p.parent.name for p in (ROOT / "trayapp").glob("*/**/__init__.py")}
    assert packages <= named, f"not in the README's folder map: {sorted(packages - named)}"
