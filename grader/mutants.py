"""`learn mutants`: how good are a pack's checks? Grade wrong versions of the solution and count.

    solution notebook ──► one kernel per notebook runs it once ──► probes, round after round:
                                                                    the reference's own calls (per seed)
    grader.mutate ──► AST mutants of each graded definition ───►    the same calls, the definition replaced
    checks.py     ──► the pack's named mistakes             ───►    by a mutant / a named mistake
                                                                          │
              judge_check (the very code that grades learners) ◄──────────┘
                  killed (the check fails it) · survived · equivalent (reviewed: mutants.toml) · not applicable

Three numbers come out, each one a promise a grade rests on:

* **score** = killed / (mutants - equivalent), over AST mutants and named mistakes. A mutant is
  killed only if its check fails it on every mutant seed (`mutant_seeds`, default 3).
* **seeds**: the reference passes, and every named mistake is caught, on each of `seeds` seeds
  (default 50): `missed` lists what slipped through, with the seeds.
* **cascade**: for every (helper, caller) pair where the caller's reference uses the helper,
  a notebook whose helper is wrong - a named mistake, one that raises, one that never returns -
  and whose caller is right: the caller must keep its points and its verdict must name the helper
  (`grader.cascade`). This part grades real notebooks through the whole engine.

Mutants run in the reference's kernel with the pack's own probes (the mechanism named mistakes have
always used: the probe's `replace` installs the wrong version for the duration of one call), so a
notebook is executed once, not once per mutant. Identical probes (a case whose inputs do not depend
on the seed) run once.

The equivalent mutants of a pack are listed in `mutants.toml` next to its `lesson.toml`:

    [[equivalent]]
    function = "mse"
    mutant = "args:0123456789"        # the id `learn mutants` prints
    what = "line 4: `preds - acts` -> `acts - preds`"
    reason = "(a - b)**2 == (b - a)**2 for every input"
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LessonPackError
from .generate import has_solution_markers
from .lessons import CheckSpec, Lesson, NotebookSpec
from .mutate import NOT_APPLICABLE, Mutant, Target, find_target, mutants_of, solution_lines
from .notebook import code_cells, definitions, load_notebook
from .results import CheckResult, Status

__all__ = ["Options", "Report", "run_mutants", "gate", "EQUIVALENT_FILE", "format_table", "write_json", "survivors_text"]

EQUIVALENT_FILE = "mutants.toml"
ROUND_SIZE = 250  # probes per harness cell


@dataclass
class Options:
    only: list[str] | None = None
    seeds: int = 50  # the reference and every named mistake, on each
    mutant_seeds: int = 3  # AST mutants: killed only if killed on each of these
    cascade: bool = True
    jobs: int | None = None


@dataclass
class Variant:
    """A wrong version of one graded definition: an AST mutant or a named mistake."""

    check: str
    id: str
    op: str
    description: str
    replace: list[dict]
    named: bool = False

    def to_dict(self) -> dict:
        return {"id": self.id, "op": self.op, "description": self.description}


@dataclass
class Outcome:
    variant: Variant
    state: str = "killed"  # killed | survived | equivalent | not_applicable
    survived_seeds: list[int] = field(default_factory=list)
    recognised: bool = True  # named mistakes: told by name on every seed where it was caught
    reason: str = ""
    first_message: str = ""

    def to_dict(self) -> dict:
        out = self.variant.to_dict() | {"state": self.state}
        if self.survived_seeds:
            out["survived_seeds"] = self.survived_seeds
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class FunctionReport:
    name: str
    notebook: str
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: str = ""  # why this check is not judged here (e.g. needs a GPU)

    def count(self, state: str) -> int:
        return sum(o.state == state for o in self.outcomes)

    @property
    def mutants(self) -> int:
        return sum(o.state != "not_applicable" for o in self.outcomes)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "notebook": self.notebook,
            "mutants": self.mutants,
            "killed": self.count("killed"),
            "survived": [o.to_dict() for o in self.outcomes if o.state == "survived"],
            "equivalent": [o.to_dict() for o in self.outcomes if o.state == "equivalent"],
            "named": [o.variant.id.split(":", 1)[1] for o in self.outcomes if o.variant.named],
            "skipped": self.skipped or None,
        }


@dataclass
class Report:
    pack: str
    functions: list[FunctionReport] = field(default_factory=list)
    seeds_checked: int = 0
    missed: list[dict] = field(default_factory=list)
    misnamed: list[dict] = field(default_factory=list)
    probe_errors: list[dict] = field(default_factory=list)
    cascade: dict = field(default_factory=lambda: {"pairs": 0, "held": 0, "failures": []})
    stale_equivalent: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    untargeted: list[str] = field(default_factory=list)
    cell_timeouts: dict[str, float] = field(default_factory=dict)  # for the cascade matrix: short, but well above the solution's
    pending: list = field(default_factory=list)  # (spec, notebook, statement targets, checks judging them): graded as notebooks

    def total(self, state: str) -> int:
        return sum(f.count(state) for f in self.functions)

    @property
    def mutants(self) -> int:
        return sum(f.mutants for f in self.functions)

    @property
    def score(self) -> float:
        judged = self.mutants - self.total("equivalent")
        return round(self.total("killed") / judged, 4) if judged else 1.0

    def to_dict(self) -> dict:
        return {
            "pack": self.pack,
            "score": self.score,
            "mutants": self.mutants,
            "killed": self.total("killed"),
            "survived": self.total("survived"),
            "equivalent": self.total("equivalent"),
            "functions": [f.to_dict() for f in self.functions],
            "cascade": self.cascade,
            "seeds": {"checked": self.seeds_checked, "missed": self.missed, "misnamed": self.misnamed},
            "probe_errors": self.probe_errors,
            "stale_equivalent": self.stale_equivalent,
            "untargeted": self.untargeted,
            "timings": self.timings,
        }


# ---------------------------------------------------------------------------------------------
# what to run


def load_equivalent(lesson: Lesson) -> dict[tuple[str, str], str]:
    """(function, mutant id) -> reason, from the pack's reviewed mutants.toml."""
    path = lesson.root / EQUIVALENT_FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LessonPackError(f"{path}: {exc}") from None
    out = {}
    for i, entry in enumerate(data.get("equivalent", [])):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) and entry.get(k) for k in ("function", "mutant", "reason")):
            raise LessonPackError(f"{path}: equivalent entry {i + 1} needs function, mutant and reason (strings)")
        out[(entry["function"], entry["mutant"])] = entry["reason"]
    return out


def _mutant_variant(m: Mutant) -> Variant:
    return Variant(m.target, m.id, m.op, m.description, [{"target": m.defines, "source": m.source, "name": m.defines}])


@dataclass
class Unit:
    """What is mutated (a graded definition) and which checks must catch its mutants: its own
    check, or - for a pack whose checks are test cells (nbgrader) - every check of the notebook."""

    name: str
    judges: list[str]
    variants: list[Variant]


def units_for(lesson: Lesson, checks: list[CheckSpec], nb) -> tuple[list[Unit], list[str]]:
    """The units of one notebook, and the checks with no definition of their own to mutate."""
    code = lesson.check_code()
    cells = code_cells(nb)
    units, untargeted, targeted = [], [], set()
    for cspec in checks:
        check = code[cspec.name]
        named = [
            Variant(cspec.name, f"named:{m.name}", "named", m.message.split("\n")[0], m.wire(), named=True)
            for m in check.mistakes
            if m.replace
        ]
        target = find_target(cells, cspec.name, tuple(n for n in check.required_names() if n != cspec.name))
        mutants = []
        if target is not None:
            targeted.add(target.defines)
            mutants = [_mutant_variant(m) for m in mutants_of(target)]
        else:
            untargeted.append(cspec.name)
        if named or mutants:
            units.append(Unit(cspec.name, [cspec.name], named + mutants))
    if untargeted and all(not code[c].required_names() for c in untargeted):
        # test-cell checks (a converted nbgrader assignment): the learner's definitions in the
        # solution cells are what the test cells test, all of them together
        for target in _solution_definitions(cells, targeted):
            variants = [_mutant_variant(m) for m in mutants_of(target)]
            if variants:
                units.append(Unit(target.name, list(untargeted), variants))
        untargeted = []
    return units, untargeted


def statement_targets(cells, graded: set[str]) -> list[Target]:
    """Top-level statements the learner writes (inside solution markers) that define no graded
    name: `learn.fine_tune(4, base_lr=1e-2)`, `learn = vision_learner(...)`. The checks see only
    what they leave behind, so their mutants are graded as whole notebooks."""
    import ast

    from .notebook import python_only

    out = []
    for index, source in cells:
        if not has_solution_markers(source):
            continue
        lines = solution_lines(source)
        try:
            tree = ast.parse(python_only(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
                continue
            bound = [n.id for t in getattr(node, "targets", []) for n in ast.walk(t) if isinstance(n, ast.Name)]
            if set(bound) & graded or not set(range(node.lineno, (node.end_lineno or node.lineno) + 1)) & lines:
                continue
            text = " ".join(ast.unparse(node).split())
            label = f"cell {index + 1}: {text if len(text) <= 48 else text[:45] + '...'}"
            out.append(Target(label, index, source, node, bound[0] if bound else "", node, lines, statement=True))
    return out


def _solution_definitions(cells, skip: set[str]) -> list[Target]:
    """Top-level definitions with lines inside solution markers, in notebook order."""
    import ast

    from .notebook import python_only

    out = []
    for index, source in cells:
        lines = solution_lines(source)
        if not has_solution_markers(source):
            continue
        try:
            tree = ast.parse(python_only(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []
            body_lines = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            for name in names:
                if name not in skip and body_lines & lines:
                    target = find_target([(index, source)], name)
                    if target is not None:
                        out.append(target)
    return out


# ---------------------------------------------------------------------------------------------
# running


class _Runner:
    """One notebook's probes in one kernel session, deduplicated."""

    def __init__(self, session, timeout_of: Callable[[dict], float]):
        self.session = session
        self.timeout_of = timeout_of
        self.results: dict[str, dict] = {}  # probe key -> raw result

    @staticmethod
    def key(probe: dict) -> str:
        return json.dumps({k: v for k, v in probe.items() if k != "id"}, sort_keys=True)

    async def run(self, probes: list[dict]) -> dict[str, dict]:
        """Raw results by probe id; probes seen before (same key) are not run again."""
        keyed = [(p, self.key(p)) for p in probes]
        todo, seen = [], set()
        for p, k in keyed:
            if k not in self.results and k not in seen:
                seen.add(k)
                todo.append(p)
        key_of = {p["id"]: k for p, k in keyed}
        for start in range(0, len(todo), ROUND_SIZE):
            chunk = todo[start : start + ROUND_SIZE]
            budget = 30.0 + sum(self.timeout_of(p) for p in chunk)
            got = await self.session.probe(chunk, budget=budget)
            for p in chunk:
                self.results[key_of[p["id"]]] = got.get(p["id"], {"status": "lost"})
        return {p["id"]: self.results[k] for p, k in keyed}


SESSION_RESTARTS = 10_000


def _not_applicable(raw: dict) -> bool:
    return raw.get("status") == "exception" and NOT_APPLICABLE in str(raw.get("evalue", ""))


def _failed(result: CheckResult) -> bool:
    return result.status not in (Status.PASSED, Status.SKIPPED)


async def _notebook(pool, lesson: Lesson, spec: NotebookSpec, opts: Options, equivalent: dict, report: Report, echo) -> None:
    from .execute import open_session
    from .grading import JudgeContext, judge_check, kernel_job
    from .plan import plan, probe_spec

    checks = [c for c in lesson.checks_for(spec) if not opts.only or c.name in opts.only]
    if not checks:
        return
    started = time.monotonic()
    nb = load_notebook(lesson.solution_path(spec))
    units, untargeted = units_for(lesson, checks, nb)
    if untargeted:  # checks of what statements leave behind: their mutants run as whole notebooks
        statements = statement_targets(code_cells(nb), set(lesson.checks))
        report.pending.append((spec, nb, statements, [c.name for c in lesson.checks_for(spec)]))
        if not statements:
            report.untargeted += untargeted
    code = lesson.check_code()
    by_name = {c.name: c for c in checks}
    seeds = list(range(1, opts.seeds + 1))
    mutant_seeds = seeds[: max(1, opts.mutant_seeds)]
    job = kernel_job(nb, spec.file, lesson, spec, [])
    # Wrong versions may end the kernel on purpose (os._exit, a memory bomb), on every seed: each
    # death blames one probe and replaces the kernel, so the session must not run out of restarts
    # (after the usual 3, every later probe - the reference's too - would count as "died").
    # Each restart removes its culprit, and the rounds' budgets bound the time.
    job.max_restarts = SESSION_RESTARTS
    verdicts: dict[str, dict[str, dict[int, CheckResult | None]]] = {u.name: {} for u in units}  # unit -> variant -> seed -> verdict
    reference_ok: dict[str, dict[int, CheckResult]] = {c.name: {} for c in checks}
    async with open_session(pool, job) as session:
        bad = [c for c in session.outcome.cells if c.status != "ok"]
        if bad:
            c = bad[0]
            raise LessonPackError(
                f"the reference solution {spec.file} of {lesson.id} failed in cell {c.index + 1}: {c.status} {c.ename} {c.evalue}".strip()
            )
        slowest = max((c.duration for c in session.outcome.cells), default=0.0)
        report.cell_timeouts[spec.file] = min(spec.cell_timeout, max(5.0, 3 * slowest + 2))
        runner = _Runner(session, lambda p: float(p.get("timeout") or spec.probe_timeout))
        ctx = JudgeContext(lesson.solution_path(spec), definitions(nb), {}, session.outcome)
        for seed in seeds:
            p = plan(lesson, spec, seed, [c.name for c in checks])
            bases = {c.name: [(pc, probe_spec(pc, code[c.name], c)) for pc in p.cases[c.name]] for c in checks}
            probes = p.probes(reference=True)
            probes += [{**base, "id": f"{pc.id}@reference"} for c in checks for pc, base in bases[c.name]]
            for unit in units:
                for v in unit.variants:
                    if v.named or seed in mutant_seeds:
                        probes += [{**base, "id": f"{pc.id}@{v.id}", "replace": v.replace} for c in unit.judges for pc, base in bases[c]]
            raw = await runner.run(probes)

            def judged(name: str, suffix: str, raw=raw, p=p) -> CheckResult:
                cases = p.cases[name]
                learner = {pc.id: raw[f"{pc.id}@{suffix}"] for pc in cases}
                return judge_check(by_name[name], code[name], cases, learner, raw, ctx)

            for c in checks:
                reference_ok[c.name][seed] = judged(c.name, "reference")
            for unit in units:
                for v in unit.variants:
                    if not (v.named or seed in mutant_seeds):
                        continue
                    results = [raw[f"{pc.id}@{v.id}"] for c in unit.judges for pc in p.cases[c]]
                    if any(_not_applicable(r) for r in results):
                        verdicts[unit.name].setdefault(v.id, {})[seed] = None
                        continue
                    outcomes = [judged(c, v.id) for c in unit.judges]
                    verdicts[unit.name].setdefault(v.id, {})[seed] = next((r for r in outcomes if _failed(r)), outcomes[0])
                    for c in unit.judges:
                        for pc in p.cases[c]:
                            r = raw[f"{pc.id}@{v.id}"]
                            if r.get("status") == "exception" and r.get("origin") == "probe":
                                report.probe_errors.append({"function": unit.name, "mutant": v.id, "case": pc.label,
                                                            "error": f"{r.get('ename')}: {str(r.get('evalue'))[:200]}"})  # fmt: skip
            echo(f"  {spec.file}: seed {seed} done ({len(runner.results)} distinct probes so far)")
    for c in checks:
        ref_fail = sorted(s for s, r in reference_ok[c.name].items() if _failed(r))
        if ref_fail:
            first = reference_ok[c.name][ref_fail[0]]
            report.missed.append({"function": c.name, "mistake": "(the reference itself fails)", "seeds": ref_fail,
                                  "message": first.message.split("\n")[0][:200]})  # fmt: skip
    for unit in units:
        skipped = all(all(r.status is Status.SKIPPED for r in reference_ok[c].values()) for c in unit.judges)
        why = next(iter(reference_ok[unit.judges[0]].values())).message or "skipped on this machine" if skipped else ""
        _summarise(unit, verdicts[unit.name], why, equivalent, report, spec)
    report.timings[spec.file] = round(time.monotonic() - started, 1)


def _summarise(unit: Unit, verdicts: dict, skipped: str, equivalent: dict, report: Report, spec: NotebookSpec) -> None:
    fn = FunctionReport(unit.name, spec.file, skipped=skipped)
    for v in unit.variants:
        by_seed = verdicts.get(v.id, {})
        out = Outcome(v)
        if any(r is None for r in by_seed.values()) or skipped:
            out.state = "not_applicable"
            fn.outcomes.append(out)
            continue
        survived = sorted(s for s, r in by_seed.items() if not _failed(r))
        out.survived_seeds = survived
        if v.named:
            name = v.id.split(":", 1)[1]
            if survived:
                report.missed.append({"function": unit.name, "mistake": name, "seeds": survived})
            misnamed = sorted(s for s, r in by_seed.items() if _failed(r) and not any(c.mistake == name for c in r.cases))
            if misnamed:
                out.recognised = False
                r = by_seed[misnamed[0]]
                got = next((c.mistake for c in r.cases if c.mistake), None)
                report.misnamed.append({"function": unit.name, "mistake": name, "seeds": misnamed[:10], "n_seeds": len(misnamed),
                                        "told_as": got, "message": r.message.split("\n")[0][:200]})  # fmt: skip
        if (unit.name, v.id) in equivalent:
            out.state, out.reason = "equivalent", equivalent[(unit.name, v.id)]
            if not survived:
                report.stale_equivalent.append({"function": unit.name, "mutant": v.id, "why": "listed as equivalent but killed"})
        elif survived:
            out.state = "survived"
        first = next((r for r in by_seed.values() if r is not None), None)
        out.first_message = first.message.split("\n")[0][:200] if first is not None else ""
        fn.outcomes.append(out)
    report.functions.append(fn)


async def _run(lesson: Lesson, opts: Options, echo) -> Report:
    from .kernels import KernelPool

    report = Report(lesson.id)
    equivalent = load_equivalent(lesson)
    report.seeds_checked = opts.seeds
    specs = [s for s in lesson.notebooks if any(not opts.only or c.name in opts.only for c in lesson.checks_for(s))]
    if opts.only:
        unknown = sorted(set(opts.only) - set(lesson.checks))
        if unknown:
            raise LessonPackError(f"{lesson.id} has no graded function {', '.join(unknown)} (it has {', '.join(lesson.checks)})")
    started = time.monotonic()
    size = opts.jobs or min(2, max(1, len(specs)))
    async with KernelPool(size=size, profile=lesson.kernel_profile()) as pool:
        await asyncio.gather(*(_notebook(pool, lesson, spec, opts, equivalent, report, echo) for spec in specs))
        if report.pending:
            await _statement_mutants(pool, lesson, opts, equivalent, report, echo)
        if opts.cascade:
            from .cascade_matrix import cascade_matrix

            report.cascade = await cascade_matrix(pool, lesson, specs, opts, echo, report.cell_timeouts)
    known = {(f.name, o.variant.id) for f in report.functions for o in f.outcomes}
    for key in equivalent:
        if key not in known and (not opts.only or key[0] in opts.only):
            report.stale_equivalent.append({"function": key[0], "mutant": key[1], "why": "no such mutant any more (the solution changed?)"})
    order = {name: i for i, name in enumerate(lesson.checks)}
    report.functions.sort(key=lambda f: order.get(f.name, 0))
    report.timings["total"] = round(time.monotonic() - started, 1)
    return report


async def _statement_mutants(pool, lesson: Lesson, opts: Options, equivalent: dict, report: Report, echo) -> None:
    """Mutants of statements (not of definitions): each one a whole notebook, graded by all the
    notebook's checks (caught when any fails: the grade drops), on the first mutant seed."""
    import shutil
    import tempfile

    import nbformat

    from .grading import Grader

    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="learn-statements-"))
    units, jobs = [], []
    for spec, nb, targets, judges in report.pending:
        grader = Grader(pool=pool, lessons={lesson.id: lesson}, seed=1, only=list(judges), cell_timeout=report.cell_timeouts.get(spec.file))
        for target in targets:
            mutants = mutants_of(target)
            unit = Unit(target.name, list(judges), [_mutant_variant(m) for m in mutants])
            units.append((unit, spec))
            for mutant, variant in zip(mutants, unit.variants):
                changed = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
                changed.cells[target.cell].source = target.replaced_in_cell(mutant.source)
                path = folder / str(len(jobs)) / spec.file
                path.parent.mkdir(parents=True)
                nbformat.write(changed, str(path))
                jobs.append((grader, spec, unit, variant, path))
    running = asyncio.Semaphore(pool.size)

    async def one(grader, spec, unit, variant, path):
        async with running:
            result = await grader.grade(path, lesson.id, spec.file)
        echo(f"  {spec.file}: {unit.name}: {variant.description}: {result.points:g}/{result.max_points:g}")
        checks = [c for c in result.checks if c.name in unit.judges]
        if result.error or not checks:
            return unit, variant, _machinery(variant)
        return unit, variant, next((c for c in checks if _failed(c)), checks[0])

    verdicts: dict[str, dict[str, dict]] = {}
    for unit, variant, verdict in await asyncio.gather(*(one(*j) for j in jobs)):
        verdicts.setdefault(unit.name, {})[variant.id] = {1: verdict}
    for unit, spec in units:
        _summarise(unit, verdicts.get(unit.name, {}), "", equivalent, report, spec)
    shutil.rmtree(folder, ignore_errors=True)
    report.timings["statements"] = round(time.monotonic() - started, 1)


def _machinery(variant: Variant) -> CheckResult:
    """A notebook that could not be graded at all (a mutant that breaks loading): caught."""
    return CheckResult(name=variant.check, status=Status.ERROR, points=0.0, max_points=1.0, message="the notebook could not be graded")


def gate(report: Report, min_score: float = 0.95) -> list[str]:
    """Why this report falls short of what CI asks of every bundled pack (empty: it does not)."""
    out = []
    if report.score < min_score:
        out.append(f"mutation score {report.score:.3f} < {min_score}")
    c = report.cascade
    if c.get("held", 0) != c.get("pairs", 0):
        out.append(f"cascade: {c.get('held')} of {c.get('pairs')} pairs held")
    if report.missed:
        out.append(f"{len(report.missed)} named mistake(s) or reference checks slip on some seeds")
    if report.probe_errors:
        out.append(f"{len(report.probe_errors)} probe error(s): a check's own code crashed on a wrong value")
    return out


def run_mutants(lesson: Lesson, opts: Options | None = None, echo: Callable[[str], None] = lambda s: None) -> Report:
    """Grade every mutant and named mistake of the pack's checks (see the module docstring)."""
    return asyncio.run(_run(lesson, opts or Options(), echo))


# ---------------------------------------------------------------------------------------------
# the table


def format_table(report: Report) -> str:
    rows = [("function", "mutants", "killed", "survived", "equivalent", "score")]
    for f in report.functions:
        judged = f.mutants - f.count("equivalent")
        score = f"{f.count('killed') / judged:.2f}" if judged else "-"
        if f.skipped:
            score = "skipped"
        rows.append((f.name, str(f.mutants), str(f.count("killed")), str(f.count("survived")), str(f.count("equivalent")), score))
    rows.append(("all", str(report.mutants), str(report.total("killed")), str(report.total("survived")),
                 str(report.total("equivalent")), f"{report.score:.3f}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    out = [f"{report.pack}: mutation score {report.score:.3f} ({report.total('killed')} of "
           f"{report.mutants - report.total('equivalent')} caught)", *lines]  # fmt: skip
    survivors = [(f.name, o) for f in report.functions for o in f.outcomes if o.state == "survived"]
    if survivors:
        out.append("")
        out.append(f"Your checks cannot tell these {len(survivors)} versions from the solution:")
        for name, o in survivors:
            seeds = f" (passes on seeds {', '.join(map(str, o.survived_seeds))})" if o.variant.op != "named" else ""
            out.append(f"  {name}  {o.variant.id}  {o.variant.description}{seeds}")
    c = report.cascade
    out.append("")
    out.append(f"cascade: {c.get('held', 0)} of {c.get('pairs', 0)} (helper, caller) pairs held")
    for failure in c.get("failures", [])[:20]:
        out.append(f"  {failure.get('helper')} -> {failure.get('caller')} ({failure.get('mutant')}): {failure.get('why')}")
    out.append(f"seeds: the reference and every named mistake on {report.seeds_checked} seeds: "
               + ("nothing missed" if not report.missed else f"{len(report.missed)} missed"))  # fmt: skip
    for m in report.missed[:20]:
        out.append(f"  {m['function']}: {m['mistake']} passes on seeds {', '.join(map(str, m['seeds'][:10]))}")
    for m in report.misnamed[:20]:
        out.append(f"  {m['function']}: {m['mistake']} caught but told as {m['told_as']!r} on {m['n_seeds']} seeds")
    if report.probe_errors:
        out.append(f"probe errors: {len(report.probe_errors)} (a check's own code crashed on a wrong value)")
        for e in report.probe_errors[:10]:
            out.append(f"  {e['function']} {e['mutant']} ({e['case']}): {e['error']}")
    if report.untargeted:
        out.append(f"not mutated (no definition in the solution): {', '.join(report.untargeted)}")
    for s in report.stale_equivalent:
        out.append(f"{EQUIVALENT_FILE}: {s['function']} {s['mutant']}: {s['why']}")
    return "\n".join(out)


def survivors_text(report: Report) -> str:
    """For an author after `learn assign`: the score and what the checks cannot tell apart."""
    survivors = [(f.name, o) for f in report.functions for o in f.outcomes if o.state == "survived"]
    judged = report.mutants - report.total("equivalent")
    lines = [f"mutants: your checks catch {report.total('killed')} of {judged} wrong versions of the solutions "
             f"(score {report.score:.2f}; `learn mutants` for the full report)"]  # fmt: skip
    if survivors:
        lines.append(f"  your checks cannot tell these {len(survivors)} versions from the solution:")
        lines += [f"    {name}: {o.variant.description}" for name, o in survivors]
        lines.append("  add a case that tells each apart, or list it in mutants.toml with the reason it is not a mistake")
    for m in report.missed:
        lines.append(f"  {m['function']}: {m['mistake']} slips through on seeds {', '.join(map(str, m['seeds'][:8]))}")
    if report.untargeted:
        lines.append(f"  not mutated (no definition found in the solution): {', '.join(report.untargeted)}")
    return "\n".join(lines)


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
