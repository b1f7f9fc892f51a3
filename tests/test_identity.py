"""Who a session is, from how it came (trayapp.slave.identity), and what a master is told."""

from __future__ import annotations

import base64
import socket
import sys

import pytest
from support.engines import serving_engine
from support.peer import ProtocolPeer

from trayapp.master.kinds.slavehost import _our_share
from trayapp.slave import identity
from trayapp.slave.engine import SlaveSettings
from trayapp.slave.identity import KEY, Principal
from trayapp.wire.protocol import ProtocolError, encode

ED25519 = base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(range(32))).decode()


def test_the_agent_names_the_forced_key_else_the_key_sshd_exposed(tmp_path):
    assert identity.agent_principal("alice", {}) == Principal(KEY, "alice")
    auth = tmp_path / "auth"
    auth.write_text(f"publickey ssh-ed25519 {ED25519}\n")
    exposed = identity.agent_principal(None, {"SSH_USER_AUTH": str(auth)})
    assert exposed.kind == identity.FINGERPRINT and exposed.name.startswith("SHA256:")
    assert identity.agent_principal(None, {}) == Principal(identity.UNVERIFIED)
    assert identity.agent_principal(None, {"SSH_USER_AUTH": str(tmp_path / "missing")}).kind == identity.UNVERIFIED


@pytest.mark.parametrize("preface", [{"principal": "key", "name": "../bob"}, {"principal": "lender", "name": ""},
                                     {"principal": "fingerprint", "name": "SHA256:short"}, {"principal": None}])
def test_an_agent_preface_naming_no_valid_master_is_refused(preface):
    with pytest.raises(ProtocolError):
        identity.principal_from_preface(preface)


def test_owners_accounts_and_folders_keep_keys_apart_and_old_spools_readable():
    alice = Principal(KEY, "alice")
    assert alice.owner("0123456789abcdef") == "key:alice#0123456789abcdef"
    assert identity.account_of(alice.owner("0123456789abcdef")) == "key:alice"
    assert identity.folder_of(alice.owner("0123456789abcdef")) == "key-alice" == alice.folder
    unbound = Principal(identity.UNVERIFIED)
    assert unbound.owner("0123456789abcdef") == "0123456789abcdef"  # as spools before this release recorded it
    assert identity.folder_of("0123456789abcdef") == "unbound" == unbound.folder
    assert identity.LENDER_PRINCIPAL.may_control and not alice.may_control
    assert not identity.LOCAL_PRINCIPAL.may_control


def test_a_master_is_told_its_own_share_and_how_many_others_there_are_not_who():
    state = {"state": "ready", "running": 3, "usage": {"key:alice": 30.0, "key:bob": 10.0},
             "running_by_master": {"key:alice": 2, "key:bob": 1}, "master_names": {"key:bob": "bob"},
             "unreadable_tasks": {"/spool/tasks/x/task.json": "damaged"}}
    shown = identity.shown_to_master(state, "key:bob")
    assert shown == {"state": "ready", "running": 3, "running_mine": 1, "share": 0.25, "other_masters": 1}
    assert _our_share(shown, "b0b0000000000002") == 0.25
    assert _our_share({"usage": {"b0b0000000000002": 1.0, "x": 3.0}}, "b0b0000000000002") == 0.25  # an older slave


@pytest.fixture
def engine(tmp_path):
    with serving_engine(tmp_path / "spool", SlaveSettings(slots=1, python=sys.executable)) as eng:
        yield eng


def test_only_an_agents_first_line_names_its_key(engine):
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    with engine._lock:  # as the daemon's listener hands it over: nobody known yet
        engine._pending.append((theirs, None))
    engine.wake()
    ours.sendall(encode("agent", principal="key", name="alice"))
    peer = ProtocolPeer(sock=ours)
    peer.hello("0123456789abcdef", "alice@pc")
    assert [s.master for s in engine.sessions.values()] == ["key:alice#0123456789abcdef"]
    peer.send("agent", principal="key", name="bob")  # the master's own line, after the agent's
    assert peer.expect("error")["reason"].startswith("the slave closed the connection")
    assert peer.closed_by_engine()


def test_a_line_of_another_protocol_version_is_answered_with_the_reason_before_closing(engine):
    peer = ProtocolPeer(engine)
    peer.sock.sendall(b'{"v": 0, "type": "hello", "master": "0123456789abcdef"}\n')
    assert "update SpareCycles on both PCs" in peer.expect("error")["reason"]
    assert peer.closed_by_engine()
