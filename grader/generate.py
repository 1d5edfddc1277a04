"""Make student notebooks from solution notebooks (one source of truth).

Our markers, in code cells (the stub keeps the indentation of `#| begin solution`):

    def quad(a, b, c, x):
        "Evaluate a*x**2 + b*x + c."
        #| begin solution
        #| stub: return ...  # optional: what the learner starts from (default: raise NotImplementedError)
        return a*x**2 + b*x + c
        #| end solution

    #| solution-only        (first line of a code or raw cell) the whole cell is left out of the exercise
    #| begin hidden / #| end hidden     removed from the student version (instructor-only code)

In markdown cells, text between `<!-- begin solution -->` and `<!-- end solution -->` becomes
"*Your answer here.*" (and nbgrader's `### BEGIN SOLUTION` block "YOUR ANSWER HERE", as
nbgrader writes it); an attachment (an image) the student version no longer refers to is dropped.

nbgrader's markers are understood too, so an existing nbgrader assignment can be brought over:
`### BEGIN SOLUTION` / `### END SOLUTION` (code and markdown) and
`### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS`.

Generation is deterministic: the same solution gives byte-identical exercises, which is what the
drift test compares against the committed `exercises/`.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .errors import MarkerError

__all__ = [
    "stub_code",
    "stub_markdown",
    "make_exercise",
    "generate_lesson",
    "has_solution_markers",
    "hidden_lines",
    "secret_and_public",
    "MarkerError",
]

_BEGIN = re.compile(r"^(\s*)(?:#\|\s*begin solution|###\s*BEGIN SOLUTION)\s*$", re.I)
_END = re.compile(r"^\s*(?:#\|\s*end solution|###\s*END SOLUTION)\s*$", re.I)
_STUB = re.compile(r"^\s*#\|\s*stub:\s?(.*)$")
_HIDDEN_BEGIN = re.compile(r"^\s*(?:#\|\s*begin hidden|###\s*BEGIN HIDDEN TESTS)\s*$", re.I)
_HIDDEN_END = re.compile(r"^\s*(?:#\|\s*end hidden|###\s*END HIDDEN TESTS)\s*$", re.I)
_SOLUTION_ONLY = re.compile(r"^\s*#\|\s*solution-only\s*$")
_MD_BLOCK = re.compile(r"<!--\s*begin solution\s*-->.*?<!--\s*end solution\s*-->", re.S | re.I)
_MD_NBGRADER = re.compile(r"^###\s*BEGIN SOLUTION\s*$.*?^###\s*END SOLUTION\s*$", re.S | re.M)
MD_PLACEHOLDER = "*Your answer here.*"
NBGRADER_MD_PLACEHOLDER = "YOUR ANSWER HERE"


def hidden_lines(source: str) -> set[int]:
    """1-based numbers of the lines inside hidden blocks (markers included)."""
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), 1):
        if _HIDDEN_BEGIN.match(line):
            inside = True
        if inside:
            hidden.add(number)
        if _HIDDEN_END.match(line):
            inside = False
    return hidden


def has_solution_markers(source: str) -> bool:
    return any(_BEGIN.match(line) for line in source.splitlines())


def _nbgrader_style(line: str) -> bool:
    return "###" in line


def stub_code(source: str, where: str = "cell") -> str:
    """Replace each solution block by its stub; drop hidden blocks. Raises MarkerError."""
    out: list[str] = []
    lines = source.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        begin = _BEGIN.match(line)
        if begin:
            indent = begin.group(1)
            stub: list[str] = []
            j = i + 1
            while j < len(lines) and not _END.match(lines[j]):
                if _BEGIN.match(lines[j]):
                    raise MarkerError(f"{where}: nested solution markers (line {j + 1})")
                m = _STUB.match(lines[j])
                if m:
                    stub.append(indent + m.group(1))
                j += 1
            if j == len(lines):
                raise MarkerError(f"{where}: solution block opened on line {i + 1} is never closed")
            if not stub:
                stub = (
                    [indent + "# YOUR CODE HERE", indent + "raise NotImplementedError()"]
                    if _nbgrader_style(line)
                    else [indent + "raise NotImplementedError()  # replace this line with your code"]
                )
            out.extend(stub)
            i = j + 1
            continue
        if _END.match(line):
            raise MarkerError(f"{where}: 'end solution' on line {i + 1} without a matching begin")
        if _HIDDEN_BEGIN.match(line):
            j = i + 1
            while j < len(lines) and not _HIDDEN_END.match(lines[j]):
                j += 1
            if j == len(lines):
                raise MarkerError(f"{where}: hidden block opened on line {i + 1} is never closed")
            i = j + 1
            continue
        if _HIDDEN_END.match(line):
            raise MarkerError(f"{where}: 'end hidden' on line {i + 1} without a matching begin")
        if _STUB.match(line):
            raise MarkerError(f"{where}: '#| stub:' on line {i + 1} outside a solution block")
        out.append(line)
        i += 1
    return "\n".join(out)


def secret_and_public(cell) -> tuple[list[str], list[str]]:
    """The lines of a solution cell that only the solution may hold (inside solution and hidden
    blocks, a solution-only cell; stub lines excluded) and the rest: what the leak check of
    `learn assign` compares a release against."""
    lines = cell.get("source", "").split("\n")
    if cell.get("cell_type") == "code" and lines and _SOLUTION_ONLY.match(lines[0]):
        return lines[1:], []
    secret, public, inside = [], [], None
    md = cell.get("cell_type") == "markdown"
    for line in lines:
        if inside is None:
            if _BEGIN.match(line) or _HIDDEN_BEGIN.match(line):
                inside = "solution" if _BEGIN.match(line) else "hidden"
            elif md and re.search(r"<!--\s*begin solution\s*-->", line, re.I):
                inside = "md"
                before, _, after = re.split(r"(<!--\s*begin solution\s*-->)", line, maxsplit=1, flags=re.I)
                public.append(before)
                end = re.split(r"<!--\s*end solution\s*-->", after, maxsplit=1, flags=re.I)
                secret.append(end[0])
                if len(end) > 1:
                    public.append(end[1])
                    inside = None
            else:
                public.append(line)
            continue
        if inside == "md" and re.search(r"<!--\s*end solution\s*-->", line, re.I):
            head, _, tail = re.split(r"(<!--\s*end solution\s*-->)", line, maxsplit=1, flags=re.I)
            secret.append(head)
            public.append(tail)
            inside = None
        elif (inside == "solution" and _END.match(line)) or (inside == "hidden" and _HIDDEN_END.match(line)):
            inside = None
        elif inside == "solution" and _STUB.match(line):
            public.append(_STUB.match(line).group(1))
        else:
            secret.append(line)
    return secret, public


def stub_markdown(source: str) -> str:
    source = _MD_BLOCK.sub(MD_PLACEHOLDER, source)
    return _MD_NBGRADER.sub(NBGRADER_MD_PLACEHOLDER, source)


def _keep_used_attachments(cell) -> None:
    """Drop the attachments (pasted images) a markdown cell no longer refers to: those of an answer."""
    attachments = cell.get("attachments")
    if isinstance(attachments, dict):
        kept = {name: data for name, data in attachments.items() if f"attachment:{name}" in cell.source}
        if kept:
            cell["attachments"] = kept
        else:
            cell.pop("attachments", None)


def make_exercise(solution: NotebookNode, lesson_id: str, file: str, version: str = "1") -> NotebookNode:
    """The student version of a solution notebook: stubs, no outputs, tagged with learn metadata."""
    nb = copy.deepcopy(solution)
    cells = []
    for index, cell in enumerate(nb.cells):
        where = f"{file} cell {index + 1}"
        if cell.cell_type == "code":
            first = cell.source.split("\n", 1)[0]
            if _SOLUTION_ONLY.match(first):
                continue
            cell.source = stub_code(cell.source, where)
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        elif cell.cell_type == "markdown":
            cell.source = stub_markdown(cell.source)
            _keep_used_attachments(cell)
        elif cell.cell_type == "raw" and _SOLUTION_ONLY.match(cell.source.split("\n", 1)[0]):
            continue  # e.g. a `learn predict` drill of code that raises, kept out of the run and the exercise
        cell.metadata.pop("nbgrader", None)
        cells.append(cell)
    nb.cells = cells
    meta = nb.metadata
    meta.pop("widgets", None)
    meta["learn"] = {"lesson": lesson_id, "notebook": file, "version": version, "kind": "exercise"}
    return nb


def _write(nb: NotebookNode, path: Path) -> None:
    text = nbformat.writes(nb, version=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def generate_lesson(lesson, out_dir: Path | None = None) -> list[Path]:
    """Write the exercise notebooks (and data files) of `lesson` into `out_dir`."""
    out_dir = Path(out_dir) if out_dir is not None else lesson.exercises_dir
    written: list[Path] = []
    for spec in lesson.notebooks:
        solution = nbformat.read(str(lesson.solution_path(spec)), as_version=4)
        exercise = make_exercise(solution, lesson.id, spec.file, lesson.version)
        target = out_dir / spec.file
        _write(exercise, target)
        written.append(target)
        for name, source in lesson.data_files(spec).items():
            dest = out_dir / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, dest)
            written.append(dest)
    return written
