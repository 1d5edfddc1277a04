"""The learner's history: every check and quiz attempt, hints shown, solutions viewed.

One SQLite file per learner, in the user data directory (platformdirs' `user_data_dir("learn")`,
or `$LEARN_HOME/progress.db`), so the history follows the learner across folders. WAL mode and a
busy timeout let `learn watch` and a `learn check` in another terminal write side by side.

Recording is best effort by design: a corrupt, locked or read-only database must never stop
grading. `record_*` functions return None on success and a one-line warning otherwise.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import LearnError, ProgressError
from .results import RunResult, Status

__all__ = [
    "db_path",
    "connect",
    "record_check",
    "record_quiz",
    "record_event",
    "count_events",
    "latest_score",
    "QuizAnswer",
    "SCHEMA_VERSION",
    "ProgressError",
    "ItemProgress",
    "LessonProgress",
    "TopicReview",
    "ScorePoint",
    "ProgressSummary",
    "summarize",
    "hints_shown",
    "render_progress",
]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('check', 'quiz')),
    lesson TEXT NOT NULL,
    notebook TEXT,                 -- exercise file for checks, NULL for quizzes
    workdir TEXT,
    at TEXT NOT NULL,              -- ISO 8601, UTC
    duration REAL NOT NULL DEFAULT 0,
    points REAL NOT NULL DEFAULT 0,
    max_points REAL NOT NULL DEFAULT 0,
    seed INTEGER,
    grader_version TEXT
);
CREATE TABLE IF NOT EXISTS results (
    attempt_id INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
    item TEXT NOT NULL,            -- graded function name, or quiz question id
    topic TEXT,                    -- quiz topic tag
    status TEXT NOT NULL,
    passed INTEGER NOT NULL,
    points REAL NOT NULL DEFAULT 0,
    max_points REAL NOT NULL DEFAULT 0,
    duration REAL NOT NULL DEFAULT 0,
    kind TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'hint' | 'solution'
    lesson TEXT,
    item TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS results_item ON results(item);
CREATE INDEX IF NOT EXISTS attempts_lesson ON attempts(lesson, at);
"""


def db_path() -> Path:
    from .paths import data_dir

    return data_dir() / "progress.db"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@contextmanager
def connect(path: Path | None = None, create: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection with the schema in place (raises sqlite3.Error if the file is unusable)."""
    path = path or db_path()
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise sqlite3.OperationalError(f"no progress database at {path}")
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"progress database {path} was written by a newer learn (schema {version})")
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def history_warning(exc: Exception, path: Path | None = None) -> str:
    return f"progress history not updated ({path or db_path()}: {exc}); grading is unaffected"


def append_rows(schema: str, insert: str, rows: list[tuple], path: Path | None = None) -> str | None:
    """Append rows to one of the study loop's own tables (`schema` creates it if missing).
    Returns a warning instead of raising: a history that cannot be written never fails a grade."""
    if not rows:
        return None
    try:
        with connect(path) as conn:
            conn.executescript(schema)
            conn.executemany(insert, rows)
        return None
    except (sqlite3.Error, OSError) as exc:
        return history_warning(exc, path)


def record_check(run: RunResult, workdir: str | Path | None = None, path: Path | None = None) -> str | None:
    """Store one `learn check` (one attempt per graded notebook). Returns a warning or None."""
    try:
        with connect(path) as conn:
            for nb in run.notebooks:
                if nb.status is Status.ERROR or not nb.lesson:
                    continue
                cur = conn.execute(
                    "INSERT INTO attempts (kind, lesson, notebook, workdir, at, duration, points, max_points, seed, grader_version)"
                    " VALUES ('check', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        nb.lesson,
                        nb.exercise,
                        str(workdir or Path(nb.path).parent.resolve()),
                        _now(),
                        nb.duration,
                        nb.points,
                        nb.max_points,
                        nb.seed,
                        nb.grader_version,
                    ),  # fmt: skip
                )
                conn.executemany(
                    "INSERT INTO results (attempt_id, item, status, passed, points, max_points, duration, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(cur.lastrowid, c.name, c.status.value, int(c.passed), c.points, c.max_points, c.duration, c.kind) for c in nb.checks],
                )
        return None
    except (sqlite3.Error, OSError) as exc:
        return history_warning(exc, path)


@dataclass
class QuizAnswer:
    question: str
    topic: str
    correct: bool
    points: float = 1.0
    max_points: float = 1.0
    duration: float = 0.0


def record_quiz(lesson: str, answers: list[QuizAnswer], duration: float = 0.0, path: Path | None = None) -> str | None:
    """Store one quiz attempt. Returns a warning or None."""
    try:
        with connect(path) as conn:
            cur = conn.execute(
                "INSERT INTO attempts (kind, lesson, at, duration, points, max_points) VALUES ('quiz', ?, ?, ?, ?, ?)",
                (lesson, _now(), duration, sum(a.points for a in answers), sum(a.max_points for a in answers)),
            )
            conn.executemany(
                "INSERT INTO results (attempt_id, item, topic, status, passed, points, max_points, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        cur.lastrowid,
                        a.question,
                        a.topic,
                        "passed" if a.correct else "failed",
                        int(a.correct),
                        a.points,
                        a.max_points,
                        a.duration,
                    )
                    for a in answers
                ],  # fmt: skip
            )
        return None
    except (sqlite3.Error, OSError) as exc:
        return history_warning(exc, path)


def record_event(kind: str, item: str, lesson: str | None = None, detail: str | None = None, path: Path | None = None) -> str | None:
    try:
        with connect(path) as conn:
            conn.execute("INSERT INTO events (at, kind, lesson, item, detail) VALUES (?, ?, ?, ?, ?)", (_now(), kind, lesson, item, detail))
        return None
    except (sqlite3.Error, OSError) as exc:
        return history_warning(exc, path)


def count_events(kind: str, item: str, lesson: str | None = None, path: Path | None = None) -> int:
    """How many times an event happened (0 if the history cannot be read)."""
    try:
        with connect(path, create=False) as conn:
            query = "SELECT COUNT(*) FROM events WHERE kind = ? AND item = ?"
            args: tuple = (kind, item)
            if lesson is not None:
                query += " AND lesson = ?"
                args += (lesson,)
            return int(conn.execute(query, args).fetchone()[0])
    except (sqlite3.Error, OSError):
        return 0


def latest_score(lesson: str, workdir: str | Path | None = None, path: Path | None = None) -> tuple[float, float] | None:
    """(points, max points) summed over the latest check of each notebook of a lesson, if any."""
    try:
        with connect(path, create=False) as conn:
            query = (
                "SELECT a.notebook, a.points, a.max_points FROM attempts a WHERE a.kind = 'check' AND a.lesson = ?"
                + (" AND a.workdir = ?" if workdir is not None else "")
                + " ORDER BY a.at, a.id"
            )
            args: tuple = (lesson,) + ((str(Path(workdir).resolve()),) if workdir is not None else ())
            latest: dict[str, tuple[float, float]] = {}
            for notebook, points, max_points in conn.execute(query, args):
                latest[notebook] = (points, max_points)
    except (sqlite3.Error, OSError):
        return None
    if not latest:
        return None
    return sum(p for p, _ in latest.values()), sum(m for _, m in latest.values())


# ---------------------------------------------------------------------------------------------
# reading the history back: `learn progress`, its HTML page, `learn hint`
#
# Unlike recording, reading is what the user asked for, so an unreadable database is an error
# (ProgressError, exit 2) with a message that says what to do - never a traceback.


def hints_shown(item: str, lesson: str | None = None, path: Path | None = None) -> int:
    """How many hints for `item` were shown since its hints were last reset (0 if unreadable)."""
    try:
        with connect(path, create=False) as conn:
            where, args = "item = ?", [item]
            if lesson is not None:
                where += " AND lesson = ?"
                args.append(lesson)
            reset = conn.execute(f"SELECT MAX(id) FROM events WHERE kind = 'hint_reset' AND {where}", args).fetchone()[0] or 0
            return int(
                conn.execute(f"SELECT COUNT(*) FROM events WHERE kind = 'hint' AND id > ? AND {where}", [reset, *args]).fetchone()[0]
            )
    except (sqlite3.Error, OSError):
        return 0


@dataclass
class ItemProgress:
    """One graded function of a lesson, as far as the history knows it."""

    item: str
    title: str = ""
    notebook: str | None = None
    max_points: float = 0.0
    attempts: int = 0  # checks in which this function was graded
    status: str | None = None  # in the latest of them; None: never checked
    points: float = 0.0  # in the latest of them
    passed_ever: bool = False
    hints: int = 0
    solution_viewed: bool = False
    last_at: str | None = None

    @property
    def solved(self) -> bool:
        return self.status == Status.PASSED.value


@dataclass
class LessonProgress:
    lesson: str
    title: str
    items: list[ItemProgress]
    attempts: int = 0  # notebook checks
    streak: int = 0  # consecutive days, up to today, with a check or quiz in this lesson
    last_at: str | None = None
    quiz_attempts: int = 0
    quiz_points: float | None = None  # of the latest quiz attempt
    quiz_max_points: float | None = None
    installed: bool = True  # False: known only from the history (pack since removed, or quiz-only)

    @property
    def solved(self) -> int:
        return sum(1 for i in self.items if i.solved)

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def points(self) -> float:
        return round(sum(i.points for i in self.items), 4)

    @property
    def max_points(self) -> float:
        return round(sum(i.max_points for i in self.items), 4)

    @property
    def fraction(self) -> float:
        return self.points / self.max_points if self.max_points else 0.0


@dataclass
class TopicReview:
    """A quiz topic, judged on the latest answer to each of its questions."""

    topic: str
    correct: int
    total: int
    missed: list[str]  # question ids whose latest answer was wrong
    lessons: list[str]

    @property
    def needs_review(self) -> bool:
        return self.correct < self.total


@dataclass
class ScorePoint:
    """A lesson's score (latest result of each function) right after one check."""

    lesson: str
    at: str
    points: float
    max_points: float


@dataclass
class ProgressSummary:
    db: Path
    lessons: list[LessonProgress]
    history: list[ScorePoint]
    topics: list[TopicReview]
    streak: int = 0  # over all lessons
    checks: int = 0
    quizzes: int = 0

    @property
    def empty(self) -> bool:
        return not self.checks and not self.quizzes

    @property
    def review_topics(self) -> list[TopicReview]:
        return [t for t in self.topics if t.needs_review]


def _local_day(at: str) -> _dt.date:
    return _dt.datetime.fromisoformat(at).astimezone().date()


def _streak(days: set[_dt.date], today: _dt.date) -> int:
    """Consecutive active days ending today (or yesterday: the streak is still alive today)."""
    day = today if today in days else today - _dt.timedelta(days=1)
    count = 0
    while day in days:
        count += 1
        day -= _dt.timedelta(days=1)
    return count


def _read_history(path: Path) -> dict[str, list[tuple]]:
    queries = {
        "checks": "SELECT a.id, a.lesson, a.notebook, a.at, r.item, r.status, r.points, r.max_points"
        " FROM attempts a JOIN results r ON r.attempt_id = a.id WHERE a.kind = 'check' ORDER BY a.at, a.id, r.rowid",
        "attempts": "SELECT id, kind, lesson, at, points, max_points FROM attempts ORDER BY at, id",
        "quiz": "SELECT a.lesson, r.item, r.topic, r.passed FROM attempts a JOIN results r ON r.attempt_id = a.id"
        " WHERE a.kind = 'quiz' ORDER BY a.at, a.id, r.rowid",
        "events": "SELECT kind, lesson, item FROM events ORDER BY id",
    }
    if not path.exists():
        return {k: [] for k in queries}
    try:
        with connect(path, create=False) as conn:
            return {k: conn.execute(q).fetchall() for k, q in queries.items()}
    except (sqlite3.Error, OSError) as exc:
        raise ProgressError(
            f"cannot read your progress history {path}: {exc}. If it is damaged, move it away to start a new one "
            "(learn check keeps grading either way)."
        ) from None


class _Lessons(dict):
    """LessonProgress by lesson id; lessons met only in the history are added on first sight."""

    def of(self, lesson_id: str) -> LessonProgress:
        if lesson_id not in self:
            self[lesson_id] = LessonProgress(lesson_id, lesson_id, [], installed=False)
        return self[lesson_id]

    def item(self, lesson_id: str, name: str, notebook: str | None = None) -> ItemProgress | None:
        lp = self.of(lesson_id)
        found = next((i for i in lp.items if i.item == name), None)
        if found is None and not lp.installed:  # what a removed pack graded, learnt from its history
            found = ItemProgress(name, name, notebook)
            lp.items.append(found)
        return found


def _apply_checks(lessons: _Lessons, rows: list[tuple]) -> list[ScorePoint]:
    """Latest result per function, and the lesson's score after each check."""
    history: list[ScorePoint] = []
    current = None
    for attempt_id, lesson_id, notebook, at, name, status, points, max_points in rows:
        item = lessons.item(lesson_id, name, notebook)
        lp = lessons.of(lesson_id)
        if item is not None:
            item.attempts += 1
            item.status, item.points, item.last_at = status, points, at
            item.passed_ever = item.passed_ever or status == Status.PASSED.value
            if not lp.installed:
                item.max_points = max_points
        point = ScorePoint(lesson_id, at, lp.points, lp.max_points)
        if attempt_id == current:
            history[-1] = point  # one point per check, after all of its functions
        else:
            history.append(point)
        current = attempt_id
    return history


def _apply_attempts(lessons: _Lessons, rows: list[tuple]) -> dict[str, set[_dt.date]]:
    """Check and quiz counts per lesson; returns the days each lesson was worked on."""
    days: dict[str, set[_dt.date]] = {}
    for _, kind, lesson_id, at, points, max_points in rows:
        lp = lessons.of(lesson_id)
        days.setdefault(lesson_id, set()).add(_local_day(at))
        lp.last_at = at
        if kind == "check":
            lp.attempts += 1
        else:
            lp.quiz_attempts += 1
            lp.quiz_points, lp.quiz_max_points = points, max_points
    return days


def _topics(rows: list[tuple]) -> list[TopicReview]:
    """Quiz topics judged on the latest answer to each question, weakest first."""
    latest: dict[tuple[str, str], tuple[str, bool]] = {}
    for lesson_id, question, topic, passed in rows:
        latest[(lesson_id, question)] = (topic or "general", bool(passed))
    topics: dict[str, TopicReview] = {}
    for (lesson_id, question), (topic, passed) in latest.items():
        t = topics.setdefault(topic, TopicReview(topic, 0, 0, [], []))
        t.total += 1
        t.correct += int(passed)
        if not passed:
            t.missed.append(question)
        if lesson_id not in t.lessons:
            t.lessons.append(lesson_id)
    return sorted(topics.values(), key=lambda t: (t.correct / t.total if t.total else 1.0, t.topic))


def _apply_events(lessons: _Lessons, rows: list[tuple]) -> None:
    for kind, lesson_id, name in rows:
        candidates = [lessons[lesson_id]] if lesson_id in lessons else list(lessons.values())
        item = next((i for lp in candidates for i in lp.items if i.item == name), None)
        if item is not None and kind == "hint":
            item.hints += 1
        elif item is not None and kind == "solution":
            item.solution_viewed = True


def summarize(path: Path | None = None, lessons: dict | None = None, today: _dt.date | None = None) -> ProgressSummary:
    """Everything `learn progress` shows, from the history and the installed lesson packs.

    `lessons` defaults to all installed lessons (a broken pack is left out, not fatal).
    Raises ProgressError if the database exists but cannot be read.
    """
    path = path or db_path()
    today = today or _dt.date.today()
    if lessons is None:
        try:
            from .lessons import all_lessons

            lessons = all_lessons()
        except LearnError:
            lessons = {}
    rows = _read_history(path)
    progress = _Lessons()
    for lesson in lessons.values():
        items = [ItemProgress(c.name, c.title, c.notebook, c.points) for c in lesson.checks.values()]
        progress[lesson.id] = LessonProgress(lesson.id, lesson.title, items)
    history = _apply_checks(progress, rows["checks"])
    days = _apply_attempts(progress, rows["attempts"])
    _apply_events(progress, rows["events"])
    for lp in progress.values():
        lp.streak = _streak(days.get(lp.lesson, set()), today)
    return ProgressSummary(
        db=path,
        lessons=list(progress.values()),
        history=history,
        topics=_topics(rows["quiz"]),
        streak=_streak(set().union(*days.values()), today),
        checks=sum(1 for r in rows["attempts"] if r[1] == "check"),
        quizzes=sum(1 for r in rows["attempts"] if r[1] == "quiz"),
    )


def render_progress(summary: ProgressSummary, console=None) -> None:
    """The terminal view of `learn progress` (rich)."""
    from rich.console import Console
    from rich.table import Table

    from .inert import markup as escape  # rich markup escaped, and no control characters reach the terminal

    console = console or Console()
    table = Table(box=None, padding=(0, 2))
    for col, justify in (("lesson", "left"), ("solved", "right"), ("points", "right"), ("attempts", "right"),
                         ("streak", "right"), ("quiz", "right"), ("last activity", "left")):  # fmt: skip
        table.add_column(col, justify=justify, no_wrap=True)
    for lp in summary.lessons:
        style = "green" if lp.total and lp.solved == lp.total else None
        quiz = f"{lp.quiz_points:g}/{lp.quiz_max_points:g}" if lp.quiz_points is not None else "-"
        last = _dt.datetime.fromisoformat(lp.last_at).astimezone().strftime("%b %d %H:%M") if lp.last_at else "never"
        streak = f"{lp.streak} day{'s' * (lp.streak != 1)}" if lp.streak else "-"
        table.add_row(escape(lp.lesson), f"{lp.solved}/{lp.total}", f"{lp.points:g}/{lp.max_points:g}", str(lp.attempts),
                      streak, quiz, last, style=style)  # fmt: skip
    console.print(table)
    if summary.empty:
        console.print("No checks recorded yet: run `learn check LESSON` and your progress appears here.")
    review = summary.review_topics
    if review:
        topics = ", ".join(f"{escape(t.topic)} ({t.correct}/{t.total})" for t in review)
        console.print(f"Quiz topics to review: {topics}")
    todo = [i.item for lp in summary.lessons for i in lp.items if i.attempts and not i.solved]
    if todo:
        console.print(f"Still failing: {escape(', '.join(todo))}  (stuck? `learn hint NAME`)")
    console.print(f"[dim]{summary.checks} checks, {summary.quizzes} quizzes recorded in {escape(str(summary.db))}[/dim]")
