"""Named misconceptions: every graded function of lesson 3 and chapter 4 knows at least two
classic wrong answers, and each one is recognised *by name* when a learner writes it.

The learner's code in each test is the mistake itself, written as the graded function: the
notebook is the reference solution with that one definition replaced.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from grader.checks import probe_source
from grader.lessons import get_lesson

from .conftest import find_check, grade_all, solution, variant
from .leaks import leaks

PACKS = ("lesson3", "chapter4")
# judged by behaviour, not against one reference value: the judge itself names the misconception
JUDGED = {
    ("lesson3", "add_noise"): {
        "additive_only": "def add_noise(x, mult, add):\n    return x + torch.randn_like(x) * add",
        "not_torch_random": "import numpy as np\n\ndef add_noise(x, mult, add):\n"
        "    noise = lambda: torch.from_numpy(np.random.randn(*x.shape)).float()\n"
        "    return x * (1 + noise() * mult) + noise() * add",
    },
    ("chapter4", "init_params"): {
        "no_requires_grad": "def init_params(size, std=1.0):\n    return torch.randn(size) * std",
        "not_leaf": "def init_params(size, std=1.0):\n    return torch.randn(size, requires_grad=True) * std",
    },
    ("chapter4", "simple_net"): {
        "no_relu": "simple_net = nn.Sequential(nn.Linear(28 * 28, 30), nn.Linear(30, 1))",
        "wrong_size": "simple_net = nn.Sequential(nn.Linear(28 * 28, 10), nn.ReLU(), nn.Linear(10, 1))",
    },
}


def mistakes_of(lesson_id: str):
    lesson = get_lesson(lesson_id)
    code = lesson.check_code()
    for name, spec in lesson.checks.items():
        for mistake in code[name].mistakes:
            if set(mistake.replace) == {name}:
                yield lesson, spec, mistake


def as_learner_code(name: str, impl) -> str:
    source, entry = probe_source(impl)
    return re.sub(rf"^(def|class) {re.escape(entry)}\b", rf"\1 {name}", textwrap.dedent(source), count=1, flags=re.M)


CASES = [(lesson.id, spec.name, m.name) for pack in PACKS for lesson, spec, m in mistakes_of(pack)]


@pytest.mark.parametrize("lesson_id", PACKS)
def test_every_function_knows_two_misconceptions(lesson_id):
    lesson = get_lesson(lesson_id)
    code = lesson.check_code()
    known = {n: [m.name for m in code[n].mistakes] + list(JUDGED.get((lesson_id, n), {})) for n in lesson.checks}
    few = {n: names for n, names in known.items() if len(names) < 2}
    assert not few, f"fewer than two named misconceptions: {few}"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """pack -> {(pack, name, mistake): NotebookResult}, each pack graded in one batch when first needed."""
    done: dict = {}

    def get(pack):
        if pack not in done:
            tmp = tmp_path_factory.mktemp(f"misconceptions-{pack}")
            jobs = {}
            for _, spec, mistake in mistakes_of(pack):
                code = as_learner_code(spec.name, mistake.replace[spec.name])
                dest = tmp / f"{spec.name}-{mistake.name}" / spec.notebook
                where = {"replace_containing": {f"class {spec.name}": code}} if code.startswith("class") else {"replace": {spec.name: code}}
                jobs[(pack, spec.name, mistake.name)] = variant(solution(pack, spec.notebook), dest, **where)
            done[pack] = grade_all(jobs, seed=4242)
        return done[pack]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("lesson_id, name, mistake", CASES)
def test_misconception_is_recognised_by_name(graded, lesson_id, name, mistake):
    check = find_check(graded(lesson_id)[(lesson_id, name, mistake)], name)
    assert check.points < check.max_points, check.message
    named = {c.mistake for c in check.cases if c.mistake}
    assert mistake in named, f"{name}: {check.message}"
    lesson = get_lesson(lesson_id)
    impl = next(m for m in lesson.check_code()[name].mistakes if m.name == mistake)
    assert check.hint == impl.message or impl.message in check.message  # the learner is told, in words
    given = leaks(check.message + "\n" + check.hint, lesson, lesson.checks[name].notebook, as_learner_code(name, impl.replace[name]))
    assert not given, f"{name} ({mistake}): the verdict gives the reference code away: {given}"  # the answer waits for `learn hint`


@pytest.mark.slow
def test_a_diverging_fit_says_so_with_the_losses(tmp_path):
    too_fast = (
        "def fit_quad(params, lr=0.01, steps=10):\n"
        "    params = params.detach().clone().requires_grad_()\n"
        "    losses = []\n"
        "    for _ in range(steps):\n"
        "        loss = quad_mse(params)\n"
        "        loss.backward()\n"
        "        with torch.no_grad():\n"
        "            params -= params.grad * lr * 50\n"
        "        params.grad.zero_()\n"
        "        losses.append(loss.item())\n"
        "    return params.detach(), losses"
    )
    nb = variant(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "w" / "01_quadratic.ipynb", replace={"fit_quad": too_fast})
    check = find_check(grade_all({"w": nb}, seed=3)["w"], "fit_quad")
    assert check.points == 0 and check.kind == "diverged", check.message
    assert "Your loss grows instead of shrinking (" in check.message and "diverges" in check.message
    assert re.search(r"\(\d[\d.e+]*, \d[\d.e+]*, \d[\d.e+]*, \.\.\., [\d.e+]+\)", check.message), check.message  # the losses


JUDGED_CASES = [(pack, name, mistake) for (pack, name), found in JUDGED.items() for mistake in found]


@pytest.mark.slow
def test_judges_name_misconceptions_too(tmp_path):
    jobs = {}
    for pack, name, mistake in JUDGED_CASES:
        spec = get_lesson(pack).checks[name]
        code = JUDGED[(pack, name)][mistake]
        where = {"replace": {name: code}} if code.lstrip().startswith(("def", "import")) else {"replace_containing": {f"{name} = ": code}}
        jobs[(pack, name, mistake)] = variant(solution(pack, spec.notebook), tmp_path / f"{name}-{mistake}" / spec.notebook, **where)
    results = grade_all(jobs, seed=99)
    for (pack, name, mistake), result in results.items():
        check = find_check(result, name)
        assert check.points < check.max_points and check.kind == "known_mistake", (mistake, check.message)
        assert mistake in {c.mistake for c in check.cases}, (mistake, check.message)
        notebook = get_lesson(pack).checks[name].notebook
        given = leaks(check.message + "\n" + (check.hint or ""), get_lesson(pack), notebook, JUDGED[(pack, name)][mistake])
        assert not given, f"{name} ({mistake}): the verdict gives the reference code away: {given}"
