"""HTML views of results: the report of a check, the progress page, the in-notebook result.

    RunResult ─► feedback.notebook_view (what to show, in the order a tutor explains it)
              ─► report.html.j2 + macros.html.j2 (jinja2, autoescaped) ─► one self-contained page
    plots: grader.plots (inline SVG, re-exported here)

Every page is one self-contained file (inline CSS and SVG, no scripts, no network loads, and a
Content-Security-Policy that forbids both), so it works offline and as a mail attachment. Pages
are jinja2 templates in `templates/` with autoescaping on: learner output, messages and
tracebacks are always escaped; the only markup inserted as-is is SVG made by grader.plots.

Reusable pieces (the instructor's per-student feedback and class dashboard use them):

    render_report(run, title=..., show_tracebacks=...) -> str     a complete HTML document
    write_report(run, path)                                       the same, written atomically
    render_template("page.html.j2", **context)                    extend base.html.j2, import macros.html.j2
    svg_plot(line_plot_dict)  svg_lines(...)  svg_bars(...)  svg_histogram(...)   -> "<svg ...>"
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import __version__, inert
from .feedback import DIFF_LINES, check_view, notebook_view, problem_line
from .plots import COLORS, CYCLE, MAX_PLOT_POINTS, svg_bars, svg_histogram, svg_lines, svg_plot  # noqa: F401 - their public home was here
from .results import RunResult, Status
from .tracebacks import fold, scrub_paths

__all__ = [
    "REPORT_NAME",
    "templates_dir",
    "environment",
    "render_template",
    "render_report",
    "write_report",
    "write_html",
    "default_report_path",
    "render_progress_page",
    "render_check_fragment",
    "series_plots",
    "svg_plot",
    "svg_lines",
    "svg_bars",
    "svg_histogram",
]

REPORT_NAME = "learn-report.html"


# ---------------------------------------------------------------------------------------------
# templates


def templates_dir() -> Path:
    from .lessons import content_root

    return content_root() / "templates"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or value != value:
        return ""
    if value >= 60:
        return f"{int(value // 60)}m {value % 60:.0f}s"
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def _index(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _subtitle(title: str | None, name: str) -> str:
    """A check's title without the leading "name:" that manifests often repeat."""
    title = (title or "").strip()
    if title == name:
        return ""
    return title[len(name) + 1 :].strip() if title.startswith(name + ":") else title


def _when(iso: str | None) -> str:
    if not iso:
        return "never"
    try:
        return _dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _finalize(value: Any) -> Any:
    """Every {{ expression }} of a page: text (not our own Markup, such as the SVG plots) made
    inert before autoescape - colour codes dropped, other control characters shown as escapes."""
    import markupsafe

    return inert.visible(value) if isinstance(value, str) and not isinstance(value, markupsafe.Markup) else value


@functools.lru_cache(maxsize=4)
def _environment(folder: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,  # every page: learner text is data, never markup
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # learner text is escaped by autoescape; `inert` (alias strip_ansi) also drops colour codes and
    # shows other control characters as escapes (grader.inert.visible)
    env.filters.update(
        num=_num, seconds=_seconds, index=_index, when=_when, subtitle=_subtitle, inert=inert.visible, strip_ansi=inert.visible
    )
    env.filters.update(verdict=verdict_paragraph, fold=fold, problem_line=problem_line, case_views=lambda check: [
        {"case": c, "message": m, "passed": c.passed} for c, m in zip(check.cases, case_messages(check))
    ])  # fmt: skip
    return env


def environment():
    """The jinja2 environment for learn's templates (autoescape on, strict undefined)."""
    return _environment(str(templates_dir()))


def render_template(name: str, **context: Any) -> str:
    """Render one of learn's templates; `version` and `generated_at` are provided."""
    context.setdefault("version", __version__)
    context.setdefault("generated_at", _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M"))
    return environment().get_template(name).render(**context)


def write_html(text: str, path: str | Path) -> Path:
    """Write a page atomically (a reader never sees half a report)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ---------------------------------------------------------------------------------------------
# the report of a check


def series_plots(check) -> list[str]:
    """Inline SVG plots for a CheckResult's `series` (entries of kind "line"); never for hidden checks.

    A plot is a nicety: data that cannot be drawn is left out rather than breaking the report.
    """
    if check.hidden or not check.series:
        return []
    plots = []
    for spec in check.series.values():
        if isinstance(spec, dict) and spec.get("kind") == "line":
            try:
                plots.append(svg_plot(spec))
            except Exception:  # noqa: BLE001 - see docstring
                continue
    return plots


def verdict_paragraph(check) -> str:
    """One paragraph per function: whom to blame, what is wrong (a named mistake's explanation, or what the
    most telling case shows), and how many cases fail (grader.feedback decides it)."""
    return check_view(check).verdict


def case_messages(check) -> list[str]:
    """The message to show in each case's row: none for a pass, "same as above" for a repeat, and
    neither the hint (shown once above) nor the lines the diff table already shows."""
    shown, last = [], None
    for case in check.cases:
        if case.passed or not case.message:
            shown.append("")
            continue
        text = case.message
        if check.hint and text.startswith(check.hint):
            text = text[len(check.hint) :].lstrip("\n")
        if case.diff is not None and not check.hidden:
            text = "\n".join(line for line in text.splitlines() if not line.startswith(DIFF_LINES))
        text = scrub_paths(text)
        key = (text, case.diff.kind if case.diff else None, case.diff.path if case.diff else None)
        shown.append("same as above" if key == last and text else text)
        last = key
    return shown


def _notebook_items(run: RunResult) -> list[dict]:
    items = []
    for i, nb in enumerate(run.notebooks):
        plots = {c.name: series_plots(c) for c in nb.checks}
        items.append({"nb": nb, "view": notebook_view(nb), "name": Path(nb.path).name, "anchor": f"nb-{i + 1}", "plots": plots})
    return items


def _default_title(run: RunResult) -> str:
    lessons = list(dict.fromkeys(nb.lesson for nb in run.notebooks if nb.lesson))
    return f"learn check: {', '.join(lessons)}" if lessons else "learn check report"


def render_report(run: RunResult, *, title: str | None = None, show_tracebacks: bool = True, manual=(), notes=()) -> str:
    """The report of a check (or of a student's submission) as one self-contained HTML document.

    Hidden checks show their name, status and message only: no inputs, no traceback, no plots.
    `show_tracebacks=False` also leaves out the learner's tracebacks (e.g. for a shared page).
    """
    graded = [nb for nb in run.notebooks if nb.status is not Status.ERROR]
    counted = [c for nb in graded for c in nb.checks if c.status is not Status.SKIPPED]
    return render_template(
        "report.html.j2",
        run=run,
        title=title or _default_title(run),
        notebooks=_notebook_items(run),
        show_tracebacks=show_tracebacks,
        passed_checks=sum(1 for c in counted if c.passed),
        counted_checks=len(counted),
        sandboxes=sorted({nb.sandbox for nb in graded if nb.sandbox}),
        manual=list(manual),  # grader.manual.ManualRow: answers graded by hand (feedback pages)
        notes=list(notes),  # warnings about the submission (a changed locked cell)
    )


def write_report(run: RunResult, path: str | Path, **options: Any) -> Path:
    """Render the report of `run` and write it to `path` (atomically). Returns the path."""
    return write_html(render_report(run, **options), path)


def _is_pack_folder(folder: Path) -> bool:
    """A lesson pack's own folder or its generated exercises: no report files in there."""
    if (folder / "lesson.toml").is_file():
        return True
    try:
        from .lessons import all_lessons

        return any(folder == lesson.exercises_dir.resolve() for lesson in all_lessons().values())
    except Exception:  # noqa: BLE001 - a broken pack must not stop a report
        return False


def default_report_path(notebooks: Iterable[str | Path]) -> Path:
    """Where `learn check` writes its report: next to the checked notebooks (their common folder).

    Reference solutions and generated exercises (lesson packs) are kept clean: a report about
    them goes to the user cache folder instead.
    """
    folders = [Path(p).resolve().parent for p in notebooks]
    folder = Path(os.path.commonpath([str(f) for f in folders])) if folders else Path.cwd()
    if _is_pack_folder(folder):
        from .paths import cache_dir

        return cache_dir() / "reports" / REPORT_NAME
    return folder / REPORT_NAME


# ---------------------------------------------------------------------------------------------
# the progress page and the in-notebook result


def render_progress_page(summary, *, title: str = "Your learn progress") -> str:
    """The progress page: a bar per lesson, score over time, attempts per function, quiz topics."""
    lessons = [lp for lp in summary.lessons if lp.attempts or lp.quiz_attempts or lp.installed]
    score_plot = None
    if summary.history:
        series: dict[str, tuple[list, list]] = {}
        for point in summary.history:
            xs, ys = series.setdefault(point.lesson, ([], []))
            xs.append(_dt.datetime.fromisoformat(point.at).astimezone())
            ys.append(100.0 * point.points / point.max_points if point.max_points else 0.0)
        score_plot = svg_lines("Score over time", series, xlabel="", ylabel="% of points", dates=True, ylim=(0, 105))
    attempted = [(lp, i) for lp in lessons for i in lp.items if i.attempts]
    attempts_plot = None
    if attempted:
        labels = [i.item if len({lp.lesson for lp, _ in attempted}) == 1 else f"{lp.lesson}/{i.item}" for lp, i in attempted]
        colors = [COLORS["reference"] if i.solved else CYCLE[0] for _, i in attempted]
        attempts_plot = svg_bars(labels, [i.attempts for _, i in attempted], title="Checks per function",
                                 xlabel="checks (blue: solved now, red: not yet)", colors=colors)  # fmt: skip
    from .cards import panel

    return render_template(
        "progress.html.j2",
        title=title,
        summary=summary,
        lessons=lessons,
        score_plot=score_plot,
        attempts_plot=attempts_plot,
        review=panel(Path(summary.db)) if getattr(summary, "db", None) else None,
    )


def render_check_fragment(result, *, lesson: str | None = None, note: str = "") -> str:
    """A compact HTML block for one CheckResult (the in-notebook `check()`); not a whole page."""
    view = check_view(result)
    next_step = f'More help, one step at a time: hint("{result.name}") (and solution("{result.name}"), last).' if view.next_step else ""
    return render_template("check_fragment.html.j2", check=result, view=view, plots=series_plots(result), lesson=lesson, note=note,
                           next_step=next_step)  # fmt: skip
