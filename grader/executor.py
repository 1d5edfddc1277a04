"""One executor interface: a submission in, a RunResult out - for `learn grade`, Dask and `learn serve`.

    caller (learn grade's _Batch, the server's queue worker)
        │  async with executor:                      start / close (kernels, a Dask client)
        │      await executor.prepare(lesson, ...)   reference results first (a broken pack stops here)
        │      async with executor.slot():           backpressure: at most `capacity()` in flight
        │                                            (or acquire() ... release())
        │          run = await executor.run(job)     GradingJob ──► RunResult
        ▼
    LocalExecutor  a warm KernelPool in this process (one Grader per lesson/seed/limits)
    DaskExecutor   grader.cluster: the same unit of work on Dask workers

`run` never raises for what the learner did: a crash, a hang or garbage is part of the result.
It raises ExecutionError when the machinery failed (not the learner's fault: the caller leaves
the submission to be graded again) and SandboxRequiredError when a worker has no isolation.

The unit of work itself, `grade_notebooks`, lives here too, so that `batch` and `cluster` both
import it from here and neither imports the other's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import __version__
from .lessons import Lesson, NotebookSpec
from .results import CheckResult, NotebookResult, RunResult, Status

__all__ = [
    "GradingJob",
    "Executor",
    "LocalExecutor",
    "grade_notebooks",
    "default_budget",
    "isolation_report",
    "stand_in",
    "finish_notebook",
]


@dataclass
class GradingJob:
    """What an executor needs to grade one submission: the assignment, its inputs and limits,
    and the submitted files (assignment notebook file -> path on this machine)."""

    lesson: Lesson
    student: str
    notebooks: dict[str, Path]
    seed: int
    budget: float
    cell_timeout: float | None = None
    notes: list[str] = field(default_factory=list)
    folder: Path | None = None  # the student's folder: results name files relative to it
    allow_unsandboxed: bool = False

    def label(self, path: Path) -> str:
        """How a submitted file is named in results: student/relative path (never a temp folder)."""
        try:
            return f"{self.student}/{path.relative_to(self.folder)}" if self.folder else str(path)
        except ValueError:
            return str(path)


def default_budget(lesson: Lesson) -> float:
    """A submission's wall-clock budget: every notebook's own time limit plus its probes, in sequence."""
    probes = sum(c.probe_timeout for c in lesson.checks.values())
    return sum(spec.notebook_timeout for spec in lesson.notebooks) + probes + 30 * len(lesson.notebooks)


class Executor(Protocol):
    """Turns GradingJobs into RunResults (see the module docstring for the contract)."""

    async def __aenter__(self) -> Executor: ...

    async def __aexit__(self, *exc) -> None: ...

    def capacity(self) -> int:
        """How many jobs may be in flight now."""
        ...

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait for room (backpressure), hold it while a job runs."""
        ...

    async def acquire(self) -> None:
        """`slot()` in two steps, for callers that claim work between waiting and running."""
        ...

    async def release(self) -> None: ...

    async def prepare(self, lesson: Lesson, seed: int, cell_timeout: float | None) -> None: ...

    async def run(self, job: GradingJob) -> RunResult: ...


class SlotsMixin:
    """Bounded in-flight work: `async with self.slot()` waits while `capacity()` jobs run."""

    _in_flight = 0
    _room: asyncio.Condition | None = None

    def capacity(self) -> int:  # pragma: no cover - overridden
        return 1

    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> None:
        """Wait until fewer than `capacity()` jobs are in flight, then count one more."""
        if self._room is None:
            self._room = asyncio.Condition()
        async with self._room:
            await self._room.wait_for(lambda: self._in_flight < max(1, self.capacity()))
            self._in_flight += 1

    async def release(self) -> None:
        assert self._room is not None
        async with self._room:
            self._in_flight -= 1
            self._room.notify_all()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            await self.release()


class LocalExecutor(SlotsMixin):
    """A warm KernelPool of `jobs` kernels in this process; graders shared per (lesson, seed, limits)."""

    def __init__(self, jobs: int | None = None, profile: str = "torch"):
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.profile = profile  # what the pool's kernels preload (Lesson.kernel_profile())
        self.pool = None
        self._graders: dict[tuple, object] = {}

    def capacity(self) -> int:
        return self.jobs

    async def __aenter__(self) -> LocalExecutor:
        from .kernels import KernelPool

        self.pool = KernelPool(size=self.jobs, profile=self.profile)
        await self.pool.__aenter__()
        from . import grading  # noqa: F401 - imports torch here while the pool's zygotes import it there

        return self

    async def __aexit__(self, *exc) -> None:
        graders, self._graders = list(self._graders.values()), {}
        for grader in graders:
            with contextlib.suppress(Exception):
                await grader.__aexit__(None, None, None)
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.__aexit__(None, None, None)

    def grader(self, lesson: Lesson, seed: int, cell_timeout: float | None):
        from .grading import Grader

        key = (str(lesson.root), lesson.fingerprint(), seed, cell_timeout)
        if key not in self._graders:
            self._graders[key] = Grader(lessons={lesson.id: lesson}, pool=self.pool, seed=seed, cell_timeout=cell_timeout)
        return self._graders[key]

    async def prepare(self, lesson: Lesson, seed: int, cell_timeout: float | None) -> None:
        """Reference results of every notebook (one kernel each, cached on disk); a reference
        that fails raises LessonPackError before any learner is graded."""
        from .grading import plan

        grader = self.grader(lesson, seed, cell_timeout)
        await asyncio.gather(*(grader.reference(plan(lesson, spec, seed)) for spec in lesson.notebooks))

    async def run(self, job: GradingJob) -> RunResult:
        from .manual import instructor_cells

        grader = self.grader(job.lesson, job.seed, job.cell_timeout)
        with instructor_cells(job.lesson, job.notebooks) as (notebooks, original):  # locked cells as the instructor wrote them
            return await grade_notebooks(grader, job.lesson, notebooks, job.notes, job.seed, time.monotonic() + job.budget,
                                         job.budget, lambda path: job.label(original.get(path, path)))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the unit of work (here or on a Dask worker)


def _check_rows(lesson: Lesson, spec: NotebookSpec, status: Status, kind: str, message: str) -> list[CheckResult]:
    return [
        CheckResult(name=c.name, title=c.title, status=status, points=0.0, max_points=c.points, message=message, hidden=c.hidden, kind=kind)
        for c in lesson.checks_for(spec)
    ]


def stand_in(lesson: Lesson, spec: NotebookSpec, path: str, kind: str, message: str, seed: int | None) -> NotebookResult:
    """A result for a notebook that was not graded (not submitted, out of time)."""
    checks = _check_rows(lesson, spec, Status.TIMEOUT if kind == "timeout" else Status.ERROR, kind, message)
    return NotebookResult(path=path, exercise=spec.file, lesson=lesson.id, status=Status.ERROR, title=spec.title,
                          max_points=round(sum(c.max_points for c in checks), 2), checks=checks, error=message,
                          error_kind=kind, seed=seed, grader_version=__version__)  # fmt: skip


def finish_notebook(nb: NotebookResult, lesson: Lesson, spec: NotebookSpec) -> NotebookResult:
    """Make a notebook's result complete for the gradebook: every check of the notebook has a
    row (an unreadable notebook gets error rows)."""
    if not nb.checks:
        message = f"not graded: {nb.error or 'the notebook could not be run'}"
        nb.checks = _check_rows(lesson, spec, Status.ERROR, nb.error_kind or "error", message)
    nb.max_points = round(sum(c.max_points for c in nb.checks), 2)
    return nb


async def grade_notebooks(grader, lesson: Lesson, notebooks: dict[str, Path], notes: list[str], seed: int, deadline: float,
                          budget: float, label: Callable[[Path], str]) -> RunResult:  # fmt: skip
    """One submission's notebooks, one after another within its time budget."""
    results = []
    for spec in lesson.notebooks:
        path = notebooks.get(spec.file)
        if path is None:
            why = next((n for n in notes if n.startswith(spec.file) and "symbolic link" in n), None)
            message = (
                f"{spec.file} was not graded: it is a symbolic link; submit the notebook file itself"
                if why
                else f"{spec.file} was not submitted"
            )
            results.append(stand_in(lesson, spec, spec.file, "not_submitted", message, seed))
            continue
        remaining = deadline - time.monotonic()
        limit = f"the submission's time limit of {budget:.0f}s"
        if remaining <= 0:
            results.append(stand_in(lesson, spec, label(path), "timeout", f"not run: {limit} was used up", seed))
            continue
        try:
            nb = await asyncio.wait_for(grader.grade(path, lesson.id, spec.file), remaining)
        except TimeoutError:
            nb = stand_in(lesson, spec, label(path), "timeout", f"stopped: {limit} was reached", seed)
        name = label(path)
        nb.path, nb.error = name, nb.error.replace(str(path), name) if nb.error else nb.error
        results.append(finish_notebook(nb, lesson, spec))
    return RunResult(results, seed=seed)


# ---------------------------------------------------------------------------------------------
# where kernels would run: here, or (through client.run) on each Dask worker


def isolation_report() -> dict[str, str]:
    """The sandbox kernels get on this machine, and - without bubblewrap - why not and what learner
    code could reach. Runs on the coordinator or, through `client.run`, on each Dask worker."""
    from . import sandbox

    box = sandbox.choose()
    if box.mode == "bwrap":
        return {"mode": box.mode}
    forced = (os.environ.get("LEARN_SANDBOX") or "").strip()
    fix = "install bubblewrap (e.g. `apt-get install bubblewrap`); `learn doctor` says what is missing"
    if forced and forced.lower() not in ("auto", "bwrap"):
        why, fix = f"LEARN_SANDBOX={forced} forces the rlimit-only fallback", "unset LEARN_SANDBOX (bubblewrap is used where it works)"
    elif not sandbox.bwrap_status()[0]:
        why = "bubblewrap (bwrap) is not installed"
    else:
        why = f"bubblewrap is installed but refused to build the sandbox ({sandbox.bwrap_status()[1]})"
        fix = "allow unprivileged user namespaces for bwrap; `learn doctor` says what fails"
    if sandbox._is_root() and not box.drops_privileges:
        exposure = ("Their code would run as root with no uid to drop to: it could read and change everything on the machine - "
                    "every file, the other students' submissions, the gradebook, the reference solutions and hidden checks - "
                    "and reach the network.")  # fmt: skip
    elif sandbox._is_root():
        exposure = ("Their code would run as an unprivileged uid, but could still read every file on the machine that any user "
                    "may read (typically the other students' submissions, the reference solutions and hidden checks) and reach "
                    "the network.")  # fmt: skip
    else:
        exposure = ("Their code would run as you: it could read and change everything you can - your home folder and keys, "
                    "the other students' submissions, the gradebook, the reference solutions and hidden checks - and reach "
                    "the network.")  # fmt: skip
    return {"mode": box.mode, "why": why, "exposure": exposure, "fix": fix}
