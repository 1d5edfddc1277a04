"""Blame the right function: re-check a failing function with correct graded helpers.

`quad_mse` calls the learner's `mse`; when `mse` is wrong, `quad_mse` fails too although it is
right. So a failing function that calls other graded functions (`Lesson.dependencies`) is run
again, its helpers answering with the *reference's values*, and judged a second time:

    learner kernel                         grader                        reference kernel
    probe: fit_quad(...) with shims   ──►  "need quad_mse(p0)"   ──►  same probe setup (x, y),
      quad_mse(p0): not in table           relays the inputs           quad_mse(p0) -> value, dvalue/dp
    probe again, table = {p0: ...}    ◄──  table += answer       ◄──
      ... one step further each round, until the probe returns (at most `MAX_ROUNDS` rounds)

Trust boundary: the reference's code and objects never reach the learner's kernel. Its shims
hold plain values (and Jacobians, so `loss.backward()` through a shim gives the reference's
gradient) for the inputs the learner's own code passed; nothing else. What a learner can observe
this way is the reference helper's outputs for inputs of their choosing - no more than calling
a correct `mse` of their own would give. A helper whose reference answer is no plain value (it
returns a function, like `mk_quad`, or None, running for its side effects) is answered by the
learner's own helper instead.

Machinery trouble (a relay that does not converge, a reference that cannot answer) never blames
the learner: the function keeps its verdict as written.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from .results import CheckResult, Status

if TYPE_CHECKING:
    from .grading import Plan
    from .kernels import KernelPool

MAX_ROUNDS = 64  # a training loop of n steps needs n + 1 rounds

__all__ = ["MAX_ROUNDS", "targets", "relay", "combine", "verdict"]


def targets(p: Plan, checks: dict[str, CheckResult]) -> dict[str, list[str]]:
    """Failing checks of this plan that call other graded functions -> those functions."""
    deps = p.lesson.dependencies(p.spec)
    out = {}
    for spec in p.checks:
        result = checks.get(spec.name)
        if result is None or result.status in (Status.PASSED, Status.SKIPPED) or result.kind in ("missing", "not_callable"):
            continue
        if deps.get(spec.name) and not _unwritten_itself(spec.name, result):
            out[spec.name] = deps[spec.name]
    return out


def _unwritten_itself(name: str, result: CheckResult) -> bool:
    """A stub that raised NotImplementedError in its own body: correct helpers cannot change that."""
    if result.kind != "not_implemented" or not result.traceback:
        return False
    frames = [m.group(1) for line in result.traceback if (m := re.search(r", in (\w+)$", line))]
    return bool(frames) and frames[-1] == name


def _isolated_probes(p: Plan, wanted: dict[str, list[str]], tables: dict[str, dict]) -> dict[str, dict]:
    from .grading import _probe_spec

    probes = {}
    for name, deps in wanted.items():
        spec = next(s for s in p.checks if s.name == name)
        for pc in p.cases[name]:
            probe = _probe_spec(pc, p.code[name], spec)
            probe["requires"] = [n for n in probe["requires"] if n not in deps]
            probe["isolate"] = {"deps": deps, "table": tables.setdefault(pc.id, {})}
            probes[pc.id] = probe
    return probes


async def relay(pool: KernelPool, relay_pool: KernelPool, learner_job, reference_job, p: Plan,
                wanted: dict[str, list[str]], max_rounds: int | None = None) -> tuple[dict[str, dict], object]:  # fmt: skip
    """(raw probe results of the wanted checks' cases run with reference-valued helpers, the
    learner kernel's JobOutcome). A case whose relay failed gets {"status": "relay_failed"}."""
    from .execute import open_session

    max_rounds = max_rounds or MAX_ROUNDS
    tables: dict[str, dict] = {}
    probes = _isolated_probes(p, wanted, tables)
    owner = {pc.id: name for name in wanted for pc in p.cases[name]}
    final: dict[str, dict] = {}
    async with contextlib.AsyncExitStack() as stack:
        learner = await stack.enter_async_context(open_session(pool, learner_job))
        reference = None
        for _ in range(max_rounds):
            pending = [probes[pid] for pid in probes if pid not in final]
            if not pending:
                break
            got = await learner.probe(pending)
            needs = {}
            for probe in pending:
                raw = got.get(probe["id"], {"status": "lost"})
                if raw.get("status") == "need" and isinstance(raw.get("request"), dict):
                    needs[probe["id"]] = raw["request"]
                else:
                    final[probe["id"]] = raw
            if not needs:
                break
            if reference is None:
                reference = await stack.enter_async_context(open_session(relay_pool, reference_job))
            asks = []
            for pid, request in needs.items():
                ask = {k: v for k, v in probes[pid].items() if k != "isolate"}
                ask.update(requires=[], callables=[], respond={"target": owner[pid], "requests": [request]})
                asks.append(ask)
            answers = await reference.probe(asks)
            for pid, request in needs.items():
                answer = answers.get(pid, {})
                value = answer.get("value") if answer.get("status") == "answers" else None
                if not (isinstance(value, dict) and value.get("t") == "list" and len(value.get("v") or []) == 1):
                    why = answer.get("evalue") or answer.get("status") or "no answer"
                    final[pid] = {"status": "relay_failed", "reason": f"the reference could not answer {request.get('name')}: {why}"}
                    continue
                tables[pid][request["key"]] = value["v"][0]
        for pid in probes:
            final.setdefault(pid, {"status": "relay_failed", "reason": f"no result after {max_rounds} relay rounds"})
        outcome = learner.outcome
    return final, outcome


def verdict(result: CheckResult) -> dict:
    mistake = next((c.mistake for c in result.cases if c.mistake), None)
    return {"status": result.status.value, "points": result.points, "message": result.message, "kind": result.kind, "mistake": mistake}


def _wrong_on_its_own(check: CheckResult) -> bool:
    status = check.isolated["status"] if check.isolated else check.status.value
    return status not in (Status.PASSED.value, Status.SKIPPED.value)


def _names(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def combine(written: CheckResult, isolated: CheckResult | None, deps: list[str], checks: dict[str, CheckResult],
            policy: str) -> CheckResult:  # fmt: skip
    """One CheckResult holding both verdicts; `points`/`status` follow the pack's scoring policy."""
    if isolated is None:  # the relay did not work out: the verdict as written stands, nobody else blamed
        return written
    failing = [d for d in deps if d in checks and _wrong_on_its_own(checks[d])]
    blamed = failing or [d for d in deps if d in checks] or deps
    helpers = _names(blamed)
    verb = "is" if len(blamed) == 1 else "are"
    if isolated.status is Status.PASSED:
        blame = f"`{written.name}` is right: with a correct {helpers} it passes. "
        if failing:
            blame += f"It fails only because your {helpers} {verb} wrong; fix {helpers} first."
        else:
            them = "it" if len(blamed) == 1 else "them"
            blame += f"It fails because your {helpers} {verb} wrong on the inputs `{written.name}` gives {them}; fix {helpers} first."
        message = blame
    else:
        blamed = failing
        mistake = verdict(isolated)["mistake"]
        named = f"; it matches the known mistake `{mistake}` (see the hint)" if mistake else ""
        blame = f"`{written.name}` is wrong on its own too (checked with a correct {helpers}){named}." if failing else ""
        message = f"{blame[:-1]}: {isolated.message}" if blame else isolated.message
    scored = isolated if policy == "isolated" else written
    out = CheckResult(**{**scored.__dict__})
    out.message = message
    out.isolated, out.as_written = verdict(isolated), verdict(written)
    out.blamed_on = blamed
    out.blame = blame
    out.scored = policy
    if policy != "isolated" and isolated.status is not Status.PASSED:
        out.kind = isolated.kind if isolated.kind == "known_mistake" else out.kind
    if out.status is Status.PASSED:
        out.hint = None
    elif out.hint is None:
        out.hint = written.hint
    return out
