"""The slave engine spoken to over real sockets, as masters and the PC's user speak to it."""

from __future__ import annotations

import json
import threading

import pytest
from support.engines import serving_engine
from support.peer import ProtocolPeer

from trayapp.wire.protocol import encode
from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.identity import LENDER_PRINCIPAL
from trayapp.slave.spool import Spool


def master_session(engine: SlaveEngine, master_id: str, name: str, principal=None) -> ProtocolPeer:
    """A master reduced to its socket, said hello."""
    peer = ProtocolPeer(engine, principal=principal)
    peer.hello(master_id, name)
    return peer


@pytest.fixture
def engine(tmp_path):
    import sys

    settings = SlaveSettings(slots=2, python=sys.executable, caps={"greedy@pc": 1}, weights={"head@pc": 2.0})
    with serving_engine(tmp_path / "spool", settings) as eng:
        yield eng


def test_caps_and_weights_configured_by_master_name_apply(engine):
    greedy = master_session(engine, "1111111111111111", "greedy@pc")
    other = master_session(engine, "2222222222222222", "head@pc")
    greedy.send("demand", queued=50)
    assert greedy.expect("grant")["n"] == 1
    # Capped at one slot: the second slot is not granted to greedy, even idle...
    with pytest.raises(TimeoutError):
        greedy.sock.settimeout(0.5)
        greedy.expect("grant")
    # ...but goes to the other master as soon as it asks.
    other.send("demand", queued=1)
    assert other.expect("grant")["n"] == 1
    assert engine.fairshare.weights == {"2222222222222222": 2.0}
    assert engine.fairshare.caps == {"1111111111111111": 1}


def test_released_grants_go_to_someone_else_at_once(engine):
    first = master_session(engine, "3333333333333333", "a@pc")
    first.send("demand", queued=2)
    first.expect("grant"), first.expect("grant")
    second = master_session(engine, "4444444444444444", "b@pc")
    second.send("demand", queued=1)
    # Another host took first's work: like a real master, it hands the slots
    # back and lowers its demand in one go.
    first.sock.sendall(encode("release", n=2) + encode("demand", queued=0))
    assert second.expect("grant")["n"] == 1


def test_pause_donate_resume_through_the_control_message(engine):
    user = master_session(engine, "0000000000c0de00", "this PC's user", LENDER_PRINCIPAL)
    user.send("control", action="pause", until=None)
    state = user.expect("state", control="pause")
    assert state["state"] == "paused" and state["reason"] == "paused until resumed"
    user.send("control", action="donate", until=None)
    assert user.expect("state", control="donate")["donating"] is True
    user.send("control", action="resume")
    state = user.expect("state", control="resume")
    assert state["state"] == "ready" and not state["paused"] and not state["donating"]
    assert json.dumps(state)  # no infinities: it must stay valid JSON


def test_brian_updated_in_the_task_environment_reaches_the_masters_without_a_restart(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    venv = tmp_path / "task env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    eng = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=1, python=python), slave_id="6b6b6b6b6b6b6b6b",
                      runner=PosixRunner())
    eng.version_probe.ttl_s = 0.2
    thread = threading.Thread(target=eng.serve, kwargs={"poll_s": 0.05}, daemon=True)
    thread.start()
    try:
        master = master_session(engine=eng, master_id="3333333333333333", name="m@pc")
        assert eng.versions["brian"] is None
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dist = Path(site) / "brian2-2.9.1.dist-info"  # what pip leaves behind, as far as versions go
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brian2\nVersion: 2.9.1\n")
        state = master.expect("state", brian="2.9.1")
        assert state["python"] and eng.versions["brian"] == "2.9.1"
    finally:
        eng.request_stop()
        thread.join(10)
        eng.close()


def test_a_master_that_hung_up_is_still_heard_to_the_end():
    # An agent relays a master's last messages (cancel, bye) and exits at once;
    # the engine's reply then fails, and it must still act on what it was sent.
    import socket

    from trayapp.wire.protocol import decode
    from trayapp.slave.session import Session

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    session = Session(ours)
    theirs.sendall(encode("cancel", token="ab" * 8) + encode("bye", stop_tasks=False))
    theirs.close()
    session.send("state", state="ready")
    assert session.flush() is None and session.write_lost, "a failed reply must not end the session"
    lines, why = session.receive()
    assert [decode(line)["type"] for line in lines] == ["cancel", "bye"] and why is None
    assert session.receive() == ([], "connection closed")
    session.send("finished", token="ab" * 8)
    assert session.flush() is None and not session.outbox  # nobody to tell any more
    session.closing = True
    assert session.flush() == "bye"
