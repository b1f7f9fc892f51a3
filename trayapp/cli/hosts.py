"""``sparecycles hosts add|list|remove|trust|test|set``: the hosts a master sends work to.

The handlers parse and print; the work is :class:`trayapp.master.hosts.Hosts`'s,
which the window calls too. ``hosts add`` takes every registered kind's options
(:mod:`trayapp.master.kinds`); the chosen kind refuses those it does not take.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from trayapp.app import App
from trayapp.cli.output import table
from trayapp.errors import UserError
from trayapp.humantime import ago
from trayapp.master.kinds import KINDS, KindRegistry


def add_host_verbs(verbs: argparse._SubParsersAction, kinds: KindRegistry = KINDS) -> None:
    """The ``hosts`` actions, with ``hosts add`` taking each kind's options."""
    addable = kinds.addable()
    p = verbs.add_parser("add", help="add a host: a slave PC reached over SSH, or another kind",
                         description="kinds: " + "; ".join(f"{k.name}: {k.summary}" for k in addable))
    p.add_argument("name")
    p.add_argument("--kind", default=kinds.default,
                   help=f"what the host is: {', '.join(k.name for k in addable)} (default: %(default)s)")
    for option, takers in kinds.options():
        text = option.help + ("" if len(takers) == len(addable) else f" [{', '.join(takers)}]")
        if option.default is not None:
            text += f" (default: {option.default})"
        if option.secret:
            p.add_argument(option.flag, action="store_true", default=None, help=text)
        else:
            p.add_argument(option.flag, type=option.type, help=text)
    p = verbs.add_parser("list", help="hosts with their kind, state, and each kind's own columns")
    p.add_argument("--json", action="store_true")
    p = verbs.add_parser("remove", help="forget a host")
    p.add_argument("name")
    p = verbs.add_parser("trust", help="show a host's SSH key fingerprint and trust it")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true",
                   help="trust a new host's key without asking (never a changed one: that needs --fingerprint)")
    p.add_argument("--fingerprint", help="trust only if the key has this SHA256 fingerprint")
    p.add_argument("--replace", action="store_true", help="replace a key that changed")
    p = verbs.add_parser("test", help="check a host step by step: reachable, key trusted, login, slave")
    p.add_argument("name")
    p = verbs.add_parser("set", help="change a host's settings")
    p.add_argument("name")
    p.add_argument("--trusted-pickles", choices=("yes", "no"), required=True,
                   help="yes: sparecycles.map loads the pickled values this host sends back as they are, which "
                        "lets whoever runs it run code on this PC; no (the default): as plain data only")


def cmd_add(app: App, args) -> int:
    kind = KINDS.get(args.kind)
    values = {option.dest: getattr(args, option.dest) for option, _ in KINDS.options()}
    for option in kind.options:
        if option.secret and values.get(option.dest):
            values[option.dest] = getpass.getpass(f"passphrase or password for {args.name}: ")
    host = app.hosts().add(args.name, args.kind, values)
    print(f"added host {host.name} ({kind.where(host)})")
    if step := kind.next_step(host):
        print(step)
    return 0


def _text(value: str | None) -> str:
    return "-" if value is None else value


def cmd_list(app: App, args) -> int:
    views = app.hosts().rows()
    if args.json:
        print(json.dumps([v.to_json() for v in views], indent=2))
        return 0
    if not views:
        print("no hosts yet; add one with: sparecycles hosts add NAME --host ADDRESS")
        return 0
    columns = tuple(c for c in KINDS.columns() if any(c.key in v.fields for v in views))
    now = time.time()
    rows = [[v.name, v.kind, v.state, *map(_text, v.cells(columns)), ago(v.last_seen, now)] for v in views]
    print(table(["HOST", "KIND", "STATE", *(c.title.upper() for c in columns), "LAST SEEN"], rows))
    # Reasons are sentences: each on its own line, so the table stays narrow.
    for v in views:
        if v.reason:
            print(f"  {v.name} {v.state}: {v.reason}")
    return 0


def cmd_remove(app: App, args) -> int:
    running = app.hosts().remove(args.name)
    print(f"removed host {args.name}" + (f"; its {running} unfinished task(s) will run elsewhere" if running else ""))
    return 0


def cmd_trust(app: App, args) -> int:
    hosts = app.hosts()
    key = hosts.presented_key(args.name)
    if key.known == "trusted":
        print(f"{key.host} is already trusted ({key.key_type} {key.fingerprint})")
        return 0
    hosts.refuse_a_changed_key(key, replace=args.replace, unseen=args.yes and not args.fingerprint)
    print(f"{key.host} ({key.address}:{key.port}) presents {key.key_type} {key.fingerprint}")
    if not args.fingerprint and not args.yes:
        if not sys.stdin.isatty():
            raise UserError("not trusting a host key without confirmation",
                            "run this in a terminal, or pass --fingerprint SHA256:... (or --yes)")
        if input("trust this key? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not trusted")
            return 3
    hosts.trust(key, fingerprint=args.fingerprint, replace=args.replace)
    print(f"trusted; recorded in {app.home.known_hosts}")
    return 0


def cmd_test(app: App, args) -> int:
    for finding in app.hosts().test(args.name):
        print(f"{finding.label}: {finding.text}")
    print(f"{args.name}: ok")
    return 0


def cmd_set(app: App, args) -> int:
    trusted = args.trusted_pickles == "yes"
    app.hosts().trust_pickles(args.name, trusted)
    print(f"{args.name}: sparecycles.map loads its pickled values "
          + ("as they are (they can run code on this PC)" if trusted else "as plain data only"))
    return 0


HANDLERS = {"add": cmd_add, "list": cmd_list, "remove": cmd_remove, "trust": cmd_trust, "test": cmd_test,
            "set": cmd_set}
