"""Helpers for the course-server tests: a course with every role, signed-in clients."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_grade import GOOD, tiny_pack, write_nb

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def make_course(tmp_path: Path, db_url: str | None = None):
    """A course (tiny pack published as 'squares') with an instructor, a TA and students ann and bo;
    ann has one (ungraded) submission. Returns (course, ids)."""
    from grader.server.course import Course

    course = Course.open(tmp_path / "course", db_url)
    pack = tiny_pack(tmp_path / "pack")
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
