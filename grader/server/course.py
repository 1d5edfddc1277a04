"""The course's data: accounts, assignments, submissions, grades - what the views and the queue share.

Course(dir, db)
  ├── accounts     first-start instructor link, roster CSV -> students + sign-in links, TAs
  ├── assignments  from a lesson pack (id, folder or `learn assign` output), due date, late policy
  ├── submit()     files saved under COURSE_DIR/submissions/<id>/ first, then the submission
  │                row and its job in one transaction (grader.server.queue works the jobs)
  └── grades       final score = override (latest, with reason) or points - late penalty;
                   records() gives grader.gradebook.SubmissionRecord for export/dashboard
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import LearnError, UploadError
from .auth import SETUP_LINK_S, SIGNIN_LINK_S, hash_password, hash_token, new_token
from .db import Database

__all__ = ["Course", "Limits", "UploadError", "late_penalty", "check_row", "check_summary"]

DAY = 86400.0
HIDDEN_POLICIES = ("after_due", "always", "never")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


@dataclass
class Limits:
    max_bytes: int = 20 * 2**20  # per submission, all files together
    max_notebooks: int = 10
    per_minute: int = 6  # submissions per student per minute
    max_unzipped: int = 100 * 2**20  # what an uploaded zip may inflate to


def manual_answers(lesson, folder: Path) -> list[tuple[str, str, float]]:
    """(item, answer text, points) of the pack's hand-graded items ([manual.NAME] in lesson.toml)
    in a submission's notebooks, found as `learn grade` finds them (grader.manual.answers_of).
    The items and their points come from the pack, never from the student's notebook."""
    if not getattr(lesson, "manual", None):
        return []
    from ..batch import match_notebooks
    from ..manual import answers_of

    files = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not p.is_symlink())
    matched = match_notebooks(files, lesson)[0]
    out = []
    for spec in lesson.notebooks:
        for name, (text, _found) in answers_of(lesson, spec.file, matched.get(spec.file)).items():
            out.append((name, text, float(lesson.manual[name].points)))
    return out


def _iso(ts: float | None) -> str | None:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds") if ts else None


def late_penalty(submitted_at: float, due_at: float | None, percent_per_day: float, cap: float) -> float:
    """Percent taken off: `percent_per_day` for each started day after the due date, at most `cap`."""
    if due_at is None or submitted_at <= due_at or percent_per_day <= 0:
        return 0.0
    days = math.ceil((submitted_at - due_at) / DAY)
    return min(cap, days * percent_per_day)


def check_state(check: dict) -> str:
    """passed, failed, error (an exception or a timeout), todo (not written yet) or skipped."""
    status = check.get("status")
    if status == "passed":
        return "passed"
    if check.get("kind") == "not_implemented":
        return "todo"
    return {"error": "error", "timeout": "error", "skipped": "skipped"}.get(status, "failed")


def check_row(check: dict | None) -> dict:
    """What the staff's per-check page shows of one student's verdict (a CheckResult as JSON):
    state, points, the named mistake (a case's, else the as-written verdict's), the message's
    first line and the hint (a recognised mistake's explanation)."""
    if check is None:
        return {"state": "todo", "points": None, "max_points": None, "mistake": None, "message": "not in this submission", "hint": None}
    verdicts = [*check.get("cases", []), check.get("as_written") or {}, check.get("isolated") or {}]
    mistake = next((v["mistake"] for v in verdicts if v.get("mistake")), None)
    lines = (check.get("message") or "").strip().splitlines()
    return {"state": check_state(check), "points": check.get("points"), "max_points": check.get("max_points"), "mistake": mistake,
            "message": lines[0] if lines else "", "hint": check.get("hint")}  # fmt: skip


def check_summary(rows: list[dict]) -> tuple[dict[str, int], list[dict]]:
    """(students by state, the problems grouped: a named mistake, else the message's first line,
    most common first), for the top of the per-check page."""
    counts = {s: 0 for s in ("passed", "failed", "error", "todo", "skipped")}
    groups: dict[tuple, dict] = {}
    for r in rows:
        counts[r["state"]] += 1
        if r["state"] == "passed":
            continue
        key = ("mistake", r["mistake"]) if r["mistake"] else ("message", r["message"] or r["state"])
        group = groups.setdefault(key, {"label": key[1], "named": key[0] == "mistake", "hint": r["hint"], "students": []})
        group["students"].append(r["student"])
    ordered = sorted(groups.values(), key=lambda g: (-len(g["students"]), g["label"]))
    return {k: v for k, v in counts.items() if v or k in ("passed", "failed")}, ordered


class Course:
    """One course: a folder (secret key, uploads, the SQLite database by default) and its database."""

    def __init__(self, root: Path, db: Database, limits: Limits | None = None):
        self.root, self.db, self.limits = Path(root), db, limits or Limits()
        self.allow_unsandboxed = False  # set by grader.server.prepare after require_isolation
        self.uploads = self.root / "submissions"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._lessons: dict[str, object] = {}

    @classmethod
    def open(cls, root: Path, db_url: str | None = None, limits: Limits | None = None) -> Course:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, Database.open(db_url or str(root / "course.db")), limits)

    def secret_key(self) -> str:
        """The session-signing key: generated once, kept in COURSE_DIR readable by its owner only."""
        path = self.root / "secret.key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        return path.read_text().strip()

    # -----------------------------------------------------------------------------------------
    # accounts

    def audit(self, tx, actor: int | None, action: str, detail: dict) -> None:
        tx.run("INSERT INTO audit (id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)", tx.new_id("audit"), time.time(), actor,
               action, json.dumps(detail, sort_keys=True))  # fmt: skip

    def add_user(self, tx, name: str, role: str, display: str = "", email: str = "") -> int:
        if not _NAME.match(name):
            raise LearnError(f"not a usable user name: {name!r} (letters, digits and . _ @ + -, at most 64)")
        row = tx.one("SELECT id, role FROM users WHERE name = ?", name)
        if row:
            return row["id"]
        uid = tx.new_id("users")
        tx.run("INSERT INTO users (id, name, display, email, role, created_at) VALUES (?, ?, ?, ?, ?, ?)", uid, name, display, email,
               role, time.time())  # fmt: skip
        return uid

    def issue_token(self, tx, user_id: int, purpose: str, lifetime: float | None) -> str:
        token = new_token()
        now = time.time()
        tx.run("INSERT INTO tokens (hash, user_id, purpose, expires_at, created_at) VALUES (?, ?, ?, ?, ?)", hash_token(token),
               user_id, purpose, now + lifetime if lifetime else None, now)  # fmt: skip
        return token

    def first_start_link(self) -> str | None:
        """A one-time token that creates the instructor account, while there is none."""
        with self.db.transaction() as tx:
            if tx.value("SELECT COUNT(*) FROM users WHERE role = 'instructor'"):
                return None
            uid = self.add_user(tx, "instructor", "setup")  # no rights until the link is used
            tx.run("DELETE FROM tokens WHERE user_id = ? AND purpose = 'setup'", uid)
            return self.issue_token(tx, uid, "setup", SETUP_LINK_S)

    def redeem(self, token: str) -> dict | None:
        """The user a sign-in token belongs to, or None (unknown, expired, used up). A setup token
        works once and makes its user the instructor."""
        now = time.time()
        with self.db.transaction() as tx:
            row = tx.one("SELECT * FROM tokens WHERE hash = ?", hash_token(token))
            if not row or row["purpose"] not in ("setup", "signin") or (row["expires_at"] and row["expires_at"] < now):
                return None
            if row["purpose"] == "setup":
                if row["used_at"]:
                    return None
                tx.run("UPDATE tokens SET used_at = ? WHERE hash = ?", now, row["hash"])
                tx.run("UPDATE users SET role = 'instructor' WHERE id = ?", row["user_id"])
                self.audit(tx, row["user_id"], "instructor_created", {})
            return tx.one("SELECT * FROM users WHERE id = ?", row["user_id"])

    def api_user(self, token: str) -> dict | None:
        with self.db.transaction() as tx:
            row = tx.one("SELECT user_id FROM tokens WHERE hash = ? AND purpose = 'api'", hash_token(token))
            return tx.one("SELECT * FROM users WHERE id = ?", row["user_id"]) if row else None

    def new_api_token(self, user_id: int) -> str:
        with self.db.transaction() as tx:
            tx.run("DELETE FROM tokens WHERE user_id = ? AND purpose = 'api'", user_id)
            return self.issue_token(tx, user_id, "api", None)

    def set_password(self, user_id: int, password: str) -> None:
        if len(password) < 10:
            raise LearnError("a password needs at least 10 characters")
        with self.db.transaction() as tx:
            tx.run("UPDATE users SET password_hash = ? WHERE id = ?", hash_password(password), user_id)

    def user(self, user_id: int | None) -> dict | None:
        return self.db.one("SELECT * FROM users WHERE id = ?", user_id) if user_id is not None else None

    def user_by_name(self, name: str) -> dict | None:
        return self.db.one("SELECT * FROM users WHERE name = ?", name)

    def add_roster(self, text: str, actor: int, role: str = "student") -> list[tuple[str, str]]:
        """Add the students of a roster CSV (a `name`/`id`/`login` column; optional `display`/`name`,
        `email`). Returns (name, sign-in token) for each, new or not (a fresh link each time)."""
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows:
            raise LearnError("the roster has no rows: expected a CSV with a header row and a column 'student' (or 'login', 'id')")
        keys = {k.lower().strip(): k for k in rows[0] if k}
        column = next((keys[k] for k in ("student", "login", "id", "username", "name") if k in keys), None)
        if column is None:
            raise LearnError("the roster needs a column named 'student' (or 'login', 'id', 'username')")
        out = []
        with self.db.transaction() as tx:
            for row in rows:
                name = (row.get(column) or "").strip()
                if not name:
                    continue
                existing = tx.one("SELECT role FROM users WHERE name = ?", name)
                if existing and existing["role"] != role:
                    raise LearnError(f"{name!r} is already a {existing['role']} account: use another name on the roster")
                display = (row.get(keys.get("display", ""), "") or "").strip()
                email = (row.get(keys.get("email", ""), "") or "").strip()
                uid = self.add_user(tx, name, role, display, email)
                out.append((name, self.issue_token(tx, uid, "signin", SIGNIN_LINK_S)))
            self.audit(tx, actor, "roster", {"added": [n for n, _ in out], "role": role})
        return out

    # -----------------------------------------------------------------------------------------
    # assignments

    def lesson(self, pack: str):
        if pack not in self._lessons:
            from ..batch import resolve_assignment

            self._lessons[pack] = resolve_assignment(pack)
        return self._lessons[pack]

    def create_assignment(self, actor: int, pack: str, slug: str = "", title: str = "", due_at: float | None = None,
                          percent_per_day: float = 0.0, cap: float = 100.0, max_submissions: int | None = None,
                          hidden_policy: str = "after_due") -> str:  # fmt: skip
        from ..batch import default_seed

        if hidden_policy not in HIDDEN_POLICIES:
            raise LearnError(f"hidden checks show {hidden_policy!r}? expected one of {', '.join(HIDDEN_POLICIES)}")
        lesson = self.lesson(pack)
        slug = slug or lesson.id
        if not re.match(r"^[a-z0-9][a-z0-9_-]{0,40}$", slug):
            raise LearnError(f"not a usable assignment id: {slug!r} (lower-case letters, digits, - and _)")
        with self.db.transaction() as tx:
            if tx.value("SELECT id FROM assignments WHERE slug = ?", slug):
                raise LearnError(f"there is already an assignment {slug!r}")
            aid = tx.new_id("assignments")
            tx.run("INSERT INTO assignments (id, slug, title, pack, seed, due_at, late_percent_per_day, late_cap_percent, "
                   "max_submissions, published, created_at, hidden_policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)", aid, slug,
                   title or getattr(lesson, "title", "") or lesson.id, pack, default_seed(lesson), due_at, percent_per_day, cap,
                   max_submissions, time.time(), hidden_policy)  # fmt: skip
            self.audit(tx, actor, "create_assignment", {"slug": slug, "pack": pack})
        return slug

    def assignment(self, slug: str) -> dict | None:
        return self.db.one("SELECT * FROM assignments WHERE slug = ?", slug)

    def assignments(self, published_only: bool = False) -> list[dict]:
        where = " WHERE published = 1" if published_only else ""
        return self.db.all(f"SELECT * FROM assignments{where} ORDER BY id")

    def update_assignment(self, actor: int, slug: str, **changes) -> None:
        """Change an assignment's due date, late policy, submission limit or hidden-check policy
        (only the keys given); audited with the old and new values. Grades are computed from these
        when shown, so a new late policy applies to every submission at once."""
        allowed = {"due_at", "late_percent_per_day", "late_cap_percent", "max_submissions", "hidden_policy", "title"}
        unknown = set(changes) - allowed
        if unknown:
            raise LearnError(f"cannot change {', '.join(sorted(unknown))} of an assignment")
        if changes.get("hidden_policy", HIDDEN_POLICIES[0]) not in HIDDEN_POLICIES:
            raise LearnError(f"hidden checks show {changes['hidden_policy']!r}? expected one of {', '.join(HIDDEN_POLICIES)}")
        if changes.get("late_cap_percent", 0) > 100:
            raise LearnError("the late penalty's cap is a percentage: at most 100")
        with self.db.transaction() as tx:
            old = tx.one("SELECT * FROM assignments WHERE slug = ?", slug)
            if old is None:
                raise LearnError(f"no assignment {slug!r}")
            for column, value in sorted(changes.items()):  # column names come from `allowed`, never from the form
                tx.run(f"UPDATE assignments SET {column} = ? WHERE slug = ?", value, slug)
            self.audit(tx, actor, "assignment_settings", {"slug": slug, "old": {k: old[k] for k in changes}, "new": changes})

    def publish(self, actor: int, slug: str, published: bool) -> None:
        with self.db.transaction() as tx:
            tx.run("UPDATE assignments SET published = ? WHERE slug = ?", int(published), slug)
            self.audit(tx, actor, "publish" if published else "unpublish", {"slug": slug})

    def due_for(self, assignment: dict, user_id: int) -> float | None:
        ext = self.db.one("SELECT due_at FROM extensions WHERE user_id = ? AND assignment_id = ? ORDER BY id DESC LIMIT 1", user_id,
                          assignment["id"])  # fmt: skip
        return ext["due_at"] if ext else assignment["due_at"]

    def hidden_visible(self, assignment: dict, user: dict, now: float | None = None) -> bool:
        """Whether `user` may see the hidden checks of this assignment now (staff always may)."""
        if user["role"] in ("ta", "instructor"):
            return True
        policy = assignment.get("hidden_policy") or "after_due"
        if policy == "always":
            return True
        if policy == "never":
            return False
        due = self.due_for(assignment, user["id"])
        return due is None or (now or time.time()) >= due

    def extend(self, actor: int, slug: str, student: str, due_at: float) -> None:
        a, u = self.assignment(slug), self.user_by_name(student)
        if not a or not u:
            raise LearnError("no such assignment or student")
        with self.db.transaction() as tx:
            tx.run("INSERT INTO extensions (id, user_id, assignment_id, due_at, by_user, at) VALUES (?, ?, ?, ?, ?, ?)",
                   tx.new_id("extensions"), u["id"], a["id"], due_at, actor, time.time())  # fmt: skip
            self.audit(tx, actor, "extension", {"slug": slug, "student": student, "due_at": due_at})

    # -----------------------------------------------------------------------------------------
    # submissions

    def submit(self, user: dict, slug: str, files: list[tuple[str, bytes]]) -> int:
        """Save a submission's files and queue it (one transaction for the row and its job).
        Zips are unpacked with learn grade's safe extraction; only notebooks are kept."""
        a = self.assignment(slug)
        if not a or (not a["published"] and user["role"] not in ("ta", "instructor")):
            raise UploadError(f"no open assignment {slug!r}")
        total = sum(len(data) for _, data in files)
        if total > self.limits.max_bytes:
            raise UploadError(f"the upload is {total / 2**20:.1f} MB, over the limit of {self.limits.max_bytes / 2**20:.0f} MB")
        since = time.time() - 60
        recent = self.db.value("SELECT COUNT(*) FROM submissions WHERE user_id = ? AND created_at > ?", user["id"], since)
        if recent >= self.limits.per_minute:
            raise UploadError(f"at most {self.limits.per_minute} submissions a minute: wait a moment and submit again")
        if a["max_submissions"]:
            done = self.db.value("SELECT COUNT(*) FROM submissions WHERE user_id = ? AND assignment_id = ?", user["id"], a["id"])
            if done >= a["max_submissions"]:
                raise UploadError(f"the submission limit of this assignment ({a['max_submissions']}) is used up")
        staging = self.uploads / f"incoming-{secrets.token_hex(8)}"
        staging.mkdir()
        try:
            notes = self._unpack(files, staging)
            notebooks = sorted(p for p in staging.rglob("*.ipynb") if p.is_file() and not p.is_symlink())
            if not notebooks:
                raise UploadError("no notebook (.ipynb) in the upload")
            if len(notebooks) > self.limits.max_notebooks:
                raise UploadError(f"{len(notebooks)} notebooks, over the limit of {self.limits.max_notebooks} per submission")
            digest = hashlib.sha256(b"".join(p.read_bytes() for p in notebooks)).hexdigest()
            with self.db.transaction() as tx:
                sid = tx.new_id("submissions")
                folder = self.uploads / str(sid)
                if folder.exists():
                    shutil.rmtree(folder)
                staging.rename(folder)
                now = time.time()
                tx.run("INSERT INTO submissions (id, user_id, assignment_id, created_at, files, content_hash, notes, state) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued')", sid, user["id"], a["id"], now, str(sid), digest, json.dumps(notes))  # fmt: skip
                tx.run("INSERT INTO jobs (id, submission_id, state, created_at) VALUES (?, ?, 'queued', ?)", tx.new_id("jobs"), sid, now)
            return sid
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _unpack(self, files: list[tuple[str, bytes]], dest: Path) -> list[str]:
        from ..batch import safe_extract

        notes: list[str] = []
        for raw_name, data in files:
            name = Path(raw_name.replace("\\", "/")).name
            if not name or name.startswith(".") or len(name) > 200 or any(ord(ch) < 32 for ch in name):
                raise UploadError(f"not a usable file name: {raw_name!r}")
            if name.lower().endswith(".zip"):
                archive = dest / f".upload-{secrets.token_hex(4)}.zip"
                archive.write_bytes(data)
                try:
                    notes += safe_extract(archive, dest, max_total=self.limits.max_unzipped, max_file=self.limits.max_unzipped,
                                          max_members=1000)  # fmt: skip
                except LearnError as exc:
                    raise UploadError(str(exc).replace(str(archive), name)) from None
                finally:
                    archive.unlink()
            elif name.lower().endswith(".ipynb"):
                target = dest / name
                if target.exists():
                    raise UploadError(f"{name} was uploaded twice")
                target.write_bytes(data)
            else:
                raise UploadError(f"{name}: upload notebooks (.ipynb) or a zip of them")
        return notes

    def submission(self, sid: int) -> dict | None:
        return self.db.one(
            "SELECT s.*, u.name AS student, a.slug AS assignment FROM submissions s JOIN users u ON u.id = s.user_id "
            "JOIN assignments a ON a.id = s.assignment_id WHERE s.id = ?",
            sid,
        )

    def history(self, user_id: int, assignment_id: int | None = None, viewer: dict | None = None) -> list[dict]:
        where, params = "s.user_id = ?", [user_id]
        if assignment_id is not None:
            where += " AND s.assignment_id = ?"
            params.append(assignment_id)
        rows = self.db.all(f"SELECT s.id, s.created_at, s.state, s.status, s.points, s.max_points, s.graded_at, a.slug AS assignment "
                           f"FROM submissions s JOIN assignments a ON a.id = s.assignment_id WHERE {where} ORDER BY s.id", *params)  # fmt: skip
        return [self.with_grade(r, viewer) for r in rows]

    def with_grade(self, row: dict, viewer: dict | None = None) -> dict:
        """The row plus its late penalty, override and final score. For a `viewer` who may not see
        the hidden checks yet, points and maximum count the visible checks only (`hidden_pending`)."""
        full = self.submission(row["id"]) if "user_id" not in row or "result_json" not in row else row
        a = self.assignment(full["assignment"])
        due = self.due_for(a, full["user_id"])
        penalty = late_penalty(full["created_at"], due, a["late_percent_per_day"], a["late_cap_percent"])
        override = self.db.one("SELECT * FROM overrides WHERE submission_id = ? ORDER BY id DESC LIMIT 1", row["id"])
        points, possible, pending = row.get("points"), row.get("max_points"), False
        if viewer is not None and full["result_json"] and not self.hidden_visible(a, viewer):
            checks = [c for nb in json.loads(full["result_json"]).get("notebooks", []) for c in nb.get("checks", []) if c.get("hidden")]
            pending = bool(checks)
            points = None if points is None else round(points - sum(c.get("points", 0) for c in checks), 2)
            possible = None if possible is None else round(possible - sum(c.get("max_points", 0) for c in checks), 2)
        final = override["points"] if override else (None if points is None else round(points * (1 - penalty / 100), 2))
        return {**row, "points": points, "max_points": possible, "late_penalty": penalty, "override": override, "final": final,
                "due_at": due, "hidden_pending": pending}  # fmt: skip

    def override(self, actor: int, sid: int, points: float, reason: str) -> None:
        if not reason.strip():
            raise LearnError("an override needs a reason")
        with self.db.transaction() as tx:
            if not tx.value("SELECT id FROM submissions WHERE id = ?", sid):
                raise LearnError(f"no submission {sid}")
            tx.run("INSERT INTO overrides (id, submission_id, points, reason, by_user, at) VALUES (?, ?, ?, ?, ?, ?)",
                   tx.new_id("overrides"), sid, points, reason.strip(), actor, time.time())  # fmt: skip
            self.audit(tx, actor, "override", {"submission": sid, "points": points, "reason": reason.strip()})

    def latest(self, slug: str, graded: bool = False) -> list[dict]:
        """Each student's latest submission of an assignment (`graded`: their latest graded one)."""
        only_graded = " AND s2.state = 'graded'" if graded else ""
        return self.db.all(
            "SELECT s.*, u.name AS student, a.slug AS assignment FROM submissions s JOIN users u ON u.id = s.user_id "
            "JOIN assignments a ON a.id = s.assignment_id WHERE a.slug = ? AND s.id = (SELECT MAX(s2.id) FROM submissions s2 "
            f"WHERE s2.user_id = s.user_id AND s2.assignment_id = s.assignment_id{only_graded}) ORDER BY u.name",
            slug,
        )

    def records(self, slug: str, split_manual: bool = False) -> list:
        """The latest submissions as grader.gradebook.SubmissionRecord (for export.py and dashboard.py);
        points are the final score: checks less the late penalty, plus hand-graded answers, or
        the latest override (which replaces both). With `split_manual`, points and maximum leave
        the hand-graded items out (the final score less the points given by hand), for the
        exports that list those items on their own (manual_rows)."""
        from ..gradebook import CheckRow, SubmissionRecord
        from ..results import RunResult

        out = []
        for row in self.latest(slug):
            graded = self.with_grade(row)
            run = RunResult.from_dict(json.loads(row["result_json"])) if row["result_json"] else None
            checks = [CheckRow(nb.exercise or nb.path, c.name, c.title, str(c.status), c.points, c.max_points, c.kind, c.message,
                               c.hidden, c.duration) for nb in (run.notebooks if run else []) for c in nb.checks]  # fmt: skip
            state = "graded" if row["state"] == "graded" else "pending"
            problems = json.loads(row["notes"] or "[]")
            if graded["late_penalty"]:
                problems.append(f"late: -{graded['late_penalty']:g}%")
            if graded["override"]:
                problems.append(f"override: {graded['override']['reason']}")
            manual = self.db.one("SELECT COALESCE(SUM(points), 0) AS points, COALESCE(SUM(max_points), 0) AS max_points, "
                                 "SUM(CASE WHEN points IS NULL THEN 1 ELSE 0 END) AS open FROM manual_items "
                                 "WHERE user_id = ? AND assignment_id = ?", row["user_id"], row["assignment_id"])  # fmt: skip
            if manual["open"]:
                problems.append(f"{manual['open']} answer(s) not graded by hand yet")
            final = (graded["final"] or 0.0) + (0.0 if graded["override"] else float(manual["points"]))
            possible = (row["max_points"] or 0.0) + float(manual["max_points"])
            if split_manual:
                final, possible = round(final - float(manual["points"]), 2), possible - float(manual["max_points"])
            out.append(SubmissionRecord(row["id"], row["student"], slug, state, row["status"], final,
                                        possible, run.duration if run else 0.0, row["error"], None, problems,
                                        None, row["content_hash"], "", "", checks, row["result_json"]))  # fmt: skip
        return out

    def check_rows(self, slug: str, name: str) -> list[dict]:
        """One row per student for the graded check `name` (see check_row), from each student's
        latest graded submission; a submission without that check is `todo` (not submitted)."""
        out = []
        for sub in self.latest(slug, graded=True):
            run = json.loads(sub["result_json"] or "{}")
            found = next((c for nb in run.get("notebooks", []) for c in nb.get("checks", []) if c.get("name") == name), None)
            out.append({"student": sub["student"], "sid": sub["id"], **check_row(found)})
        return out

    def manual_rows(self, slug: str) -> dict[tuple[str, str], list]:
        """The hand-graded items of an assignment as grader.manual.ManualRow, by (student, slug):
        what grader.export's Gradescope and JUnit exports take as `manual_rows` (title, notebook and
        kind from the pack's [manual.NAME])."""
        from ..manual import GRADED, NEEDS, ManualRow

        a = self.assignment(slug)
        specs = (getattr(self.lesson(a["pack"]), "manual", None) or {}) if a else {}
        items = self.db.all("SELECT m.*, u.name AS student, g.name AS grader FROM manual_items m JOIN users u ON u.id = m.user_id "
                            "LEFT JOIN users g ON g.id = m.graded_by JOIN assignments a ON a.id = m.assignment_id "
                            "WHERE a.slug = ? ORDER BY u.name, m.id", slug)  # fmt: skip
        out: dict[tuple[str, str], list] = {}
        for m in items:
            spec = specs.get(m["item"])
            graded = m["points"] is not None
            out.setdefault((m["student"], slug), []).append(ManualRow(
                m["student"], slug, m["item"], spec.title if spec else m["item"], spec.notebook if spec else "", spec.kind if spec else "",
                float(m["max_points"]), GRADED if graded else NEEDS, m["points"], m["comment"] or None, m["answer"], True,
                m["grader"], _iso(m["graded_at"])))  # fmt: skip
        return out

    def regrade(self, actor: int, sids: list[int]) -> int:
        now = time.time()
        queued = []
        with self.db.transaction() as tx:
            for sid in sids:
                if tx.value("SELECT COUNT(*) FROM jobs WHERE submission_id = ? AND state IN ('queued', 'leased')", sid):
                    continue  # already waiting or being graded: once is enough
                tx.run("UPDATE submissions SET state = 'queued' WHERE id = ?", sid)
                tx.run("INSERT INTO jobs (id, submission_id, state, created_at) VALUES (?, ?, 'queued', ?)", tx.new_id("jobs"), sid, now)
                queued.append(sid)
            self.audit(tx, actor, "regrade", {"submissions": queued})
        return len(queued)

    def collect_manual(self, tx, sub: dict) -> int:
        """Answers to grade by hand from a graded submission's notebooks into `manual_items`: the
        pack's [manual.NAME] items (written answers, code without tests, tasks; the cell found by
        `learn.manual` or nbgrader's grade_id). An answer that changed is graded again; one that
        did not keeps its points."""
        a = tx.one("SELECT pack FROM assignments WHERE id = ?", sub["assignment_id"])
        count = 0
        for item, answer, points in manual_answers(self.lesson(a["pack"]), self.uploads / sub["files"]):
            row = tx.one("SELECT id, answer FROM manual_items WHERE user_id = ? AND assignment_id = ? AND item = ?", sub["user_id"],
                         sub["assignment_id"], item)  # fmt: skip
            if row is None:
                tx.run("INSERT INTO manual_items (id, user_id, assignment_id, item, answer, max_points) VALUES (?, ?, ?, ?, ?, ?)",
                       tx.new_id("manual_items"), sub["user_id"], sub["assignment_id"], item, answer, points)  # fmt: skip
            elif row["answer"] != answer:
                tx.run("UPDATE manual_items SET answer = ?, max_points = ?, points = NULL, comment = '', graded_by = NULL, "
                       "graded_at = NULL WHERE id = ?", answer, points, row["id"])  # fmt: skip
            count += 1
        return count

    def queue_counts(self) -> dict[str, int]:
        rows = self.db.all("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}
