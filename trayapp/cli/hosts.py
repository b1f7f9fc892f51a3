"""``sparecycles hosts add|list|remove|trust``: the slaves a master sends work to."""

from __future__ import annotations

import getpass
import json
import sys
import time

from trayapp.app import App
from trayapp.cli.output import table
from trayapp.errors import UserError
from trayapp.master.store import HostRecord


def cmd_add(app: App, args) -> int:
    if args.slots is not None and args.slots < 1:
        raise UserError(f"--slots must be at least 1, not {args.slots}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, not {args.port}")
    if args.name == "local":
        raise UserError("'local' is the name of this PC's own cores", "choose another name")
    host = app.store.add_host(args.name, args.host, port=args.port, user=args.user or getpass.getuser(),
                              key_path=args.key, agent_command=args.agent_command, slots=args.slots)
    if args.ask_secret:
        from trayapp.wire.ssh import store_secret

        try:
            store_secret(host, getpass.getpass(f"passphrase or password for {host.user}@{host.address}: "))
        except BaseException:
            app.store.remove_host(host.name)  # a host that cannot log in is not half added
            raise
    print(f"added host {host.name} ({host.user}@{host.address}:{host.port})")
    print(f"next: check its key fingerprint and trust it: sparecycles hosts trust {host.name}")
    return 0


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = max(0, time.time() - ts)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _host_json(app: App, host: HostRecord, master_id: str) -> dict:
    info = host.info
    usage = info.get("usage") or {}
    total = sum(usage.values())
    return {"name": host.name, "address": host.address, "port": host.port, "user": host.user,
            "state": host.state, "reason": host.reason, "slots": info.get("slots"),
            "running": app.store.running_on(host.name),
            "running_all_masters": info.get("running"), "last_seen": host.last_seen,
            "python": info.get("python"), "brian": info.get("brian"),
            "share": (usage.get(master_id, 0.0) / total) if total else None}


def cmd_list(app: App, args) -> int:
    master_id, _ = app.identity()
    hosts = [_host_json(app, h, master_id) for h in app.store.hosts()]
    if args.json:
        print(json.dumps(hosts, indent=2))
        return 0
    if not hosts:
        print("no hosts yet; add one with: sparecycles hosts add NAME --host ADDRESS")
        return 0

    rows = [[h["name"], h["state"] + (f" ({h['reason']})" if h["reason"] else ""),
             "-" if h["slots"] is None else str(h["slots"]), str(h["running"]),
             "-" if h["share"] is None else f"{h['share']:.0%}", _ago(h["last_seen"]),
             h["python"] or "-", h["brian"] or "-"] for h in hosts]
    print(table(["HOST", "STATE", "SLOTS", "RUNNING", "SHARE", "LAST SEEN", "PYTHON", "BRIAN"], rows))
    return 0


def cmd_remove(app: App, args) -> int:
    running = app.store.running_on(args.name)
    app.store.remove_host(args.name)
    from trayapp.status import AttemptOutcome

    for attempt in app.store.open_attempts(args.name):
        app.store.finish_attempt(attempt.attempt_id, AttemptOutcome.HOST_LOST,
                                 message=f"host {args.name} was removed; the task will run elsewhere")
    print(f"removed host {args.name}" + (f"; its {running} unfinished task(s) will run elsewhere" if running else ""))
    return 0


def presented_key(app: App, name: str):
    """(host, the key it presents now, the keys of it this app already trusts by
    type): what `hosts trust` and the window's trust dialog decide on."""
    import paramiko

    from trayapp.wire.ssh import fetch_host_key, host_key_name, known_hosts_file

    host = app.store.host(name)
    if host.name == "local":
        raise UserError("'local' is this PC; it needs no SSH key")
    try:
        key = fetch_host_key(host.address, host.port)
    except (OSError, paramiko.SSHException) as exc:
        raise UserError(f"could not reach {host.name} at {host.address}:{host.port}: {exc}",
                        "check that the PC is on and runs an SSH server") from None
    known = paramiko.HostKeys()
    path = known_hosts_file(app.home)
    if path.exists():
        known.load(str(path))
    return host, key, known.lookup(host_key_name(host.address, host.port)) or {}


def cmd_trust(app: App, args) -> int:
    from trayapp.wire.ssh import fingerprint, known_hosts_file, trust_host_key

    host, key, existing = presented_key(app, args.name)
    shown = fingerprint(key)
    path = known_hosts_file(app.home)
    if existing:
        if existing.get(key.get_name()) == key:
            print(f"{host.name} is already trusted ({key.get_name()} {shown})")
            return 0
        # A key we trust exists, and this one is not it (of the same type or
        # not): the PC was reinstalled, or someone is in between.
        if not args.replace:
            raise UserError(f"the host key of {host.name} has CHANGED: it now presents {key.get_name()} {shown}",
                            f"if the PC was reinstalled, compare the fingerprint on it, then run "
                            f"'sparecycles hosts trust {host.name} --replace'")
        if args.yes and not args.fingerprint:
            raise UserError(f"--yes does not replace the CHANGED host key of {host.name} ({shown})",
                            "compare the fingerprint on the PC itself ('ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub'), "
                            f"then run 'sparecycles hosts trust {host.name} --replace --fingerprint SHA256:...'")
    print(f"{host.name} ({host.address}:{host.port}) presents {key.get_name()} {shown}")
    if args.fingerprint:
        if args.fingerprint.strip() != shown:
            raise UserError(f"the fingerprint {args.fingerprint} does not match the host's {shown}",
                            "check you typed it from the right PC ('ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub')")
    elif not args.yes:
        if not sys.stdin.isatty():
            raise UserError("not trusting a host key without confirmation",
                            "run this in a terminal, or pass --fingerprint SHA256:... (or --yes)")
        if input("trust this key? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not trusted")
            return 3
    trust_host_key(app.home, host.address, host.port, key)
    print(f"trusted; recorded in {path}")
    return 0


HANDLERS = {"add": cmd_add, "list": cmd_list, "remove": cmd_remove, "trust": cmd_trust}
