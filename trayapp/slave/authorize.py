"""Masters' keys in the lender's ``authorized_keys``, restricted to the agent.

``sparecycles slave authorize KEY.pub --name MASTER`` writes one line per master::

    restrict,command="<this sparecycles> agent --forced MASTER" ssh-ed25519 AAAA... sparecycles:MASTER

``restrict`` turns off the pty, port, agent and X11 forwarding and ``~/.ssh/rc``;
the forced command replaces whatever the master asks to run with this slave's
agent (or a confined SFTP server, see :mod:`trayapp.slave.forced`), started by
the same executable with the same ``SPARECYCLES_HOME`` as the command that wrote
the line. The trailing comment is the tag ``--list`` and ``--revoke`` go by; every
other line of the file is kept byte for byte, and the file is replaced atomically.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shlex
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trayapp.errors import UserError

TAG = "sparecycles:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})


def default_keys_file() -> Path:
    return Path.home() / ".ssh" / "authorized_keys"


@dataclass(frozen=True)
class PublicKey:
    kind: str
    blob: str  # base64, as in the .pub file

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class AuthorizedMaster:
    name: str
    key: PublicKey
    command: str
    line_number: int


def check_master_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UserError(f"{name!r} cannot name a master here",
                        "use letters, digits and . _ @ - (up to 64, no spaces), e.g. --name alice-pc")
    return name


def read_public_key(path: Path) -> PublicKey:
    """The one public key in ``path`` (an ``ssh-keygen`` ``.pub`` file), checked."""
    fix = ("give the public key file as ssh-keygen wrote it (e.g. id_ed25519.pub: one line "
           "'ssh-ed25519 AAAA... comment'); on the master: ssh-keygen -t ed25519, then send the .pub file")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UserError(f"no key file {path}", fix) from None
    except OSError as exc:
        raise UserError(f"cannot read the key file {path}: {exc.strerror or exc}", fix) from None
    if "PRIVATE KEY" in text or text.startswith("PuTTY-User-Key-File"):
        raise UserError(f"{path} is a PRIVATE key: it must never leave the master",
                        "give the .pub file beside it (e.g. id_ed25519.pub), and keep the private key where it is")
    if "BEGIN SSH2 PUBLIC KEY" in text:
        raise UserError(f"{path} is a public key in the RFC 4716 (PuTTY/SSH2) format",
                        f"convert it to one OpenSSH line first: ssh-keygen -i -f {path} > master.pub")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise UserError(f"{path} holds {len(lines)} keys, not one" if lines else f"{path} is empty", fix)
    words = lines[0].split()
    if len(words) < 2 or words[0] not in KEY_TYPES:
        raise UserError(f"{path} is not an OpenSSH public key (it should start with one of "
                        f"{', '.join(sorted(KEY_TYPES))})", fix)
    key = PublicKey(words[0], words[1])
    if not _blob_names_its_type(key):
        raise UserError(f"the key in {path} is damaged (its data is not a {key.kind} key)", fix)
    return key


def _blob_names_its_type(key: PublicKey) -> bool:
    """An SSH public key blob starts with its own type as a length-prefixed string."""
    try:
        raw = base64.b64decode(key.blob, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) < 4:
        return False
    (length,) = struct.unpack(">I", raw[:4])
    return raw[4:4 + length] == key.kind.encode() and len(raw) > 4 + length


def forced_command(launch: list[str], master: str, environ: dict[str, str]) -> str:
    """The shell command sshd runs for ``master``'s key, whatever the master asked for."""
    words = [*launch, "agent", "--forced", master]
    command = shlex.join(words)
    if environ.get("SPARECYCLES_HOME"):
        home = str(Path(environ["SPARECYCLES_HOME"]).expanduser().absolute())
        command = f"env SPARECYCLES_HOME={shlex.quote(home)} {command}"
    if "\n" in command or "\r" in command:
        raise UserError("the path of SpareCycles or of SPARECYCLES_HOME contains a line break",
                        "install SpareCycles, and choose SPARECYCLES_HOME, under paths without line breaks")
    return command


def key_line(key: PublicKey, master: str, command: str) -> str:
    # Inside command="...", sshd turns \" back into " and keeps every other byte.
    quoted = command.replace('"', '\\"')
    return f'restrict,command="{quoted}" {key.kind} {key.blob} {TAG}{master}\n'


def _parse_line(line: str, number: int) -> AuthorizedMaster | None:
    """Our own line (tagged), or None for any other line."""
    match = re.match(r'^restrict,command="((?:[^"\\]|\\.)*)" (\S+) (\S+) ' + re.escape(TAG) + r'(\S+)\s*$', line)
    if not match:
        return None
    command, kind, blob, name = match.groups()
    return AuthorizedMaster(name, PublicKey(kind, blob), command.replace('\\"', '"'), number)


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}",
                        "run this as the user whose PC it is, or name another file with --file") from None
    return data.decode("utf-8", errors="surrogateescape").splitlines(keepends=True)


def authorized_masters(path: Path) -> list[AuthorizedMaster]:
    return [m for i, line in enumerate(_read_lines(path), 1) if (m := _parse_line(line, i)) is not None]


def authorize(path: Path, key: PublicKey, master: str, command: str, replace: bool = False) -> AuthorizedMaster:
    """Add (or with ``replace``, swap) ``master``'s line; every other line stays as it was."""
    check_master_name(master)
    lines = _read_lines(path)
    kept = []
    for number, line in enumerate(lines, 1):
        ours = _parse_line(line, number)
        if ours is not None and ours.name == master:
            if not replace:
                raise UserError(f"a master named {master!r} is already authorized in {path} "
                                f"(key {ours.key.fingerprint})",
                                "add --replace to give that name this key, or choose another --name")
            continue
        if key.blob in line.split():  # the same key, whatever options its line has
            if ours is not None:
                raise UserError(f"this key is already authorized as master {ours.name!r}",
                                f"revoke it first (sparecycles slave authorize --revoke {ours.name}), or keep it")
            raise UserError(f"this key already has line {number} of {path}, without SpareCycles' restrictions: "
                            "sshd would use that line and give the master a full shell",
                            f"delete line {number} of {path}, then run this again")
        kept.append(line)
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    kept.append(key_line(key, master, command))
    _write_atomically(path, kept)
    return AuthorizedMaster(master, key, command, len(kept))


def revoke(path: Path, master: str) -> AuthorizedMaster:
    lines = _read_lines(path)
    found = [m for i, line in enumerate(lines, 1) if (m := _parse_line(line, i)) is not None and m.name == master]
    if not found:
        names = ", ".join(m.name for m in authorized_masters(path)) or "none"
        raise UserError(f"no master named {master!r} is authorized in {path} (authorized: {names})",
                        "see them with: sparecycles slave authorize --list")
    gone = {m.line_number for m in found}
    _write_atomically(path, [line for i, line in enumerate(lines, 1) if i not in gone])
    return found[0]


def _write_atomically(path: Path, lines: list[str]) -> None:
    """Write next to the real file (a symlinked authorized_keys keeps its link),
    mode 0600, then rename over it: sshd never sees a half-written file."""
    target = path.resolve() if path.is_symlink() else path
    folder = target.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)  # whatever the umask
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=folder)
    except OSError as exc:
        raise UserError(f"cannot write into {folder}: {exc.strerror or exc}",
                        "run this as the user whose PC it is, or name another file with --file") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write("".join(lines).encode("utf-8", errors="surrogateescape"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
