"""`learn mutants`: mutants are made where the learner writes, graded by the pack's own checks, and
what a check cannot tell apart is reported - survivors, mistakes that slip on some seeds, cascade
pairs that break - with bad input answered clearly (never a hang or a traceback).

The bundled packs themselves are held to the gate (score >= 0.95, every cascade pair, every seed)
by CI's own step (`.ci/run`: `learn mutants PACK` for each), not here.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from grader.cli import cli
from grader.errors import LessonPackError
from grader.mutants import Report, gate, load_equivalent, statement_targets
from grader.mutate import NOT_APPLICABLE, find_target, hanging, mutants_of, raising, solution_lines

# ---------------------------------------------------------------------------------------------
# the operators (no kernels)

FIT = """\
def fit(params, lr=0.01, steps=10):
    "Gradient descent."
    #| begin solution
    params = params.detach().clone().requires_grad_()
    losses = []
    for _ in range(steps):
        loss = ((params - 3) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            params -= params.grad * lr
            params.grad.zero_()
        losses.append(loss.item())
    return params.detach(), losses
    #| end solution
"""


def _target(source: str, name: str, classes=()):
    return find_target([(0, source)], name, classes)


def _ops(source: str, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in mutants_of(_target(source, name)):
        out.setdefault(m.op, []).append(m.description)
    return out


def test_each_operator_family_makes_the_mistakes_people_make():
    ops = _ops(FIT, "fit")
    described = "\n".join(d for ds in ops.values() for d in ds)
    assert "`params -= params.grad * lr` -> `params += params.grad * lr`" in described  # climbs the gradient
    assert "`params.grad.zero_()` -> `(removed)`" in described  # gradients pile up
    assert "`with torch.no_grad():` -> `(only its body)`" in described
    assert "`loss.backward()` -> `(removed)`" in described
    assert "`range(steps)` -> `range(steps - 1)`" in described  # off by one
    assert "`loss.item()` -> `loss`" in described  # tensors kept instead of numbers
    assert "`params.detach().clone()` -> `params.detach()`" in described  # the caller's tensor trained
    assert {"arith", "remove", "range", "returns", "constant", "reduction"} <= set(ops)


def test_reductions_dims_comparisons_arguments_and_in_place_versions():
    source = """\
def score(a, b):
    #| begin solution
    d = (a - b).abs().mean((-1, -2))
    return torch.clip(d, min=0.0) < b.sum(dim=0)
    #| end solution
"""
    described = "\n".join(m.description for m in mutants_of(_target(source, "score")))
    assert ".sum()" in described and "`(a - b).abs().mean((-1, -2))` -> `(a - b).abs().sum((-1, -2))`" in described
    assert "`(-1, -2)` -> `(-1,)`" in described and "`dim=0` -> `dim=1`" in described
    assert "clip(d, max=0.0)" in described and "` < ` " not in described and "<=" in described
    assert "a.sub_(b)" in described  # the caller's tensor changed


def test_only_the_learners_lines_are_mutated_and_docstrings_never():
    source = """\
def f(x, scale=2):
    "Multiply by 2, then add 1."
    y = x * scale
    #| begin solution
    return y + 1
    #| end solution
"""
    target = _target(source, "f")
    assert target.lines == solution_lines(source) == frozenset({5})
    lines = {m.line for m in mutants_of(target)}
    assert lines == {5}, lines  # `y = x * scale` and the docstring are the exercise's, not the learner's


def test_ids_are_stable_and_every_mutant_compiles():
    first, again = mutants_of(_target(FIT, "fit")), mutants_of(_target(FIT, "fit"))
    assert [m.id for m in first] == [m.id for m in again]
    assert len({m.source for m in first}) == len(first)  # no duplicates, no no-ops
    for m in first:
        compile(m.source, "<mutant>", "exec")
        assert ast.unparse(ast.parse(m.source)) != ast.unparse(_target(FIT, "fit").node)


def test_a_result_type_mutant_applies_to_tensors_only():
    import torch

    source = "def f(x):\n    return x * 2\n"
    ns = {"torch": torch}
    as_list = next(m for m in mutants_of(_target(source, "f")) if "as list" in m.description)
    exec(as_list.source, ns)
    assert ns["f"](torch.ones(2)) == [2.0, 2.0]
    with pytest.raises(LookupError, match=NOT_APPLICABLE):
        ns["f"](3.0)  # a number stays a number: this mutant does not apply, and is not counted


def test_a_method_of_a_class_is_mutated_inside_its_class():
    source = textwrap.dedent("""\
        class Learner:
            def __init__(self, lr):
                self.lr = lr

            def step(self, p):
                #| begin solution
                return p - self.lr
                #| end solution
        """)
    target = _target(source, "step", classes=("Learner",))
    assert target.defines == "Learner"
    mutants = mutants_of(target)
    assert mutants and all(m.source.startswith("class Learner") for m in mutants)
    assert all("self.lr = lr" in m.source for m in mutants)


def test_the_cascade_helpers_raise_or_never_return_when_checked():
    source = "def mse(a, b):\n    return ((a - b) ** 2).mean()\n"
    ns: dict = {}
    exec(raising(_target(source, "mse")).source, ns)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        ns["mse"](1, 2)
    hang = hanging(_target(source, "mse")).source
    assert "<learn probe>" in hang and "while True" in hang
    exec(hang, ns)
    import torch

    assert float(ns["mse"](torch.tensor([3.0]), torch.tensor([1.0]))) == 4.0  # outside a check it works: the notebook runs it


def test_statements_the_learner_writes_are_targets_too():
    cells = [(0, "import torch"), (3, "#| begin solution\nlearn.fine_tune(4, base_lr=1e-2)\n#| end solution"),
             (4, "#| begin solution\ndls = make(path)\n#| end solution")]  # fmt: skip
    targets = statement_targets(cells, graded={"dls"})
    assert [t.name for t in targets] == ["cell 4: learn.fine_tune(4, base_lr=0.01)"]
    described = [m.description for m in mutants_of(targets[0])]
    assert "line 2: `learn.fine_tune(4, base_lr=0.01)` -> `(removed)`" in described
    assert any("`4` -> `5`" in d for d in described)


# ---------------------------------------------------------------------------------------------
# reviewed equivalents and the gate


def test_equivalent_entries_need_a_reason(tmp_path):
    from grader.lessons import get_lesson

    lesson = get_lesson("lesson3")
    assert load_equivalent(lesson)  # the bundled pack's reviewed file reads
    fake = type("L", (), {"root": tmp_path})()
    (tmp_path / "mutants.toml").write_text('[[equivalent]]\nfunction = "mse"\nmutant = "args:0123456789"\n')
    with pytest.raises(LessonPackError, match="needs function, mutant and reason"):
        load_equivalent(fake)
    (tmp_path / "mutants.toml").write_text("[[equivalent]\n")
    with pytest.raises(LessonPackError):
        load_equivalent(fake)


def test_the_gate_names_what_falls_short():
    report = Report("p")
    assert gate(report) == []
    report.cascade = {"pairs": 3, "held": 2, "failures": []}
    report.missed = [{"function": "f", "mistake": "m", "seeds": [4]}]
    report.probe_errors = [{"function": "f"}]
    problems = " | ".join(gate(report))
    assert "2 of 3 pairs" in problems and "slip on some seeds" in problems and "probe error" in problems


def test_bad_input_is_answered_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    result = runner.invoke(cli, ["mutants", "lessn3"])
    assert result.exit_code == 2 and "lessn3" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["mutants", "lesson3", "--only", "no_such_function", "--no-cascade", "--seeds", "1"])
    assert result.exit_code == 2 and "no graded function no_such_function" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(cli, ["mutants", str(empty)])
    assert result.exit_code == 2 and "no notebooks" in result.output


# ---------------------------------------------------------------------------------------------
# a small pack with a weak check, a helper and a caller, and mistakes that crash or exhaust memory

CHECKS = """\
import torch

from grader.checks import Case, Mistake, check


def relu_abs(x):
    return x.abs()


def relu_exits(x):
    import os

    os._exit(3)


def relu_huge(x):
    import torch

    return torch.ones(2**31) * 0 + x.sum()  # 8 GB


@check("relu", mistakes=[Mistake("abs", "You took the absolute value; negative inputs give 0.", relu_abs),
                         Mistake("exits", "It ends the process.", relu_exits),
                         Mistake("huge", "It allocates 8 GB.", relu_huge)])
def relu_cases(rng):
    yield Case.call(rng.rand(4) + 0.1, random=True, label="positive inputs")
    yield Case.call(rng.randn(2), random=True, label="two inputs of any sign")  # both positive on some seeds


@check("twice")
def twice_cases(rng):
    yield Case.call(torch.tensor([-1.0, 2.0, 0.5]), label="three inputs")
"""

MANIFEST = """\
id = "tiny"
title = "A tiny pack"
description = "relu and a caller"
order = 50
version = "1"

[defaults]
rtol = 1e-5
atol = 1e-6
cell_timeout = 30
notebook_timeout = 120
probe_timeout = 10
points = 1

[[notebooks]]
file = "tiny.ipynb"
title = "Tiny"

[checks.relu]
notebook = "tiny.ipynb"
title = "relu"
hints = ["Negative values become 0.", "torch.clip with a lower bound", "return torch.clip(x, min=0.0)"]

[checks.twice]
notebook = "tiny.ipynb"
title = "twice"
hints = ["Use relu.", "Twice its value.", "return relu(x) * 2"]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "tiny"
    root.mkdir()
    (root / "lesson.toml").write_text(MANIFEST)
    (root / "checks.py").write_text(CHECKS)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import torch"),
        nbformat.v4.new_code_cell(
            'def relu(x):\n    "max(x, 0)"\n    #| begin solution\n    return torch.clip(x, min=0.0)\n    #| end solution'
        ),
        nbformat.v4.new_code_cell('def twice(x):\n    "2 relu(x)"\n    #| begin solution\n    return relu(x) * 2\n    #| end solution'),
        nbformat.v4.new_code_cell("twice(torch.tensor([-1.0, 1.0]))"),
    ]
    nbformat.write(nb, str(root / "tiny.ipynb"))
    return root


@pytest.fixture(scope="module")
def tiny_report(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-report") / "report.json"
    result = CliRunner().invoke(cli, ["mutants", str(tiny), "--json", str(out), "--seeds", "16", "--mutant-seeds", "2"])
    return result, json.loads(out.read_text())


@pytest.mark.slow
def test_the_report_has_every_number_ci_defends(tiny_report):
    result, data = tiny_report
    for key in ("score", "mutants", "killed", "survived", "equivalent", "functions", "cascade", "seeds"):
        assert key in data
    assert data["seeds"]["checked"] == 16
    assert {f["name"] for f in data["functions"]} == {"relu", "twice"}
    assert data["cascade"]["pairs"] == 1 and data["cascade"]["list"] == ["relu -> twice"]
    assert data["cascade"]["held"] == 1, data["cascade"]["failures"]  # twice keeps its points when relu is wrong
    assert "mutation score" in result.output and "cascade: 1 of 1" in result.output


@pytest.mark.slow
def test_a_mistake_caught_on_some_seeds_only_is_reported_with_its_seeds(tiny_report):
    result, data = tiny_report
    missed = {m["mistake"]: m["seeds"] for m in data["seeds"]["missed"]}
    assert "abs" in missed, data["seeds"]  # on those seeds both random inputs are positive: abs == relu there
    assert 0 < len(missed["abs"]) < 16
    assert result.exit_code == 1  # the gate: something slips through


@pytest.mark.slow
def test_a_mutant_that_kills_the_kernel_or_exhausts_memory_is_caught_not_a_hang(tiny_report):
    _, data = tiny_report
    relu = next(f for f in data["functions"] if f["name"] == "relu")
    assert "exits" in relu["named"] and "huge" in relu["named"]
    missed = {m["mistake"] for m in data["seeds"]["missed"]}
    assert not {"exits", "huge"} & missed  # caught (kernel died / out of memory), every seed
    assert "(the reference itself fails)" not in missed  # killed kernels are blamed on their mistake only, on all 16 seeds
    assert data["timings"]["total"] < 600


@pytest.mark.slow
def test_learn_assign_lists_what_the_checks_cannot_tell_apart(tiny, tmp_path):
    result = CliRunner().invoke(cli, ["assign", str(tiny), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "mutants: your checks catch" in result.output
    assert "relu: abs slips through on seeds 1" in result.output  # seeds 1-5: only seed 1 draws two positive inputs
    assert "the reference itself fails" not in result.output


@pytest.mark.slow
def test_an_nbgrader_assignment_is_measured_by_its_test_cells(tmp_path):
    """No checks.py there: each function in a solution cell is mutated, and a mutant is caught when
    any test cell of its notebook fails - the proof `learn assign` gives an nbgrader instructor."""
    source = Path(__file__).parent / "fixtures" / "nbgrader" / "course" / "source" / "ps_errors"
    out = tmp_path / "m.json"
    result = CliRunner().invoke(cli, ["mutants", str(source), "--json", str(out), "--seeds", "2", "--mutant-seeds", "1", "--no-cascade"])
    data = json.loads(out.read_text())
    names = {f["name"] for f in data["functions"]}
    assert {"mse", "mae"} <= names, names
    assert data["mutants"] >= 10 and data["killed"] > 0
    survivors = [s["description"] for f in data["functions"] for s in f["survived"]]
    assert any("zip(targets, preds)" in s for s in survivors)  # the tests never notice the arguments swapped
    assert result.exit_code == 1 and "cannot tell these" in result.output
