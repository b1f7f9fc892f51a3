"""Job-archive transfer to a slave over SSH, against scp of the same bytes.

A job folder of MB megabytes (default 200; incompressible random data in
four files under data/, plus a trivial main.py) is submitted as a one-task
job to a master (``master --no-local``) with one slave daemon behind a
loopback sshd (``tests/support/sshd``: a real /usr/sbin/sshd on 127.0.0.1 with
its own keys; the slave is registered with ``hosts add`` + ``hosts trust
--fingerprint``). The master is connected before anything is timed.

Each repeat uses fresh random content (so the archive really has to travel)
and measures:

* job 1: ``submit`` (which packs and hashes the folder), then submit-to-done
  of the task. A watcher thread polls the slave's ``spool/archives/`` every
  5 ms, and the master's ``spool/incoming/<master>/`` where uploads land:
  when the upload file (``.upload-*``) appears, when it last grew (the
  last byte landed), and when ``<sha>.tar`` appears (the slave hashed the
  upload and renamed it). upload = last growth - appearance; that is
  SpareCycles' transfer throughput, the figure held against scp;
* job 2: the same folder again (same content, same archive hash):
  submit-to-done, and proof that nothing was sent: no ``.upload-*`` appeared,
  ``spool/archives/`` is unchanged (same files, same inodes and mtimes), and
  the bytes the master sent over its SSH connections (``ss -ti``
  bytes_acked, summed over the connections to the sshd) are protocol
  messages only (job 1's include the archive);
* ``SSHLink.put`` alone (``trayapp.wire.ssh.SSHLink``, built from the master's
  HostRecord and known_hosts, i.e. the code path of the upload) of the same
  archive file to a temporary path: SFTP speed without the protocol around it;
* ``scp`` of the same archive file with the same key, port and known_hosts
  (OpenSSH 9's scp speaks SFTP by default), and ``scp -O`` (the legacy scp
  protocol), for information. An scp of an empty file is timed too: its wall
  time (connect, authenticate, start the subsystem) is subtracted, so scp's
  MB/s is streaming throughput, as the in-job upload is (its connection was
  already open). Wall-time MB/s including connection set-up is printed as well.

Ratio = SpareCycles' in-job upload MB/s / scp's MB/s (median over repeats;
target >= 0.8). put and scp alternate order between repeats. Every copy is
checked against the archive's sha256. Figures use MB = 10^6 bytes.

    .venv/bin/python bench/archive_transfer.py [--mb 200] [--repeats 5] [--json]

Disk: about 5 x MB at a time (job folder, master archive, slave archive and
unpacked copy, the task's copy, the put/scp targets), all in one temporary
folder deleted as the run goes and at its end.

Exit status: 0 when every run completed correctly (whether or not the target
is met), 1 when something broke (a task failed, a copy is damaged, the
second job sent its archive again, a process was left behind).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MB,
    TRIVIAL_MAIN,
    BenchError,
    bench_workspace,
    count_results,
    exit_cleanly_on_sigterm,
    loadavg,
    machine_info,
    median,
    print_machine_info,
    sparecycles,
    write_job,
    write_params,
)
from _pool import Pool, job_counts, with_leftovers, wait_job_done  # noqa: E402

from trayapp.wire.archive import sha256_of  # noqa: E402

TARGET_RATIO = 0.8
DATA_FILES = 4
SLAVE = "a"


# ----- the job folder ------------------------------------------------------------------------

def make_big_job(folder: Path, megabytes: float) -> int:
    """main.py plus DATA_FILES files of random bytes adding up to ``megabytes`` MB; returns the data bytes."""
    write_job(folder, TRIVIAL_MAIN)
    data = folder / "data"
    data.mkdir()
    total = int(megabytes * MB)
    chunk = 8 << 20
    for n in range(DATA_FILES):
        size = total // DATA_FILES + (total % DATA_FILES if n == 0 else 0)
        with (data / f"blob-{n}.bin").open("wb") as fh:
            while size > 0:
                fh.write(os.urandom(min(chunk, size)))
                size -= chunk
    return total


# ----- watching the slave's archive folder -------------------------------------------------------

class UploadWatcher(threading.Thread):
    """Polls a spool's archives/ folder; records upload files and archives as they appear."""

    def __init__(self, spool: Path, interval: float = 0.005):
        super().__init__(name="upload-watcher", daemon=True)
        self.folder = spool / "archives"
        # Uploads land in the uploading master's own incoming/<master>/ folder,
        # apart from the verified archives (trayapp.slave.spool).
        self.incoming = spool / "incoming"
        self.interval = interval
        self.uploads: dict[str, dict] = {}  # name -> first_seen, last_growth, size (perf_counter times)
        self.archives: dict[str, float] = {}  # name -> first seen
        self._halt = threading.Event()
        self._active = threading.Event()
        self._active.set()
        self._lock = threading.Lock()

    def pause(self) -> None:
        """Stop polling (it would compete for the GIL with SSHLink.put in this process)."""
        self._active.clear()

    def resume(self) -> None:
        self._active.set()

    def run(self) -> None:
        while not self._halt.is_set():
            if not self._active.wait(0.1):
                continue
            now = time.perf_counter()
            entries = _entries(self.folder)
            for master in _entries(self.incoming):
                if master.is_dir(follow_symlinks=False):
                    entries += _entries(Path(master.path))
            with self._lock:
                for entry in entries:
                    if entry.name.startswith(".upload-"):
                        try:
                            size = entry.stat().st_size
                        except FileNotFoundError:
                            continue
                        seen = self.uploads.setdefault(entry.name, {"first_seen": now, "last_growth": now, "size": 0})
                        if size != seen["size"]:
                            seen["size"], seen["last_growth"] = size, now
                    elif entry.name.endswith(".tar"):
                        self.archives.setdefault(entry.name, now)
            time.sleep(self.interval)

    def snapshot(self) -> tuple[dict, dict]:
        with self._lock:
            return {k: dict(v) for k, v in self.uploads.items()}, dict(self.archives)

    def stop(self) -> None:
        self._halt.set()
        self._active.set()
        self.join(5)


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except FileNotFoundError:
        return []


def archives_listing(folder: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (inode, size, mtime_ns): changes if anything is written or replaced."""
    return {e.name: (e.inode(), e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder)}


def bytes_sent_to(port: int) -> int | None:
    """Bytes acknowledged on every TCP connection to 127.0.0.1:PORT (from the
    clients' side, per ``ss -ti``): what the clients of the sshd sent so far.
    None when ``ss`` (iproute2) is not installed."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(n) for n in re.findall(r"\bbytes_acked:(\d+)", out))


# ----- the job through SpareCycles ---------------------------------------------------------------

def run_job(pool: Pool, folder: Path, params: Path, name: str, watcher: UploadWatcher) -> dict:
    sent0 = bytes_sent_to(pool.sshd.port)
    uploads0, _ = watcher.snapshot()
    t0 = time.perf_counter()
    submitted, _ = sparecycles(["submit", str(folder), "--params", str(params), "--name", name, "--json",
                                "--no-start"], pool.master_env)
    t_submitted = time.perf_counter()
    info = json.loads(submitted.stdout)
    t_done = wait_job_done(pool.master_home, info["job"], timeout=600, master=pool.master)
    sent1 = bytes_sent_to(pool.sshd.port)
    sent = None if sent0 is None or sent1 is None else sent1 - sent0
    status = job_counts(pool, info["job"])
    if status["status"] != "done" or count_results(Path(info["results"]), 1) != 1:
        raise BenchError(f"job {name} ({info['job']}) is {status['status']} {status['counts']}; "
                         f"result missing or wrong in {info['results']}")
    time.sleep(0.05)  # let the watcher take one more look
    uploads1, archives = watcher.snapshot()
    new_uploads = {k: v for k, v in uploads1.items() if k not in uploads0}
    return {"job": info["job"], "archive": info["archive"], "archive_bytes": info["archive_bytes"],
            "results": info["results"], "t0": t0, "submit_seconds": t_submitted - t0,
            "submit_to_done_seconds": t_done - t_submitted, "total_seconds": t_done - t0,
            "master_sent_bytes": sent, "uploads": new_uploads, "archives_seen": archives}


def upload_figures(job: dict) -> dict:
    """The upload of job 1 as the watcher saw it."""
    if len(job["uploads"]) != 1:
        raise BenchError(f"expected one upload for job {job['job']}, the watcher saw {len(job['uploads'])}")
    (name, up), = job["uploads"].items()
    if up["size"] != job["archive_bytes"]:
        raise BenchError(f"the upload {name} reached {up['size']} bytes, the archive has {job['archive_bytes']}")
    renamed = job["archives_seen"].get(f"{job['archive']}.tar")
    if renamed is None:
        raise BenchError(f"archive {job['archive'][:12]} never appeared in the slave's spool")
    t_sub_end = job["t0"] + job["submit_seconds"]
    seconds = up["last_growth"] - up["first_seen"]
    return {"seconds": seconds, "mb_per_s": job["archive_bytes"] / MB / seconds,
            "started_after_submit_s": up["first_seen"] - t_sub_end,
            "verify_and_rename_s": renamed - up["last_growth"],
            "rename_to_done_s": t_sub_end + job["submit_to_done_seconds"] - renamed}


# ----- put and scp of the same bytes ---------------------------------------------------------------

def direct_put(pool: Pool, archive: Path, target: Path, sha: str) -> dict:
    """trayapp.wire.ssh.SSHLink.put of the archive, on a link of its own (opened and warmed up untimed)."""
    from trayapp.home import Home
    from trayapp.master.kinds.ssh import SSHKind
    from trayapp.master.store import Store
    from trayapp.wire.ssh import SSHLink

    home = Home.from_environment({"SPARECYCLES_HOME": str(pool.master_home)})
    store = Store(home.queue_db)
    try:
        host = SSHKind.login(store.host(SLAVE))
    finally:
        store.close()
    tiny = target.parent / "warm-up.bin"
    tiny.write_bytes(b"x")
    link = SSHLink(host, home.known_hosts).open()
    try:
        link.put(tiny, str(target.parent / "warm-up.copy"))  # opens the SFTP channel
        transport = getattr(link, "_client").get_transport()
        cipher = transport.local_cipher
        t0 = time.perf_counter()
        link.put(archive, str(target))
        seconds = time.perf_counter() - t0
    finally:
        link.close()
    for path in (tiny, target.parent / "warm-up.copy"):
        path.unlink(missing_ok=True)
    _check_copy(target, sha, "SSHLink.put")
    size = archive.stat().st_size
    return {"seconds": seconds, "mb_per_s": size / MB / seconds, "cipher": cipher}


def scp(pool: Pool, source: Path, target: Path, legacy: bool = False) -> float:
    command = ["scp", *(["-O"] if legacy else []), "-q", "-P", str(pool.sshd.port), *pool.ssh_options(), str(source),
               f"{pool.sshd.user}@127.0.0.1:{target}"]
    t0 = time.perf_counter()
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"scp exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def scp_figures(pool: Pool, archive: Path, target: Path, sha: str, empty: Path, legacy: bool) -> dict:
    label = "scp -O" if legacy else "scp"
    setup = scp(pool, empty, target.with_suffix(".empty"), legacy)
    target.with_suffix(".empty").unlink(missing_ok=True)
    seconds = scp(pool, archive, target, legacy)
    _check_copy(target, sha, label)
    size = archive.stat().st_size
    net = max(seconds - setup, 1e-6)
    return {"seconds": seconds, "empty_file_seconds": setup, "net_seconds": net,
            "mb_per_s": size / MB / net, "mb_per_s_wall": size / MB / seconds}


def _check_copy(path: Path, sha: str, label: str) -> None:
    actual = sha256_of(path)
    path.unlink()
    if actual != sha:
        raise BenchError(f"{label} delivered a damaged copy ({actual[:12]} is not {sha[:12]})")


# ----- one repeat ------------------------------------------------------------------------------------

def one_repeat(pool: Pool, root: Path, repeat: int, megabytes: float, watcher: UploadWatcher) -> dict:
    spool = pool.slaves[SLAVE].home / "spool"
    folder = root / f"big-{repeat}"
    data_bytes = make_big_job(folder, megabytes)
    params = write_params(root / f"params-{repeat}.json", 1)
    before = archives_listing(spool / "archives")

    first = run_job(pool, folder, params, f"big-{repeat}-first", watcher)
    upload = upload_figures(first)
    after_first = archives_listing(spool / "archives")
    if set(after_first) - set(before) != {f"{first['archive']}.tar"}:
        raise BenchError(f"job 1 should have added exactly its archive to the spool: {sorted(after_first)}")

    second = run_job(pool, folder, params, f"big-{repeat}-second", watcher)
    after_second = archives_listing(spool / "archives")
    problems = []
    if second["archive"] != first["archive"]:
        problems.append(f"the same folder packed to another archive ({second['archive'][:12]})")
    if second["uploads"]:
        problems.append(f"job 2 uploaded again: {sorted(second['uploads'])}")
    if after_second != after_first:
        problems.append("the slave's archives folder changed during job 2")
    if second["master_sent_bytes"] is not None and second["master_sent_bytes"] > first["archive_bytes"] / 100:
        problems.append(f"the master sent {second['master_sent_bytes']} bytes over SSH during job 2")
    if problems:
        raise BenchError("second job: " + "; ".join(problems))

    archive = Path(pool.master_home / "archives" / f"{first['archive']}.tar")
    targets = root / "copies"
    targets.mkdir(exist_ok=True)
    empty = root / "empty.bin"
    empty.write_bytes(b"")
    copies: dict = {}
    watcher.pause()  # no polling thread in this process while put runs in it
    order = ["put", "scp", "scp_legacy"] if repeat % 2 else ["scp_legacy", "scp", "put"]
    for kind in order:
        if kind == "put":
            copies["put"] = direct_put(pool, archive, targets / "put.tar", first["archive"])
        else:
            copies[kind] = scp_figures(pool, archive, targets / f"{kind}.tar", first["archive"], empty,
                                       legacy=kind == "scp_legacy")

    watcher.resume()
    # Free the disk before the next repeat: the slave is idle, both jobs are done.
    shutil.rmtree(folder, ignore_errors=True)
    archive.unlink(missing_ok=True)
    (spool / "archives" / f"{first['archive']}.tar").unlink(missing_ok=True)
    shutil.rmtree(spool / "unpacked" / first["archive"], ignore_errors=True)
    for job in (first, second):
        shutil.rmtree(job["results"], ignore_errors=True)

    for job in (first, second):
        for key in ("t0", "uploads", "archives_seen", "results"):
            job.pop(key, None)
    return {"repeat": repeat, "data_bytes": data_bytes, "archive_bytes": first["archive_bytes"],
            "job1": first, "job2": second, "upload": upload, **copies,
            "ratio": upload["mb_per_s"] / copies["scp"]["mb_per_s"],
            "put_ratio": copies["put"]["mb_per_s"] / copies["scp"]["mb_per_s"],
            "upload_from_job_times_s": first["submit_to_done_seconds"] - second["submit_to_done_seconds"]}


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / MB:.1f}"


def _kb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1000:.1f}"


def print_repeat(r: dict) -> None:
    up, j1, j2 = r["upload"], r["job1"], r["job2"]
    mb = r["archive_bytes"] / MB
    print(f"repeat {r['repeat']}: archive {mb:.1f} MB")
    print(f"    job 1: submit (pack) {j1['submit_seconds']:.2f} s, submit->done {j1['submit_to_done_seconds']:.2f} s = "
          f"upload began after {up['started_after_submit_s'] * 1000:.0f} ms + upload {up['seconds']:.2f} s "
          f"({up['mb_per_s']:.0f} MB/s) + slave hashed and renamed it in {up['verify_and_rename_s']:.2f} s + "
          f"unpack, copy, run, collect {up['rename_to_done_s']:.2f} s; master sent {_mb(j1['master_sent_bytes'])} MB over SSH")
    print(f"    job 2 (same content): submit (pack) {j2['submit_seconds']:.2f} s, submit->done "
          f"{j2['submit_to_done_seconds']:.2f} s; no upload, spool archives unchanged, master sent "
          f"{_kb(j2['master_sent_bytes'])} kB over SSH   (T1 - T2 = {r['upload_from_job_times_s']:.2f} s)")
    put, s, legacy = r["put"], r["scp"], r["scp_legacy"]
    print(f"    SSHLink.put {put['seconds']:.2f} s ({put['mb_per_s']:.0f} MB/s, {put['cipher']}); scp {s['seconds']:.2f} s "
          f"- {s['empty_file_seconds']:.2f} s set-up ({s['mb_per_s']:.0f} MB/s net, {s['mb_per_s_wall']:.0f} wall); "
          f"scp -O {legacy['seconds']:.2f} s ({legacy['mb_per_s']:.0f} MB/s net); in-job upload / scp "
          f"{r['ratio']:.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the job folder's data, in MB (10^6 bytes)")
    parser.add_argument("--repeats", type=int, default=5, help="each with fresh content (about 15 s each at 200 MB)")
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (for debugging)")
    args = parser.parse_args(argv)
    if args.mb <= 0 or args.repeats < 1:
        parser.error("--mb must be positive and --repeats at least 1")
    missing = [tool for tool in ("/usr/sbin/sshd", "ssh", "scp") if shutil.which(tool) is None]
    if missing:
        print(f"BROKEN: missing {', '.join(missing)} (Debian: openssh-server openssh-client)", file=sys.stderr)
        return 1
    exit_cleanly_on_sigterm()

    info = machine_info()
    print(f"SpareCycles archive transfer: a {args.mb:g} MB job folder to 1 slave over a loopback sshd, "
          f"against scp; {args.repeats} repeats")
    print_machine_info(info)

    runs: list[dict] = []
    extra: dict = {}
    root_seen: Path | None = None
    broken: str | None = None
    try:
        with bench_workspace("sparecycles-bench-archive-", keep=args.keep) as (root, processes):
            root_seen = root
            free = shutil.disk_usage(root).free
            if free < 6 * args.mb * MB:
                raise BenchError(f"only {free / MB:.0f} MB free under {root}; need about {6 * args.mb:.0f} MB")
            with Pool(root, processes) as pool:
                pool.add_slave(SLAVE, 1)
                pool.start_master()
                extra["connect_seconds"] = pool.wait_connected()
                print(f"master connected to the slave over SSH in {extra['connect_seconds']:.2f} s "
                      f"(sshd on 127.0.0.1:{pool.sshd.port})", flush=True)
                watcher = UploadWatcher(pool.slaves[SLAVE].home / "spool")
                watcher.start()
                try:
                    for repeat in range(1, args.repeats + 1):
                        result = one_repeat(pool, root, repeat, args.mb, watcher)
                        runs.append(result)
                        print_repeat(result)
                finally:
                    watcher.stop()
    except BenchError as exc:
        broken = str(exc)
    finally:
        broken = with_leftovers(broken, root_seen)
    if broken:
        print(f"\nBROKEN: {broken}", file=sys.stderr)
        return 1

    summary = {
        "upload_mb_per_s": median([r["upload"]["mb_per_s"] for r in runs]),
        "put_mb_per_s": median([r["put"]["mb_per_s"] for r in runs]),
        "scp_mb_per_s": median([r["scp"]["mb_per_s"] for r in runs]),
        "scp_mb_per_s_wall": median([r["scp"]["mb_per_s_wall"] for r in runs]),
        "scp_legacy_mb_per_s": median([r["scp_legacy"]["mb_per_s"] for r in runs]),
        "job1_submit_to_done_s": median([r["job1"]["submit_to_done_seconds"] for r in runs]),
        "job2_submit_to_done_s": median([r["job2"]["submit_to_done_seconds"] for r in runs]),
        "job1_submit_s": median([r["job1"]["submit_seconds"] for r in runs]),
        "job2_submit_s": median([r["job2"]["submit_seconds"] for r in runs]),
        "job2_master_sent_bytes_max": max((r["job2"]["master_sent_bytes"] or 0) for r in runs),
    }
    ratio = median([r["ratio"] for r in runs])
    put_ratio = median([r["put_ratio"] for r in runs])
    met = ratio >= TARGET_RATIO
    print()
    print(f"medians over {args.repeats} repeats ({runs[0]['archive_bytes'] / MB:.1f} MB archive):")
    print(f"  SpareCycles upload in the job  {summary['upload_mb_per_s']:7.0f} MB/s")
    print(f"  SSHLink.put alone              {summary['put_mb_per_s']:7.0f} MB/s")
    print(f"  scp (SFTP protocol)            {summary['scp_mb_per_s']:7.0f} MB/s net of set-up "
          f"({summary['scp_mb_per_s_wall']:.0f} MB/s wall)")
    print(f"  scp -O (legacy protocol)       {summary['scp_legacy_mb_per_s']:7.0f} MB/s net of set-up")
    print(f"  job 1 submit->done {summary['job1_submit_to_done_s']:.2f} s, job 2 (cached archive) "
          f"{summary['job2_submit_to_done_s']:.2f} s; submit (packing) {summary['job1_submit_s']:.2f} s and "
          f"{summary['job2_submit_s']:.2f} s")
    print(f"upload / scp throughput: {ratio:.2f}x (SSHLink.put alone: {put_ratio:.2f}x)   target >= {TARGET_RATIO:g}x  "
          f"-> {'MET' if met else 'NOT MET'}")
    print(f"second job with the same content: sent nothing in every repeat (no upload file, spool archives "
          f"unchanged, the master sent at most {summary['job2_master_sent_bytes_max'] / 1000:.1f} kB over "
          f"SSH: protocol messages)  -> MET")
    print(f"load average at end {loadavg()} (other load on this shared machine inflates every figure)")
    if args.json:
        print(json.dumps({
            "benchmark": "archive_transfer", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": info,
            "mb": args.mb, "repeats": args.repeats, "loadavg_at_end": loadavg(), **extra, "runs": runs,
            "summary": summary, "ratio": ratio, "put_ratio": put_ratio, "target_ratio": TARGET_RATIO,
            "target_met": met, "second_job_sent_nothing": True,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
