"""Code answers, in kernels: the learner's code and the reference run on every case, compared here.

    code answer ──_code_job──► kernel (grader.execute.run_job) ──probe per case──► values
    reference   ──_code_job──► kernel (once per question, shared)                 ──► compare ─► Feedback

`CodeRunner` keeps a pool warm in a background thread for an interactive session; `grade_code_batch`
grades every code answer of an answers file in one pool.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time

from ..errors import LearnError, QuizFormatError
from .feedback import Feedback
from .model import Question, compiles

__all__ = ["grade_code", "grade_code_batch", "CodeRunner", "quiz_probe"]


def quiz_probe(ns, function, case):
    """Runs in the kernel: build the case's arguments, call the answer, and say which tensor
    arguments it changed in place (a step that must return a new tensor, say)."""
    import inspect

    import torch

    def arguments(*args, **kwargs):
        return args, kwargs

    args, kwargs = eval(f"arguments(\n{case}\n)", {"torch": torch, "arguments": arguments})
    fn = ns[function]
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    inputs = [(names[i] if i < len(names) else f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    copies = [(name, a, a.detach().clone()) for name, a in inputs if isinstance(a, torch.Tensor)]
    value = fn(*args, **kwargs)
    changed = [name for name, a, c in copies if a.shape != c.shape or not bool(((a == c) | ((a != a) & (c != c))).all())]
    return {"value": value, "changed": changed}


def _code_job(question: Question, code: str):
    import nbformat

    from .. import wire
    from ..checks import probe_source
    from ..execute import KernelJob
    from ..kernels import Limits

    source, entry = probe_source(quiz_probe)
    probes = [
        {
            "id": f"case{i}",
            "source": source,
            "entry": entry,
            "args": wire.encode((question.function, case)),
            "kwargs": wire.encode({}),
            "requires": [question.function],
            "callables": [question.function],
            "seed": 1234 + i,
            "timeout": 10,
        }
        for i, case in enumerate(question.cases)
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch"), nbformat.v4.new_code_cell(code)])
    return KernelJob(notebook=nb, name=f"quiz_{question.id}.ipynb", probes=probes, cell_timeout=10, notebook_timeout=30,
                     probe_budget=10.0 * len(probes) + 10, limits=Limits(memory_bytes=2 * 2**30))  # fmt: skip


async def _reference_values(pool, question: Question) -> list:
    from .. import wire
    from ..execute import run_job

    outcome = await run_job(pool, _code_job(question, question.reference))
    values = []
    for i in range(len(question.cases)):
        raw = outcome.probes.get(f"case{i}", {})
        if raw.get("status") != "ok":
            why = raw.get("evalue") or raw.get("status", "no result")
            raise QuizFormatError(f"{question.id}: the reference answer fails on case {question.cases[i]!r}: {why}")
        value = wire.decode(raw["value"])
        values.append(value.get("value") if type(value) is dict and set(value) == {"value", "changed"} else value)
    return values


def _mentions(code: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", code) is not None


async def grade_code(pool, question: Question, code: str, references: dict | None = None) -> Feedback:
    """Run a code answer and the reference in kernels; compare every case here."""
    from .. import wire
    from ..compare import Tolerance, compare
    from ..execute import run_job

    started = time.monotonic()
    name = question.function
    if compiles(code) is None:
        try:
            compile(code, "<answer>", "exec", dont_inherit=True)
            problem = "it does not compile"
        except SyntaxError as exc:
            problem = f"SyntaxError: {exc.msg} (line {exc.lineno})"
        except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        return Feedback(False, f"Your code does not run: {problem}", code)
    if not _mentions(code, name):
        return Feedback(False, f"Your answer does not define `{name}`: write a function with that name.", code)
    references = references if references is not None else {}
    if question.id not in references:
        references[question.id] = asyncio.ensure_future(_reference_values(pool, question))
    learner = asyncio.ensure_future(run_job(pool, _code_job(question, code)))
    expected_values = await asyncio.shield(references[question.id])
    outcome = await learner
    problems = [c for c in outcome.cells if c.status != "ok"]
    if problems:
        c = problems[0]
        what = f"{c.ename}: {c.evalue}".strip(": ") if c.ename else (c.evalue or c.status)
        return Feedback(False, f"Your code failed when it ran: {what}", code, time.monotonic() - started)
    tol = Tolerance(rtol=question.rtol, atol=question.atol)
    for i, (case, expected) in enumerate(zip(question.cases, expected_values)):
        raw = outcome.probes.get(f"case{i}", {"status": "lost"})
        call = f"{name}({case})"
        status = raw.get("status")
        if status == "missing":
            return Feedback(False, f"Your code does not define `{name}`.", code, time.monotonic() - started)
        if status == "not_callable":
            return Feedback(False, f"`{name}` is not a function.", code, time.monotonic() - started)
        if status == "exception":
            evalue = f": {raw.get('evalue')}" if raw.get("evalue") else ""
            return Feedback(False, f"{call} raised {raw.get('ename', 'an error')}{evalue}", code, time.monotonic() - started)
        if status != "ok":
            return Feedback(False, f"{call} did not return ({status}): an endless loop?", code, time.monotonic() - started)
        try:
            got = wire.decode(raw["value"])
        except wire.WireError as exc:
            return Feedback(False, f"{call} returned a value the grader cannot read: {exc}", code, time.monotonic() - started)
        changed = got.get("changed") if type(got) is dict else None
        if changed:
            names = " and ".join(f"`{n}`" for n in changed)
            return Feedback(False, f"{call} changed its input {names} in place; return a new tensor and leave the inputs as they were.",
                            code, time.monotonic() - started)  # fmt: skip
        got = got.get("value") if type(got) is dict else got
        verdict = compare(got, expected, tol)
        if not verdict.ok:
            return Feedback(False, f"{call}: {verdict.message}", code, time.monotonic() - started)
    n = len(question.cases)
    return Feedback(True, f"Correct! Your {name} matches the reference on {n} input{'s' * (n != 1)}.", code, time.monotonic() - started)


class CodeRunner:
    """Kernels for one interactive quiz session: a pool started at once, in a background thread,
    so it warms up while the learner answers the first questions; code answers then wait only
    for their own kernels."""

    def __init__(self, pool_size: int = 1):
        from ..kernels import KernelPool

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="learn-quiz-kernels", daemon=True)
        self.thread.start()
        self.pool = KernelPool(size=pool_size)
        self.references: dict = {}
        self._started = asyncio.run_coroutine_threadsafe(self.pool.__aenter__(), self.loop)

    def grade(self, question: Question, code: str) -> Feedback:
        async def run() -> Feedback:
            await asyncio.wrap_future(self._started)
            return await grade_code(self.pool, question, code, self.references)

        try:
            return asyncio.run_coroutine_threadsafe(run(), self.loop).result()
        except QuizFormatError:
            raise
        except LearnError as exc:
            return Feedback(False, f"your code could not be run: {exc}", code, graded=False)

    def close(self) -> None:
        async def shutdown() -> None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self._started), 60)
            except BaseException:
                pass
            for fut in self.references.values():
                fut.cancel()
            await self.pool.close()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=90)
        except BaseException:
            pass
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            if not self.thread.is_alive():
                self.loop.close()


async def grade_code_batch(items: list[tuple[Question, str]], pool_size: int | None) -> dict[str, Feedback]:
    from ..kernels import KernelPool

    async with KernelPool(size=pool_size or min(2, os.cpu_count() or 1)) as pool:
        references: dict = {}
        results = await asyncio.gather(*(grade_code(pool, q, code, references) for q, code in items))
    return {q.id: fb for (q, _), fb in zip(items, results)}
