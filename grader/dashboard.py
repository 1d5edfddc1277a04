"""The class dashboard: one self-contained HTML page summarising a gradebook for the instructor.

    score histogram · pass rate per check (hardest first) · runtime distribution ·
    errors by kind · students needing attention · leaderboards (grader.leaderboard)

Computed from the gradebook's rows (no re-grading), rendered with the learner report's templates
(`templates/dashboard.html.j2` extends `base.html.j2`; plots are inline SVG from `grader.html`).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GradebookError
from .gradebook import Gradebook, SubmissionRecord
from .manual import TAMPER_PREFIX

__all__ = ["ClassSummary", "summarise", "render_dashboard", "write_dashboard", "ATTENTION_BELOW"]

ATTENTION_BELOW = 0.5  # a student scoring under this fraction of the points needs attention
TIMEOUT_PREFIX = "timeout"  # a record's problem saying a notebook or cell ran out of time (the course server writes these)
_KIND_WORDS = {
    "values": "wrong values",
    "known_mistake": "a known mistake",
    "not_implemented": "not written yet",
    "missing": "function missing",
    "not_submitted": "notebook not submitted",
    "kernel_died": "notebook killed its kernel",
    "load": "notebook unreadable",
    "timeout": "too slow / infinite loop",
    "exception": "raised an exception",
    "python_loop": "Python loop instead of tensors",
    "assertion": "test cell assertion failed",
    "execution": "grading machinery failed",
    "wrong_type": "wrong type",
    "shape": "wrong shape",
}


@dataclass
class CheckStats:
    name: str
    notebook: str
    title: str
    attempts: int = 0
    passed: int = 0
    kinds: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.passed / self.attempts if self.attempts else 0.0

    @property
    def top_kind(self) -> str:
        if not self.kinds:
            return ""
        kind, count = self.kinds.most_common(1)[0]
        return f"{_KIND_WORDS.get(kind, kind)} ({count})"


@dataclass
class Attention:
    student: str
    assignment: str
    points: float
    max_points: float
    status: str
    reasons: list[str]


@dataclass
class ClassSummary:
    assignments: list[str]
    records: list[SubmissionRecord]
    checks: list[CheckStats]
    errors: list[tuple[str, str, int, int, str]]  # kind, words, check results, students, example message
    attention: list[Attention]
    boards: list = field(default_factory=list)  # grader.leaderboard.Board: metrics a pack reports (e.g. holdout accuracy)

    @property
    def fractions(self) -> list[float]:
        return [r.points / r.max_points for r in self.records if r.max_points]

    @property
    def durations(self) -> list[float]:
        return [r.duration for r in self.records if r.state == "graded"]

    def stat(self, fn, values, default=0.0) -> float:
        return fn(values) if values else default


def summarise(records: list[SubmissionRecord]) -> ClassSummary:
    """The numbers behind the dashboard (tested on their own; the page only shows them)."""
    checks: dict[tuple[str, str], CheckStats] = {}
    kinds: dict[str, list] = defaultdict(lambda: [0, set(), ""])
    attention = []
    for r in records:
        for c in r.checks:
            stats = checks.setdefault((r.assignment, c.name), CheckStats(c.name, c.notebook, c.title or c.name))
            if c.status == "skipped":
                continue
            stats.attempts += 1
            if c.status == "passed":
                stats.passed += 1
                continue
            kind = c.kind or c.status
            stats.kinds[kind] += 1
            entry = kinds[kind]
            entry[0] += 1
            entry[1].add(r.student)
            entry[2] = entry[2] or (c.message.splitlines()[0] if c.message else "")
        reasons = []
        if r.state == "failed":
            reasons.append("grading failed (will be retried): " + (r.error or "unknown error"))
        elif r.status == "error" and r.error:
            reasons.append(r.error)
        if r.max_points and r.points / r.max_points < ATTENTION_BELOW:
            reasons.append(f"scored {100 * r.points / r.max_points:.0f}% (under {ATTENTION_BELOW:.0%})")
        reasons += [p for p in r.problems if p.startswith(("missing", TIMEOUT_PREFIX, TAMPER_PREFIX))]  # a changed locked cell: look at it
        if reasons:
            attention.append(Attention(r.student, r.assignment, r.points, r.max_points, r.status or r.state, reasons))
    ordered = sorted(checks.values(), key=lambda s: (s.rate, -s.attempts, s.notebook, s.name))
    errors = sorted(
        ((k, _KIND_WORDS.get(k, k.replace("_", " ")), v[0], len(v[1]), v[2]) for k, v in kinds.items()), key=lambda e: (-e[2], e[0])
    )
    attention.sort(key=lambda a: (a.points / a.max_points if a.max_points else 0.0, a.student))
    from .leaderboard import leaderboard

    boards = leaderboard(records)
    return ClassSummary(sorted({r.assignment for r in records}), records, ordered, errors, attention, boards)


def render_dashboard(summary: ClassSummary, *, title: str | None = None) -> str:
    from .html import render_template, svg_bars, svg_histogram

    fractions = [100 * f for f in summary.fractions]
    durations = summary.durations
    score_plot = svg_histogram(fractions, bins=list(range(0, 101, 10)), range=(0, 100), title="Scores",
                               xlabel="% of points", marker=statistics.mean(fractions) if fractions else None,
                               marker_label="mean") if fractions else None  # fmt: skip
    runtime_plot = svg_histogram(durations, bins=min(20, max(5, len(durations) // 3)), title="Grading time per submission",
                                 xlabel="seconds") if durations else None  # fmt: skip
    hardest = summary.checks[:25]
    pass_plot = svg_bars([c.name for c in hardest], [100 * c.rate for c in hardest], title="Pass rate per check (hardest first)",
                         xlabel="% of students passing") if hardest else None  # fmt: skip
    return render_template(
        "dashboard.html.j2",
        title=title or f"Class dashboard: {', '.join(summary.assignments)}",
        s=summary,
        students=len({r.student for r in summary.records}),
        mean=statistics.mean(fractions) if fractions else 0.0,
        median=statistics.median(fractions) if fractions else 0.0,
        full_marks=sum(1 for f in summary.fractions if f >= 1.0),
        errored=sum(1 for r in summary.records if r.status == "error" or r.state == "failed"),
        total_time=sum(durations),
        median_time=statistics.median(durations) if durations else 0.0,
        score_plot=score_plot,
        runtime_plot=runtime_plot,
        pass_plot=pass_plot,
    )


def write_dashboard(gradebook_path: Path, out: Path, assignment: str | None = None) -> Path:
    """Read the gradebook, write the dashboard page (atomically). Returns its path."""
    from .export import load_records
    from .html import write_html

    with Gradebook(gradebook_path, create=False) as gb:
        records = load_records(gb, assignment, with_json=True)  # the leaderboard reads metrics from the results
    if not records:
        raise GradebookError(f"the gradebook {gradebook_path} holds no graded submissions yet")
    return write_html(render_dashboard(summarise(records)), out)
