"""How a lesson pack says what to run against each graded function (used in a pack's checks.py).

    from grader.checks import Case, Mistake, check

    @check("mse", mistakes=[Mistake("sum", "You summed the squared errors; take their mean.", mse_sum)])
    def mse_cases(rng):
        yield Case.call(torch.tensor([1., 2.]), torch.tensor([1., 4.]))          # fixed input
        for _ in range(3):
            yield Case.call(rng.randn(10), rng.randn(10), random=True)          # seeded random input

A `Case` is one call. By default it calls the function named by the check with `args`; a
`probe` - a plain function `probe(ns, *args, **kwargs)` written in checks.py - can exercise
behaviour instead (call a returned closure, step an optimiser, count Python lines executed).
Probes and mistakes run *inside kernels*: their source is sent there, so they must be
self-contained (import what they use inside the function). Inputs are built here, in the
grader, from the run's seed, and sent in the safe wire format.

The same probe runs against the reference solution's kernel; by default the learner's value
must match the reference's (`compare`). A `judge` decides otherwise, in the grader's process:
`judge(got, expected, tol) -> Verdict`.

A `Mistake` names a classic wrong answer: the reference kernel also runs each case with the
function replaced by the mistaken version, and a learner whose output matches it gets the
mistake's specific explanation instead of a bare numeric diff. A judge of behaviour (no single
reference value to match) names a misconception itself: `Verdict(False, why, mistake="name")`.
"""

from __future__ import annotations

import hashlib
import inspect
import random
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .compare import Tolerance, Verdict, compare

if TYPE_CHECKING:
    import torch

    Judge = Callable[[Any, Any, Tolerance], Verdict]
    """`judge(got, expected, tol) -> Verdict`: decides a case in the grader's process."""

__all__ = [
    "Case",
    "Check",
    "Mistake",
    "CaseRng",
    "check",
    "explained",
    "vectorised",
    "loop_case",
    "count_lines_probe",
    "refuses",
    "must_refuse",
    "line_plot",
    "probe_source",
    "Tolerance",
    "Verdict",
    "compare",
]


def probe_source(fn: Callable) -> tuple[str, str]:
    """Source text and entry name of a function to be sent into a kernel.

    Args:
        fn: a plain module-level function of checks.py (a probe or a mistake's implementation).

    Returns:
        `(source, name)`: its dedented source and its name, which the kernel executes and calls.
    """
    return textwrap.dedent(inspect.getsource(fn)), fn.__name__


class Mistake:
    """A known wrong answer, named, with the explanation a learner who made it gets.

    The reference solution's kernel runs every case a second time with the function replaced by
    `impl` (and other notebook names by `replace`); a learner's value that matches the mistaken
    one gets `message` instead of a bare numeric diff, and the result records `mistake=name`.

    Args:
        name: a short identifier (`"no_bias"`), shown in results, JSON and the dashboard.
        message: what went wrong and how to fix it, in the course's words.
        impl: the mistaken version of the checked function. Like a probe, it runs in a kernel:
            a module-level function that imports what it uses inside (it may use the notebook's
            names, e.g. `torch` or another graded function).
        replace: other notebook names mapped to mistaken versions (a mistake in a helper that
            shows in the checked function).

    Example:
        ```python
        def mse_sum(preds, acts):
            return ((preds - acts) ** 2).sum()

        Mistake("sum", "You summed the squared errors; take their mean.", mse_sum)
        ```
    """

    def __init__(self, name: str, message: str, impl: Callable | None = None, *, replace: dict[str, Callable] | None = None) -> None:
        self.name, self.message = name, message
        self.replace: dict[str, Callable] = dict(replace or {})
        if impl is not None:
            self.replace["__check__"] = impl

    def bound_to(self, function_name: str) -> Mistake:
        """This mistake with `impl` attached to the name of the check it belongs to (`check` does this)."""
        replace = dict(self.replace)
        if "__check__" in replace:
            replace[function_name] = replace.pop("__check__")
        return Mistake(self.name, self.message, replace=replace)

    def wire(self) -> list[dict[str, str]]:
        """What is sent to the kernel: per replaced name, the implementation's source and entry name."""
        out = []
        for target, impl in self.replace.items():
            source, name = probe_source(impl)
            out.append({"target": target, "source": source, "name": name})
        return out


@dataclass
class Case:
    """One call of the graded function (or one behaviour probe), made in the learner's kernel and
    in the reference's, with the results compared in the grader.

    Build one with [`Case.call`][grader.checks.Case.call]; its keyword arguments named like the
    fields below configure the case, all others are passed to the function.

    Attributes:
        args: positional arguments of the call: numbers, strings, containers, tensors, arrays.
        kwargs: keyword arguments of the call.
        label: how the case is named in results (default: "fixed input N" / "random input N").
        random: True for inputs drawn from the run's seed; they change with `--seed`.
        probe: instead of calling the function, run `probe(ns, *args, **kwargs)` in the kernel,
            where `ns` is the notebook's namespace; its return value is compared.
        judge: decide the case with `judge(got, expected, tol) -> Verdict` in the grader instead
            of comparing with the reference (default: [`compare`][grader.checks.compare]).
        tol: the tolerance of this case (default: the check's `rtol`/`atol` from lesson.toml).
        seed: seed torch, numpy and random in the kernel just before the call.
        weight: the case's share of the check's points when partial credit is on.
        timeout: seconds the call may take (default: the check's `probe_timeout`).
        reference: False when the judge needs no reference value (an accuracy bar, a test cell):
            the reference kernel does not run the case.
        show: how the call is shown to the learner (default: the call itself).
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str | None = None
    random: bool = False
    probe: Callable | None = None
    judge: Callable[[Any, Any, Tolerance], Verdict] | None = None
    tol: Tolerance | None = None
    seed: int | None = None  # seed torch/numpy/random in the kernel just before the probe
    weight: float = 1.0
    timeout: float | None = None
    reference: bool = True  # False: the judge needs no reference value (e.g. an accuracy bar)
    show: str | None = None  # how the call is shown to the learner; default: the call itself

    @classmethod
    def call(cls, *args: Any, **kwargs: Any) -> Case:
        """A call of the checked function with these arguments.

        Keyword arguments named like a field of `Case` (`label`, `random`, `probe`, `judge`,
        `tol`, `seed`, `weight`, `timeout`, `reference`, `show`) configure the case; the others
        are keyword arguments of the call.

        Example:
            ```python
            yield Case.call(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))        # fixed input
            yield Case.call(rng.randn(20), rng.randn(20), random=True)                # from the seed
            yield Case.call(x, probe=probe_fit, judge=judge_fit, label="training")    # behaviour
            ```
        """
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in _CASE_OPTIONS}
        return cls(args=args, kwargs=kwargs, **options)


_CASE_OPTIONS = {"label", "random", "probe", "judge", "tol", "seed", "weight", "timeout", "reference", "show"}


class CaseRng:
    """Seeded random inputs for cases; the same seed always builds the same inputs.

    A check's case generator receives one (`rng`), seeded from the run's seed and the check's
    name, so every check draws its own stream and `--seed` reproduces all of them.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._torch = None
        self.py = random.Random(seed)

    @property
    def torch(self) -> torch.Generator:
        """The seeded torch generator, made at first use (test-cell checks never need torch)."""
        if self._torch is None:
            import torch

            self._torch = torch.Generator().manual_seed(self.seed)
        return self._torch

    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        """Normal values (mean 0, standard deviation `scale`) of this shape: both signs."""
        import torch

        return torch.randn(*shape, generator=self.torch) * scale

    def rand(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """Uniform values in `[low, high)` of this shape."""
        import torch

        return torch.rand(*shape, generator=self.torch) * (high - low) + low

    def uniform(self, low: float, high: float, digits: int = 3) -> float:
        """A float in `[low, high]`, rounded to `digits` decimals (it reads well in feedback)."""
        return round(self.py.uniform(low, high), digits)

    def randint(self, low: int, high: int) -> int:
        """An int in `[low, high]`, both ends included (Python's `random.randint`)."""
        return self.py.randint(low, high)

    def choice(self, seq: Any) -> Any:
        """One element of the sequence `seq`."""
        return self.py.choice(seq)


@dataclass
class Check:
    """What to run for one graded name of a lesson manifest; made by the [`check`][grader.checks.check] decorator.

    Attributes:
        name: the graded name: a `[checks.NAME]` table of lesson.toml.
        cases: the case generator, `cases(rng) -> Iterable[Case]`.
        requires: the notebook names the check needs defined (default: `name` itself).
        callables: those of them that must be callable (default: `requires`).
        mistakes: the named mistakes, bound to `name`.
        series: `series(got values, expected values, cases) -> plot data` for the HTML report
            (see [`line_plot`][grader.checks.line_plot]).
    """

    name: str
    cases: Callable[[CaseRng], Iterable[Case]]
    requires: tuple[str, ...] | None = None
    callables: tuple[str, ...] | None = None
    mistakes: list[Mistake] = field(default_factory=list)
    series: Callable[[list, list, list], dict] | None = None  # (got values, expected values, cases) -> plot data
    changes_inputs: bool = False  # True: the function may change the tensors it is given (else that fails the case)

    def required_names(self) -> list[str]:
        """The notebook names this check needs defined."""
        return list(self.requires if self.requires is not None else (self.name,))

    def callable_names(self) -> list[str]:
        """The notebook names that must be callable."""
        return list(self.callables if self.callables is not None else self.required_names())

    def build_cases(self, seed: int) -> list[Case]:
        """The cases for a run: fixed ones plus random ones drawn from a per-check seed."""
        digest = hashlib.sha256(f"{seed}:{self.name}".encode()).digest()
        rng = CaseRng(int.from_bytes(digest[:6], "big"))
        cases = list(self.cases(rng))
        if not cases:
            raise ValueError(f"check {self.name!r} produced no cases")
        return cases


def explained(messages: dict[str, str], base: Judge | None = None) -> Judge:
    """A judge like `compare` whose failures at given paths get a plain-words explanation.

    Use it with a probe that returns a dict of observations: a difference found at one of the
    paths gets that sentence before the diff.

    Args:
        messages: the path of a difference in the returned value (as the diff names it, e.g.
            `"['input_unchanged']"`) mapped to the sentence to show.
        base: the judge to explain (default: [`compare`][grader.checks.compare]).

    Example:
        ```python
        judge = explained({"['input_unchanged']": "work on a copy of params"})
        yield Case.call(params, probe=probe_fit, judge=judge)
        ```
    """
    inner = base or compare

    def judge(got, expected, tol):
        verdict = inner(got, expected, tol)
        if not verdict.ok and verdict.diff is not None and verdict.diff.path in messages:
            verdict.message = messages[verdict.diff.path] + "\n" + verdict.message
        return verdict

    return judge


def count_lines_probe(ns, name, small, big, setup=None):
    """Probe (runs in the kernel): call `ns[name]` on a small and on a big input, counting the Python
    lines each call runs. `small`/`big` are argument tuples; `setup` sets notebook globals first.

    Returns `{"value": ..., "lines_small": int, "lines_big": int}` for [`vectorised`][grader.checks.vectorised]
    to judge; [`loop_case`][grader.checks.loop_case] builds the case.
    """
    if setup:
        ns.update(setup)
    fn = ns[name]
    value, n_small = tools.count_lines(fn, *small)  # noqa: F821 - `tools` is given to every probe
    _, n_big = tools.count_lines(fn, *big)  # noqa: F821
    return {"value": value, "lines_small": n_small, "lines_big": n_big}


def vectorised(advice: str = "", what: str = "inputs", slack: float = 3.0) -> Judge:
    """Judge for array code: values as the reference, a wrong shape explained with `advice`, and -
    on a `count_lines_probe` result - no Python loop: the lines run must not grow with the input.

    A vectorised function runs the same handful of lines for 2 images or 200; a loop over the
    batch runs more for more.

    Args:
        advice: how to fix it ("use broadcasting: a[:, None] - b[None]"), shown with a wrong
            shape and with a loop.
        what: what the inputs are, in the message ("images").
        slack: how much growth is tolerated (a tensor op may branch): the big input may run up
            to `slack * small + 10` lines.
    """

    def judge(got, expected, tol):
        import torch

        from .compare import fmt_shape

        lines = None
        if type(expected) is dict and "lines_small" in expected:
            if type(got) is not dict or "value" not in got:
                return compare(got, expected, tol)
            lines = got.get("lines_small"), got.get("lines_big")
            got, expected = got["value"], expected["value"]
        if advice and type(got) is torch.Tensor and type(expected) is torch.Tensor and got.shape != expected.shape:
            message = f"returned shape {fmt_shape(got.shape)} where {fmt_shape(expected.shape)} was expected: {advice}"
            return Verdict(False, message, kind="shape")
        verdict = compare(got, expected, tol)
        if not verdict.ok or lines is None:
            return verdict
        small, big = lines
        if type(small) is int and type(big) is int and big > slack * small + 10:
            fix = f" To fix it: {advice}." if advice else ""
            return Verdict(
                False,
                "the values are right, but your function runs a Python loop where broadcasting should do the work: "
                f"it ran {small} lines of Python for small {what} and {big} for larger ones.{fix}",
                kind="python_loop",
            )
        return Verdict.passed()

    return judge


def loop_case(name: str, small: tuple, big: tuple, *, advice: str = "", what: str = "inputs", slack: float = 3.0,
              setup: dict | None = None, **options: Any) -> Case:  # fmt: skip
    """A case that fails a correct-valued function which loops in Python over its input.

    Args:
        name: the graded function.
        small: the arguments of a small call.
        big: the arguments of a big call (more rows, more units).
        advice: how to fix a loop (see [`vectorised`][grader.checks.vectorised]).
        what: what the inputs are, in the message.
        slack: how much growth in lines run is tolerated.
        setup: notebook globals to set before the calls.
        **options: further `Case` fields (`label`, `random`, ...).

    Example:
        ```python
        yield loop_case("relu_model", (x, params_2), (x, params_50), advice="no loop over the units", random=True)
        ```
    """
    return Case.call(name, tuple(small), tuple(big), setup, probe=count_lines_probe, judge=vectorised(advice, what, slack), **options)


def refusal_probe(ns, name, args, kwargs):
    """Probe (runs in the kernel): call ns[name] with inputs it must refuse; what happened."""
    try:
        value = ns[name](*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)[:200]}
    shape = getattr(value, "shape", None)
    return {"returned": type(value).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")}


def must_refuse(why: str) -> Callable:
    """Judge of a `refuses` case: any exception passes; returning a value fails with `why`."""

    def judge(got, expected, tol):
        if type(got) is dict and type(got.get("raised")) is str:
            return Verdict.passed()
        returned = got.get("returned") if type(got) is dict else None
        return Verdict(
            False, f"{why} It returned {returned or 'a value'} instead of raising an error.", kind="no_refusal", mistake="no_refusal"
        )

    return judge


def refuses(name: str, *args, why: str, **options) -> Case:
    """A case the function must refuse (raise any exception): inputs the text says are invalid.
    `why` is what the learner reads when it returns a value instead."""
    kwargs = {k: options.pop(k) for k in list(options) if k not in _CASE_OPTIONS}
    return Case.call(name, tuple(args), kwargs, probe=refusal_probe, judge=must_refuse(why), reference=False, **options)


def line_plot(title: str, x: Any, lines: dict[str, Any], points: tuple | None = None, xlabel: str = "", ylabel: str = "") -> dict:
    """Plot data for the HTML report: named lines over x, optionally with scattered data points.

    Return it from a check's `series` function to draw the learner's result next to the
    reference's (the report of `learn check` draws it as an inline SVG chart).

    Args:
        title: the chart's title.
        x: the x values (a list or a tensor).
        lines: a name per line ("yours", "reference") mapped to its y values; `None` lines are left out.
        points: optional `(xs, ys)` drawn as dots (the data a curve was fitted to).
        xlabel: the x axis label.
        ylabel: the y axis label.
    """

    def floats(values):
        import torch

        if values is None:
            return None
        if isinstance(values, torch.Tensor):
            values = values.detach().flatten().tolist()
        return [float(v) for v in values]

    return {
        "kind": "line",
        "title": title,
        "x": floats(x),
        "lines": {k: floats(v) for k, v in lines.items() if v is not None},
        "points": [floats(points[0]), floats(points[1])] if points else None,
        "xlabel": xlabel,
        "ylabel": ylabel,
    }


def check(
    name: str,
    *,
    requires: Iterable[str] | None = None,
    callables: Iterable[str] | None = None,
    mistakes: Iterable[Mistake] = (),
    series: Callable[[list, list, list], dict] | None = None,
    changes_inputs: bool = False,
) -> Callable[[Callable[[CaseRng], Iterable[Case]]], Check]:
    """Decorator: turn a case generator `fn(rng)` into the Check for manifest entry `name`.

    Args:
        name: the graded name: a `[checks.NAME]` table of lesson.toml (every table needs one
            `@check`, and every `@check` a table).
        requires: notebook names the check needs defined (default: `name`); a check of a class
            or of several functions lists them.
        callables: those of `requires` that must be callable (default: all of them).
        mistakes: the named mistakes of this function ([`Mistake`][grader.checks.Mistake]).
        series: `series(got values, expected values, cases) -> plot data` for the report.
        changes_inputs: every call is watched for changes to the tensors it is given; a function
            that changes its inputs in place (`x.mul_(m)`, `amounts[mask] = ...` without a copy)
            fails the case, unless this is True (an optimiser's step, say).

    Example:
        ```python
        @check("mse", mistakes=[Mistake("sum", "You summed the squared errors; take their mean.", mse_sum)])
        def mse_cases(rng):
            yield Case.call(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 4.0, 0.0]))
            yield Case.call(rng.randn(20), rng.randn(20), random=True)
        ```
    """

    def wrap(fn: Callable[[CaseRng], Iterable[Case]]) -> Check:
        return Check(
            name=name,
            cases=fn,
            requires=tuple(requires) if requires is not None else None,
            callables=tuple(callables) if callables is not None else None,
            mistakes=[m.bound_to(name) for m in mistakes],
            series=series,
            changes_inputs=changes_inputs,
        )

    return wrap
