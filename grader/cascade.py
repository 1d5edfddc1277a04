"""Blame the right function: re-check a failing function with correct graded helpers.

`quad_mse` calls the learner's `mse`; when `mse` is wrong, `quad_mse` fails too although it is
right. So a failing function that calls other graded functions (`Lesson.dependencies`) is run
again, its helpers answering with the *reference's values*, and judged a second time. The two
kernels run side by side and the grader carries each call across, through files in their working
folders (a live relay: one probe run, however many calls a training loop makes):

    learner kernel                           grader                      reference kernel
    probe: fit_quad(...), helpers shimmed    carries .learn-relay/       the same probe, its setup (x, y),
      quad_mse(p0) -> req-1.json  ─────────► req-N / ans-N files ──────►   then serves: quad_mse(p0)
      waits for ans-1.json       ◄─────────  (checked: only the   ◄──────  -> value and d value / d p0
      ... the next step, the next request     probe's helpers)             until the grader writes `done`

Trust boundary: the reference's code and objects never reach the learner's kernel. Its shims
receive plain values (and Jacobians, so `loss.backward()` through a shim gives the reference's
gradient) for the inputs the learner's own code passed; nothing else. What a learner can observe
this way is the reference helper's outputs for inputs of their choosing - no more than calling
a correct `mse` of their own would give. A helper that returns a function (`mk_quad`) is answered
with a stand-in function whose calls are relayed in turn; one that returns nothing (it runs for
its side effects) is answered by the learner's own helper. A request naming anything but the
probe's graded helpers is refused.

Machinery trouble (a reference that cannot answer, a channel that breaks) never blames the
learner: the function keeps its verdict as written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .results import CheckResult, Status

if TYPE_CHECKING:
    from .kernels import KernelPool
    from .plan import Plan

__all__ = ["RELAY_DIR", "targets", "relay", "combine", "verdict"]


def targets(p: Plan, checks: dict[str, CheckResult]) -> dict[str, list[str]]:
    """Failing checks of this plan that call other graded functions -> those functions."""
    deps = p.lesson.dependencies(p.spec)
    out = {}
    for spec in p.checks:
        result = checks.get(spec.name)
        if result is None or result.status in (Status.PASSED, Status.SKIPPED) or result.kind in ("missing", "not_callable"):
            continue
        if result.kind == "timeout":  # its own code never returned: judged once, not run again with correct helpers
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


RELAY_DIR = ".learn-relay"
ANSWER_LIMIT = 64 * 2**20  # bytes of one relayed request or answer


def _isolated_probes(p: Plan, wanted: dict[str, list[str]]) -> dict[str, dict]:
    from .plan import probe_spec

    probes = {}
    for name, deps in wanted.items():
        spec = next(s for s in p.checks if s.name == name)
        for pc in p.cases[name]:
            probe = probe_spec(pc, p.code[name], spec)
            probe["requires"] = [n for n in probe["requires"] if n not in deps]
            probe["isolate"] = {"deps": deps, "live": RELAY_DIR}
            probes[pc.id] = probe
    return probes


def _fresh_folder(session) -> Path:
    """The relay folder in a kernel's working directory, empty, writable by the kernel's uid."""
    folder = session.workdir / RELAY_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    if session.uid is not None and os.geteuid() == 0:
        os.chown(folder, session.uid, -1)
    return folder


def _take(path: Path) -> str | None:
    """A file the (untrusted) learner kernel wrote, read without following links; None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with open(fd, "rb") as f:
        data = f.read(ANSWER_LIMIT + 1)
    with contextlib.suppress(OSError):
        path.unlink()
    return data.decode("utf-8", "replace") if len(data) <= ANSWER_LIMIT else ""


def _put(folder: Path, name: str, text: str) -> None:
    """Write a file into a kernel's folder: a new file renamed into place (never through a link
    the kernel planted)."""
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with open(fd, "w") as f:
        f.write(text)
    os.replace(tmp, folder / name)


def _valid_request(text: str | None, deps: list[str]) -> bool:
    try:
        request = json.loads(text or "")
    except ValueError:
        return False
    return isinstance(request, dict) and request.get("name") in deps and isinstance(request.get("stages"), list)


def _numbered(folder: Path, prefix: str) -> list[str]:
    """Names of finished relay files in a kernel's folder (temporary files start with a dot)."""
    try:
        return sorted(n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".json"))
    except OSError:
        return []


async def _live_case(learner, reference, probe: dict, target: str) -> dict:
    """Run one isolated case: the learner's probe asks for helper values through files, which are
    carried to the reference kernel (answering in the same probe's setting) and back; call-backs
    (the reference calling a model the learner's code passed) travel the other way."""
    deps, timeout = probe["isolate"]["deps"], float(probe.get("timeout") or 10)
    here, there = _fresh_folder(learner), _fresh_folder(reference)
    ask = {k: v for k, v in probe.items() if k != "isolate"}
    ask.update(requires=[], callables=[], timeout=timeout + 10, respond={"target": target, "live": RELAY_DIR, "requests": []})
    answering = asyncio.ensure_future(reference.probe([ask], budget=timeout + 30))
    asking = asyncio.ensure_future(learner.probe([probe], budget=timeout + 15))
    outstanding: set[str] = set()  # request numbers carried to the reference and not answered yet
    try:
        while not asking.done():
            moved = False
            for name in _numbered(here, "req-"):  # learner -> reference: requests
                request = _take(here / name)
                if request is None:
                    continue
                moved = True
                number = name[4:-5]
                if _valid_request(request, deps):
                    outstanding.add(number)
                    _put(there, name, request)
                else:  # not a request the shims make: nothing is forwarded
                    _put(here, f"ans-{number}.json", json.dumps({"error": "an invalid relay request"}))
            for name in _numbered(here, "cbans-"):  # learner -> reference: what a call-back returned
                text = _take(here / name)
                if text is not None:
                    moved = True
                    _put(there, name, text)
            for name in _numbered(there, "cb-") + _numbered(there, "ans-"):  # reference -> learner
                text = _take(there / name)
                if text is not None:
                    moved = True
                    outstanding.discard(name[4:-5] if name.startswith("ans-") else "")
                    _put(here, name, text)
            if answering.done() and outstanding:
                for number in sorted(outstanding):
                    _put(here, f"ans-{number}.json", json.dumps({"error": "the reference kernel stopped answering"}))
                outstanding.clear()
                moved = True
            await asyncio.sleep(0 if moved else 0.001)
        (there / "done").touch()
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(answering, timeout + 30)
        return asking.result().get(probe["id"], {"status": "lost"})
    finally:
        for task in (asking, answering):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


async def relay(pool: KernelPool, relay_pool: KernelPool, learner_job, reference_job, p: Plan,
                wanted: dict[str, list[str]], learner=None) -> tuple[dict[str, dict], object]:  # fmt: skip
    """(raw probe results of the wanted checks' cases run with reference-valued helpers, the
    learner kernel's JobOutcome). A case whose relay failed gets {"status": "relay_failed"}.
    `learner`: the session of the kernel that ran the learner's notebook, if it is still up (its
    notebook is not run again); else one is started for `learner_job`."""
    from .execute import open_session

    probes = _isolated_probes(p, wanted)
    owner = {pc.id: name for name in wanted for pc in p.cases[name]}
    final: dict[str, dict] = {}
    async with contextlib.AsyncExitStack() as stack:
        if learner is None:
            learner, reference = await asyncio.gather(
                stack.enter_async_context(open_session(pool, learner_job)),
                stack.enter_async_context(open_session(relay_pool, reference_job)),
            )
        else:
            reference = await stack.enter_async_context(open_session(relay_pool, reference_job))
        for pid, probe in probes.items():
            final[pid] = await _live_case(learner, reference, probe, owner[pid])
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
