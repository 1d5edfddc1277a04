"""Every chapter-4 check passes on the reference, fails on the stub, and fails on a plausible
wrong answer - with the specific explanation where the mistake is a known one, and a specific
hint where the learner loops in Python or returns the wrong shape.

All variants are graded in one batch (one kernel pool) to keep the suite fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from grader.lessons import get_lesson
from grader.results import Status

from .conftest import SOLUTIONS, exercise, find_check, grade_all, solution, variant
from .leaks import leaks

NB = "04_mnist_basics.ipynb"
PACK = SOLUTIONS / "chapter4"

# check -> (replacement definition, expected failure kind, words the message must contain)
WRONG = {
    "mean_image": ("def mean_image(stack):\n    return stack.mean()", "known_mistake", "one average per pixel"),
    "mnist_distance": ("def mnist_distance(a, b): return (a-b).abs().sum((-1,-2))", "known_mistake", "grows with the number of pixels"),
    "is_3": ("def is_3(x):\n    return mnist_distance(x, mean3) > mnist_distance(x, mean7)", "known_mistake", "wrong way round"),
    "init_params": ("def init_params(size, std=1.0):\n    return torch.randn(size, requires_grad=True) * std", "known_mistake", "leaf"),
    "linear1": ("def linear1(xb):\n    return xb @ weights", "known_mistake", "bias"),
    "sigmoid": ("def sigmoid(x):\n    return 1 / (1 + torch.exp(x))", "known_mistake", "flipped"),
    "mnist_loss": (
        "def mnist_loss(preds, targets):\n    return torch.where(targets == 1, 1 - preds, preds).mean()",
        "known_mistake",
        "forgot the sigmoid",
    ),
    "calc_grad": (
        "def calc_grad(xb, yb, model):\n    loss = mnist_loss(model(xb), yb)",
        "known_mistake",
        "No gradients were computed",
    ),  # named: no_backward
    "train_epoch": (
        "def train_epoch(model, lr, params):\n"
        "    for xb, yb in dl:\n"
        "        calc_grad(xb, yb, model)\n"
        "        for p in params:\n"
        "            p.data -= p.grad * lr\n",
        "known_mistake",
        "never reset",
    ),
    "batch_accuracy": (
        "def batch_accuracy(xb, yb):\n    return ((xb.sigmoid() > 0.5) == yb).float().sum()",
        "known_mistake",
        "fraction that is correct",
    ),
    "validate_epoch": (
        "def validate_epoch(model):\n"
        "    accs = [batch_accuracy(model(xb), yb) for xb, yb in dl]\n"
        "    return round(torch.stack(accs).mean().item(), 4)",
        "known_mistake",
        "training batches",
    ),
    "BasicOptim": (
        "class BasicOptim:\n"
        "    def __init__(self, params, lr):\n"
        "        self.params, self.lr = list(params), lr\n"
        "    def step(self):\n"
        "        for p in self.params:\n"
        "            p.data -= p.grad.data * self.lr\n"
        "    def zero_grad(self):\n"
        "        pass\n",
        "known_mistake",
        "zero_grad() does nothing",
    ),
    "simple_net": ("simple_net = nn.Sequential(nn.Linear(28 * 28, 30), nn.Linear(30, 1))", "known_mistake", "three layers"),
}

# more wrong answers: (check, replacement, expected kind, words)
MORE = {
    "distance_loop": (
        "mnist_distance",
        "def mnist_distance(a, b):\n"
        "    if a.ndim == 2:\n"
        "        return (a - b).abs().mean()\n"
        "    return torch.stack([(x - y).abs().mean() for x, y in zip(a, b.expand_as(a))])",
        "python_loop",
        "broadcasting",
    ),
    "distance_shape": (
        "mnist_distance",
        "def mnist_distance(a, b):\n    return (a - b).abs().flatten(1).mean(1)",
        "shape",
        "last two axes",
    ),
    "is_3_loop": (
        "is_3",
        "def is_3(x):\n"
        "    if x.ndim == 2:\n"
        "        return mnist_distance(x, mean3) < mnist_distance(x, mean7)\n"
        "    return torch.stack([mnist_distance(i, mean3) < mnist_distance(i, mean7) for i in x])",
        "python_loop",
        "Python",
    ),
    "loss_loop": (
        "mnist_loss",
        "def mnist_loss(preds, targets):\n"
        "    preds, targets = sigmoid(preds).flatten(), targets.flatten()\n"
        "    errors = [1 - p if t == 1 else p for p, t in zip(preds, targets)]\n"
        "    return torch.stack(errors).mean()",
        "python_loop",
        "whole tensor at once",
    ),
    "loss_swapped": (
        "mnist_loss",
        "def mnist_loss(preds, targets):\n    preds = preds.sigmoid()\n    return torch.where(targets == 1, preds, 1 - preds).mean()",
        "known_mistake",
        "swapped",
    ),
    "optim_uphill": (
        "BasicOptim",
        "class BasicOptim:\n"
        "    def __init__(self, params, lr):\n"
        "        self.params, self.lr = list(params), lr\n"
        "    def step(self):\n"
        "        for p in self.params:\n"
        "            p.data += p.grad.data * self.lr\n"
        "    def zero_grad(self):\n"
        "        for p in self.params:\n"
        "            p.grad = None\n",
        "known_mistake",
        "climbs the loss",
    ),
    "epoch_uphill": (
        "train_epoch",
        "def train_epoch(model, lr, params):\n"
        "    for xb, yb in dl:\n"
        "        calc_grad(xb, yb, model)\n"
        "        for p in params:\n"
        "            p.data += p.grad * lr\n"
        "            p.grad.zero_()\n",
        "known_mistake",
        "points uphill",
    ),
    "epoch_rebinds": (
        "train_epoch",
        "def train_epoch(model, lr, params):\n"
        "    for xb, yb in dl:\n"
        "        calc_grad(xb, yb, model)\n"
        "        for p in params:\n"
        "            p = p - p.grad * lr\n",
        None,
        "did not change the parameters",
    ),
    "net_function": ("simple_net", "def simple_net(xb):\n    return xb[:, :1]", "wrong_type", "not a model"),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the solution, the stub and every wrong variant in one batch: name -> NotebookResult."""
    tmp = tmp_path_factory.mktemp("ch4")
    jobs: dict[str, Path] = {"solution": solution("chapter4", NB), "stub": exercise("chapter4", NB)}
    for name, (code, _, _) in WRONG.items():
        jobs[f"wrong:{name}"] = variant(solution("chapter4", NB), tmp / f"wrong_{name}" / NB, code)
    for key, (_, code, _, _) in MORE.items():
        jobs[f"more:{key}"] = variant(solution("chapter4", NB), tmp / f"more_{key}" / NB, code)

    return grade_all(jobs, seed=4242)


ALL_CHECKS = sorted(get_lesson("chapter4").checks)


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_reference_passes(graded, name):
    result = graded["solution"]
    check = find_check(result, name)
    assert check.status is Status.PASSED, check.message
    assert check.points == check.max_points == get_lesson("chapter4").checks[name].points
    assert result.cell_problems == []


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_stub_fails(graded, name):
    check = find_check(graded["stub"], name)
    assert check.status is Status.FAILED
    assert check.points == 0
    assert check.kind == "not_implemented"
    assert "not written yet" in check.message


def test_every_check_has_a_wrong_answer_test():
    assert sorted(WRONG) == ALL_CHECKS


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_fails_with_specific_message(graded, name):
    _, kind, words = WRONG[name]
    check = find_check(graded[f"wrong:{name}"], name)
    assert check.status in (Status.FAILED, Status.ERROR), check.message
    assert check.points < check.max_points
    assert check.kind == kind, check.message
    assert words in check.message
    assert check.hint, "a failing check shows its first hint"
    given = leaks(check.message + "\n" + check.hint, get_lesson("chapter4"), NB, WRONG[name][0])
    assert not given, f"the verdict gives the reference code away: {given}"


@pytest.mark.parametrize("key", sorted(MORE))
def test_more_wrong_answers(graded, key):
    name, _, kind, words = MORE[key]
    check = find_check(graded[f"more:{key}"], name)
    assert check.status in (Status.FAILED, Status.ERROR), check.message
    assert check.points < check.max_points
    if kind:
        assert check.kind == kind, check.message
    assert words in check.message
    given = leaks(check.message + "\n" + (check.hint or ""), get_lesson("chapter4"), NB, MORE[key][1])
    assert not given, f"the verdict gives the reference code away: {given}"


def test_other_checks_unaffected_by_one_wrong_function(graded):
    """A wrong mnist_distance must not cost points elsewhere than in the checks that use it."""
    result = graded["wrong:mnist_distance"]
    failing = {c.name for c in result.checks if not c.passed}
    assert failing <= {"mnist_distance", "is_3"}, failing


def _accuracy_case(result, name):
    return next(c for c in find_check(result, name).cases if c.label in ("trains a linear model", "learns 3 versus 7"))


def test_training_reaches_the_bar(graded):
    for name in ("train_epoch", "simple_net"):
        case = _accuracy_case(graded["solution"], name)
        assert case.status is Status.PASSED
        assert "validation accuracy" in case.message
        accuracy = float(case.message.split("validation accuracy ")[1].split("%")[0]) / 100
        assert accuracy >= 0.97, f"{name}: the reference should clear the 95% bar with room to spare, got {accuracy}"


def test_uphill_training_misses_the_accuracy_bar(graded):
    case = _accuracy_case(graded["more:epoch_uphill"], "train_epoch")
    assert case.status is Status.FAILED
    assert case.kind in ("accuracy", "nonfinite")


def test_results_serialise_like_lesson3(graded):
    data = graded["wrong:mnist_distance"].to_dict()
    assert data["schema_version"] == 1
    json.dumps(data)
    check = find_check(graded["wrong:mnist_distance"], "mnist_distance")
    assert check.diff is not None and check.diff.kind == "values"


# ---------------------------------------------------------------------------------------------
# the pack's data


def test_notebook_does_not_import_sklearn():
    nb = nbformat.read(str(PACK / NB), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "sklearn" not in code and "fastai" not in code
    assert "from mnist_data import" in code


def test_data_files_are_listed_and_shipped_with_the_exercise():
    lesson = get_lesson("chapter4")
    spec = lesson.notebook(NB)
    assert set(spec.data) == {"mnist_data.py", "digits37.npz"}
    for name in spec.data:
        assert (lesson.exercises_dir / name).read_bytes() == (PACK / name).read_bytes()


def test_data_file_is_what_make_data_builds(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data_ch4", PACK / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path / "digits37.npz")
    module.main()
    with np.load(tmp_path / "digits37.npz") as fresh, np.load(PACK / "digits37.npz") as shipped:
        assert sorted(fresh.files) == sorted(shipped.files) == ["train3", "train7", "valid3", "valid7"]
        for key in fresh.files:
            assert fresh[key].dtype == np.uint8 and fresh[key].shape[1:] == (28, 28)
            assert np.array_equal(fresh[key], shipped[key]), key


def test_loader_scales_to_unit_range():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mnist_data_ch4", PACK / "mnist_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    digits = module.load_threes_and_sevens()
    for t in digits:
        assert t.dtype.is_floating_point and t.shape[1:] == (28, 28)
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert len(digits.valid3) + len(digits.valid7) >= 80


def test_fetch_then_check_like_lesson3(runner, tmp_path):
    from grader.cli import cli

    dest = tmp_path / "chapter4"
    result = runner.invoke(cli, ["fetch", "chapter4", "--dir", str(dest)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in dest.iterdir()} >= {NB, "mnist_data.py", "digits37.npz"}
    out = tmp_path / "stub.json"
    result = runner.invoke(cli, ["check", "chapter4", "--dir", str(dest), "--json", str(out), "--seed", "7"])
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    checks = data["notebooks"][0]["checks"]
    assert {c["name"] for c in checks} == set(ALL_CHECKS)
    assert all(c["status"] == "failed" and c["kind"] == "not_implemented" for c in checks)
    (dest / NB).write_bytes((PACK / NB).read_bytes())
    result = runner.invoke(cli, ["check", "chapter4", "--dir", str(dest), "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "19/19" in result.output


def test_training_checks_carry_accuracy_per_epoch_for_the_report(graded):
    for name, epochs in (("train_epoch", 20), ("simple_net", 10)):
        plot = find_check(graded["solution"], name).series["accuracy"]
        assert plot["kind"] == "line" and plot["x"] == list(range(1, epochs + 1))
        yours = plot["lines"]["yours"]
        assert len(yours) == epochs and yours[-1] >= 95 and all(0 <= v <= 100 for v in yours)


def test_train_epoch_plots_the_loss_of_each_step_next_to_the_reference(graded):
    from grader.html import render_report
    from grader.results import RunResult

    plot = find_check(graded["solution"], "train_epoch").series["loss"]
    assert plot["kind"] == "line" and plot["title"] == "Loss per step" and plot["x"] == list(range(1, 11))
    reference, yours = plot["lines"]["reference"], plot["lines"]["yours"]
    assert len(reference) == 10 and yours == pytest.approx(reference)  # one loss a step, the same as the reference's
    uphill = find_check(graded["more:epoch_uphill"], "train_epoch").series["loss"]["lines"]
    assert uphill["reference"] == pytest.approx(reference) and sum(uphill["yours"]) > sum(reference)  # climbing: the lines part
    html = render_report(RunResult([graded["more:epoch_uphill"]], seed=4242))
    section = html.split('id="check-train_epoch"')[1].split("</details>")[0]
    assert 'aria-label="Loss per step"' in section and 'aria-label="Linear model: validation accuracy per epoch"' in section
