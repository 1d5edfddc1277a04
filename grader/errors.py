"""Exceptions the library raises for problems a user can fix.

Every error here carries a message written for the person at the terminal and the exit code
the CLI uses for it. Anything else escaping the library is a bug in *our* code.

    LearnError                      exit 2: bad input / usage
     ├── UnknownLessonError         no lesson pack with that id
     ├── UnknownNotebookError       cannot tell which exercise a notebook is
     ├── NotebookLoadError          not a notebook: invalid JSON, binary, too big, nbformat < 4 ...
     ├── LessonPackError            a lesson pack's manifest or checks are malformed
     ├── QuizFormatError            a quiz file is malformed
     ├── FetchError                 a lesson pack could not be fetched or unpacked
     ├── GradebookError             the gradebook is unusable (wrong schema, not SQLite ...)
     ├── SandboxRequiredError       `learn grade` refuses other people's code without filesystem
     │                              isolation (no working bubblewrap) unless --allow-unsandboxed
     └── ExecutionError             the kernel machinery itself failed (not the learner's code)
"""

from __future__ import annotations

__all__ = [
    "LearnError",
    "UnknownLessonError",
    "UnknownNotebookError",
    "NotebookLoadError",
    "LessonPackError",
    "QuizFormatError",
    "FetchError",
    "GradebookError",
    "SandboxRequiredError",
    "ExecutionError",
]


class LearnError(Exception):
    """Base class: a problem with the user's input or environment, reported without a traceback."""

    exit_code = 2


class UnknownLessonError(LearnError):
    def __init__(self, lesson: str, known: list[str]):
        self.lesson, self.known = lesson, known
        choices = ", ".join(known) if known else "(none installed)"
        super().__init__(f"unknown lesson '{lesson}'. Known lessons: {choices}")


class UnknownNotebookError(LearnError):
    """A notebook that matches no exercise of any installed lesson."""


class NotebookLoadError(LearnError):
    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class LessonPackError(LearnError):
    pass


class QuizFormatError(LearnError):
    pass


class FetchError(LearnError):
    pass


class GradebookError(LearnError):
    pass


class SandboxRequiredError(LearnError):
    """Other people's notebooks would run without filesystem isolation (sandbox mode other than
    bwrap) and the instructor did not allow it (--allow-unsandboxed, LEARN_ALLOW_UNSANDBOXED=1).
    Exit 2, like other problems the user fixes before running again."""


class ExecutionError(LearnError):
    """The kernel machinery failed to start or answer; not caused by the learner's code."""

    exit_code = 3
