"""Errors a user can act on.

Every problem a person can cause (a missing folder, a malformed parameter file,
an unknown job id) is raised as a :class:`UserError` that names the problem and,
where there is one, the fix. The CLI prints these without a traceback; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, with the fix spelled out."""

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.problem}\n  fix: {self.fix}"
        return self.problem


def refuse_control_characters(flag: str, value: str, *, lines: bool = False) -> None:
    """Raise a :class:`UserError` if the option ``flag``'s ``value`` holds a
    newline (unless ``lines``), NUL or another control character: a newline
    ends a shell command and splits a table row, and none belongs in a name or
    a path."""
    allowed = "\n\t" if lines else ""
    bad = sorted({repr(c) for c in value if (ord(c) < 32 or ord(c) == 127) and c not in allowed})
    if bad:
        what = "a line break" if bad == [repr("\n")] else "control characters"
        raise UserError(f"{flag} holds {what} ({', '.join(bad)})", f"give {flag} as one line of plain text")
