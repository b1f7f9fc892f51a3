"""A pool on one machine: slave daemons behind a loopback sshd, registered
with a master home the way a user does (``hosts add``, then ``hosts trust
--fingerprint``), so SSH and SFTP are the real code path."""

from __future__ import annotations

from pathlib import Path

from support.commands import sparecycles
from support.daemons import SlaveDaemon
from support.sshd import Sshd


def register_slave(name: str, sshd: Sshd, slave: SlaveDaemon, master_env: dict | None = None, *,
                   trust: bool = True) -> None:
    """Tell the master home of ``master_env`` (else of this environment) about ``slave``."""
    sparecycles("hosts", "add", name, "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user,
                "--key", str(sshd.client_key), "--agent-command", slave.agent_command, env=master_env, check=True)
    if trust:
        sparecycles("hosts", "trust", name, "--fingerprint", sshd.host_key_fingerprint(), env=master_env,
                    check=True)


class Pool:
    """Slave daemons in homes under ``root``, each registered with one master
    home: ``master_env``'s SPARECYCLES_HOME, else this environment's."""

    def __init__(self, root: Path, sshd: Sshd | None, master_env: dict | None = None,
                 slave_env: dict | None = None):
        self.root = root
        self.sshd = sshd
        self.master_env = master_env
        self.slave_env = slave_env
        self.slaves: dict[str, SlaveDaemon] = {}

    def add_slave(self, name: str, slots: int = 2, config: str = "", trust: bool = True,
                  start: bool = True) -> SlaveDaemon:
        home = self.root / f"slave-{name}"
        home.mkdir(parents=True, exist_ok=True)
        if config:
            (home / "config.toml").write_text(config, encoding="utf-8")
        slave = SlaveDaemon(home, slots, env=self.slave_env)
        self.slaves[name] = slave  # before it starts, so close() stops it even if starting fails
        if start:
            slave.start()
        register_slave(name, self.sshd, slave, self.master_env, trust=trust)
        return slave

    def close(self) -> None:
        for slave in self.slaves.values():
            slave.stop()
