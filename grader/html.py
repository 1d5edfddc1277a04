"""HTML views of results: the report of a check, the progress page, plots as inline SVG.

Every page is one self-contained file (inline CSS and SVG, no scripts, no network loads, and a
Content-Security-Policy that forbids both), so it works offline and as a mail attachment. Pages
are jinja2 templates in `templates/` with autoescaping on: learner output, messages and
tracebacks are always escaped; the only markup inserted as-is is SVG made here by matplotlib.

Reusable pieces (the instructor's per-student feedback and class dashboard use them):

    render_report(run, title=..., show_tracebacks=...) -> str     a complete HTML document
    write_report(run, path)                                       the same, written atomically
    render_template("page.html.j2", **context)                    extend base.html.j2, import macros.html.j2
    svg_plot(line_plot_dict)  svg_lines(...)  svg_bars(...)  svg_histogram(...)   -> "<svg ...>"
"""

from __future__ import annotations

import datetime as _dt
import functools
import html as _html
import io
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import __version__, inert
from .results import RunResult, Status

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
MAX_PLOT_POINTS = 2000  # a learner's 10^6-step loss list must not make a 100 MB report
COLORS = {"reference": "#0969da", "yours": "#d1242f", "data": "#8c959f"}
CYCLE = ["#d1242f", "#0969da", "#1a7f37", "#8250df", "#bf8700", "#57606a"]


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
    env.filters.update(verdict=verdict_paragraph, case_views=lambda check: [
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


_DIFF_LINES = (
    "values differ",
    "greatest absolute difference",
    "greatest relative difference",
    "first mismatch at index",
    "got NaN",
    "got inf",
)


def verdict_paragraph(check) -> str:
    """One paragraph per function: whom to blame, how many cases fail, which known mistake shows."""
    counted = [c for c in check.cases if c.status is not Status.SKIPPED]
    failing = [c for c in counted if not c.passed]
    if check.kind == "kernel_died" or check.hidden or not counted:
        return check.message
    parts = [check.blame] if check.blame else []
    if not failing:
        if not check.blame:
            parts.append(f"All {len(counted)} cases pass." if len(counted) > 1 else "It passes.")
    else:
        tally = f"{len(failing)} of {len(counted)} cases fail" if len(counted) > 1 else "It fails"
        named = sorted({c.mistake for c in failing if c.mistake})
        parts.append(tally + (f", showing a known mistake ({', '.join(named)})." if named else "."))
    return " ".join(parts)


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
            text = "\n".join(line for line in text.splitlines() if not line.startswith(_DIFF_LINES))
        key = (text, case.diff.kind if case.diff else None, case.diff.path if case.diff else None)
        shown.append("same as above" if key == last and text else text)
        last = key
    return shown


def _notebook_items(run: RunResult) -> list[dict]:
    items = []
    for i, nb in enumerate(run.notebooks):
        plots = {c.name: series_plots(c) for c in nb.checks}
        items.append({"nb": nb, "name": Path(nb.path).name, "anchor": f"nb-{i + 1}", "plots": plots})
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
    from .review import panel

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
    from .report import most_informative

    case = most_informative(result)
    message = case_messages(result)[result.cases.index(case)] if case is not None else ""
    return render_template("check_fragment.html.j2", check=result, plots=series_plots(result), lesson=lesson, note=note,
                           case=case, case_message=message)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# plots: matplotlib Figures drawn straight to SVG without pyplot, so no global backend is
# switched (the in-notebook check runs inside the learner's Jupyter kernel)


def _floats(values: Any) -> list[float]:
    out = []
    for v in values or []:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        out.append(f if math.isfinite(f) else float("nan"))
    return out


def _thin(xs: list, ys: list, limit: int = MAX_PLOT_POINTS) -> tuple[list, list]:
    if len(xs) <= limit:
        return xs, ys
    step = math.ceil(len(xs) / limit)
    return xs[::step], ys[::step]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#eaeef2", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _to_svg(fig, label: str = "") -> str:
    """The figure as an inline <svg> element: no XML prolog, DOCTYPE, metadata or external link."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": None}), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a date axis spanning seconds: the plot is still right
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    start = text.find("<svg")
    text = text[start:] if start >= 0 else text
    attrs = f' role="img" aria-label="{_html.escape(label, quote=True)}"' if label else ' role="img"'
    return text.replace("<svg", "<svg" + attrs, 1).strip()


def _log_scale_helps(ys: Iterable[float]) -> bool:
    values = [v for v in ys if v == v]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 100


def svg_plot(spec: dict, *, width: float = 5.4, height: float = 3.3) -> str:
    """Draw a `grader.checks.line_plot` dict: named lines over x, and optional data points.

    Lines named "reference" and "yours" get fixed colours (reference dashed), others the cycle.
    A line whose length differs from x is drawn over its own index. Loss-like curves spanning
    more than two decades get a log y axis.
    """
    fig, ax = _figure(width, height)
    x = _floats(spec.get("x")) if spec.get("x") is not None else None
    points = spec.get("points")
    if points and points[0] is not None and points[1] is not None:
        px, py = _thin(_floats(points[0]), _floats(points[1]))
        ax.scatter(px, py, s=12, color=COLORS["data"], alpha=0.8, label="data", zorder=2)
    all_y: list[float] = []
    for i, (name, values) in enumerate((spec.get("lines") or {}).items()):
        ys = _floats(values)
        if not ys:
            continue
        xs = x if x is not None and len(x) == len(ys) else list(range(len(ys)))
        pairs = sorted(zip(xs, ys), key=lambda p: p[0]) if xs is x else list(zip(xs, ys))
        xs, ys = _thin([p[0] for p in pairs], [p[1] for p in pairs])
        all_y += ys
        color = COLORS.get(name, CYCLE[i % len(CYCLE)])
        style = "--" if name == "reference" else "-"
        ax.plot(xs, ys, style, color=color, linewidth=2 if name == "yours" else 1.6, label=str(name), zorder=3)
    title = str(spec.get("title") or "")
    _style(ax, title, str(spec.get("xlabel") or ""), str(spec.get("ylabel") or ""))
    if not points and _log_scale_helps(all_y):
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    return _to_svg(fig, title)


def svg_lines(title: str, series: dict[str, tuple[Sequence, Sequence]], *, xlabel: str = "", ylabel: str = "",
              dates: bool = False, ylim: tuple[float, float] | None = None, width: float = 6.4, height: float = 3.2) -> str:  # fmt: skip
    """Several named lines, each with its own x (numbers, or datetimes with `dates=True`)."""
    fig, ax = _figure(width, height)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ys = _floats(ys)
        xs = list(xs) if dates else _floats(xs)
        ax.plot(xs, ys, "-o", color=CYCLE[(i + 1) % len(CYCLE)], markersize=3.5, linewidth=1.6, label=str(name))
    _style(ax, title, xlabel, ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    if dates:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if len(series) > 1 or (series and list(series)[0]):
        ax.legend(fontsize=8, frameon=False)
    return _to_svg(fig, title)


def svg_bars(labels: Sequence[str], values: Sequence[float], *, title: str = "", xlabel: str = "",
             colors: Sequence[str] | None = None, width: float = 6.4) -> str:  # fmt: skip
    """A horizontal bar chart (one bar per label, top to bottom in the order given)."""
    height = min(12.0, 1.0 + 0.28 * max(1, len(labels)))
    fig, ax = _figure(width, height)
    positions = list(range(len(labels)))
    ax.barh(positions, _floats(values), color=list(colors) if colors else CYCLE[1], height=0.7)
    ax.set_yticks(positions, [str(label) for label in labels])
    ax.invert_yaxis()
    _style(ax, title, xlabel, "")
    ax.grid(True, axis="x", color="#eaeef2")
    ax.grid(False, axis="y")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _to_svg(fig, title)


def svg_histogram(values: Sequence[float], *, bins: int | Sequence[float] = 10, title: str = "", xlabel: str = "",
                  ylabel: str = "count", range: tuple[float, float] | None = None, marker: float | None = None,
                  marker_label: str = "", width: float = 5.4, height: float = 3.0) -> str:  # fmt: skip
    """A histogram (e.g. of a class's scores), optionally with a vertical marker line (e.g. the mean)."""
    fig, ax = _figure(width, height)
    data = [v for v in _floats(values) if v == v]
    ax.hist(data, bins=bins, range=range, color=CYCLE[1], edgecolor="white")
    if marker is not None and math.isfinite(marker):
        ax.axvline(marker, color=CYCLE[0], linestyle="--", linewidth=1.5, label=marker_label or None)
        if marker_label:
            ax.legend(fontsize=8, frameon=False)
    _style(ax, title, xlabel, ylabel)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _to_svg(fig, title)
