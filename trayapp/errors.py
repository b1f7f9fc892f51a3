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
