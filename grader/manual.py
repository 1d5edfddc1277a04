"""Items graded by hand (nbgrader's manually graded cells), and notebooks whose locked cells changed.

    lesson.toml [manual.NAME]  ──  learn grade ──► manual_answers: each student's answer text / code,
    (written answer, code answer                   state "needs grading", points NULL
     without tests, task)                                 │
                                learn export --format manual ──► CSV, one row per (student, item)
                                                                  │ the instructor fills points + comment
                                learn import-grades FILE ──► validated, then one transaction:
                                                             manual_answers (graded) + manual_audit
                                                             (who, when, previous value; append-only)

A student's answer is found by the cell's id: metadata `learn.manual` (our release) or nbgrader's
`grade_id` (a notebook from nbgrader's release). A task's answer is the cells the student added
after the task cell. A resubmitted, changed answer needs grading again (the old grade stays in the
audit). Answers are read from the notebook file in the grader's process, never run, and stored
as text: every view makes them inert (grader.inert).

Tamper warnings: the cells of the release that are locked or tests (`learn.locked` / `learn.test`)
are compared, normalised, with the student's; a changed or deleted one is named in the
submission's problems (grade output, CSV, feedback, dashboard), and `learn grade` runs the
instructor's copy of the cell instead (`instructor_cells`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import functools
import getpass
import hashlib
import io
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import LearnError, ManualGradesError
from .inert import csv_cell

__all__ = ["STATEMENTS", "ManualRow", "answers_of", "record_answers", "rows", "pending", "export_csv", "import_grades",
           "tamper_warnings", "instructor_cells", "TAMPER_PREFIX"]  # fmt: skip

MAX_ANSWER = 20_000  # characters of one answer kept in the gradebook
TAMPER_PREFIX = "changed locked cell"
NEEDS, GRADED = "needs grading", "graded"
COLUMNS = ["student", "assignment", "item", "title", "notebook", "kind", "max_points", "state", "points", "comment", "answer"]

# the gradebook tables (gradebook schema 2; created in new gradebooks, added to schema-1 ones)
STATEMENTS = [
    """CREATE TABLE IF NOT EXISTS manual_answers (
        student TEXT NOT NULL,
        assignment TEXT NOT NULL,
        item TEXT NOT NULL,
        notebook TEXT NOT NULL,
        title TEXT NOT NULL,
        kind TEXT NOT NULL,
        max_points REAL NOT NULL,
        answer TEXT NOT NULL,           -- the student's text or code, as submitted (inert in every view)
        answer_hash TEXT NOT NULL,
        found INTEGER NOT NULL,         -- 0: the answer cell was not in the notebook
        state TEXT NOT NULL CHECK (state IN ('needs grading', 'graded')),
        points REAL,
        comment TEXT,
        graded_by TEXT,
        graded_at TEXT,
        submitted_at TEXT NOT NULL,
        PRIMARY KEY (student, assignment, item)
    )""",
    """CREATE TABLE IF NOT EXISTS manual_audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        student TEXT NOT NULL,
        assignment TEXT NOT NULL,
        item TEXT NOT NULL,
        old_state TEXT,
        old_points REAL,
        old_comment TEXT,
        new_state TEXT NOT NULL,
        new_points REAL,
        new_comment TEXT,
        source TEXT
    )""",
    """CREATE TRIGGER IF NOT EXISTS manual_audit_no_update BEFORE UPDATE ON manual_audit
        BEGIN SELECT RAISE(ABORT, 'manual_audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS manual_audit_no_delete BEFORE DELETE ON manual_audit
        BEGIN SELECT RAISE(ABORT, 'manual_audit is append-only'); END""",
]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# reading answers and locked cells from a student's notebook (never executed)


def _cell_id(cell, key: str) -> str | None:
    learn = cell.get("metadata", {}).get("learn")
    if isinstance(learn, dict) and isinstance(learn.get(key), str):
        return learn[key]
    nbg = cell.get("metadata", {}).get("nbgrader")
    if isinstance(nbg, dict) and isinstance(nbg.get("grade_id"), str):
        return nbg["grade_id"]
    return None


def _norm(source: str) -> str:
    return "\n".join(line.rstrip() for line in str(source).strip().splitlines())


def _load(path: Path | None):
    from .notebook import load_notebook

    if path is None:
        return None
    try:
        return load_notebook(path)
    except LearnError:
        return None


def _release_cells(lesson, file: str) -> list:
    """The cells of the student version of one notebook (what the student was given); read only."""
    return _release_cells_of(str(lesson.root), lesson.id, file, lesson.version, lesson.fingerprint())


@functools.lru_cache(maxsize=32)
def _release_cells_of(root: str, lesson_id: str, file: str, version: str, fingerprint: str) -> list:
    import nbformat

    from .generate import make_exercise

    solution = nbformat.read(str(Path(root) / file), as_version=4)
    return make_exercise(solution, lesson_id, file, version).cells


def answers_of(lesson, file: str, path: Path | None) -> dict[str, tuple[str, bool]]:
    """{item: (answer text, found)} for the manual items of one notebook of a submission."""
    items = [m for m in lesson.manual.values() if m.notebook == file]
    if not items:
        return {}
    nb = _load(path)
    cells = nb.cells if nb is not None else []
    given = {_norm(c.source) for c in _release_cells(lesson, file)}
    found: dict[str, tuple[str, bool]] = {}
    for item in items:
        index = next((i for i, c in enumerate(cells) if _cell_id(c, "manual") == item.cell), None)
        if index is None:
            found[item.name] = ("", False)
            continue
        if item.kind == "task":  # the cells the student added after the task
            added = []
            for cell in cells[index + 1 :]:
                if not cell.source.strip():
                    continue
                if _norm(cell.source) in given or _cell_id(cell, "manual") or _cell_id(cell, "test"):
                    break
                added.append(cell.source)
            text = "\n\n".join(added)
        else:
            text = cells[index].source
        found[item.name] = (text[:MAX_ANSWER], True)
    return found


def tamper_warnings(lesson, notebooks: dict[str, Path]) -> list[str]:
    """One line per locked or test cell a student changed or deleted (compared with the release)."""
    warnings = []
    for spec in lesson.notebooks:
        path = notebooks.get(spec.file)
        locked = _locked_cells(lesson, spec.file)
        if path is None or not locked:
            continue
        nb = _load(path)
        if nb is None:
            continue
        theirs = {}
        for cell in nb.cells:
            cid = _cell_id(cell, "locked") or _cell_id(cell, "test")
            if cid is not None:
                theirs.setdefault(cid, _norm(cell.source))
        for cid, source in locked.items():
            if cid not in theirs:
                warnings.append(f"{TAMPER_PREFIX} in {spec.file}: '{cid}' was deleted; graded with the instructor's copy")
            elif theirs[cid] != _norm(source):
                warnings.append(f"{TAMPER_PREFIX} in {spec.file}: '{cid}' was changed; graded with the instructor's copy")
    return warnings


def _locked_cells(lesson, file: str) -> dict[str, str]:
    out = {}
    for cell in _release_cells(lesson, file):
        learn = cell.get("metadata", {}).get("learn")
        if isinstance(learn, dict):
            cid = learn.get("locked") or learn.get("test")
            if isinstance(cid, str):
                out[cid] = cell.source
    return out


@contextlib.contextmanager
def instructor_cells(lesson, notebooks: dict[str, Path]) -> Iterator[tuple[dict[str, Path], dict[Path, Path]]]:
    """Copies of the submitted notebooks in which every changed locked or test cell is the
    instructor's again (a deleted one is not put back). Yields (notebooks to grade, {copy: original});
    the originals themselves when nothing changed. The student's files are never written."""
    import nbformat

    tmp = None
    graded, original = dict(notebooks), {}
    try:
        for spec in lesson.notebooks:
            path = notebooks.get(spec.file)
            locked = _locked_cells(lesson, spec.file)
            nb = _load(path) if path is not None and locked else None
            if nb is None:
                continue
            changed = False
            for cell in nb.cells:
                cid = _cell_id(cell, "locked") or _cell_id(cell, "test")
                if isinstance(cid, str) and cid in locked and _norm(cell.source) != _norm(locked[cid]):
                    cell.source, changed = locked[cid], True
            if changed:
                tmp = tmp or Path(tempfile.mkdtemp(prefix="learn-locked-"))
                copy = tmp / spec.file
                nbformat.write(nb, str(copy))
                graded[spec.file], original[copy] = copy, path
        yield graded, original
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the gradebook side


def record_answers(gb, lesson, student: str, notebooks: dict[str, Path]) -> None:
    """Store a submission's answer to every manual item: new or changed ones need grading."""
    if not lesson.manual:
        return
    answers: dict[str, tuple[str, bool]] = {}
    for spec in lesson.notebooks:
        answers.update(answers_of(lesson, spec.file, notebooks.get(spec.file)))
    now = _now()
    with gb.transaction() as c:
        for item in lesson.manual.values():
            text, found = answers.get(item.name, ("", False))
            digest = hashlib.sha256(f"{found}:{text}".encode()).hexdigest()
            old = c.execute(
                "SELECT answer_hash, state, points, comment FROM manual_answers WHERE student = ? AND assignment = ? AND item = ?",
                (student, lesson.id, item.name),
            ).fetchone()
            if old is not None and old[0] == digest:
                c.execute("UPDATE manual_answers SET title = ?, max_points = ?, kind = ?, notebook = ? WHERE student = ? AND"
                          " assignment = ? AND item = ?", (item.title, item.points, item.kind, item.notebook, student, lesson.id,
                                                           item.name))  # fmt: skip
                continue
            if old is not None and old[1] == GRADED:  # a changed answer: graded again, the old grade kept in the audit
                c.execute("INSERT INTO manual_audit (at, who, student, assignment, item, old_state, old_points, old_comment,"
                          " new_state, new_points, new_comment, source) VALUES (?, 'learn grade', ?, ?, ?, ?, ?, ?, ?, NULL, NULL,"
                          " 'answer changed')", (now, student, lesson.id, item.name, old[1], old[2], old[3], NEEDS))  # fmt: skip
            c.execute(
                "INSERT OR REPLACE INTO manual_answers (student, assignment, item, notebook, title, kind, max_points, answer,"
                " answer_hash, found, state, points, comment, graded_by, graded_at, submitted_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, ?)",
                (student, lesson.id, item.name, item.notebook, item.title, item.kind, item.points, text, digest, int(found), NEEDS, now),
            )


@dataclass
class ManualRow:
    student: str
    assignment: str
    item: str
    title: str
    notebook: str
    kind: str
    max_points: float
    state: str
    points: float | None
    comment: str | None
    answer: str
    found: bool
    graded_by: str | None
    graded_at: str | None


def rows(gb, assignment: str | None = None, students: list[str] | None = None) -> list[ManualRow]:
    query = (
        "SELECT student, assignment, item, title, notebook, kind, max_points, state, points, comment, answer, found, graded_by,"
        " graded_at FROM manual_answers WHERE 1 = 1"
    )
    args: list = []
    if assignment is not None:
        query += " AND assignment = ?"
        args.append(assignment)
    if students:
        query += f" AND student IN ({', '.join('?' * len(students))})"
        args += students
    return [ManualRow(*r[:11], bool(r[11]), r[12], r[13]) for r in gb.conn.execute(query + " ORDER BY assignment, student, rowid", args)]


def pending(gb, assignment: str) -> tuple[int, float]:
    """(answers that need grading, their points) of an assignment."""
    n, points = gb.conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(max_points), 0) FROM manual_answers WHERE assignment = ? AND state = ?", (assignment, NEEDS)
    ).fetchone()
    return int(n), float(points)


def totals_line(gb, lesson) -> str | None:
    """`learn grade`'s line on the hand-graded part: auto points, points pending."""
    if not lesson.manual:
        return None
    n, points = pending(gb, lesson.id)
    manual_max = sum(m.points for m in lesson.manual.values())
    return (f"{lesson.id}: {lesson.max_points:g} auto points + {manual_max:g} graded by hand per student; {n} answer(s) need grading"
            f" ({points:g} points pending): `learn export --format manual --out FILE`, fill in points, `learn import-grades FILE`")  # fmt: skip


def _fmt(value) -> str | int | float:
    if value is None:
        return ""
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


def export_csv(gb, assignment: str | None = None, students: list[str] | None = None) -> str:
    """One row per (student, item): who, what, the maximum, the state, points and comment (empty
    until graded), and the answer. Text cells are inert (no spreadsheet formula)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows(gb, assignment, students):
        answer = r.answer if r.found else "(no answer: the cell was not in the submitted notebook)"
        writer.writerow([csv_cell(v) for v in (r.student, r.assignment, r.item, r.title, r.notebook, r.kind)]
                        + [_fmt(r.max_points), r.state, _fmt(r.points), csv_cell(r.comment or ""), csv_cell(answer)])  # fmt: skip
    return out.getvalue()


def _points_value(text: str, where: str, maximum: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ManualGradesError(f"{where}: points {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ManualGradesError(f"{where}: points must be between 0 and {maximum:g}, not {text}")
    if value > maximum + 1e-9:
        raise ManualGradesError(f"{where}: {value:g} points is over the item's maximum of {maximum:g}")
    return value


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManualGradesError(f"cannot read {path}: {exc}") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in ("student", "assignment", "item", "points") if c not in header]
        if missing:
            raise ManualGradesError(f"{path}: not a manual grades file (no column {', '.join(missing)}); "
                                    "start from `learn export --format manual`")  # fmt: skip
        return list(reader)
    except csv.Error as exc:
        raise ManualGradesError(f"{path}: not readable as CSV: {exc}") from None


def import_grades(gb, path: Path, who: str | None = None) -> dict[str, int]:
    """Record the points and comments of a filled-in manual grades file. Every row is checked
    first; one bad row (unknown student or item, points not a number or over the maximum) and
    nothing is written. Rows with empty points are skipped (not graded yet); a row whose points
    and comment are unchanged is left alone. Each change is audited: who, when, the previous value."""
    who = who or _user()
    known = {}
    for r in rows(gb):  # the exported cells are inert: a student id starting with "=" reads "'=" in the file
        for student in {r.student, str(csv_cell(r.student))}:
            known[(student, r.assignment, r.item)] = r
    students = {k[0] for k in known}
    changes = []
    for line, row in enumerate(_read_csv(path), 2):
        student, assignment, item = (row.get(k) or "" for k in ("student", "assignment", "item"))
        points_text, comment = (row.get("points") or "").strip(), (row.get("comment") or "").strip()
        where = f"{path}, line {line}"
        if not points_text:
            if comment:
                raise ManualGradesError(f"{where}: a comment without points; give the points too (0 is fine)")
            continue
        record = known.get((student, assignment, item))
        if record is None:
            if student not in students:
                raise ManualGradesError(f"{where}: unknown student {csv_cell(student)!r} (not in the gradebook {gb.path})")
            raise ManualGradesError(f"{where}: {csv_cell(student)!r} has no manual item {csv_cell(item)!r} in {csv_cell(assignment)!r}")
        points = _points_value(points_text, where, record.max_points)
        if record.state == GRADED and record.points == points and (record.comment or "") == comment:
            continue
        changes.append((record, points, comment))
    now = _now()
    with gb.transaction() as c:
        for record, points, comment in changes:
            c.execute("INSERT INTO manual_audit (at, who, student, assignment, item, old_state, old_points, old_comment, new_state,"
                      " new_points, new_comment, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (now, who, record.student, record.assignment, record.item, record.state, record.points, record.comment,
                       GRADED, points, comment, str(path)))  # fmt: skip
            c.execute("UPDATE manual_answers SET state = ?, points = ?, comment = ?, graded_by = ?, graded_at = ? WHERE student = ?"
                      " AND assignment = ? AND item = ?", (GRADED, points, comment, who, now, record.student, record.assignment,
                                                           record.item))  # fmt: skip
    return {"recorded": len(changes)}


def audit(gb, assignment: str | None = None) -> list[tuple]:
    query = "SELECT at, who, student, assignment, item, old_state, old_points, old_comment, new_state, new_points, new_comment FROM manual_audit"
    return list(
        gb.conn.execute(query + (" WHERE assignment = ?" if assignment else "") + " ORDER BY id", (assignment,) if assignment else ())
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"
