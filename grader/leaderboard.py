"""The class leaderboard: students ranked by a metric their graded notebooks report.

A pack's check can carry a number in its result's `series` as an entry of kind "metric" (the
capstone's `ten_digits` check reports the holdout accuracy there). `learn grade` stores the full
result of every submission in the gradebook, so the leaderboard is read from what was recorded -
nothing is re-graded:

    gradebook ── result JSON ── check.series[key] = {"kind": "metric", "value": 0.955,
                                                     "display_name": "Ada" | None, ...}
              └─► entries, best first: rank (ties share one), shown name, value

Names are opt-in: a learner who set no display name is shown as "anonymous", and student ids
never appear on the board. A display name is learner text: the pack makes it inert, single-line
text, and it is cleaned again here before any view shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gradebook import SubmissionRecord
from .inert import visible

__all__ = ["Entry", "Board", "leaderboard", "ANONYMOUS"]

ANONYMOUS = "anonymous"
NAME_LIMIT = 40


@dataclass
class Entry:
    rank: int
    shown: str  # the display name, or ANONYMOUS
    value: float
    opted_in: bool


@dataclass
class Board:
    assignment: str
    metric: str  # the series key, e.g. "holdout_accuracy"
    title: str  # the metric's own words, e.g. "holdout accuracy"
    entries: list[Entry]
    reference: float | None = None  # the reference solution's value, when the pack gives it
    bar: float | None = None


def _clean(name) -> str | None:
    if type(name) is not str:
        return None
    shown = " ".join(visible(name, single_line=True).split())[:NAME_LIMIT]
    return shown or None


def _metrics(record: SubmissionRecord) -> dict[str, dict]:
    """{series key: metric entry} of one submission's recorded result (empty when there is none)."""
    run = record.run_result() if record.result_json else None
    found: dict[str, dict] = {}
    for nb in run.notebooks if run else []:
        for check in nb.checks:
            for key, spec in (check.series or {}).items():
                if isinstance(spec, dict) and spec.get("kind") == "metric" and isinstance(spec.get("value"), (int, float)):
                    found[key] = spec
    return found


def leaderboard(records: list[SubmissionRecord]) -> list[Board]:
    """One board per (assignment, metric) found in the records, entries best first."""
    rows: dict[tuple[str, str], list[tuple[SubmissionRecord, dict]]] = {}
    for record in records:
        for key, spec in _metrics(record).items():
            rows.setdefault((record.assignment, key), []).append((record, spec))
    boards = []
    for (assignment, key), found in sorted(rows.items()):
        found.sort(key=lambda pair: -float(pair[1]["value"]))
        entries: list[Entry] = []
        for i, (_, spec) in enumerate(found):
            value = float(spec["value"])
            rank = entries[-1].rank if entries and entries[-1].value == value else i + 1
            name = _clean(spec.get("display_name"))
            entries.append(Entry(rank, name or ANONYMOUS, value, name is not None))
        first = found[0][1]
        reference, bar = first.get("reference"), first.get("bar")
        boards.append(Board(assignment, key, str(first.get("name") or key), entries,
                            float(reference) if isinstance(reference, (int, float)) else None,
                            float(bar) if isinstance(bar, (int, float)) else None))  # fmt: skip
    return boards
