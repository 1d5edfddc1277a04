"""The learner's history: every check and quiz attempt, hints shown, solutions viewed.

One SQLite file per learner, in the user data directory (platformdirs' `user_data_dir("learn")`,
or `$LEARN_HOME/progress.db`), so the history follows the learner across folders. WAL mode and a
busy timeout let `learn watch` and a `learn check` in another terminal write side by side.

Recording is best effort by design: a corrupt, locked or read-only database must never stop
grading. `record_*` functions return None on success and a one-line warning otherwise.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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
    if os.environ.get("LEARN_HOME"):
        return Path(os.environ["LEARN_HOME"]) / "progress.db"
    import platformdirs

    return Path(platformdirs.user_data_dir("learn", appauthor=False)) / "progress.db"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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


def _warning(exc: Exception, path: Path | None = None) -> str:
    return f"progress history not updated ({path or db_path()}: {exc}); grading is unaffected"


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
                    (nb.lesson, nb.exercise, str(workdir or Path(nb.path).parent.resolve()), _now(), nb.duration,
                     nb.points, nb.max_points, nb.seed, nb.grader_version),  # fmt: skip
                )
                conn.executemany(
                    "INSERT INTO results (attempt_id, item, status, passed, points, max_points, duration, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(cur.lastrowid, c.name, c.status.value, int(c.passed), c.points, c.max_points, c.duration, c.kind) for c in nb.checks],
                )
        return None
    except (sqlite3.Error, OSError) as exc:
        return _warning(exc, path)


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
                [(cur.lastrowid, a.question, a.topic, "passed" if a.correct else "failed", int(a.correct), a.points, a.max_points, a.duration)
                 for a in answers],  # fmt: skip
            )
        return None
    except (sqlite3.Error, OSError) as exc:
        return _warning(exc, path)


def record_event(kind: str, item: str, lesson: str | None = None, detail: str | None = None, path: Path | None = None) -> str | None:
    try:
        with connect(path) as conn:
            conn.execute("INSERT INTO events (at, kind, lesson, item, detail) VALUES (?, ?, ?, ?, ?)", (_now(), kind, lesson, item, detail))
        return None
    except (sqlite3.Error, OSError) as exc:
        return _warning(exc, path)


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
