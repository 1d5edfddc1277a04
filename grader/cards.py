"""The review cards: one FSRS card per item a learner should see again, kept in progress.db.

    learn quiz / learn predict ──record_items──► review_cards: one card per question or drill
    learn check results (latest per function) ──failed──► "re-do it" items (failed_checks)
                                   │
    due_items / due_forecast ──► learn review (grader.review) asks, the learner rates (1-4),
                                 rate() ──► fsrs.Scheduler ──► next due
    summary_line, panel ──► learn progress, the progress page

Items are named KIND:PACK:ID:
    quiz:chapter4:free-view      a quiz question (asked again; wrong answers are due at once)
    drill:lesson3:view-flat      a predict-the-output drill
    check:lesson3:quad           a graded function whose latest check failed

A question or drill answered in `learn quiz`/`learn predict` gets a card (wrong: due now, right:
scheduled as a "good" review). Days are day-level (no minute learning steps, no fuzzing), so a
schedule is reproducible. The clock is `now()`: LEARN_NOW (ISO 8601) overrides it, for tests and
for simulating days. This module is the cards' one home: quiz, predict and review record and read
them here, and none of them imports another.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import LearnError

__all__ = ["now", "record_items", "failed_checks", "due_items", "due_forecast", "rate", "summary_line", "panel", "ReviewItem",
           "REVIEW_SCHEMA", "KINDS", "RATINGS"]  # fmt: skip

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
    from .progress import connect, history_warning

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
        return history_warning(exc, path)


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


def summary_line(path: Path | None = None, at: _dt.datetime | None = None) -> str:
    """'Review: N due today, M more this week' for `learn progress` ('' when nothing is scheduled)."""
    forecast = due_forecast(14, path, at)
    today, week = forecast[0][1], sum(n for _, n in forecast[1:7])
    if not today and not sum(n for _, n in forecast):
        return ""
    return f"Review: {today} due today, {week} more in the next 6 days (learn review)"


def panel(path: Path | None = None, at: _dt.datetime | None = None) -> dict | None:
    """What the progress page's "review" panel shows (None when nothing was ever scheduled)."""
    from .plots import svg_bars

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
