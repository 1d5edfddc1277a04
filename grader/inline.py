"""In a learner's own notebook, like Kaggle's learntools: check, hint, solution, check_all.

    from grader import check, hint, solution, check_all
    check("quad")          # in Jupyter: a compact HTML result; elsewhere: plain text
    hint("quad")           # the next hint (a nudge first), recorded like `learn hint quad`
    solution("quad")       # asks first; solution("quad", confirm=True) shows it and records that
    check_all()            # every function of this notebook; `learn check` gives the grade

In Jupyter the notebook's saved file is known (`__session__`, $JPY_SESSION_NAME): `check` then
asks this user's grading service (`grader.service`) for `learn check FILE --only NAME` - the
grader machinery, sandbox and all, kept warm, so a check after an edit answers in a fraction of a
second - or, where no service can be had, runs that command in a subprocess. Only the verdict
comes back into this kernel; no reference code or value is ever loaded here. `solution` likewise
runs `learn solution NAME --yes` and shows its text. Save the notebook first: the file is graded
as saved.

Without a known notebook file (a console, a script, `namespace=` given), `check` falls back to
the same engine run differently:

* the reference values come from a `Grader` (the solution notebook runs in a forked kernel,
  once; the values are cached on disk, so later calls are instant);
* the learner's values come from running the same probes *here*, in the running kernel, on the
  functions the learner has defined (IPython's user namespace, or the caller's globals);
* `grading.judge_check` decides, exactly as for `learn check`.

It is a convenience, not the grade: the authoritative result is `learn check`, which runs the
whole notebook from a clean kernel in the sandbox on fresh random inputs. Probes may set
globals (e.g. `x`, `y` for `quad_mse`): the notebook's top-level names and random number
generators are restored afterwards. Inside the grading sandbox the reference solutions are
not visible, so there `check()` says it is not available instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import CheckResult, Status

__all__ = ["check", "check_all", "hint", "solution", "InlineResult", "InlineText", "in_grading_sandbox", "DEFAULT_SEED"]

DEFAULT_SEED = 20240  # fixed, so the reference is computed once and then read from the cache
AUTHORITATIVE = "A quick check in your running notebook; your grade comes from `learn check`."


@dataclass
class InlineResult:
    """What `check()` returns: rich HTML in Jupyter (`_repr_html_`), plain text elsewhere."""

    name: str
    result: CheckResult | None = None
    lesson: str | None = None
    unavailable: str | None = None  # why no verdict could be given

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed

    @property
    def status(self) -> Status | None:
        return self.result.status if self.result is not None else None

    def __str__(self) -> str:
        if self.result is None:
            return f"check({self.name!r}) is not available: {self.unavailable}"
        r = self.result
        head = f"{r.name}: {r.status.value}, {r.points:g}/{r.max_points:g} points"
        lines = [head]
        if r.message:
            lines += ["  " + line for line in r.message.splitlines()]
        if r.traceback and not r.hidden:
            lines.append("  your code's traceback:")
            lines += ["    " + line for line in r.traceback[-8:]]
        if r.hint:
            lines.append(f"  hint: {r.hint}")
        lines.append(f"({AUTHORITATIVE})")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        if self.result is None:
            from html import escape

            return (
                '<div style="border:1px solid #d1d9e0;border-radius:8px;padding:8px 12px;max-width:900px">'
                f"<b><code>check({escape(repr(self.name))})</code></b> is not available: {escape(self.unavailable or '')}</div>"
            )
        from .html import render_check_fragment

        return render_check_fragment(self.result, lesson=self.lesson, note=AUTHORITATIVE)


def in_grading_sandbox() -> bool:
    """True inside a kernel that `learn check` started: its environment is built by the sandbox
    (LEARN_SANDBOX set, HOME is the kernel's private working folder)."""
    if not os.environ.get("LEARN_SANDBOX"):
        return False
    home = os.environ.get("HOME", "")
    try:
        return bool(home) and Path(home).resolve() == Path.cwd().resolve()
    except OSError:
        return True


def _caller_namespace(depth: int = 2) -> dict:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    except ImportError:
        pass
    return sys._getframe(depth).f_globals


@contextlib.contextmanager
def _restored(ns: dict):
    """Undo what probes do to the notebook: rebinding its top-level names, reseeding RNGs."""
    names = dict(ns)
    states: list[tuple[Any, Any]] = [(random.setstate, random.getstate())]
    if "numpy" in sys.modules:
        np_random = sys.modules["numpy"].random
        states.append((np_random.set_state, np_random.get_state()))
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        states.append((torch.set_rng_state, torch.get_rng_state()))
    try:
        yield
    finally:
        for key in [k for k in ns if k not in names]:
            del ns[key]
        for key, value in names.items():
            if ns.get(key, _MISSING) is not value:
                ns[key] = value
        for setter, state in states:
            with contextlib.suppress(Exception):
                setter(state)


_MISSING = object()


def _kernel_functions() -> dict:
    """`_run_probe` with the wire format in its globals, exactly as the harness sends them."""
    from .harness import kernel_code

    scope: dict = {"__name__": "__learn__"}
    exec(compile(kernel_code(), "<learn harness>", "exec"), scope)
    return scope


def _run_learner_probes(probes: list[dict], ns: dict) -> dict[str, dict]:
    run_probe = _kernel_functions()["_run_probe"]
    return {p["id"]: run_probe(p, ns) for p in probes}


def _reference_values(p) -> dict[str, dict]:
    """The reference solution's probe values: a kernel only if they are not cached yet.

    Runs its own event loop in a worker thread: Jupyter's kernel already runs one here.
    """
    from .grading import Grader
    from .kernels import KernelPool

    class LazyPool(KernelPool):
        """Starts its zygote on first use, so a cached reference costs no process at all."""

        @contextlib.asynccontextmanager
        async def slot(self, profile=None):
            if self.root is None:
                await KernelPool.__aenter__(self)
            async with KernelPool.slot(self, profile) as s:
                yield s

    async def main():
        pool = LazyPool(size=1)
        try:
            return await Grader(pool=pool, seed=p.seed).reference(p)
        finally:
            if pool.root is not None:
                await pool.close()

    box: dict[str, Any] = {}

    def work():
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="learn-reference", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def check(name: str, *, lesson: str | None = None, seed: int | None = None, namespace: dict | None = None,
          notebook: str | Path | None = None) -> InlineResult:  # fmt: skip
    """Check one graded function of your running notebook against the reference solution.

    Returns an InlineResult: Jupyter shows it as HTML, a console as text. Unknown names raise
    UnknownCheckError listing the closest ones. The grade that counts is `learn check`.
    """
    from .helpers import find_check

    if in_grading_sandbox():  # first: in there even the lesson packs may be invisible
        return InlineResult(name, lesson=lesson,
                            unavailable="this notebook is being graded by `learn check`, where the reference solutions are not visible")  # fmt: skip
    ns = namespace if namespace is not None else _caller_namespace()
    lesson_obj, spec = find_check(name, lesson)
    path = _notebook_file(ns, notebook) if namespace is None or notebook is not None else None
    if path is not None:  # the saved file, graded elsewhere: nothing of grading is imported here
        return _show(_check_file(path, [spec.name], lesson_obj.id, seed)[0])
    from .errors import ExecutionError, LessonPackError
    from .grading import JudgeContext, judge_check
    from .plan import plan

    nb_spec = lesson_obj.notebook(spec.notebook)
    solution = lesson_obj.solution_path(nb_spec)
    if not os.access(solution, os.R_OK):
        return InlineResult(
            spec.name, lesson=lesson_obj.id, unavailable="the reference solutions are not installed here; run `learn check`"
        )
    with _restored(ns):  # case generators and probes may reseed RNGs and set globals
        # the reference of the whole notebook: one kernel run (then cached) serves every function of it
        p = plan(lesson_obj, nb_spec, DEFAULT_SEED if seed is None else seed)
        try:
            reference = _reference_values(p)
        except (LessonPackError, ExecutionError) as exc:
            return InlineResult(
                spec.name, lesson=lesson_obj.id, unavailable=f"the reference could not be computed ({exc}); run `learn check`"
            )
        learner = _run_learner_probes([q for q in p.probes(reference=False) if q["id"].startswith(spec.name + "/")], ns)
    from .execute import JobOutcome

    ctx = JudgeContext(Path("your notebook"), {}, {}, JobOutcome())
    result = judge_check(spec, p.code[spec.name], p.cases[spec.name], learner, reference, ctx)
    outcome = InlineResult(spec.name, result=result, lesson=lesson_obj.id)
    if _plain_script():
        print(outcome)
    return outcome


def _show(outcome):
    if _plain_script():
        print(outcome)
    return outcome


def _notebook_file(ns: dict, given: str | Path | None) -> Path | None:
    """The notebook this kernel runs: given, or the one Jupyter started it for (`__session__`)."""
    for candidate in (given, ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if candidate and str(candidate).endswith(".ipynb"):
            path = Path(str(candidate)).expanduser()
            for p in (path, Path.cwd() / path, Path.cwd() / path.name):
                if p.is_file():
                    return p.resolve()
    return None


def _learn_command() -> list[str]:
    script = Path(sys.executable).parent / ("learn.exe" if os.name == "nt" else "learn")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from grader.cli import main; main()"]


def _learn(*args: str, timeout: float = 900) -> tuple[int, str, str]:
    import subprocess

    try:
        done = subprocess.run([*_learn_command(), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", f"could not run learn: {exc}"
    return done.returncode, done.stdout, done.stderr


def _check_file(path: Path, names: list[str] | None, lesson: str | None, seed: int | None) -> list[InlineResult]:
    """`learn check FILE [--only NAME ...]`: asked of the grading service (a fraction of a second
    once it is warm), else run in a subprocess; one InlineResult per function."""
    from . import service

    nb = None
    if not service.disabled():
        try:
            nb = service.check([path], seed=seed, only=names, record="after", html=False).run.notebooks[0]
        except service.ServiceUnavailable as exc:
            service.tell_once(lambda line: print(f"learn: {line}", file=sys.stderr), exc)
    if nb is None:
        nb = _check_file_in_subprocess(path, names, seed)
        if isinstance(nb, str):
            return [InlineResult(n, lesson=lesson, unavailable=nb) for n in (names or ["(notebook)"])]
    if nb.error and not nb.checks:
        return [InlineResult(n, lesson=nb.lesson, unavailable=nb.error) for n in (names or ["(notebook)"])]
    return [InlineResult(c.name, result=c, lesson=nb.lesson) for c in nb.checks]


def _check_file_in_subprocess(path: Path, names: list[str] | None, seed: int | None):
    """`learn check FILE --no-service` in a subprocess: its NotebookResult, or why there is none."""
    import json
    import tempfile

    from .results import NotebookResult

    with tempfile.TemporaryDirectory(prefix="learn-inline-") as tmp:
        out = Path(tmp) / "result.json"
        args = ["check", str(path), "--json", str(out), "--no-html", "--no-service"]
        for n in names or []:
            args += ["--only", n]
        if seed is not None:
            args += ["--seed", str(seed)]
        code, stdout, stderr = _learn(*args)
        try:
            return NotebookResult.from_dict(json.loads(out.read_text())["notebooks"][0])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            why = (stderr or stdout).strip().splitlines()[-1:] or [f"learn check exited with status {code}"]
            return why[0]


@dataclass
class InlineText:
    """Text for the notebook (a hint, a question, a solution): HTML in Jupyter, plain elsewhere."""

    title: str
    body: str
    code: bool = False
    note: str = ""

    def __str__(self) -> str:
        lines = [self.title, *("  " + line for line in self.body.splitlines())]
        return "\n".join(lines + ([f"({self.note})"] if self.note else []))

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from html import escape

        body = f"<pre><code>{escape(self.body)}</code></pre>" if self.code else f"<p>{escape(self.body)}</p>"
        note = f'<p style="color:#59636e">{escape(self.note)}</p>' if self.note else ""
        return (
            '<div class="learn-inline" style="border:1px solid #d1d9e0;border-radius:8px;padding:8px 12px;max-width:900px">'
            f"<b>{escape(self.title)}</b>{body}{note}</div>"
        )


def hint(name: str, *, lesson: str | None = None) -> InlineText:
    """The next hint for a graded function (a nudge first, the specific fix last), recorded in
    your progress history exactly like `learn hint NAME`."""
    from .helpers import next_hint

    if in_grading_sandbox():  # `learn check` runs this cell too: a note, never an error that costs a grade
        return _show(InlineText(f"hint({name!r})", "Hints are not shown while `learn check` grades this notebook.",
                                note="run the cell in Jupyter to see it"))  # fmt: skip
    h = next_hint(name, lesson)
    if h is None:
        return _show(InlineText(f"No hints for {name}", "Re-read the notebook's instructions, or run check() for details."))
    more = f'hint("{h.name}") again for the next one' if not h.last else f'that was the last hint; solution("{h.name}") shows the reference'
    return _show(InlineText(f"Hint {h.number} of {h.total} for {h.name}", h.text, note=more))


def solution(name: str, *, lesson: str | None = None, confirm: bool = False) -> InlineText:
    """The reference solution of one graded function - only after you confirm, and recorded in
    your progress history that you looked (it runs `learn solution NAME --yes`)."""
    from .helpers import find_check

    if in_grading_sandbox():  # `learn check` runs this cell too: a note, never an error (and never the solution)
        return _show(InlineText(f"solution({name!r})", "Solutions are not shown while `learn check` grades this notebook."))
    lesson_obj, spec = find_check(name, lesson)
    if not confirm:
        return _show(InlineText(
            f"Show the reference solution of {spec.name}?",
            f'Run solution("{spec.name}", confirm=True) to see it; the view is recorded in your progress. '
            f'hint("{spec.name}") gives a smaller nudge first.',
        ))  # fmt: skip
    code, stdout, stderr = _learn("solution", spec.name, "--lesson", lesson_obj.id, "--yes", timeout=120)
    if code != 0:
        return _show(InlineText(f"No solution shown for {spec.name}", (stderr or stdout).strip() or f"learn exited with status {code}"))
    lines = stdout.splitlines()
    body = "\n".join(lines[1:] if lines and lines[0].startswith("Reference solution") else lines)
    return _show(InlineText(f"Reference solution of {spec.name} ({lesson_obj.id})", body.strip("\n"), code=True,
                            note="recorded in your progress history"))  # fmt: skip


@dataclass
class InlineAll:
    """What `check_all()` returns: one line per function, and where the grade comes from."""

    results: list[InlineResult]
    note: str = "This is a quick check of the saved notebook; `learn check` gives the grade."

    def __str__(self) -> str:
        return "\n\n".join([*(str(r) for r in self.results), self.note])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from html import escape

        parts = [r._repr_html_() for r in self.results]
        return "".join(parts) + f"<p><b>{escape(self.note)}</b></p>"


def check_all(*, notebook: str | Path | None = None, seed: int | None = None) -> InlineAll:
    """Check every graded function of this (saved) notebook with `learn check` in a subprocess."""
    if in_grading_sandbox():
        return _show(InlineAll([InlineResult("(notebook)", unavailable="this notebook is being graded by `learn check`")]))
    ns = _caller_namespace()
    path = _notebook_file(ns, notebook) or _running_notebook(ns)
    if path is None:
        return _show(InlineAll([InlineResult("(notebook)", unavailable="cannot tell which notebook file this is: pass notebook=")]))
    return _show(InlineAll(_check_file(path, None, None, seed)))


def _running_notebook(ns: dict) -> Path | None:
    """The notebook a kernel without a Jupyter session runs (`jupyter nbconvert --execute` starts it in the
    notebook's folder): the one notebook there holding the cell being run now."""
    history = ns.get("In") or ns.get("_ih") or []
    current = str(history[-1]).strip() if history else ""
    if not current:
        return None
    import json

    found = []
    for candidate in sorted(Path.cwd().glob("*.ipynb")):
        try:
            cells = json.loads(candidate.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError, AttributeError):
            continue
        sources = ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else str(c.get("source", "")) for c in cells]
        if any(src.strip() == current for src in sources):
            found.append(candidate.resolve())
    return found[0] if len(found) == 1 else None


def _plain_script() -> bool:
    """Running as a plain script (no IPython, no interactive prompt): nothing would show the result."""
    if "IPython" in sys.modules:
        try:
            if sys.modules["IPython"].get_ipython() is not None:
                return False
        except AttributeError:
            pass
    return not hasattr(sys, "ps1") and not sys.flags.interactive
