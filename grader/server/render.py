"""Feedback reports and the other slow pages of `learn serve`: rendered off the event loop, a
bounded number at once, and each report rendered once per graded submission.

    queue worker, after grading ──► variants(run, title)    'full', and 'student' (hidden checks
                                    in a worker thread        left out) when there are hidden checks
                                ──► reports table            in the transaction that records the grade
    GET /s/N/report (a worker thread, never the event loop)
        stored HTML of the current grade ──► + grade_block: the final score and what it is made
                                              of (late penalty, hand-graded points and comments,
                                              the override and its reason), injected after the
                                              report's header: cheap, always current
        none stored (graded before schema 3, rendering failed) ──► render now, under RENDERS,
                                              and store it
    exports and the dashboard charts: the same bound (`bounded`)

RENDERS bounds the renders running at once in this process (threads share the GIL: a few long
renders must not starve the requests that only read).
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["RENDERS", "bounded", "variants", "without_hidden", "with_block", "report_title"]

RENDERS = threading.BoundedSemaphore(2)


@contextlib.contextmanager
def bounded():
    """Hold one of the RENDERS slots while rendering (waits for one)."""
    with RENDERS:
        yield


def report_title(slug: str, sid: int) -> str:
    return f"{slug}: submission {sid}"


def without_hidden(run):
    """The run as a student sees it before the hidden checks show: those checks and their points left out."""
    for nb in run.notebooks:
        hidden = [c for c in nb.checks if c.hidden]
        nb.checks = [c for c in nb.checks if not c.hidden]
        nb.points = round(nb.points - sum(c.points for c in hidden), 2)
        nb.max_points = round(nb.max_points - sum(c.max_points for c in hidden), 2)
    return run


def variants(result: dict, title: str) -> dict[str, str]:
    """The report of a graded submission (RunResult as JSON): 'full' (staff, and students once
    hidden checks show) and, if it has hidden checks, 'student' (without them)."""
    from ..html import render_report
    from ..results import RunResult

    with bounded():
        out = {"full": render_report(RunResult.from_dict(result), title=title)}
        if any(c.get("hidden") for nb in result.get("notebooks", []) for c in nb.get("checks", [])):
            out["student"] = render_report(without_hidden(RunResult.from_dict(result)), title=title)
    return out


def with_block(html: str, block: str) -> str:
    """The report with `block` (the grade, rendered by the app) right after its header."""
    marker = "</header>"
    at = html.find(marker)
    if at < 0:
        at = html.find("<body>")
        marker = "<body>"
    if at < 0:
        return block + html
    at += len(marker)
    return html[:at] + block + html[at:]
