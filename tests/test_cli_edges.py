"""The small edges of the CLI: "did you mean" for every name a learner types, one way to name a work
folder in every suggestion, a file that is not a notebook refused without starting a kernel, Ctrl-C
exiting 130 in every command, and quiz sessions and counts that say what they hold. No kernel runs here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from grader.cli import cli
from grader.results import NotebookResult, RunResult, Status

from .conftest import EXERCISES


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.mark.parametrize("args, suggestion", [
    (["check", "lessn3"], "Did you mean lesson3?"),
    (["fetch", "chaptr4"], "Did you mean chapter4?"),
    (["predict", "lesso3"], "Did you mean lesson3?"),
    (["quiz", "chaptr4"], "Did you mean chapter4?"),
    (["quiz", "chapter4", "--topic", "sdg"], "Did you mean sgd?"),
    (["hint", "mse_"], "Did you mean: mse"),
    (["check", "lesson3", "--only", "fit_quadd"], "Did you mean: fit_quad"),
])  # fmt: skip
def test_a_mistyped_name_gets_the_closest_names_and_exit_2(runner, home, args, suggestion):
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and suggestion in result.output, result.output
    assert "Traceback" not in result.output


def test_fetch_names_the_work_folder_the_way_readme_does(runner, home, tmp_path):
    result = runner.invoke(cli, ["fetch", "lesson3"])
    assert result.exit_code == 0 and "then run `learn check lesson3`." in result.output and "--dir" not in result.output
    elsewhere = runner.invoke(cli, ["fetch", "lesson3", "--dir", "work/l3"])
    assert elsewhere.exit_code == 0 and "then run `learn check work/l3`." in elsewhere.output, elsewhere.output


def test_only_checks_the_notebooks_that_hold_the_function(home, tmp_path):
    from grader.workspace import resolve_targets

    shutil.copytree(EXERCISES / "lesson3", tmp_path / "lesson3")
    assert [p.name for p in resolve_targets(("lesson3",), None, ["mse"])] == ["01_quadratic.ipynb"]
    assert [p.name for p in resolve_targets(("lesson3",), None, ["mse", "linear"])] == ["01_quadratic.ipynb", "03_matmul.ipynb"]
    assert len(resolve_targets(("lesson3",), None)) == 3


def test_a_file_that_is_not_a_notebook_is_refused_without_a_kernel(runner, home, tmp_path, monkeypatch):
    """The 7 s of starting a kernel pool went into telling a learner their file is not JSON: no longer."""
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    graded: list = []

    def fake_check(paths, **options):
        graded.append([p.name for p in paths])
        return RunResult([NotebookResult(path=str(p), exercise="01_quadratic.ipynb", lesson="lesson3", status=Status.PASSED)
                          for p in paths], seed=7)  # fmt: skip

    monkeypatch.setattr("grader.cache.cached_check", fake_check)
    result = runner.invoke(cli, ["check", str(bad), "--no-html"])
    assert result.exit_code == 2 and "is not valid JSON" in result.output and graded == []
    good = tmp_path / "01_quadratic.ipynb"
    shutil.copyfile(EXERCISES / "lesson3" / "01_quadratic.ipynb", good)
    stray = tmp_path / "notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(stray))
    result = runner.invoke(cli, ["check", str(bad), str(good), str(stray), "--no-html", "--json", str(tmp_path / "r.json")])
    assert graded == [["01_quadratic.ipynb"]], graded  # only the gradable one reaches the grader
    order = [n["path"] for n in json.loads((tmp_path / "r.json").read_text())["notebooks"]]
    assert order == [str(bad), str(good), str(stray)] and "cannot tell which exercise" in result.output


# ---------------------------------------------------------------------------------------------
# Ctrl-C: 130 everywhere


def _interrupt(prompt=""):
    raise KeyboardInterrupt


def test_ctrl_c_stops_learn_watch_with_130(runner, home, monkeypatch, tmp_path):
    import asyncio

    def interrupted(coro):
        coro.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(asyncio, "run", interrupted)
    folder = tmp_path / "lesson3"
    folder.mkdir()
    from .conftest import solution

    shutil.copy(solution("lesson3", "03_matmul.ipynb"), folder / "03_matmul.ipynb")
    result = runner.invoke(cli, ["watch", "lesson3", "--dir", str(folder), "--no-service"])
    assert result.exit_code == 130 and "Stopped watching" in result.output, result.output


def test_ctrl_c_exits_130_in_quiz_predict_and_review(runner, home, monkeypatch):
    monkeypatch.setattr("grader.cli._read_line", _interrupt)
    assert runner.invoke(cli, ["quiz", "lesson3"]).exit_code == 130

    class NoKernels:
        def __init__(self, lesson, drills):
            pass

        def outcome(self, drill):
            return "not run"

        def close(self):
            pass

    monkeypatch.setattr("grader.predict.DrillRunner", NoKernels)
    assert runner.invoke(cli, ["predict", "lesson3"]).exit_code == 130
    from grader.cards import record_items
    from grader.quiz import find_quiz

    question = next(q for q in find_quiz("lesson3").questions if q.type in ("single", "numeric", "text"))
    assert record_items([("quiz", f"lesson3:{question.id}", False)]) is None  # a wrong answer: due now
    result = runner.invoke(cli, ["review"])
    assert result.exit_code == 130 and "Stopped" in result.output, result.output


def test_ctrl_c_exits_130_in_check_and_grade(runner, home, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    shutil.copytree(EXERCISES / "lesson3", tmp_path / "lesson3")
    monkeypatch.setattr("grader.cache.cached_check", interrupted)
    assert runner.invoke(cli, ["check", "lesson3", "--no-html"]).exit_code == 130
    monkeypatch.setattr("grader.batch.grade_folder", interrupted)
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    assert runner.invoke(cli, ["grade", str(tmp_path / "subs"), "--assignment", "lesson3"]).exit_code == 130


# ---------------------------------------------------------------------------------------------
# quiz sessions say what they hold


def _answer_some(runner, monkeypatch, args, n):
    answers = iter(["1"] * n)

    def read(prompt=""):
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("grader.cli._read_line", read)
    return runner.invoke(cli, ["quiz", *args])


def test_resuming_names_the_sessions_topics_and_a_different_request(runner, home, monkeypatch):
    from grader.quiz import find_quiz

    topic = next(q.topic for q in find_quiz("chapter4").questions if q.type == "single")
    first = _answer_some(runner, monkeypatch, ["chapter4", "--topic", topic], 1)
    assert "Stopped: your progress is saved" in first.output, first.output
    again = _answer_some(runner, monkeypatch, ["chapter4"], 0)
    assert f"You have an unfinished chapter4 quiz (topic {topic})" in again.output, again.output
    assert f"You asked for all topics; resuming keeps topic {topic}" in again.output


def test_progress_counts_answers_in_unfinished_sessions(runner, home, monkeypatch):
    _answer_some(runner, monkeypatch, ["lesson3"], 3)
    result = runner.invoke(cli, ["progress"])
    assert result.exit_code in (0, 2)
    assert "Unfinished quiz sessions, not counted as quizzes until finished: lesson3 (" in result.output, result.output
    assert "`learn quiz lesson3` resumes" in result.output


def test_a_lesson_id_with_dir_means_that_folder_even_beside_a_same_named_folder(tmp_path, monkeypatch):
    """A course author's pack folder `lesson3/` in the current folder must not be graded when the
    learner's notebooks are named with --dir (it silently graded the solutions)."""
    from grader.workspace import resolve_targets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lesson3").mkdir()
    (tmp_path / "lesson3" / "01_quadratic.ipynb").write_text("{}")  # the pack's own solution
    work = tmp_path / "try"
    work.mkdir()
    (work / "01_quadratic.ipynb").write_text("{}")
    assert resolve_targets(["lesson3"], work) == [work / "01_quadratic.ipynb"]
    assert resolve_targets(["lesson3"], None) == [Path("lesson3") / "01_quadratic.ipynb"]  # without --dir: ./lesson3
