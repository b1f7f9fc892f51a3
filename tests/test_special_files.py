"""Special files in a job folder (a FIFO, a socket) are refused at submit, by
name, before anything is packed: a FIFO used to hang ``submit`` (packing opened
it and waited for a writer), a socket gave a traceback."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from conftest import cli, make_job

import trayapp.job.folder as folder_module
from trayapp.app import App
from trayapp.errors import UserError
from trayapp.job.submit import submit_job
from trayapp.master.store import Store


def test_a_fifo_hung_submit_before_and_is_refused_by_name_now(home, tmp_path, monkeypatch):
    job, _ = make_job(tmp_path / "job", "print('hi')\n")
    os.mkfifo(job / "pipe")
    app = App(home)

    # The old behaviour, with the check switched off: packing opens the FIFO and waits.
    # (A context of its own: undoing the test's monkeypatch would undo the home fixture's too.)
    with monkeypatch.context() as old:
        old.setattr(folder_module._Problems, "is_special", lambda self, path, rel: False)
        ended = threading.Event()

        def submit_in_thread():
            submit_job(Store(home.queue_db), home, app.config, job)  # its own queue connection, on its own thread
            ended.set()

        worker = threading.Thread(target=submit_in_thread, daemon=True)
        worker.start()
        assert not ended.wait(2.0), "submit should hang on the FIFO with the check off"
        with open(job / "pipe", "wb"):  # a writer: the blocked open returns, and packing reads an empty file
            pass
        worker.join(30)

    result = cli("submit", str(job), "--no-start", timeout=30)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "special files" in result.stderr and "pipe (FIFO)" in result.stderr, result.stderr
    assert ".sparecyclesignore" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_socket_is_refused_by_name_and_an_ignored_one_is_fine(home, tmp_path, monkeypatch):
    job, _ = make_job(tmp_path / "job", "print('hi')\n")
    monkeypatch.chdir(job)  # a short relative name: a socket path is limited to about 100 bytes
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind("daemon.sock")
        with pytest.raises(UserError, match=r"daemon\.sock \(socket\)") as info:
            submit_job(App(home).store, home, App(home).config, job)
        assert "remove them" in info.value.fix
        (job / ".sparecyclesignore").write_text("*.sock\n")
        submit_job(App(home).store, home, App(home).config, job)  # ignored: it does not travel
    finally:
        server.close()


def test_a_link_to_a_fifo_inside_the_folder_is_refused_too(home, tmp_path):
    job, _ = make_job(tmp_path / "job", "print('hi')\n")
    os.mkfifo(job / "pipe")
    (job / "data").mkdir()
    (job / "data" / "link").symlink_to(job / "pipe")
    (job / ".sparecyclesignore").write_text("/pipe\n")
    with pytest.raises(UserError, match=r"data/link \(FIFO\)"):
        submit_job(App(home).store, home, App(home).config, job)
