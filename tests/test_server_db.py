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
    worker.finish(worker.claim(), RunResult([], seed=1))
    course.regrade(ids["instructor"]["id"], [ids["sid"]])
    assert course.submission(ids["sid"])["state"] == "queued"
    worker.finish(worker.claim(), RunResult([], seed=2))
    row = course.submission(ids["sid"])
    assert row["grade_count"] == 2 and json.loads(row["result_json"])["seed"] == 2
    assert course.db.value("SELECT COUNT(*) FROM audit WHERE action = 'regrade'") == 1
