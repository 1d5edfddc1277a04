"""Views of results for people: the terminal summary (rich) and the JSON file.

The HTML report lives in `html.py`; both render the same `RunResult` and decide nothing.
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
from .results import INPUT_ERROR_KINDS, CheckResult, NotebookResult, RunResult, Status

__all__ = ["render_run", "write_json", "STATUS_STYLE"]

STATUS_STYLE = {
    Status.PASSED: ("✔ pass", "green"),
    Status.FAILED: ("✘ fail", "red"),
    Status.ERROR: ("✘ error", "red"),
    Status.TIMEOUT: ("⏱ timeout", "yellow"),
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


def most_informative(check: CheckResult):
    """The one failing case a learner should look at: a recognised mistake first, then a case
    with a value diff, then the first failure."""
    failing = [c for c in check.cases if not c.passed and c.status is not Status.SKIPPED]
    return next((c for c in failing if c.mistake), None) or next((c for c in failing if c.diff), None) or next(iter(failing), None)


def _failure_details(check: CheckResult) -> list:
    """Compact: one verdict line, the most informative case with its diff, the hint."""
    label, style = STATUS_STYLE[check.status]
    counted = [c for c in check.cases if c.status is not Status.SKIPPED]
    failing = [c for c in counted if not c.passed]
    tally = f"  ({len(failing)} of {len(counted)} cases fail)" if len(counted) > 1 and failing else ""
    out: list = [Text.assemble((f"{label.split()[0]} {check.name}", f"bold {style}"), ("  " + (check.title or ""), "dim"), (tally, "dim"))]
    if check.blame:
        out.append(Text("   " + check.blame, style="bold"))
    case = most_informative(check)
    if case is None or check.kind in ("missing", "not_callable"):
        body = check.message if not check.blame else check.message[len(check.blame) :].lstrip(": ")
        out.extend(Text("   " + line) for line in body.splitlines())
    else:
        if case.call:
            out.append(Text(f"   {case.label}: {case.call}", style="cyan"))
        body = case.message
        if case.mistake and check.hint and body.startswith(check.hint):
            body = body[len(check.hint) :].lstrip("\n")  # the explanation is shown once, as the hint
        out.extend(Text("   " + line) for line in body.splitlines())
    if check.traceback:
        out.append(Text("   your code's traceback:", style="dim"))
        out.extend(Text("     " + line, style="dim") for line in check.traceback[-8:])
    if check.hint:
        out.append(Text.assemble(("   hint: ", "bold magenta"), (check.hint, "magenta")))
    return out


def _blame_note(check: CheckResult) -> list:
    """A function that passes on its own although it fails as written: say whom to fix."""
    return [Text.assemble(("✔ " + check.name, "bold green"), ("  " + (check.title or ""), "dim")), Text("   " + check.blame)]


def _cell_problems(nb: NotebookResult) -> list:
    if not nb.cell_problems:
        return []
    out: list = [Text("problems while running the notebook:", style="bold yellow")]
    for p in nb.cell_problems:
        what = f"{p.ename}: {p.evalue}".strip(": ") if p.ename else p.evalue or p.kind
        first = p.source.splitlines()[0] if p.source else ""
        out.append(Text(f"   cell {p.cell} ({p.kind}): {what[:300]}", style="yellow"))
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
    parts.extend(_cell_problems(nb))
    todo = [c for c in nb.checks if c.kind == "not_implemented"]
    for check in nb.checks:
        if check in todo:
            continue
        if check.status not in (Status.PASSED, Status.SKIPPED) or (verbose and check.message):
            parts.append(Text(""))
            parts.extend(_failure_details(check))
        elif check.blame:
            parts.append(Text(""))
            parts.extend(_blame_note(check))
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
        summary.append(f"  ·  {errors} notebook{'s' * (errors != 1)} could not be graded", style="bold red")
    if run.seed is not None:
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
