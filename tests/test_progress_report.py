"""`learn progress`: the summary read back from the history, its terminal and HTML views, and a
clear error (exit 2) when the history is unreadable - while `learn check` keeps grading."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3

import pytest

from grader.cli import cli
from grader.lessons import get_lesson
from grader.progress import (
    ProgressError,
    QuizAnswer,
    _streak,
    hints_shown,
    record_check,
    record_event,
    record_quiz,
    summarize,
)
from grader.results import CheckResult, NotebookResult, RunResult, Status

from .conftest import copy_to, solution


def run_of(results: dict[str, bool], notebook: str = "01_quadratic.ipynb") -> RunResult:
    spec = get_lesson("lesson3").checks
    checks = [CheckResult(name, Status.PASSED if ok else Status.FAILED, spec[name].points if ok else 0, spec[name].points)
              for name, ok in results.items()]  # fmt: skip
    nb = NotebookResult(path=f"/w/{notebook}", exercise=notebook, lesson="lesson3", status=Status.FAILED,
                        points=sum(c.points for c in checks), max_points=sum(c.max_points for c in checks), checks=checks)  # fmt: skip
    return RunResult([nb], seed=1)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "p.db"
    assert record_check(run_of({"quad": False, "mse": False}), path=path) is None
    assert record_check(run_of({"quad": True, "mse": False}), path=path) is None
    assert record_check(run_of({"fit_quad": True}), path=path) is None  # --only fit_quad
    assert record_check(run_of({"rectified_linear": True}, "02_relu.ipynb"), path=path) is None
    answers = [QuizAnswer("q1", "broadcasting", True), QuizAnswer("q2", "broadcasting", False, points=0),
               QuizAnswer("q3", "sgd", False, points=0), QuizAnswer("q4", "tensors", True)]  # fmt: skip
    assert record_quiz("lesson3", answers, path=path) is None
    assert record_quiz("lesson3", [QuizAnswer("q3", "sgd", True)], path=path) is None  # q3 right on the second try
    record_event("hint", "mse", "lesson3", path=path)
    record_event("hint", "mse", "lesson3", path=path)
    record_event("solution", "quad", "lesson3", path=path)
    return path


def lesson3(summary):
    return next(lp for lp in summary.lessons if lp.lesson == "lesson3")


def test_summary_per_lesson_uses_the_latest_result_of_each_function(db):
    summary = summarize(db)
    lp = lesson3(summary)
    assert lp.total == len(get_lesson("lesson3").checks) == 15
    assert lp.solved == 3  # quad, fit_quad, rectified_linear; mse still failing
    assert lp.points == 1 + 3 + 1 and lp.max_points == get_lesson("lesson3").max_points
    assert lp.attempts == 4 and lp.quiz_attempts == 2 and summary.checks == 4 and summary.quizzes == 2
    items = {i.item: i for i in lp.items}
    assert items["quad"].attempts == 2 and items["quad"].solved and items["quad"].solution_viewed
    assert items["mse"].attempts == 2 and not items["mse"].solved and items["mse"].hints == 2
    assert items["linear"].attempts == 0 and items["linear"].status is None
    assert lp.streak == 1 and summary.streak == 1


def test_score_history_has_one_point_per_check(db):
    history = summarize(db).history
    assert [round(p.points, 2) for p in history] == [0, 1, 4, 5]
    assert all(p.lesson == "lesson3" and p.max_points == 22 for p in history)


def test_quiz_topics_to_review_use_the_latest_answer(db):
    summary = summarize(db)
    review = {t.topic: t for t in summary.review_topics}
    assert set(review) == {"broadcasting"}  # sgd was answered right the second time
    assert review["broadcasting"].missed == ["q2"] and (review["broadcasting"].correct, review["broadcasting"].total) == (1, 2)
    assert {t.topic for t in summary.topics} == {"broadcasting", "sgd", "tensors"}


def test_streak_counts_consecutive_days_up_to_today():
    today = dt.date(2024, 5, 10)
    day = dt.timedelta(days=1)
    assert _streak(set(), today) == 0
    assert _streak({today, today - day, today - 2 * day, today - 4 * day}, today) == 3
    assert _streak({today - day, today - 2 * day}, today) == 2  # not yet today: still alive
    assert _streak({today - 2 * day}, today) == 0


def test_missing_history_is_an_empty_summary(tmp_path):
    summary = summarize(tmp_path / "none.db")
    assert summary.empty and lesson3(summary).attempts == 0 and summary.history == []
    assert not (tmp_path / "none.db").exists()  # reading does not create it


def test_unreadable_history_raises_a_clear_error(tmp_path):
    bad = tmp_path / "p.db"
    bad.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ProgressError, match="cannot read your progress history .*move it away"):
        summarize(bad)
    assert hints_shown("quad", path=bad) == 0


def test_locked_history_raises_a_clear_error(tmp_path, monkeypatch):
    import grader.progress as progress

    path = tmp_path / "p.db"
    record_check(run_of({"quad": True}), path=path)
    monkeypatch.setattr(progress, "BUSY_TIMEOUT_S", 0.1)
    blocker = sqlite3.connect(path)
    blocker.execute("PRAGMA journal_mode = DELETE")  # a rollback journal: an exclusive lock blocks readers too
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ProgressError, match="locked"):
            summarize(path)
    finally:
        blocker.rollback()
        blocker.close()


def test_hints_shown_counts_since_the_last_reset(tmp_path):
    path = tmp_path / "p.db"
    assert hints_shown("quad", "lesson3", path=path) == 0
    for _ in range(3):
        record_event("hint", "quad", "lesson3", path=path)
    record_event("hint", "mse", "lesson3", path=path)
    assert hints_shown("quad", "lesson3", path=path) == 3
    record_event("hint_reset", "quad", "lesson3", path=path)
    record_event("hint", "quad", "lesson3", path=path)
    assert hints_shown("quad", "lesson3", path=path) == 1 and hints_shown("mse", path=path) == 1


# ---------------------------------------------------------------------------------------------
# the command


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_progress_command_prints_the_summary(runner, home, db):
    home.mkdir()
    os.replace(db, home / "progress.db")
    result = runner.invoke(cli, ["progress"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("lesson3"))
    assert "3/15" in line and "5/22" in line and " 4 " in line and "1 day" in line
    assert "Quiz topics to review: broadcasting (1/2)" in result.output
    assert "Still failing: mse" in result.output
    assert str(home / "progress.db") in result.output


def test_progress_html_page(runner, home, db, tmp_path):
    home.mkdir()
    os.replace(db, home / "progress.db")
    out = tmp_path / "page" / "p.html"
    result = runner.invoke(cli, ["progress", "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count('role="progressbar"') >= 3 and 'aria-valuenow="22.7"' in html  # lesson3: 5 of 22 points
    assert 'aria-label="Score over time"' in html and 'aria-label="Checks per function"' in html
    assert "broadcasting" in html and "q2" in html and "solution viewed" in html
    assert "<script" not in html and "http://" not in html.split("<svg")[0]


def test_progress_with_no_history(runner, home):
    result = runner.invoke(cli, ["progress"])
    assert result.exit_code == 0 and "No checks recorded yet" in result.output


def test_progress_on_a_corrupt_database_exits_2_without_traceback(runner, home, tmp_path):
    home.mkdir()
    (home / "progress.db").write_bytes(b"garbage" * 1000)
    for args in (["progress"], ["progress", "--html", str(tmp_path / "p.html")]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "cannot read your progress history" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.html").exists()


@pytest.mark.slow
def test_check_keeps_grading_and_reporting_with_a_corrupt_database(runner, home, tmp_path):
    home.mkdir()
    (home / "progress.db").write_bytes(b"garbage" * 1000)
    nb = copy_to(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "w")
    result = runner.invoke(cli, ["check", str(nb), "--only", "mse", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "progress history not updated" in result.output and "grading is unaffected" in result.output
    assert (tmp_path / "w" / "learn-report.html").is_file()
    hint = runner.invoke(cli, ["hint", "mse"])
    assert hint.exit_code == 0 and "Hint 1 of" in hint.output and "Traceback" not in hint.output
