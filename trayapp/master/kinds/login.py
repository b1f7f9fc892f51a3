"""How a host reached over SSH is logged in to: its address, port, user and
key (and, for a slave, the command that starts its agent).

Kept in the host's ``options`` under the keys of :data:`LOGIN_KEYS`, beside
the kind's own (a cluster's partition...); only the kinds that log in over SSH
(``ssh``, ``slurm``) have them. Light: no paramiko here, so that commands that
only list hosts do not load it.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from trayapp.errors import UserError, refuse_control_characters
from trayapp.master.kinds.kind import AddOption
from trayapp.master.store import HostRecord

DEFAULT_AGENT_COMMAND = "sparecycles agent"
DEFAULT_PORT = 22
# The options' keys in the queue (migration 5 moved them there from the hosts table's columns).
LOGIN_KEYS = ("address", "port", "user", "key", "agent_command")


@dataclass(frozen=True)
class SSHLogin:
    """Whom to log in as where: the :class:`trayapp.wire.ssh.SSHTarget` a connection is opened to."""

    name: str  # the host's, for messages
    address: str
    port: int = DEFAULT_PORT
    user: str | None = None
    key_path: str | None = None  # None: the SSH agent's and ~/.ssh keys
    agent_command: str | None = None  # a slave's agent; None: a plain shell (a cluster's login node)

    @classmethod
    def of(cls, host: HostRecord) -> "SSHLogin":
        options = host.options
        return cls(host.name, options["address"], options.get("port", DEFAULT_PORT), options.get("user"),
                   options.get("key"), options.get("agent_command"))

    def where(self) -> str:
        """In a few words, as ``hosts list`` shows it: ``alice@lab-07:22``."""
        return f"{self.user + '@' if self.user else ''}{self.address}:{self.port}"

    def fields(self) -> dict:
        """For ``hosts list --json`` (the fields it had when they were the table's columns)."""
        return {"address": self.address, "port": self.port, "user": self.user}


def login_options(address_help: str) -> tuple[AddOption, ...]:
    """The ``hosts add`` options of any host reached over SSH."""
    return (
        AddOption("--host", address_help, required=True),
        AddOption("--port", "its SSH port", type=int, default=DEFAULT_PORT),
        AddOption("--user", "SSH user (default: yours)"),
        AddOption("--key", "private key file (default: your SSH agent and ~/.ssh keys)"),
        AddOption("--ask-secret", "ask for the key passphrase or password and keep it in the OS keyring",
                  secret=True),
    )


def check_login(values: dict) -> None:
    """Refuse login values that cannot be a host, user, key or command line:
    they reach a hosts table, a known_hosts file and a remote shell."""
    if not 0 < values["port"] < 65536:
        raise UserError(f"--port must be between 1 and 65535, not {values['port']}")
    for flag, dest in (("--host", "host"), ("--user", "user")):
        value = values.get(dest)
        if value is None:
            continue
        refuse_control_characters(flag, value)
        if not value.strip() or any(c.isspace() for c in value):
            example = "--host lab-07.example.org or --host 192.0.2.7" if dest == "host" else "--user alice"
            raise UserError(f"{flag} {value!r} is {'empty' if not value.strip() else 'not one word'}",
                            f"give it without spaces, e.g. {example}")
    for flag, dest in (("--key", "key"), ("--agent-command", "agent_command")):
        if values.get(dest) is not None:
            refuse_control_characters(flag, values[dest])


def login_record(values: dict) -> dict:
    """The options a host's login is kept as, from checked ``hosts add`` values
    (the user defaults to yours; no key: none kept)."""
    check_login(values)
    record = {"address": values["host"], "port": values["port"], "user": values["user"] or getpass.getuser()}
    if values.get("key"):
        record["key"] = values["key"]
    return record
