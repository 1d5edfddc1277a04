"""`learn new PACK`: a lesson pack that works before its author has written a line.

    learn new mypack --dir mypack
        mypack/lesson.toml     the manifest: one notebook, one graded function, points, tolerances, hints
        mypack/checks.py       how the function is exercised: a fixed case, seeded random cases,
                               a behaviour probe (inputs left unchanged) and a named mistake
        mypack/mypack.ipynb    the solution notebook; `#| begin solution` / `#| end solution` mark
                               what the student version replaces with a stub

    learn assign mypack        the self-test: every check passes on the solution and fails on the stub

The example function is an affine map, `x @ w + b`. Its cases are chosen so that plausible wrong
versions of it fail: shapes that differ on every axis (a transposed or swapped operand cannot
broadcast its way through), values of both signs, a float64 or list result (dtype and type are
compared), a forgotten bias (the named mistake) and a function that changes its inputs (the probe).
The pack is data: nothing in `grader/` changes when an author replaces the example with a lesson.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .errors import LearnError
from .lessons import MANIFEST, Lesson, all_lessons, load_lesson

__all__ = ["Scaffold", "new_pack"]

FUNCTION = "affine"


@dataclass
class Scaffold:
    """What `new_pack` wrote: the pack folder, its files, and the loaded (validated) lesson."""

    lesson: Lesson
    root: Path
    files: list[Path]


def _manifest(pack: str, title: str, notebook: str) -> str:
    return textwrap.dedent(
        f'''\
        # The manifest of lesson pack {pack}: notebooks, graded functions, points, tolerances, time
        # limits and hints. How each function is exercised (inputs, behaviour, named mistakes) is in
        # checks.py next to this file. Reference: the "Authoring packs" pages of the documentation.

        id = "{pack}"
        title = "{title}"
        description = "A batch through a linear layer: the affine map x @ w + b."
        order = 100
        version = "1"

        [defaults]
        rtol = 1e-5          # values are compared like torch.testing.assert_close
        atol = 1e-6
        cell_timeout = 60    # seconds per notebook cell
        notebook_timeout = 300
        points = 1

        [[notebooks]]
        file = "{notebook}"
        title = "An affine map"

        [checks.{FUNCTION}]
        notebook = "{notebook}"
        title = "{FUNCTION}: a batch through a linear layer"
        points = 2
        hints = [
            "Each output row is one input row combined with the weights, plus the same bias for every row.",
            "(n, k) @ (k, m) gives (n, m); adding b of shape (m,) broadcasts it over the n rows.",
        ]
        '''
    )


_CHECKS = '''\
"""How the graded functions of {pack} are exercised (the checks API: grader.checks).

Each @check names a graded function of lesson.toml and yields Cases. A case is a call: the grader
builds its inputs here, from the run's seed, sends them to the learner's kernel and to the
reference solution's kernel, and compares what comes back - in the grader's own process.
Probe and mistake functions are sent into kernels as source: they import what they use inside.
"""

import torch

from grader.checks import Case, Mistake, check, explained


def affine_without_bias(x, w, b):
    """The named mistake: a learner whose output matches this is told what they forgot."""
    return x @ w


def probe_inputs_unchanged(ns, x, w, b):
    """Runs in the kernel: call affine on copies of the inputs, report its value and whether it changed them."""
    import torch

    args = [t.clone() for t in (x, w, b)]
    value = ns["affine"](*args)
    return {{"value": value, "inputs_unchanged": all(torch.equal(a, t) for a, t in zip(args, (x, w, b)))}}


NO_BIAS = Mistake("no_bias", "You left out the bias: add b to every row of the matrix product.", affine_without_bias)
CHANGED_INPUT = explained({{"['inputs_unchanged']": "affine changed a tensor it was given; compute a new tensor instead."}})


@check("affine", mistakes=[NO_BIAS])
def affine_cases(rng):
    # a fixed case, shown to the learner as written: not square, values of both signs
    x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0]])
    yield Case.call(x, w, torch.tensor([0.5, -0.5]))
    # random cases from the run's seed (printed with every result; --seed repeats it): every axis a
    # different length, so a transposed or swapped operand fails instead of broadcasting through
    for n, k, m in [(1, 4, 2), (5, 3, 7), (rng.randint(2, 6), 8, rng.randint(9, 12))]:
        yield Case.call(rng.randn(n, k), rng.randn(k, m), rng.randn(m), random=True)
    # behaviour: the caller's tensors are left as they were
    yield Case.call(rng.randn(3, 4), rng.randn(4, 2), rng.randn(2), random=True, label="inputs unchanged",
                    probe=probe_inputs_unchanged, judge=CHANGED_INPUT)  # fmt: skip
'''

_FUNCTION_CELL = """\
def affine(x, w, b):
    "The batch x (n, k) times the weights w (k, m), plus the bias b (m,): an (n, m) tensor."
    #| begin solution
    return x @ w + b
    #| end solution"""

_TRY_CELL = """\
x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0]])
b = torch.tensor([0.5, -0.5])
affine(x, w, b)"""


def _notebook(pack: str, title: str, notebook: str) -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(
        cells=[
            md(
                f"# {title}\n\nA linear layer sends a batch of inputs through one matrix product and adds a bias. "
                "Write it for a whole batch at once."
            ),  # fmt: skip
            code("import torch"),
            md(
                "## An affine map\n\n`x` holds `n` inputs of `k` numbers each, `w` maps `k` numbers to `m`, and `b` "
                "adds one number to each of the `m` outputs. Return the `(n, m)` result; leave the tensors you are "
                "given unchanged."
            ),  # fmt: skip
            code(_FUNCTION_CELL),
            md("Try it on a batch of two inputs:"),
            code(_TRY_CELL),
        ]
    )
    nb.metadata.update(
        {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "learn": {"kind": "solution", "lesson": pack, "notebook": notebook},
        }
    )
    for cell in nb.cells:
        cell.pop("id", None)  # stable files: generation and diffs do not depend on random cell ids
    nb.nbformat_minor = 4
    return nb


def new_pack(pack: str, dest: Path | None = None, *, title: str | None = None) -> Scaffold:
    """Write a working lesson pack named `pack` into `dest` (default ./PACK) and load it back.

    Refuses (LearnError, exit 2) a name that is not a simple identifier, the id of an installed
    lesson, and a folder that exists and is not empty: nothing is ever overwritten."""
    if not pack.isidentifier() or pack.startswith("_"):
        raise LearnError(f"a pack id must be a simple name like 'lesson5' (letters, digits, _), not {pack!r}")
    if pack in all_lessons():
        raise LearnError(f"{pack} is the id of an installed lesson; choose another id for the new pack")
    dest = Path(dest) if dest is not None else Path(pack)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise LearnError(f"{dest} already exists and is not an empty folder; choose another --dir")
    title = title or f"{pack}: an affine map"
    if '"' in title or "\\" in title or "\n" in title:
        raise LearnError("--title may not contain quotes, backslashes or line breaks")
    notebook = f"{pack}.ipynb"
    dest.mkdir(parents=True, exist_ok=True)
    files = [dest / MANIFEST, dest / "checks.py", dest / notebook]
    files[0].write_text(_manifest(pack, title, notebook), encoding="utf-8")
    files[1].write_text(_CHECKS.format(pack=pack), encoding="utf-8")
    nbformat.write(_notebook(pack, title, notebook), str(files[2]))
    lesson = load_lesson(dest, exercises_dir=dest / "exercises")
    lesson.check_code()  # checks.py imports and names exactly the manifest's checks
    return Scaffold(lesson=lesson, root=dest, files=files)
