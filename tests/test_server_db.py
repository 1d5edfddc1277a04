"""The course database and the durable queue, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import time

import pytest

from tests import server_util
from tests.server_util import make_course

pg_cluster, db_url = server_util.pg_cluster, server_util.db_url  # fixtures: PostgreSQL as well as SQLite


def test_migrations_make_the_schema_once_and_refuse_a_newer_one(tmp_path, db_url):
    from grader.server.db import SCHEMA_VERSION, Database, ServerDatabaseError

    url = db_url or str(tmp_path / "c.db")
    db = Database.open(url)
    assert db.version() == SCHEMA_VERSION
    assert Database.open(url).migrate() == SCHEMA_VERSION  # again: nothing to do
    assert db.value("SELECT COUNT(*) FROM schema_version") == SCHEMA_VERSION
    db.run("INSERT INTO schema_version (version) VALUES (?)", SCHEMA_VERSION + 1)
    with pytest.raises(ServerDatabaseError, match="newer than this learn"):
        Database.open(url)
    if not db.postgres:
        assert db.value("PRAGMA journal_mode") == "wal"


def test_a_failed_transaction_leaves_nothing(tmp_path, db_url):
    course, ids = make_course(tmp_path, db_url)
    before = course.db.value("SELECT COUNT(*) FROM submissions")
    with pytest.raises(RuntimeError), course.db.transaction() as tx:
        tx.run("INSERT INTO audit (id, at, actor, action, detail) VALUES (?, ?, NULL, 'x', '{}')", tx.new_id("audit"), time.time())
        raise RuntimeError("boom")
    assert course.db.value("SELECT COUNT(*) FROM audit WHERE action = 'x'") == 0
    assert course.db.value("SELECT COUNT(*) FROM submissions") == before


def _worker(course):
    from grader.server.queue import QueueWorker

    return QueueWorker(course, executor_factory=None)


def test_queue_leases_once_and_writes_a_result_once(tmp_path, db_url, monkeypatch):
    from grader.results import RunResult

    course, ids = make_course(tmp_path, db_url)
    a, b = _worker(course), _worker(course)
    job = a.claim()
    assert job is not None and job["submission_id"] == ids["sid"] and job["attempts"] == 1
    assert b.claim() is None  # leased by a, whose process is alive and lease current
    assert course.submission(ids["sid"])["state"] == "grading"
    # a's lease runs out (a stalled): b takes the job over; a's late result is not written
    course.db.run("UPDATE jobs SET lease_until = ? WHERE id = ?", time.time() - 1, job["id"])
    taken = b.claim()
    assert taken["id"] == job["id"] and taken["attempts"] == 2
    run = RunResult([], seed=1)
    assert a.finish(job, run) is False
    assert b.finish(taken, run) is True and b.finish(taken, run) is False
    row = course.submission(ids["sid"])
    assert row["state"] == "graded" and row["grade_count"] == 1 and json.loads(row["result_json"])["seed"] == 1
    assert a.claim() is None  # nothing left


def test_a_dead_owners_lease_is_taken_at_once_and_machinery_failures_are_retried(tmp_path, db_url):
    import grader.server.queue as queue

    course, ids = make_course(tmp_path, db_url)
    worker = _worker(course)
    job = worker.claim()
    course.db.run("UPDATE jobs SET lease_owner = ? WHERE id = ?", f"{queue.new_owner().split(':')[0]}:999999999:dead", job["id"])
    again = worker.claim()  # the lease is current, but its process is gone
    assert again is not None and again["id"] == job["id"]
    assert again["attempts"] == 2
    for _ in range(queue.MAX_ATTEMPTS - again["attempts"]):
        assert worker.finish(again, error="kernel died", retry=True)
        assert course.submission(ids["sid"])["state"] == "queued"  # back in the queue, not the learner's error
        again = worker.claim()
    assert worker.finish(again, error="the grading machinery failed: kernel died", retry=True)
    row = course.submission(ids["sid"])
    assert row["state"] == "failed" and row["points"] is None and "machinery" in row["error"]


def test_regrade_queues_a_new_job_and_the_record_is_replaced_once(tmp_path, db_url):
    from grader.results import RunResult

    course, ids = make_course(tmp_path, db_url)
    worker = _worker(course)
    assert course.regrade(ids["instructor"]["id"], [ids["sid"]]) == 0  # still queued: not twice
    worker.finish(worker.claim(), RunResult([], seed=1))
    assert course.regrade(ids["instructor"]["id"], [ids["sid"]]) == 1
    assert course.submission(ids["sid"])["state"] == "queued"
    worker.finish(worker.claim(), RunResult([], seed=2))
    row = course.submission(ids["sid"])
    assert row["grade_count"] == 2 and json.loads(row["result_json"])["seed"] == 2
    assert course.db.value("SELECT COUNT(*) FROM audit WHERE action = 'regrade'") == 2


def test_free_response_answers_are_collected_for_manual_grading(tmp_path, db_url, monkeypatch):
    import nbformat
    from starlette.testclient import TestClient  # noqa: F401 - the app below

    from grader.results import RunResult
    from grader.server.app import build_app
    from tests.server_util import session_csrf, signed_in

    course, ids = make_course(tmp_path, db_url)
    worker = _worker(course)
    worker.finish(worker.claim(), RunResult([], seed=1))  # the fixture's submission: no free-response cells
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def square(x):\n    return x * x")])
    answer = nbformat.v4.new_markdown_cell("Because <i>gradients</i> flow.")
    answer.metadata["nbgrader"] = {"grade": True, "solution": True, "grade_id": "explain", "points": 50}  # points: the pack's
    extra = nbformat.v4.new_markdown_cell("not an item of the pack")
    extra.metadata["nbgrader"] = {"grade": True, "solution": True, "grade_id": "bonus", "points": 10}
    nb.cells += [answer, extra]
    sid = course.submit(ids["bo"], "squares", [("squares.ipynb", nbformat.writes(nb).encode())])
    worker.finish(worker.claim(), RunResult([], seed=1))
    items = course.db.all("SELECT * FROM manual_items WHERE user_id = ?", ids["bo"]["id"])
    assert [(i["item"], i["answer"], i["max_points"], i["points"]) for i in items] == [
        ("explain", "Because <i>gradients</i> flow.", 2, None)
    ]
    app = build_app(course)
    ta = signed_in(app, course, ids["ta"])
    page = ta.get("/staff/a/squares/manual").text
    assert "Because &lt;i&gt;gradients&lt;/i&gt; flow." in page and 'addEventListener("keydown"' in page
    bad = ta.post(f"/staff/manual/{items[0]['id']}", data={"csrf": session_csrf(ta), "points": "3"})  # over the maximum
    assert bad.status_code == 303 and course.db.value("SELECT points FROM manual_items WHERE id = ?", items[0]["id"]) is None
    ta.post(f"/staff/manual/{items[0]['id']}", data={"csrf": session_csrf(ta), "points": "1.5", "comment": "say why"})
    row = course.db.one("SELECT points, comment, graded_by FROM manual_items WHERE id = ?", items[0]["id"])
    assert row == {"points": 1.5, "comment": "say why", "graded_by": ids["ta"]["id"]}
    assert course.db.value("SELECT COUNT(*) FROM audit WHERE action = 'manual_grade'") == 1
    # the same answer again keeps its grade; a changed one is graded again
    course.db.run("UPDATE submissions SET created_at = created_at - 120")
    course.regrade(ids["instructor"]["id"], [sid])
    worker.finish(worker.claim(), RunResult([], seed=1))
    assert course.db.value("SELECT points FROM manual_items WHERE id = ?", items[0]["id"]) == 1.5
    records = {r.student: r for r in course.records("squares")}
    assert records["bo"].points == 1.5 and records["bo"].max_points == 2  # no checks ran in this test: only the hand grade
    assert "not graded by hand" not in " ".join(records["bo"].problems)


def test_hidden_checks_show_at_the_policys_time(tmp_path, db_url, monkeypatch):
    from grader.results import CheckResult, NotebookResult, RunResult, Status
    from grader.server.app import build_app
    from tests.server_util import signed_in

    course, ids = make_course(tmp_path, db_url)
    checks = [CheckResult("square", Status.PASSED, 2, 2), CheckResult("cube", Status.PASSED, 1, 1, hidden=True)]
    nb = NotebookResult("ann/squares.ipynb", "squares.ipynb", "tiny", Status.PASSED, points=3, max_points=3, checks=checks)
    worker = _worker(course)
    worker.finish(worker.claim(), RunResult([nb], seed=1))
    course.db.run("UPDATE assignments SET due_at = ?", time.time() + 3600)
    app = build_app(course)
    ann, ta = signed_in(app, course, ids["ann"]), signed_in(app, course, ids["ta"])
    before = ann.get(f"/api/s/{ids['sid']}").json()
    assert (before["final"], before["max_points"], before["hidden_pending"]) == (2, 2, True)
    report = ann.get(f"/s/{ids['sid']}/report").text
    assert "square" in report and "cube" not in report
    assert "after the due date" in ann.get(f"/s/{ids['sid']}").text
    assert ta.get(f"/api/s/{ids['sid']}").json()["final"] == 3 and "cube" in ta.get(f"/s/{ids['sid']}/report").text
    course.db.run("UPDATE assignments SET due_at = ?", time.time() - 1)
    after = ann.get(f"/api/s/{ids['sid']}").json()
    assert (after["final"], after["max_points"], after["hidden_pending"]) == (3, 3, False)
    assert "cube" in ann.get(f"/s/{ids['sid']}/report").text
    course.db.run("UPDATE assignments SET hidden_policy = 'never'")
    assert ann.get(f"/api/s/{ids['sid']}").json()["final"] == 2


def test_an_older_database_is_migrated_and_keeps_its_rows(tmp_path, db_url, monkeypatch):
    from grader.server import db as dbmod

    url = db_url or str(tmp_path / "old.db")
    shipped = dbmod.migrations()
    monkeypatch.setattr(dbmod, "migrations", lambda: shipped[:1])
    old = dbmod.Database(url)
    old.migrate()
    assert old.version() == 1
    old.run("INSERT INTO assignments (id, slug, title, pack, seed, created_at) VALUES (1, 'a1', 'A', 'lesson3', 7, 0)")
    monkeypatch.setattr(dbmod, "migrations", lambda: shipped)
    new = dbmod.Database.open(url)
    assert new.version() == dbmod.SCHEMA_VERSION >= 2
    assert new.one("SELECT slug, hidden_policy FROM assignments") == {"slug": "a1", "hidden_policy": "after_due"}
