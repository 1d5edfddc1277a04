"""Grade notebooks: plan the probes, run learner and reference kernels, judge, score.

    plan (seeded inputs, built here) ──► learner kernel ─┐
                                    └──► reference kernel ├─► judge (compare, mistakes) ─► NotebookResult
                                         (cached on disk) ┘

This is the one engine behind `learn check`, `learn grade` and the Python API
(`grader.check_notebook(path) -> NotebookResult`). Scores are computed here, in the grader's
process, from decoded values; nothing the learner's kernel says is trusted as a verdict.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__, explain, wire
from .checks import Check
from .compare import Verdict, compare, describe
from .errors import ExecutionError, LearnError, LessonPackError, NotebookLoadError, UnknownNotebookError
from .execute import JobOutcome, KernelJob, open_session, run_job
from .fingerprint import environment_fingerprint, grader_fingerprint
from .kernels import KernelPool, Limits
from .lessons import CheckSpec, Lesson, NotebookSpec, all_lessons, identify
from .notebook import definitions, load_notebook
from .paths import cache_dir
from .plan import Plan, PlannedCase, plan
from .results import CaseResult, CellProblem, CheckResult, NotebookResult, RunResult, Status
from .tracebacks import fold

__all__ = ["Grader", "check_notebook", "check_notebooks", "new_seed"]


def new_seed() -> int:
    return random.SystemRandom().randrange(1, 10**6)


# ---------------------------------------------------------------------------------------------
# judging


_IN_REF = re.compile(r"\b(?:Cell )?In\[(\d+)\]")


def _rewrite_cells(lines: list[str], input_map: dict[int, int]) -> list[str]:
    def sub(m: re.Match) -> str:
        idx = input_map.get(int(m.group(1)))
        return f"cell {idx + 1}" if idx is not None else m.group(0)

    return fold([_IN_REF.sub(sub, line) for line in lines])  # the learner's cells; library frames folded


@dataclass
class JudgeContext:
    """What judging needs to explain failures: the notebook's cells and what went wrong in them."""

    path: Path
    defs: dict[str, int]
    problems: dict[int, CellProblem]
    outcome: JobOutcome
    nb: object = None  # the notebook, to find the cell meant to define a name even when it does not parse


def _probe_failure(raw: dict, check: CheckSpec, ctx: JudgeContext) -> tuple[Status, str, str, list[str] | None]:
    """(status, kind, message, traceback) for a probe that did not return a value."""
    status = raw.get("status")
    fname = f"`{check.name}`"
    if status == "missing":
        return Status.ERROR, "missing", explain.missing(raw.get("names", []), ctx), None
    if status == "not_callable":
        names, types = raw.get("names", []), raw.get("types", [])
        pairs = ", ".join(f"`{n}` is a {t}" for n, t in zip(names, types))
        return Status.ERROR, "not_callable", f"{pairs}, not a function", None
    if status == "helper_hung":
        names = " and ".join(f"`{n}`" for n in raw.get("names", []))
        return Status.TIMEOUT, "helper_hung", f"{fname} was not called: {names}, which it uses, never returned (see {names})", None
    if status == "timeout" and raw.get("judged_once"):
        return Status.TIMEOUT, "timeout", f"{fname} was not called again: an earlier call did not return", None
    if status == "timeout":
        seconds = raw.get("seconds", check.probe_timeout)
        stuck = raw.get("stuck_in")
        if stuck and stuck != check.name and stuck in ctx.defs:  # the time ran out inside another of the notebook's functions
            return (Status.TIMEOUT, "timeout_in_helper", f"{fname} did not return within {seconds:g}s: it was still running `{stuck}` "
                    "- is there an infinite loop there, or far more work than needed?", None)  # fmt: skip
        return (
            Status.TIMEOUT,
            "timeout",
            f"{fname} did not return within {seconds:g}s - is there an infinite loop, or far more work than needed?",
            None,
        )
    if status == "died":
        reason = raw.get("reason") or "the kernel died"
        return Status.ERROR, "kernel_died", f"calling {fname} crashed the kernel: {reason}", None
    if status == "exception":
        ename, evalue = raw.get("ename", "Exception"), raw.get("evalue", "")
        tb = _rewrite_cells(
            list(raw.get("traceback") or []), ctx.outcome.input_maps[raw.get("kernel", -1)] if ctx.outcome.input_maps else {}
        )
        if ename == "NotImplementedError":
            return Status.FAILED, "not_implemented", f"{fname} is not written yet (it still raises NotImplementedError)", tb
        if raw.get("origin") == "probe":  # the check's own code choked on what the function returned: the value is wrong
            what = f"{ename}: {evalue}".rstrip(": ")
            return Status.FAILED, "unusable_value", f"{fname} returned a value this check cannot use ({what[:300]})", None
        named = explain.exception(check.name, ename, evalue, tb, ctx)  # a classic mistake, in the learner's terms
        if named is not None:
            return Status.ERROR, named[0], named[1], tb
        return Status.ERROR, "exception", f"{fname} raised {ename}: {evalue}".rstrip(": "), tb
    if status == "interrupted":
        return Status.TIMEOUT, "timeout", f"{fname} was interrupted (time limit)", None
    return Status.ERROR, "lost", f"no result came back for {fname} (the kernel stopped before reporting)", None


def _decode(raw: dict):
    return wire.decode(raw["value"])


def judge_case(pc: PlannedCase, check: Check, spec: CheckSpec, learner: dict | None, reference: dict | None,
               mistakes: dict[str, dict], ctx: JudgeContext) -> tuple[CaseResult, list[str] | None, object, object]:  # fmt: skip
    """Verdict on one case: (result, learner traceback, got value, expected value)."""
    base = dict(label=pc.label, call=None if spec.hidden else pc.call, weight=pc.case.weight)
    learner = learner or {"status": "lost"}
    duration = float(learner.get("duration", 0.0) or 0.0)
    if learner.get("status") != "ok":
        status, kind, message, tb = _probe_failure(learner, spec, ctx)
        return CaseResult(status=status, message=message, duration=duration, kind=kind, **base), tb, None, None
    expected = None
    if pc.case.reference:
        if not reference or reference.get("status") != "ok":
            why = (reference or {}).get("evalue") or (reference or {}).get("status", "no result")
            raise LessonPackError(f"the reference solution failed on {spec.name} ({pc.label}): {why}")
        expected = _decode(reference)
    try:
        got = _decode(learner)
    except wire.WireError as exc:
        msg = f"`{spec.name}` returned a value the grader cannot read: {exc}"
        return CaseResult(status=Status.ERROR, message=msg, duration=duration, kind="unreadable", **base), None, None, expected
    if learner.get("changed") and not check.changes_inputs:
        named = next((m for m in check.mistakes if m.name == "changes_input"), None)
        inputs = " and ".join(f"`{p}`" for p in learner["changed"][:3])
        message = (f"`{spec.name}` changed its input {inputs} in place: after the call, the caller's tensor holds other values. "
                   "Build the result as a new tensor and leave the inputs as they were (no in-place operation such as "
                   "`.mul_()`, `+=` or an item assignment on an input).")  # fmt: skip
        if named is not None:
            message = f"{named.message}\n{message}"
        return (CaseResult(status=Status.FAILED, message=message, duration=duration, kind="changes_input", mistake="changes_input", **base),
                None, got, expected)  # fmt: skip
    judge = pc.case.judge or compare
    try:
        verdict: Verdict = judge(got, expected, pc.tol)
    except Exception as exc:  # a judge must never crash on a learner's value: the value is what is wrong
        verdict = Verdict(False, f"`{spec.name}` returned {describe(got)}, which this check cannot compare with "
                          f"the expected {describe(expected)} ({type(exc).__name__}: {str(exc)[:200]})", kind="unusable_value")  # fmt: skip
    if verdict.ok:
        status = Status.SKIPPED if verdict.kind == "skipped" else Status.PASSED
        return CaseResult(status=status, message=verdict.message, duration=duration, **base), None, got, expected
    mistake_name = verdict.mistake  # a judge may recognise a misconception by itself
    message = verdict.message
    for mistake in [] if mistake_name else check.mistakes:
        raw = mistakes.get(f"{pc.id}~{mistake.name}")
        if raw and raw.get("status") == "ok":
            try:
                same = dataclasses.replace(pc.tol, equal_nan=True, check_dtype=True)  # the same values (blown up alike): the same mistake
                told = _decode(raw)
                if _same_kind(got, told) and compare(_nonfinite_as_nan(got), _nonfinite_as_nan(told), same).ok:
                    mistake_name, message = mistake.name, f"{mistake.message}\n{verdict.message}"
                    break
            except Exception:  # an odd value: simply not this mistake
                continue
    kind = "known_mistake" if mistake_name else verdict.kind or (verdict.diff.kind if verdict.diff else "values")
    return (
        CaseResult(status=Status.FAILED, message=message, diff=verdict.diff, mistake=mistake_name, duration=duration, kind=kind, **base),
        None,
        got,
        expected,
    )


def _same_kind(got, told) -> bool:
    """A learner's value is a named mistake's only if it is the same kind of thing: a float64 tensor
    or a NumPy array is not the Python float of the `.item()` mistake, however equal the numbers."""
    from .compare import torch

    if type(got) is not type(told):
        return False
    if type(got) is torch.Tensor:
        return got.dtype == told.dtype and got.shape == told.shape
    if type(got) in (list, tuple):
        return len(got) == len(told) and all(_same_kind(g, t) for g, t in zip(got, told))
    if type(got) is dict:
        return got.keys() == told.keys() and all(_same_kind(got[k], told[k]) for k in got)
    return True


def _nonfinite_as_nan(value):
    """inf and nan alike as nan: once a computation blew up, which non-finite value came out depends
    on how a gradient was chained (a Jacobian product or a mask), not on the mistake."""
    from .compare import torch

    if type(value) is torch.Tensor and value.is_floating_point():
        return torch.where(torch.isfinite(value), value, torch.full_like(value, float("nan")))
    if type(value) is float:
        return value if value - value == 0 else float("nan")
    if type(value) in (list, tuple):
        return type(value)(_nonfinite_as_nan(v) for v in value)
    if type(value) is dict:
        return {k: _nonfinite_as_nan(v) for k, v in value.items()}
    return value


def judge_check(spec: CheckSpec, check: Check, cases: list[PlannedCase], learner: dict, reference: dict, ctx: JudgeContext) -> CheckResult:
    results: list[CaseResult] = []
    traceback = None
    got_values, expected_values = [], []
    kind = None
    for pc in cases:
        mistakes = {k: v for k, v in reference.items() if k.startswith(pc.id + "~")}
        result, tb, got, expected = judge_case(pc, check, spec, learner.get(pc.id), reference.get(pc.id), mistakes, ctx)
        results.append(result)
        got_values.append(got)
        expected_values.append(expected)
        traceback = traceback or tb
        if result.status is Status.ERROR and learner.get(pc.id, {}).get("status") in ("missing", "not_callable"):
            kind = learner[pc.id]["status"]
            results = [result] + [
                CaseResult(label=p.label, status=Status.ERROR, message=result.message, call=None if spec.hidden else p.call, kind=kind)
                for p in cases[1:]
            ]
            break
    if spec.hidden:
        results = [_hide(r) for r in results]
    counted = [r for r in results if r.status is not Status.SKIPPED]
    total_w = sum(r.weight for r in counted)
    passed_w = sum(r.weight for r in counted if r.passed)
    failing = [r for r in results if r.status not in (Status.PASSED, Status.SKIPPED)]
    max_points = spec.points if counted else 0.0
    if not counted:
        status = Status.SKIPPED
        points = 0.0
    elif not failing:
        status, points = Status.PASSED, spec.points
    else:
        statuses = {r.status for r in failing}
        status = (
            Status.ERROR
            if kind
            else Status.FAILED
            if Status.FAILED in statuses
            else Status.TIMEOUT
            if Status.TIMEOUT in statuses
            else Status.ERROR
        )
        points = round(spec.points * passed_w / total_w, 2) if spec.partial_credit and total_w else 0.0
    first = failing[0] if failing else None
    if first is None:
        message = results[0].message if status is Status.SKIPPED else ""
    elif len({r.message for r in failing}) == 1 and len(failing) == len(counted):
        message = first.message  # every case failed the same way (e.g. not written yet)
    elif len(counted) > 1:
        message = f"{len(failing)} of {len(counted)} cases failed. {first.label}: {first.message}"
    else:
        message = first.message
    if kind is None and first is not None:
        kind = next(("known_mistake" for r in failing if r.mistake), None) or first.kind or _status_kind(first)
    series = {}
    if check.series is not None and any(v is not None for v in got_values):
        try:
            series = check.series(got_values, expected_values, [pc.case for pc in cases]) or {}
        except Exception:  # a plot is a nicety: never let it break a grade
            series = {}
    hint = spec.hints[0] if spec.hints and status not in (Status.PASSED, Status.SKIPPED) else None
    seen = next((m for r in failing if r.mistake for m in check.mistakes if m.name == r.mistake), None)
    if seen is not None:  # a known misconception: its explanation is the hint that helps
        hint = seen.message
    return CheckResult(
        name=spec.name,
        title=spec.title,
        status=status,
        points=points,
        max_points=max_points,
        message=message,
        hint=hint,
        cases=results,
        duration=sum(r.duration for r in results),
        hidden=spec.hidden,
        kind=kind,
        traceback=None if spec.hidden else traceback,
        series={} if spec.hidden else series,
    )


def _status_kind(case: CaseResult) -> str:
    return {Status.TIMEOUT: "timeout", Status.ERROR: "exception", Status.FAILED: "values"}.get(case.status, "values")


def _hide(case: CaseResult) -> CaseResult:
    """Hidden checks: the learner sees that a case failed and why, never its inputs or expected values."""
    if case.kind in ("values", "nonfinite", "behaviour", "length", "keys"):
        message = "returned values that differ from the reference on hidden inputs"
    else:
        message = case.message.split("\n")[0]
    return CaseResult(
        label=case.label,
        status=case.status,
        message=message if not case.passed else "",
        weight=case.weight,
        duration=case.duration,
        kind=case.kind,
        mistake=case.mistake,
    )


def cell_problems(nb, outcome: JobOutcome) -> list[CellProblem]:
    problems = []
    for run in outcome.cells:
        if run.status == "ok" and not run.truncated:
            continue
        source = nb.cells[run.index].source.strip().splitlines()
        head = "\n".join(source[:3]) + ("\n..." if len(source) > 3 else "")
        if run.status == "ok":  # only truncated
            problems.append(
                CellProblem(run.index + 1, Status.PASSED, "output_limit", evalue="output was truncated", source=head, duration=run.duration)
            )
            continue
        kind = {"error": "exception", "timeout": "timeout", "died": "kernel_died", "skipped": "skipped"}[run.status]
        status = {"timeout": Status.TIMEOUT, "skipped": Status.SKIPPED}.get(run.status, Status.ERROR)
        evalue = run.evalue
        if run.status == "timeout" and not evalue:
            evalue = f"stopped after {run.duration:.0f}s (the cell time limit) - an infinite loop, or too much work?"
        problems.append(
            CellProblem(
                cell=run.index + 1,
                status=status,
                kind=kind,
                ename=run.ename,
                evalue=evalue,
                traceback=_rewrite_cells(run.traceback, {r.execution_count: r.index for r in outcome.cells if r.execution_count}),
                source=head,
                duration=run.duration,
            )
        )
    by_cell, defined = {p.cell: p for p in problems}, None
    for p in problems:
        unknown = re.match(r"name '(\w+)' is not defined", p.evalue or "") if p.ename == "NameError" else None
        if unknown:
            defined = definitions(nb) if defined is None else defined
            p.note = explain.unknown_name_note(nb, p.cell, unknown.group(1), by_cell, defined)
    return problems


# ---------------------------------------------------------------------------------------------
# running


def apply_kernel_death_policy(result: NotebookResult) -> None:
    """A notebook that kills its Python kernel while running top to bottom (os._exit, a segfault,
    the memory limit) scores nothing: it would not survive "Restart & Run All". The engine still
    replays the cells around the crash, so each check says what it would have scored."""
    died = next((p for p in result.cell_problems if p.kind == "kernel_died"), None)
    if died is None:
        return
    note = (f"not scored: the notebook killed its Python kernel in cell {died.cell}"
            f" ({died.evalue or 'the kernel died'}); a submission must run from top to bottom")  # fmt: skip
    for check in result.checks:
        would = f" (this function alone would score {check.points:g}/{check.max_points:g})" if check.points else ""
        check.message = note + would + (f"\n{check.message}" if check.message and not check.passed else "")
        check.status, check.points, check.kind = Status.ERROR, 0.0, "kernel_died"
    result.points, result.status, result.error, result.error_kind = 0.0, Status.ERROR, note, "kernel_died"


def _profile(spec: NotebookSpec, nb) -> str:
    if spec.profile:
        return spec.profile
    return "fastai" if any("fastai" in c.source for c in nb.cells if c.cell_type == "code") else "torch"


def probe_budget(probes: list[dict]) -> float:
    """Seconds a round of probes may take in all: each probe's own limit, plus some for the round."""
    return min(600.0, 15.0 + sum(float(p["timeout"]) for p in probes))


def kernel_job(nb, name: str, lesson: Lesson, spec: NotebookSpec, probes: list[dict], cell_timeout: float | None = None) -> KernelJob:
    budget = probe_budget(probes)
    return KernelJob(
        notebook=nb,
        name=name,
        files=lesson.data_files(spec),
        probes=probes,
        cell_timeout=min(spec.cell_timeout, cell_timeout) if cell_timeout else spec.cell_timeout,
        notebook_timeout=spec.notebook_timeout,
        probe_budget=budget,
        profile=_profile(spec, nb),
        limits=Limits(memory_bytes=spec.memory_mb * 2**20),
    )


class Grader:
    """Grades notebooks on a kernel pool. Use as `async with Grader(...) as g: await g.grade(path)`."""

    def __init__(self, pool_size: int | None = None, seed: int | None = None, only: list[str] | None = None,
                 use_reference_cache: bool = True, pool: KernelPool | None = None, cell_timeout: float | None = None,
                 lessons: dict[str, Lesson] | None = None):  # fmt: skip
        """`lessons` restricts (or extends) the packs notebooks are matched against: `learn grade`
        passes exactly the assignment's pack, wherever it lives."""
        self.seed = seed if seed is not None else new_seed()
        self.cell_timeout = cell_timeout
        self.only = only
        self.use_reference_cache = use_reference_cache
        self._own_pool = pool is None
        profile = next(iter(lessons.values())).kernel_profile() if lessons and len(lessons) == 1 else "torch"
        self.pool = pool or KernelPool(size=pool_size or min(2, os.cpu_count() or 1), profile=profile)
        self._lessons: dict[str, Lesson] | None = lessons
        self._references: dict[str, asyncio.Future] = {}

    async def __aenter__(self) -> Grader:
        if self._own_pool:
            await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._own_pool:
            await self.pool.close()

    @property
    def lessons(self) -> dict[str, Lesson]:
        if self._lessons is None:
            self._lessons = all_lessons()
        return self._lessons

    async def reference(self, p: Plan) -> dict[str, dict]:
        """Probe results of the reference solution for this plan (shared, and cached on disk)."""
        probes = p.probes(reference=True)
        if not probes:
            return {}
        env = [grader_fingerprint(), environment_fingerprint(self.pool.box.mode)]
        key = hashlib.sha256(
            json.dumps([__version__, *env, p.lesson.fingerprint(), p.spec.file, probes], sort_keys=True).encode()
        ).hexdigest()[:32]
        if key not in self._references:
            self._references[key] = asyncio.ensure_future(self._reference_uncached(p, probes, key))
        return await asyncio.shield(self._references[key])

    async def _reference_uncached(self, p: Plan, probes: list[dict], key: str) -> dict[str, dict]:
        path = cache_dir() / "reference" / f"{key}.json"
        if self.use_reference_cache and path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                pass
        nb = load_notebook(p.lesson.solution_path(p.spec))
        job = dataclasses.replace(kernel_job(nb, p.spec.file, p.lesson, p.spec, probes), label=f"{p.spec.file} (the reference solution)")
        outcome = await run_job(self.pool, job)
        bad = [c for c in outcome.cells if c.status != "ok"]
        if bad:
            c = bad[0]
            raise LessonPackError(
                f"the reference solution {p.spec.file} of {p.lesson.id} failed in cell {c.index + 1}: {c.status} {c.ename} {c.evalue}".strip()
            )
        if self.use_reference_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(outcome.probes))
                os.replace(tmp, path)
            except OSError:
                pass
        return outcome.probes

    async def grade(self, path: str | Path, lesson_id: str | None = None, notebook: str | None = None) -> NotebookResult:
        """Grade one notebook file; every problem becomes part of the result, never an exception."""
        path = Path(path)
        started = time.monotonic()
        result = NotebookResult(path=str(path), exercise=None, lesson=None, status=Status.ERROR, seed=self.seed, grader_version=__version__)
        try:
            if lesson_id:  # named by the caller: known even if the file turns out unreadable
                lesson = self.lessons.get(lesson_id) or _raise_unknown(lesson_id, self.lessons)
                spec = lesson.notebook(notebook or path.name)
                result.lesson, result.exercise, result.title = lesson.id, spec.file, spec.title
            nb = load_notebook(path)
            if not lesson_id:
                lesson, spec = identify(nb, path, self.lessons)
            result.lesson, result.exercise, result.title = lesson.id, spec.file, spec.title
            return await self._grade_loaded(nb, path, lesson, spec, result, started)
        except NotebookLoadError as exc:
            result.error, result.error_kind = str(exc), "load"
        except UnknownNotebookError as exc:
            result.error, result.error_kind = str(exc), "unknown_exercise"
        except ExecutionError as exc:
            result.error, result.error_kind = f"grading machinery failed: {exc}", "execution"
        except LearnError as exc:
            result.error, result.error_kind = str(exc), "lesson"
        result.duration = round(time.monotonic() - started, 3)
        return result

    async def _grade_loaded(
        self, nb, path: Path, lesson: Lesson, spec: NotebookSpec, result: NotebookResult, started: float
    ) -> NotebookResult:
        t0 = time.monotonic()
        p = plan(lesson, spec, self.seed, self.only)
        probes = p.probes(reference=False)
        reference_task = asyncio.ensure_future(self.reference(p))
        checks = None
        job = kernel_job(nb, path.name, lesson, spec, [], self.cell_timeout)
        async with open_session(self.pool, job) as session:
            if probes:
                await session.probe(probes, budget=probe_budget(probes))
            outcome = session.outcome
            probe_s = outcome.probe_s  # (judged before a cascade's rounds reuse the session and its outcome)
            if reference_task.done():  # known already (cached): judge now, and a cascade reuses this kernel
                t1 = time.monotonic()
                reference = reference_task.result()
                checks, problems, ctx = self._judge(nb, path, p, outcome, reference)
                checks = await self._cascade(nb, path, p, checks, reference, ctx, learner=session)
        if checks is None:  # the reference was still being computed: never wait for it holding a kernel slot
            reference = await reference_task
            t1 = time.monotonic()
            checks, problems, ctx = self._judge(nb, path, p, outcome, reference)
            checks = await self._cascade(nb, path, p, checks, reference, ctx)
        result.checks = checks
        result.cell_problems = problems
        result.points = round(sum(c.points for c in checks), 2)
        result.max_points = round(sum(c.max_points for c in checks), 2)
        result.status = Status.PASSED if all(c.status in (Status.PASSED, Status.SKIPPED) for c in checks) else Status.FAILED
        apply_kernel_death_policy(result)
        result.sandbox = outcome.sandbox
        result.kernel_backend = outcome.backend
        result.timings = {
            "kernels": round(t1 - t0, 3),
            "kernel_start": round(outcome.kernel_start_s, 3),
            "probes": round(probe_s, 3),
            "judge": round(time.monotonic() - t1, 3),
            "restarts": outcome.restarts,
        }
        result.duration = round(time.monotonic() - started, 3)
        return result

    def _judge(self, nb, path: Path, p: Plan, outcome, reference: dict):
        problems = cell_problems(nb, outcome)
        ctx = JudgeContext(path, definitions(nb), {c.cell: c for c in problems}, outcome, nb)
        checks = [judge_check(s, p.code[s.name], p.cases[s.name], outcome.probes, reference, ctx) for s in p.checks]
        return checks, problems, ctx

    async def _relay_pool(self) -> KernelPool:
        """A one-slot pool of its own for the reference side of relays (`cascade`): a relay holds a
        learner slot while it waits for this one, so sharing the main pool could deadlock. Graders
        sharing a pool share its relay pool, and closing the main pool closes it."""
        self.pool.start_relay()  # once per pool (set before any await: concurrent graders start only one)
        await asyncio.shield(self.pool.relay_started)
        return self.pool.relay

    async def _cascade(self, nb, path: Path, p: Plan, checks: list[CheckResult], reference: dict, ctx: JudgeContext,
                       learner=None) -> list[CheckResult]:  # fmt: skip
        """Re-check failing functions with correct graded helpers (see `cascade`). `learner`: the
        kernel that ran the notebook, still up (its session), or None for a new one."""
        from . import cascade

        by_name = {c.name: c for c in checks}
        wanted = cascade.targets(p, by_name)
        if not wanted:
            return checks
        learner_job = kernel_job(nb, path.name, p.lesson, p.spec, [], self.cell_timeout)
        learner_job.skip_cells = frozenset(c.index for c in ctx.outcome.cells if c.status in ("timeout", "died"))
        reference_job = kernel_job(load_notebook(p.lesson.solution_path(p.spec)), p.spec.file, p.lesson, p.spec, [])
        try:
            relay_pool = await self._relay_pool()
            raw, outcome = await cascade.relay(self.pool, relay_pool, learner_job, reference_job, p, wanted, learner=learner)
        except ExecutionError as exc:  # machinery trouble: the verdicts as written stand, and are not cached
            for check in checks:
                if check.name in wanted:
                    check.relay = f"machinery: {exc}"
            return checks
        iso_ctx = JudgeContext(ctx.path, ctx.defs, ctx.problems, outcome, ctx.nb)
        out = []
        for check in checks:
            if check.name in wanted:
                spec = next(s for s in p.checks if s.name == check.name)
                ids = [pc.id for pc in p.cases[check.name]]
                isolated = None
                failed = [raw[i]["reason"] for i in ids if raw.get(i, {}).get("status") == "relay_failed"]
                if not failed:
                    isolated = judge_check(spec, p.code[check.name], p.cases[check.name], raw, reference, iso_ctx)
                check = cascade.combine(check, isolated, wanted[check.name], by_name, p.lesson.scoring)
                check.relay = failed[0] if failed else ""
                by_name[check.name] = check  # helpers come first: later functions blame only the truly wrong ones
            out.append(check)
        return out

    async def grade_many(self, paths: list[Path]) -> RunResult:
        started = time.monotonic()
        results = await asyncio.gather(*(self.grade(p) for p in paths))
        return RunResult(list(results), seed=self.seed, duration=time.monotonic() - started)


def _raise_unknown(lesson_id: str, lessons: dict):
    from .errors import UnknownLessonError

    raise UnknownLessonError(lesson_id, list(lessons))


def check_notebooks(paths: list[str | Path], *, seed: int | None = None, only: list[str] | None = None, jobs: int | None = None,
                    cell_timeout: float | None = None) -> RunResult:  # fmt: skip
    """Grade several notebooks together (one kernel pool); see also `cache.cached_check`."""
    pool_size = jobs or max(1, min(2, len(paths), os.cpu_count() or 1))

    async def main() -> RunResult:
        async with Grader(pool_size=pool_size, seed=seed, only=only, cell_timeout=cell_timeout) as grader:
            return await grader.grade_many([Path(p) for p in paths])

    return asyncio.run(main())


def check_notebook(path: str | Path, *, seed: int | None = None, only: list[str] | None = None) -> NotebookResult:
    """Grade one notebook against the reference solution of the exercise it belongs to.

    Needs no course folder layout: the exercise is recognised from the notebook's metadata
    or file name. Problems in the notebook (unreadable, crashing, hanging) are reported in
    the result, not raised.
    """
    return check_notebooks([path], seed=seed, only=only).notebooks[0]
