"""Bringing a finished task's results from a host to this master, checked.

Apart from the host driver because it is the one place where the master takes
files from a host it does not trust: the archive rides in the message or is
fetched by SFTP under a size cap and a time limit, must match the checksum
the host reported, and is unpacked (every member checked first) beside the
job's results folder, so moving it into place afterwards is a rename.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import tarfile
import tempfile
from pathlib import Path

from trayapp.master.bounds import HostMisbehaved, check_results_layout, download_cap
from trayapp.master.results import results_path
from trayapp.master.store import Claim
from trayapp.wire.archive import UnsafeArchiveError, sha256_of, unpack
from trayapp.wire.links import Link, TransferRefused

log = logging.getLogger(__name__)

TRANSFER_TRIES = 3  # uploads and downloads: a damaged copy is sent again, this many times at most


class ResultsFolderError(Exception):
    """This master cannot write a job's results (disk full, read-only, a file
    where a folder should be). Not the host's fault: its results wait there."""


def results_folder_error(claim: Claim, exc: OSError, host: str) -> ResultsFolderError:
    return ResultsFolderError(
        f"cannot write the results of job {claim.job_id} to {results_path(claim).parent}: "
        f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}. Free disk space, or make "
        f"sure that folder can be created and written; the results wait on {host} and are collected "
        "as soon as it works")


def fetch_results(link: Link, report: dict, claim: Claim, scratch: contextlib.ExitStack, *, host: str,
                  max_bytes: int, timeout_s: float) -> tuple[Path | None, str | None]:
    """Fetch, check and unpack a results archive; (folder, None) or (None, why it was refused).
    Raises :class:`ResultsFolderError` when this master cannot write there, and
    :class:`HostMisbehaved` when the host offers what no slave should."""
    remote = report.get("results_path")
    if not remote:
        return None, None
    if link.results_in_place:
        return Path(remote), None
    if not report.get("results_sha"):
        return None, f"{host} sent results without a checksum"
    try:
        tmp = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix=".incoming-",
                                                                     dir=_incoming_root(claim))))
    except OSError as exc:
        raise results_folder_error(claim, exc, host) from exc
    archive: Path | bytes | None = _inline_results(report, host)
    if archive is None:
        archive = tmp / "results.tar"
        for attempt in range(TRANSFER_TRIES):
            try:
                link.fetch(remote, archive, timeout_s=timeout_s,
                           max_bytes=download_cap(max_bytes, report.get("results_size")))
            except TransferRefused as exc:
                raise HostMisbehaved(f"its results: {exc}") from None
            if sha256_of(archive) == report.get("results_sha"):
                break
            log.warning("host %s: results of %s arrived damaged, try %d", host, report["token"], attempt + 1)
        else:
            return None, f"the results from {host} arrived damaged {TRANSFER_TRIES} times"
    try:
        unpack(archive, tmp / "unpacked")  # checks every member first
    except UnsafeArchiveError as exc:
        return None, f"refused the results archive from {host}: {exc}"
    except (tarfile.TarError, EOFError) as exc:
        return None, f"the results archive from {host} is damaged: {exc}"
    except OSError as exc:
        raise results_folder_error(claim, exc, host) from exc
    check_results_layout(tmp / "unpacked")
    return tmp / "unpacked", None


def _inline_results(report: dict, host: str) -> bytes | None:
    """The results archive carried in the message, if any and intact; else
    None, and the caller fetches the spooled copy by SFTP."""
    inline = report.get("results_inline")
    if not isinstance(inline, str):
        return None
    try:
        data = base64.b64decode(inline, validate=True)
    except ValueError:
        data = b""
    if hashlib.sha256(data).hexdigest() != report.get("results_sha"):
        log.warning("host %s: the results of %s in its message are damaged; fetching them", host, report["token"])
        return None
    return data


def _incoming_root(claim: Claim) -> Path:
    root = Path(claim.results_dir)
    root.mkdir(parents=True, exist_ok=True)
    return root
