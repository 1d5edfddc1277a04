"""The instructor's gradebook: one SQLite file holding every student's latest graded submission.

    students ─< submissions ─< check_results
                  │  content hash, grader version, assignment fingerprint (what was graded, how)
                  │  state: pending (never graded) | graded | failed (machinery; graded again next run)
                  │  lease: owner + expiry while a process grades it (the old grade stays readable)
                  └  the full RunResult JSON (feedback and exports are views of it)
    manual_answers, manual_audit (schema 2): answers graded by hand and who changed what (grader.manual)

Safe under crashes and concurrency, because an instructor will kill a long batch and start it
again, or start a second one by mistake:
  * WAL journal and a busy timeout; every write is one short `BEGIN IMMEDIATE` transaction;
  * a submission's results (row, per-check rows, JSON) are written in a single transaction, so
    `kill -9` leaves either the old grade or the new one, never half of one;
  * before grading, a process *claims* the submission with a lease (owner + expiry, renewed while it
    works). Another process skips submissions under a live lease; a lease whose owner died (same
    host, pid gone) or that expired is taken over, so a killed run's claims are graded next time.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GradebookError
from .manual import STATEMENTS as _MANUAL_STATEMENTS
from .results import RunResult, Status

__all__ = ["Gradebook", "SubmissionRecord", "CheckRow", "SCHEMA_VERSION", "LEASE_S"]

SCHEMA_VERSION = 2  # 2: the manual-grading tables of grader.manual; a schema-1 gradebook gets them on open
KIND = "learn-gradebook"
BUSY_TIMEOUT_S = 30.0
LEASE_S = 120.0  # a claim lives this long unless renewed (renewed every LEASE_S / 4 while grading)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS students (
    id TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    student TEXT NOT NULL REFERENCES students(id),
    assignment TEXT NOT NULL,
    content_hash TEXT NOT NULL,     -- sha256 over the submitted notebooks (name + bytes)
    grader_version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,      -- the assignment as graded: pack contents, seed, options
    state TEXT NOT NULL CHECK (state IN ('pending', 'graded', 'failed')),
    lease_owner TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT,                    -- ok | failed | error (the submission as a whole)
    points REAL,
    max_points REAL,
    duration REAL,
    error TEXT,
    error_kind TEXT,
    problems TEXT,                  -- JSON list: missing / extra / unreadable notebooks
    graded_at TEXT,
    result_json TEXT,               -- RunResult.to_dict()
    UNIQUE (student, assignment)
);
CREATE TABLE IF NOT EXISTS check_results (
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    notebook TEXT NOT NULL,
    check_name TEXT NOT NULL,
    title TEXT,
    status TEXT NOT NULL,
    points REAL NOT NULL,
    max_points REAL NOT NULL,
    kind TEXT,
    message TEXT,
    hidden INTEGER NOT NULL DEFAULT 0,
    duration REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (submission_id, notebook, check_name)
);
CREATE INDEX IF NOT EXISTS submissions_state ON submissions(assignment, state);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def new_owner() -> str:
    """A lease owner id: host and pid (to spot a dead owner on this host), plus a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_dead(owner: str | None) -> bool:
    """True when the owner ran on this host and its process is gone."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdecimal():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


@dataclass
class CheckRow:
    notebook: str
    name: str
    title: str | None
    status: str
    points: float
    max_points: float
    kind: str | None
    message: str
    hidden: bool
    duration: float


@dataclass
class SubmissionRecord:
    """One student's latest submission of one assignment, as the gradebook holds it."""

    id: int
    student: str
    assignment: str
    state: str
    status: str | None
    points: float
    max_points: float
    duration: float
    error: str | None
    error_kind: str | None
    problems: list[str]
    graded_at: str | None
    content_hash: str
    grader_version: str
    fingerprint: str
    checks: list[CheckRow] = field(default_factory=list)
    result_json: str | None = None

    def run_result(self) -> RunResult | None:
        if not self.result_json:
            return None
        return RunResult.from_dict(json.loads(self.result_json))


class Gradebook:
    """An open gradebook file. Use as a context manager; every method is its own transaction."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        self.owner = new_owner()
        if not create and not self.path.is_file():
            raise GradebookError(f"no gradebook at {self.path} (run `learn grade ... --gradebook {self.path}` first)")
        if self.path.exists() and not self.path.is_file():
            raise GradebookError(f"{self.path} is not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise GradebookError(f"cannot open the gradebook {self.path}: {exc}") from None
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._setup()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise GradebookError(f"{self.path} is not a usable gradebook: {exc}") from None

    def _setup(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise GradebookError(f"{self.path} is an SQLite file but not a learn gradebook (tables: {', '.join(sorted(tables))})")
        if "submissions" in tables and "meta" in tables:  # an existing gradebook: reading it needs no write lock
            return self._check_meta()
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")
        with self.transaction() as c:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            for statement in _MANUAL_STATEMENTS:
                c.execute(statement)
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('kind', ?)", (KIND,))
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", (_now(),))
        self._check_meta()

    def _check_meta(self) -> None:
        meta = self.meta()
        if meta.get("kind") != KIND:
            raise GradebookError(f"{self.path} is not a learn gradebook")
        if meta.get("schema_version") == "1":  # additive migration: schema 1 plus the manual-grading tables
            with self.transaction() as c:
                for statement in _MANUAL_STATEMENTS:
                    c.execute(statement)
                c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            meta = self.meta()
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise GradebookError(f"{self.path} has gradebook schema {meta.get('schema_version')}; this learn reads schema {SCHEMA_VERSION}")

    # -----------------------------------------------------------------------------------------
    # plumbing

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (so it cannot deadlock later)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise GradebookError(f"the gradebook {self.path} is locked: {exc}") from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Gradebook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta"))

    def seed(self, assignment: str, default: int, force: bool = False) -> int:
        """The seed an assignment's submissions are all graded with: stored on first use and then
        kept (the same inputs for every student, in every run), unless `force` replaces it."""
        key = f"seed:{assignment}"
        with self.transaction() as c:
            verb = "INSERT OR REPLACE" if force else "INSERT OR IGNORE"
            c.execute(f"{verb} INTO meta (key, value) VALUES (?, ?)", (key, str(int(default))))
        return int(self.meta()[key])

    # -----------------------------------------------------------------------------------------
    # planning and claiming

    def unchanged(self, assignment: str, keys: dict[str, tuple[str, str, str]]) -> set[str]:
        """Students whose graded row matches (content hash, grader version, fingerprint)."""
        rows = self.conn.execute(
            "SELECT student, content_hash, grader_version, fingerprint FROM submissions WHERE assignment = ? AND state = 'graded'",
            (assignment,),
        )
        return {student for student, *key in rows if student in keys and tuple(key) == keys[student]}

    def claim(self, student: str, assignment: str, key: tuple[str, str, str], regrade: bool = False) -> str:
        """Try to take `student`'s submission for grading. Returns 'claimed', 'unchanged'
        (already graded as is) or 'busy' (another live process holds it)."""
        content_hash, version, fingerprint = key
        now = time.time()
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO students (id, first_seen) VALUES (?, ?)", (student, _now()))
            row = c.execute(
                "SELECT state, content_hash, grader_version, fingerprint, lease_owner, lease_until FROM submissions"
                " WHERE student = ? AND assignment = ?",
                (student, assignment),
            ).fetchone()
            if row is not None:
                state, *old_key, owner, until = row
                if owner and owner != self.owner and (until or 0) > now and not owner_dead(owner):
                    return "busy"
                if state == "graded" and tuple(old_key) == key and not regrade:
                    return "unchanged"
                c.execute(
                    "UPDATE submissions SET lease_owner = ?, lease_until = ? WHERE student = ? AND assignment = ?",
                    (self.owner, now + LEASE_S, student, assignment),
                )
            else:
                c.execute(
                    "INSERT INTO submissions (student, assignment, content_hash, grader_version, fingerprint, state, lease_owner, lease_until)"
                    " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (student, assignment, content_hash, version, fingerprint, self.owner, now + LEASE_S),
                )
        return "claimed"

    def renew(self, assignment: str, students: list[str]) -> None:
        """Extend this process's leases (called periodically while grading)."""
        if not students:
            return
        with self.transaction() as c:
            c.executemany(
                "UPDATE submissions SET lease_until = ? WHERE student = ? AND assignment = ? AND lease_owner = ?",
                [(time.time() + LEASE_S, s, assignment, self.owner) for s in students],
            )

    def release(self, assignment: str, student: str) -> None:
        """Give a claim back without a result (interrupted): the next run grades it."""
        with self.transaction() as c:
            c.execute(
                "UPDATE submissions SET lease_until = NULL, lease_owner = NULL WHERE student = ? AND assignment = ? AND lease_owner = ?",
                (student, assignment, self.owner),
            )

    # -----------------------------------------------------------------------------------------
    # writing results

    def record(self, student: str, assignment: str, key: tuple[str, str, str], run: RunResult, *, status: str,
               problems: list[str], error: str | None = None, error_kind: str | None = None, failed: bool = False) -> bool:  # fmt: skip
        """Store a graded submission in one transaction. `failed=True` records a machinery failure:
        graded again next run, and a previous good grade is kept meanwhile. Returns False if another
        process took the claim over meanwhile (its result then stands)."""
        content_hash, version, fingerprint = key
        with self.transaction() as c:
            row = c.execute(
                "SELECT id, lease_owner, state FROM submissions WHERE student = ? AND assignment = ?", (student, assignment)
            ).fetchone()
            if row is None or row[1] != self.owner:
                return False
            sub_id = row[0]
            if failed and row[2] == "graded":  # keep the last good grade; only count the attempt
                c.execute("UPDATE submissions SET attempts = attempts + 1, lease_owner = NULL, lease_until = NULL WHERE id = ?", (sub_id,))
                return True
            c.execute("DELETE FROM check_results WHERE submission_id = ?", (sub_id,))
            c.execute(
                "UPDATE submissions SET content_hash = ?, grader_version = ?, fingerprint = ?, state = ?, lease_owner = NULL,"
                " lease_until = NULL, attempts = attempts + 1, status = ?, points = ?, max_points = ?, duration = ?, error = ?,"
                " error_kind = ?, problems = ?, graded_at = ?, result_json = ? WHERE id = ?",
                (
                    content_hash,
                    version,
                    fingerprint,
                    "failed" if failed else "graded",
                    status,
                    run.points,
                    run.max_points,
                    round(run.duration, 3),
                    error,
                    error_kind,
                    json.dumps(problems),
                    _now(),
                    json.dumps(run.to_dict()),
                    sub_id,
                ),  # fmt: skip
            )
            c.executemany(
                "INSERT OR REPLACE INTO check_results (submission_id, notebook, check_name, title, status, points, max_points, kind,"
                " message, hidden, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        sub_id,
                        nb.exercise or Path(nb.path).name,
                        ch.name,
                        ch.title,
                        ch.status.value,
                        ch.points,
                        ch.max_points,
                        ch.kind,
                        ch.message,
                        int(ch.hidden),
                        ch.duration,
                    )
                    for nb in run.notebooks
                    for ch in nb.checks
                ],  # fmt: skip
            )
        return True

    def attempts(self, student: str, assignment: str) -> int:
        row = self.conn.execute("SELECT attempts FROM submissions WHERE student = ? AND assignment = ?", (student, assignment)).fetchone()
        return int(row[0]) if row else 0

    # -----------------------------------------------------------------------------------------
    # reading

    def assignments(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT assignment FROM submissions ORDER BY assignment")]

    def submissions(self, assignment: str | None = None, students: list[str] | None = None, *, with_json: bool = False,
                    graded_only: bool = True) -> list[SubmissionRecord]:  # fmt: skip
        """Submissions with their check rows, ordered by assignment then student."""
        query = (
            "SELECT id, student, assignment, state, status, points, max_points, duration, error, error_kind, problems, graded_at,"
            f" content_hash, grader_version, fingerprint, {'result_json' if with_json else 'NULL'} FROM submissions WHERE 1 = 1"
        )
        args: list = []
        if graded_only:
            query += " AND state IN ('graded', 'failed')"
        if assignment is not None:
            query += " AND assignment = ?"
            args.append(assignment)
        if students:
            query += f" AND student IN ({', '.join('?' * len(students))})"
            args += students
        records = []
        for r in self.conn.execute(query + " ORDER BY assignment, student", args):
            records.append(
                SubmissionRecord(
                    id=r[0],
                    student=r[1],
                    assignment=r[2],
                    state=r[3],
                    status=r[4],
                    points=r[5] or 0.0,
                    max_points=r[6] or 0.0,
                    duration=r[7] or 0.0,
                    error=r[8],
                    error_kind=r[9],
                    problems=json.loads(r[10] or "[]"),
                    graded_at=r[11],
                    content_hash=r[12],
                    grader_version=r[13],
                    fingerprint=r[14],
                    result_json=r[15],
                )  # fmt: skip
            )
        by_id = {rec.id: rec for rec in records}
        if by_id:
            rows = self.conn.execute(
                "SELECT submission_id, notebook, check_name, title, status, points, max_points, kind, message, hidden, duration"
                " FROM check_results ORDER BY rowid"
            )
            for r in rows:
                rec = by_id.get(r[0])
                if rec is not None:
                    rec.checks.append(CheckRow(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] or "", bool(r[9]), r[10]))
        return records

    def counts(self, assignment: str | None = None) -> dict[str, int]:
        query = "SELECT state, COUNT(*) FROM submissions" + (" WHERE assignment = ?" if assignment else "") + " GROUP BY state"
        return dict(self.conn.execute(query, (assignment,) if assignment else ()))


def submission_status(run: RunResult) -> str:
    """ok (every check passed), failed (some check did not), error (something could not be graded)."""
    if not run.notebooks or any(nb.status is Status.ERROR for nb in run.notebooks):
        return "error"
    return "ok" if run.passed else "failed"
