"""Authorization of `learn serve`: every route, as every role, against a table written here.

A route added to the app without an entry in EXPECTED fails this test; so does a rule in
grader.server.auth.RULES that lets a role in that this table does not."""

from __future__ import annotations

import pytest

from tests import server_util
from tests.server_util import make_course, session_csrf, signed_in

pg_cluster, db_url = server_util.pg_cluster, server_util.db_url  # fixtures: PostgreSQL as well as SQLite

ROLES = ("anonymous", "other", "owner", "ta", "instructor")  # other/owner: students; owner submitted ann's work
ANYONE = set(ROLES)
SIGNED_IN = {"other", "owner", "ta", "instructor"}
OWNER = {"owner", "ta", "instructor"}
STAFF = {"ta", "instructor"}
INSTRUCTOR = {"instructor"}

EXPECTED = {
    "home": ANYONE, "signin_page": ANYONE, "signin_password": ANYONE, "signin_link": ANYONE, "health": ANYONE,
    "signout": SIGNED_IN, "me": SIGNED_IN, "password": SIGNED_IN, "cli_token": SIGNED_IN, "revoke_token": SIGNED_IN,
    "assignment": SIGNED_IN, "api_assignment": SIGNED_IN, "submit": SIGNED_IN, "confirm_upload": SIGNED_IN, "api_submit": SIGNED_IN,
    "submission": OWNER, "submission_status": OWNER, "submission_report": OWNER,
    "staff": STAFF, "staff_queue": STAFF, "staff_people": STAFF, "staff_assignment": STAFF, "staff_not_submitted": STAFF,
    "staff_check": STAFF, "staff_student": STAFF, "staff_override": STAFF, "staff_clear_override": STAFF,
    "staff_regrade": STAFF, "staff_regrade_all": STAFF, "staff_extension": STAFF, "staff_export": STAFF, "staff_manual": STAFF,
    "staff_manual_grade": STAFF,
    "create_assignment": INSTRUCTOR, "publish": INSTRUCTOR, "assignment_settings": INSTRUCTOR, "roster": INSTRUCTOR, "add_ta": INSTRUCTOR,
    "set_active": INSTRUCTOR, "new_link": INSTRUCTOR,
}  # fmt: skip


UNGRADED_404 = {"submission_report"}  # ann's submission is not graded in the walk: no feedback yet


@pytest.fixture
def setup(tmp_path, monkeypatch, db_url):
    from grader.server.app import build_app

    course, ids = make_course(tmp_path, db_url)
    course.add_roster("student\ncy\n", ids["instructor"]["id"])  # the account the walk's {name} routes act on
    return build_app(course), course, ids


def _path(route, ids) -> str:
    # real objects, so that an allowed GET finds what it asks for
    values = {
        "slug": ids["slug"],
        "sid": ids["sid"],
        "mid": ids["mid"],
        "token": "not-a-token",
        "name": "cy",
        "tid": "0123456789abcdef",
        "fmt": "csv",
        "check": "square",
    }
    return route.path_format.format(**{k: values[k] for k in route.param_convertors})


def test_every_route_allows_exactly_the_expected_roles(setup):
    app, course, ids = setup
    users = {"anonymous": None, "other": ids["bo"], "owner": ids["ann"], "ta": ids["ta"], "instructor": ids["instructor"]}
    seen = set()
    for route in app.routes:
        assert route.name in EXPECTED, f"route {route.path} ({route.name}) has no expected roles in this test"
        seen.add(route.name)
        for method in sorted(route.methods - {"HEAD"}):
            allowed = set()
            for role, user in users.items():
                client = signed_in(app, course, user)
                headers = {"Accept": "application/json"}
                if method == "GET":
                    response = client.get(_path(route, ids), headers=headers)
                else:
                    response = client.post(_path(route, ids), data={"csrf": session_csrf(client)}, headers=headers)
                assert response.status_code < 500, (route.path, role, response.text)
                assert response.headers["x-frame-options"] == "SAMEORIGIN", (route.path, role)  # no page can be framed by another site
                assert "frame-ancestors 'self'" in response.headers["content-security-policy"], (route.path, role)
                if response.headers.get("x-learn-denied") != "1":
                    allowed.add(role)
                    if method == "GET" and route.name not in UNGRADED_404:  # the path's objects are real: found
                        assert response.status_code != 404, (route.path, role, response.text)
            assert allowed == EXPECTED[route.name], f"{method} {route.path}: allowed {sorted(allowed)}"
    assert seen == set(EXPECTED), f"routes expected but not in the app: {set(EXPECTED) - seen}"


def test_a_post_without_the_csrf_token_is_refused(setup):
    app, course, ids = setup
    client = signed_in(app, course, ids["instructor"])
    for data in ({}, {"csrf": "forged"}):
        response = client.post("/staff/tas", data={"name": "mallory", **data})
        assert response.status_code == 403 and "CSRF" in response.text
    assert course.user_by_name("mallory") is None
    ok = client.post("/staff/tas", data={"name": "mallory", "csrf": session_csrf(client)})
    assert ok.status_code == 200 and course.user_by_name("mallory")["role"] == "ta" and "/signin/" in ok.text


def test_another_students_submission_does_not_exist_for_a_student(setup):
    app, course, ids = setup
    bo = signed_in(app, course, ids["bo"])
    for path in (f"/s/{ids['sid']}", f"/api/s/{ids['sid']}", f"/s/{ids['sid']}/report"):
        response = bo.get(path)
        assert response.status_code == 404 and "ann" not in response.text
    assert signed_in(app, course, ids["ann"]).get(f"/api/s/{ids['sid']}").json()["state"] == "queued"
