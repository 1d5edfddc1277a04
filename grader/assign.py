"""`learn assign`: student notebooks from solution notebooks, after proving the checks work.

    SOURCE ─► a lesson pack (staging) ─► release/ (generated stubs + data) ─► self-test ─► OUT/
      lesson id / pack folder: copied as is             every check must pass on the solution
      nbgrader or plain solution notebooks: converted    and fail on the generated stub

    OUT/source/    the pack to grade with: lesson.toml, checks.py, solutions, hidden tests (keep it)
    OUT/release/   what students get: exercise notebooks and data files (hand it out)

nbgrader's `### AUTOTEST` directives are first turned into the asserts nbgrader would write
(grader.autotest). nbgrader assignments have no checks.py: their autograder *test cells* (cell metadata
`nbgrader.grade = true` and not a solution cell, or - without nbgrader metadata - a cell with a
top-level `assert`) become checks. The converted pack's checks.py has one line per test cell,
`test_cell(HERE / "notebook.ipynb", "name")`, which reads that cell's full source (hidden tests
included) from the solution notebook in the pack. At grading time the cell runs in the student's
kernel after their notebook and the check passes when it raises nothing.

Trust caveat: unlike our own checks, whose values are judged in the grader's process, a test
cell's asserts run *inside the student's kernel*, so a notebook that patches what the asserts use
(e.g. redefines `np.allclose` or a compared object's `__eq__`) can make them pass - the same
trust nbgrader and otter-grader place in the student's kernel. The student never sees hidden test
code (it is not in the release), and the verdict still travels through the probe channel.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as _dt
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import __version__
from .autotest import has_autotests
from .autotest import instantiate as instantiate_autotests
from .errors import AnswerLeakError, LearnError, LessonPackError
from .generate import generate_lesson, has_solution_markers, hidden_lines, secret_and_public
from .inert import terminal
from .lessons import MANIFEST, Lesson, all_lessons, load_lesson
from .notebook import load_notebook, python_only
from .results import Status

__all__ = [
    "AssignReport",
    "assign",
    "load_pack",
    "stage",
    "convert_notebooks",
    "is_test_cell",
    "leak_check",
    "test_cell",
    "run_test_cell",
    "self_test",
]

MARKER = ".learn-assign.json"
_IGNORED = {"__pycache__", ".ipynb_checkpoints", "__MACOSX", "release", "source", "feedback"}


# ---------------------------------------------------------------------------------------------
# test cells as checks (used by the checks.py of converted packs)


def run_test_cell(ns, source):
    """Runs in the learner's kernel: execute one test cell in their namespace, report what it raised."""
    import traceback

    try:
        from IPython import get_ipython

        shell = get_ipython()
        code = shell.transform_cell(source) if shell is not None else source
    except Exception:
        code = source
    try:
        exec(compile(code, "<test cell>", "exec"), ns)
    except (Exception, SystemExit) as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<test cell>"]
        return {"passed": False, "ename": type(exc).__name__, "evalue": str(exc)[:1000], "line": frames[-1].lineno if frames else None}
    return {"passed": True}


def _test_cell_judge(source: str):
    """Judge (in the grader) of a test cell's report: pass when it raised nothing. A failure in a
    hidden block names only the exception type; elsewhere it quotes the failing line."""
    lines = source.splitlines()
    hidden = hidden_lines(source)

    def judge(got, expected, tol):
        from .compare import Verdict

        if type(got) is not dict or type(got.get("passed")) is not bool:
            return Verdict(False, "the test cell did not report a readable result", kind="unreadable")
        if got["passed"]:
            return Verdict.passed()
        ename, evalue, line = str(got.get("ename") or "Exception"), str(got.get("evalue") or ""), got.get("line")
        kind = {"NotImplementedError": "not_implemented", "AssertionError": "assertion"}.get(ename, "exception")
        if type(line) is int and line in hidden or type(line) is not int or not 0 < line <= len(lines):
            return Verdict(False, f"a hidden test failed ({ename})" if hidden else f"the test cell raised {ename}: {evalue}".rstrip(": "),
                           kind=kind)  # fmt: skip
        detail = f"{ename}: {evalue}".rstrip(": ") + (" (a function it calls is not written yet)" if kind == "not_implemented" else "")
        return Verdict(False, f"test failed at line {line}: {lines[line - 1].strip()}  ->  {detail}", kind=kind)

    return judge


def _find_test_cell(notebook: Path, name: str) -> tuple[str, int]:
    nb = nbformat.read(str(notebook), as_version=4)
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("learn", {})
        if cell.cell_type == "code" and isinstance(meta, dict) and meta.get("test") == name:
            return cell.source, index
    raise LessonPackError(f"{notebook}: no test cell named {name!r} (cell metadata learn.test)")


def test_cell(notebook: str | Path, name: str):
    """The Check for one test cell of a solution notebook (found by its metadata `learn.test`)."""
    from .checks import Case, Check

    source, index = _find_test_cell(Path(notebook), name)
    judge = _test_cell_judge(source)

    def cases(rng):
        yield Case.call(source, probe=run_test_cell, judge=judge, reference=False, label="test cell",
                        show=f"test cell {index + 1} of {Path(notebook).name}")  # fmt: skip

    return Check(name=name, cases=cases, requires=(), callables=())


test_cell.__test__ = False  # not a pytest test, whatever its name says


# ---------------------------------------------------------------------------------------------
# converting nbgrader / plain solution notebooks into a pack


def _top_level_assert(source: str) -> bool:
    try:
        tree = ast.parse(python_only(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(node, ast.Assert) for node in tree.body)


def is_test_cell(cell) -> bool:
    """An autograder test: nbgrader `grade: true` and not a solution cell; or, in a notebook cell
    without nbgrader metadata and without solution markers, a top-level `assert`."""
    if cell.get("cell_type") != "code":
        return False
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and meta:
        return bool(meta.get("grade")) and not meta.get("solution")
    return not has_solution_markers(cell.source) and _top_level_assert(cell.source)


def _identifier(text: str, fallback: str) -> str:
    name = re.sub(r"\W+", "_", text).strip("_").lower()
    if not name:
        name = fallback
    return name if name[0].isalpha() else f"t_{name}"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


_POINTS_NOTE = re.compile(r"\s*[\(\[]\s*\d+(?:\.\d+)?\s*(?:points?|pts?|marks?)\s*[\)\]]\s*$", re.I)


def _title_of(nb, fallback: str) -> str:
    """A notebook's first level-1 heading ("# Title"), else the fallback (a section heading such
    as "## Part A (2 points)" names a part, not the whole)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return _POINTS_NOTE.sub("", m.group(1)).strip()[:120] or fallback
    return fallback


def _folder_title(folder_name: str) -> str:
    return re.sub(r"[_-]+", " ", folder_name).strip() or folder_name


@dataclass
class _TestCell:
    name: str
    notebook: str
    index: int
    points: float
    hidden: bool


@dataclass
class _ManualItem:
    name: str
    notebook: str
    index: int
    points: float
    title: str
    kind: str


def _points(meta: dict, default: float = 1.0) -> float:
    points = meta.get("points", default)
    return float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) and points >= 0 else default


class _Names:
    """Unique check / item names from nbgrader grade ids."""

    def __init__(self):
        self.used: set[str] = set()

    def take(self, grade_id, stem: str, fallback: str) -> str:
        base = _identifier(str(grade_id or ""), fallback)
        name = base if base not in self.used else _identifier(f"{stem}_{base}", base)
        while name in self.used:
            name += "_"
        self.used.add(name)
        return name


def _manual_kind(cell, meta: dict) -> str | None:
    """markdown / code / task for a cell an instructor grades by hand (nbgrader: a graded
    solution cell, or a task), else None."""
    if meta.get("task"):
        return "task"
    if meta.get("solution") and meta.get("grade"):
        return "markdown" if cell.cell_type == "markdown" else "code"
    return None


def _heading_before(nb, index: int) -> str | None:
    for cell in reversed(nb.cells[:index]):
        if cell.cell_type == "markdown":
            headings = re.findall(r"^#+\s+(.+)$", cell.source, re.M)
            if headings:
                return _POINTS_NOTE.sub("", headings[-1]).strip()[:100] or None
    return None


def _prepare_cell(cell, meta: dict) -> None:
    """An nbgrader solution cell without markers is all answer: mark it so that the student
    version gets the stub (code) or "YOUR ANSWER HERE" (markdown), as nbgrader's release does."""
    if meta.get("solution") and not has_solution_markers(cell.source) and not meta.get("task"):
        cell.source = f"### BEGIN SOLUTION\n{cell.source}\n### END SOLUTION"


def convert_notebooks(paths: list[Path], dest: Path, lesson_id: str, data: list[Path] = (), title: str | None = None) -> list[str]:
    """Write a lesson pack into `dest` from solution notebooks with nbgrader (or our) markers:
    the notebooks (test cells, manual items and locked cells named in cell metadata `learn`),
    lesson.toml, checks.py and data files. Returns the check names."""
    dest.mkdir(parents=True, exist_ok=True)
    data_names = []
    for item in data:
        target = dest / item.name
        shutil.copytree(item, target) if item.is_dir() else shutil.copyfile(item, target)
        data_names.append(item.name)
    tests: list[_TestCell] = []
    manual: list[_ManualItem] = []
    titles: dict[str, str] = {}
    names = _Names()
    light = set()
    for path in paths:
        nb = load_notebook(path)
        if has_autotests(nb):  # nbgrader's ### AUTOTEST: the asserts nbgrader would generate, from the solution's values
            instantiate_autotests(nb, path.parent, path.parent, path.name)
        if not any(re.search(r"\b(torch|fastai)\b", c.source) for c in nb.cells if c.cell_type == "code"):
            light.add(path.name)
        for index, cell in enumerate(nb.cells):
            meta = cell.metadata.get("nbgrader") or {}
            if not isinstance(meta, dict):
                meta = {}
            _prepare_cell(cell, meta)
            tag = {}
            kind = _manual_kind(cell, meta)
            if kind:
                name = names.take(meta.get("grade_id"), path.stem, f"{path.stem}_answer_{len(manual) + 1}")
                own = re.search(r"^#+\s+(.+)$", cell.source, re.M) if kind == "task" else None  # a task's own heading names it
                heading = _POINTS_NOTE.sub("", own.group(1)).strip()[:100] if own else _heading_before(nb, index)
                item_title = f"{heading} ({kind} answer)" if heading and kind != "task" else heading or name
                manual.append(_ManualItem(name, path.name, index, _points(meta), item_title, kind))
                tag["manual"] = name
            elif is_test_cell(cell):
                name = names.take(meta.get("grade_id"), path.stem, f"{path.stem}_test_{len(tests) + 1}")
                tag["test"] = name
                tests.append(_TestCell(name, path.name, index, _points(meta), bool(hidden_lines(cell.source))))
            if meta.get("locked") and not meta.get("solution") and not kind:
                tag["locked"] = str(meta.get("grade_id") or f"cell{index + 1}")
            if tag:
                cell.metadata["learn"] = tag
        titles[path.name] = _title_of(nb, path.stem)
        nb.metadata["learn"] = {"lesson": lesson_id, "notebook": path.name, "kind": "solution"}
        nbformat.write(nb, str(dest / path.name))
    if not tests and not manual:
        raise LessonPackError(
            f"no graded test cells in {', '.join(p.name for p in paths)}: mark autograder tests as nbgrader does "
            "(cell metadata nbgrader.grade = true) or write cells with assert statements"
        )
    title = next((titles[p.name] for p in paths if titles[p.name] != p.stem), None) or title or lesson_id
    _write_manifest(dest, lesson_id, title, paths, titles, tests, manual, data_names, light)
    _write_checks(dest, lesson_id, tests)
    return [t.name for t in tests]


def _write_manifest(dest: Path, lesson_id: str, title: str, paths: list[Path], titles: dict[str, str], tests: list[_TestCell],
                    manual: list[_ManualItem], data: list[str], light: set[str] = frozenset()) -> None:  # fmt: skip
    lines = [
        f"# Generated by `learn assign` (learn {__version__}) from {', '.join(p.name for p in paths)}.",
        "# One check per test cell: it runs (hidden tests included) in the student's kernel after the notebook.",
        "# [manual.NAME]: answers graded by hand (learn export --format manual, learn import-grades).",
        "",
        f"id = {_toml(lesson_id)}",
        f"title = {_toml(title)}",
        'version = "1"',
        "",
        "[defaults]",
        "probe_timeout = 30",
        "partial_credit = false",
    ]
    for path in paths:
        lines += ["", "[[notebooks]]", f"file = {_toml(path.name)}", f"title = {_toml(titles[path.name])}"]
        if path.name in light:  # its kernels need not preload torch
            lines.append('profile = "python"')
        if data:
            lines.append(f"data = {_toml(data)}")
    for t in tests:
        lines += ["", f"[checks.{t.name}]", f"notebook = {_toml(t.notebook)}", f"title = {_toml(f'test cell {t.index + 1} of {t.notebook}')}",
                  f"points = {_toml(t.points)}"]  # fmt: skip
        if t.hidden:
            lines.append("hidden = true")
    for m in manual:
        lines += ["", f"[manual.{m.name}]", f"notebook = {_toml(m.notebook)}", f"title = {_toml(m.title)}", f"points = {_toml(m.points)}",
                  f"kind = {_toml(m.kind)}", f"cell = {_toml(m.name)}"]  # fmt: skip
    (dest / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_checks(dest: Path, lesson_id: str, tests: list[_TestCell]) -> None:
    lines = [
        f'"""Checks of {lesson_id}, generated by `learn assign` from the test cells of its solution notebooks.',
        "",
        "Each check runs one test cell (hidden tests included) in the student's kernel after their notebook,",
        'and passes when the cell raises nothing. See grader/assign.py for the trust caveat."""',
        "",
        "from pathlib import Path",
        "",
        "from grader.assign import test_cell",
        "",
        "HERE = Path(__file__).parent",
        "",
    ]
    lines += [f"check_{t.name} = test_cell(HERE / {t.notebook!r}, {t.name!r})" for t in tests]
    (dest / "checks.py").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# telling `learn grade` that a folder is an nbgrader source


def _has_nbgrader_cells(folder: Path) -> bool:
    for path in sorted(folder.glob("*.ipynb"))[:20]:
        try:
            if path.stat().st_size < 50 * 2**20 and '"nbgrader"' in path.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            continue
    return False


def nbgrader_hint(folder: Path) -> str | None:
    """For a folder that is an nbgrader assignment source or course (and not a pack): what to run."""
    import shlex

    folder = Path(folder)
    if _has_nbgrader_cells(folder):
        sources = [folder]
    else:
        base = folder / "source" if (folder / "source").is_dir() else folder
        sources = [d for d in sorted(base.iterdir()) if d.is_dir() and _has_nbgrader_cells(d)] if base.is_dir() else []
        if not sources and not (folder / "nbgrader_config.py").is_file():
            return None
    if not sources:
        return f"{folder} looks like an nbgrader course with no assignment sources; convert one with `learn assign COURSE/source/NAME`"
    kind = "an nbgrader assignment source" if sources == [folder] else "an nbgrader course"
    lines = [f"{folder} is {kind}, not a lesson pack: convert it with `learn assign` first, then grade with its output:"]
    for src in sources:
        out = f"assignment-{_identifier(src.resolve().name, 'assignment')}"
        lines.append(f"  learn assign {shlex.quote(str(src))} --out {out}")
    lines.append("  learn grade SUBMISSIONS --assignment " + ("assignment-ID" if len(sources) > 1 else out))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the command


@dataclass
class AssignReport:
    lesson: Lesson
    out: Path
    checks: list[str]
    problems: list[str] = field(default_factory=list)
    mutants: object | None = None  # grader.mutants.Report of the pack's own checks (None: not run)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def release(self) -> Path:
        return self.out / "release"

    @property
    def source(self) -> Path:
        return self.out / "source"


def _source_kind(sources: list[str]) -> tuple[str, Path | None, list[Path]]:
    """('pack', pack folder, []) or ('notebooks', folder, notebook paths)."""
    if len(sources) == 1:
        value = sources[0]
        path = Path(value)
        if path.is_dir() and (path / MANIFEST).is_file():
            return "pack", path, []
        lessons = all_lessons()
        if value in lessons and "/" not in value:  # a lesson id wins over a learner's same-named folder (./lesson3 is the folder)
            return "pack", lessons[value].root, []
        if path.is_dir():
            notebooks = sorted(p for p in path.glob("*.ipynb") if not p.name.startswith(".") and ".bak." not in p.name)
            if not notebooks:
                raise LearnError(f"{path} holds no notebooks and no lesson.toml")
            return "notebooks", path, notebooks
        if not path.exists():
            raise LearnError(f"{value}: not a lesson id ({', '.join(lessons) or 'none installed'}), folder or notebook")
    paths = [Path(s) for s in sources]
    for p in paths:
        if not p.is_file() or p.suffix != ".ipynb":
            raise LearnError(f"{p}: expected solution notebooks (.ipynb files), one lesson id, or one folder")
    if len({p.name for p in paths}) != len(paths):
        raise LearnError("two solution notebooks have the same file name")
    return "notebooks", paths[0].parent, paths


def _data_files(folder: Path, notebooks: list[Path]) -> list[Path]:
    names = {p.name for p in notebooks}
    return sorted(
        p for p in folder.iterdir()
        if p.name not in names and not p.name.startswith(".") and p.name not in _IGNORED and p.suffix not in (".ipynb", ".db", ".zip")
        and not p.is_symlink()
    )  # fmt: skip


def stage(sources: list[str], staging: Path, lesson_id: str | None) -> Lesson:
    kind, folder, notebooks = _source_kind(sources)
    pack = staging / "source"
    if kind == "pack":
        assert folder is not None
        shutil.copytree(folder, pack, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", ".*"))
        lesson = load_lesson(pack, exercises_dir=staging / "release")
        if lesson_id and lesson_id != lesson.id:
            raise LearnError(f"--id {lesson_id} does not match the pack's id {lesson.id} (edit its lesson.toml to rename it)")
        return lesson
    assert folder is not None
    lesson_id = lesson_id or _identifier(folder.resolve().name, "assignment")
    if not lesson_id.isidentifier():
        raise LearnError(f"--id must be a simple name like 'ps1', not {lesson_id!r}")
    data = _data_files(folder, notebooks) if len(sources) == 1 else []
    convert_notebooks(notebooks, pack, lesson_id, data, title=_folder_title(folder.resolve().name))
    return load_lesson(pack, exercises_dir=staging / "release")


def load_pack(source: str, staging: Path) -> Lesson:
    """The pack named by a lesson id, a pack folder (lesson.toml), or solution notebooks with
    markers (ours or nbgrader's: converted as `learn assign` does, into `staging`)."""
    path = Path(source)
    if path.is_dir() and (path / "lesson.toml").is_file():
        return load_lesson(path)
    lessons = all_lessons()
    if source in lessons and "/" not in source:
        return lessons[source]
    if not path.exists():
        from .errors import UnknownLessonError

        raise UnknownLessonError(source, list(lessons))
    return stage([source], staging, None)


async def _grade_all(lesson: Lesson, paths: list[tuple[str, Path]], jobs: int, seed: int):
    from .assignments import lesson_grader

    async with lesson_grader(lesson, pool_size=jobs, seed=seed) as grader:
        return await asyncio.gather(*(grader.grade(path, lesson.id, spec_file) for spec_file, path in paths))


def self_test(lesson: Lesson, release: Path, jobs: int | None = None) -> list[str]:
    """Problems that make the assignment unusable: a check that does not pass on the solution,
    one that does not fail on the generated stub, a solution notebook that raises."""
    from .assignments import default_seed

    lesson.check_code()  # a broken checks.py is reported as such, before any kernel starts
    files = [spec.file for spec in lesson.notebooks]
    paths = [(f, lesson.root / f) for f in files] + [(f, release / f) for f in files]
    jobs = jobs or min(2, len(paths))
    results = asyncio.run(_grade_all(lesson, paths, jobs, default_seed(lesson)))
    solutions, stubs = results[: len(files)], results[len(files) :]
    problems = []
    for file, sol, stub in zip(files, solutions, stubs):
        if sol.error:
            problems.append(f"{file}: the solution cannot be graded: {sol.error}")
            continue
        for p in sol.cell_problems:
            if p.kind != "output_limit":
                problems.append(f"{file}: the solution fails in cell {p.cell}: {(p.ename + ': ' + p.evalue).strip(': ') or p.kind}")
        stub_checks = {c.name: c for c in stub.checks}
        for check in sol.checks:
            if check.status is not Status.PASSED:
                problems.append(
                    f"{check.name} ({file}): does not pass on the solution: {check.status} - {check.message.splitlines()[0] if check.message else ''}"
                )
            other = stub_checks.get(check.name)
            if stub.error:
                problems.append(f"{check.name} ({file}): the generated student version cannot be graded: {stub.error}")
            elif other is None or other.status in (Status.PASSED, Status.SKIPPED):
                problems.append(
                    f"{check.name} ({file}): passes on the generated student version (the stub), so it cannot tell work from no work"
                )
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------------------------------------
# the leak check: no solution text in the student release

_MIN_SECRET = 12  # shorter solution lines ("return x", "pass") say nothing
_WINDOW = 8  # a long line is also compared by runs of this many words (a copied half sentence leaks too)


def _norm(text: str) -> str:
    return " ".join(str(text).split())


def _payloads(bundle) -> list[str]:
    """The data strings of an attachment or output bundle ({mime: data})."""
    if not isinstance(bundle, dict):
        return []
    return ["".join(v) if isinstance(v, list) else str(v) for v in bundle.values()]


def _release_text(nb) -> str:
    """Everything of a released notebook a student can read: sources, attachments, outputs."""
    parts = []
    for cell in nb.cells:
        parts.append(_norm(cell.source))
        for bundle in (cell.get("attachments") or {}).values():
            parts += _payloads(bundle)
        for output in cell.get("outputs", []):
            parts += [_norm(output.get("text", ""))] + _payloads(output.get("data"))
    return "\n".join(parts)


def _windows(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        words = line.split()
        out += [" ".join(words)] if len(words) <= _WINDOW else [" ".join(words[i : i + _WINDOW]) for i in range(len(words) - _WINDOW + 1)]
    return out


def _split(cell) -> tuple[list[str], list[str]]:
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and meta.get("solution") and not meta.get("task") and not has_solution_markers(cell.source):
        return cell.source.split("\n"), []  # nbgrader: an unmarked solution cell is all answer
    return secret_and_public(cell)


def _secrets(cell, public_text: str) -> list[str]:
    """Texts of one solution cell that must not reach the release: its solution / hidden lines
    (normalised, not trivially short, not also written in the public part of the notebook), the
    images only the answer refers to, and the outputs of a cell that holds an answer."""
    secret, public = _split(cell)
    if not any(line.strip() for line in secret):
        return []
    found = [t for t in _windows(secret) if len(t) >= _MIN_SECRET and any(ch.isalnum() for ch in t) and t not in public_text]
    shown = "\n".join(public)
    for name, bundle in (cell.get("attachments") or {}).items():
        if f"attachment:{name}" not in shown:
            found += [p[:80] for p in _payloads(bundle) if len(p) >= _MIN_SECRET]
    for output in cell.get("outputs", []):
        found += [p[:80] for p in _payloads(output.get("data")) if len(p) >= 40 and p[:80] not in public_text]
    return found


def leak_check(lesson: Lesson, release: Path) -> None:
    """Refuse (AnswerLeakError, naming notebook and cell) a release holding solution text."""
    for spec in lesson.notebooks:
        solution = nbformat.read(str(lesson.solution_path(spec)), as_version=4)
        released = nbformat.read(str(release / spec.file), as_version=4)
        public_text = "\n".join(_norm(line) for cell in solution.cells for line in _split(cell)[1])
        haystack = _release_text(released)
        for index, cell in enumerate(solution.cells):
            for text in _secrets(cell, public_text):
                if text in haystack:
                    raise AnswerLeakError(
                        f"{spec.file} cell {index + 1}: the student version would contain solution text "
                        f"({terminal(text[:60], single_line=True)!r}); refusing to write the release. "
                        "Check the cell's solution markers (### BEGIN SOLUTION / ### END SOLUTION, or nbgrader's "
                        "solution flag)."
                    )


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LearnError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise LearnError(f"{out} exists and was not written by `learn assign`; choose another --out (or remove it)")


def assign(sources: str | list[str], out: Path | None = None, *, lesson_id: str | None = None, jobs: int | None = None,
           echo: Callable[[str], None] | None = None, mutants: bool = True) -> AssignReport:  # fmt: skip
    """Build the pack and the student release in a staging folder, self-test them, and only then
    move them into OUT (default ./assignment-ID). Returns the report (problems: nothing written).

    `mutants`: after the self-test, grade small wrong versions of each solution with the pack's own
    checks (`grader.mutants`, without the cascade matrix, on 5 seeds): `report.mutants` lists what
    the checks cannot tell from the solution. It informs; it does not refuse the assignment."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    staging = Path(tempfile.mkdtemp(prefix="learn-assign-"))
    try:
        lesson = stage(sources, staging, lesson_id)
        generate_lesson(lesson, staging / "release")
        leak_check(lesson, staging / "release")
        out = Path(out) if out is not None else Path(f"assignment-{lesson.id}")
        _prepare_out(out)
        if echo:
            echo(f"self-test: grading the {len(lesson.notebooks)} solution notebook(s) and the generated student version(s)...")
        problems = self_test(lesson, staging / "release", jobs)
        report = AssignReport(lesson, out, list(lesson.checks), problems)
        if problems:
            return report
        if mutants:
            from .mutants import Options, run_mutants

            if echo:
                echo("mutants: grading small wrong versions of each solution with your checks...")
            report.mutants = run_mutants(lesson, Options(seeds=5, mutant_seeds=2, cascade=False, jobs=jobs))
        out.mkdir(parents=True, exist_ok=True)
        for part in ("source", "release"):
            shutil.rmtree(out / part, ignore_errors=True)
            shutil.move(str(staging / part), str(out / part))
        (out / MARKER).write_text(json.dumps({"lesson": lesson.id, "sources": sources, "learn": __version__,
                                              "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}, indent=2) + "\n")  # fmt: skip
        report.lesson = load_lesson(out / "source", exercises_dir=out / "release")
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
