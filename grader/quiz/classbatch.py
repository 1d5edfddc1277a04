"""A class's quiz answers, graded in one batch into the gradebook, with per-answer overrides.

    DIR/alice.yaml, DIR/bob.yaml ...   (each an answers file, as `learn quiz QUIZ --answers`)
        -> grade_answers (same key points as for learners)
        -> overrides FILE: {student: {question: {points: 0.5 | correct: true | key_points: {...}, note: ...}}}
        -> gradebook table quiz_answers (one row per student and question, replaced on re-runs)

The gradebook is opened with grader.gradebook.Gradebook (its checks and locking); this module
adds only its own table. A student file that cannot be read or parsed is reported and skipped,
the other students are still graded; a bad override file stops everything before any write.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import QuizAnswersError
from ..yamlfile import load_yaml

__all__ = ["ClassResult", "StudentResult", "grade_class", "parse_overrides", "QUIZ_ANSWERS_SCHEMA"]

QUIZ_ANSWERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS quiz_answers (
    quiz TEXT NOT NULL,
    student TEXT NOT NULL,
    question TEXT NOT NULL,
    topic TEXT NOT NULL,
    type TEXT NOT NULL,
    answer TEXT,                 -- JSON of what the student gave; NULL when unanswered
    auto_correct INTEGER NOT NULL,
    auto_detail TEXT,            -- free questions: JSON of the key points found / missing
    override TEXT,               -- JSON of the instructor's override, NULL if none
    points REAL NOT NULL,
    max_points REAL NOT NULL,
    graded_at TEXT NOT NULL,
    PRIMARY KEY (quiz, student, question)
)
"""
_OVERRIDE_KEYS = {"points", "correct", "key_points", "note"}


@dataclass
class StudentResult:
    student: str
    points: float = 0.0
    max_points: float = 0.0
    overrides: int = 0
    error: str = ""


@dataclass
class ClassResult:
    quiz: str
    students: list[StudentResult] = field(default_factory=list)

    @property
    def errors(self) -> list[StudentResult]:
        return [s for s in self.students if s.error]


def parse_overrides(text: str, source: str, quiz) -> dict[str, dict[str, dict]]:
    """student -> question -> override; raises QuizAnswersError naming the entry."""

    data = load_yaml(text, source, QuizAnswersError) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise QuizAnswersError(f"{source}: overrides are a mapping of student -> question id -> override")
    ids = {q.id for q in quiz.questions}
    out: dict[str, dict[str, dict]] = {}
    for student, per in data.items():
        for qid, override in per.items():
            where = f"{source}: {student} / {qid}"
            if qid not in ids:
                raise QuizAnswersError(f"{where}: no question {qid!r} in quiz {quiz.id}")
            out.setdefault(str(student), {})[qid] = _check_override(override, quiz.question(qid), where)
    return out


def _check_override(override, question, where: str) -> dict:
    if isinstance(override, bool):
        override = {"correct": override}
    elif isinstance(override, (int, float)):
        override = {"points": override}
    if not isinstance(override, dict) or not override or set(override) - _OVERRIDE_KEYS:
        raise QuizAnswersError(f"{where}: an override is `points: N`, `correct: true/false` or `key_points: {{id: true}}` (and `note:`)")
    if "points" in override:
        p = override["points"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= question.points:
            raise QuizAnswersError(f"{where}: points must be a number from 0 to {question.points:g}")
    if "correct" in override and not isinstance(override["correct"], bool):
        raise QuizAnswersError(f"{where}: correct must be true or false")
    if "key_points" in override:
        kps = override["key_points"]
        known = {k.id for k in question.key_points}
        if question.type != "free":
            raise QuizAnswersError(f"{where}: key_points overrides are for free questions only")
        if not isinstance(kps, dict) or not all(isinstance(v, bool) for v in kps.values()) or set(kps) - known:
            raise QuizAnswersError(f"{where}: key_points must map key point ids ({', '.join(sorted(known))}) to true or false")
    if "note" in override and not isinstance(override["note"], str):
        raise QuizAnswersError(f"{where}: note must be text")
    return override


def _points(question, feedback, override: dict | None) -> float:
    from .free import final_verdict, grade_free

    if override and "points" in override:
        return float(override["points"])
    if override and "correct" in override:
        return question.points if override["correct"] else 0.0
    if feedback is None:
        return 0.0
    if question.type == "free":
        verdict = grade_free(question.key_points, str(feedback.given))
        confirmed = dict((feedback.detail or {}).get("confirmed") or {})
        confirmed.update((override or {}).get("key_points") or {})
        return question.points * final_verdict(verdict, confirmed).fraction
    return question.points if feedback.correct else 0.0


def _student_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise QuizAnswersError(f"{folder}: not a folder of answers files (one STUDENT.yaml per student)")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise QuizAnswersError(f"{folder}: no answers files (*.yaml) in it")
    return files


def grade_class(quiz, folder: Path, gradebook_path: Path, overrides: dict | None = None, now: str | None = None) -> ClassResult:
    """Grade every STUDENT.yaml in `folder`; write one row per student and question."""
    from ..gradebook import Gradebook
    from .answers import jsonable
    from .report import grade_answers, parse_answers

    overrides = overrides or {}
    files = _student_files(folder)
    unknown = sorted(set(overrides) - {p.stem for p in files})
    if unknown:
        raise QuizAnswersError(f"overrides name student(s) with no answers file: {', '.join(unknown)}")
    now = now or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    result = ClassResult(quiz.id)
    with Gradebook(gradebook_path) as gb:
        with gb.transaction() as c:
            c.execute(QUIZ_ANSWERS_SCHEMA)
        for path in files:
            student = StudentResult(path.stem)
            result.students.append(student)
            try:
                answers = parse_answers(path.read_text(encoding="utf-8"), str(path), quiz)
            except (OSError, UnicodeDecodeError) as exc:
                student.error = f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
                continue
            except QuizAnswersError as exc:
                student.error = str(exc)
                continue
            report = grade_answers(quiz, answers)
            mine = overrides.get(path.stem, {})
            rows = []
            for q in quiz.questions:
                fb, override = report.feedback.get(q.id), mine.get(q.id)
                points = _points(q, fb, override)
                student.points += points
                student.max_points += q.points
                student.overrides += override is not None
                detail = fb.detail.get("provisional") if fb is not None and fb.detail else None
                rows.append((quiz.id, student.student, q.id, q.topic, q.type, json.dumps(jsonable(fb.given)) if fb else None,
                             int(bool(fb and fb.correct)), json.dumps(detail) if detail else None,
                             json.dumps(override) if override else None, points, q.points, now))  # fmt: skip
            with gb.transaction() as c:
                c.executemany("INSERT OR REPLACE INTO quiz_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return result


def run_class(quiz, folder: Path, gradebook_path: Path, overrides_path: Path | None, console) -> int:
    """`learn quiz QUIZ --class DIR`: grade, print one line per student; the exit code."""
    from rich.text import Text

    from ..inert import terminal

    overrides = {}
    if overrides_path is not None:
        try:
            text = overrides_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise QuizAnswersError(f"{overrides_path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        overrides = parse_overrides(text, str(overrides_path), quiz)
    result = grade_class(quiz, folder, gradebook_path, overrides)
    for s in result.students:
        if s.error:
            console.print(Text(f"✘ {terminal(s.student)}: not graded: {terminal(s.error)}", style="red"))
        else:
            extra = f"  ({s.overrides} override{'s' * (s.overrides != 1)})" if s.overrides else ""
            console.print(Text(f"{terminal(s.student)}: {s.points:g}/{s.max_points:g}{extra}"))
    graded = len(result.students) - len(result.errors)
    console.print(Text(f"{graded} of {len(result.students)} students graded into {gradebook_path} (table quiz_answers)", style="bold"))
    return 1 if result.errors else 0
