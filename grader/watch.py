"""`learn watch`: re-check a notebook every time it is saved.

One `Grader` - and so one pool of warm kernels and the in-memory reference values - lives for
the whole session, so a re-check costs one forked kernel running one notebook. With `service`
(`learn watch` without --no-service) the grading service's warm grader does it instead, so even
the first round is quick when the service runs already; where it cannot be had, a `Grader` of
this process takes over (and `warn` is told once). Only notebooks
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


class _ServiceGrader:
    """`Grader.grade` done by the grading service (fresh every time, recorded and reported by
    `watch`); a `Grader` of this process once the service cannot be had. The seed is the first
    answer's for the rest of the session, as with one `Grader`."""

    def __init__(self, seed: int | None, only: list[str] | None, pool_size: int, warn: Callable[[str], None] | None):
        self.seed, self.only, self.pool_size, self.warn = seed, only, pool_size, warn
        self.local = None
        self.lock = asyncio.Lock()
        self.noted = False

    async def __aenter__(self) -> _ServiceGrader:
        return self

    async def __aexit__(self, *exc) -> None:
        if self.local is not None:
            await self.local.__aexit__(*exc)

    async def grade(self, path: Path) -> NotebookResult:
        from . import service

        if self.local is None:
            try:
                outcome = await asyncio.to_thread(service.check, [path], seed=self.seed, only=self.only, use_cache=False,
                                                  record=False, html=False)  # fmt: skip
            except service.ServiceUnavailable as exc:
                service.tell_once(self.warn, exc)
            else:
                self.seed = outcome.run.seed if self.seed is None else self.seed
                for note in [] if self.noted or self.warn is None else outcome.notes:
                    self.warn(note)
                self.noted = True
                return outcome.run.notebooks[0]
        async with self.lock:
            if self.local is None:
                from .grading import Grader

                self.local = await Grader(pool_size=self.pool_size, seed=self.seed, only=self.only).__aenter__()
                self.seed = self.local.seed
        return await self.local.grade(path)


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
    service: bool = False,
    warn: Callable[[str], None] | None = None,
) -> int:
    """Check `paths`, then re-check each one whenever its content changes. Returns the rounds run.

    `on_round` is called after every round (the first checks everything when `initial`).
    Stops when `stop_event` is set or after `max_rounds` rounds. `report`: True writes the HTML
    report next to the notebooks after each round, a Path writes it there, False writes none.
    `record` adds every re-check to the progress history. `service`: grade in the grading
    service (see above); `warn` hears, once, why not.
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

    async def check(changed: list[Path], grader: Grader | _ServiceGrader) -> None:
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

    pool_size = jobs or min(2, len(watched))
    checker = _ServiceGrader(seed, only, pool_size, warn) if service else Grader(pool_size=pool_size, seed=seed, only=only)
    async with checker as grader:
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
