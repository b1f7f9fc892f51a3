"""The SSH host key a host presents, and trusting it after the user compared
the fingerprint: what ``hosts trust``, ``hosts test`` and the window's trust
dialog decide on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trayapp.errors import UserError
from trayapp.home import Home


@dataclass(frozen=True)
class PresentedKey:
    host: str
    address: str
    port: int
    key_type: str
    fingerprint: str
    known: str  # "new", "trusted" or "changed" (we trust another key of this host)
    key: Any  # the paramiko key, to record when trusted


def presented_key(home: Home, host: str, address: str, port: int) -> PresentedKey:
    """Ask the host for its key (no login) and compare it with the keys we trust."""
    import paramiko

    from trayapp.wire.ssh import fetch_host_key, fingerprint, host_key_name

    try:
        key = fetch_host_key(address, port)
    except ConnectionRefusedError:
        raise UserError(f"reachable: nothing answers SSH at {address}:{port} (connection refused)",
                        f"is sshd running on {address}, on port {port}? If it listens on another port, "
                        f"add the host again with --port PORT (sparecycles hosts remove {host} first)") from None
    except (OSError, paramiko.SSHException) as exc:
        raise UserError(f"reachable: could not reach {host} at {address}:{port}: {exc}",
                        "check that the PC is on, on the network, and runs an SSH server") from None
    known = paramiko.HostKeys()
    path = home.known_hosts
    if path.exists():
        known.load(str(path))
    existing = known.lookup(host_key_name(address, port)) or {}
    state = "new"
    if existing:
        # A key we trust exists, and this one is not it (of the same type or
        # not): the PC was reinstalled, or someone is in between.
        state = "trusted" if existing.get(key.get_name()) == key else "changed"
    return PresentedKey(host, address, port, key.get_name(), fingerprint(key), state, key)


def refuse_a_changed_key(key: PresentedKey, *, replace: bool, unseen: bool = False) -> None:
    """Raise unless ``key`` may be trusted: a changed key only with ``replace``,
    and never ``unseen`` (``--yes``: nobody compared its fingerprint)."""
    if key.known != "changed":
        return
    if not replace:
        raise UserError(f"the host key of {key.host} has CHANGED: it now presents {key.key_type} {key.fingerprint}",
                        f"if the PC was reinstalled, compare the fingerprint on it, then run "
                        f"'sparecycles hosts trust {key.host} --replace'")
    if unseen:
        raise UserError(f"--yes does not replace the CHANGED host key of {key.host} ({key.fingerprint})",
                        "compare the fingerprint on the PC itself ('ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub'), "
                        f"then run 'sparecycles hosts trust {key.host} --replace --fingerprint SHA256:...'")


def trust_key(home: Home, key: PresentedKey, *, fingerprint: str | None = None, replace: bool = False) -> None:
    """Record ``key`` as the host's; ``fingerprint``: only if it is the one the
    user compared; ``replace``: a changed key replaces the one trusted before."""
    from trayapp.wire.ssh import trust_host_key

    if key.known == "trusted":
        return
    refuse_a_changed_key(key, replace=replace)
    if fingerprint is not None and fingerprint.strip() != key.fingerprint:
        raise UserError(f"the fingerprint {fingerprint} does not match the host's {key.fingerprint}",
                        "check you typed it from the right PC ('ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub')")
    trust_host_key(home, key.address, key.port, key.key)
