"""The cascade matrix: is every caller judged on its own when one of its helpers is wrong?

For every (helper, caller) pair of a pack - the caller's reference uses the helper, directly or
through another graded function (`Lesson.dependencies`) - grade real notebooks, through the whole
engine, whose helper is wrong in three ways and whose caller is the solution's:

    named    the helper's first named mistake (or, without one, a mutant its check catches)
    raises   the helper raises as soon as it is called
    hangs    the helper never returns

    solution notebook ──► helper's definition replaced ──► Grader.grade ──► caller: full points,
                                                                          its verdict names the helper

A pair holds when, for all three, the caller keeps its full points and either passes as written
(its checks never reach the helper) or says that the helper is to blame. Each notebook's grading
must also stay within the limits it was given (cells, probes, relays): a hanging helper is judged
once, not once per caller.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from .lessons import Lesson, NotebookSpec
from .mutate import Target, find_target, hanging, mutants_of, raising
from .notebook import code_cells, load_notebook
from .results import CheckResult, NotebookResult, Status

__all__ = ["KINDS", "cascade_matrix", "helper_variants", "pair_holds"]

KINDS = ("named", "raises", "hangs")


def _named_source(lesson: Lesson, helper: str) -> str | None:
    """Source defining `helper` as its check's first named mistake that replaces it."""
    check = lesson.check_code().get(helper)
    for mistake in getattr(check, "mistakes", []):
        for item in mistake.wire():
            if item["target"] == helper:
                return f"{item['source'].rstrip()}\n\n\n{helper} = {item['name']}\n"
    return None


def helper_variants(lesson: Lesson, target: Target) -> dict[str, str]:
    """kind -> the helper's wrong definition (source) for the matrix."""
    out = {}
    named = _named_source(lesson, target.name) if target.defines == target.name else None
    if named is None:  # no named mistake: a mutant that changes values (not one that raises)
        preferred = ("arith", "reduction", "compare", "constant", "dim", "args")
        mutants = sorted(mutants_of(target), key=lambda m: preferred.index(m.op) if m.op in preferred else 99)
        named = mutants[0].source if mutants else None
    if named is not None:
        out["named"] = named
    try:
        out["raises"], out["hangs"] = raising(target).source, hanging(target).source
    except ValueError:  # not a function (a model object): only the named version applies
        pass
    return out


def _notebook_with(nb, target: Target, source: str):
    changed = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    changed.cells[target.cell].source = target.replaced_in_cell(source)
    return changed


def pair_holds(helper: str, caller: CheckResult | None, helper_result: CheckResult | None) -> str:
    """'' when the pair held in this notebook, else why not."""
    if caller is None:
        return "the caller was not graded"
    if helper_result is not None and helper_result.status is Status.PASSED:
        return ""  # this version of the helper is not wrong for its own check: nothing to blame
    if caller.points < caller.max_points:
        first = (caller.message or "").split("\n")[0][:160]
        return f"the caller lost points ({caller.points:g}/{caller.max_points:g}): {first}"
    if caller.status is Status.PASSED and not caller.blamed_on and caller.isolated is None:
        return ""  # its checks never reached the helper
    if helper in caller.blamed_on or f"`{helper}`" in (caller.message or ""):
        return ""
    return f"the caller keeps its points but its verdict does not name `{helper}`: {(caller.message or '').splitlines()[0][:160] if caller.message else '(no message)'}"


def _limit(spec: NotebookSpec, lesson: Lesson, result: NotebookResult) -> float:
    """What a notebook's grading may take by its own limits: running it, its probes, and the
    relay of the cascade (the notebook replayed, each probe once more), plus kernel start-ups."""
    timeouts = {c.name: c.probe_timeout for c in lesson.checks_for(spec)}
    budget = min(600.0, 15.0 + sum(timeouts.get(c.name, spec.probe_timeout) * max(1, len(c.cases)) for c in result.checks))
    return 2 * (spec.notebook_timeout + budget) + 30.0


async def cascade_matrix(
    pool, lesson: Lesson, specs: list[NotebookSpec], opts, echo, cell_timeouts: dict[str, float] | None = None
) -> dict:
    """{"pairs", "held", "failures", "notebooks", "max_seconds"} for the pack's (helper, caller) pairs."""
    from .grading import Grader

    only = set(opts.only or [])
    pairs, jobs = [], []
    folder = Path(tempfile.mkdtemp(prefix="learn-cascade-"))
    for spec in specs:
        deps = lesson.dependencies(spec)
        nb = load_notebook(lesson.solution_path(spec))
        cells = code_cells(nb)
        code = lesson.check_code()
        spec_pairs = [(h, c) for c, helpers in deps.items() for h in helpers if not only or c in only or h in only]
        pairs += [(spec.file, h, c) for h, c in spec_pairs]
        for helper in sorted({h for h, _ in spec_pairs}):
            check = code.get(helper)
            classes = tuple(n for n in check.required_names() if n != helper) if check else ()
            target = find_target(cells, helper, classes)
            if target is None:
                continue
            for kind, source in helper_variants(lesson, target).items():
                path = folder / f"{helper}-{kind}" / spec.file
                path.parent.mkdir(parents=True)
                nbformat.write(_notebook_with(nb, target, source), str(path))
                jobs.append((spec, helper, kind, path))
    failures, seen = [], {}
    timing = []
    cell_timeouts = cell_timeouts or {}
    # one grader per notebook: its cells get a limit well above the solution's own (a hanging
    # helper called at the top level of the notebook then costs seconds, not the pack's minute)
    graders = {spec.file: Grader(pool=pool, lessons={lesson.id: lesson}, seed=1, use_reference_cache=False,
                                 cell_timeout=cell_timeouts.get(spec.file)) for spec in specs}  # fmt: skip
    running = asyncio.Semaphore(pool.size)  # timed one at a time per slot: the time is the notebook's own

    async def one(spec, helper, kind, path):
        async with running:
            started = time.monotonic()
            result = await graders[spec.file].grade(path, lesson.id, spec.file)
            took = time.monotonic() - started
        timing.append({"notebook": f"{helper}-{kind}", "seconds": round(took, 1), "limit": _limit(spec, lesson, result)})
        echo(f"  cascade: {spec.file} with `{helper}` {kind}: {took:.1f}s")
        return spec, helper, kind, result

    for spec, helper, kind, result in await asyncio.gather(*(one(*j) for j in jobs)):
        seen[(spec.file, helper, kind)] = result
    held = 0
    for file, helper, caller in pairs:
        why_not = []
        for kind in KINDS:
            result = seen.get((file, helper, kind))
            if result is None:
                continue
            if result.error:
                why_not.append((kind, f"the notebook could not be graded: {result.error}"))
                continue
            checks = {c.name: c for c in result.checks}
            why = pair_holds(helper, checks.get(caller), checks.get(helper))
            if why:
                why_not.append((kind, why))
        if why_not:
            failures += [{"helper": helper, "caller": caller, "mutant": kind, "why": why} for kind, why in why_not]
        else:
            held += 1
    over = [t for t in timing if t["seconds"] > t["limit"]]
    for t in over:
        failures.append({"helper": t["notebook"], "caller": "(whole notebook)", "mutant": "time",
                         "why": f"grading took {t['seconds']}s, over its limits ({t['limit']:.0f}s)"})  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "pairs": len(pairs),
        "held": held,
        "failures": failures,
        "list": [f"{h} -> {c}" for _, h, c in pairs],
        "max_seconds": max((t["seconds"] for t in timing), default=0.0),
        "timings": sorted(timing, key=lambda t: -t["seconds"])[:10],
    }
