"""The one executor interface (grader.executor): backpressure, and the local warm pool turning a
GradingJob into a RunResult exactly as `learn grade` does."""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest

from tests.conftest import allow_unsandboxed
from tests.test_grade import GOOD, tiny_pack, write_nb


class Counting:
    """A stand-in executor on the real SlotsMixin: records how many jobs ran at once."""

    def __init__(self, capacity: int):
        from grader.executor import SlotsMixin

        self.mixin = type("Slots", (SlotsMixin,), {"capacity": lambda _self: capacity})()
        self.running = self.peak = 0

    async def job(self) -> None:
        async with self.mixin.slot():
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.01)
            self.running -= 1


@pytest.mark.parametrize("capacity", [1, 3])
def test_no_more_jobs_in_flight_than_the_capacity(capacity):
    counting = Counting(capacity)

    async def main():
        await asyncio.gather(*(counting.job() for _ in range(12)))

    asyncio.run(main())
    assert counting.peak == capacity and counting.mixin.in_flight() == 0


def test_batch_and_cluster_do_not_import_each_other():
    import subprocess

    for name in ("grader.cluster", "grader.executor"):
        code = f"import sys, {name}; assert 'grader.batch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('grader'))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, f"importing {name} imports grader.batch: {done.stderr[-500:]}"
    cluster = open(importlib.import_module("grader.cluster").__file__).read()
    assert "_Batch" not in cluster and "from .batch" not in cluster


@pytest.mark.slow
def test_local_executor_grades_a_job_like_learn_grade(tmp_path, monkeypatch):
    if allow_unsandboxed():
        monkeypatch.setenv("LEARN_ALLOW_UNSANDBOXED", "1")
    from grader.batch import default_seed, resolve_assignment
    from grader.executor import GradingJob, LocalExecutor, default_budget

    lesson = resolve_assignment(str(tiny_pack(tmp_path / "pack")))
    good = write_nb(tmp_path / "ann" / "squares.ipynb", "import torch", *GOOD)
    seed = default_seed(lesson)

    async def main():
        async with LocalExecutor(jobs=1) as executor:
            await executor.prepare(lesson, seed, None)
            async with executor.slot():
                done = await executor.run(GradingJob(lesson, "ann", {"squares.ipynb": good}, seed, default_budget(lesson),
                                                     folder=tmp_path / "ann"))  # fmt: skip
            async with executor.slot():
                missing = await executor.run(GradingJob(lesson, "bo", {}, seed, default_budget(lesson)))
            return done, missing

    done, missing = asyncio.run(main())
    assert done.points == done.max_points == 3 and done.notebooks[0].path == "ann/squares.ipynb"
    assert missing.points == 0 and missing.notebooks[0].error_kind == "not_submitted"
