"""The ``ssh`` host kind: a desktop PC running the slave daemon, reached over
SSH (``sparecycles agent`` on an exec channel, files by SFTP).

paramiko (through :mod:`trayapp.wire.ssh`) is imported only when a host is
driven, checked, trusted or given a secret, so commands that only add or look
up hosts (``status``, ``hosts add``, ``hosts list``) start without it, whatever
their kinds (tests/test_light_imports.py checks).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Generator, Iterator, TypeVar

from trayapp.errors import UserError
from trayapp.master.driver import HostDriver
from trayapp.master.hostkeys import presented_key
from trayapp.master.kinds.kind import AddOption, Finding, HostKind, KindContext, QueueFacts
from trayapp.master.kinds.login import DEFAULT_AGENT_COMMAND, SSHLogin, login_options, login_record
from trayapp.master.kinds.slavehost import (SLAVE_COLUMNS, describe_slave, exchange_hello, hello_text,
                                            slave_driver_settings)
from trayapp.master.store import HostRecord, Store

T = TypeVar("T")


class SSHKind(HostKind):
    name = "ssh"
    summary = "a desktop PC running the slave daemon, reached over SSH"
    options = (
        *login_options("address of the PC"),
        AddOption("--agent-command", "command that starts the agent there", default=DEFAULT_AGENT_COMMAND),
        AddOption("--slots", "at most this many of our tasks there at once", type=int),
    )
    columns = SLAVE_COLUMNS

    def record(self, values: dict) -> dict:
        if values["slots"] is not None and values["slots"] < 1:
            raise UserError(f"--slots must be at least 1, not {values['slots']}")
        return {"options": {**login_record(values), "agent_command": values["agent_command"]},
                "slots": values["slots"]}

    def add(self, store: Store, name: str, values: dict) -> HostRecord:
        host = super().add(store, name, values)
        if values.get("ask_secret"):
            from trayapp.wire.ssh import store_secret

            try:
                store_secret(SSHLogin.of(host), values["ask_secret"])
            except BaseException:
                store.remove_host(host.name)  # a host that cannot log in is not half added
                raise
        return host

    def where(self, host: HostRecord) -> str:
        return SSHLogin.of(host).where()

    def next_step(self, host: HostRecord) -> str:
        return f"next: check its key fingerprint and trust it: sparecycles hosts trust {host.name}"

    def key_endpoint(self, host: HostRecord) -> tuple[str, int]:
        login = SSHLogin.of(host)
        return login.address, login.port

    def build_driver(self, host: HostRecord, context: KindContext) -> HostDriver:
        from trayapp.wire.ssh import ssh_connector

        # Remote tasks go on when the dispatcher stops; their results wait in the slave's spool.
        return HostDriver(host.name, context.open_store, ssh_connector(context.home)(self.login(host)),
                          slave_driver_settings(context), cap=host.slots, on_stop_stop_tasks=False)

    @staticmethod
    def login(host: HostRecord) -> SSHLogin:
        """Its login, with the agent command it was added with (the default if a row lacks one)."""
        login = SSHLogin.of(host)
        return replace(login, agent_command=login.agent_command or DEFAULT_AGENT_COMMAND)

    def describe(self, host: HostRecord, facts: QueueFacts) -> dict:
        return {**SSHLogin.of(host).fields(), **describe_slave(host, facts)}

    def test(self, host: HostRecord, context: KindContext) -> Iterator[Finding]:
        from trayapp.wire.ssh import SSHLink

        login = self.login(host)
        link = yield from log_in(login, context, lambda: SSHLink(login, context.home.known_hosts).open())
        try:
            yield Finding("login", f"{login.user}@{login.address}, started '{login.agent_command}'")
            try:
                hello = exchange_hello(link, context.identity)
            except UserError as exc:
                raise UserError(f"slave: {exc.problem}", exc.fix) from None
            yield Finding("slave", hello_text(hello))
        finally:
            link.close()
        refuse_a_slave_that_cannot_lend(host, hello)


def refuse_a_slave_that_cannot_lend(host: HostRecord, hello: dict) -> None:
    """``hosts test`` fails (exit 3) for a slave that answers but can run no task
    (no sandbox, a full disk...): the lender has to act there. Paused, busy or
    in use is fine: it lends again by itself."""
    if hello.get("state") == "unavailable":
        raise UserError(f"slave: {host.name} answers but cannot run tasks: {hello.get('reason') or 'no reason given'}",
                        "the lender fixes this on that PC (the reason says how); "
                        f"then check again with: sparecycles hosts test {host.name}")


def log_in(host: SSHLogin, context: KindContext, connect: Callable[[], T]) -> Generator[Finding, None, T]:
    """The first steps of ``hosts test`` for any host reached over SSH: it answers,
    its key is trusted, we can log in; returns the open connection."""
    import paramiko

    from trayapp.wire.links import LinkClosed
    from trayapp.wire.ssh import ClientKeyError, HostKeyError, LoginRefused, Unreachable

    key = presented_key(context.home, host.name, host.address, host.port)
    yield Finding("reachable", f"{host.address}:{host.port} answers SSH")
    if key.known != "trusted":
        raise UserError(f"host key: {host.name} presents {key.key_type} {key.fingerprint}, which is "
                        + ("NOT the key trusted before" if key.known == "changed" else "not trusted yet"),
                        f"compare it with the PC's own, then: sparecycles hosts trust {host.name}"
                        + (" --replace" if key.known == "changed" else ""))
    yield Finding("host key", f"{key.key_type} {key.fingerprint}, trusted")
    try:
        return connect()
    except HostKeyError as exc:
        raise UserError(f"host key: {exc}") from None
    except ClientKeyError as exc:
        raise UserError(f"login: {exc}") from None
    except LoginRefused as exc:
        raise UserError(f"login: {exc}",
                        f"on the lender's PC: sparecycles slave authorize YOUR_KEY.pub --name {context.identity[1]}; "
                        "here: check --user and --key (or --ask-secret for a password)") from None
    except paramiko.AuthenticationException as exc:
        raise UserError(f"login: {host.user}@{host.address} could not log in: {exc}",
                        "check --user and --key, or store the password with 'hosts add ... --ask-secret'") from None
    except Unreachable as exc:
        raise UserError(f"login: {exc.problem}", exc.fix) from None
    except (OSError, paramiko.SSHException, LinkClosed) as exc:
        raise UserError(f"login: could not log in to {host.name}: {exc}") from None
