"""The which-model notebook: every check passes on the reference and fails on the stub; each
named misconception fails the check it concerns, by name. Timing is judged by method (probe
models that sleep a known time, record eval mode and autograd, and are slow on a cold first
call), so the timing checks are also run repeatedly while the machine is kept busy.

Mistakes in different functions are independent checks, so several share one notebook: fewer
fastai kernels to start.
"""

from __future__ import annotations

import pytest

from grader.lessons import get_lesson
from grader.results import Status

from .conftest import exercise, find_check, grade_all, solution, variant

NB = "06_which_model.ipynb"
LESSON = "whichmodel"

TIMING = """def seconds_per_sample(model, xb, warmup=3, repeats=10):
    {mode}
    {grad}
    for _ in range({warmup}):
        model(xb)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(xb)
        times.append(time.perf_counter() - start)
    torch.set_grad_enabled(True)
    return {result}
"""
GOOD = dict(mode="model.eval()", grad="torch.set_grad_enabled(False)", warmup="warmup", result="statistics.median(times) / len(xb)")


def timing(**change) -> str:
    return TIMING.format(**{**GOOD, **change})


PARETO = """def pareto_front(results):
    def dominates(a, b):
        return {rule}
    front = [n for n, r in results.items() if not any(dominates(o, r) for m, o in results.items() if m != n)]
    return {order}
"""
SORTED = "sorted(front, key=lambda n: results[n][0])"

# variant -> {function name: replacement}
VARIANTS = {
    "a": {
        "count_parameters": "def count_parameters(model):\n    return len(list(model.parameters()))",
        "layer_summary": "def layer_summary(model, path):\n    m = model.get_submodule(path)\n"
        "    return path, type(m).__name__, {n: tuple(p.shape) for n, p in m.named_parameters(recurse=False)}",
        "accuracy": "def accuracy(model, dl):\n    model.eval()\n    with torch.no_grad():\n"
        "        accs = [(model(xb).argmax(1) == yb).float().mean().item() for xb, yb in dl]\n    return sum(accs) / len(accs)",
        "seconds_per_sample": timing(warmup="0", result="sum(times) / len(times) / len(xb)"),
        "pareto_front": PARETO.format(rule="a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])", order=SORTED),
        "top_probs": "def top_probs(learn, img, k=3):\n    _, _, probs = learn.predict(img)\n    return dict(list(zip(learn.dls.vocab, probs))[:k])",
    },
    "b": {
        "count_parameters": "def count_parameters(model):\n    return sum(p.numel() for p in model.parameters() if p.requires_grad)",
        "accuracy": "def accuracy(model, dl):\n    correct = total = 0\n    with torch.no_grad():\n        for xb, yb in dl:\n"
        "            correct += int((model(xb).argmax(1) == yb).sum()); total += len(yb)\n    return correct / total",
        "seconds_per_sample": timing(mode="pass"),
        "pareto_front": PARETO.format(rule="a[0] <= b[0] and a[1] >= b[1]", order=SORTED),
    },
    "c": {  # (not with b: b's accuracy leaves batch norm in training mode, changing learn's predictions)
        "top_probs": "def top_probs(learn, img, k=3):\n    _, _, probs = learn.predict(img)\n"
        "    return dict(sorted(zip(learn.dls.vocab, probs), key=lambda p: p[1], reverse=True))",
        "seconds_per_sample": timing(grad="pass"),
        "pareto_front": PARETO.format(rule="a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])", order="front"),
    },
    "d": {
        "seconds_per_sample": timing(result="statistics.median(times)"),
        "layer_summary": "def layer_summary(model, path):\n    m = model.get_submodule(path)\n"
        "    return path, str(type(m)), {n: tuple(p.shape) for n, p in m.named_parameters()}",
    },
}
# (variant, check) -> mistake name (recognised by the Mistake mechanism) or failure kind (named by the judge)
EXPECTED = {
    ("a", "count_parameters"): "tensors",
    ("a", "layer_summary"): "direct_only",
    ("a", "accuracy"): "batch_mean",
    ("a", "seconds_per_sample"): "no_warmup",
    ("a", "pareto_front"): "slower_is_better",
    ("a", "top_probs"): "unsorted",
    ("b", "count_parameters"): "trainable_only",
    ("b", "accuracy"): "train_mode",
    ("b", "seconds_per_sample"): "train_mode",
    ("b", "pareto_front"): "drops_ties",
    ("c", "top_probs"): "ignores_k",
    ("c", "seconds_per_sample"): "autograd",
    ("c", "pareto_front"): "unsorted",
    ("d", "seconds_per_sample"): "total",
    ("d", "layer_summary"): "class_repr",
    ("e", "results"): "keys",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whichmodel")
    src = solution(LESSON, NB)
    jobs = {"solution": src, "stub": exercise(LESSON, NB)}
    for key, replace in VARIANTS.items():
        jobs[key] = variant(src, tmp / key / NB, replace=replace)
    jobs["e"] = variant(src, tmp / "e" / NB, replace_containing={"results = {name:": "results = {'linear': (1e-5, 0.9)}"})
    return grade_all(jobs, seed=606)


ALL_CHECKS = sorted(get_lesson(LESSON).checks)


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_reference_passes(graded, name):
    result = graded["solution"]
    check = find_check(result, name)
    assert check.status is Status.PASSED, check.message
    assert check.points == check.max_points == get_lesson(LESSON).checks[name].points
    assert result.cell_problems == []


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_stub_fails(graded, name):
    check = find_check(graded["stub"], name)
    assert check.status in (Status.FAILED, Status.ERROR)
    assert check.points == 0


def test_every_check_has_a_named_wrong_answer():
    assert {name for _, name in EXPECTED} == set(ALL_CHECKS)


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}-{k[1]}")
def test_misconception_is_named(graded, key):
    nb, name = key
    expected = EXPECTED[key]
    check = find_check(graded[nb], name)
    assert check.status in (Status.FAILED, Status.ERROR), check.message
    assert check.points < check.max_points
    mistakes = {m.name for m in get_lesson(LESSON).check_code()[name].mistakes}
    if expected in mistakes:
        assert check.kind == "known_mistake", (check.kind, check.message)
        assert expected in {c.mistake for c in check.cases}, check.message
    else:
        assert check.kind == expected, check.message
    assert check.hint


def test_report_draws_both_charts(graded):
    check = find_check(graded["solution"], "results")
    assert set(check.series) == {"yours", "reference"}
    assert all(spec["kind"] == "line" and len(spec["x"]) == 4 for spec in check.series.values())
    from grader.html import series_plots

    assert len(series_plots(check)) == 2


def _reference_function(name: str):
    """A function of the solution notebook, run here (trusted: our own reference)."""
    import nbformat

    nb = nbformat.read(str(solution(LESSON, NB)), as_version=4)
    source = next(c.source for c in nb.cells if c.cell_type == "code" and f"def {name}(" in c.source)
    import statistics
    import time

    import torch

    ns = {"statistics": statistics, "time": time, "torch": torch}
    exec(source, ns)  # noqa: S102
    return ns[name]


def test_timing_checks_are_stable_under_load(tmp_path):
    """The reference passes both timing cases 3 times in a row while two busy processes compete
    for the CPU; the ranking is judged against a first measurement taken under the same load."""
    import subprocess
    import sys

    lesson = get_lesson(LESSON)
    code = lesson.check_code()
    module = sys.modules[code["seconds_per_sample"].cases.__module__]
    sys.path.insert(0, str(lesson.root))  # the probes import zoo.py, which sits next to the notebook
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        ns = {"seconds_per_sample": _reference_function("seconds_per_sample")}
        expected = module.probe_timing_rank(ns, list(module.ZOO))
        for _ in range(3):  # 10 in a row passed when the pack was written; 3 keeps CI's time
            got = module.probe_timing_method(ns, module.SLEEP_PER_SAMPLE, module.COLD_EXTRA)
            verdict = module.judge_timing_method(got, None, None)
            assert verdict.ok, verdict.message
            verdict = module.judge_timing_rank(module.probe_timing_rank(ns, list(module.ZOO)), expected, None)
            assert verdict.ok, verdict.message
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        sys.path.remove(str(lesson.root))
