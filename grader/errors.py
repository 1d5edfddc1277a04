"""Exceptions the library raises for problems a user can fix.

Every error here carries a message written for the person at the terminal and the exit code
the CLI uses for it. Anything else escaping the library is a bug in *our* code.

    LearnError                      exit 2: bad input / usage
     ├── UnknownLessonError         no lesson pack with that id
     ├── UnknownNotebookError       cannot tell which exercise a notebook is
     ├── UnknownCheckError          no lesson grades a function of that name (learn hint/solution)
     ├── UnknownQuizError           no quiz with that name
     ├── NotebookLoadError          not a notebook: invalid JSON, binary, too big, nbformat < 4 ...
     ├── LessonPackError            a lesson pack's manifest or checks are malformed
     │    ├── MarkerError           unbalanced or nested solution markers in a solution notebook
     │    └── DrillFormatError      a `learn predict` mark on a solution notebook cell is malformed
     ├── AnswerLeakError            a generated student version would hold solution text (learn assign)
     ├── ManualGradesError          a filled-in manual grades file cannot be imported (learn import-grades)
     ├── QuizFormatError            a quiz file is malformed
     ├── QuizAnswersError           an answers file (learn quiz --answers) is malformed
     ├── FetchError                 a lesson pack could not be fetched or unpacked
     ├── GradebookError             the gradebook is unusable (wrong schema, not SQLite ...)
     ├── ProgressError              the progress history exists but cannot be read
     ├── SandboxRequiredError       `learn grade` refuses other people's code without filesystem
     │                              isolation (no working bubblewrap) unless --allow-unsandboxed
     ├── ServerDatabaseError        `learn serve`: the course database cannot be opened or is newer
     ├── UploadError                `learn serve`: an upload refused (size, count, rate, not a notebook)
     └── ExecutionError   exit 3    the kernel machinery itself failed (not the learner's code)

Exit codes of the CLI (docs/reference/exit-codes.md): 0 success; 1 graded, and something failed (a
function, a quiz answer, a `learn doctor` problem, a self-test); 2 a LearnError above, or a
notebook that cannot be graded; 3 the machinery failed outside a grade (ExecutionError);
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

__all__ = [
    "did_you_mean",
    "LearnError",
    "UnknownLessonError",
    "UnknownNotebookError",
    "NotebookLoadError",
    "LessonPackError",
    "DrillFormatError",
    "QuizFormatError",
    "FetchError",
    "GradebookError",
    "SandboxRequiredError",
    "ExecutionError",
    "UnknownCheckError",
    "UnknownQuizError",
    "QuizAnswersError",
    "MarkerError",
    "ProgressError",
    "ServerDatabaseError",
    "UploadError",
    "AnswerLeakError",
    "ManualGradesError",
]


class LearnError(Exception):
    """Base class: a problem with the user's input or environment, reported without a traceback."""

    exit_code = 2


def did_you_mean(word: str, known, n: int = 3) -> str:
    """ " Did you mean lesson3?" for a mistyped name (the closest known ones), or "" when none is close."""
    import difflib

    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(word), known, n=n, cutoff=0.6)
    close += [k for k in known if word and str(word).lower() in k.lower() and k not in close][: n - len(close)]
    return f" Did you mean {' or '.join(close)}?" if close else ""


class UnknownLessonError(LearnError):
    def __init__(self, lesson: str, known: list[str]):
        self.lesson, self.known = lesson, known
        choices = ", ".join(known) if known else "(none installed)"
        super().__init__(f"unknown lesson '{lesson}'.{did_you_mean(lesson, known)} Known lessons: {choices}")


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


class UnknownCheckError(LearnError):
    """No lesson grades a function of that name."""


class UnknownQuizError(LearnError):
    """No quiz with that name."""


class QuizAnswersError(LearnError):
    """An answers file (`learn quiz --answers`) is malformed."""


class MarkerError(LessonPackError):
    """Unbalanced or nested solution markers."""


class DrillFormatError(LessonPackError):
    """A predict-the-output mark (cell metadata `learn.predict`) is malformed."""


class ProgressError(LearnError):
    """The progress history exists but cannot be read (corrupt, locked, or from a newer learn)."""


class ServerDatabaseError(LearnError):
    """`learn serve`: the course database cannot be opened, is not ours, or is from a newer learn."""


class UploadError(LearnError):
    """`learn serve`: a submission the server refuses (too big, too many notebooks, too often, not a notebook)."""


class AnswerLeakError(LearnError):
    """`learn assign` would write solution text into the student release (names notebook and cell)."""


class ManualGradesError(LearnError):
    """A manual grades file (learn import-grades) is malformed: unknown student or item, points
    that are not a number or over the item's maximum. Nothing is recorded."""
