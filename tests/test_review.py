"""`learn review`: FSRS cards for quiz questions, drills and failed checks, over simulated days
(the clock is LEARN_NOW), through the CLI; due counts in `learn progress` and its HTML page."""

from __future__ import annotations

import datetime as _dt
import sqlite3

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.cli import cli
from grader.quiz import find_quiz

DAY0 = _dt.datetime(2026, 3, 2, 9, 0, tzinfo=_dt.UTC)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _day(monkeypatch, days: int) -> None:
    monkeypatch.setenv("LEARN_NOW", (DAY0 + _dt.timedelta(days=days)).isoformat())


def _answers(tmp_path, data, name="a.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _check(home, lesson: str, name: str, passed: bool, at: _dt.datetime) -> None:
    """A `learn check` result as record_check stores it."""
    conn = sqlite3.connect(home / "progress.db")
    try:
        cur = conn.execute("INSERT INTO attempts (kind, lesson, notebook, at, points, max_points) VALUES ('check', ?, ?, ?, ?, 1)",
                           (lesson, "01_quadratic.ipynb", at.isoformat(), float(passed)))  # fmt: skip
        conn.execute("INSERT INTO results (attempt_id, item, status, passed, points, max_points) VALUES (?, ?, ?, ?, ?, 1)",
                     (cur.lastrowid, name, "passed" if passed else "failed", int(passed), float(passed)))  # fmt: skip
        conn.commit()
    finally:
        conn.close()


def _wrong_option(q):
    return next(i for i, o in enumerate(q.options, 1) if o != q.answers[0])


def test_review_schedules_quiz_questions_and_failed_checks_over_simulated_days(runner, home, tmp_path, monkeypatch):
    quiz = find_quiz("chapter4")
    rank, valid = quiz.question("rank-definition"), quiz.question("valid-set-purpose")
    right_rank = rank.options.index(rank.answers[0]) + 1
    _day(monkeypatch, 0)
    # day 0: a quiz with two wrong answers and one right; a failing check
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers",
                                 _answers(tmp_path, {"rank-definition": _wrong_option(rank), "free-view": "It reshapes it.",
                                                     "valid-set-purpose": valid.answers[0]})])  # fmt: skip
    assert result.exit_code == 1, result.output
    _check(home, "lesson3", "quad", passed=False, at=DAY0)
    progress = runner.invoke(cli, ["progress"])
    assert "Review: 3 due today" in progress.output, progress.output

    # day 0, from a file: the rank question (now right) and the function, re-done
    result = runner.invoke(cli, ["review", "--answers", _answers(tmp_path, {f"quiz:chapter4:{rank.id}": {"answer": right_rank},
                                                                            "check:lesson3:quad": {"rating": 3}})])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Review for 2026-03-02: 2 items (1 questions, 0 drills, 1 functions to re-do)" in result.output
    assert "Re-do it in your notebook, then run `learn check lesson3 --only quad`" in result.output
    assert result.output.count("rated good: next review in") == 2
    assert "✔ Correct!" in result.output

    # day 0, interactively: the free question left; answer, keep the automatic verdicts, rate 1 (again)
    free = quiz.question("free-view")
    typed = "\n".join([free.model_answer] + [""] * len(free.key_points) + ["1"]) + "\n"
    result = runner.invoke(cli, ["review"], input=typed)
    assert result.exit_code == 0, result.output
    assert "Review 1/1  quiz:chapter4:free-view" in result.output
    assert "Model answer:" in result.output and "rated again: next review in 1 day (2026-03-03)" in result.output
    assert "Nothing to review today." in runner.invoke(cli, ["review"]).output

    # day 1: only the free question is back
    _day(monkeypatch, 1)
    result = runner.invoke(
        cli, ["review", "--answers", _answers(tmp_path, {"quiz:chapter4:free-view": {"answer": free.model_answer, "rating": 4}})]
    )
    assert "Review for 2026-03-03: 1 item (1 questions" in result.output and "rated easy" in result.output

    # the function passes its check later: it leaves the queue, whatever its card says
    _check(home, "lesson3", "quad", passed=True, at=DAY0 + _dt.timedelta(days=1))
    # a month later the rest is due again; a wrong answer is rated "again" by default
    _day(monkeypatch, 30)
    result = runner.invoke(cli, ["review", "--answers", _answers(tmp_path, {f"quiz:chapter4:{rank.id}": _wrong_option(rank)})])
    assert "check:lesson3:quad" not in result.output
    assert "rated again: next review in 1 day" in result.output and "✘" in result.output
    _day(monkeypatch, 31)
    queue = runner.invoke(cli, ["review"], input="")
    assert f"quiz:chapter4:{rank.id}" in queue.output
    conn = sqlite3.connect(home / "progress.db")
    try:
        log = conn.execute("SELECT item, rating, correct FROM review_log ORDER BY id").fetchall()
    finally:
        conn.close()
    assert log == [("check:lesson3:quad", 3, None), (f"quiz:chapter4:{rank.id}", 3, 1), ("quiz:chapter4:free-view", 1, 1),
                   ("quiz:chapter4:free-view", 4, 1), (f"quiz:chapter4:{rank.id}", 1, 0)]  # fmt: skip


def test_a_right_answer_is_scheduled_later_and_counted_in_the_forecast(home, monkeypatch):
    from grader.cards import due_forecast, due_items, record_items

    at = DAY0
    assert record_items([("quiz", "chapter4:rank-definition", True), ("drill", "lesson3:xs-shape", False)], at=at) is None
    assert [it.item for it in due_items(at=at)] == ["drill:lesson3:xs-shape"]
    forecast = due_forecast(14, at=at)
    assert forecast[0] == (at.date(), 1) and sum(n for _, n in forecast) == 2
    later = next(day for day, n in forecast[1:] if n)
    then = _dt.datetime.combine(later, _dt.time(8), _dt.UTC)
    assert {it.item for it in due_items(at=then)} == {"quiz:chapter4:rank-definition", "drill:lesson3:xs-shape"}


class FakeDrills:
    def __init__(self, lesson, drills):
        self.ids = [d.id for d in drills]

    def outcome(self, drill):
        return {"raised": None, "shape": [20, 1]}

    def close(self):
        pass


def test_drills_come_back_in_review(home, monkeypatch):
    from rich.console import Console

    from grader.cards import record_items
    from grader.review import run_review

    _day(monkeypatch, 0)
    record_items([("drill", "lesson3:x-none-shape", False)])
    lines = iter(["(20, 1)", ""])
    console = Console(record=True, width=120)
    session = run_review(console, lambda prompt: next(lines), drill_runner_factory=FakeDrills)
    out = console.export_text()
    assert session.reviewed == [("drill:lesson3:x-none-shape", 3, True)]
    assert "x[:, None].shape" in out and "✔ Right!" in out and "rated good" in out


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"chapter4:rank-definition": 1}, "is not an item name"),
        ({"check:lesson3:quad": {"answer": 1}}, "a check item needs a rating"),
        ({"quiz:chapter4:rank-definition": {"rating": 7, "answer": 1}}, "rating must be 1 (again)"),
        ({"quiz:chapter4:rank-definition": {"rating": 3}}, "give the answer"),
        ({"quiz:chapter4:rank-definition": {"answer": 1, "why": "x"}}, "unknown key(s) ['why']"),
        ([1], "maps KIND:PACK:ID"),
    ],
)
def test_bad_review_answers_files_exit_2(runner, home, tmp_path, data, message):
    result = runner.invoke(cli, ["review", "--answers", _answers(tmp_path, data)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_bad_answer_for_a_due_item_is_named(runner, home, tmp_path, monkeypatch):
    from grader.cards import record_items

    _day(monkeypatch, 0)
    record_items([("quiz", "chapter4:rank-definition", False)])
    result = runner.invoke(cli, ["review", "--answers", _answers(tmp_path, {"quiz:chapter4:rank-definition": {"answer": 99, "rating": 3}})])
    assert result.exit_code == 2 and "quiz:chapter4:rank-definition: type the number of an option" in result.output


def test_bad_clock_is_a_clear_error(runner, home, monkeypatch):
    monkeypatch.setenv("LEARN_NOW", "tomorrow")
    result = runner.invoke(cli, ["review"])
    assert result.exit_code == 2 and "LEARN_NOW='tomorrow' is not an ISO 8601 time" in result.output


def test_progress_page_has_a_review_panel_with_a_14_day_chart(runner, home, tmp_path, monkeypatch):
    from grader.cards import record_items

    _day(monkeypatch, 0)
    record_items([("quiz", "chapter4:rank-definition", False), ("quiz", "chapter4:valid-set-purpose", True),
                  ("quiz", "lesson3:<b>odd</b>", False)])  # fmt: skip
    out = tmp_path / "p.html"
    result = runner.invoke(cli, ["progress", "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert '<h2 id="review">Review</h2>' in page and "2 due today" in page
    assert "Due for review, next 14 days" in page and "<svg" in page
    assert "quiz:chapter4:rank-definition" in page and "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page


@pytest.mark.slow
@pytest.mark.browser
def test_review_panel_in_chromium(runner, home, tmp_path, monkeypatch, browser):
    from grader.cards import record_items

    from .conftest import ARTIFACTS, open_page

    _day(monkeypatch, 0)
    record_items([("quiz", "chapter4:rank-definition", False), ("drill", "lesson3:x-none-shape", False),
                  ("quiz", 'lesson3:<script>alert("pwn")</script>', False), ("quiz", "chapter4:valid-set-purpose", True)])  # fmt: skip
    out = tmp_path / "progress.html"
    assert runner.invoke(cli, ["progress", "--html", str(out)]).exit_code == 0
    page, events = open_page(browser, out)
    try:
        panel = page.locator("section.review-panel")
        assert panel.is_visible() and "3 due today" in panel.inner_text()
        assert "2 questions · 1 drills · 0 functions to re-do" in panel.inner_text()
        box = panel.locator("svg").first.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100
        assert 'lesson3:<script>alert("pwn")</script>' in panel.inner_text()  # shown as text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        panel.screenshot(path=str(ARTIFACTS / "review-panel.png"))
    finally:
        page.close()
    assert events["dialogs"] == [] and events["console"] == []
    assert all(url.startswith(("file://", "data:")) for url in events["requests"]), events["requests"]


def test_reading_the_queue_writes_nothing(home):
    from grader.cards import due_forecast, due_items, panel

    assert due_items() == [] and sum(n for _, n in due_forecast()) == 0 and panel() is None
    assert not (home / "progress.db").exists()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.dictionaries(st.one_of(st.text(max_size=20), st.sampled_from(["quiz:chapter4:rank-definition", "check:lesson3:quad"])),
                                 st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                           st.dictionaries(st.sampled_from(["answer", "rating", "x"]), st.one_of(st.integers(-1, 5), st.text(max_size=3)))),
                                 max_size=3),
                 st.lists(st.integers(), max_size=2), st.text(max_size=20)))  # fmt: skip
def test_review_answers_parser_fuzzed_gives_only_answers_errors(data):
    from grader.cards import RATINGS
    from grader.errors import QuizAnswersError
    from grader.review import _parse_review_answers

    try:
        parsed = _parse_review_answers(yaml.safe_dump(data), "fuzz.yaml")
    except QuizAnswersError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    assert all(e.get("rating") is None or e["rating"] in RATINGS for e in parsed.values())


@pytest.mark.slow
def test_review_runs_a_due_drill_in_a_real_kernel(runner, home, tmp_path, monkeypatch):
    from grader.cards import record_items

    _day(monkeypatch, 0)
    record_items([("drill", "lesson3:x-none-shape", False), ("drill", "lesson3:no-such-drill", False)])
    result = runner.invoke(cli, ["review", "--answers", _answers(tmp_path, {"drill:lesson3:x-none-shape": "(20, 1)",
                                                                            "drill:lesson3:no-such-drill": "1"})])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "✔ Right!" in result.output and "rated good: next review in" in result.output
    assert "no longer exists in its quiz or pack" in result.output
