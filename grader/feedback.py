"""The order a tutor explains a graded notebook in - decided once, drawn by the terminal and the HTML report.

    NotebookResult ──► notebook_view ──► summary (points, functions passing)
                                     ├─► one CheckView per graded function, in the notebook's order:
                                     │     verdict      what is wrong, in the learner's terms (one paragraph)
                                     │     plots        (drawn by the HTML view)
                                     │     focus        the failing call to look at, with its diff
                                     │     traceback    the learner's own frames, from the case that raised
                                     │     problems     the cells this function broke (or that broke it)
                                     │     hint         the first rung of the ladder (the explanation of a
                                     │                  named mistake is the verdict itself)
                                     └─► other problems: cells no function explains, after the functions

A learner reads from the top, so nothing comes before the graded functions but the summary; a
library's traceback never comes at all (`tracebacks.fold`). The diff and the traceback shown
together always belong to the same case. `report.py` (terminal) and `html.py` (HTML) only draw
these views; neither decides anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import explain
from .results import CaseResult, CellProblem, CheckResult, NotebookResult, Status
from .tracebacks import fold, scrub_paths

__all__ = ["CheckView", "NotebookView", "notebook_view", "check_view", "most_informative", "raised_case", "group_problems", "problem_line",
           "DIFF_LINES"]  # fmt: skip

DIFF_LINES = (
    "values differ",
    "greatest absolute difference",
    "greatest relative difference",
    "first mismatch at index",
    "got NaN",
    "got inf",
)
_CELL_REF = re.compile(r"\bcell (\d+)\b", re.I)


@dataclass
class CheckView:
    check: CheckResult
    verdict: str = ""
    focus: CaseResult | None = None
    focus_message: str = ""  # what the focus case adds to the verdict (not its diff lines: the diff shows those)
    raised: CaseResult | None = None  # the case whose traceback is shown
    traceback: list[str] = field(default_factory=list)
    problems: list[CellProblem] = field(default_factory=list)
    hint: str | None = None
    next_step: str = ""
    same_as: dict[int, list[int]] = field(default_factory=dict)  # a problem's cell -> other cells that failed the same way

    @property
    def failing(self) -> bool:
        return self.check.status not in (Status.PASSED, Status.SKIPPED)

    @property
    def failing_cases(self) -> list[CaseResult]:
        return [c for c in self.check.cases if not c.passed and c.status is not Status.SKIPPED]


@dataclass
class NotebookView:
    nb: NotebookResult
    checks: list[CheckView]
    other_problems: list[CellProblem]
    same_as: dict[int, list[int]] = field(default_factory=dict)  # among the other problems


def most_informative(check: CheckResult) -> CaseResult | None:
    """The one failing case a learner should look at: a recognised mistake first, then a case
    with a value diff, then the first failure."""
    failing = [c for c in check.cases if not c.passed and c.status is not Status.SKIPPED]
    return next((c for c in failing if c.mistake), None) or next((c for c in failing if c.diff), None) or next(iter(failing), None)


def raised_case(check: CheckResult) -> CaseResult | None:
    """The case whose exception the check's traceback shows: the first one that raised."""
    return next((c for c in check.cases if not c.passed and c.diff is None and (c.kind or "exception") in explain.EXCEPTION_KINDS), None)


def _first_lines(text: str, skip: str = "") -> list[str]:
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if skip and lines and lines[0] == skip:
        lines = lines[1:]
    return lines


def _verdict(check: CheckResult, focus: CaseResult | None) -> str:
    """One paragraph: whom to blame, what is wrong (the named mistake's explanation, or the most telling
    case's own first line), and how many cases show it."""
    counted = [c for c in check.cases if c.status is not Status.SKIPPED]
    failing = [c for c in counted if not c.passed]
    if check.kind == "kernel_died" or check.hidden or not counted or focus is None:
        parts = [check.message] if check.message and not (check.blame and check.message.startswith(check.blame)) else []
        if check.blame:
            parts.insert(0, check.blame)
        if not failing and counted and not check.blame:
            parts.append(f"All {len(counted)} cases pass." if len(counted) > 1 else "It passes.")
        return scrub_paths(" ".join(p for p in parts if p))
    parts = [check.blame] if check.blame else []
    body = [ln for ln in _first_lines(focus.message) if not ln.startswith(DIFF_LINES)]
    if body:
        what = body[0]
    elif focus.diff is not None and focus.diff.expected and focus.diff.got:
        what = f"It returns {focus.diff.got} where {focus.diff.expected} was expected."
    else:
        what = f"It returns values that differ from the reference's ({focus.label})."
    parts.append(what if what.endswith((".", "?", "!")) else what + ".")
    if len(counted) > 1:
        same = sum(1 for c in failing if (c.mistake or c.kind) == (focus.mistake or focus.kind))
        tally = f"{len(failing)} of {len(counted)} cases fail"
        parts.append(f"({tally}{', all the same way' if same == len(failing) and len(failing) > 1 else ''}.)")
    return scrub_paths(" ".join(parts))


def _focus_message(focus: CaseResult | None, verdict: str, hidden: bool) -> str:
    """What the focus case's message says beyond the verdict: not the line the verdict already is, not
    the lines its diff table shows."""
    if focus is None:
        return ""
    lines = [ln for ln in _first_lines(focus.message) if ln.rstrip(".") not in verdict]
    if focus.diff is not None and not hidden:
        lines = [ln for ln in lines if not ln.startswith(DIFF_LINES)]
    return scrub_paths("\n".join(lines))


def _cells_named(check: CheckResult) -> set[int]:
    text = "\n".join([check.message or "", *(check.traceback or []), *(c.message or "" for c in check.cases)])
    return {int(n) for n in _CELL_REF.findall(text)}


def _functions_in(problem: CellProblem) -> set[str]:
    """Names of the functions a cell's traceback passed through (`cell 5, line 3, in mse`)."""
    return {m.group(1) for line in problem.traceback or [] for m in [re.search(r", in (\w+)", line)] if m}


def group_problems(problems: list[CellProblem]) -> tuple[list[CellProblem], dict[int, list[int]]]:
    """Cells that failed the same way (one broken function used in five cells) are shown once: the first
    of each kind, and the cells that repeat it."""
    first: dict[tuple, CellProblem] = {}
    same: dict[int, list[int]] = {}
    for p in problems:
        key = (p.kind, p.ename, p.evalue)
        if key in first and p.kind != "output_limit":
            same.setdefault(first[key].cell, []).append(p.cell)
        else:
            first[key] = p
    return list(first.values()), same


def check_view(check: CheckResult, problems: list[CellProblem] = ()) -> CheckView:
    shown, same = group_problems(list(problems))
    view = CheckView(check, problems=shown, same_as=same)
    failing = view.failing
    view.focus = most_informative(check) if failing else None
    view.verdict = _verdict(check, view.focus)
    view.focus_message = _focus_message(view.focus, view.verdict, check.hidden)
    inner = None
    if check.traceback and not check.hidden:
        view.raised = raised_case(check)
        view.traceback = fold(check.traceback)
        frame = explain.last_learner_frame(view.traceback)
        inner = frame.func if frame and frame.func and frame.func != check.name else None
        if view.raised is view.focus and view.traceback:  # the traceback's last line says what Python said
            view.focus_message = "\n".join(
                ln for ln in view.focus_message.splitlines() if not ln.startswith(("(Python said: ", "(NameError: "))
            )
    if failing and check.kind != "not_implemented":
        mistake_named = view.focus is not None and view.focus.mistake and check.hint and view.verdict.find(check.hint[:40]) != -1
        # a recognised exception (no_grad, math.exp, ...) is explained by the verdict; hint 1 is about another mistake
        mistake_named = mistake_named or (view.focus is not None and view.focus.kind in explain.NAMED_KINDS)
        view.hint = None if mistake_named or inner else check.hint  # a hint about this function would point the wrong way
        if inner:
            view.next_step = f"Fix `{inner}` first: the error is inside it. Then `learn check` again."
        else:
            view.next_step = f"More help, one step at a time: `learn hint {check.name}` (and `learn solution {check.name}`, last)."
    return view


def notebook_view(nb: NotebookResult) -> NotebookView:
    """Each graded function with the cell problems it explains; the rest of the problems after them."""
    claimed: dict[int, str] = {}
    named = {c.name: _cells_named(c) for c in nb.checks if c.status not in (Status.PASSED, Status.SKIPPED)}
    for problem in nb.cell_problems:
        if problem.kind == "output_limit":
            continue
        through = _functions_in(problem)
        unknown = re.match(r"name '(\w+)' is not defined", problem.evalue or "") if problem.ename == "NameError" else None
        owner = next((n for n, cells in named.items() if problem.cell in cells), None)
        owner = owner or (unknown.group(1) if unknown and unknown.group(1) in named else None)  # a cell using a function that is missing
        owner = owner or next((n for n in named if n in through), None)
        if owner:
            claimed[problem.cell] = owner
    views = [check_view(c, [p for p in nb.cell_problems if claimed.get(p.cell) == c.name]) for c in nb.checks]
    others, same = group_problems([p for p in nb.cell_problems if p.cell not in claimed])
    return NotebookView(nb, views, others, same)


def problem_line(problem: CellProblem) -> str:
    """A cell problem in one line: a syntax error called one, with its line; no installation paths."""
    return scrub_paths(explain.cell_problem(problem))
