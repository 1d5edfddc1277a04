"""The ten-digit capstone (chapter 4's further research): every check passes on the reference,
fails on the stub, and recognises each named mistake by name - softmax without the max, the
wrong axis, one-hot targets, a forgotten zero_grad - with a specific message. The held-out
digits stay with the grader, and the holdout accuracy is recorded as a metric.

All variants are graded in one batch (one kernel pool) in a module fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.lessons import get_lesson
from grader.results import Status

from .conftest import SOLUTIONS, exercise, find_check, grade_all, solution, variant

NB = "07_ten_digits.ipynb"
LESSON = "capstone"
HOLDOUT = SOLUTIONS / LESSON / "holdout.npz"

LEARNER_OK = """
class Learner:
    def __init__(self, dls, model, loss_func=cross_entropy, opt_func=BasicOptim):
        self.dls, self.model, self.loss_func, self.opt_func = dls, model, loss_func, opt_func

    def fit(self, epochs, lr):
        self.opt = self.opt_func(self.model.parameters(), lr)
        for epoch in range(epochs):
            for xb, yb in self.dls.train:
                loss = self.loss_func(self.model(xb), yb)
                loss.backward()
                self.opt.step()
                {zero_grad}

    def validate(self):
        with torch.no_grad():
            accs = [(self.model(xb).argmax(dim=-1) == yb).float().mean() for xb, yb in self.dls.{split}]
        return round(torch.stack(accs).mean().item(), 4)
"""

# name -> (check, replacements by defined name / by containing text, mistake name or failure kind, words in the message)
WRONG = {
    "softmax_no_max": ("softmax", {"softmax": "def softmax(x):\n    return x.exp() / x.exp().sum(dim=-1, keepdim=True)"},
                       "no_max", "does not change softmax"),
    "softmax_axis": ("softmax", {"softmax": "def softmax(x):\n    e = (x - x.max(-1, keepdim=True).values).exp()\n    return e / e.sum(0, keepdim=True)"},
                     "wrong_axis", "down the columns"),
    "ce_no_max": ("cross_entropy", {"cross_entropy": "def cross_entropy(preds, targets):\n"
                  "    lp = preds - preds.exp().sum(-1, keepdim=True).log()\n    return -lp[range(len(targets)), targets].mean()"},
                  "no_max", "overflow"),
    "ce_log_softmax": ("cross_entropy", {"cross_entropy": "def cross_entropy(preds, targets):\n"
                       "    return -softmax(preds)[torch.arange(len(targets)), targets].log().mean()"},
                       "log_of_softmax", "the log of 0"),
    "ce_axis": ("cross_entropy", {"cross_entropy": "def cross_entropy(preds, targets):\n"
                "    s = preds - preds.max(0, keepdim=True).values\n    lp = s - s.exp().sum(0, keepdim=True).log()\n"
                "    return -lp[torch.arange(len(targets)), targets].mean()"}, "wrong_axis", "over the batch axis"),
    "ce_one_hot": ("cross_entropy", {"cross_entropy": "def cross_entropy(preds, targets):\n"
                   "    lp = torch.log_softmax(preds, dim=-1)\n    return -(lp * targets).sum(-1).mean()"}, "one_hot", "class indices"),
    "optim_no_zero_grad": ("BasicOptim", {"class BasicOptim:": "class BasicOptim:\n    def __init__(self, params, lr):\n"
                           "        self.params, self.lr = list(params), lr\n    def step(self):\n        for p in self.params:\n"
                           "            p.data -= p.grad.data * self.lr\n    def zero_grad(self):\n        pass\n"},
                           "no_zero_grad", "does nothing"),
    "optim_uphill": ("BasicOptim", {"class BasicOptim:": "class BasicOptim:\n    def __init__(self, params, lr):\n"
                     "        self.params, self.lr = list(params), lr\n    def step(self):\n        for p in self.params:\n"
                     "            p.data += p.grad.data * self.lr\n    def zero_grad(self):\n        for p in self.params:\n"
                     "            p.grad = None\n"},
                     "uphill", "points uphill"),
    "net_no_relu": ("simple_net", {"simple_net = nn.Sequential(": "simple_net = nn.Sequential(nn.Linear(784, 64), nn.Linear(64, 10))"},
                    "layers", "ReLU"),
    "net_one_output": ("simple_net", {"simple_net = nn.Sequential(": "simple_net = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 1))"},
                       "shape", "ten scores"),
    "fit_no_zero_grad": ("fit", {"class Learner:": LEARNER_OK.format(zero_grad="pass", split="valid")}, "no_zero_grad", "never clears the gradients"),
    "fit_one_epoch": ("fit", {"class Learner:": LEARNER_OK.format(zero_grad="self.opt.zero_grad()", split="valid").replace(
                      "        for epoch in range(epochs):\n            for xb, yb in self.dls.train:\n                loss = self.loss_func(self.model(xb), yb)\n"
                      "                loss.backward()\n                self.opt.step()\n                self.opt.zero_grad()",
                      "        for xb, yb in self.dls.train:\n            loss = self.loss_func(self.model(xb), yb)\n"
                      "            loss.backward()\n            self.opt.step()\n            self.opt.zero_grad()")},
                      "one_epoch", "a third of the steps"),
    "validate_last_batch": ("validate", {"class Learner:": LEARNER_OK.format(zero_grad="self.opt.zero_grad()", split="valid").replace(
                            "            accs = [(self.model(xb).argmax(dim=-1) == yb).float().mean() for xb, yb in self.dls.valid]",
                            "            accs = [(self.model(xb).argmax(dim=-1) == yb).float().mean() for xb, yb in list(self.dls.valid)[-1:]]")},
                            "last_batch", "every batch"),
    "validate_on_train": ("validate", {"class Learner:": LEARNER_OK.format(zero_grad="self.opt.zero_grad()", split="train")},
                          "on_train", "dls.valid"),
    "not_trained": ("ten_digits", {"learn.fit(20, lr=0.2)": "dls = DataLoaders(train_x[:64].split(32), valid_x[:64].split(32))\n"
                    "learn = Learner(dls, simple_net)"}, "accuracy", "the bar is 90%"),
}  # fmt: skip

pytestmark = pytest.mark.slow


def _replace(src: Path, dest: Path, replacements: dict[str, str]) -> Path:
    by_name = {k: v for k, v in replacements.items() if k.isidentifier()}
    by_text = {k: v for k, v in replacements.items() if not k.isidentifier()}
    return variant(src, dest, replace=by_name, replace_containing=by_text)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("capstone")
    src = solution(LESSON, NB)
    leak = f"import os\nassert not os.path.exists({str(HOLDOUT)!r}), 'the holdout is readable from the notebook'\n"
    jobs = {"solution": variant(src, tmp / "solution" / NB, leak), "stub": exercise(LESSON, NB)}
    for key, (_, replacements, _, _) in WRONG.items():
        jobs[key] = _replace(src, tmp / key / NB, replacements)
    return grade_all(jobs, seed=777)


ALL_CHECKS = sorted(get_lesson(LESSON).checks)


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_reference_passes(graded, name):
    result = graded["solution"]
    check = find_check(result, name)
    assert check.status is Status.PASSED, check.message
    assert check.points == check.max_points == get_lesson(LESSON).checks[name].points
    assert result.cell_problems == []  # includes the cell asserting the holdout is not readable


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_stub_fails(graded, name):
    check = find_check(graded["stub"], name)
    assert check.status in (Status.FAILED, Status.ERROR)
    assert check.points == 0
    assert check.kind == "not_implemented", check.message
    assert "not written yet" in check.message


def test_every_check_has_a_wrong_answer():
    assert {check for check, *_ in WRONG.values()} == set(ALL_CHECKS)


@pytest.mark.parametrize("key", sorted(WRONG))
def test_wrong_answer_is_named(graded, key):
    name, _, expected, words = WRONG[key]
    check = find_check(graded[key], name)
    assert check.status in (Status.FAILED, Status.ERROR), check.message
    assert check.points < check.max_points
    mistakes = {c.mistake for c in check.cases if c.mistake}
    mistake_names = {m.name for m in get_lesson(LESSON).check_code()[name].mistakes}
    if expected in mistake_names:
        assert check.kind == "known_mistake" and expected in mistakes, (check.kind, mistakes, check.message)
    else:
        assert check.kind == expected, check.message
    assert words in check.message, check.message
    assert check.hint


def test_a_wrong_softmax_costs_only_its_own_check(graded):
    failing = {c.name for c in graded["softmax_axis"].checks if not c.passed}
    assert failing == {"softmax"}, failing


def test_holdout_accuracy_is_recorded_and_ranked(graded):
    check = find_check(graded["solution"], "ten_digits")
    metric = check.series["holdout_accuracy"]
    assert metric["kind"] == "metric" and metric["n"] == 400
    assert 0.94 <= metric["value"] <= 0.97
    assert "reference solution's 10 seeds" in check.cases[0].message
    untrained = find_check(graded["not_trained"], "ten_digits")
    assert untrained.series["holdout_accuracy"]["value"] < 0.5
    assert "below every seed" in untrained.message


def test_learn_check_says_where_the_accuracy_ranks(graded):
    from rich.console import Console

    from grader.report import render_notebook

    console = Console(record=True, width=200)
    console.print(render_notebook(graded["solution"]))
    text = console.export_text()
    assert "ten_digits: learn.model gets" in text and "of the reference solution's 10 seeds" in text


def test_fit_plots_the_loss_of_each_step_next_to_the_reference(graded):
    from grader.html import render_report
    from grader.results import RunResult

    plot = find_check(graded["solution"], "fit").series["loss"]
    assert plot["kind"] == "line" and plot["title"] == "Loss per step" and plot["x"] == list(range(1, 13))  # 3 epochs of 4 batches
    reference, yours = plot["lines"]["reference"], plot["lines"]["yours"]
    assert len(reference) == 12 and yours == pytest.approx(reference)
    piled_up = find_check(graded["fit_no_zero_grad"], "fit").series["loss"]["lines"]
    assert piled_up["reference"] == pytest.approx(reference) and piled_up["yours"] != pytest.approx(reference)
    html = render_report(RunResult([graded["fit_no_zero_grad"]], seed=777))
    section = html.split('id="check-fit"')[1].split("</details>")[0]
    assert 'aria-label="Loss per step"' in section
