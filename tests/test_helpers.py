"""Help for learners: progressive hints, one function's solution, and `check()` in a notebook."""

from __future__ import annotations

import random

import nbformat
import pytest

from grader.cli import cli
from grader.helpers import UnknownCheckError, all_hints, find_check, next_hint, reset_hints, solution_source
from grader.lessons import get_lesson
from grader.progress import count_events

QUAD_HINTS = get_lesson("lesson3").checks["quad"].hints


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownCheckError, match=r"no graded function named 'qaud'. Did you mean: quad"):
        find_check("qaud")
    with pytest.raises(UnknownCheckError, match="Graded functions: .*fit_quad"):
        find_check("zzzzzz")
    assert find_check("quad")[0].id == "lesson3"


def test_hints_come_one_more_per_call_and_stop_at_the_last(home):
    shown = [next_hint("quad") for _ in range(len(QUAD_HINTS) + 1)]
    assert [h.number for h in shown] == [1, 2, 3, 3]
    assert [h.text for h in shown[:3]] == list(QUAD_HINTS)
    assert shown[-1].last and not shown[0].last and shown[0].warning is None
    assert count_events("hint", "quad", "lesson3") == 4
    assert reset_hints("quad") is None
    assert next_hint("quad").number == 1
    assert [h.number for h in all_hints("quad")] == [1, 2, 3]


def test_hint_command(runner, home):
    first = runner.invoke(cli, ["hint", "quad"])
    assert first.exit_code == 0 and "Hint 1 of 3 for quad" in first.output and QUAD_HINTS[0] in first.output
    second = runner.invoke(cli, ["hint", "quad"])
    assert "Hint 2 of 3" in second.output and QUAD_HINTS[1] in second.output and QUAD_HINTS[0] not in second.output
    everything = runner.invoke(cli, ["hint", "quad", "--all"])
    assert all(h in everything.output for h in QUAD_HINTS)
    again = runner.invoke(cli, ["hint", "quad", "--reset"])
    assert again.exit_code == 0 and "start again" in again.output and "Hint 1 of 3" in again.output


def test_hint_for_unknown_name_exits_2_with_suggestions(runner, home):
    result = runner.invoke(cli, ["hint", "fit_qaud"])
    assert result.exit_code == 2 and "Did you mean: fit_quad" in result.output and "Traceback" not in result.output


def test_hints_work_when_the_history_is_corrupt(runner, home):
    home.mkdir()
    (home / "progress.db").write_bytes(b"garbage" * 100)
    result = runner.invoke(cli, ["hint", "quad"])
    assert result.exit_code == 0 and "Hint 1 of 3" in result.output and "progress history not updated" in result.output


def test_solution_source_is_only_that_function_without_markers():
    lesson, spec, source = solution_source("fit_quad")
    assert source.startswith("def fit_quad(params, lr=0.01, steps=10):")
    assert "params.grad.zero_()" in source
    assert "#|" not in source and "SOLUTION" not in source
    assert "def quad_mse" not in source and "def mse" not in source
    compile(source, "<solution>", "exec")  # whole and valid


def test_solution_command_asks_first_and_records(runner, home):
    declined = runner.invoke(cli, ["solution", "mse"], input="n\n")
    assert declined.exit_code == 0 and "Not shown" in declined.output and "def mse" not in declined.output
    assert count_events("solution", "mse", "lesson3") == 0
    shown = runner.invoke(cli, ["solution", "mse"], input="y\n")
    assert shown.exit_code == 0 and "def mse(preds, acts):" in shown.output and ".mean()" in shown.output
    assert "def quad" not in shown.output
    assert count_events("solution", "mse", "lesson3") == 1
    direct = runner.invoke(cli, ["solution", "mse", "--yes"])
    assert direct.exit_code == 0 and "def mse" in direct.output and count_events("solution", "mse", "lesson3") == 2


def test_solution_without_an_answer_is_not_shown(runner, home):
    result = runner.invoke(cli, ["solution", "mse"], input="")
    assert result.exit_code == 1 and "def mse" not in result.output and "--yes" in result.output


def test_solution_of_unknown_name_exits_2(runner, home):
    result = runner.invoke(cli, ["solution", "mean_squared", "--yes"])
    assert result.exit_code == 2 and "no graded function named 'mean_squared'" in result.output


# ---------------------------------------------------------------------------------------------
# check() in a notebook


def test_check_is_exported_lazily():
    import grader

    assert "check" in grader.__all__ and callable(grader.check)


def test_check_inside_the_grading_sandbox_says_it_is_not_available(tmp_path, monkeypatch):
    from grader import check

    monkeypatch.setenv("LEARN_SANDBOX", "bwrap")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = check("quad", namespace={})
    assert result.result is None and not result.passed
    assert "not available" in str(result) and "learn check" in result.unavailable
    assert "not available" in result._repr_html_()
    assert check("anything_at_all").unavailable  # lesson packs may be invisible there too: no lookup


QUAD_RIGHT = "def quad(a, b, c, x):\n    return a * x**2 + b * x + c\n"
QUAD_WRONG = "def quad(a, b, c, x):\n    return a * x * 2 + b * x + c\n"


def namespace(*sources: str) -> dict:
    ns: dict = {"__name__": "__main__"}
    exec("import torch\nfrom functools import partial\n" + "".join(sources), ns)
    return ns


@pytest.mark.slow
def test_check_in_process_judges_right_wrong_and_missing():
    from grader import check
    from grader.results import Status

    right = check("quad", namespace=namespace(QUAD_RIGHT))
    assert right.status is Status.PASSED and right.passed and "1/1 points" in str(right)
    wrong = check("quad", namespace=namespace(QUAD_WRONG))
    assert (
        wrong.status is Status.FAILED
        and wrong.result.kind == "known_mistake"
        and "doubles x where it should square it" in wrong.result.message
    )
    html = wrong._repr_html_()
    assert "learn-check" in html and "fail" in html and "learn check" in html
    missing = check("fit_quad", namespace=namespace(QUAD_RIGHT))
    assert missing.status is Status.ERROR and "no cell of your notebook defines `fit_quad`" in missing.result.message


@pytest.mark.slow
def test_check_restores_the_notebook_globals_and_random_state():
    import torch

    from grader import check

    ns = namespace(QUAD_RIGHT, "def mk_quad(a, b, c):\n    return partial(quad, a, b, c)\n",
                   "def mse(p, a):\n    return ((p - a) ** 2).mean()\n",
                   "def quad_mse(params):\n    return mse(mk_quad(*params)(x), y)\n", "x = 'my x'\n")  # fmt: skip
    torch.manual_seed(123)
    random.seed(7)
    expected_torch, expected_py = torch.rand(3), random.random()
    torch.manual_seed(123)
    random.seed(7)
    result = check("quad_mse", namespace=ns)
    assert result.passed, str(result)
    assert ns["x"] == "my x" and "y" not in ns  # the probe set both for its call; both are back
    assert torch.equal(torch.rand(3), expected_torch) and random.random() == expected_py


@pytest.mark.slow
def test_check_in_a_real_jupyter_kernel_shows_html(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import torch\n" + QUAD_WRONG),
        nbformat.v4.new_code_cell("from grader import check\ncheck('quad')"),
    ])  # fmt: skip
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[1].outputs
    data = next(o["data"] for o in outputs if o.get("output_type") == "execute_result")
    assert 'class="learn-check"' in data["text/html"] and "known mistake: times_two" in data["text/html"]
    assert data["text/plain"].startswith("quad: failed, 0/1 points")
