"""A slave's checks of a job's requirement lines: a line that names a location
(a URL, a path) is declined with the fix before anything is installed, and
checking what the task environment has never holds up the engine's loop,
however many names a ``start`` lists (300 made-up ones here)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from conftest import wait_until
from support.peer import ProtocolPeer

from trayapp.install.taskenv import installed_distributions
from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.requirements import RequirementChecker
from trayapp.slave.spool import Spool

SHA = "ab" * 32


@pytest.fixture
def gated_python(tmp_path) -> tuple[str, Path]:
    """A task interpreter that starts only while ``gate`` exists: a task environment
    on a slow disk, as long as the test likes, and no longer."""
    gate = tmp_path / "gate"
    gate.touch()
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nwhile [ ! -e '{gate}' ]; do sleep 0.02; done\nexec '{sys.executable}' \"$@\"\n")
    script.chmod(0o755)
    return str(script), gate


def engine_with(python: str, spool: Path) -> tuple[SlaveEngine, threading.Thread]:
    eng = SlaveEngine(Spool(spool), SlaveSettings(slots=2, python=python), slave_id="5a5a5a5a5a5a5a5a",
                      runner=PosixRunner())
    thread = threading.Thread(target=eng.serve, kwargs={"poll_s": 0.05}, daemon=True)
    thread.start()
    return eng, thread


def start_message(token: str, requires: list[str]) -> dict:
    return dict(token=token, job="j1", idx=0, params={}, main="main.py", archive_sha=SHA, requires=requires)


@pytest.mark.parametrize("protected", [False, True], ids=["checked-on-the-loop", "checked-off-the-loop"])
def test_300_made_up_requirement_names_never_hold_up_the_engine(tmp_path, gated_python, monkeypatch, protected):
    python, gate = gated_python
    if not protected:  # the old behaviour: the installed versions read on the engine's loop
        monkeypatch.setattr(RequirementChecker, "cached", lambda self: installed_distributions(self.python))
    engine, thread = engine_with(python, tmp_path / "spool")
    try:
        flooder, other = ProtocolPeer(engine), ProtocolPeer(engine)
        flooder.hello("1111111111111111", "flooder@pc")
        other.hello("2222222222222222", "other@pc")
        gate.unlink()  # from now on the task interpreter takes as long as the test wants
        flooder.send("start", **start_message("a1" * 16, [f"made-up-{i} >= 1.0" for i in range(300)]))
        other.send("demand", queued=1)
        other.sock.settimeout(3.0)
        if protected:
            assert other.expect("grant")["n"] == 1, "the other master is answered while the check runs"
        else:
            with pytest.raises(TimeoutError):
                other.expect("grant")  # the loop is stuck in the check: nobody is answered
            other.sock.settimeout(10.0)
        gate.touch()
        declined = flooder.expect("declined")
        assert declined["requirements"] and "needs made-up-0 >= 1.0, which is not installed here" in declined["reason"]
        if not protected:
            other.expect("grant")
    finally:
        gate.touch()
        engine.request_stop()
        thread.join(10)
        engine.close()


@pytest.mark.parametrize("line", ["evilpkg @ file:///tmp/evilpkg", "evilpkg @ https://example.org/evil.tar.gz",
                                  "git+https://example.org/evil.git", "./evilpkg", "/tmp/evilpkg"])
def test_a_requirement_naming_a_location_is_declined_with_the_fix(tmp_path, line):
    engine, thread = engine_with(sys.executable, tmp_path / "spool")
    try:
        peer = ProtocolPeer(engine)
        peer.hello("1111111111111111", "m@pc")
        peer.send("start", **start_message("b2" * 16, ["numpy", line]))
        declined = peer.expect("declined")
        assert declined["requirements"] is True
        assert "lab's package index" in declined["reason"] and "fix: publish the package" in declined["reason"]
        assert not (tmp_path / "spool" / "tasks" / ("b2" * 16)).exists()
    finally:
        engine.request_stop()
        thread.join(10)
        engine.close()
    assert os.path.exists(sys.executable)


@pytest.mark.parametrize("protected", [False, True], ids=["old-cap-100000", "capped"])
def test_a_start_with_100000_requirement_lines_is_refused_before_any_is_read(tmp_path, monkeypatch, protected):
    # A hostile master's start: 100,000 lines (about 0.5 MB, under the line limit), each
    # parsed on the slave's loop while every other master waits.
    from trayapp.slave import environments
    from trayapp.wire import protocol
    from trayapp.wire.fields import list_of, text

    if not protected:  # the old field: up to 100,000 lines
        monkeypatch.setitem(protocol.TO_SLAVE_FIELDS["start"], "requires",
                            list_of(text(1000, what="a requirement line"), 100_000).maybe())
    read = []
    real = environments.refused_requirements
    monkeypatch.setattr(environments, "refused_requirements", lambda lines: read.append(len(lines)) or real(lines))
    engine, thread = engine_with(sys.executable, tmp_path / "spool")
    try:
        flooder = ProtocolPeer(engine, timeout=120)
        flooder.hello("1111111111111111", "flooder@pc")
        flooder.send("start", **start_message("c3" * 16, ["a"] * 100_000))
        if protected:
            declined = flooder.expect("declined")
            assert read == [] and declined["retry"] is False, declined
            assert "requires must be a list of at most 500 items" in declined["reason"], declined
        else:
            wait_until(lambda: read == [100_000], timeout=120, what="the slave to read every line")
    finally:
        engine.request_stop()
        thread.join(10)
        engine.close()


def test_the_cap_on_requirement_lines_is_what_the_master_refuses_at_submit(app, tmp_path):
    from conftest import make_job
    from trayapp.errors import UserError
    from trayapp.job.manifest import load_manifest
    from trayapp.job.requirements import job_requirements
    from trayapp.wire.protocol import MAX_REQUIREMENTS

    assert MAX_REQUIREMENTS >= 300 > 4
    fits, _ = make_job(tmp_path / "fits", "print(1)\n", extra_files={
        "sparecycles.toml": 'requires = ["brian2", "numpy"]\n',
        "requirements.txt": "".join(f"pkg-{i}\n" for i in range(MAX_REQUIREMENTS - 2)) + "numpy\n"})
    assert len(job_requirements(fits, load_manifest(fits))) == MAX_REQUIREMENTS
    over, _ = make_job(tmp_path / "over", "print(1)\n", extra_files={
        "requirements.txt": "".join(f"pkg-{i}\n" for i in range(MAX_REQUIREMENTS + 1))})
    with pytest.raises(UserError, match=f"lists {MAX_REQUIREMENTS + 1} requirements.*at most {MAX_REQUIREMENTS}") \
            as caught:
        job_requirements(over, load_manifest(over))
    assert "only the packages the job imports itself" in caught.value.fix
