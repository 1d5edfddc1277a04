"""Blame the right function: a failing function is re-checked with correct (reference-valued)
graded helpers, relayed through the grader; both verdicts are kept and scored by the pack's policy."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from grader.errors import LessonPackError
from grader.lessons import get_lesson, load_lesson
from grader.results import CheckResult, Status

from .conftest import SOLUTIONS, find_check, grade_all, solution, variant

QUAD = "01_quadratic.ipynb"
MSE_SUM = "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"
NO_ZERO_GRAD = (
    "def fit_quad(params, lr=0.01, steps=10):\n"
    "    params = params.clone().requires_grad_()\n"
    "    losses = []\n"
    "    for i in range(steps):\n"
    "        loss = quad_mse(params)\n"
    "        loss.backward()\n"
    "        with torch.no_grad():\n"
    "            params -= params.grad * lr\n"
    "        losses.append(loss.item())\n"
    "    return params.detach(), losses"
)


# ---------------------------------------------------------------------------------------------
# fast: dependencies, manifest, the kernel-side relay pieces


def test_dependencies_come_from_the_solution_code():
    lesson = get_lesson("lesson3")
    deps = lesson.dependencies(lesson.notebook(QUAD))
    assert deps["quad_mse"] == ["mk_quad", "mse", "quad"]
    assert "quad_mse" in deps["fit_quad"] and "mse" in deps["fit_quad"]  # transitive
    assert deps["mse"] == [] and deps["quad"] == []
    ch4 = get_lesson("chapter4")
    assert "mnist_loss" in ch4.dependencies(ch4.notebooks[0])["train_epoch"]


def _pack_copy(tmp_path: Path, edit) -> Path:
    pack = tmp_path / "lesson3"
    shutil.copytree(SOLUTIONS / "lesson3", pack)
    toml = pack / "lesson.toml"
    toml.write_text(edit(toml.read_text()))
    return pack


def test_manifest_declares_scoring_and_dependencies(tmp_path):
    pack = _pack_copy(tmp_path, lambda t: t.replace('version = "1"', 'version = "1"\nscoring = "as_written"').replace(
        'title = "quad_mse: the loss of a parameter guess"', 'title = "quad_mse: the loss of a parameter guess"\ndepends = ["mse"]'))  # fmt: skip
    lesson = load_lesson(pack, tmp_path / "ex")
    assert lesson.scoring == "as_written"
    assert lesson.dependencies(lesson.notebook(QUAD))["quad_mse"] == ["mse"]
    assert get_lesson("lesson3").scoring == "isolated"  # the default: each function on its own


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.replace('version = "1"', 'version = "1"\nscoring = "strict"'), "scoring"),
        (lambda t: t.replace('title = "quad_mse: the loss of a parameter guess"', 'title = "q"\ndepends = ["relu_model"]'), "depends"),
    ],
)
def test_bad_scoring_or_dependency_is_a_pack_error(tmp_path, edit, words):
    with pytest.raises(LessonPackError, match=words):
        load_lesson(_pack_copy(tmp_path, edit), tmp_path / "ex")


@pytest.fixture
def kernel_code():
    from grader.inline import _kernel_functions

    return _kernel_functions()


def test_shim_asks_then_answers_with_the_reference_value_and_gradient(kernel_code):
    import torch

    run_probe, encode = kernel_code["_run_probe"], kernel_code["encode"]

    def probe(ns, p):
        p = p.clone().requires_grad_()
        loss = ns["user"](p)
        loss.backward()
        return {"loss": loss.detach(), "grad": p.grad}

    from grader.checks import probe_source

    source, entry = probe_source(probe)
    ns = {"mse": lambda p: (p**2).sum() * 100}  # the learner's wrong helper
    exec("def user(p):\n    return mse(p)", ns)
    spec = {"id": "x", "source": source, "entry": entry, "args": encode((torch.tensor([1.0, 2.0]),)), "kwargs": encode({}),
            "requires": ["user"], "callables": ["user"], "isolate": {"deps": ["mse"], "table": {}}}  # fmt: skip
    first = run_probe(spec, ns)
    assert first["status"] == "need" and first["request"]["name"] == "mse" and first["request"]["grad"] is True
    assert ns["mse"](torch.tensor([1.0])) == 100  # the learner's own function is back afterwards
    # the reference side answers (here: a correct mse, mean of squares) with value and Jacobian
    answer, _ = kernel_code["_answer"](lambda p: (p**2).mean(), first["request"])
    spec["isolate"]["table"][first["request"]["key"]] = encode(answer)
    second = run_probe(spec, ns)
    assert second["status"] == "ok", second
    value = kernel_code["decode"](second["value"])
    assert float(value["loss"]) == pytest.approx(2.5)
    assert value["grad"].tolist() == pytest.approx([1.0, 2.0])  # d mean(p^2)/dp = p


def test_responder_answers_in_the_probe_setting(kernel_code):
    """The reference answers after the probe set its globals (x, y), as the learner's call saw them."""
    import torch

    from grader.checks import probe_source

    def probe(ns, x):
        ns["x"] = x
        return ns["target"](1.0)

    source, entry = probe_source(probe)
    encode = kernel_code["encode"]
    ns = {}
    exec("def helper(s):\n    return x * s\ndef target(s):\n    return helper(s)", ns)
    key, blob = kernel_code["_relay_key"]("helper", [((2.0,), {})], False)
    request = {"name": "helper", "key": key, "stages": blob[1], "grad": False}
    spec = {"id": "r", "source": source, "entry": entry, "args": encode((torch.tensor([3.0]),)), "kwargs": encode({}),
            "requires": [], "callables": [], "respond": {"target": "target", "requests": [request]}}  # fmt: skip
    out = kernel_code["_run_probe"](spec, ns)
    assert out["status"] == "answers"
    assert kernel_code["decode"](out["value"])[0]["value"].tolist() == [6.0]
    assert ns["target"].__name__ == "target"  # restored


def test_a_helper_that_returns_a_function_is_relayed_call_by_call(kernel_code):
    """mk_quad returns a function: the shim hands back a stand-in whose calls are relayed too, so a
    learner's wrong (or hanging) mk_quad never runs, and the gradient still flows into params."""
    import torch

    from grader.checks import probe_source

    def probe(ns, p, x):
        p = p.clone().requires_grad_()
        value = ns["user"](p, x)
        value.sum().backward()
        return {"value": value.detach(), "grad": p.grad}

    source, entry = probe_source(probe)
    encode, decode = kernel_code["encode"], kernel_code["decode"]
    ns = {}
    exec("def mk(a, b):\n    while True:\n        pass\ndef user(p, x):\n    return mk(*p)(x)", ns)
    spec = {"id": "c", "source": source, "entry": entry, "args": encode((torch.tensor([2.0, 3.0]), torch.tensor([1.0, 2.0]))),
            "kwargs": encode({}), "requires": ["user"], "callables": ["user"], "isolate": {"deps": ["mk"], "table": {}}}  # fmt: skip

    def reference_mk(a, b):
        return lambda x: a * x + b

    for _ in range(3):
        out = kernel_code["_run_probe"](spec, ns)
        if out["status"] != "need":
            break
        spec["isolate"]["table"][out["request"]["key"]] = encode(kernel_code["_answer"](reference_mk, out["request"])[0])
    assert out["status"] == "ok", out
    value = decode(out["value"])
    assert value["value"].tolist() == [5.0, 7.0]  # 2 * x + 3
    assert value["grad"].tolist() == [3.0, 2.0]  # d/da sum(a x + b) = sum(x), d/db = len(x)


def _check(name, status, **kw) -> CheckResult:
    return CheckResult(name=name, status=status, points=1.0 if status is Status.PASSED else 0.0, max_points=1.0, **kw)


def test_combine_scores_by_policy_and_keeps_both_verdicts():
    from grader.cascade import combine

    written = _check("quad_mse", Status.FAILED, message="values differ", hint="a nudge")
    isolated = _check("quad_mse", Status.PASSED)
    checks = {"mse": _check("mse", Status.FAILED)}
    scored = combine(written, isolated, ["mse"], checks, "isolated")
    assert scored.status is Status.PASSED and scored.points == 1.0 and scored.scored == "isolated"
    assert scored.as_written["status"] == "failed" and scored.isolated["status"] == "passed"
    assert scored.blamed_on == ["mse"]
    assert scored.message.startswith("`quad_mse` is right: with a correct `mse` it passes")
    assert "fix `mse` first" in scored.message
    strict = combine(written, isolated, ["mse"], checks, "as_written")
    assert strict.status is Status.FAILED and strict.points == 0.0 and strict.isolated["status"] == "passed"
    assert combine(written, None, ["mse"], checks, "isolated") is written  # no isolated verdict: nothing changes


# ---------------------------------------------------------------------------------------------
# slow: real kernels


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cascade")
    jobs = {
        "issue": variant(solution("lesson3", QUAD), tmp / "issue" / QUAD, replace={"mse": MSE_SUM, "fit_quad": NO_ZERO_GRAD}),
        "mse_only": variant(solution("lesson3", QUAD), tmp / "mse" / QUAD, replace={"mse": MSE_SUM}),
        "reference": solution("lesson3", QUAD),
    }
    return grade_all(jobs, seed=777)


@pytest.mark.slow
def test_correct_function_keeps_its_points_and_the_helper_is_blamed(graded):
    q = find_check(graded["issue"], "quad_mse")
    assert q.status is Status.PASSED and q.points == q.max_points, q.message
    assert q.as_written["status"] == "failed" and q.scored == "isolated"
    assert q.blamed_on == ["mse"]
    assert "`quad_mse` is right: with a correct `mse` it passes. It fails only because your `mse` is wrong; fix `mse` first." in q.message


@pytest.mark.slow
def test_known_mistake_is_named_on_the_isolated_result(graded):
    f = find_check(graded["issue"], "fit_quad")
    assert f.status is Status.FAILED and f.points == 0
    assert f.kind == "known_mistake" and f.isolated["mistake"] == "no_zero_grad"
    assert any(c.mistake == "no_zero_grad" for c in f.cases)
    assert f.blamed_on == ["mse"]
    assert f.message.startswith("`fit_quad` is wrong on its own too (checked with a correct `mse`)")
    assert "known mistake `no_zero_grad`" in f.blame  # named in the verdict line, explained in the hint
    assert "never resets the gradients" in f.hint  # the misconception's explanation is the hint shown


@pytest.mark.slow
def test_only_the_wrong_helper_loses_points(graded):
    r = graded["mse_only"]
    assert {c.name: c.status for c in r.checks if c.status is not Status.PASSED} == {"mse": Status.FAILED}
    f = find_check(r, "fit_quad")
    assert f.blamed_on == ["mse"] and f.as_written["status"] == "failed"
    assert r.points == r.max_points - find_check(r, "mse").max_points


@pytest.mark.slow
def test_reference_needs_no_relay(graded):
    r = graded["reference"]
    assert r.status is Status.PASSED
    assert all(c.isolated is None and not c.blamed_on for c in r.checks)


@pytest.mark.slow
def test_json_carries_both_verdicts(graded):
    data = json.loads(json.dumps(graded["issue"].to_dict()))
    q = next(c for c in data["checks"] if c["name"] == "quad_mse")
    assert q["isolated"]["status"] == "passed" and q["as_written"]["status"] == "failed" and q["blamed_on"] == ["mse"]
    from grader.results import NotebookResult

    again = NotebookResult.from_dict(data)
    assert find_check(again, "quad_mse").blamed_on == ["mse"]


@pytest.mark.slow
def test_reference_code_never_reaches_the_learner_kernel(tmp_path, monkeypatch):
    """Every probe sent to the learner's kernel during a relay holds plain values only: no
    responder, no mistake, no line of the solution's code."""
    from grader import cascade, execute

    sent: list[tuple[str, list[dict]]] = []
    answers: list[str] = []
    original, put = execute.KernelSession.probe, cascade._put

    async def spy(self, probes, budget=None):
        sent.append((self._run.job.name, probes))
        return await original(self, probes, budget)

    def spy_put(folder, name, text):
        if name.startswith("ans-"):
            answers.append(text)
        return put(folder, name, text)

    monkeypatch.setattr(execute.KernelSession, "probe", spy)
    monkeypatch.setattr(cascade, "_put", spy_put)
    nb = variant(solution("lesson3", QUAD), tmp_path / "w" / QUAD, replace={"mse": MSE_SUM})
    result = grade_all({"w": nb}, seed=5, pool_size=1)["w"]
    assert find_check(result, "quad_mse").passed
    solution_lines = [ln.strip() for c in json.load(open(solution("lesson3", QUAD)))["cells"] if c["cell_type"] == "code"
                      for ln in "".join(c["source"]).splitlines() if ln.strip().startswith("return")]  # fmt: skip
    learner_side = [p for name, probes in sent if name == QUAD and any("isolate" in q for q in probes) for p in probes]
    assert learner_side, "the relay ran"
    for probe in learner_side:
        assert "respond" not in probe and "replace" not in probe
        text = json.dumps(probe)
        assert not any(line in text for line in solution_lines if len(line) > 12)
    assert answers, "answers travelled to the learner's kernel"
    for text in answers:  # plain encoded values only
        assert not any(line in text for line in solution_lines if len(line) > 12)
        assert set(json.loads(text)) <= {"answer", "backward", "error"}


@pytest.mark.slow
def test_a_helper_that_never_returns_is_judged_once_and_its_callers_keep_their_points(tmp_path):
    """An mse that loops forever: its own check times out once (its other inputs are not tried),
    quad_mse and fit_quad are not called with it at all but re-checked against the reference's mse
    (full points, mse named), cells that hung are not run again for that, and the whole check
    stays within the notebook's own limits (it took 6.5 minutes when every caller waited)."""
    import time

    from grader.grading import Grader

    nb = variant(solution("lesson3", QUAD), tmp_path / "w" / QUAD, replace={"mse": "def mse(preds, acts):\n    while True:\n        pass"})

    async def run():
        async with Grader(pool_size=2, seed=5, cell_timeout=5) as grader:
            return await grader.grade(nb)

    started = time.monotonic()
    result = asyncio.run(run())
    took = time.monotonic() - started
    mse = find_check(result, "mse")
    assert mse.status is Status.TIMEOUT and "not called again" in " ".join(c.message for c in mse.cases[1:])
    for caller in ("quad_mse", "fit_quad"):
        check = find_check(result, caller)
        assert check.points == check.max_points and check.blamed_on == ["mse"], check.message
        assert "was not called" in check.as_written["message"]  # not made to wait for mse as written
    hung = [p for p in result.cell_problems if p.kind == "timeout"]
    limits = len(hung) * 5 + 10 + 60  # the hung cells, one probe limit, kernels and the relay's replay
    assert hung and took < limits, (took, limits)


@pytest.mark.slow
def test_a_relay_that_cannot_be_answered_blames_nobody(tmp_path, monkeypatch):
    """When the relay breaks (here: every request refused as if forged), the verdicts as written
    stand, nobody is blamed, and nothing waits for an answer that will not come."""
    from grader import cascade

    monkeypatch.setattr(cascade, "_valid_request", lambda text, deps: False)
    nb = variant(solution("lesson3", QUAD), tmp_path / "w" / QUAD, replace={"mse": MSE_SUM})
    result = grade_all({"w": nb}, seed=5, pool_size=1)["w"]
    f = find_check(result, "fit_quad")
    assert f.isolated is None and f.blamed_on == [] and f.scored == "as_written"
    assert f.status is Status.FAILED and "invalid relay request" in f.relay  # the verdict as written stands
    assert result.duration < 60


def test_a_stub_that_raises_itself_is_not_re_checked():
    from grader.cascade import _unwritten_itself

    stub = _check(
        "quad_mse", Status.FAILED, kind="not_implemented", traceback=["cell 14, line 3, in quad_mse", "    raise NotImplementedError"]
    )
    assert _unwritten_itself("quad_mse", stub)
    via_helper = _check("quad_mse", Status.FAILED, kind="not_implemented",
                        traceback=["cell 14, line 3, in quad_mse", "    return mse(f(x), y)", "cell 12, line 2, in mse"])  # fmt: skip
    assert not _unwritten_itself("quad_mse", via_helper)  # the helper is the stub: correct helpers may clear it


def test_a_relay_the_machinery_could_not_run_is_never_cached(tmp_path, monkeypatch):
    from grader.cache import load_result, store_result
    from grader.results import NotebookResult

    monkeypatch.setenv("LEARN_CACHE_DIR", str(tmp_path / "cache"))
    check = _check("quad_mse", Status.FAILED, relay="machinery: the kernel failed to start")
    result = NotebookResult(path="nb.ipynb", exercise="01_quadratic.ipynb", lesson="lesson3", status=Status.FAILED, checks=[check])
    store_result("k" * 32, result)
    assert load_result("k" * 32, tmp_path / "nb.ipynb") is None
    check.relay = ""
    store_result("k" * 32, result)
    assert load_result("k" * 32, tmp_path / "nb.ipynb") is not None
