"""The plan of a grading run: which calls to make, with which seeded inputs, and how each call
travels to a kernel (a probe spec).

    lesson pack (checks.py) ──► Check.build_cases(seed) ──► PlannedCase (id, label, shown call, tolerance)
                                                                  │
                                                 probe_spec() ──► {"id", "source", "entry", "args", ...}
                                                                  (wire-encoded, sent into a kernel)

Shared by grading (the learner's and the reference's probes), cascade (the same calls re-run with
reference-valued helpers) and mutants (the same calls against wrong versions of the solution).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import wire
from .checks import Case, Check, probe_source
from .compare import Tolerance, fmt_shape
from .lessons import CheckSpec, Lesson, NotebookSpec

__all__ = ["PlannedCase", "Plan", "plan", "probe_spec", "show_call"]


@dataclass
class PlannedCase:
    id: str
    check: str
    case: Case
    label: str
    call: str
    tol: Tolerance


@dataclass
class Plan:
    lesson: Lesson
    spec: NotebookSpec
    seed: int
    checks: list[CheckSpec]
    code: dict[str, Check]
    cases: dict[str, list[PlannedCase]] = field(default_factory=dict)

    def probes(self, reference: bool) -> list[dict]:
        """The probes of the learner's kernel (every case), or of the reference's (the cases with a
        reference value, each also run against every named mistake). `deps`: the graded helpers a
        check calls, so that a helper that never returns is judged once, not once per caller."""
        out = []
        deps = self.lesson.dependencies(self.spec)
        for spec in self.checks:
            check = self.code[spec.name]
            for pc in self.cases[spec.name]:
                if reference and not pc.case.reference:
                    continue
                base = probe_spec(pc, check, spec) | {"deps": deps.get(spec.name, [])}
                out.append(base)
                if reference:
                    for mistake in check.mistakes:
                        out.append({**base, "id": f"{pc.id}~{mistake.name}", "replace": mistake.wire()})
        return out


def _default_probe_source(name: str) -> str:
    return f"def call_graded(ns, *args, **kwargs):\n    return ns[{name!r}](*args, **kwargs)\n"


def probe_spec(pc: PlannedCase, check: Check, spec: CheckSpec) -> dict:
    if pc.case.probe is not None:
        source, entry = probe_source(pc.case.probe)
    else:
        source, entry = _default_probe_source(check.name), "call_graded"
    return {
        "id": pc.id,
        "check": check.name,
        "source": source,
        "entry": entry,
        "args": wire.encode(tuple(pc.case.args)),
        "kwargs": wire.encode(dict(pc.case.kwargs)),
        "requires": check.required_names(),
        "callables": check.callable_names(),
        "seed": pc.case.seed,
        "timeout": pc.case.timeout or spec.probe_timeout,
    }


def _show_value(value) -> str:
    from .compare import torch  # imported only if some value is a tensor

    if type(value) is torch.Tensor:
        if value.numel() <= 12:
            body = repr(_round(value.tolist()))
            return f"tensor({body})"
        return f"tensor<{fmt_shape(value.shape)}, {str(value.dtype).replace('torch.', '')}>"
    if type(value) is float:
        return f"{value:.4g}"
    if type(value) in (list, tuple) and len(value) > 6:
        return f"{type(value).__name__}[{len(value)} items]"
    return repr(value)


def _round(value):
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def show_call(name: str, case: Case) -> str:
    if case.show:
        return case.show
    parts = [_show_value(a) for a in case.args] + [f"{k}={_show_value(v)}" for k, v in case.kwargs.items()]
    return f"{name}({', '.join(parts)})"


def plan(lesson: Lesson, spec: NotebookSpec, seed: int, only: list[str] | None = None) -> Plan:
    code = lesson.check_code()
    checks = [c for c in lesson.checks_for(spec) if not only or c.name in only]
    p = Plan(lesson, spec, seed, checks, code)
    for cspec in checks:
        check = code[cspec.name]
        tol = Tolerance(rtol=cspec.rtol, atol=cspec.atol, check_dtype=cspec.check_dtype)
        planned = []
        n_fixed = n_random = 0
        for i, case in enumerate(check.build_cases(seed)):
            if case.random:
                n_random += 1
                label = case.label or f"random input {n_random}"
            else:
                n_fixed += 1
                label = case.label or f"fixed input {n_fixed}"
            planned.append(PlannedCase(f"{cspec.name}/{i}", cspec.name, case, label, show_call(cspec.name, case), case.tol or tol))
        p.cases[cspec.name] = planned
    return p
