"""Who is on the other end of a session: a master is its key, never its claim.

A master's ``hello`` names a master id, but on a slave that id proves
nothing: any master could claim another's. What the slave trusts is how the
connection reached it (:class:`Principal`):

- ``key``: the agent started by the forced command of a key that ``slave
  authorize`` wrote (``agent --forced NAME``): sshd chose the command, so NAME
  is the key's. The agent tells the daemon first thing (:func:`preface`),
  before it relays a single byte of the master's.
- ``fingerprint``: the agent of an unrestricted key (the older setup) that
  sshd told which key logged in (``ExposeAuthInfo yes`` puts it in the file
  named by ``SSH_USER_AUTH``). Such a key runs anything as the lender, so this
  keeps honest masters apart, not hostile ones.
- ``unverified``: an unrestricted key without that information; the hello's
  claim is all there is (as before). Same caveat.
- ``lender``: the lender's own local socket with no agent in between (the tray,
  ``pause``/``donate``/``resume``, a master started by hand). Only it may
  ``control`` the slave.
- ``local``: the master's own cores, an engine in the master's own process.

The principal owns everything the slave keeps for it: its tasks (the owner
recorded with each is :meth:`Principal.owner`), tokens, results and uploads
(:attr:`Principal.folder`), compiler caches, grants and fair-share account
(:attr:`Principal.account`). The id a hello claims only tells apart the masters
that share one key (two PCs of one person), never reaches across keys.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from trayapp.wire.protocol import ProtocolError

KEY, FINGERPRINT, UNVERIFIED, LENDER, LOCAL = "key", "fingerprint", "unverified", "lender", "local"
UNBOUND_FOLDER = "unbound"
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # as slave authorize allows
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")


@dataclass(frozen=True)
class Principal:
    kind: str
    name: str = ""  # the key's name (key), its fingerprint (fingerprint); empty otherwise

    @property
    def bound_to_a_key(self) -> bool:
        return self.kind in (KEY, FINGERPRINT)

    @property
    def account(self) -> str | None:
        """The fair-share account; None: each claimed id is its own (as before)."""
        return f"{self.kind}:{self.name}" if self.bound_to_a_key else None

    @property
    def folder(self) -> str:
        """This principal's folder name under the spool's per-master folders.
        The unbound ones (the lender, the master's own cores, an unrestricted
        key) can read the whole spool anyway: they share one."""
        if self.kind == KEY:
            return f"key-{self.name}"
        if self.kind == FINGERPRINT:
            return "fp-" + hashlib.sha256(self.name.encode()).hexdigest()[:16]
        return UNBOUND_FOLDER

    @property
    def label(self) -> str:
        """How the lender sees this master (status, logs, the config's weights and caps)."""
        return self.name if self.kind == KEY else self.account or self.kind

    @property
    def may_control(self) -> bool:
        """Pause, donate and resume are the lender's alone."""
        return self.kind == LENDER

    def owner(self, claimed: str) -> str:
        """What a task of this principal records as its owner. Unbound
        principals keep the bare claimed id, as spools before this one did
        (a claimed id is hex: it never holds the ``#``)."""
        return f"{self.account}#{claimed}" if self.account else claimed


LENDER_PRINCIPAL = Principal(LENDER)
LOCAL_PRINCIPAL = Principal(LOCAL)


def account_of(owner: str) -> str:
    """The fair-share account of a task's recorded owner."""
    return owner.split("#", 1)[0]


def folder_of(owner: str) -> str:
    """The per-master folder name of a task's recorded owner."""
    account, sep, _ = owner.partition("#")
    if not sep:
        return UNBOUND_FOLDER
    kind, _, name = account.partition(":")
    return Principal(kind, name).folder


# ----- the agent's side: what it tells the daemon before relaying ----------------------

def agent_principal(forced: str | None, environ: dict[str, str]) -> Principal:
    """Who the agent relays for: the forced command's name, else the key sshd exposed."""
    if forced is not None:
        return Principal(KEY, forced)
    fingerprint = exposed_key_fingerprint(environ.get("SSH_USER_AUTH"))
    return Principal(FINGERPRINT, fingerprint) if fingerprint else Principal(UNVERIFIED)


def exposed_key_fingerprint(auth_info: str | None) -> str | None:
    """The SHA256 fingerprint of the public key sshd says this session logged in with
    (``ExposeAuthInfo yes``: lines like ``publickey ssh-ed25519 AAAA...``)."""
    if not auth_info:
        return None
    try:
        text = Path(auth_info).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "publickey":
            try:
                digest = hashlib.sha256(base64.b64decode(words[2], validate=True)).digest()
            except ValueError:
                return None
            return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    return None


def preface(principal: Principal) -> dict:
    """The fields of the agent's first message to the daemon."""
    return {"principal": principal.kind, "name": principal.name}


def principal_from_preface(message: dict) -> Principal:
    """The principal an agent's first message names, checked."""
    kind, name = message.get("principal"), message.get("name")
    if kind == KEY and isinstance(name, str) and _KEY_NAME.match(name):
        return Principal(KEY, name)
    if kind == FINGERPRINT and isinstance(name, str) and _FINGERPRINT.match(name):
        return Principal(FINGERPRINT, name)
    if kind == UNVERIFIED:
        return Principal(UNVERIFIED)
    raise ProtocolError(f"an agent that names no valid master ({kind!r}, {name!r})")


# ----- what a master is told -------------------------------------------------------------

# Fields of the slave's state that name or measure other masters: the lender sees them,
# masters never do.
_ABOUT_OTHER_MASTERS = ("running_by_master", "usage", "master_names", "unreadable_tasks")


def shown_to_master(state: dict, account: str) -> dict:
    """The slave's state as one master may see it: its own running tasks and
    share of the recent use, and of the others only how many there are."""
    usage = state.get("usage") or {}
    total = sum(usage.values())
    shown = {k: v for k, v in state.items() if k not in _ABOUT_OTHER_MASTERS}
    shown["running_mine"] = (state.get("running_by_master") or {}).get(account, 0)
    shown["share"] = usage.get(account, 0.0) / total if total else None
    shown["other_masters"] = len((set(usage) | set(state.get("master_names") or {})) - {account})
    return shown


def from_first_message(message: dict) -> tuple[Principal, bool]:
    """Who a connection to the daemon's socket is, from its first message:
    an agent says so before it relays anything (the message is used up);
    anything else is the lender, on their own PC."""
    if message["type"] == "agent":
        return principal_from_preface(message), True
    return LENDER_PRINCIPAL, False
