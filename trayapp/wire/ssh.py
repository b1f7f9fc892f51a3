"""Everything that touches paramiko: connecting to a slave or a login node, its host key, SFTP.

Host keys are checked against SpareCycles' own ``known_hosts`` (in the config
folder): an unknown key is refused until the user trusts it (``sparecycles
hosts trust NAME`` shows the fingerprint first), and a changed key is refused
outright; there is no auto-add. Key passphrases and passwords come from the OS
keyring, never from a file.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import paramiko

from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.wire.links import LinkClosed, LocalWriteFailed, TransferRefused, TransferTimedOut

log = logging.getLogger(__name__)

KEYRING_SERVICE = "sparecycles"
CONNECT_TIMEOUT_S = 15
KEEPALIVE_S = 15
_SFTP_REQUEST = 128 * 1024


class SSHTarget(Protocol):
    """What this module needs to know of a host (the master's
    :class:`~trayapp.master.kinds.login.SSHLogin` fits; the wire does not
    depend on the master's store)."""

    name: str
    address: str
    port: int
    user: str | None
    key_path: str | None
    agent_command: str | None  # what an SSHLink starts there; a shell needs none


class HostKeyError(Exception):
    """The host's key is unknown or changed: the user must decide."""


class LoginRefused(Exception):
    """The host does not accept our user, key or password."""


class Unreachable(OSError):
    """No SSH server answers (refused, no route): ``str()`` is short, for ``hosts list``."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix

    def __str__(self) -> str:
        return self.problem


class ClientKeyError(Exception):
    """Our own private key cannot be unlocked (passphrase missing or wrong)."""


def host_key_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def client_key_fingerprints(host: SSHTarget) -> list[str]:
    """The SHA256 fingerprints of the keys we log in to ``host`` with, as
    ``slave authorize --list`` shows them on the lender's side: its ``--key``
    (from the ``.pub`` beside it, else the private key if it needs no
    passphrase), else the agent's keys and the usual ``~/.ssh`` ones."""
    found: list[str] = []
    paths = [Path(host.key_path).expanduser()] if host.key_path else [
        Path.home() / ".ssh" / name for name in ("id_ed25519", "id_ecdsa", "id_rsa")]
    for path in paths:
        pub = path.with_name(path.name + ".pub")
        try:
            if pub.is_file():
                blob = base64.b64decode(pub.read_text().split()[1])
                found.append("SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="))
            elif host.key_path and path.is_file():
                found.append(fingerprint(paramiko.PKey.from_path(str(path))))
        except (OSError, IndexError, ValueError, paramiko.SSHException):
            continue
    if not host.key_path:
        try:
            found += [fingerprint(key) for key in paramiko.Agent().get_keys()]
        except (OSError, paramiko.SSHException):
            pass
    return list(dict.fromkeys(found))


def keyring_account(host: SSHTarget) -> str:
    return f"{host.user or ''}@{host.address}:{host.port}"


def secret_for(host: SSHTarget) -> str | None:
    """The key passphrase or password for ``host`` from the OS keyring, if any."""
    try:
        import keyring
        import keyring.errors

        return keyring.get_password(KEYRING_SERVICE, keyring_account(host))
    except Exception as exc:  # noqa: BLE001 - no backend on a headless PC is normal
        log.debug("no keyring available: %s", exc)
        return None


def store_secret(host: SSHTarget, secret: str) -> None:
    import keyring

    try:
        keyring.set_password(KEYRING_SERVICE, keyring_account(host), secret)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"could not store the secret in the OS keyring: {exc}",
                        "install and unlock a keyring (e.g. GNOME Keyring, KWallet), or use a key without passphrase"
                        ) from None


def fetch_host_key(address: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> paramiko.PKey:
    """The key a server presents, without authenticating (for `hosts trust`)."""
    sock = socket.create_connection((address, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def trust_host_key(home: Home, address: str, port: int, key: paramiko.PKey) -> None:
    path = home.known_hosts
    keys = paramiko.HostKeys()
    if path.exists():
        keys.load(str(path))
    name = host_key_name(address, port)
    if name in keys:
        del keys[name]  # the user replaces a changed key on purpose
    keys.add(name, key.get_name(), key)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys.save(str(path))


def _fast_transport(sock, **kwargs) -> paramiko.Transport:
    """A transport that prefers AES-GCM when the server offers it: one pass for
    encryption and integrity, ~40 % more SFTP throughput here than paramiko's
    default aes128-ctr + hmac-sha2. Servers without it still get the usual list."""
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    gcm = tuple(c for c in options.ciphers if c.endswith("-gcm@openssh.com"))
    options.ciphers = gcm + tuple(c for c in options.ciphers if c not in gcm)
    return transport


def open_client(host: SSHTarget, known_hosts: Path) -> paramiko.SSHClient:
    """An authenticated SSH connection to ``host``, its key checked against ``known_hosts``."""
    client = paramiko.SSHClient()
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    secret = secret_for(host)
    key_file = str(Path(host.key_path).expanduser()) if host.key_path else None
    try:
        client.connect(host.address, port=host.port, username=host.user,
                       key_filename=key_file, passphrase=secret, password=secret if not key_file else None,
                       timeout=CONNECT_TIMEOUT_S, banner_timeout=CONNECT_TIMEOUT_S,
                       auth_timeout=CONNECT_TIMEOUT_S, look_for_keys=key_file is None, allow_agent=True,
                       transport_factory=_fast_transport)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"the host key of {host.name} ({host.address}:{host.port}) has CHANGED to "
            f"{fingerprint(exc.key)}; refusing to connect. If the PC was reinstalled, check the fingerprint "
            f"on it and run: sparecycles hosts trust {host.name} --replace") from None
    except paramiko.PasswordRequiredException:  # a kind of AuthenticationException: ours, not the server's
        client.close()
        raise ClientKeyError(f"the key {key_file} is protected by a passphrase that is not in the OS keyring; "
                             f"store it with: sparecycles hosts remove {host.name}, then hosts add ... "
                             "--ask-secret") from None
    except paramiko.AuthenticationException as exc:
        client.close()
        keys = client_key_fingerprints(host)
        raise LoginRefused(
            f"{host.user}@{host.address} refused our key ({exc}); has the lender run "
            f"`sparecycles slave authorize` with this key? its fingerprint is "
            f"{' or '.join(keys) if keys else 'unknown (no public key found beside it)'}") from None
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        client.close()
        raise Unreachable(f"nothing answers SSH at {host.address}:{host.port} (connection refused)",
                          f"is sshd running on {host.address}, on port {host.port}? If it listens on another "
                          f"port, add the host again with --port PORT") from exc
    except paramiko.SSHException as exc:
        client.close()
        if key_file and (str(exc).startswith("Invalid key") or "could not deserialize" in str(exc).lower()):
            raise ClientKeyError(f"could not unlock the key {key_file}: wrong passphrase in the OS keyring, "
                                 "or not a private key") from None
        if "not found in known_hosts" in str(exc):
            raise HostKeyError(f"the host key of {host.name} is not trusted yet; "
                               f"run: sparecycles hosts trust {host.name}") from None
        raise
    transport = client.get_transport()
    transport.set_keepalive(KEEPALIVE_S)
    # Protocol lines are small and come in quick pairs (ack, then start):
    # with Nagle's algorithm on, the second waits ~40 ms for a delayed ACK.
    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


class _LocalFile:
    """The file a download goes to, whose failures say they happened on this side."""

    def __init__(self, path: Path):
        self._path = path

    def __enter__(self) -> "_LocalFile":
        try:
            self._fh = open(self._path, "wb")
        except OSError as exc:
            raise LocalWriteFailed(exc.errno, exc.strerror, exc.filename) from exc
        return self

    def write(self, data: bytes) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            raise LocalWriteFailed(exc.errno, exc.strerror, str(self._path)) from exc

    def __exit__(self, *exc_info) -> None:
        try:
            self._fh.close()
        except OSError as exc:
            if exc_info[0] is None:
                raise LocalWriteFailed(exc.errno, exc.strerror, str(self._path)) from exc


class _Connection:
    """An SSH connection to ``host`` (``self._client`` once open): files by SFTP, and closing it all."""

    def __init__(self, host: SSHTarget, known_hosts: Path):
        self.host = host
        self.label = host.name
        self._known_hosts = known_hosts
        self._client: paramiko.SSHClient | None = None
        self._channel: paramiko.Channel | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
        return self._sftp

    def put(self, local: Path, remote: str) -> None:
        sftp = self._sftp_client()
        size = local.stat().st_size
        with local.open("rb") as source, sftp.open(remote, "wb") as target:
            # Pipelined: writes do not wait for each block's ack (a plain write
            # loop is ~100x slower). Bigger requests than paramiko's 32 KiB halve
            # the per-request work; OpenSSH's sftp-server takes up to 256 KiB.
            target.set_pipelined(True)
            target.MAX_REQUEST_SIZE = _SFTP_REQUEST
            while chunk := source.read(_SFTP_REQUEST * 8):
                target.write(chunk)
        if sftp.stat(remote).st_size != size:
            raise OSError(f"upload of {local.name} to {self.label} is short")

    def fetch(self, remote: str, local: Path, *, max_bytes: int | None = None,
              timeout_s: float | None = None) -> None:
        """Download ``remote``: only a regular file (a device such as /dev/zero
        never ends), of at most ``max_bytes``, within ``timeout_s``.

        A server that stops answering counts against the time too: no read
        waits longer than the time left. Raises :class:`TransferRefused` (not a
        file we take), :class:`TransferTimedOut`, :class:`LocalWriteFailed`
        (this side's disk), or :class:`LinkClosed` when the transfer broke off."""
        sftp = self._sftp_client()
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None

        def within_bounds(done: int, _total: int) -> None:
            if max_bytes is not None and done > max_bytes:
                raise TransferRefused(f"{remote} on {self.label} grew past the cap of {max_bytes} bytes")
            if deadline is not None and time.monotonic() > deadline:
                raise TransferTimedOut(f"{remote} on {self.label} took longer than {timeout_s:g} s to fetch")

        # Without a timeout on the channel, a read from a server that stopped
        # answering waits for ever: the callback above only runs when data comes.
        sftp.get_channel().settimeout(timeout_s)
        try:
            info = sftp.stat(remote)
            if not stat.S_ISREG(info.st_mode or 0):
                raise TransferRefused(f"{remote} on {self.label} is not a regular file")
            if max_bytes is not None and (info.st_size or 0) > max_bytes:
                raise TransferRefused(f"{remote} on {self.label} is {info.st_size} bytes, "
                                      f"over the cap of {max_bytes}")
            with _LocalFile(local) as target:
                sftp.getfo(remote, target, callback=within_bounds)  # prefetches reads in parallel
        except BaseException as exc:
            # Requests may still be out on this SFTP session: the next transfer opens a new one.
            self._drop_sftp()
            if isinstance(exc, (TransferRefused, TransferTimedOut, LocalWriteFailed)):
                raise
            if isinstance(exc, TimeoutError):
                raise TransferTimedOut(f"{remote} on {self.label}: nothing arrived for {timeout_s:g} s "
                                       "(the transfer stalled)") from None
            if isinstance(exc, (OSError, paramiko.SSHException, EOFError)):
                raise LinkClosed(f"fetching {remote} from {self.label} failed: {exc}") from None
            raise
        sftp.get_channel().settimeout(None)

    def _drop_sftp(self) -> None:
        sftp, self._sftp = self._sftp, None
        try:
            if sftp is not None:
                sftp.close()
        except Exception:  # noqa: BLE001 - closing a broken session may fail in many ways
            pass

    def close(self) -> None:
        for closer in (self._sftp, self._channel, self._client):
            try:
                if closer is not None:
                    closer.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail in many ways
                pass


class SSHLink(_Connection):
    """One SSH connection to a slave: an exec channel running the agent, and SFTP."""

    results_in_place = False  # results come as archives, fetched and checked: a slave is not trusted


    def open(self) -> "SSHLink":
        if not self.host.agent_command:
            raise ValueError(f"{self.host.name} has no agent command to start")  # a caller's mistake, not the user's
        client = open_client(self.host, self._known_hosts)
        channel = client.get_transport().open_session()
        channel.exec_command(self.host.agent_command)
        self._client, self._channel = client, channel
        return self

    def fileno(self) -> int:
        return self._channel.fileno()

    def send(self, data: bytes) -> None:
        try:
            self._channel.sendall(data)
        except (OSError, paramiko.SSHException) as exc:
            raise LinkClosed(str(exc)) from None

    def recv(self) -> bytes:
        try:
            data = self._channel.recv(65536)
        except (OSError, paramiko.SSHException) as exc:
            raise LinkClosed(str(exc)) from None
        if not data:
            err = b""
            while self._channel.recv_stderr_ready():
                err += self._channel.recv_stderr(4096)
            raise LinkClosed("the agent ended" + (f": {err.decode(errors='replace').strip()}" if err else ""))
        return data

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
            except (paramiko.SSHException, EOFError) as exc:
                # sshd drops a subsystem's stderr, so the slave's reason cannot travel.
                raise OSError(f"{self.host.name} refused file transfer (SFTP: {exc}); if its lender restricted "
                              "this master's key with 'sparecycles slave authorize', that PC needs bubblewrap "
                              "(its logs/ssh-keys.log says why)") from None
        return self._sftp


@dataclass(frozen=True)
class CommandResult:
    code: int
    stdout: str
    stderr: str


class SSHShell(_Connection):
    """One SSH connection that runs shell scripts (one exec channel each) and moves
    files by SFTP: how a cluster's login node is driven, with no agent there."""


    def open(self) -> "SSHShell":
        try:
            self._client = open_client(self.host, self._known_hosts)
        except paramiko.AuthenticationException as exc:
            raise LoginRefused(f"{self.host.user}@{self.host.address} could not log in: {exc}") from None
        except (OSError, paramiko.SSHException) as exc:
            raise LinkClosed(f"cannot reach {self.host.name} at {self.host.address}:{self.host.port}: {exc}") from None
        return self

    def run(self, script: str, timeout: float = 120.0) -> CommandResult:
        """Run ``script`` with ``bash -s`` (fed on stdin, so no quoting meets the
        login shell, whatever it is); its exit code and output."""
        try:
            channel = self._client.get_transport().open_session(timeout=CONNECT_TIMEOUT_S)
            channel.settimeout(timeout)
            channel.exec_command("bash -s")
            channel.sendall(script.encode())
            channel.shutdown_write()
            # Outputs here are small (squeue lines, a few paths): reading one
            # stream to its end, then the other, cannot fill paramiko's window.
            out = channel.makefile("rb").read()
            err = channel.makefile_stderr("rb").read()
            code = channel.recv_exit_status()
            channel.close()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise LinkClosed(f"lost the connection to {self.label}: {exc}") from None
        return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"))


def ssh_connector(home: Home) -> Callable[[SSHTarget], Callable[[], SSHLink]]:
    known = home.known_hosts
    return lambda host: (lambda: SSHLink(host, known).open())


def shell_connector(home: Home) -> Callable[[SSHTarget], Callable[[], SSHShell]]:
    known = home.known_hosts
    return lambda host: (lambda: SSHShell(host, known).open())
