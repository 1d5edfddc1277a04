"""One `learn check`, the same steps wherever the grading runs.

    paths ──► the grading service (warm kernels; service.run_check asks it first) ──┐        ┌─► record in the progress history
         └──► or this process: check_here ─ workspace.check_readable ─ cache ─────┴─► RunResult ─┴─► write the HTML report ──► CheckRun

Both ends call `record` and `write_check_report` here, so a result is recorded and reported the
same way whichever process graded it; `CheckRun` is what travels back to the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .results import RunResult, Status

__all__ = ["CheckRun", "check_here", "record", "write_check_report"]


@dataclass
class CheckRun:
    """What one check gives the command: the results, the report written, lines for stderr."""

    run: RunResult
    report: str | None = None  # the HTML report written, if any
    report_failed: bool = False  # a report asked for with --html could not be written (exit 2)
    notes: list[str] = field(default_factory=list)  # said before the results (how learner code runs here)
    warnings: list[str] = field(default_factory=list)  # said after them (report or history trouble)

    def to_dict(self) -> dict:
        return {"run": self.run.to_dict(), "report": self.report, "report_failed": self.report_failed,
                "notes": self.notes, "warnings": self.warnings}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> CheckRun:
        return cls(RunResult.from_dict(d["run"]), d.get("report"), bool(d.get("report_failed")), list(d.get("notes") or []),
                   list(d.get("warnings") or []))  # fmt: skip


def record(run: RunResult) -> str | None:
    """Add the freshly graded notebooks of `run` to the progress history (cached ones are there
    already). Returns a warning, or None. Paths must resolve from this process's folder."""
    from .progress import record_check

    fresh = [n for n in run.notebooks if not n.cached]
    return record_check(RunResult(fresh, seed=run.seed)) if fresh else None


def write_check_report(run: RunResult, paths: list[Path], html: Path | None) -> tuple[str | None, str | None, bool]:
    """Write the HTML report of a check: at `html`, or (None) next to the notebooks.
    Returns (path written, warning, failed); failed only when a report asked for at `html` failed."""
    from .html import default_report_path, write_report

    if html is None and all(n.status is Status.ERROR for n in run.notebooks):
        return None, None, False  # nothing was graded (typo, not a notebook): no report file by default
    target = html or default_report_path(paths)
    try:
        return str(write_report(run, target)), None, False
    except OSError as exc:
        return None, f"could not write the HTML report {target}: {exc.strerror or exc}", html is not None
    except Exception as exc:  # noqa: BLE001 - a broken template must not cost the learner their grade output
        return None, f"could not render the HTML report: {type(exc).__name__}: {exc} (please report it)", html is not None


def check_here(paths: list[Path], *, seed: int | None = None, only: list[str] | None = None, jobs: int | None = None,
               cell_timeout: float | None = None, use_cache: bool = True, html: Path | None | bool = None) -> CheckRun:  # fmt: skip
    """Grade `paths` in this process (the results cache first), record the fresh results, write
    the report. `html`: False writes no report, None writes it next to the notebooks, a path
    writes it there. `jobs` sizes this process's kernel pool."""
    from .cache import cached_check
    from .workspace import check_readable

    options = dict(seed=seed, only=only, cell_timeout=cell_timeout, use_cache=use_cache)
    run = check_readable(paths, cached_check, jobs=jobs, **options)  # not a notebook: refused at once, no kernel
    outcome = CheckRun(run)
    warning = record(run)
    if html is not False:
        outcome.report, problem, outcome.report_failed = write_check_report(run, paths, html)
        outcome.warnings += [problem] if problem else []
    outcome.warnings += [warning] if warning else []
    return outcome
