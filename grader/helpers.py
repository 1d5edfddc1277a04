"""Help for a stuck learner: progressive hints and, as a last resort, one function's solution.

    next_hint("quad")        -> Hint(number=1, total=3, text=...)   one more hint per call
    all_hints("quad")        -> every hint of the function
    reset_hints("quad")      -> start again from the first hint
    solution_source("quad")  -> the reference `def quad` alone, solution markers stripped

Hints come from the lesson manifest (`hints = [...]` of `[checks.NAME]`); how many were shown
is kept in the progress history (`record_event("hint", ...)`), so it survives across sessions.
If the history cannot be written, hints still work: the warning is returned, never raised.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import LessonPackError, UnknownCheckError
from .lessons import CheckSpec, Lesson, all_lessons

__all__ = ["UnknownCheckError", "find_check", "Hint", "next_hint", "all_hints", "reset_hints", "solution_source", "record_solution_viewed"]


def find_check(name: str, lesson_id: str | None = None, lessons: dict[str, Lesson] | None = None) -> tuple[Lesson, CheckSpec]:
    """The lesson and manifest entry of a graded function (the first lesson that has it).

    Unknown names raise UnknownCheckError listing the closest known names.
    """
    lessons = lessons if lessons is not None else all_lessons()
    if lesson_id is not None:
        if lesson_id not in lessons:
            from .errors import UnknownLessonError

            raise UnknownLessonError(lesson_id, list(lessons))
        lessons = {lesson_id: lessons[lesson_id]}
    for lesson in lessons.values():
        if name in lesson.checks:
            return lesson, lesson.checks[name]
    known = sorted({c for lesson in lessons.values() for c in lesson.checks})
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
    close += [k for k in known if name and name.lower() in k.lower() and k not in close][: 4 - len(close)]
    where = f" in {lesson_id}" if lesson_id else ""
    suggestion = f" Did you mean: {', '.join(close)}?" if close else f" Graded functions: {', '.join(known)}."
    raise UnknownCheckError(f"no graded function named {name!r}{where}.{suggestion}")


@dataclass
class Hint:
    name: str
    lesson: str
    title: str
    number: int  # 1-based
    total: int
    text: str
    warning: str | None = None  # the history could not be updated

    @property
    def last(self) -> bool:
        return self.number >= self.total


def next_hint(name: str, lesson_id: str | None = None, db: Path | None = None) -> Hint | None:
    """The next hint for `name` (the last one again once all were shown); None if it has none."""
    from .progress import hints_shown, record_event

    lesson, spec = find_check(name, lesson_id)
    if not spec.hints:
        return None
    shown = hints_shown(spec.name, lesson.id, path=db)
    index = min(shown, len(spec.hints) - 1)
    warning = record_event("hint", spec.name, lesson.id, detail=str(index + 1), path=db)
    return Hint(spec.name, lesson.id, spec.title, index + 1, len(spec.hints), spec.hints[index], warning)


def all_hints(name: str, lesson_id: str | None = None, db: Path | None = None) -> list[Hint]:
    """Every hint of `name`, recorded as shown."""
    from .progress import record_event

    lesson, spec = find_check(name, lesson_id)
    warning = None
    for i in range(len(spec.hints)):
        warning = record_event("hint", spec.name, lesson.id, detail=str(i + 1), path=db) or warning
    return [Hint(spec.name, lesson.id, spec.title, i + 1, len(spec.hints), text, warning) for i, text in enumerate(spec.hints)]


def reset_hints(name: str, lesson_id: str | None = None, db: Path | None = None) -> str | None:
    """Start the hints of `name` again from the first. Returns a warning or None."""
    from .progress import record_event

    lesson, spec = find_check(name, lesson_id)
    return record_event("hint_reset", spec.name, lesson.id, path=db)


# ---------------------------------------------------------------------------------------------
# solutions

_MARKER = re.compile(
    r"^\s*(?:#\|\s*(?:begin|end) solution|#\|\s*stub:.*|###\s*(?:BEGIN|END) SOLUTION)\s*$",
    re.I,
)
_HIDDEN = (re.compile(r"^\s*(?:#\|\s*begin hidden|###\s*BEGIN HIDDEN TESTS)\s*$", re.I),
           re.compile(r"^\s*(?:#\|\s*end hidden|###\s*END HIDDEN TESTS)\s*$", re.I))  # fmt: skip


def _strip_markers(source: str) -> str:
    out, hidden = [], False
    for line in source.splitlines():
        if _HIDDEN[0].match(line):
            hidden = True
        elif _HIDDEN[1].match(line):
            hidden = False
        elif not hidden and not _MARKER.match(line):
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


def _definition(source: str, name: str) -> str | None:
    """The source of the top-level `def`/`class` called `name` in one cell, decorators included."""
    from .notebook import python_only

    code = python_only(source)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return None
    lines = code.splitlines()
    found = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            found = "\n".join(lines[start - 1 : node.end_lineno])
    return found


def solution_source(name: str, lesson_id: str | None = None) -> tuple[Lesson, CheckSpec, str]:
    """The reference definition of one graded function, without solution markers.

    Only that `def` (or `class`) is returned - not the rest of the solution notebook.
    """
    from .notebook import load_notebook

    lesson, spec = find_check(name, lesson_id)
    path = lesson.solution_path(lesson.notebook(spec.notebook))
    if not path.is_file():
        raise LessonPackError(f"the solutions of {lesson.id} are not installed here ({path} is missing)")
    nb = load_notebook(path)
    found = None
    for cell in nb.cells:
        if cell.cell_type == "code":
            found = _definition(cell.source, spec.name) or found  # the last definition wins, as when run
    if found is None:
        raise LessonPackError(f"{path.name} of {lesson.id} defines no function {spec.name!r}; its check exercises other code")
    return lesson, spec, _strip_markers(found)


def record_solution_viewed(lesson: Lesson, spec: CheckSpec, db: Path | None = None) -> str | None:
    from .progress import record_event

    return record_event("solution", spec.name, lesson.id, path=db)
