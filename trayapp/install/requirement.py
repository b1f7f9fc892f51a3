"""One requirement line of a job (``brian2 >= 2.5``), read the same way at
submit time and on the slave.

A job names packages and versions only. Where packages come from is the
lab's setting (``package_index``, ``wheel_folder``): a line that points
somewhere itself (``name @ https://...``, ``name @ file:///...``,
``git+https://...``, a bare path such as ``./mypkg``) is refused with the
fix. Besides keeping the lab's choice of index, this closes a hole: pip and
uv build such a package from whatever it points at, running its ``setup.py``,
and a path names the lender's own disk.
"""

from __future__ import annotations

import re

from trayapp.errors import UserError

REFERENCE_FIX = ("publish the package to the lab's package_index or wheel_folder and name it with a version "
                 '(e.g. "mypkg == 1.0"), or ship its code in the job folder as a module')
_FIX = 'write one package per line with an optional version, e.g. "brian2 == 2.8.0" or "matplotlib"'
# What pip and uv would take for a location, not a package name.
_LOCATION = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[a-z]+\+|file:|\.{1,2}(?:/|\\|$)|/|~|\\|[a-z]:[\\/])",
                       re.IGNORECASE)


class RequirementRefused(UserError):
    """A requirement line that is not a package with a version: ``str()`` says which, ``fix`` how."""


def read_requirement(text: str):
    """``text`` as a :class:`packaging.requirements.Requirement`; raises
    :class:`RequirementRefused` for a line that is not one, or that names a
    location (URL, VCS, path) instead of a package."""
    from packaging.requirements import InvalidRequirement, Requirement

    line = text.strip()
    if _LOCATION.match(line) or ("/" in line and "@" not in line and ";" not in line):
        raise RequirementRefused(f"{line!r} is a location, not a package: a job's requirements come from the "
                                 "lab's package index", REFERENCE_FIX)
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        raise RequirementRefused(f"{line!r} is not a valid requirement ({str(exc).splitlines()[0]})", _FIX) from None
    if requirement.url:
        raise RequirementRefused(f"{line!r} names a URL ({requirement.url}): a job's requirements come from the "
                                 "lab's package index", REFERENCE_FIX)
    return requirement


def exact_pin(requirement) -> str | None:
    """The version an ``==`` requirement pins (``brian2 == 2.8.0``: ``"2.8.0"``), or None."""
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None
