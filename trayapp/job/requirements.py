"""A job's requirements: ``requires`` in ``sparecycles.toml`` and/or a
``requirements.txt`` in the job folder (PEP 508 lines, as pip reads them,
without pip's options), and what each will cost, said at submit time.

Every host runs the job in an environment that meets them: its task
environment where that already does, else one it builds once for the set
(:mod:`trayapp.install.envs`). Where packages come from is the lab's setting
(``package_index``, ``wheel_folder``), not the job's, so options such as
``--index-url`` or ``-e .`` are refused with a fix rather than ignored, and
so are lines that point at a location (URL, VCS, path) instead of naming a
package (:mod:`trayapp.install.requirement`).
"""

from __future__ import annotations

import re
from pathlib import Path

from trayapp.errors import UserError
from trayapp.install.requirement import RequirementRefused, read_requirement
from trayapp.job.manifest import Manifest
from trayapp.wire.protocol import MAX_REQUIREMENTS

REQUIREMENTS_FILE = "requirements.txt"
# A Brian + matplotlib environment on a cold cache (bench/env_build.py: uv 4 s, pip 34 s on a fast
# network), rounded up for a lab's slower one.
FIRST_BUILD_S = {"uv": 15.0, "pip": 45.0}


def read_requirements_file(path: Path) -> tuple[str, ...]:
    """The requirements of a ``requirements.txt``; a line that is not one is a :class:`UserError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}", "make it a readable UTF-8 text file, or remove it") from exc
    found = []
    logical = re.sub(r"\\\n", "", text)  # pip joins lines ending in a backslash
    for number, raw in enumerate(logical.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith("-"):
            raise UserError(f"{path} line {number}: pip option {line.split()[0]!r} is not supported in a job",
                            "list packages only; where they come from is the lab's package_index or wheel_folder "
                            "setting, and a package of your own can live in the job folder as a module")
        try:
            read_requirement(line)
        except RequirementRefused as refused:
            raise UserError(f"{path} line {number}: {refused.problem}", refused.fix) from None
        found.append(line)
    return tuple(found)


def job_requirements(folder: Path, manifest: Manifest) -> tuple[str, ...]:
    """The manifest's requirements and the folder's ``requirements.txt``, in that order, without repeats."""
    listed = list(manifest.requires)
    for line in listed:
        try:
            read_requirement(line)
        except RequirementRefused as refused:
            raise UserError(f"sparecycles.toml requires: {refused.problem}", refused.fix) from None
    path = Path(folder) / REQUIREMENTS_FILE
    if path.is_file():
        listed += read_requirements_file(path)
    found = tuple(dict.fromkeys(listed))
    if len(found) > MAX_REQUIREMENTS:  # every slave would refuse the job's tasks
        raise UserError(f"the job lists {len(found)} requirements (sparecycles.toml requires and "
                        f"{REQUIREMENTS_FILE}); a job may list at most {MAX_REQUIREMENTS}",
                        "list only the packages the job imports itself: their own dependencies come with them "
                        "(a `pip freeze` is not needed)")
    return found


def requirement_notes(requires: tuple[str, ...], installed, past_build_s: list[float],
                      installer: str = "uv") -> tuple[str, ...]:
    """One line per requirement saying what it will need: ``installed(name)`` is
    the version in this PC's task environment (or None); ``past_build_s`` the
    durations of environments built here before, for the estimate."""
    from packaging.requirements import Requirement

    estimate = max(past_build_s) if past_build_s else FIRST_BUILD_S[installer]
    notes = []
    for text in requires:
        requirement = Requirement(text)
        have = installed(requirement.name)
        if have is not None and requirement.specifier.contains(have, prereleases=True):
            notes.append(f"{text}: this PC's task environment has {requirement.name} {have}; hosts that lack it "
                         "install it")
        else:
            notes.append(f"{text}: will be installed on each host that lacks it, about {estimate:.0f} s the first "
                         "time (then reused)")
    return tuple(notes)


def check_resolvable(requires: tuple[str, ...], *, index_url: str, wheel_folder: str, installed,
                     timeout: float = 3.0) -> None:
    """Refuse, before anything is queued, a requirement that the lab's index (or
    wheel folder) answers for and has no matching version of: every host would
    try to install it and fail. Only a configured source is asked (never the
    public index at every submit), a requirement this PC's task environment
    meets is not asked about, and an index that does not answer decides nothing:
    the hosts' first refusal fails the job then (see the README's design notes)."""
    from packaging.requirements import Requirement

    from trayapp.install.updates import describe_versions, versions_available

    if not (index_url or wheel_folder):
        return
    for text in requires:
        requirement = Requirement(text)
        if requirement.url or (requirement.marker is not None and not requirement.marker.evaluate()):
            continue
        have = installed(requirement.name)
        if have is not None and requirement.specifier.contains(have, prereleases=True):
            continue
        try:
            versions = versions_available(requirement.name, index_url=index_url, wheel_folder=wheel_folder,
                                          timeout=timeout)
        except OSError:
            return  # unreachable: nothing learnt, nothing refused
        if not list(requirement.specifier.filter(versions, prereleases=True)):
            source = " + ".join(s for s in (wheel_folder, index_url) if s)
            found = (f"it has {describe_versions(versions)}" if versions
                     else f"it has no package named {requirement.name}")
            raise UserError(f"requirement {text!r} cannot be installed from the lab's package source "
                            f"({source}): {found}",
                            "correct the name or version in sparecycles.toml or requirements.txt"
                            + (f" (e.g. {requirement.name} == {versions[-1]})" if versions else "")
                            + "; nothing was queued")


def installed_versions(python: str, names: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """The installed version of each distribution in ``names`` (None where it is
    not installed) in ``python``'s environment, read by one interpreter in one
    pass over its distributions (not one interpreter per name: 1000 names took
    over three minutes)."""
    from packaging.utils import canonicalize_name

    from trayapp.install.taskenv import installed_distributions

    versions = installed_distributions(python)
    return {name: versions.get(canonicalize_name(name)) for name in names}
