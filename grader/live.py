"""Live progress of the notebooks running now: which one, which cell of how many, and for how long
against the cell's time limit - so a long check shows where it is instead of only spinning.

    execute.run_job ─ started(job) ─┐
    _Run.run_cells ─ cell(job, k, n)┼─► RUNNING (this process's table of running kernel jobs)
    _Run.run_probes ─ checking(job) ┤        │
    run_job ends ─ finished(job) ───┘        ▼
                              `with live.shown(console, "Checking 3 notebooks")` (cli): one line per
                              running notebook, redrawn four times a second, gone when it ends

Nothing here changes what is run; with no `shown` around it the table is filled and read by no one.

Through the grading service (grader/service.py) the kernels run in another process: each request
sets OWNER, so the service sends that request's entries alone (`to_wire(snapshot(owner))`) a few
times a second, and the client shows them (`remote`) as if they ran here.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass

__all__ = ["started", "cell", "checking", "finished", "snapshot", "shown", "Running", "OWNER", "to_wire", "remote"]


@dataclass
class Running:
    name: str
    stage: str = "starting its kernel"
    cell: int = 0
    total: int = 0
    since: float = 0.0  # when the current cell (or stage) started
    limit: float | None = None  # the current cell's time limit
    owner: object = None  # OWNER when it started: which service request it belongs to


_LOCK = threading.Lock()
_RUNNING: dict[int, Running] = {}
_REMOTE: list[Running] = []  # what the grading service last said is running for us
OWNER: contextvars.ContextVar = contextvars.ContextVar("learn_live_owner", default=None)


def started(job) -> None:
    with _LOCK:
        _RUNNING[id(job)] = Running(getattr(job, "label", "") or job.name, since=time.monotonic(), owner=OWNER.get())


def cell(job, k: int, n: int, limit: float) -> None:
    with _LOCK:
        entry = _RUNNING.get(id(job))
        if entry is not None:
            entry.stage, entry.cell, entry.total, entry.since, entry.limit = "cell", k, n, time.monotonic(), limit


def checking(job, n: int) -> None:
    with _LOCK:
        entry = _RUNNING.get(id(job))
        if entry is not None:
            entry.stage, entry.since, entry.limit = f"checking {n} call{'s' * (n != 1)} of the graded functions", time.monotonic(), None


def finished(job) -> None:
    with _LOCK:
        _RUNNING.pop(id(job), None)


def snapshot(owner: object = None) -> list[Running]:
    """What runs now: everything here and what the service reported, or (`owner`) one request's."""
    with _LOCK:
        if owner is not None:
            return [Running(**vars(r)) for r in _RUNNING.values() if r.owner is owner]
        return [Running(**vars(r)) for r in [*_RUNNING.values(), *_REMOTE]]


def to_wire(entries: list[Running], now: float | None = None) -> list[dict]:
    """Entries as JSON for another process: elapsed seconds instead of this process's clock."""
    now = time.monotonic() if now is None else now
    return [{"name": e.name, "stage": e.stage, "cell": e.cell, "total": e.total, "elapsed": round(now - e.since, 2),
             "limit": e.limit} for e in entries]  # fmt: skip


def remote(entries: list[dict]) -> None:
    """Show `entries` (from `to_wire` in the grading service) as running here, until the next call."""
    now, shown = time.monotonic(), []
    for e in entries if isinstance(entries, list) else []:
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
            shown.append(Running(str(e["name"]), str(e["stage"]), int(e["cell"]), int(e["total"]), now - float(e["elapsed"]),
                                 None if e.get("limit") is None else float(e["limit"])))  # fmt: skip
    with _LOCK:
        _REMOTE[:] = shown


def describe(entry: Running, now: float | None = None) -> str:
    """`01_quadratic.ipynb: cell 5 of 23, 2.1s (limit 60s)`"""
    elapsed = (now or time.monotonic()) - entry.since
    if entry.stage == "cell":
        limit = f" (limit {entry.limit:g}s)" if entry.limit else ""
        return f"{entry.name}: cell {entry.cell} of {entry.total}, {elapsed:.1f}s{limit}"
    return f"{entry.name}: {entry.stage}, {elapsed:.1f}s"


class _Lines:
    """The live renderable: a title with the elapsed time, then one line per running notebook."""

    def __init__(self, title: str):
        from rich.spinner import Spinner

        self.title, self.since = title, time.monotonic()
        self.spinner = Spinner("dots")  # one spinner, so that it turns

    def __rich_console__(self, console, options):
        from rich.text import Text

        from .inert import terminal

        now = time.monotonic()
        self.spinner.update(text=Text(f"{self.title} ({now - self.since:.0f}s)"))
        yield self.spinner
        for entry in snapshot():
            yield Text("  " + terminal(describe(entry, now), single_line=True), style="dim")


@contextlib.contextmanager
def shown(console, title: str):
    """Show the running notebooks under `title` while the block runs (terminals only; a no-op elsewhere)."""
    if not getattr(console, "is_terminal", False):
        yield
        return
    from rich.live import Live

    try:
        with Live(_Lines(title), console=console, refresh_per_second=4, transient=True):
            yield
    finally:
        remote([])
