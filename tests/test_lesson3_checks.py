"""Every lesson-3 check passes on the reference, fails on the stub, and fails on a plausible
wrong answer - with the specific explanation where the mistake is a known one.

All variants are graded in one batch (one kernel pool) to keep the suite fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.lessons import get_lesson
from grader.results import Status

from .conftest import exercise, find_check, grade_all, solution, variant
from .leaks import leaks

pytestmark = pytest.mark.slow

QUAD, RELU, MATMUL = "01_quadratic.ipynb", "02_relu.ipynb", "03_matmul.ipynb"

# check -> (notebook, replacement definition, expected failure kind, words the message must contain)
WRONG = {
    "quad": (QUAD, "def quad(a, b, c, x):\n    return a * x * 2 + b * x + c", "known_mistake", "doubles x where it should square it"),
    "mk_quad": (QUAD, "def mk_quad(a, b, c):\n    return quad(a, b, c, 1.0)", "unusable_value", "not callable"),
    "add_noise": (QUAD, "def add_noise(x, mult, add):\n    return x + torch.randn_like(x) * add", "known_mistake", "(1 + noise * mult)"),
    "mse": (QUAD, "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()", "known_mistake", "adds the squared errors up"),
    "quad_mse": (QUAD, "def quad_mse(params):\n    f = mk_quad(*params)\n    return mse(f(x), x)", "known_mistake", "values differ"),
    "fit_quad": (
        QUAD,
        "def fit_quad(params, lr=0.01, steps=10):\n"
        "    params = params.detach().clone().requires_grad_()\n"
        "    losses = []\n"
        "    for _ in range(steps):\n"
        "        loss = quad_mse(params)\n"
        "        loss.backward()\n"
        "        with torch.no_grad():\n"
        "            params -= params.grad * lr\n"
        "        losses.append(loss.item())\n"
        "    return params.detach(), losses",
        "known_mistake",
        "never resets the gradients",
    ),
    "rectified_linear": (
        RELU,
        "def rectified_linear(m, b, x):\n    return torch.clip(m * x + b, max=0.0)",
        "known_mistake",
        "keeps the negative part",
    ),
    "double_relu": (
        RELU,
        "def double_relu(m1, b1, m2, b2, x):\n    return rectified_linear(m1, b1, x) - rectified_linear(m2, b2, x)",
        "known_mistake",
        "values differ",
    ),
    "relu_model": (
        RELU,
        "def relu_model(params, x):\n"
        "    total = torch.zeros_like(x)\n"
        "    for i in range(0, len(params), 2):\n"
        "        total = total + torch.clip(params[i] * x + params[i + 1], min=0.0)\n"
        "    return total",
        "python_loop",
        "Python loop",
    ),
    "fit_relus": (
        RELU,
        "def fit_relus(x, y, n_relus=5, lr=0.05, steps=300, seed=0):\n"
        "    torch.manual_seed(seed)\n"
        "    params = (torch.randn(2 * n_relus) * 0.5).requires_grad_()\n"
        "    losses = []\n"
        "    for _ in range(steps):\n"
        "        loss = ((relu_model(params, x) - y) ** 2).mean()\n"
        "        loss.backward()\n"
        "        with torch.no_grad():\n"
        "            params -= lr * params.grad\n"
        "        losses.append(loss.item())\n"
        "    return params.detach(), losses",
        None,
        "loss",
    ),
    "matmul_loops": (
        MATMUL,
        "def matmul_loops(a, b):\n"
        "    c = torch.zeros(a.shape[0], b.shape[0])\n"
        "    for i in range(a.shape[0]):\n"
        "        for j in range(b.shape[0]):\n"
        "            for k in range(a.shape[1]):\n"
        "                c[i, j] += a[i, k] * b[j, k]\n"
        "    return c",
        "known_mistake",
        "transpose",
    ),
    "matmul_broadcast": (
        MATMUL,
        "def matmul_broadcast(a, b):\n"
        "    c = torch.zeros(a.shape[0], b.shape[1])\n"
        "    for i in range(a.shape[0]):\n"
        "        for j in range(b.shape[1]):\n"
        "            for k in range(a.shape[1]):\n"
        "                c[i, j] += a[i, k] * b[k, j]\n"
        "    return c",
        "python_loop",
        "Python loop",
    ),
    "matmul_einsum": (
        MATMUL,
        "def matmul_einsum(a, b):\n    return torch.einsum('ik,jk->ij', a, b)",
        "known_mistake",
        "subscripts read b transposed",
    ),
    "linear": (MATMUL, "def linear(x, w, b):\n    return x @ w", "known_mistake", "bias"),
    "prep_money": (
        MATMUL,
        "def prep_money(amounts):\n"
        "    filled = torch.where(torch.isnan(amounts), torch.nanmedian(amounts), amounts)\n"
        "    return torch.log(filled)",
        "known_mistake",
        "-inf",
    ),
}

TYPE_ERRORS = {  # wrong return types: the message says what was expected
    # a named mistake since issue 23: the verdict says what was expected, and calls it by name
    "mse_item": (
        QUAD,
        "mse",
        "def mse(preds, acts):\n    return ((preds - acts) ** 2).mean().item()",
        "known_mistake",
        "not a Python number",
    ),
    "quad_list": (
        QUAD,
        "quad",
        "def quad(a, b, c, x):\n    r = a * x**2 + b * x + c\n    return r.tolist() if hasattr(r, 'tolist') else r",
        "wrong_type",
        "list",
    ),
    "linear_numpy": (MATMUL, "linear", "def linear(x, w, b):\n    return (x @ w + b).numpy()", "wrong_type", "numpy"),
    "relu_shape": (
        RELU,
        "rectified_linear",
        "def rectified_linear(m, b, x):\n    return torch.clip(m * x + b, min=0.0)[:, None]",
        "shape",
        "shape mismatch",
    ),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade solutions, stubs and every wrong variant in one batch: name -> NotebookResult."""
    tmp = tmp_path_factory.mktemp("variants")
    jobs: dict[str, Path] = {}
    for nb in (QUAD, RELU, MATMUL):
        jobs[f"solution:{nb}"] = solution("lesson3", nb)
        jobs[f"stub:{nb}"] = exercise("lesson3", nb)
    for name, (nb, code, _, _) in WRONG.items():
        jobs[f"wrong:{name}"] = variant(solution("lesson3", nb), tmp / f"wrong_{name}" / nb, replace={name: code})
    for key, (nb, name, code, _, _) in TYPE_ERRORS.items():
        jobs[f"type:{key}"] = variant(solution("lesson3", nb), tmp / f"type_{key}" / nb, replace={name: code})

    return grade_all(jobs, seed=12345)


ALL_CHECKS = sorted(get_lesson("lesson3").checks)


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_reference_passes(graded, name):
    spec = get_lesson("lesson3").checks[name]
    result = graded[f"solution:{spec.notebook}"]
    check = find_check(result, name)
    assert check.status is Status.PASSED, check.message
    assert check.points == check.max_points == spec.points
    assert result.cell_problems == []


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_stub_fails(graded, name):
    spec = get_lesson("lesson3").checks[name]
    check = find_check(graded[f"stub:{spec.notebook}"], name)
    assert check.status is Status.FAILED
    assert check.points == 0
    assert check.kind == "not_implemented"
    assert "not written yet" in check.message


def test_every_check_has_a_wrong_answer_test():
    assert sorted(WRONG) == ALL_CHECKS


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_fails_with_specific_message(graded, name):
    _, _, kind, words = WRONG[name]
    check = find_check(graded[f"wrong:{name}"], name)
    assert check.status in (Status.FAILED, Status.ERROR), check.message
    assert check.points < check.max_points
    if kind:
        assert check.kind == kind, check.message
    assert words in check.message
    assert check.hint, "a failing check shows its first hint"
    lesson = get_lesson("lesson3")
    given = leaks(check.message + "\n" + check.hint, lesson, WRONG[name][0], WRONG[name][1])
    assert not given, f"the verdict gives the reference code away: {given}"


@pytest.mark.parametrize("key", sorted(TYPE_ERRORS))
def test_wrong_return_type_says_what_was_expected(graded, key):
    _, name, _, kind, words = TYPE_ERRORS[key]
    check = find_check(graded[f"type:{key}"], name)
    assert check.status is Status.FAILED
    assert check.kind == kind
    assert words in check.message
    assert "expected" in check.message


def test_zero_grad_bug_is_named_and_the_fix_waits_for_the_last_hint(graded):
    check = find_check(graded["wrong:fit_quad"], "fit_quad")
    assert "never resets the gradients" in check.message and "never resets the gradients" in check.hint
    assert "zero_" not in check.message and "zero_" not in check.hint  # the verdict says what is wrong, not the code
    assert "zero_()" in get_lesson("lesson3").checks["fit_quad"].hints[2]  # the code is the third rung of the ladder


def test_failures_carry_diffs_with_tolerances(graded):
    check = find_check(graded["wrong:quad_mse"], "quad_mse")
    diff = check.diff
    assert diff is not None and diff.kind == "values"
    assert diff.rtol == 1e-5 and diff.atol == 1e-5
    assert diff.max_abs is not None and diff.max_abs > 0


def test_results_record_seed_and_sandbox(graded):
    result = graded[f"solution:{QUAD}"]
    assert result.seed == 12345
    assert result.sandbox in ("bwrap", "rlimit")
    assert result.to_dict()["schema_version"] == 1


def test_randomized_inputs_follow_the_seed():
    from grader.plan import plan

    lesson = get_lesson("lesson3")
    spec = lesson.notebook(QUAD)
    one = plan(lesson, spec, seed=1).probes(reference=False)
    same = plan(lesson, spec, seed=1).probes(reference=False)
    other = plan(lesson, spec, seed=2).probes(reference=False)
    assert one == same
    assert one != other


def test_fit_relus_plots_the_loss_of_each_step_next_to_the_reference(graded):
    from grader.html import render_report
    from grader.results import RunResult

    plot = find_check(graded[f"solution:{RELU}"], "fit_relus").series["loss"]
    assert plot["kind"] == "line" and plot["title"] == "Loss per step"
    reference, yours = plot["lines"]["reference"], plot["lines"]["yours"]
    assert len(reference) > 10 and yours == pytest.approx(reference)
    piled_up = find_check(graded["wrong:fit_relus"], "fit_relus").series["loss"]["lines"]
    assert piled_up["reference"] == pytest.approx(reference) and piled_up["yours"] != pytest.approx(reference)
    html = render_report(RunResult([graded["wrong:fit_relus"]], seed=12345))
    section = html.split('id="check-fit_relus"')[1].split("</details>")[0]
    assert 'aria-label="Loss per step"' in section and 'aria-label="Sum of ReLUs fitted to the data"' in section
