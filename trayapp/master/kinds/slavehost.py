"""What the kinds that reach a slave engine over the protocol share (this PC's
own cores, a desktop over SSH): their row in the hosts table, and the hello
``hosts test`` exchanges with the engine."""

from __future__ import annotations

import select
import time

from trayapp.errors import UserError
from trayapp.master.driversettings import DriverSettings
from trayapp.master.kinds.kind import Column, KindContext, QueueFacts
from trayapp.master.store import HostRecord
from trayapp.wire.links import Link, LinkClosed
from trayapp.wire.protocol import LineBuffer, ProtocolError, decode, encode

HELLO_TIMEOUT_S = 30.0

SLAVE_COLUMNS = (
    Column("slots", "Slots"),
    Column("running", "Running"),
    Column("share", "Share", lambda share: f"{share:.0%}"),
    Column("python", "Python"),
    Column("brian", "Brian"),
)


def slave_driver_settings(context: KindContext) -> DriverSettings:
    """How the master drives a slave engine over the protocol, as the settings say (or a test tuned it)."""
    return context.settings(DriverSettings, lambda: DriverSettings.from_config(context.config, context.identity))


def describe_slave(host: HostRecord, facts: QueueFacts) -> dict:
    """A slave's row: what its engine last reported (slots it offers, versions,
    its recent use by master) and how many of our tasks the queue has there."""
    info = host.info
    return {"slots": info.get("slots"), "cap": host.slots, "running": facts.running,
            "running_all_masters": info.get("running"), "python": info.get("python"), "brian": info.get("brian"),
            "share": _our_share(info, facts.master_id)}


def _our_share(info: dict, master_id: str | None) -> float | None:
    """Our share of the host's recent use: the slave says it (it tells no master
    about the others); a slave of an older release listed every master's use."""
    if not master_id:
        return None
    if "share" in info:
        share = info["share"]
        return float(share) if isinstance(share, (int, float)) and not isinstance(share, bool) else None
    usage = info.get("usage") or {}
    total = sum(v for v in usage.values() if isinstance(v, (int, float)))
    return usage.get(master_id, 0.0) / total if total else None


def exchange_hello(link: Link, identity: tuple[str, str], timeout: float = HELLO_TIMEOUT_S) -> dict:
    """Say hello to a slave engine as this master and return its hello; then
    say goodbye, leaving its tasks as they are."""
    master_id, master_name = identity
    link.send(encode("hello", master=master_id, name=master_name))
    inbox = LineBuffer()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([link], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                continue
            for message in map(decode, inbox.feed(link.recv())):
                if message["type"] == "hello":
                    link.send(encode("bye", stop_tasks=False))
                    return message
                if message["type"] == "error":  # e.g. no daemon runs there; the reason says what to do
                    raise UserError(f"the slave answered: {message['reason']}")
    except LinkClosed as exc:
        raise UserError(f"the connection ended before the slave said hello: {exc}") from None
    except ProtocolError as exc:
        raise UserError(f"the other end does not speak SpareCycles' protocol: {exc}",
                        "check the host's agent command") from None
    raise UserError(f"no hello from the slave within {timeout:.0f} s", "check the agent command and the slave's log")


def hello_text(hello: dict) -> str:
    """The hello in a line: state, slots, versions."""
    state = hello.get("state", "?") + (f" ({hello['reason']})" if hello.get("reason") else "")
    return (f"{state}, {hello.get('slots')} slot(s), Python {hello.get('python') or '?'}, "
            f"Brian {hello.get('brian') or 'not installed'}, SpareCycles {hello.get('version') or '?'}")
