"""Plots as inline SVG: matplotlib Figures drawn straight to SVG without pyplot, so no global backend
is switched (the in-notebook check runs inside the learner's Jupyter kernel).

    svg_plot(line_plot_dict)      a lesson's "line" series (grader.checks.line_plot): yours vs the reference
    svg_lines(title, series)      named lines over x (dates allowed)
    svg_bars(labels, values)      horizontal bars
    svg_histogram(values)         a histogram with an optional marker line

Every function returns one `<svg ...>` element with no XML prolog, DOCTYPE, metadata or external
link, ready to be inserted into a self-contained page (grader.html, the review panel, dashboards).
"""

from __future__ import annotations

import html as _html
import io
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["svg_plot", "svg_lines", "svg_bars", "svg_histogram", "MAX_PLOT_POINTS", "COLORS", "CYCLE"]

MAX_PLOT_POINTS = 2000  # a learner's 10^6-step loss list must not make a 100 MB report
COLORS = {"reference": "#0969da", "yours": "#d1242f", "data": "#8c959f"}
CYCLE = ["#d1242f", "#0969da", "#1a7f37", "#8250df", "#bf8700", "#57606a"]


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
