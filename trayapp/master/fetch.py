"""Bringing a finished task's results from a host to this master, checked.

The one place where the master takes files from a host, whatever its kind:
the archive rides in the message or is fetched (SFTP) under a size cap and a
time limit, must match the checksum its packer computed, and is unpacked
(every member checked first) beside the job's results folder, laid out as the
task's results folder (:mod:`trayapp.master.incoming`), so moving it into
place afterwards is a rename.

What can go wrong falls in four classes, each with its own handling:

- the results are refused (over this master's cap, too slow to arrive,
  damaged, unsafe): the attempt fails with a sentence saying why, the same
  words from every kind of host (:func:`over_the_cap`, :func:`too_slow`);
- the transfer broke off (:class:`~trayapp.wire.links.LinkClosed`): the
  connection is made again and the results fetched again, they wait there;
- this master cannot write them (:class:`ResultsFolderError`): they wait on
  the host until it can (:mod:`trayapp.master.settling`);
- the host offers what no honest packer makes (:class:`HostMisbehaved`).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from trayapp.master.bounds import DOWNLOAD_SLACK_BYTES, HostMisbehaved, download_cap
from trayapp.master.incoming import NameClash, new_staging_folder, unpack_results
from trayapp.master.results import merge_logs, results_path
from trayapp.master.store import Claim
from trayapp.wire.archive import UnsafeArchiveError, sha256_of
from trayapp.wire.links import LocalWriteFailed, TransferRefused, TransferTimedOut

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


@dataclass(frozen=True)
class ResultsLimits:
    """What this master takes for one attempt's results, from any host."""

    max_bytes: int  # the max_results_mb setting; a packer's logs come on top (DOWNLOAD_SLACK_BYTES)
    timeout_s: float  # the fetch_timeout_s setting: the longest one download may take

    @property
    def cap(self) -> int:
        return self.max_bytes + DOWNLOAD_SLACK_BYTES


def over_the_cap(host: str, size: int, limits: ResultsLimits) -> str:
    return (f"the results on {host} are {size / 1e6:.0f} MB, more than this master takes "
            f"({limits.max_bytes / 1e6:.0f} MB, the max_results_mb setting, plus "
            f"{DOWNLOAD_SLACK_BYTES / 1e6:.0f} MB for the logs); write less per task, or raise max_results_mb")


def too_slow(host: str, limits: ResultsLimits, detail: object) -> str:
    return (f"the results on {host} did not arrive within {limits.timeout_s:g} s ({detail}); "
            "the fetch_timeout_s setting allows more time")


@dataclass(frozen=True)
class Offer:
    """A results archive a host offers for one attempt."""

    path: str | None  # where it is on the host; None: the host made none
    sha: str | None  # sha256 as its packer computed it; None only where no packer records one
    size: int | None = None  # as announced; None: not known before fetching
    inline: bytes | None = None  # carried in the message itself, already checked against ``sha``
    in_place: bool = False  # already a folder on this disk (the master's own cores): nothing to fetch or check
    refused: str | None = None  # why it is refused before any fetch (a slave's results without a checksum)


# A name the results hold that this file system cannot: too long, not in its encoding.
_NAMES_NOT_HELD = {errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL}


class Source(Protocol):
    """Where results are fetched from: a slave's link, a login node's shell."""

    def fetch(self, remote: str, local: Path, *, max_bytes: int | None = None,
              timeout_s: float | None = None) -> None: ...


def fetch_results(source: Source, offer: Offer, claim: Claim, scratch: contextlib.ExitStack, *, host: str,
                  limits: ResultsLimits) -> tuple[Path | None, str | None]:
    """Fetch, check and unpack a results archive; (folder, None) or (None, why it was refused).
    The folder holds the results laid out as the task's results folder, ready
    for :func:`trayapp.master.results.place`; ``scratch`` removes it unless it
    was placed. Raises :class:`ResultsFolderError` when this master cannot write there,
    :class:`HostMisbehaved` when the host offers what no packer makes, and
    ``LinkClosed`` when the transfer broke off (fetch again after reconnecting)."""
    if offer.refused or not offer.path:
        return None, offer.refused
    if offer.in_place:
        try:
            return merge_logs(Path(offer.path)), None
        except OSError as exc:
            raise results_folder_error(claim, exc, host) from exc
    if offer.size is not None and offer.size > limits.cap:
        return None, over_the_cap(host, offer.size, limits)
    archive: Path | bytes | None = offer.inline
    if archive is None:
        archive, problem = _download(source, offer, claim, scratch, host=host, limits=limits)
        if problem:
            return None, problem
    try:
        staging = new_staging_folder(Path(claim.results_dir))
    except OSError as exc:
        raise results_folder_error(claim, exc, host) from exc
    # Gone once placed (renamed away): then this finds nothing to remove.
    scratch.callback(shutil.rmtree, staging, ignore_errors=True)
    try:
        unpack_results(archive, staging, max_bytes=limits.cap)  # checks every member first
    except UnsafeArchiveError as exc:
        return None, f"refused the results archive from {host}: {exc}"
    except (tarfile.TarError, EOFError, ValueError) as exc:  # ValueError: a NUL in a member's name
        return None, f"the results archive from {host} is damaged: {exc}"
    except OSError as exc:
        if isinstance(exc, NameClash) or exc.errno in _NAMES_NOT_HELD:
            # Not this master's disk or rights: waiting would never help.
            return None, (f"the results from {host} hold a name this master's file system cannot take "
                          f"({exc}); have the task write shorter names, told apart by more than case")
        raise results_folder_error(claim, exc, host) from exc
    return staging, None


def _download(source: Source, offer: Offer, claim: Claim, scratch: contextlib.ExitStack, *, host: str,
              limits: ResultsLimits) -> tuple[Path | None, str | None]:
    """The archive fetched into a temporary folder beside the job's results (gone with ``scratch``)."""
    try:
        tmp = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix=".download-",
                                                                     dir=_incoming_root(claim))))
    except OSError as exc:
        raise results_folder_error(claim, exc, host) from exc
    archive = tmp / "results.tar"
    for attempt in range(TRANSFER_TRIES):
        try:
            source.fetch(offer.path, archive, timeout_s=limits.timeout_s,
                         max_bytes=download_cap(limits.max_bytes, offer.size))
        except TransferRefused as exc:
            raise HostMisbehaved(f"its results: {exc}") from None
        except TransferTimedOut as exc:
            return None, too_slow(host, limits, exc)
        except LocalWriteFailed as exc:
            raise results_folder_error(claim, exc, host) from exc
        if offer.sha is None or sha256_of(archive) == offer.sha:
            return archive, None
        log.warning("host %s: results of %s arrived damaged, try %d", host, claim.token, attempt + 1)
    return None, f"the results from {host} arrived damaged {TRANSFER_TRIES} times"


def _incoming_root(claim: Claim) -> Path:
    root = Path(claim.results_dir)
    root.mkdir(parents=True, exist_ok=True)
    return root


def offer_in_report(report: dict, *, in_place: bool, host: str) -> Offer:
    """The results a slave's ``finished`` report offers (checked by
    :func:`trayapp.master.bounds.check_finished` before)."""
    sha = report.get("results_sha")
    if report.get("results_path") and not in_place and not sha:
        return Offer(None, None, refused=f"{host} sent results without a checksum")
    return Offer(report.get("results_path"), sha, report.get("results_size"),
                 inline=_inline_results(report, sha, host), in_place=in_place)


def _inline_results(report: dict, sha: str | None, host: str) -> bytes | None:
    """The results archive carried in the message, if any and intact; else
    None, and the spooled copy is fetched instead."""
    inline = report.get("results_inline")
    if not isinstance(inline, str) or not sha:
        return None
    try:
        data = base64.b64decode(inline, validate=True)
    except ValueError:
        data = b""
    if hashlib.sha256(data).hexdigest() != sha:
        log.warning("host %s: the results of %s in its message are damaged; fetching them", host, report["token"])
        return None
    return data
