"""In the notebook, like learntools: hint(), solution() (asks first, records the view), check()
and check_all() through a `learn check` subprocess - the reference never enters this process."""

from __future__ import annotations

import sys

import pytest

from grader.lessons import get_lesson
from grader.progress import count_events

from .conftest import solution as solution_path
from .conftest import variant


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_all_four_are_exported_lazily():
    import grader

    for name in ("check", "hint", "solution", "check_all"):
        assert name in grader.__all__ and callable(getattr(grader, name))


def test_hint_nudges_first_and_is_recorded(home):
    from grader import hint

    hints = get_lesson("lesson3").checks["fit_quad"].hints
    first = hint("fit_quad")
    assert first.title == f"Hint 1 of {len(hints)} for fit_quad" and first.body == hints[0]
    assert "zero_(" not in first.body and "zero_grad" not in first.body
    assert 'hint("fit_quad") again' in first.note and "Hint 1" in first._repr_html_()
    assert hint("fit_quad").body == hints[1]
    assert count_events("hint", "fit_quad", "lesson3") == 2


def test_solution_asks_first_then_shows_and_records(home):
    from grader import solution

    ask = solution("quad")
    assert "confirm=True" in ask.body and "def quad" not in str(ask)
    assert count_events("solution", "quad", "lesson3") == 0
    shown = solution("quad", confirm=True)
    assert shown.code and "def quad(" in shown.body and "return" in shown.body, str(shown)
    assert "<pre><code>" in shown._repr_html_()
    assert count_events("solution", "quad", "lesson3") == 1


@pytest.mark.slow
def test_check_and_check_all_grade_the_saved_notebook_in_a_subprocess(home, tmp_path, monkeypatch):
    from grader import check, check_all
    from grader.results import Status

    nb = variant(solution_path("lesson3", "01_quadratic.ipynb"), tmp_path / "w" / "01_quadratic.ipynb",
                 replace={"mse": "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"})  # fmt: skip
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))  # as Jupyter sets it for the notebook's kernel
    before = set(sys.modules)
    one = check("mse", namespace=None)
    assert one.status is Status.FAILED and one.result.kind == "known_mistake", str(one)
    assert not any(m.startswith("_learn_checks_") for m in set(sys.modules) - before)  # no checks.py, no reference here
    everything = check_all()
    names = {r.name: r for r in everything.results}
    assert names["mse"].status is Status.FAILED and names["quad_mse"].passed and names["quad"].passed
    assert "`learn check` gives the grade" in str(everything) and "learn check" in everything._repr_html_()
    from grader.progress import connect

    with connect(create=False) as conn:  # both runs are in the progress history, like any `learn check`
        rows = conn.execute("SELECT item, status FROM results WHERE item = 'mse'").fetchall()
    assert rows == [("mse", "failed"), ("mse", "failed")]


def test_hint_and_solution_are_harmless_while_learn_check_grades_the_notebook(home, monkeypatch):
    """A `hint("mse")` left in a notebook must not fail its grade: in the grading sandbox the packs are invisible."""
    from grader import hint, inline, solution

    monkeypatch.setattr(inline, "in_grading_sandbox", lambda: True)
    for shown in (hint("mse"), solution("mse"), solution("no_such_function", confirm=True)):
        assert "not shown while `learn check` grades this notebook" in str(shown)
    assert count_events("hint", "mse", "lesson3") == 0


def test_check_all_finds_its_notebook_without_a_jupyter_session(tmp_path, monkeypatch):
    """`jupyter nbconvert --execute` runs the kernel in the notebook's folder with no session name."""
    import nbformat

    from grader.inline import _running_notebook

    monkeypatch.chdir(tmp_path)
    for name, cells in (("other.ipynb", ["x = 1"]), ("01_quadratic.ipynb", ["x = 1", "from grader import check_all\ncheck_all()"])):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), str(tmp_path / name))
    found = _running_notebook({"In": ["", "x = 1", "from grader import check_all\ncheck_all()"]})
    assert found == (tmp_path / "01_quadratic.ipynb").resolve()
    assert _running_notebook({"In": ["", "x = 1"]}) is None  # two notebooks hold that cell: no guess
