"""`learn grade --scheduler tcp://HOST:PORT`: the same sandboxed grading on a Dask cluster.

    coordinator (learn grade, learn serve)            Dask workers (`dask worker tcp://...`)
    ─────────────────────────                         ─────────────────────────────────────
    discover, skip unchanged, claim  ── payload ──►   grade_remote(pack, payload)
    (gradebook: only here)                             a warm KernelPool per worker process, the
                                     ◄── result ───    lesson pack unpacked once, the submission's
    record, progress, exports                          notebooks graded by `executor.grade_notebooks`

`DaskExecutor` is the cluster's form of `grader.executor.Executor`. Only the coordinator touches
the gradebook, so resume, concurrent graders and exports work
unchanged. Workers need the same `learn` installation (and bubblewrap) as a local run; lesson
packs travel with the job (broadcast once), submissions travel as bytes.

Lost workers: Dask re-runs the task of a worker that died on another worker. A submission whose
task has now killed two workers is recorded as that student's error and not tried again
(the coordinator sets the scheduler's `allowed_failures` to 1 for this).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from .errors import ExecutionError, LearnError, SandboxRequiredError
from .executor import GradingJob, SlotsMixin, grade_notebooks, isolation_report, stand_in
from .lessons import Lesson, load_lesson
from .results import RunResult

__all__ = ["pack_bytes", "grade_remote", "DaskExecutor", "worker_isolation", "ALLOWED_WORKER_DEATHS"]

ALLOWED_WORKER_DEATHS = 1  # a task may take down one worker and be retried; the second time it is an error


def pack_bytes(lesson: Lesson) -> bytes:
    """The lesson pack as a zip, to ship to workers that may not share our filesystem."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(lesson.root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, str(Path("pack") / path.relative_to(lesson.root)))
    return buf.getvalue()


class _WorkerGrading:
    """Per worker process: an event loop thread with a warm kernel pool, and unpacked packs."""

    _instance: _WorkerGrading | None = None
    _lock = threading.Lock()

    def __init__(self, size: int):
        from .kernels import KernelPool

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="learn-grading", daemon=True)
        self.thread.start()
        self.pool = KernelPool(size=size)
        self.started = asyncio.run_coroutine_threadsafe(self.pool.__aenter__(), self.loop)
        self.packs = Path(tempfile.mkdtemp(prefix="learn-packs-"))
        self.lessons: dict[str, Lesson] = {}
        self.graders: dict[tuple, object] = {}

    @classmethod
    def get(cls) -> _WorkerGrading:
        with cls._lock:
            if cls._instance is None:
                try:
                    from distributed import get_worker

                    size = max(1, int(get_worker().state.nthreads))
                except (ImportError, ValueError, AttributeError):
                    size = 1
                cls._instance = cls(size)
            return cls._instance

    def lesson(self, pack: bytes) -> Lesson:
        key = hashlib.sha256(pack).hexdigest()[:16]
        with self._lock:
            if key not in self.lessons:
                target = self.packs / key
                with zipfile.ZipFile(io.BytesIO(pack)) as archive:
                    archive.extractall(target)  # our own zip, made by pack_bytes on the coordinator
                self.lessons[key] = load_lesson(target / "pack")
            return self.lessons[key]

    def grader(self, lesson: Lesson, seed: int, cell_timeout: float | None):
        from .grading import Grader

        key = (lesson.root, seed, cell_timeout)
        if key not in self.graders:
            self.graders[key] = Grader(pool=self.pool, seed=seed, cell_timeout=cell_timeout, lessons={lesson.id: lesson})
        return self.graders[key]

    async def grade(self, lesson: Lesson, payload: dict) -> dict:
        await asyncio.wrap_future(self.started)
        grader = self.grader(lesson, payload["seed"], payload["cell_timeout"])
        student = payload["student"]
        with tempfile.TemporaryDirectory(prefix="learn-sub-") as tmp:
            folder = Path(tmp) / student
            paths = {}
            for spec_file, (name, data) in payload["notebooks"].items():
                path = folder / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                paths[spec_file] = path

            def label(path: Path) -> str:
                return f"{student}/{path.relative_to(folder)}"

            budget = payload["budget"]
            run = await grade_notebooks(grader, lesson, paths, payload["notes"], payload["seed"], time.monotonic() + budget, budget, label)
        return run.to_dict()


def grade_remote(pack: bytes, payload: dict) -> dict:
    """The Dask task: grade one submission on this worker and return its RunResult as a dict.
    A worker whose kernels would run outside bubblewrap refuses unless the coordinator allowed
    it (a worker that joined after `worker_isolation` was asked)."""
    state = _WorkerGrading.get()
    if state.pool.box.mode != "bwrap" and not payload.get("allow_unsandboxed"):
        report = isolation_report()
        raise SandboxRequiredError(f"refusing to grade other people's notebooks without filesystem isolation on a Dask worker: "
                                   f"{report.get('why', report['mode'])}. {report.get('exposure', '')} Install bubblewrap on the "
                                   "workers, or pass --allow-unsandboxed (or set LEARN_ALLOW_UNSANDBOXED=1) to `learn grade`.")  # fmt: skip
    lesson = state.lesson(pack)
    return asyncio.run_coroutine_threadsafe(state.grade(lesson, payload), state.loop).result()


def _payload(job: GradingJob) -> dict:
    from .manual import instructor_cells

    notebooks = {}
    with instructor_cells(job.lesson, job.notebooks) as (graded, original):  # locked cells as the instructor wrote them
        for spec_file, path in graded.items():
            submitted = original.get(path, path)
            notebooks[spec_file] = (str(submitted.relative_to(job.folder)) if job.folder else submitted.name, path.read_bytes())
    return {"student": job.student, "notebooks": notebooks, "notes": job.notes, "seed": job.seed,
            "cell_timeout": job.cell_timeout, "budget": job.budget, "allow_unsandboxed": job.allow_unsandboxed}  # fmt: skip


def worker_isolation(address: str) -> dict[str, dict[str, str]]:
    """Each connected worker's `batch.isolation_report()` (its sandbox mode, and without
    bubblewrap why not and what learner code could reach there), asked before anything is claimed."""
    try:
        from distributed import Client
    except ImportError:
        raise LearnError("`--scheduler` needs Dask's distributed package: pip install 'learn-grader[cluster]'") from None
    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise LearnError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        return client.run(isolation_report)


def _limit_worker_deaths(dask_scheduler=None, deaths: int = ALLOWED_WORKER_DEATHS) -> int:
    dask_scheduler.allowed_failures = deaths
    return deaths


class DaskExecutor(SlotsMixin):
    """The Executor (grader.executor) on a Dask cluster: one task per submission, no more in
    flight than the cluster has threads (when a worker dies the scheduler blames every task
    assigned to it, so none may wait in a worker's queue)."""

    def __init__(self, address: str):
        self.address = address
        self.client = None
        self._packs: dict[str, bytes] = {}

    async def __aenter__(self) -> DaskExecutor:
        try:
            from distributed import Client
        except ImportError:
            raise LearnError("`--scheduler` needs Dask's distributed package: pip install 'learn-grader[cluster]'") from None
        try:
            self.client = await Client(self.address, asynchronous=True, timeout="20s")
        except OSError as exc:
            raise LearnError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
        await self.client.run_on_scheduler(_limit_worker_deaths)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()

    def capacity(self) -> int:
        if self.client is None:
            return 1
        return max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()))

    async def prepare(self, lesson: Lesson, seed: int, cell_timeout: float | None) -> None:
        """Nothing to warm here: each worker computes (and caches) references on first use."""

    def _pack(self, lesson: Lesson) -> bytes:
        key = f"{lesson.root}:{lesson.fingerprint()}"
        if key not in self._packs:
            self._packs[key] = pack_bytes(lesson)
        return self._packs[key]

    async def run(self, job: GradingJob) -> RunResult:
        from distributed import KilledWorker

        # The pack goes with every task rather than scattered once: scattered data dies with the
        # workers holding it, taking every task that needs it down too.
        key = f"learn-grade-{job.student}-{time.time_ns()}"
        future = self.client.submit(grade_remote, self._pack(job.lesson), _payload(job), key=key, pure=False, retries=0)
        try:
            return RunResult.from_dict(await future)
        except KilledWorker:
            return _killed_workers(job)
        except SandboxRequiredError:
            raise
        except Exception as exc:  # the machinery failed (not the student): leave it for the next run
            raise ExecutionError(f"worker error: {type(exc).__name__}: {exc}") from exc


async def next_completed(futures):
    """The first of these Dask futures to finish (successfully or not)."""
    from distributed import wait

    done = await wait(list(futures), return_when="FIRST_COMPLETED")
    return next(iter(done.done))


def _killed_workers(job: GradingJob) -> RunResult:
    """The result of a submission whose grading took down two workers: an error, not retried."""
    note = f"grading this submission killed {ALLOWED_WORKER_DEATHS + 1} Dask workers; it was not tried again"
    results = [stand_in(job.lesson, spec, spec.file, "killed_workers", note, job.seed) for spec in job.lesson.notebooks]
    return RunResult(results, seed=job.seed)
