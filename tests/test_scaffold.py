"""`learn new PACK`: a pack that passes its own self-test, whose checks fail plausible wrong
versions of its example function (the mutants `learn mutants` will make), and that refuses to
overwrite anything."""

from __future__ import annotations

import json

import pytest

from grader.cli import cli
from grader.lessons import load_lesson
from grader.scaffold import new_pack

# wrong versions of `affine`: what mutation testing makes of `return x @ w + b` (operators swapped,
# a term or a statement dropped, the result as float64 or a list, an operand transposed or the
# arguments swapped, an input changed in place), and a few a learner would write
MUTANTS = {
    "minus": "x @ w - b",
    "times": "x @ w * b",
    "divided": "x @ w / b",
    "no_bias": "x @ w",
    "bias_only": "b + 0 * x.sum()",
    "float64": "(x @ w + b).double()",
    "list": "(x @ w + b).tolist()",
    "transposed": "x @ w.T + b",
    "swapped": "w @ x + b",
    "elementwise": "(x * w.T.sum(0)).sum(1, keepdim=True) + b",
    "relu": "(x @ w + b).clamp(min=0)",
    "abs": "(x @ w + b).abs()",
    "mean_bias": "x @ w + b.mean()",
    "first_row": "(x[:1] @ w + b).expand(x.shape[0], -1)",
    "changes_input": "x.mul_(2) @ w / 2 + b",
    "none": "None",
}


def affine(body: str) -> str:
    return f"def affine(x, w, b):\n    return {body}"


def test_new_writes_a_valid_pack(tmp_path, runner):
    result = runner.invoke(cli, ["new", "mypack", "--dir", str(tmp_path / "mypack")])
    assert result.exit_code == 0, result.output
    assert "learn assign" in result.output
    lesson = load_lesson(tmp_path / "mypack")
    assert lesson.id == "mypack" and list(lesson.checks) == ["affine"]
    check = lesson.check_code()["affine"]
    cases = check.build_cases(1234)
    assert sum(not c.random for c in cases) >= 1 and sum(c.random for c in cases) >= 3
    assert [m.name for m in check.mistakes] == ["no_bias"]
    shapes = [tuple(a.shape) for c in cases for a in c.args[:2]]
    assert all(len(set(s)) == 2 or len(s) == 1 for s in shapes), shapes  # never square


@pytest.mark.parametrize(
    "args, message",
    [
        (["new", "1pack"], "simple name"),
        (["new", "lesson3"], "installed lesson"),
        (["new", "ok", "--title", 'say "hi"'], "quotes"),
    ],
)
def test_new_refuses_bad_input(tmp_path, runner, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_new_never_overwrites(tmp_path, runner):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my work")
    result = runner.invoke(cli, ["new", "mine", "--dir", str(tmp_path / "mine")])
    assert result.exit_code == 2 and "not an empty folder" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my work"


@pytest.mark.slow
def test_scaffold_self_test_and_mutants(tmp_path, runner):
    """The scaffold passes `learn assign`, and `learn mutants` finds nothing its checks let through:
    every mutant of its function fails its check on every mutant seed, the named mistake (the
    forgotten bias) is caught and named on every seed. A course author starts from a proven pack."""
    made = new_pack("mypack", tmp_path / "mypack")
    assigned = runner.invoke(cli, ["assign", str(made.root), "--out", str(tmp_path / "out")])
    assert assigned.exit_code == 0, assigned.output
    assert "mutants: your checks catch" in assigned.output and "cannot tell" not in assigned.output
    report = tmp_path / "mutants.json"
    result = runner.invoke(cli, ["mutants", str(made.root), "--json", str(report), "--seeds", "20"])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["score"] == 1.0 and data["survived"] == 0 and data["mutants"] >= 5, data
    assert data["seeds"]["missed"] == [] and data["seeds"]["misnamed"] == []
    assert [f["named"] for f in data["functions"]] == [["no_bias"]]


@pytest.mark.slow
def test_wrong_versions_a_learner_would_write_fail_the_scaffold_too(tmp_path):
    """Beyond the AST operators of `learn mutants`: versions a learner writes (a ReLU or abs on the
    output, the bias averaged, the first row broadcast), graded as notebooks."""
    import asyncio

    from grader.assignments import lesson_grader
    from grader.results import Status

    from .conftest import variant

    made = new_pack("mypack", tmp_path / "mypack")
    solution = made.root / "mypack.ipynb"
    notebooks = {
        name: variant(solution, tmp_path / name / "mypack.ipynb", replace={"affine": affine(body)}) for name, body in MUTANTS.items()
    }

    async def grade():
        async with lesson_grader(made.lesson, pool_size=2, seed=1) as grader:
            results = await asyncio.gather(*(grader.grade(path, "mypack", "mypack.ipynb") for path in notebooks.values()))
        return {name: next(c for c in r.checks if c.name == "affine") for name, r in zip(notebooks, results)}

    checks = asyncio.run(grade())
    survivors = [name for name, c in checks.items() if c.status is Status.PASSED]
    assert not survivors, f"these wrong versions pass: {survivors}"
    assert "no_bias" in [case.mistake for case in checks["no_bias"].cases if case.mistake]
    assert "changed its input" in checks["changes_input"].message or "changed a tensor" in checks["changes_input"].message
