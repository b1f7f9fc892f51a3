"""What a master accepts from a slave it cannot trust.

A slave's messages are data from another PC: its owner (or a bug) may send
anything the protocol's syntax allows. These checks run before the driver acts
on a message, so nothing is moved, recorded or downloaded on the strength of a
malformed one. A slave that fails them broke the protocol on purpose or by a
bug; either way the driver quarantines it (see :mod:`trayapp.master.quarantine`).
"""

from __future__ import annotations

import re

from trayapp.wire.protocol import ProtocolError

_SHA256 = re.compile(r"[0-9a-f]{64}")
# A results archive is a few results plus two logs; a slave's cap is per task.
DOWNLOAD_SLACK_BYTES = 64 << 20


class HostMisbehaved(ProtocolError):
    """A message no honest slave sends: the host is quarantined, its tasks run elsewhere."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_finished(report: dict) -> None:
    """Refuse a ``finished`` report whose fields have the wrong types."""
    problems = []
    if not isinstance(report.get("token"), str):
        problems.append("token is not text")
    if not isinstance(report.get("outcome"), str):
        problems.append("outcome is not text")
    code = report.get("exit_code")
    if code is not None and not (_is_int(code) and -(1 << 31) <= code < (1 << 31)):
        problems.append(f"exit_code {str(code)[:40]!r} is not a number")
    for name in ("results_path", "message", "results_inline"):
        if report.get(name) is not None and not isinstance(report[name], str):
            problems.append(f"{name} is not text")
    sha = report.get("results_sha")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        problems.append("results_sha is not a sha256")
    size = report.get("results_size")
    if size is not None and not (_is_int(size) and size >= 0):
        problems.append("results_size is not a size")
    if problems:
        raise HostMisbehaved(f"a malformed 'finished' report ({'; '.join(problems)})")


def grant_within_slots(n: int, slots: object, ours_in_flight: int, asked: int) -> int:
    """How much of a grant of ``n`` to use: no more than we asked for, nor more
    than the slots the host says it has, minus what we already run there."""
    usable = min(n, asked)
    if _is_int(slots) and slots >= 0:
        usable = min(usable, max(0, slots - ours_in_flight))
    return usable


def download_cap(max_results_bytes: int, announced: object) -> int:
    """The most bytes to fetch for one results archive: the host's own figure
    when it is smaller (it cannot grow in flight), never more than our cap."""
    cap = max_results_bytes + DOWNLOAD_SLACK_BYTES
    if _is_int(announced) and announced >= 0:
        return min(cap, announced)
    return cap
