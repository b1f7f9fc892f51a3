"""The lender's perimeter around the sandbox, tried by hostile tasks in real
bubblewrap under a real slave engine: what the slave does outside the sandbox
with what a task made (its results, its folder), and the memory and disk a
task could take beside its caps. Each attack is first shown to work with the
protection switched off (the old code path, patched back in), then to fail.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
from conftest import cli, make_job, wait_until
from test_sandbox import lender_home, slave_factory  # noqa: F401 - fixtures

import trayapp.run.sandbox as sandbox_module
import trayapp.slave.spool as spool_module
from trayapp.status import AttemptOutcome
from trayapp.wire.archive import sha256_of

# The task plants, in results/, a link to the lender's 0600 file (which it
# cannot open itself: the sandbox shows it nothing of the lender's home), and
# tries a hard link to a file it can see (EXDEV across the sandbox's mounts).
LINKER = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results/deep", exist_ok=True)
open("results/fine.txt", "w").write("fine")
try:
    open(p["secret"]).read()
    print("read it myself")
except OSError as exc:
    print("cannot read it myself:", exc.strerror)
try:
    os.link("/etc/hostname", "results/hard.txt")
    print("hard link made")
except OSError as exc:
    print("hard link refused:", exc.strerror)
os.symlink(p["secret"], "results/deep/k.txt")
os.symlink(p["lender"], "lender-home")  # left in its folder, for the clean-up to (not) follow
"""


def old_pack_results(self, task, max_bytes):
    """The packer before the perimeter: a symlink travelled as its target's content."""
    run_dir = self.task_dir(task.token)
    produced = run_dir / "work" / "results"
    entries = []
    for dirpath, dirnames, filenames in os.walk(produced):
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                entries.append((path, "results/" + path.relative_to(produced).as_posix()))
    target = self.results_of(task) / f"{task.token}.tar"  # today's place for them: only the packing is old
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT, dereference=True) as tar:
        for path, arcname in entries:
            tar.add(path, arcname=arcname, recursive=False)
    return target, sha256_of(target), target.stat().st_size


def results_of(slave, token: str) -> dict[str, bytes]:
    with tarfile.open(slave.engine.spool.results / "unbound" / f"{token}.tar") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_a_link_in_results_to_a_lenders_file_leaked_before_and_is_refused_now(slave_factory, tmp_path,
                                                                                 lender_home, monkeypatch):
    secret = lender_home / "secret.txt"
    params = {"secret": str(secret), "lender": str(lender_home)}

    with monkeypatch.context() as old:
        old.setattr(spool_module.Spool, "pack_results", old_pack_results)
        before = slave_factory("old", sandbox="on")
        token = before.start(tmp_path, LINKER, params)
        assert before.finished(token)["outcome"] == "succeeded"
        leaked = results_of(before, token)
    assert leaked["results/deep/k.txt"] == b"the lender's secret", "the old packer followed the link"

    slave = slave_factory("new", sandbox="on")
    token = slave.start(tmp_path, LINKER, params)
    finished = slave.finished(token)
    assert finished["outcome"] == AttemptOutcome.REJECTED.value, finished
    assert "results/deep/k.txt is a symbolic link" in finished["message"], finished["message"]
    assert "only plain files and folders come back" in finished["message"]
    assert not (slave.engine.spool.results / "unbound" / f"{token}.tar").exists(), "nothing of it is sent"
    out = (slave.engine.spool.task_dir(token) / "stdout.txt").read_text()
    assert "cannot read it myself" in out and "hard link refused: Invalid cross-device link" in out, out

    slave.master.send("ack", token=token)  # the clean-up removes the link, not what it points to
    wait_until(lambda: not slave.engine.spool.task_dir(token).exists(), what="the task folder to go")
    assert sorted(p.name for p in lender_home.iterdir()) == ["secret.txt"]
    assert secret.read_text() == "the lender's secret"


SPECIAL = """
import json, os, socket, sys
os.makedirs("results", exist_ok=True)
kind = json.loads(sys.argv[1])["kind"]
if kind == "fifo":
    os.mkfifo("results/pipe")
elif kind == "socket":
    socket.socket(socket.AF_UNIX).bind("results/listen.sock")
elif kind == "results-link":
    os.rename("results", "real-results")
    os.symlink("/etc", "results")
"""


@pytest.mark.parametrize("kind, name, what", [("fifo", "results/pipe", "a FIFO"),
                                              ("socket", "results/listen.sock", "a socket"),
                                              ("results-link", "results", "a symbolic link")])
def test_fifos_sockets_and_a_linked_results_folder_are_refused_with_their_name(slave_factory, tmp_path,
                                                                                 kind, name, what):
    slave = slave_factory("special", sandbox="on")
    token = slave.start(tmp_path, SPECIAL, {"kind": kind})
    finished = slave.finished(token)
    assert finished["outcome"] == "rejected", finished
    assert f"{name} is {what}" in finished["message"], finished["message"]


# Fills a memory-backed place a byte at a time (1 MB writes) until refused.
FILL = """
import json, os, sys
place = json.loads(sys.argv[1])["place"]
written = 0
try:
    with open(place, "wb") as fh:
        while written < 600:
            fh.write(b"x" * (1 << 20))
            fh.flush()
            written += 1
except OSError as exc:
    print(written, exc.strerror)
else:
    print(written, "all written")
try:
    os.unlink(place)
except OSError:
    pass
"""


def without_the_shm_and_read_only_root(argv, task_dir, **kwargs):
    """The sandbox before the perimeter: bwrap's own /dev (half the RAM) and a writable root."""
    wrapped = original_sandboxed_argv(argv, task_dir, **kwargs)
    at = wrapped.index("/dev/shm")
    del wrapped[at - 3: at + 3]  # --size N --tmpfs /dev/shm --remount-ro /dev
    at = wrapped.index("--remount-ro")
    del wrapped[at: at + 2]  # --remount-ro /
    return wrapped


original_sandboxed_argv = sandbox_module.sandboxed_argv


@pytest.mark.slow  # 600 MB written twice
@pytest.mark.parametrize("place", ["/dev/shm/fill", "/dev/fill", "/fill"])
def test_memory_backed_places_in_the_sandbox_stay_far_below_the_memory_cap(slave_factory, tmp_path, place,
                                                                            monkeypatch):
    with monkeypatch.context() as old:
        old.setattr(sandbox_module, "sandboxed_argv", without_the_shm_and_read_only_root)
        before = slave_factory("old", sandbox="on")
        token = before.start(tmp_path, FILL, {"place": place}, memory_mb=300)
        assert before.finished(token)["outcome"] == "succeeded"
        assert before.output(token).split()[0] == "600", "600 MB went past a 300 MB cap"

    slave = slave_factory("new", sandbox="on")
    token = slave.start(tmp_path, FILL, {"place": place}, memory_mb=300)
    assert slave.finished(token)["outcome"] == "succeeded"
    written, why = slave.output(token).split(maxsplit=1)
    if place.startswith("/dev/shm"):
        assert int(written) <= sandbox_module.PRIVATE_SHM_BYTES >> 20 and "No space left" in why, (written, why)
    else:
        assert int(written) == 0 and "Read-only file system" in why, (written, why)


def test_multiprocessing_still_finds_a_working_dev_shm(slave_factory, tmp_path):
    slave = slave_factory("mp", sandbox="on")
    token = slave.start(tmp_path, """
import multiprocessing
lock = multiprocessing.Lock()
with lock:
    print("locked")
""")
    assert slave.finished(token)["outcome"] == "succeeded"
    assert slave.output(token).strip() == "locked"


# Writes 1 MB files, a few a second, up to 200 MB: only the slave's measuring
# catches many small files (RLIMIT_FSIZE holds one file at a time).
MANY_FILES = """
import os, time
os.makedirs("results/parts", exist_ok=True)
for i in range(200):
    with open(f"results/parts/{i}.bin", "wb") as fh:
        fh.write(os.urandom(1 << 20))
    time.sleep(0.02)
print("wrote 200 MB")
"""

ONE_BIG_FILE = """
with open("big.bin", "wb") as fh:
    for i in range(200):
        fh.write(b"x" * (1 << 20))
print("wrote 200 MB")
"""


@pytest.mark.slow
@pytest.mark.parametrize("body, words", [(MANY_FILES, "killed: over its disk cap of 50 MB (its folder held"),
                                         (ONE_BIG_FILE, "failed: over its disk cap of 50 MB (a file grew past it")])
def test_a_task_writing_past_its_disk_cap_fails_with_that_reason(slave_factory, tmp_path, body, words):
    roomy = slave_factory("roomy", sandbox="on")  # the default cap: a share of the free disk
    token = roomy.start(tmp_path, body)
    assert roomy.finished(token)["outcome"] == "succeeded"
    assert roomy.output(token).strip() == "wrote 200 MB"

    slave = slave_factory("capped", sandbox="on", max_task_disk_mb=50)
    token = slave.start(tmp_path, body)
    finished = slave.finished(token)
    assert finished["outcome"] == "exited", finished
    assert words in finished["message"], finished["message"]
    assert "wrote 200 MB" not in (slave.engine.spool.task_dir(token) / "stdout.txt").read_text()


@pytest.mark.slow
def test_status_tells_the_user_which_task_went_over_its_disk_cap(home, tmp_path, monkeypatch):
    monkeypatch.delenv("SPARECYCLES_SANDBOX", raising=False)  # this PC's own cores, in the sandbox
    home.config_file.write_text("max_task_disk_mb = 50\n")
    body = MANY_FILES.replace("import os, time", "import json, os, sys, time").replace(
        "range(200)", "range(json.loads(sys.argv[1])['n'])")
    folder, params = make_job(tmp_path / "writer", body, params=[{"n": 5}, {"n": 200}])
    submitted = json.loads(cli("submit", str(folder), "--params", str(params), "--json", check=True).stdout)
    assert cli("wait", submitted["job"], "--timeout", "120").returncode == 1
    small, big = json.loads(cli("status", submitted["job"], "--json", check=True).stdout)["tasks"]
    assert small["status"] == "done" and big["status"] == "failed", (small, big)
    assert "over its disk cap of 50 MB" in big["message"], big
    assert "over its disk cap of 50 MB" in cli("status", submitted["job"], check=True).stdout


def test_the_clean_up_opens_up_folders_a_task_made_unreadable_and_follows_no_link(tmp_path):
    """As a lender, not root (root enters any folder): a folder of mode 000 kept
    the old clean-up (``rmtree(ignore_errors=True)``) from removing it."""
    import inspect
    import subprocess
    import tempfile

    from trayapp.run import taskfiles

    lender = 65534
    pieces = (taskfiles._names, taskfiles._rmtree_opening_up, taskfiles._empty_opening_up, taskfiles._remove_at,
              taskfiles._open_up_at, taskfiles._bring_up_deep_folders, taskfiles.remove_tree)
    remover = ("import errno, os, secrets, shutil, stat, sys\nfrom pathlib import Path\n"
               f"_OPEN_FOLDER = {taskfiles._OPEN_FOLDER}\n_REMOVE_DEPTH = {taskfiles._REMOVE_DEPTH}\n"
               + "\n".join(inspect.getsource(piece) for piece in pieces)
               + "\nold = sys.argv[2] == 'old'\n"
               "shutil.rmtree(sys.argv[1], ignore_errors=True) if old else remove_tree(Path(sys.argv[1]))\n")
    with tempfile.TemporaryDirectory(prefix="sparecycles-lender-") as place:  # pytest's tmp_path is root's alone
        root = Path(place)
        root.chmod(0o755)
        left = {}
        for way in ("old", "new"):
            home, task = root / f"home-{way}", root / f"spool-{way}" / "task"
            task.parent.mkdir()
            os.chown(task.parent, lender, lender)
            (home / ".ssh").mkdir(parents=True)
            (home / ".ssh" / "id_ed25519").write_text("key")
            (task / "work" / "locked" / "deeper").mkdir(parents=True)
            (task / "work" / "locked" / "deeper" / "junk.bin").write_bytes(b"x" * 1000)
            (task / "work" / "locked" / "home").symlink_to(home)
            for path in (home, home / ".ssh", task, task / "work", task / "work" / "locked",
                         task / "work" / "locked" / "deeper", task / "work" / "locked" / "deeper" / "junk.bin"):
                os.chown(path, lender, lender, follow_symlinks=False)
            (task / "work" / "locked" / "deeper").chmod(0)
            (task / "work" / "locked").chmod(0)
            run = subprocess.run(["/usr/bin/python3", "-c", remover, str(task), way], user=lender, group=lender,
                                 extra_groups=[], capture_output=True, text=True, timeout=60, cwd="/")
            assert run.returncode == 0, run.stderr
            left[way] = task.exists()
            assert (home / ".ssh" / "id_ed25519").read_text() == "key", "the link was not followed"
            if task.exists():
                (task / "work" / "locked").chmod(0o700)  # so the temporary folder can go
                (task / "work" / "locked" / "deeper").chmod(0o700)
    assert left == {"old": True, "new": False}


# The clean-up before it walked by descriptors: it opened up a folder it could not enter
# by its full path, so a folder above it swapped for a link meanwhile was followed.
_PATH_BASED_REMOVE = '''
def remove_tree(folder):
    opened = set()
    def open_up(_function, failed, _info):
        if failed in opened:
            return
        opened.add(failed)
        try:
            if not stat.S_ISDIR(os.lstat(failed).st_mode):
                return
            os.chmod(failed, 0o700)
        except OSError:
            return
        shutil.rmtree(failed, onerror=open_up)
    shutil.rmtree(folder, onerror=open_up)
'''


def test_a_folder_swapped_for_a_link_during_the_clean_up_is_never_followed(tmp_path):
    """A process the task left running swaps a folder for a link to the lender's own
    folder at the moment the clean-up opens up a locked folder below it (the race a
    reviewer won with a live process; made certain here by doing the swap inside the
    clean-up's own chmod). Before: the lender's folder was opened up and emptied."""
    import inspect
    import subprocess
    import tempfile

    from trayapp.run import taskfiles

    lender = 65534
    pieces = (taskfiles._names, taskfiles._rmtree_opening_up, taskfiles._empty_opening_up, taskfiles._remove_at,
              taskfiles._open_up_at, taskfiles._bring_up_deep_folders, taskfiles.remove_tree)
    current = (f"_OPEN_FOLDER = {taskfiles._OPEN_FOLDER}\n_REMOVE_DEPTH = {taskfiles._REMOVE_DEPTH}\n"
               + "\n".join(inspect.getsource(piece) for piece in pieces))
    swap = ("real_chmod = os.chmod\n"
            "def chmod(path, mode, **kw):\n"
            "    if not swapped:\n"
            "        swapped.append(1)\n"
            "        os.rename(sys.argv[1] + '/work/a', sys.argv[1] + '/moved')\n"
            "        os.symlink(sys.argv[2], sys.argv[1] + '/work/a')\n"
            "    return real_chmod(path, mode, **kw)\n"
            "swapped = []\nos.chmod = chmod\n")
    with tempfile.TemporaryDirectory(prefix="sparecycles-lender-") as place:  # pytest's tmp_path is root's alone
        root = Path(place)
        root.chmod(0o755)
        kept = {}
        for way, code in (("old", _PATH_BASED_REMOVE), ("new", current)):
            lenders, task = root / f"lender-{way}", root / f"spool-{way}" / "task"
            (lenders / "locked").mkdir(parents=True)
            (lenders / "locked" / "thesis.tex").write_text("years of work")
            (task / "work" / "a" / "locked").mkdir(parents=True)
            (task / "work" / "a" / "locked" / "junk").write_text("x")
            for path in (lenders, lenders / "locked", lenders / "locked" / "thesis.tex", task.parent, task,
                         task / "work", task / "work" / "a", task / "work" / "a" / "locked",
                         task / "work" / "a" / "locked" / "junk"):
                os.chown(path, lender, lender)
            (lenders / "locked").chmod(0)  # the lender's own locked folder, as the task's is
            (task / "work" / "a" / "locked").chmod(0)
            script = ("import errno, os, secrets, shutil, stat, sys\nfrom pathlib import Path\n" + code + swap
                      + "remove_tree(Path(sys.argv[1]))\n")
            run = subprocess.run(["/usr/bin/python3", "-c", script, str(task), str(lenders)], user=lender,
                                 group=lender, extra_groups=[], capture_output=True, text=True, timeout=60, cwd="/")
            assert run.returncode == 0, run.stderr
            if (lenders / "locked").exists():
                (lenders / "locked").chmod(0o700)
            kept[way] = (lenders / "locked" / "thesis.tex").exists()
            if (task / "moved" / "locked").exists():
                (task / "moved" / "locked").chmod(0o700)  # so the temporary folder can go
    assert kept == {"old": False, "new": True}
