"""A job folder as the user hands it over: its main script, its files, its parameters.

This is the user's contract (see README, "Job folders"): ``main.py`` at the
root, or exactly one ``main_*.py``; everything else travels except the default
excludes and the patterns of ``.sparecyclesignore`` (gitignore syntax, matched
by ``pathspec`` so the rules are git's, not ours).

A symbolic link that points outside the folder is refused unless the user
asks for it (``--follow-links``): a link to ``~/.ssh`` would otherwise send
the user's keys to every slave without a word. Links within the folder are
fine. Unreadable files and folders, names that are not UTF-8, and special
files (FIFOs, sockets, devices: packing would block on a FIFO or fail on a
socket) are refused with the list of them, before anything is packed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from trayapp.errors import UserError
from trayapp.job.manifest import Manifest, load_manifest
from trayapp.job.params import check_set_fits, load_param_sets, read_text

IGNORE_FILE = ".sparecyclesignore"
DEFAULT_EXCLUDES = (
    ".git/",
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.pyc",
    "/results/",  # a task's output must not travel back out as input
    ".venv/",
    "venv/",
    ".ipynb_checkpoints/",
    ".DS_Store",
)


@dataclass(frozen=True)
class JobFolder:
    """What to pack and run, resolved from the folder, its manifest and the user's choices."""

    root: Path
    main: str
    files: list[str]
    param_sets: list[dict]
    params_file: Path | None
    manifest: Manifest = field(default_factory=Manifest)

    @property
    def name(self) -> str:
        return self.root.name


def open_job_folder(folder: str | Path, *, main: str | None = None, params: str | Path | None = None,
                    param_sets: list[dict] | None = None, follow_links: bool = False) -> JobFolder:
    """Check a folder the user wants to submit and collect what travels.

    ``main`` and ``params`` (a parameter file) or ``param_sets`` (the sets
    themselves, from the Python API) are the user's explicit choices; they win
    over the manifest, which wins over what is found in the folder.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise UserError(f"job folder '{folder}' does not exist", "check the path (quote it if it has spaces)")
    if not root.is_dir():
        raise UserError(f"'{folder}' is a file, not a job folder",
                        "give the folder that holds main.py, not a file inside it")
    root = root.resolve()
    if not _is_utf8(str(root)):
        raise UserError(f"the path of the job folder {_printable(str(root))} is not valid UTF-8",
                        "rename the folder (or the folders above it) with plain characters")
    manifest = load_manifest(root)
    main_script = find_main_script(root, main or manifest.main)
    files = list_job_files(root, manifest.exclude, follow_links=follow_links)
    if main_script not in files:
        raise UserError(f"{main_script} in {root} is excluded by an ignore pattern",
                        f"remove the pattern that matches it from {IGNORE_FILE} or sparecycles.toml")
    params_file = None if param_sets is not None else _resolve_params_file(root, params, manifest)
    if param_sets is None:
        param_sets = load_param_sets(params_file) if params_file else [{}]
    elif not param_sets:
        raise UserError("the list of parameter sets is empty, which would make a job of zero tasks",
                        "give at least one parameter set, or none at all to run the job once")
    for number, stored in enumerate(param_sets, 1):
        check_set_fits(stored, number)
    return JobFolder(root, main_script, files, param_sets, params_file, manifest)


def find_main_script(root: Path, chosen: str | None = None) -> str:
    if chosen:
        if any(sep in chosen for sep in ("/", "\\", ":")) or not chosen.lower().endswith(".py"):
            raise UserError(f"main script '{chosen}' must be the name of a .py file at the top of the job folder",
                            "give just the file name, e.g. --main main_sim.py")
        if not (root / chosen).is_file():
            raise UserError(f"main script '{chosen}' not found in {root}",
                            "name a .py file at the top of the job folder")
        return chosen
    if (root / "main.py").is_file():
        return "main.py"
    candidates = sorted(p.name for p in root.glob("main_*.py") if p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UserError(f"no main script in {root}",
                        "add main.py (or one main_*.py) at the top of the folder")
    raise UserError(f"{root} has several main scripts: {', '.join(candidates)}",
                    f"choose one with --main (e.g. --main {candidates[0]}) or set main in sparecycles.toml")


def _resolve_params_file(root: Path, given: str | Path | None, manifest: Manifest) -> Path | None:
    if given is not None:
        return Path(given).expanduser()
    if manifest.params:
        path = root / manifest.params
        if not path.is_file():
            raise UserError(f"parameter file '{manifest.params}' named in sparecycles.toml not found in {root}",
                            "fix the params entry in sparecycles.toml")
        return path
    return None


def _is_virtualenv(path: Path) -> bool:
    try:
        return (path / "pyvenv.cfg").is_file()
    except PermissionError:
        return False  # an unreadable folder: os.walk reports it


def list_job_files(root: Path, extra_excludes: tuple[str, ...] = (), *, follow_links: bool = False) -> list[str]:
    """Every file that travels, as sorted POSIX paths relative to ``root``;
    links leading outside ``root`` are refused unless ``follow_links``."""
    patterns = list(DEFAULT_EXCLUDES) + list(extra_excludes)
    ignore_file = root / IGNORE_FILE
    if ignore_file.is_file():
        patterns += read_text(ignore_file, "ignore file").splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    files: list[str] = []
    # A folder is a symlink loop only if it is one of its own ancestors; a
    # second link to a folder elsewhere in the tree travels like a copy.
    ancestors: dict[str, frozenset[tuple[int, int]]] = {}
    problems = _Problems(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=problems.unreadable_folder):
        current = Path(dirpath)
        st = current.stat()
        identity = (st.st_dev, st.st_ino)
        above = ancestors.pop(dirpath, frozenset())
        if identity in above:
            dirnames[:] = []
            continue
        chain = above | {identity}
        rel_dir = current.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # Prune excluded folders here so a 10 GB virtualenv is never even listed.
        dirnames[:] = sorted(d for d in dirnames
                             if not spec.match_file(prefix + d + "/") and not _is_virtualenv(current / d)
                             and (follow_links or not problems.leads_outside(current / d, prefix + d + "/")))
        for d in dirnames:
            ancestors[os.path.join(dirpath, d)] = chain
        for name in filenames:
            rel = prefix + name
            if spec.match_file(rel):
                continue
            path = current / name
            if not _is_utf8(rel):
                problems.badly_named.append(_printable(rel))
                continue
            if not path.exists():
                raise UserError(f"{path} is a broken symbolic link",
                                f"fix or remove it, or add it to {IGNORE_FILE}")
            if not follow_links and problems.leads_outside(path, rel):
                continue
            if problems.is_special(path, rel):
                continue
            if not os.access(path, os.R_OK):
                problems.unreadable.append(rel)
            files.append(rel)
    problems.raise_any()
    return sorted(files)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.walk hands undecodable bytes over as surrogates
        return False
    return True


def _printable(text: str) -> str:
    return repr(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def _listed(items: list[str], most: int = 10) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


class _Problems:
    """What makes a folder unfit to travel, gathered so the user sees all of it at once."""

    def __init__(self, root: Path):
        self.root = root
        self._real_root = os.path.realpath(root)
        self.outside: list[str] = []
        self.unreadable: list[str] = []
        self.badly_named: list[str] = []
        self.special: list[str] = []

    def is_special(self, path: Path, rel: str) -> bool:
        """A FIFO, socket or device (reached through a link too, as packing would):
        it has no content to send, and opening a FIFO waits for a writer forever."""
        mode = path.stat().st_mode
        if stat.S_ISREG(mode):
            return False
        kind = ("FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
                else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")
        self.special.append(f"{rel} ({kind})")
        return True

    def unreadable_folder(self, error: OSError) -> None:
        self.unreadable.append(os.path.relpath(error.filename, self.root) + "/")

    def leads_outside(self, path: Path, rel: str) -> bool:
        if not path.is_symlink():
            return False  # only a link can lead out; one inside a linked folder is checked at that folder
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._real_root]) == self._real_root:
            return False
        self.outside.append(f"{rel} -> {real}")
        return True

    def raise_any(self) -> None:
        if self.badly_named:
            raise UserError(f"names in {self.root} that are not valid UTF-8: {_listed(self.badly_named)}",
                            f"rename them with plain characters, or add them to {IGNORE_FILE}")
        if self.special:
            raise UserError(f"special files in {self.root} cannot travel (only regular files and folders can): "
                            f"{_listed(self.special)}",
                            f"remove them from the job folder, or add them to {IGNORE_FILE}")
        if self.unreadable:
            raise UserError(f"cannot read {_listed(self.unreadable)} in {self.root}",
                            f"make them readable (chmod u+r), or add them to {IGNORE_FILE}")
        if self.outside:
            raise UserError(f"symbolic links in {self.root} point outside the job folder, so what they point to "
                            f"would go to every slave: {_listed(self.outside)}",
                            "copy the files you need into the job folder (and remove the links), add the links to "
                            f"{IGNORE_FILE}, or submit with --follow-links to send them on purpose")
