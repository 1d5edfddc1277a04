"""Helpers for the course-server tests: a course with every role, signed-in clients."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from tests.test_grade import GOOD, tiny_pack, write_nb

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def make_course(tmp_path: Path, db_url: str | None = None):
    """A course (tiny pack published as 'squares') with an instructor, a TA and students ann and bo;
    ann has one (ungraded) submission. Returns (course, ids)."""
    from grader.server.course import Course

    course = Course.open(tmp_path / "course", db_url)
    pack = tiny_pack(tmp_path / "pack")
    declare_manual_item(pack)
    link = course.first_start_link()
    instructor = course.redeem(link)
    with course.db.transaction() as tx:
        ta = course.add_user(tx, "tara", "ta")
    course.add_roster("student,email\nann,ann@example.org\nbo,\n", instructor["id"])
    slug = course.create_assignment(instructor["id"], str(pack), "squares")
    course.publish(instructor["id"], slug, True)
    ann, bo = course.user_by_name("ann"), course.user_by_name("bo")
    nb = write_nb(tmp_path / "work" / "squares.ipynb", "import torch", *GOOD)
    sid = course.submit(ann, slug, [("squares.ipynb", nb.read_bytes())])
    with course.db.transaction() as tx:
        mid = tx.new_id("manual_items")
        tx.run("INSERT INTO manual_items (id, user_id, assignment_id, item, answer, max_points) VALUES (?, ?, ?, ?, ?, ?)", mid,
               ann["id"], course.assignment(slug)["id"], "q1", "<b>my answer</b>", 2)  # fmt: skip
    ids = {"instructor": instructor, "ta": course.user(ta), "ann": ann, "bo": bo, "slug": slug, "sid": sid, "mid": mid, "pack": pack}
    return course, ids


MANUAL_TOML = """
[manual.explain]
notebook = "squares.ipynb"
points = 2
kind = "markdown"
title = "Why does squaring keep the sign away?"
"""


def declare_manual_item(pack: Path) -> Path:
    """The tiny pack with one answer graded by hand (cell id `explain`)."""
    with open(pack / "lesson.toml", "a") as f:
        f.write(MANUAL_TOML)
    return pack


def signed_in(app, course, user: dict | None):
    """A TestClient with a session for `user` (None: anonymous), signed in through a link."""
    from starlette.testclient import TestClient

    from grader.server.auth import SIGNIN_LINK_S

    client = TestClient(app, follow_redirects=False)
    if user is None:
        client.get("/signin")
        return client
    with course.db.transaction() as tx:
        token = course.issue_token(tx, user["id"], "signin", SIGNIN_LINK_S)
    page = client.get(f"/signin/{token}")
    response = client.post(f"/signin/{token}", data={"csrf": csrf(page.text)})
    assert response.status_code == 303, response.text
    return client


def csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def session_csrf(client) -> str:
    return csrf(client.get("/signin").text)


# ---------------------------------------------------------------------------------------------
# a throwaway PostgreSQL cluster (Debian's postgresql package; CI installs it)


def _pg_bin(name: str) -> str | None:
    import glob
    import shutil

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PostgresCluster:
    """initdb + pg_ctl in a temporary folder, on 127.0.0.1 and a free port; as the `postgres` user
    when we are root (PostgreSQL refuses to run as root)."""

    def __init__(self):
        import os
        import pwd
        import socket
        import subprocess
        import tempfile

        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="learn-pg-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        run = lambda *cmd: subprocess.run([*self.prefix, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
        run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        run(self.pg_ctl, "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")  # fmt: skip
        self._run = run
        self.count = 0

    def new_database(self) -> str:
        import psycopg

        self.count += 1
        name = f"learn_test_{self.count}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        import shutil

        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def postgres_available() -> str | None:
    """None when a throwaway cluster can be started here, else why not."""
    import importlib.util

    if not _pg_bin("initdb") or not _pg_bin("pg_ctl"):
        return "PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql; CI installs it)"
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install 'learn-grader[server]')"
    return None


@pytest.fixture(scope="module")
def pg_cluster():
    why = postgres_available()
    if why:
        pytest.skip(why)
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """None (the default SQLite in COURSE_DIR) or a fresh database on the throwaway PostgreSQL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_cluster").new_database()


# ---------------------------------------------------------------------------------------------
# the app on a real socket, in this process (no kernels unless the app has a worker)


@contextlib.contextmanager
def running(app):
    """Serve `app` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def grade_now(course, sid: int, *checks, cell_problems=(), store_report: bool = True):
    """Grade submission `sid` with these CheckResults as the queue worker would (lease, result,
    rendered reports, manual answers), without kernels. Returns the RunResult."""
    from grader.results import NotebookResult, RunResult, Status
    from grader.server.queue import QueueWorker
    from grader.server.render import report_title, variants

    status = Status.PASSED if all(c.passed for c in checks) else Status.FAILED
    nb = NotebookResult("squares.ipynb", "squares.ipynb", "tiny", status, checks=list(checks), cell_problems=list(cell_problems),
                        points=sum(c.points for c in checks), max_points=sum(c.max_points for c in checks))  # fmt: skip
    run = RunResult([nb], seed=1)
    worker = QueueWorker(course, executor_factory=None)
    with course.db.transaction() as tx:  # this submission's job first, whatever else waits
        tx.run("UPDATE jobs SET state = 'leased', lease_owner = ?, lease_until = ?, attempts = 1 WHERE submission_id = ? AND "
               "state = 'queued'", worker.owner, 1e12, sid)  # fmt: skip
        job = tx.one("SELECT * FROM jobs WHERE submission_id = ? AND lease_owner = ? AND state = 'leased'", sid, worker.owner)
    reports = variants(run.to_dict(), report_title(course.submission(sid)["assignment"], sid)) if store_report else None
    assert worker.finish(job, run, reports=reports)
    return run
