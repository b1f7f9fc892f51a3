"""``sparecycles slave authorize``: masters' SSH keys, restricted to the agent."""

from __future__ import annotations

import getpass
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from trayapp.app import App
from trayapp.cli.output import EXIT_OK, table
from trayapp.errors import UserError
from trayapp.install.selfcommand import sparecycles_command
from trayapp.slave import authorize as keys


def cmd_authorize(app: App, args) -> int:
    path = Path(args.file).expanduser() if args.file else keys.default_keys_file()
    chosen = [what for what, given in (("PUBKEY_FILE", args.pubkey), ("--list", args.list),
                                       ("--revoke", args.revoke)) if given]
    if len(chosen) != 1:
        raise UserError("slave authorize needs exactly one of: PUBKEY_FILE --name MASTER, --list, --revoke MASTER"
                        + (f" (got {' and '.join(chosen)})" if chosen else ""),
                        "e.g. sparecycles slave authorize alice.pub --name alice")
    if args.list:
        return _list(path, args.json)
    if args.revoke:
        gone = keys.revoke(path, args.revoke)
        print(f"revoked master {gone.name} ({gone.key.kind} {gone.key.fingerprint}) from {path}")
        return EXIT_OK
    if not args.name:
        raise UserError("say which master this key belongs to", "add --name, e.g. --name alice")
    keys.check_master_name(args.name)
    key = keys.read_public_key(Path(args.pubkey).expanduser())
    command = keys.forced_command(sparecycles_command(), args.name, dict(os.environ))
    added = keys.authorize(path, key, args.name, command, replace=args.replace)
    print(f"authorized master {added.name} ({key.kind} {key.fingerprint}) in {path}")
    print(f"its key runs only: {command}")
    if shutil.which("bwrap") is None:
        print("sparecycles: warning: bubblewrap (bwrap) is not installed, so this key's file transfers are "
              "refused and its master cannot send work; install the package 'bubblewrap'", file=sys.stderr)
    print(f"on the master: sparecycles hosts add {platform.node() or 'THIS-PC'} --host {platform.node() or 'ADDRESS'} "
          f"--user {getpass.getuser()} --key PRIVATE_KEY (the file {Path(args.pubkey).name} was made from)")
    return EXIT_OK


def _list(path: Path, as_json: bool) -> int:
    masters = keys.authorized_masters(path)
    if as_json:
        print(json.dumps([{"name": m.name, "type": m.key.kind, "fingerprint": m.key.fingerprint,
                           "command": m.command, "line": m.line_number} for m in masters], indent=2))
    elif not masters:
        print(f"no masters authorized in {path}; add one with: sparecycles slave authorize KEY.pub --name MASTER")
    else:
        print(table(["MASTER", "KEY", "LINE"],
                    [[m.name, f"{m.key.kind} {m.key.fingerprint}", str(m.line_number)] for m in masters]))
    return EXIT_OK
