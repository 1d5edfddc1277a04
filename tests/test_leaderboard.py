"""The class leaderboard: read from the results `learn grade` recorded (the capstone's holdout
accuracy), best first, ties sharing a rank, opt-in names shown as inert text, everyone else
anonymous, student ids never on the board; and end to end, `learn grade` of capstone
submissions followed by `learn dashboard`."""

from __future__ import annotations

import re

import pytest

from grader.cli import cli
from grader.dashboard import render_dashboard, summarise
from grader.gradebook import Gradebook
from grader.leaderboard import leaderboard

from .conftest import allow_unsandboxed, copy_to, exercise, solution, variant
from .test_gradebook import fake_run, fill

PWN = '<script>alert("pwn")</script>'


def metric_run(value: float, name=None):
    run = fake_run({"ten_digits": ("passed", 3, 3)}, notebook="07_ten_digits.ipynb")
    run.notebooks[0].checks[0].series = {"holdout_accuracy": {"kind": "metric", "name": "holdout accuracy", "value": value,
                                                              "display_name": name, "reference": 0.954, "bar": 0.9}}  # fmt: skip
    return run


@pytest.fixture
def gradebook(tmp_path):
    path = tmp_path / "gb.db"
    runs = {
        "s-ada": metric_run(0.9625, "Ada L."),
        "s-bob": metric_run(0.95),
        "s-cy": metric_run(0.95, "\x1b]0;owned\x07" + PWN),
        "s-dee": metric_run(0.71, "   "),
        "s-none": fake_run({"ten_digits": ("error", 0, 3)}, notebook="07_ten_digits.ipynb"),  # no metric: not on the board
    }
    with Gradebook(path) as gb:
        fill(gb, runs, assignment="capstone")
    return path


def test_board_is_best_first_with_shared_ranks_and_opt_in_names(gradebook):
    with Gradebook(gradebook) as gb:
        boards = leaderboard(gb.submissions(with_json=True))
    assert len(boards) == 1
    board = boards[0]
    assert (board.assignment, board.metric, board.title, board.reference, board.bar) == (
        "capstone",
        "holdout_accuracy",
        "holdout accuracy",
        0.954,
        0.9,
    )
    assert [(e.rank, e.value, e.opted_in) for e in board.entries] == [
        (1, 0.9625, True),
        (2, 0.95, False),
        (2, 0.95, True),
        (4, 0.71, False),
    ]
    assert board.entries[0].shown == "Ada L." and board.entries[1].shown == board.entries[3].shown == "anonymous"
    cy = board.entries[2].shown
    assert "\x1b" not in cy and "\x07" not in cy and cy.startswith("\\x1b]0;owned") and len(cy) <= 40


def test_dashboard_shows_the_board_without_student_ids(gradebook, tmp_path, runner):
    out = tmp_path / "dash.html"
    result = runner.invoke(cli, ["dashboard", "--gradebook", str(gradebook), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    board = re.search(r'<section class="leaderboard".*?</section>', html, re.S).group(0)
    assert "Leaderboard: holdout accuracy" in board and "95.4%" in board and "Ada L." in board
    assert board.count('<tr class="entry">') == 4 and "96.25%" in board
    assert "s-ada" not in board and "s-bob" not in board  # ids stay in the instructor's own tables
    assert "<script" not in html and "&lt;script&gt;" in board


def test_no_metric_no_board(tmp_path):
    with Gradebook(tmp_path / "gb.db") as gb:
        fill(gb, {"x": fake_run({"quad": ("passed", 1, 1)})})
        summary = summarise(gb.submissions(with_json=True))
    assert summary.boards == []
    assert "leaderboard" not in render_dashboard(summary)


@pytest.mark.slow
def test_learn_grade_records_the_holdout_accuracy_for_the_board(tmp_path, runner):
    """Two capstone submissions graded for real: the trained one, opted in by name, ranks first."""
    subs = tmp_path / "subs"
    nb = "07_ten_digits.ipynb"
    variant(solution("capstone", nb), subs / "ann" / nb, replace_containing={"leaderboard_name = None": 'leaderboard_name = "Ann <b>"'})
    variant(
        solution("capstone", nb),
        subs / "ben" / nb,
        replace_containing={
            "learn.fit(20, lr=0.2)": "dls = DataLoaders(train_x[:64].split(32), valid_x[:64].split(32))\nlearn = Learner(dls, simple_net)"
        },
    )
    copy_to(exercise("capstone", nb), subs / "cat")  # the untouched stub: nothing to rank
    gb = tmp_path / "gb.db"
    result = runner.invoke(cli, ["grade", str(subs), "--assignment", "capstone", "--gradebook", str(gb), "-j", "2", *allow_unsandboxed()])
    assert result.exit_code == 0, result.output
    with Gradebook(gb, create=False) as book:
        (board,) = leaderboard(book.submissions(with_json=True))
    assert [(e.rank, e.shown) for e in board.entries] == [(1, "Ann <b>"), (2, "anonymous")]
    assert board.entries[0].value >= 0.9 > board.entries[1].value
    out = tmp_path / "dash.html"
    assert runner.invoke(cli, ["dashboard", "--gradebook", str(gb), "--out", str(out)]).exit_code == 0
    assert "Ann &lt;b&gt;" in out.read_text()


@pytest.mark.slow
@pytest.mark.browser
def test_leaderboard_in_chromium(gradebook, tmp_path, browser):
    from .conftest import open_page

    with Gradebook(gradebook) as gb:
        page_path = tmp_path / "dashboard.html"
        page_path.write_text(render_dashboard(summarise(gb.submissions(with_json=True))))
    page, events = open_page(browser, page_path)
    try:
        board = page.locator("section.leaderboard")
        assert board.is_visible() and "Leaderboard: holdout accuracy" in board.locator("h2").inner_text()
        rows = board.locator("tr.entry").all_inner_texts()
        assert [r.split("\t")[0] for r in rows] == ["1", "2", "2", "4"]
        assert "Ada L." in rows[0] and "anonymous" in rows[1] and PWN[:20] in rows[2]  # shown as text, never run
        assert events["dialogs"] == [] and events["console"] == [], events
    finally:
        page.close()
