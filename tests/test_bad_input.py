"""Damaged queue files are noticed at start with a way out that keeps the results;
signals only set a flag, so a stop never hangs."""

from __future__ import annotations

import os
import sqlite3

import pytest
from conftest import ECHO_TASK, cli, make_job


def queue_with_a_job(home, tmp_path) -> None:
    folder, params = make_job(tmp_path / "job", ECHO_TASK, params=[{"i": i} for i in range(200)])
    cli("submit", str(folder), "--params", str(params), "--no-start", check=True)
    db = sqlite3.connect(home.queue_db)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, as after a clean stop
    db.close()


def cut_in_half(path):
    os.truncate(path, path.stat().st_size // 2)


def zero_and_age(path):
    os.truncate(path, 0)
    os.utime(path, (1_000_000_000, 1_000_000_000))


def scribble_on_a_page(path):
    data = bytearray(path.read_bytes())
    for page in range(1, len(data) // 4096):  # every b-tree page header but the file header's page
        data[page * 4096: page * 4096 + 12] = b"\xee" * 12
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [cut_in_half, zero_and_age, scribble_on_a_page])
def test_a_damaged_queue_is_reported_with_a_way_out(home, tmp_path, damage):
    queue_with_a_job(home, tmp_path)
    damage(home.queue_db)
    result = cli("status")
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert "is damaged" in result.stderr and "results are safe" in result.stderr, result.stderr
    assert ".damaged" in result.stderr and "Traceback" not in result.stderr
    os.rename(home.queue_db, f"{home.queue_db}.damaged")  # the way out it names
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{home.queue_db}{extra}"):
            os.remove(f"{home.queue_db}{extra}")
    assert cli("status").returncode == 0


def test_a_healthy_queue_passes(home, tmp_path):
    queue_with_a_job(home, tmp_path)
    assert cli("status").returncode == 0


def test_the_dispatchers_signal_handler_only_sets_a_flag(app):
    """SIGTERM arriving while the main thread waits on the stop event (holding
    its lock) must not block in the handler: the dispatcher would hang."""
    import signal
    import threading

    dispatcher = app.dispatcher()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    dispatcher.install_signal_handlers()
    try:
        handler = signal.getsignal(signal.SIGTERM)
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)
    returned = threading.Event()

    def signalled_while_waiting() -> None:
        with dispatcher._stop._cond:  # where the loop's thread is during its wait
            handler(signal.SIGTERM, None)
        returned.set()

    threading.Thread(target=signalled_while_waiting, daemon=True).start()
    assert returned.wait(5), "the handler blocked on the lock its own thread holds"
    assert dispatcher.run() is not None  # and the loop sees the flag and stops at once
