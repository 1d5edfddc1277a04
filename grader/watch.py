"""`learn watch`: re-check a notebook every time it is saved.

One `Grader` - and so one pool of warm kernels and the in-memory reference values - lives for
the whole session, so a re-check costs one forked kernel running one notebook. Only notebooks
whose content changed are re-checked: an editor's autosave of an unchanged notebook, or a save
of another file, does nothing. Saves are debounced (a burst of writes is one change), and a
file still being written is left until its size and time stop moving.

    await watch(paths, on_round=show, stop_event=event, max_rounds=3)   # the library form
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .results import NotebookResult, RunResult

__all__ = ["WatchRound", "watch", "is_watched_name"]


@dataclass
class WatchRound:
    """One re-check: the notebooks that changed, their results, and the latest of all."""

    number: int
    changed: list[Path]
    run: RunResult  # results of the notebooks re-checked in this round
    latest: RunResult  # the latest result of every watched notebook
    report: Path | None = None
    warnings: list[str] = field(default_factory=list)
    at: float = field(default_factory=time.time)


def is_watched_name(path: str | Path) -> bool:
    """A notebook a learner edits - not a Jupyter checkpoint, a backup, or a hidden temp file."""
    p = Path(path)
    return p.suffix == ".ipynb" and ".ipynb_checkpoints" not in p.parts and ".bak." not in p.name and not p.name.startswith(".")


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def _settled(path: Path, quiet: float = 0.2, limit: float = 5.0) -> None:
    """Wait until a file stops changing (an editor that writes in several steps)."""
    deadline = time.monotonic() + limit
    last = _stat(path)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = _stat(path)
        if now == last:
            return
        last = now


class _Tracker:
    """Which watched notebooks differ from the version last graded (stat first, then content)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.stats: dict[Path, tuple[int, int] | None] = {}
        self.digests: dict[Path, str | None] = {}

    def mark_all_graded(self) -> None:
        for p in self.paths:
            self.stats[p], self.digests[p] = _stat(p), _digest(p)

    async def changed(self) -> list[Path]:
        out = []
        for p in self.paths:
            stat = _stat(p)
            if stat is None or (p in self.stats and stat == self.stats[p]):
                continue
            await _settled(p)
            stat, digest = _stat(p), _digest(p)
            self.stats[p] = stat
            if digest is not None and digest != self.digests.get(p):
                self.digests[p] = digest
                out.append(p)
        return out


async def watch(
    paths: list[str | Path],
    *,
    on_round: Callable[[WatchRound], None],
    stop_event: asyncio.Event | None = None,
    max_rounds: int | None = None,
    initial: bool = True,
    seed: int | None = None,
    only: list[str] | None = None,
    jobs: int | None = None,
    report: Path | bool = True,
    record: bool = True,
    debounce_ms: int = 400,
    poll_s: float = 1.0,
) -> int:
    """Check `paths`, then re-check each one whenever its content changes. Returns the rounds run.

    `on_round` is called after every round (the first checks everything when `initial`).
    Stops when `stop_event` is set or after `max_rounds` rounds. `report`: True writes the HTML
    report next to the notebooks after each round, a Path writes it there, False writes none.
    `record` adds every re-check to the progress history.
    """
    try:
        import watchfiles
    except ImportError:
        from .errors import LearnError

        raise LearnError("learn watch needs the watchfiles package: pip install 'learn-grader[watch]'") from None

    from .grading import Grader
    from .html import default_report_path, write_report
    from .progress import record_check

    watched = list(dict.fromkeys(Path(p).resolve() for p in paths))
    folders = sorted({p.parent for p in watched})
    tracker = _Tracker(watched)
    latest: dict[Path, NotebookResult] = {}
    rounds = 0
    report_path = (report if isinstance(report, Path) else default_report_path(watched)) if report else None
    stop_event = stop_event or asyncio.Event()

    async def check(changed: list[Path], grader: Grader) -> None:
        nonlocal rounds
        rounds += 1
        started = time.monotonic()
        results = list(await asyncio.gather(*(grader.grade(p) for p in changed)))
        run = RunResult(results, seed=grader.seed, duration=time.monotonic() - started)
        latest.update(zip(changed, results))
        everything = RunResult([latest[p] for p in watched if p in latest], seed=grader.seed, duration=run.duration)
        warnings = []
        written = None
        if record:
            warning = record_check(run)
            if warning:
                warnings.append(warning)
        if report_path is not None:
            try:
                written = write_report(everything, report_path)
            except OSError as exc:
                warnings.append(f"could not write the HTML report {report_path}: {exc.strerror or exc}")
        on_round(WatchRound(rounds, changed, run, everything, written, warnings))

    def done() -> bool:
        return stop_event.is_set() or (max_rounds is not None and rounds >= max_rounds)

    async with Grader(pool_size=jobs or min(2, len(watched)), seed=seed, only=only) as grader:
        if not initial:
            tracker.mark_all_graded()
        changed = await tracker.changed()
        if changed:
            await check(changed, grader)
        if done():
            return rounds
        async for _events in watchfiles.awatch(*folders, watch_filter=lambda _change, path: is_watched_name(path), debounce=debounce_ms, step=50, stop_event=stop_event,
                                              rust_timeout=int(poll_s * 1000), yield_on_timeout=True, recursive=False):  # fmt: skip
            # events or not, compare with what was graded: also catches saves made during a check
            changed = await tracker.changed()
            if changed:
                await check(changed, grader)
            if done():
                break
    return rounds
