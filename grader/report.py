"""Views of results for people: the terminal summary (rich) and the JSON file.

    RunResult ─► per notebook: header, the table of functions (the summary), then feedback.notebook_view:
                 each failing function top-down (verdict, failing call and diff, the learner's frames,
                 the cells it broke, where to go next), the other cell problems, what is not written yet

The HTML report lives in `html.py`; both draw the same views (grader.feedback) and decide nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import inert
from .feedback import CheckView, notebook_view, problem_line
from .results import INPUT_ERROR_KINDS, CheckResult, NotebookResult, RunResult, Status

__all__ = ["render_run", "render_notebook", "write_json", "STATUS_STYLE"]

STATUS_STYLE = {
    Status.PASSED: ("✔ pass", "green"),
    Status.FAILED: ("✘ fail", "red"),
    Status.ERROR: ("✘ error", "red"),
    Status.TIMEOUT: ("◔ timeout", "yellow"),
    Status.SKIPPED: ("– skipped", "dim"),
}


def _points(earned: float, possible: float) -> str:
    def fmt(x: float) -> str:
        return f"{x:g}"

    return f"{fmt(earned)}/{fmt(possible)}"


def _notebook_header(nb: NotebookResult) -> Text:
    text = Text()
    text.append(inert.terminal(Path(nb.path).name, single_line=True), style="bold")
    if nb.lesson:
        text.append(f"  ·  {nb.lesson}: {nb.title or nb.exercise}", style="dim")
    if nb.status is Status.ERROR and nb.error_kind not in INPUT_ERROR_KINDS:
        text.append(f"  {_points(nb.points, nb.max_points)} points ({nb.error_kind or 'error'})", style="bold red")
    elif nb.status is Status.ERROR:
        text.append("  cannot be graded", style="bold red")
    else:
        style = "bold green" if nb.passed else "bold yellow"
        text.append(f"  {_points(nb.points, nb.max_points)} points", style=style)
    return text


def _checks_table(nb: NotebookResult) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 2))
    table.add_column("function")
    table.add_column("result")
    table.add_column("points", justify="right")
    table.add_column("time", justify="right", style="dim")
    for check in nb.checks:
        label, style = STATUS_STYLE[check.status]
        if check.kind == "not_implemented":
            label, style = "· to do", "yellow"
        name = check.name + ("  (hidden)" if check.hidden else "")
        table.add_row(escape(name), Text(label, style=style), _points(check.points, check.max_points), f"{check.duration:.2f}s")
    return table


def _failure_details(view: CheckView) -> list:
    """One function, top-down: the verdict, the failing call with its diff, the learner's own frames,
    the cells it broke, then where to go next."""
    check = view.check
    label, style = STATUS_STYLE[check.status]
    out: list = [Text.assemble((f"{label.split()[0]} {check.name}", f"bold {style}"), ("  " + _subtitle(check), "dim"))]
    out.extend(Text("   " + line, style="bold") for line in view.verdict.splitlines())
    case = view.focus
    if case is not None and check.kind not in ("missing", "not_callable"):
        if case.call:
            out.append(Text(f"   {case.label}: {case.call}", style="cyan"))
        if case.diff is not None and case.diff.expected and case.diff.got and not check.hidden:
            out.append(Text(f"   expected {case.diff.expected}, got {case.diff.got}"))
        out.extend(Text("   " + line) for line in view.focus_message.splitlines())
    if view.traceback:
        raised = view.raised
        where = f" ({raised.label}{': ' + raised.call if raised.call else ''})" if raised is not None and raised is not case else ""
        out.append(Text(f"   where it happened in your code{where}:", style="dim"))
        out.extend(Text("     " + line, style="dim") for line in view.traceback[-10:])
    for problem in view.problems:
        more = view.same_as.get(problem.cell, [])
        also = f" (and cell{'s' * (len(more) > 1)} {', '.join(map(str, more))}, the same way)" if more else ""
        out.append(Text(f"   cell {problem.cell}{also}: {problem_line(problem)[:300]}", style="yellow"))
    if view.hint:
        out.append(Text.assemble(("   hint: ", "bold magenta"), (view.hint, "magenta")))
    if view.next_step:
        out.append(Text("   " + view.next_step, style="dim"))
    return out


def _subtitle(check: CheckResult) -> str:
    """The check's title without the "name:" manifests start it with."""
    title = (check.title or "").strip()
    return title[len(check.name) + 1 :].strip() if title.startswith(check.name + ":") else title


def _blame_note(check: CheckResult) -> list:
    """A function that passes on its own although it fails as written: say whom to fix."""
    return [Text.assemble(("✔ " + check.name, "bold green"), ("  " + _subtitle(check), "dim")), Text("   " + check.blame)]


def _other_problems(problems: list, same_as: dict[int, list[int]]) -> list:
    """Cells no graded function explains: after the functions, one line each (the HTML report has the rest)."""
    if not problems:
        return []
    out: list = [Text("other problems while running the notebook:", style="bold yellow")]
    for p in problems:
        first = p.source.splitlines()[0] if p.source else ""
        more = same_as.get(p.cell, [])
        also = f" (and cell{'s' * (len(more) > 1)} {', '.join(map(str, more))}, the same way)" if more else ""
        out.append(Text(f"   cell {p.cell}{also} ({p.kind.replace('_', ' ')}): {problem_line(p)[:300]}", style="yellow"))
        if first:
            out.append(Text(f"     > {first[:100]}", style="dim"))
    return out


def render_notebook(nb: NotebookResult, verbose: bool = False) -> Group:
    nb = inert.scrub(nb)  # learner text (messages, tracebacks, file names) is shown, never acted on
    parts: list = [_notebook_header(nb)]
    if nb.status is Status.ERROR:
        parts.append(Text("   " + (nb.error or "unknown error"), style="red"))
        if nb.error_kind in ("execution", "lesson"):  # the machinery failed, not the learner's notebook
            parts.append(Text("   run `learn doctor` to check this machine", style="red"))
        if not nb.checks:
            return Group(*parts)
    parts.append(_checks_table(nb))
    view = notebook_view(nb)
    todo = [v.check for v in view.checks if v.check.kind == "not_implemented"]
    for check_view in view.checks:
        check = check_view.check
        if check in todo:
            continue
        if check.status not in (Status.PASSED, Status.SKIPPED) or (verbose and check.message):
            parts.append(Text(""))
            parts.extend(_failure_details(check_view))
        elif check.blame:
            parts.append(Text(""))
            parts.extend(_blame_note(check))
    if view.other_problems:
        parts.append(Text(""))
        parts.extend(_other_problems(view.other_problems, view.same_as))
    if todo:
        names = ", ".join(c.name for c in todo)
        parts.append(Text(""))
        parts.append(Text.assemble(("not written yet: ", "bold"), names, ("  (stuck? `learn hint NAME`)", "dim")))
    for check in nb.checks:  # a passing check that reports a metric (the capstone's holdout accuracy) says where it ranks
        if check.passed and any(isinstance(v, dict) and v.get("kind") == "metric" for v in check.series.values()):
            note = next((c.message for c in check.cases if c.message), "")
            if note:
                parts.append(Text(f"   {check.name}: {note}", style="green"))
    skipped = [c for c in nb.checks if c.status is Status.SKIPPED]
    for check in skipped:
        parts.append(Text(f"   skipped {check.name}: {check.message}", style="dim"))
    return Group(*parts)


def render_run(run: RunResult, console: Console | None = None, verbose: bool = False) -> None:
    console = console or Console()
    for i, nb in enumerate(run.notebooks):
        if i:
            console.print()
        console.print(render_notebook(nb, verbose))
    console.print()
    graded = [n for n in run.notebooks if n.status is not Status.ERROR or n.error_kind not in INPUT_ERROR_KINDS]
    summary = Text()
    if graded:
        style = "bold green" if run.passed else "bold"
        summary.append(f"Total: {_points(run.points, run.max_points)} points", style=style)
        passed = sum(1 for n in graded for c in n.checks if c.status is Status.PASSED)
        total = sum(1 for n in graded for c in n.checks if c.status is not Status.SKIPPED)
        summary.append(f"  ·  {passed}/{total} functions pass")
    errors = len(run.notebooks) - len(graded)
    if errors:
        summary.append(("  ·  " if summary else "") + f"{errors} notebook{'s' * (errors != 1)} could not be graded", style="bold red")
    if run.seed is not None and graded:
        summary.append(f"  ·  seed {run.seed}", style="dim")
    modes = {n.sandbox for n in graded if n.sandbox}
    if modes:
        summary.append(f"  ·  sandbox: {', '.join(sorted(modes))}", style="dim")
    if any(n.cached for n in run.notebooks):
        summary.append("  ·  cached (unchanged since last check; --no-cache to re-run)", style="dim")
    console.print(summary)


def write_json(run: RunResult, path: str | Path) -> None:
    """Write the results JSON atomically ('-' writes to stdout)."""
    text = json.dumps(run.to_dict(), indent=2)
    if str(path) == "-":
        print(text)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
