"""The course's data: accounts, assignments, submissions, grades - what the views and the queue share.

Course(dir, db)
  ├── accounts     first-start instructor link, roster CSV -> students + sign-in links (a new
  │                link revokes the old one), TAs; server-side sessions; CLI tokens (named,
  │                listed, revocable); deactivation (no sign-in, grades stay)
  ├── assignments  from a lesson pack (id, folder or `learn assign` output), due date, late policy,
  │                time budget per submission, extra credit
  ├── receive()    an upload's notebooks only (grader.server.uploads) into a staging folder
  │   accept()     notebooks missing from it copied from the student's latest copy (the student
  │                was warned first), then the submission row and its job in one transaction
  │                (grader.server.queue works the jobs, fairly)
  └── grades       grade(): checks (less the late penalty) + points graded by hand, or the
                   override in force (it belongs to the student and the assignment until staff
                   clear it); records() gives grader.gradebook.SubmissionRecord for the exports,
                   every active student included (0 and "not submitted" without a submission)

COURSE_DIR and everything the server writes in it are its owner's only (0700 folders, 0600 files).
"""

from __future__ import annotations

import contextlib
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
from .auth import SEEN_EVERY_S, SESSION_IDLE_S, SESSION_S, SETUP_LINK_S, SIGNIN_LINK_S, hash_password, hash_token, new_token
from .db import Database
from .uploads import discard, private_dir, size_text, unpack

__all__ = [
    "Course",
    "Limits",
    "Upload",
    "UploadError",
    "PartialUpload",
    "TooLarge",
    "TooOften",
    "late_penalty",
    "check_row",
    "check_summary",
    "timeouts",
]

DAY = 86400.0
HIDDEN_POLICIES = ("after_due", "always", "never")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


@dataclass
class Limits:
    max_bytes: int = 20 * 2**20  # per submission, all files together
    max_notebooks: int = 10
    per_minute: int = 6  # submissions per student per minute
    max_unzipped: int = 100 * 2**20  # what the notebooks of an uploaded zip may inflate to
    quota_bytes: int = 200 * 2**20  # what one student's submissions may keep on disk, all together
    jobs_per_student: int = 1  # a student's submissions graded at once (the fair queue's cap)


@dataclass
class Upload:
    """A received upload, not yet a submission: its notebooks in a staging folder, the
    assignment's notebooks it lacks and where each would come from (a submission id, or None:
    never submitted, 0 points)."""

    user: dict
    slug: str
    folder: Path
    notes: list[str]
    bytes: int
    missing: dict[str, dict | None]  # assignment notebook -> {"sid", "path", "at"} of the latest copy, or None

    def warning(self) -> str:
        """What the student is told before a partial upload is accepted."""
        parts = []
        for name, copy in self.missing.items():
            if copy:
                parts.append(f"{name} (graded from your submission #{copy['sid']} of {_when(copy['at'])})")
            else:
                parts.append(f"{name} (never submitted: its checks get 0 points)")
        return f"this upload lacks {len(self.missing)} of the assignment's notebooks: {'; '.join(parts)}"


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


def _when(ts: float | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "never"


def _size(data) -> int:
    if isinstance(data, bytes | bytearray | memoryview):
        return len(data)
    data.seek(0, os.SEEK_END)
    return data.tell()


def timeouts(result: dict) -> list[str]:
    """Problems to show staff for a result (RunResult as JSON): notebooks stopped by their time
    budget and cells stopped by the cell time limit - a notebook can pass its checks and still
    have a cell that never finished. They start with grader.dashboard.TIMEOUT_PREFIX: the
    dashboard's attention list shows them."""
    from ..dashboard import TIMEOUT_PREFIX

    out = []
    for nb in result.get("notebooks", []):
        name = Path(nb.get("path") or "").name or nb.get("exercise") or "?"
        if nb.get("error_kind") == "timeout":
            out.append(f"{TIMEOUT_PREFIX}: {name} ran out of time ({nb.get('error') or 'time budget used up'})")
        cells = [str(p.get("cell")) for p in nb.get("cell_problems", []) if p.get("kind") == "timeout"]
        if cells:
            out.append(f"{TIMEOUT_PREFIX}: {name} cell {', '.join(cells)} stopped at the cell time limit")
    return out


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
        private_dir(self.root)
        self.uploads = private_dir(self.root / "submissions")
        self._lessons: dict[str, object] = {}

    @classmethod
    def open(cls, root: Path, db_url: str | None = None, limits: Limits | None = None) -> Course:
        root = private_dir(Path(root))
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

    def issue_token(self, tx, user_id: int, purpose: str, lifetime: float | None, label: str = "") -> str:
        """A new token for `user_id`; a new sign-in link revokes the user's earlier ones."""
        if purpose == "signin":
            tx.run("DELETE FROM tokens WHERE user_id = ? AND purpose = 'signin'", user_id)
        token = new_token()
        now = time.time()
        tx.run("INSERT INTO tokens (hash, user_id, purpose, expires_at, created_at, label) VALUES (?, ?, ?, ?, ?, ?)",
               hash_token(token), user_id, purpose, now + lifetime if lifetime else None, now, label[:60])  # fmt: skip
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
        """The (active) user a sign-in token belongs to, or None (unknown, expired, used up,
        revoked). A setup token works once and makes its user the instructor."""
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
            return tx.one("SELECT * FROM users WHERE id = ? AND active = 1", row["user_id"])

    # sessions: the cookie holds a random id, the row says whose it is (sign-out deletes it)

    def new_session(self, user_id: int) -> str:
        token, now = new_token(), time.time()
        with self.db.transaction() as tx:
            tx.run("INSERT INTO sessions (hash, user_id, created_at, seen_at, expires_at) VALUES (?, ?, ?, ?, ?)", hash_token(token),
                   user_id, now, now, now + SESSION_S)  # fmt: skip
            tx.run("DELETE FROM sessions WHERE expires_at < ? OR seen_at < ?", now, now - SESSION_IDLE_S)
        return token

    def session_user(self, token: str | None) -> dict | None:
        """The active user of a live session (used within SESSION_IDLE_S, younger than SESSION_S), or None."""
        if not token or not isinstance(token, str):
            return None
        now, key = time.time(), hash_token(token)
        row = self.db.one("SELECT u.*, s.seen_at AS session_seen_at FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = ? "
                          "AND s.expires_at > ? AND s.seen_at > ? AND u.active = 1", key, now, now - SESSION_IDLE_S)  # fmt: skip
        if row is None or row["role"] == "setup":
            return None
        row = dict(row)
        if now - row.pop("session_seen_at") > SEEN_EVERY_S:
            self.db.run("UPDATE sessions SET seen_at = ? WHERE hash = ?", now, key)
        return row

    def end_session(self, token: str | None) -> None:
        if token and isinstance(token, str):
            self.db.run("DELETE FROM sessions WHERE hash = ?", hash_token(token))

    def end_sessions(self, tx, user_id: int) -> int:
        return tx.run("DELETE FROM sessions WHERE user_id = ?", user_id)

    # CLI tokens: stored as hashes only, several per person, listed and revocable

    def api_user(self, token: str) -> dict | None:
        now = time.time()
        row = self.db.one("SELECT t.hash, t.last_used_at, u.* FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ? "
                          "AND t.purpose = 'api' AND u.active = 1", hash_token(token))  # fmt: skip
        if row is None:
            return None
        if not row["last_used_at"] or row["last_used_at"] < now - 60:  # a write at most once a minute per token
            self.db.run("UPDATE tokens SET last_used_at = ? WHERE hash = ?", now, row["hash"])
        return {k: v for k, v in row.items() if k not in ("hash", "last_used_at")}

    def new_api_token(self, user_id: int, label: str = "") -> str:
        with self.db.transaction() as tx:
            if tx.value("SELECT COUNT(*) FROM tokens WHERE user_id = ? AND purpose = 'api'", user_id) >= 20:
                raise LearnError("you have 20 CLI tokens: revoke one you no longer use first")
            return self.issue_token(tx, user_id, "api", None, label.strip() or time.strftime("token of %Y-%m-%d"))

    def api_tokens(self, user_id: int) -> list[dict]:
        """The user's CLI tokens: an id (the start of the stored hash, never the token), label, dates."""
        rows = self.db.all("SELECT hash, label, created_at, last_used_at FROM tokens WHERE user_id = ? AND purpose = 'api' "
                           "ORDER BY created_at", user_id)  # fmt: skip
        return [{"id": r["hash"][:16], "label": r["label"], "created_at": r["created_at"], "last_used_at": r["last_used_at"]} for r in rows]

    def revoke_api_token(self, user_id: int, token_id: str) -> bool:
        if not re.fullmatch(r"[0-9a-f]{16}", token_id or ""):
            return False
        with self.db.transaction() as tx:
            gone = tx.run("DELETE FROM tokens WHERE user_id = ? AND purpose = 'api' AND hash LIKE ?", user_id, token_id + "%")
            if gone:
                self.audit(tx, user_id, "revoke_token", {"token": token_id})
            return bool(gone)

    def set_password(self, user_id: int, password: str) -> None:
        """Set a password; every session of the user ends (the caller starts a new one)."""
        if len(password) < 10:
            raise LearnError("a password needs at least 10 characters")
        with self.db.transaction() as tx:
            tx.run("UPDATE users SET password_hash = ? WHERE id = ?", hash_password(password), user_id)
            self.end_sessions(tx, user_id)
            self.audit(tx, user_id, "password", {})

    def user(self, user_id: int | None) -> dict | None:
        return self.db.one("SELECT * FROM users WHERE id = ?", user_id) if user_id is not None else None

    def user_by_name(self, name: str) -> dict | None:
        return self.db.one("SELECT * FROM users WHERE name = ?", name)

    def people(self) -> list[dict]:
        """Students and TAs, with how many submissions each made."""
        return self.db.all("SELECT u.id, u.name, u.display, u.email, u.role, u.active, u.created_at, "
                           "(SELECT COUNT(*) FROM submissions s WHERE s.user_id = u.id) AS submissions FROM users u "
                           "WHERE u.role IN ('student', 'ta') ORDER BY u.role, u.name")  # fmt: skip

    def set_active(self, actor: int, name: str, active: bool) -> dict:
        """Deactivate (or reactivate) a student or TA: no sign-in, no links, no sessions, no CLI
        tokens; their submissions, grades and hand-graded answers stay."""
        with self.db.transaction() as tx:
            user = tx.one("SELECT * FROM users WHERE name = ?", name)
            if user is None or user["role"] not in ("student", "ta"):
                raise LearnError(f"no student or TA named {name!r}")
            tx.run("UPDATE users SET active = ? WHERE id = ?", int(active), user["id"])
            if not active:
                self.end_sessions(tx, user["id"])
                tx.run("DELETE FROM tokens WHERE user_id = ?", user["id"])
            self.audit(tx, actor, "activate" if active else "deactivate", {"name": name})
        return {**user, "active": int(active)}

    def new_signin_link(self, actor: int | None, name: str, any_role: bool = False) -> str:
        """A fresh sign-in link for an active student or TA (the earlier one stops working);
        `any_role`: the instructor's too (`learn serve COURSE_DIR --signin-link NAME`, for
        whoever runs the server: a lost password)."""
        with self.db.transaction() as tx:
            user = tx.one("SELECT * FROM users WHERE name = ?", name)
            if user is None or user["role"] not in (("student", "ta", "instructor") if any_role else ("student", "ta")):
                raise LearnError(f"no {'account' if any_role else 'student or TA'} named {name!r}")
            if not user["active"]:
                raise LearnError(f"{name} is deactivated: reactivate the account first")
            self.audit(tx, actor, "new_link", {"name": name})
            return self.issue_token(tx, user["id"], "signin", SIGNIN_LINK_S)

    def add_roster(self, text: str, actor: int, role: str = "student") -> list[tuple[str, str, str]]:
        """Add the students of a roster CSV (a `name`/`id`/`login` column; optional `display`/`name`,
        `email`). Returns (name, email, sign-in token) for each active one, new or not: a fresh
        link each time, and the earlier links stop working. Deactivated students are left so."""
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
                existing = tx.one("SELECT role, active FROM users WHERE name = ?", name)
                if existing and existing["role"] != role:
                    raise LearnError(f"{name!r} is already a {existing['role']} account: use another name on the roster")
                if existing and not existing["active"]:
                    continue
                display = (row.get(keys.get("display", ""), "") or "").strip()
                email = (row.get(keys.get("email", ""), "") or "").strip()
                uid = self.add_user(tx, name, role, display, email)
                out.append((name, email, self.issue_token(tx, uid, "signin", SIGNIN_LINK_S)))
            self.audit(tx, actor, "roster", {"added": [n for n, _, _ in out], "role": role})
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

    def maximum(self, a: dict) -> tuple[float, float]:
        """(points of the checks, points graded by hand) an assignment is worth, from its pack."""
        lesson = self.lesson(a["pack"])
        manual = getattr(lesson, "manual", None) or {}
        return float(lesson.max_points), float(sum(m.points for m in manual.values()))

    def budget(self, a: dict) -> float:
        """Seconds one submission of `a` may take to grade: the instructor's budget, else the
        notebooks' own limits added up (grader.executor.default_budget)."""
        from ..executor import default_budget

        return float(a.get("time_budget_s") or default_budget(self.lesson(a["pack"])))

    def update_assignment(self, actor: int, slug: str, **changes) -> None:
        """Change an assignment's due date, late policy, submission limit, hidden-check policy,
        time budget or extra credit (only the keys given); audited with the old and new values.
        Grades are computed from these when shown, so a new late policy applies at once."""
        allowed = {"due_at", "late_percent_per_day", "late_cap_percent", "max_submissions", "hidden_policy", "title", "time_budget_s",
                   "extra_credit"}  # fmt: skip
        unknown = set(changes) - allowed
        if unknown:
            raise LearnError(f"cannot change {', '.join(sorted(unknown))} of an assignment")
        if changes.get("hidden_policy", HIDDEN_POLICIES[0]) not in HIDDEN_POLICIES:
            raise LearnError(f"hidden checks show {changes['hidden_policy']!r}? expected one of {', '.join(HIDDEN_POLICIES)}")
        if changes.get("late_cap_percent", 0) > 100:
            raise LearnError("the late penalty's cap is a percentage: at most 100")
        if changes.get("time_budget_s") is not None and not 5 <= changes["time_budget_s"] <= 6 * 3600:
            raise LearnError("a submission's time budget is between 5 seconds and 6 hours")
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

    def usage(self, user_id: int) -> int:
        """Bytes the student's submissions keep on disk (the quota counts these)."""
        return int(self.db.value("SELECT COALESCE(SUM(bytes), 0) FROM submissions WHERE user_id = ?", user_id) or 0)

    def _may_submit(self, user: dict, a: dict | None, slug: str) -> dict:
        if not a or (not a["published"] and user["role"] not in ("ta", "instructor")):
            raise UploadError(f"no open assignment {slug!r}")
        recent = self.db.value("SELECT COUNT(*) FROM submissions WHERE user_id = ? AND created_at > ?", user["id"], time.time() - 60)
        if recent >= self.limits.per_minute:
            raise TooOften(f"at most {self.limits.per_minute} submissions a minute: wait a moment and submit again")
        if a["max_submissions"]:
            done = self.db.value("SELECT COUNT(*) FROM submissions WHERE user_id = ? AND assignment_id = ?", user["id"], a["id"])
            if done >= a["max_submissions"]:
                raise TooOften(f"the submission limit of this assignment ({a['max_submissions']}) is used up")
        return a

    def latest_copies(self, user_id: int, a: dict, wanted: list[str]) -> dict[str, dict | None]:
        """For each assignment notebook in `wanted`, the student's latest submitted copy of it
        ({"sid", "path", "at"}) or None: what a partial upload is completed with."""
        from ..batch import match_notebooks

        out: dict[str, dict | None] = {name: None for name in wanted}
        lesson = self.lesson(a["pack"])
        rows = self.db.all("SELECT id, files, created_at FROM submissions WHERE user_id = ? AND assignment_id = ? ORDER BY id DESC "
                           "LIMIT 50", user_id, a["id"])  # fmt: skip
        for row in rows:
            if all(out.values()):
                break
            folder = self.uploads / row["files"]
            files = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not p.is_symlink()) if folder.is_dir() else []
            matched = match_notebooks(files, lesson)[0]
            for name in wanted:
                if out[name] is None and name in matched:
                    out[name] = {"sid": row["id"], "path": matched[name], "at": row["created_at"]}
        return out

    def receive(self, user: dict, slug: str, files: list[tuple[str, object]]) -> Upload:
        """Check and unpack an upload (bytes or binary files) into a staging folder: its
        notebooks only (grader.server.uploads), within the limits and the student's quota.
        The caller accepts it (`accept`), or keeps it for the student to confirm (`hold`)."""
        from ..batch import match_notebooks

        a = self._may_submit(user, self.assignment(slug), slug)
        total = sum(_size(data) for _, data in files)
        if total > self.limits.max_bytes:
            raise TooLarge(f"the upload is {size_text(total)}, over the limit of {size_text(self.limits.max_bytes)} per submission")
        self._drop_held()
        staging = self.uploads / f"incoming-{secrets.token_hex(8)}"
        try:
            kept = unpack(files, staging, max_notebooks=self.limits.max_notebooks, max_unzipped=self.limits.max_unzipped)
            if not kept.files:
                raise UploadError("no notebook (.ipynb) in the upload" + (f" ({'; '.join(kept.notes)})" if kept.notes else ""))
            matched, missing, _, _ = match_notebooks(kept.files, self.lesson(a["pack"]))
            if not matched and missing:
                names = ", ".join(p.name for p in kept.files)
                raise UploadError(f"none of the uploaded notebooks ({names}) is one of this assignment's: "
                                  f"{', '.join(spec.file for spec in self.lesson(a['pack']).notebooks)}")  # fmt: skip
            copies = self.latest_copies(user["id"], a, missing) if missing else {}
            extra = sum(c["path"].stat().st_size for c in copies.values() if c)
            used = self.usage(user["id"])
            if used + kept.bytes + extra > self.limits.quota_bytes:
                raise TooLarge(f"your submissions keep {size_text(used)} of your {size_text(self.limits.quota_bytes)} quota on "
                                  f"the server and this one needs {size_text(kept.bytes + extra)}: ask the course staff "
                               "(learn serve --student-quota)")  # fmt: skip
            return Upload(user, a["slug"], staging, kept.notes, kept.bytes + extra, copies)
        except BaseException:
            discard(staging)
            raise

    def hold(self, upload: Upload) -> str:
        """Keep an upload for the student to confirm (a partial one): returns its id. One held
        upload per student; held ones are dropped after an hour."""
        self._drop_held(upload.user["id"])
        token = secrets.token_hex(16)
        held = self.uploads / f"held-{upload.user['id']}-{token}"
        upload.folder.rename(held)
        meta = {"slug": upload.slug, "notes": upload.notes, "bytes": upload.bytes,
                "missing": {k: ({**v, "path": str(v["path"])} if v else None) for k, v in upload.missing.items()}}  # fmt: skip
        fd = os.open(held / ".held.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f)
        return token

    def held(self, user: dict, token: str) -> Upload | None:
        """The student's held upload `token` (None: not theirs, gone or older than an hour)."""
        if not re.fullmatch(r"[0-9a-f]{32}", token or ""):
            return None
        folder = self.uploads / f"held-{user['id']}-{token}"
        try:
            if time.time() - folder.stat().st_mtime > HELD_S:
                discard(folder)
                return None
            meta = json.loads((folder / ".held.json").read_text())
        except (OSError, ValueError):
            return None
        (folder / ".held.json").unlink()
        missing = {k: ({**v, "path": Path(v["path"])} if v else None) for k, v in meta["missing"].items()}
        return Upload(user, meta["slug"], folder, meta["notes"], meta["bytes"], missing)

    def _drop_held(self, user_id: int | None = None) -> None:
        now = time.time()
        for folder in self.uploads.glob("held-*"):
            with contextlib.suppress(OSError):
                if (user_id is not None and folder.name.startswith(f"held-{user_id}-")) or now - folder.stat().st_mtime > HELD_S:
                    discard(folder)

    def accept(self, upload: Upload) -> int:
        """Make a received upload a submission: the notebooks it lacks copied from the student's
        latest copies (noted), then the row and its job in one transaction."""
        try:
            a = self._may_submit(upload.user, self.assignment(upload.slug), upload.slug)
            notes = list(upload.notes)
            for name, copy in upload.missing.items():
                if copy is None:
                    notes.append(f"{name} was not in this upload and was never submitted before: its checks get 0 points")
                    continue
                target = upload.folder / name if not (upload.folder / name).exists() else upload.folder / "earlier" / name
                private_dir(target.parent)
                try:
                    shutil.copyfile(copy["path"], target)
                except OSError:
                    notes.append(f"{name} was not in this upload, and the copy in submission #{copy['sid']} is gone: 0 points")
                    continue
                os.chmod(target, 0o600)
                notes.append(f"{name} was not in this upload: graded from your submission #{copy['sid']} of {_when(copy['at'])}")
            files = sorted(p for p in upload.folder.rglob("*.ipynb") if p.is_file() and not p.is_symlink())
            digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
            with self.db.transaction() as tx:
                sid = tx.new_id("submissions")
                folder = self.uploads / str(sid)
                if folder.exists():
                    shutil.rmtree(folder)
                upload.folder.rename(folder)
                now = time.time()
                tx.run("INSERT INTO submissions (id, user_id, assignment_id, created_at, files, content_hash, notes, state, bytes) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)", sid, upload.user["id"], a["id"], now, str(sid), digest,
                       json.dumps(notes), upload.bytes)  # fmt: skip
                tx.run("INSERT INTO jobs (id, submission_id, state, created_at, user_id) VALUES (?, ?, 'queued', ?, ?)",
                       tx.new_id("jobs"), sid, now, upload.user["id"])  # fmt: skip
            return sid
        finally:
            discard(upload.folder)  # gone already when accepted (renamed)

    def submit(self, user: dict, slug: str, files: list[tuple[str, object]], partial: bool = True) -> int:
        """receive + accept. With `partial=False` an upload lacking some of the assignment's
        notebooks is refused (PartialUpload, saying what is missing) instead."""
        upload = self.receive(user, slug, files)
        if upload.missing and not partial:
            discard(upload.folder)
            raise PartialUpload(upload.warning() + ": submit again with all of them, or confirm (learn submit --partial)",
                                upload)  # fmt: skip
        return self.accept(upload)

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
        rows = self.db.all(f"SELECT s.*, u.name AS student, a.slug AS assignment FROM submissions s JOIN users u ON u.id = s.user_id "
                           f"JOIN assignments a ON a.id = s.assignment_id WHERE {where} ORDER BY s.id", *params)  # fmt: skip
        return [self.with_grade(r, viewer) for r in rows]

    # -----------------------------------------------------------------------------------------
    # grades

    def current_override(self, user_id: int, assignment_id: int) -> dict | None:
        """The override in force for a student's assignment (the latest not cleared), with who set it."""
        return self.db.one("SELECT o.*, u.name AS by_name FROM overrides o LEFT JOIN users u ON u.id = o.by_user WHERE o.user_id = ? "
                           "AND o.assignment_id = ? AND o.cleared_at IS NULL ORDER BY o.id DESC LIMIT 1", user_id, assignment_id)  # fmt: skip

    def manual_items(self, user_id: int, assignment_id: int) -> list[dict]:
        """The student's answers graded by hand (points None: not graded yet), with titles from the pack."""
        return self.db.all("SELECT id, item, max_points, points, comment, graded_at FROM manual_items WHERE user_id = ? "
                           "AND assignment_id = ? ORDER BY id", user_id, assignment_id)  # fmt: skip

    def with_grade(self, row: dict, viewer: dict | None = None) -> dict:
        """The row plus everything its grade is made of (what staff and the student both see):

        points, max_points   the checks (for a `viewer` who may not see the hidden checks
                             yet: the visible ones only, `hidden_pending`)
        late_penalty         percent taken off the checks' points; late_points: how many
        manual               answers graded by hand (points None until graded), manual_points
                             given so far, manual_max, manual_pending (points still to grade)
        override             the override in force (it belongs to the student and the
                             assignment until cleared; shown on the latest submission and
                             on the one it was set on), else None
        final, possible      override, or checks - late + manual; out of checks + manual
        """
        full = row if "user_id" in row and "result_json" in row and "assignment" in row else self.submission(row["id"])
        a = self.assignment(full["assignment"])
        due = self.due_for(a, full["user_id"])
        penalty = late_penalty(full["created_at"], due, a["late_percent_per_day"], a["late_cap_percent"])
        points, possible, pending = full.get("points"), full.get("max_points"), False
        if viewer is not None and full["result_json"] and not self.hidden_visible(a, viewer):
            checks = [c for nb in json.loads(full["result_json"]).get("notebooks", []) for c in nb.get("checks", []) if c.get("hidden")]
            pending = bool(checks)
            points = None if points is None else round(points - sum(c.get("points", 0) for c in checks), 2)
            possible = None if possible is None else round(possible - sum(c.get("max_points", 0) for c in checks), 2)
        if possible is None:  # not graded yet: what the assignment is worth
            possible = self.maximum(a)[0] if viewer is None or self.hidden_visible(a, viewer) else None
        manual = self.manual_items(full["user_id"], a["id"])
        manual_points = round(sum(m["points"] or 0.0 for m in manual), 2)
        manual_max = round(sum(m["max_points"] for m in manual), 2)
        override = self.current_override(full["user_id"], a["id"])
        if override is not None:
            latest = self.db.value("SELECT MAX(id) FROM submissions WHERE user_id = ? AND assignment_id = ?", full["user_id"], a["id"])
            if full["id"] not in (latest, override["submission_id"]):
                override = None
        late_points = round((points or 0.0) * penalty / 100, 2)
        checks_final = None if points is None else round(points - late_points, 2)
        if override is not None:
            final = override["points"]
        else:
            final = None if checks_final is None else round(checks_final + manual_points, 2)
        total = None if possible is None else round(possible + manual_max, 2)
        out = {**row, "points": points, "max_points": possible, "late_penalty": penalty, "late_points": late_points, "override": override,
               "final": final, "possible": total, "due_at": due, "hidden_pending": pending, "manual": manual,
               "manual_points": manual_points, "manual_max": manual_max,
               "manual_pending": round(sum(m["max_points"] for m in manual if m["points"] is None), 2)}  # fmt: skip
        for key in ("student", "assignment", "user_id", "assignment_id", "created_at", "state", "status", "notes", "error"):
            out.setdefault(key, full.get(key))
        return out

    def override(self, actor: int, sid: int, points: float, reason: str) -> None:
        """Set the grade of a student's assignment by hand, with a reason (audited). It stays in
        force over later submissions until cleared. At most the assignment's maximum, unless the
        instructor allowed extra credit."""
        if not reason.strip():
            raise LearnError("an override needs a reason")
        sub = self.submission(sid)
        if sub is None:
            raise LearnError(f"no submission {sid}")
        a = self.assignment(sub["assignment"])
        checks_max, manual_max = self.maximum(a)
        top = checks_max + manual_max
        if points < 0 or (points > top + 1e-9 and not a["extra_credit"]):
            more = "" if a["extra_credit"] else " (extra credit is off for this assignment: the instructor can turn it on)"
            raise LearnError(f"override points must be between 0 and {top:g}, the assignment's maximum{more}")
        with self.db.transaction() as tx:
            tx.run("INSERT INTO overrides (id, submission_id, points, reason, by_user, at, user_id, assignment_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tx.new_id("overrides"), sid, points, reason.strip(), actor, time.time(),
                   sub["user_id"], sub["assignment_id"])  # fmt: skip
            self.audit(tx, actor, "override", {"submission": sid, "points": points, "reason": reason.strip()})

    def clear_override(self, actor: int, sid: int) -> bool:
        """End the override in force for the student and assignment of submission `sid`."""
        sub = self.submission(sid)
        if sub is None:
            raise LearnError(f"no submission {sid}")
        with self.db.transaction() as tx:
            done = tx.run("UPDATE overrides SET cleared_at = ?, cleared_by = ? WHERE user_id = ? AND assignment_id = ? AND "
                          "cleared_at IS NULL", time.time(), actor, sub["user_id"], sub["assignment_id"])  # fmt: skip
            if done:
                self.audit(tx, actor, "clear_override", {"submission": sid})
        return bool(done)

    def latest(self, slug: str, graded: bool = False) -> list[dict]:
        """Each student's latest submission of an assignment (`graded`: their latest graded one)."""
        only_graded = " AND s2.state = 'graded'" if graded else ""
        return self.db.all(
            "SELECT s.*, u.name AS student, a.slug AS assignment FROM submissions s JOIN users u ON u.id = s.user_id "
            "JOIN assignments a ON a.id = s.assignment_id WHERE a.slug = ? AND s.id = (SELECT MAX(s2.id) FROM submissions s2 "
            f"WHERE s2.user_id = s.user_id AND s2.assignment_id = s.assignment_id{only_graded}) ORDER BY u.name",
            slug,
        )

    def not_submitted(self, slug: str) -> list[dict]:
        """Active students without any submission of the assignment."""
        return self.db.all("SELECT u.id, u.name, u.display, u.email FROM users u WHERE u.role = 'student' AND u.active = 1 AND "
                           "NOT EXISTS (SELECT 1 FROM submissions s JOIN assignments a ON a.id = s.assignment_id WHERE "
                           "s.user_id = u.id AND a.slug = ?) ORDER BY u.name", slug)  # fmt: skip

    def _absent_record(self, a: dict, student: str):
        """A non-submitter as the exports see them: every check 0 ('not submitted')."""
        from ..executor import stand_in
        from ..gradebook import CheckRow, SubmissionRecord
        from ..results import RunResult

        lesson = self.lesson(a["pack"])
        run = RunResult([stand_in(lesson, spec, spec.file, "not_submitted", f"{spec.file} was not submitted", a["seed"])
                         for spec in lesson.notebooks], seed=a["seed"])  # fmt: skip
        checks = [CheckRow(nb.exercise, c.name, c.title, str(c.status), 0.0, c.max_points, c.kind, c.message, c.hidden, 0.0)
                  for nb in run.notebooks for c in nb.checks]  # fmt: skip
        return SubmissionRecord(0, student, a["slug"], "not_submitted", "not submitted", 0.0, run.max_points, 0.0, None, None,
                                ["not submitted"], None, "", "", "", checks, json.dumps(run.to_dict()))  # fmt: skip

    def records(self, slug: str, split_manual: bool = False) -> list:
        """Every student's grade as grader.gradebook.SubmissionRecord (for export.py and
        dashboard.py): the latest submission's final score (checks less the late penalty, plus
        hand-graded answers, or the override in force, which replaces both), and for each active
        student without a submission a record with 0 points (state 'not_submitted'). Timeouts
        are problems (the dashboard's attention list shows them). With `split_manual`, points and
        maximum leave the hand-graded items out, for the exports that list those on their own."""
        from ..gradebook import CheckRow, SubmissionRecord
        from ..results import RunResult

        a = self.assignment(slug)
        out = []
        for row in self.latest(slug):
            graded = self.with_grade(row)
            run = RunResult.from_dict(json.loads(row["result_json"])) if row["result_json"] else None
            checks = [CheckRow(nb.exercise or nb.path, c.name, c.title, str(c.status), c.points, c.max_points, c.kind, c.message,
                               c.hidden, c.duration) for nb in (run.notebooks if run else []) for c in nb.checks]  # fmt: skip
            state = "graded" if row["state"] == "graded" else "pending"
            problems = json.loads(row["notes"] or "[]") + (timeouts(json.loads(row["result_json"])) if row["result_json"] else [])
            if graded["late_penalty"]:
                problems.append(f"late: -{graded['late_penalty']:g}%")
            if graded["override"]:
                problems.append(f"override: {graded['override']['reason']}")
            if any(m["points"] is None for m in graded["manual"]):
                problems.append(f"{sum(m['points'] is None for m in graded['manual'])} answer(s) not graded by hand yet")
            final, possible = graded["final"] or 0.0, graded["possible"] or 0.0
            if split_manual:
                final, possible = round(final - graded["manual_points"], 2), possible - graded["manual_max"]
            out.append(SubmissionRecord(row["id"], row["student"], slug, state, row["status"], final,
                                        possible, run.duration if run else 0.0, row["error"], None, problems,
                                        None, row["content_hash"], "", "", checks, row["result_json"]))  # fmt: skip
        if a is not None:
            manual_max = 0.0 if split_manual else self.maximum(a)[1]
            for u in self.not_submitted(slug):
                record = self._absent_record(a, u["name"])
                record.max_points += manual_max
                out.append(record)
        return sorted(out, key=lambda r: r.student)

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
        if a is not None:  # a non-submitter's items: 0, not graded (they wrote nothing)
            for u in self.not_submitted(slug):
                out[(u["name"], slug)] = [ManualRow(u["name"], slug, name, spec.title, spec.notebook, spec.kind, float(spec.points), NEEDS,
                                                    None, "not submitted", "", True, None, None) for name, spec in specs.items()]  # fmt: skip
        return out

    def manual_titles(self, a: dict) -> dict[str, str]:
        specs = getattr(self.lesson(a["pack"]), "manual", None) or {}
        return {name: spec.title or name for name, spec in specs.items()}

    def regrade(self, actor: int, sids: list[int]) -> int:
        now = time.time()
        queued = []
        with self.db.transaction() as tx:
            for sid in sids:
                if tx.value("SELECT COUNT(*) FROM jobs WHERE submission_id = ? AND state IN ('queued', 'leased')", sid):
                    continue  # already waiting or being graded: once is enough
                owner = tx.value("SELECT user_id FROM submissions WHERE id = ?", sid)
                tx.run("UPDATE submissions SET state = 'queued' WHERE id = ?", sid)
                tx.run("INSERT INTO jobs (id, submission_id, state, created_at, user_id) VALUES (?, ?, 'queued', ?, ?)",
                       tx.new_id("jobs"), sid, now, owner)  # fmt: skip
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

    # -----------------------------------------------------------------------------------------
    # feedback reports: rendered once per graded submission (grader.server.render)

    def store_reports(self, tx, sid: int, reports: dict[str, str]) -> None:
        count = tx.value("SELECT grade_count FROM submissions WHERE id = ?", sid)
        tx.run("DELETE FROM reports WHERE submission_id = ?", sid)
        for variant, html in reports.items():
            tx.run("INSERT INTO reports (submission_id, variant, html, grade_count) VALUES (?, ?, ?, ?)", sid, variant, html, count)

    def stored_report(self, sid: int, variant: str) -> str | None:
        """The stored report of the submission's current grade (None: none, or an older grade's)."""
        return self.db.value("SELECT r.html FROM reports r JOIN submissions s ON s.id = r.submission_id WHERE r.submission_id = ? "
                             "AND r.variant = ? AND r.grade_count = s.grade_count", sid, variant)  # fmt: skip

    def queue_counts(self) -> dict[str, int]:
        rows = self.db.all("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}


HELD_S = 3600.0  # a partial upload waits this long for the student's confirmation


class TooLarge(UploadError):
    """Over a size limit or the student's quota (HTTP 413)."""

    status = 413


class TooOften(UploadError):
    """Over the submissions-per-minute limit, or the assignment's submission limit (HTTP 429)."""

    status = 429


class PartialUpload(UploadError):
    """An upload lacking some of the assignment's notebooks, refused until the student confirms (HTTP 409)."""

    status = 409

    def __init__(self, message: str, upload: Upload):
        super().__init__(message)
        self.missing = {k: ({"sid": v["sid"], "at": v["at"]} if v else None) for k, v in upload.missing.items()}
