"""`learn review`: one daily queue of spaced-repetition items, scheduled with FSRS.

    learn quiz / learn predict ──record_items──► review_cards (progress.db): one FSRS card per item
    learn check results (latest per function) ──failed──► "re-do it" items
                                   │
    learn review ──due today──► ask the item ──learner's rating (1-4)──► fsrs.Scheduler ──► next due

Items are named KIND:PACK:ID:
    quiz:chapter4:free-view      a quiz question (asked again; wrong answers are due at once)
    drill:lesson3:view-flat      a predict-the-output drill
    check:lesson3:quad           a graded function whose latest check failed: "re-do it in your
                                 notebook, then `learn check --only quad`"

A question or drill answered in `learn quiz`/`learn predict` gets a card (wrong: due now, right:
scheduled as a "good" review). Days are day-level (no minute learning steps, no fuzzing), so a
schedule is reproducible. The clock is `now()`: LEARN_NOW (ISO 8601) overrides it, for tests and
for simulating days.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LearnError, QuizAnswersError
from .yamlfile import load_yaml

__all__ = ["now", "record_items", "due_items", "due_forecast", "ReviewItem", "run_review", "REVIEW_SCHEMA", "KINDS"]

KINDS = ("quiz", "drill", "check")
REVIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_cards (
    item TEXT PRIMARY KEY,          -- KIND:PACK:ID
    kind TEXT NOT NULL,
    card TEXT NOT NULL,             -- fsrs.Card.to_dict() as JSON
    due TEXT NOT NULL,              -- ISO 8601 UTC (copied from the card, for queries)
    last_rating INTEGER,
    reviews INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS review_log (
    id INTEGER PRIMARY KEY,
    item TEXT NOT NULL,
    at TEXT NOT NULL,
    rating INTEGER NOT NULL,
    correct INTEGER
);
"""
RATINGS = {1: "again", 2: "hard", 3: "good", 4: "easy"}


def now() -> _dt.datetime:
    """The current time (UTC); LEARN_NOW=2026-03-01T09:00:00+00:00 pretends it is then."""
    fake = os.environ.get("LEARN_NOW")
    if fake:
        try:
            value = _dt.datetime.fromisoformat(fake)
        except ValueError:
            raise LearnError(f"LEARN_NOW={fake!r} is not an ISO 8601 time such as 2026-03-01T09:00:00+00:00") from None
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    return _dt.datetime.now(_dt.UTC)


def _scheduler():
    from fsrs import Scheduler

    return Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)


def _new_card(item: str, at: _dt.datetime):
    from fsrs import Card

    return Card(card_id=zlib.crc32(item.encode()) + 1, due=at)


def _load_card(text: str):
    from fsrs import Card

    return Card.from_dict(json.loads(text))


def _rate(card, rating: int, at: _dt.datetime):
    from fsrs import Rating

    card, _ = _scheduler().review_card(card, Rating(rating), at.astimezone(_dt.UTC))
    return card


def _save(conn, item: str, card, rating: int | None, at: _dt.datetime, correct: bool | None, count: bool = True) -> None:
    kind = item.split(":", 1)[0]
    conn.execute(
        "INSERT INTO review_cards (item, kind, card, due, last_rating, reviews, updated) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(item) DO UPDATE SET card = excluded.card, due = excluded.due, last_rating = excluded.last_rating,"
        " reviews = review_cards.reviews + ?, updated = excluded.updated",
        (item, kind, json.dumps(card.to_dict()), card.due.astimezone(_dt.UTC).isoformat(), rating, int(count), at.isoformat(), int(count)),
    )
    if rating is not None:
        conn.execute("INSERT INTO review_log (item, at, rating, correct) VALUES (?, ?, ?, ?)",
                     (item, at.isoformat(), rating, None if correct is None else int(correct)))  # fmt: skip


def _cards(conn) -> dict[str, tuple]:
    conn.executescript(REVIEW_SCHEMA)
    return {r[0]: r[1:] for r in conn.execute("SELECT item, card, due, last_rating, reviews FROM review_cards")}


def _read_cards(path: Path | None) -> dict[str, tuple]:
    """The cards, read only: no history yet (or an unreadable one) is an empty queue."""
    from .progress import connect

    try:
        with connect(path, create=False) as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'review_cards'").fetchone():
                return {}
            return {r[0]: r[1:] for r in conn.execute("SELECT item, card, due, last_rating, reviews FROM review_cards")}
    except (sqlite3.Error, OSError):
        return {}


def record_items(items: list[tuple[str, str, bool]], path: Path | None = None, at: _dt.datetime | None = None) -> str | None:
    """After a quiz or drills: (kind, "PACK:ID", correct) per item. A wrong answer makes the item
    due now; a right answer to a new item schedules it as a good review. Returns a warning or None."""
    from .progress import _warning, connect

    if not items:
        return None
    at = at or now()
    try:
        with connect(path) as conn:
            cards = _cards(conn)
            for kind, key, correct in items:
                item = f"{kind}:{key}"
                if correct and item in cards:
                    continue  # already scheduled: a right answer outside review leaves it be
                card = _new_card(item, at) if item not in cards else _load_card(cards[item][0])
                if correct:
                    card = _rate(card, 3, at)
                else:
                    card.due = at
                _save(conn, item, card, None, at, correct, count=False)
        return None
    except (sqlite3.Error, OSError, ValueError, KeyError) as exc:
        return _warning(exc, path)


def failed_checks(path: Path | None = None) -> dict[str, str]:
    """check:LESSON:NAME -> notebook, for every graded function whose latest check failed."""
    from .progress import connect

    try:
        with connect(path, create=False) as conn:
            rows = conn.execute(
                "SELECT a.lesson, a.notebook, r.item, r.passed FROM results r JOIN attempts a ON a.id = r.attempt_id"
                " WHERE a.kind = 'check' ORDER BY a.at, a.id"
            ).fetchall()
    except (sqlite3.Error, OSError):
        return {}
    latest: dict[str, tuple[str, bool]] = {}
    for lesson, notebook, name, passed in rows:
        latest[f"check:{lesson}:{name}"] = (notebook or "", bool(passed))
    return {item: nb for item, (nb, passed) in latest.items() if not passed}


@dataclass
class ReviewItem:
    item: str
    due: _dt.datetime
    card: object = None
    notebook: str = ""

    @property
    def kind(self) -> str:
        return self.item.split(":", 1)[0]

    @property
    def pack(self) -> str:
        return self.item.split(":")[1]

    @property
    def key(self) -> str:
        return self.item.split(":", 2)[2]


def _end_of_day(at: _dt.datetime) -> _dt.datetime:
    return at.replace(hour=23, minute=59, second=59, microsecond=0)


def due_items(path: Path | None = None, at: _dt.datetime | None = None) -> list[ReviewItem]:
    """Today's queue (due before the end of the day, UTC), oldest first: quiz and drill cards
    that are due, and failed checks that are new or due."""
    at = at or now()
    horizon = _end_of_day(at)
    cards = _read_cards(path)
    failing = failed_checks(path)
    out = []
    for item, (card_json, due, _rating, _reviews) in cards.items():
        kind = item.split(":", 1)[0]
        if kind == "check" and item not in failing:
            continue  # fixed since: nothing to re-do
        when = _dt.datetime.fromisoformat(due)
        if when <= horizon:
            out.append(ReviewItem(item, when, _load_card(card_json), failing.get(item, "")))
    for item, notebook in failing.items():
        if item not in cards:
            out.append(ReviewItem(item, at, None, notebook))
    return sorted(out, key=lambda r: (r.due, r.item))


def due_forecast(days: int = 14, path: Path | None = None, at: _dt.datetime | None = None) -> list[tuple[_dt.date, int]]:
    """Items due on each of the next `days` days (day 0 = today, including anything overdue)."""
    at = at or now()
    today = at.date()
    counts = [0] * days
    cards = _read_cards(path)
    failing = failed_checks(path)
    for item, (_card, due, _rating, _reviews) in cards.items():
        if item.startswith("check:") and item not in failing:
            continue
        offset = max(0, (_dt.datetime.fromisoformat(due).date() - today).days)
        if offset < days:
            counts[offset] += 1
    counts[0] += sum(1 for item in failing if item not in cards)
    return [(today + _dt.timedelta(days=i), n) for i, n in enumerate(counts)]


def rate(item: ReviewItem, rating: int, correct: bool | None, path: Path | None = None, at: _dt.datetime | None = None) -> _dt.datetime:
    """Record the learner's rating of a reviewed item; returns when it is due next."""
    from .progress import connect

    at = at or now()
    card = item.card or _new_card(item.item, at)
    card = _rate(card, rating, at)
    with connect(path) as conn:
        conn.executescript(REVIEW_SCHEMA)
        _save(conn, item.item, card, rating, at, correct)
    return card.due


# ---------------------------------------------------------------------------------------------
# the session


@dataclass
class ReviewSession:
    reviewed: list[tuple[str, int, bool | None]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Asker:
    """Asks one item of each kind; quizzes and drill packs are loaded once per session."""

    def __init__(self, items: list[ReviewItem], console, read_line, drill_runner_factory=None, code_runner_factory=None):
        self.console, self.read_line = console, read_line
        self._quizzes: dict = {}
        self._drills: dict = {}
        self._runners: dict = {}
        self._code = None
        self._drill_runner_factory = drill_runner_factory
        self._code_runner_factory = code_runner_factory
        by_pack: dict[str, list] = {}
        for it in items:
            if it.kind == "drill":
                drill = self.drill(it)
                if drill is not None:
                    by_pack.setdefault(it.pack, []).append(drill)
        if drill_runner_factory is not None:
            from .lessons import get_lesson

            for pack, drills in by_pack.items():
                self._runners[pack] = drill_runner_factory(get_lesson(pack), drills)

    def quiz_question(self, it: ReviewItem):
        from .quiz import find_quiz

        if it.pack not in self._quizzes:
            try:
                self._quizzes[it.pack] = find_quiz(it.pack)
            except LearnError:
                self._quizzes[it.pack] = None
        quiz = self._quizzes[it.pack]
        try:
            return quiz.question(it.key) if quiz is not None else None
        except KeyError:
            return None

    def drill(self, it: ReviewItem):
        from .lessons import get_lesson
        from .predict import load_drills

        if it.pack not in self._drills:
            try:
                self._drills[it.pack] = {d.id: d for d in load_drills(get_lesson(it.pack))}
            except LearnError:
                self._drills[it.pack] = {}
        return self._drills[it.pack].get(it.key)

    def ask_quiz(self, it: ReviewItem, given=None):
        """Feedback for a quiz item: asked, or graded from `given` (answers file)."""
        from .quiz import _ask, _print_feedback, _print_question, check_answer, parse_input

        q = self.quiz_question(it)
        if q is None:
            return None
        if given is not None:
            fb = self._code_grade(q, given) if q.type == "code" else check_answer(q, parse_input(q, given))
        else:
            if q.params:  # a retry shows a new variant
                from .quiz.variants import instantiate, new_seed

                q = instantiate(q, new_seed())
            _print_question(self.console, q, 1, 1)
            if q.type == "code" and self._code is None and self._code_runner_factory is not None:
                self._code = self._code_runner_factory()
            fb = _ask(q, self.console, self.read_line, self._code)
        _print_feedback(self.console, q, fb)
        return fb

    def _code_grade(self, q, code):
        from .quiz import Feedback

        if self._code is None and self._code_runner_factory is not None:
            self._code = self._code_runner_factory()
        if self._code is None:
            return Feedback(False, "code answers cannot be run in this session", code, graded=False)
        return self._code.grade(q, code)

    def ask_drill(self, it: ReviewItem, given=None):
        from .predict import PredictionError, grade, parse_prediction, print_drill, print_result

        drill = self.drill(it)
        if drill is None:
            return None
        if given is not None:
            prediction = parse_prediction(drill, given)
        else:
            print_drill(self.console, drill, 1, 1)
            while True:
                try:
                    prediction = parse_prediction(drill, self.read_line("Your prediction: "))
                    break
                except PredictionError as exc:
                    self.console.print(f"  ({exc})", markup=False, highlight=False)
        runner = self._runners.get(it.pack)
        outcome = runner.outcome(drill) if runner is not None else "drills cannot be run in this session"
        result = grade(drill, prediction, outcome)
        print_result(self.console, drill, result)
        return result

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        if self._code is not None:
            self._code.close()


def _ask_rating(read_line, console, default: int) -> int:
    from rich.text import Text

    while True:
        reply = read_line(f"How well did you know it? 1 again, 2 hard, 3 good, 4 easy [{default}]: ").strip().lower()
        if not reply:
            return default
        for number, name in RATINGS.items():
            if reply in (str(number), name):
                return number
        console.print(Text("  (type 1, 2, 3 or 4, or press Enter)", style="dim"))


def _parse_review_answers(text: str, source: str) -> dict[str, dict]:

    data = load_yaml(text, source, QuizAnswersError)
    if not isinstance(data, dict):
        raise QuizAnswersError(f"{source}: a review answers file maps KIND:PACK:ID to an answer (or {{answer: ..., rating: 1-4}})")
    out = {}
    for item, value in data.items():
        if not isinstance(item, str) or item.split(":", 1)[0] not in KINDS or item.count(":") < 2:
            raise QuizAnswersError(
                f"{source}: {item!r} is not an item name like quiz:chapter4:free-view, drill:lesson3:ID or check:lesson3:NAME"
            )
        entry = value if isinstance(value, dict) else {"answer": value}
        extra = sorted(str(k) for k in entry if k not in ("answer", "rating"))
        if extra:
            raise QuizAnswersError(f"{source}: {item}: unknown key(s) {extra}; give answer and/or rating")
        rating = entry.get("rating")
        if rating is not None and (isinstance(rating, bool) or rating not in RATINGS):
            raise QuizAnswersError(f"{source}: {item}: rating must be 1 (again), 2 (hard), 3 (good) or 4 (easy)")
        if item.startswith("check:") and rating is None:
            raise QuizAnswersError(f"{source}: {item}: a check item needs a rating (you re-did it in your notebook)")
        if not item.startswith("check:") and entry.get("answer") is None:
            raise QuizAnswersError(f"{source}: {item}: give the answer (or prediction)")
        out[item] = entry
    return out


def run_review(console, read_line, *, answers_text: str | None = None, answers_source: str = "<answers>", limit: int | None = None,
               drill_runner_factory=None, code_runner_factory=None, path: Path | None = None) -> ReviewSession:  # fmt: skip
    """Today's queue, one item at a time, each rated; or graded from an answers file."""
    from rich.text import Text

    from .inert import terminal
    from .predict import PredictionError
    from .quiz import QuizInputError

    answers = _parse_review_answers(answers_text, answers_source) if answers_text is not None else None
    at = now()
    queue = due_items(path, at)
    if limit:
        queue = queue[:limit]
    session = ReviewSession()
    if answers is not None:
        due = {it.item for it in queue}
        for item in sorted(set(answers) - due):
            console.print(Text(f"- {terminal(item)}: not due today, left as it is", style="dim"))
        queue = [it for it in queue if it.item in answers]
    counts = {k: sum(1 for it in queue if it.kind == k) for k in KINDS}
    if not queue:
        console.print(Text("Nothing to review today." + _next_due_text(path, at)))
        return session
    console.print(Text(f"Review for {at.date().isoformat()}: {len(queue)} item{'s' * (len(queue) != 1)} "
                       f"({counts['quiz']} questions, {counts['drill']} drills, {counts['check']} functions to re-do). "
                       "Rate each: 1 again, 2 hard, 3 good, 4 easy. End of input (Ctrl-D) stops; the rest stay due.", style="bold"))  # fmt: skip
    shown = ", ".join(it.item for it in queue[:10]) + (f" and {len(queue) - 10} more" if len(queue) > 10 else "")
    console.print(Text(f"Today: {terminal(shown)}", style="dim"))
    asker = _Asker(queue, console, read_line, drill_runner_factory, code_runner_factory)
    try:
        for number, it in enumerate(queue, 1):
            entry = answers.get(it.item, {}) if answers is not None else {}
            console.print()
            console.print(Text(f"Review {number}/{len(queue)}  {it.item}", style="bold magenta"))
            correct: bool | None = None
            if it.kind == "check":
                name = it.key
                console.print(Text(f"Your latest check of {name} ({it.pack}{', ' + it.notebook if it.notebook else ''}) failed. "
                                   f"Re-do it in your notebook, then run `learn check --only {name}`."))  # fmt: skip
                default = 1
            else:
                try:
                    result = asker.ask_quiz(it, entry.get("answer")) if it.kind == "quiz" else asker.ask_drill(it, entry.get("answer"))
                except (QuizInputError, PredictionError) as exc:
                    raise QuizAnswersError(f"{answers_source}: {it.item}: {exc}") from None
                if result is None:
                    console.print(Text("  (this item no longer exists in its quiz or pack; dropped from today's queue)", style="dim"))
                    session.skipped.append(it.item)
                    continue
                if not result.graded:
                    console.print(Text("  (not rated: it could not be graded; it stays due)", style="yellow"))
                    session.skipped.append(it.item)
                    continue
                correct = bool(result.correct)
                default = 3 if correct else 1
            rating = entry.get("rating") or (default if answers is not None else _ask_rating(read_line, console, default))
            try:
                due = rate(it, rating, correct, path, at)
            except (sqlite3.Error, OSError) as exc:
                session.warnings.append(f"could not save the review of {it.item}: {exc}")
                console.print(Text(f"warning: {session.warnings[-1]}", style="yellow"))
                continue
            session.reviewed.append((it.item, rating, correct))
            days = (due.date() - at.date()).days
            console.print(
                Text(f"  rated {RATINGS[rating]}: next review in {days} day{'s' * (days != 1)} ({due.date().isoformat()})", style="dim")
            )
    except (EOFError, KeyboardInterrupt):
        console.print()
        console.print(Text(f"Stopped: {len(session.reviewed)} reviewed; the rest stay due."))
        return session
    finally:
        asker.close()
    console.print()
    console.print(
        Text(f"Reviewed {len(session.reviewed)} item{'s' * (len(session.reviewed) != 1)}." + _next_due_text(path, at), style="bold")
    )
    return session


def _next_due_text(path, at) -> str:
    forecast = due_forecast(14, path, at)
    upcoming = [(d, n) for d, n in forecast[1:] if n]
    if not upcoming:
        return ""
    day, n = upcoming[0]
    return f" Next: {n} due on {day.isoformat()}."


def summary_line(path: Path | None = None, at: _dt.datetime | None = None) -> str:
    """'Review: N due today, M more this week' for `learn progress` ('' when nothing is scheduled)."""
    forecast = due_forecast(14, path, at)
    today, week = forecast[0][1], sum(n for _, n in forecast[1:7])
    if not today and not sum(n for _, n in forecast):
        return ""
    return f"Review: {today} due today, {week} more in the next 6 days (learn review)"


def panel(path: Path | None = None, at: _dt.datetime | None = None) -> dict | None:
    """What the progress page's "review" panel shows (None when nothing was ever scheduled)."""
    from .html import svg_bars

    at = at or now()
    forecast = due_forecast(14, path, at)
    if not sum(n for _, n in forecast):
        return None
    items = due_items(path, at)
    counts = {k: sum(1 for it in items if it.kind == k) for k in KINDS}
    labels = ["today" if i == 0 else day.strftime("%a %d %b") for i, (day, _) in enumerate(forecast)]
    plot = svg_bars(labels, [n for _, n in forecast], title="Due for review, next 14 days", xlabel="items due")
    return {"today": len(items), "counts": counts, "queue": [it.item for it in items[:20]], "more": max(0, len(items) - 20),
            "forecast": [(day.isoformat(), n) for day, n in forecast], "plot": plot}  # fmt: skip
