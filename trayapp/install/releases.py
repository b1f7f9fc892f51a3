"""When a pinned release was current: the date an older pin is resolved as of.

``brian2 == 2.8.0`` alone resolves with today's numpy, which brian2 2.8.0
never met: it fails at import. Its authors tested it against what was
published while it was the newest release. So when a build with pins does
not import, it is resolved again as of the day the pinned release was
superseded (the first upload of the next release of that project; for the
newest release, a day after its own last upload), with uv's
``--exclude-newer``. With several pins, the earliest such date.

Upload times come from the index's JSON simple API (PEP 691, with PEP 700's
``upload-time``), read by the slave itself: plain data, no code. An index
without upload times (or a wheel folder) gives no date, and the build's
import error stands.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from trayapp.install.requirement import exact_pin, read_requirement

PUBLIC_INDEX = "https://pypi.org/simple/"
FETCH_TIMEOUT_S = 30.0
_ACCEPT = "application/vnd.pypi.simple.v1+json"


def upload_times(index_url: str, project: str) -> dict[Version, tuple[datetime, datetime]]:
    """``{version: (first upload, last upload)}`` of ``project`` on the index (empty if it gives no times)."""
    import urllib.request  # here: http, ssl and email cost every CLI verb's start-up, and only this fetch needs them

    url = index_url.rstrip("/") + "/" + canonicalize_name(project) + "/"
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - the lab's index
        page = json.loads(response.read(20 << 20))
    times: dict[Version, tuple[datetime, datetime]] = {}
    for entry in page.get("files", []) if isinstance(page, dict) else []:
        try:
            when = _parse_time(entry["upload-time"])
            version = _version_of(str(entry["filename"]))
        except (KeyError, TypeError, ValueError, InvalidVersion):
            continue
        first, last = times.get(version, (when, when))
        times[version] = (min(first, when), max(last, when))
    return times


def superseded(times: dict[Version, tuple[datetime, datetime]], pinned: Version) -> datetime | None:
    """When ``pinned`` stopped being the newest release (a day after its own last upload if it still is)."""
    if pinned not in times:
        return None
    own_last = times[pinned][1]
    later = [first for version, (first, _last) in times.items() if version > pinned and not version.is_prerelease]
    # Never before the pinned release's own last file (a wheel uploaded after the next release).
    return max(min(later), own_last + timedelta(minutes=1)) if later else own_last + timedelta(days=1)


def resolve_as_of(requirements: tuple[str, ...], index_url: str = "") -> tuple[datetime, str] | None:
    """The date to resolve ``requirements`` as of, and which pin it comes from
    (``"brian2 == 2.8.0"``); None if no requirement pins a release with a known date."""
    found: list[tuple[datetime, str]] = []
    for text in requirements:
        requirement = read_requirement(text)
        pinned = exact_pin(requirement)
        if pinned is None:
            continue
        try:
            when = superseded(upload_times(index_url or PUBLIC_INDEX, requirement.name), Version(pinned))
        except (OSError, ValueError, InvalidVersion):
            continue
        if when is not None:
            found.append((when, f"{requirement.name} == {pinned}"))
    return min(found) if found else None


def _version_of(filename: str) -> Version:
    if filename.endswith(".whl"):
        return parse_wheel_filename(filename)[1]
    return parse_sdist_filename(filename)[1]


def _parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
