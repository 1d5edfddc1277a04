"""The progress history records attempts and never gets in the way of grading."""

import sqlite3

from grader.progress import QuizAnswer, count_events, latest_score, record_check, record_event, record_quiz
from grader.results import CheckResult, NotebookResult, RunResult, Status


def run(points: float, notebook: str = "01_quadratic.ipynb") -> RunResult:
    check = CheckResult(name="quad", status=Status.PASSED if points == 1 else Status.FAILED, points=points, max_points=1)
    nb = NotebookResult(path=f"/w/{notebook}", exercise=notebook, lesson="lesson3", status=check.status,
                        points=points, max_points=1, checks=[check])  # fmt: skip
    return RunResult([nb], seed=1)


def test_records_checks_and_reports_latest_score(tmp_path):
    db = tmp_path / "p.db"
    assert record_check(run(0), workdir="/w", path=db) is None
    assert record_check(run(1), workdir="/w", path=db) is None
    assert record_check(run(0.5, "02_relu.ipynb"), workdir="/w", path=db) is None
    assert latest_score("lesson3", path=db) == (1.5, 2)
    rows = sqlite3.connect(db).execute("SELECT item, passed FROM results ORDER BY rowid").fetchall()
    assert rows == [("quad", 0), ("quad", 1), ("quad", 0)]


def test_quiz_and_events(tmp_path):
    db = tmp_path / "p.db"
    answers = [QuizAnswer("q1", "tensors", True), QuizAnswer("q2", "sgd", False)]
    assert record_quiz("chapter4", answers, 12.0, path=db) is None
    assert record_event("hint", "quad", "lesson3", path=db) is None
    assert record_event("hint", "quad", "lesson3", path=db) is None
    assert count_events("hint", "quad", "lesson3", path=db) == 2
    assert count_events("hint", "mse", path=db) == 0


def test_corrupt_database_gives_a_warning_not_an_error(tmp_path):
    db = tmp_path / "p.db"
    db.write_bytes(b"this is not sqlite at all" * 100)
    warning = record_check(run(1), path=db)
    assert warning and "grading is unaffected" in warning
    assert latest_score("lesson3", path=db) is None
    assert count_events("hint", "quad", path=db) == 0


def test_locked_database_gives_a_warning(tmp_path, monkeypatch):
    import grader.progress as progress

    db = tmp_path / "p.db"
    record_check(run(1), path=db)
    monkeypatch.setattr(progress, "BUSY_TIMEOUT_S", 0.1)
    blocker = sqlite3.connect(db)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        warning = record_check(run(1), path=db)
    finally:
        blocker.rollback()
        blocker.close()
    assert warning and "grading is unaffected" in warning
