"""`learn serve` with real kernels: upload -> queue -> grade -> feedback over HTTP, learn submit,
limits, overrides, late policy, exports; and the refusal without bubblewrap."""

from __future__ import annotations

import csv
import io
import time

import pytest

from grader.errors import LearnError
from tests.conftest import allow_unsandboxed
from tests.server_util import csrf, make_course, session_csrf, signed_in
from tests.test_grade import GOOD, write_nb

WRONG = ("def square(x):\n    return x + x", "def cube(x):\n    return x ** 3")


def _server(tmp_path, monkeypatch):
    from grader.server import prepare
    from grader.server.app import build_app

    course, ids = make_course(tmp_path)
    _, worker = prepare(course.root, allow_unsandboxed=bool(allow_unsandboxed()), jobs=1)
    worker.course, worker.db = course, course.db
    return build_app(course, worker=worker), course, ids


def wait_graded(client, sid: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/s/{sid}").json()
        if status["state"] in ("graded", "failed"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"submission {sid} not graded in {timeout}s: {status}")


def upload(client, slug: str, path, name: str = "squares.ipynb"):
    token = csrf(client.get(f"/a/{slug}").text)
    return client.post(f"/a/{slug}/submit", data={"csrf": token}, files=[("files", (name, path.read_bytes()))])


@pytest.mark.slow
def test_upload_wrong_then_fixed_notebook_gets_feedback_then_full_marks(tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    app, course, ids = _server(tmp_path, monkeypatch)
    with TestClient(app):  # runs the lifespan: the queue worker and its kernels
        ann = signed_in(app, course, ids["ann"])
        first = wait_graded(ann, ids["sid"])  # the fixture's good submission
        assert first["state"] == "graded" and first["final"] == first["max_points"] == 3
        wrong = upload(ann, "squares", write_nb(tmp_path / "w" / "squares.ipynb", "import torch", *WRONG))
        assert wrong.status_code == 303 and wrong.headers["location"].startswith("/s/")
        sid = int(wrong.headers["location"].rsplit("/", 1)[1])
        page = ann.get(f"/s/{sid}")
        assert "/api/s/" in page.text and "fetch(" in page.text  # the page polls its status
        status = wait_graded(ann, sid)
        assert status["state"] == "graded" and status["final"] == 1 and status["status"] == "failed"
        report = ann.get(status["report_url"])
        assert report.status_code == 200 and "square" in report.text and "default-src 'none'" in report.headers["content-security-policy"]
        fixed = upload(ann, "squares", write_nb(tmp_path / "f" / "squares.ipynb", "import torch", *GOOD))
        assert wait_graded(ann, int(fixed.headers["location"].rsplit("/", 1)[1]))["final"] == 3
        history = ann.get("/me").text
        assert history.count("/s/") >= 3 and "Score over time" in history
        # learn submit, with a CLI token made on the page: shown in that response only, never in the cookie
        text = ann.post("/me/token", data={"csrf": session_csrf(ann), "label": "laptop"}).text
        token = text.split('<code id="token">')[1].split("<")[0]
        assert token and token not in ann.get("/me").text and "laptop" in ann.get("/me").text
        made = ann.post("/api/submit/squares", headers={"Authorization": f"Bearer {token}"},
                        files=[("files", ("squares.ipynb", (tmp_path / "f" / "squares.ipynb").read_bytes()))])  # fmt: skip
        assert made.status_code == 201, made.text
        bearer = TestClient(app)
        status = bearer.get(made.json()["status_url"], headers={"Authorization": f"Bearer {token}"}).json()
        assert status["state"] in ("queued", "grading", "graded")
        assert bearer.get(made.json()["status_url"], headers={"Authorization": "Bearer wrong"}).status_code == 401
        # every submission graded exactly once in the final record
        rows = course.db.all("SELECT id, state, grade_count FROM submissions")
        wait_graded(ann, made.json()["id"])
        rows = course.db.all("SELECT id, state, grade_count FROM submissions")
        assert all(r["state"] == "graded" and r["grade_count"] == 1 for r in rows), rows
        # staff: override with a reason, extension, exports
        prof = signed_in(app, course, ids["instructor"])
        assert prof.post(f"/staff/s/{sid}/override", data={"csrf": session_csrf(prof), "points": "2.5", "reason": ""}).status_code == 303
        assert course.db.value("SELECT COUNT(*) FROM overrides") == 0  # no reason: refused
        prof.post(f"/staff/s/{sid}/override", data={"csrf": session_csrf(prof), "points": "2.5", "reason": "typo <b>only</b>"})
        assert course.with_grade(course.submission(sid))["final"] == 2.5
        audit = course.db.all("SELECT action, detail FROM audit WHERE action = 'override'")
        assert len(audit) == 1 and "typo" in audit[0]["detail"]
        assert "typo &lt;b&gt;only&lt;/b&gt;" in prof.get(f"/s/{sid}").text
        exported = prof.get("/staff/a/squares/export/csv")
        rows = {r["student"]: r for r in csv.DictReader(io.StringIO(exported.text))}
        assert rows["ann"]["total"] == "2.5" and "typo" in rows["ann"]["problems"]  # the override stays in force over later submissions
        assert rows["bo"]["total"] == "0" and rows["bo"]["status"] == "not submitted"  # a non-submitter is in the export
        prof.post(f"/staff/s/{sid}/override/clear", data={"csrf": session_csrf(prof)})
        rows = {r["student"]: r for r in csv.DictReader(io.StringIO(prof.get("/staff/a/squares/export/csv").text))}
        assert rows["ann"]["total"] == "3"  # cleared: the latest submission (fixed, via learn submit)
        canvas = list(csv.reader(io.StringIO(prof.get("/staff/a/squares/export/canvas").text)))
        assert canvas[0][:2] == ["Student", "ID"] and canvas[2][0] == "ann" and canvas[2][-1] == "3" and canvas[3][::5] == ["bo", "0"]
        assert "<testsuites" in prof.get("/staff/a/squares/export/junit").text
        assert prof.get("/staff/a/squares/export/gradescope").content[:2] == b"PK"
        assert "Class dashboard" in prof.get("/staff/a/squares/export/dashboard").text
        drill = prof.get("/staff/a/squares").text
        assert "square" in drill and "ann" in drill


def test_late_penalty_and_extension(tmp_path):
    from grader.server.course import DAY, late_penalty

    assert late_penalty(100.0, None, 10, 50) == 0
    assert late_penalty(100.0, 200.0, 10, 50) == 0
    assert late_penalty(200.0 + 1, 200.0, 10, 50) == 10  # a started day counts
    assert late_penalty(200.0 + 3 * DAY + 1, 200.0, 10, 50) == 40
    assert late_penalty(200.0 + 30 * DAY, 200.0, 10, 50) == 50  # the cap
    course, ids = make_course(tmp_path)
    a = course.assignment("squares")
    with course.db.transaction() as tx:
        tx.run(
            "UPDATE assignments SET due_at = ?, late_percent_per_day = 20, late_cap_percent = 50 WHERE id = ?",
            time.time() - 2.5 * DAY,
            a["id"],
        )
        tx.run("UPDATE submissions SET state = 'graded', points = 3, max_points = 3 WHERE id = ?", ids["sid"])
    graded = course.with_grade(course.submission(ids["sid"]))
    assert graded["late_penalty"] == 50 and graded["final"] == 1.5
    course.extend(ids["instructor"]["id"], "squares", "ann", time.time() + DAY)
    graded = course.with_grade(course.submission(ids["sid"]))
    assert graded["late_penalty"] == 0 and graded["final"] == 3


def test_upload_limits_and_zip_extraction(tmp_path):
    import zipfile

    from grader.server.course import Limits, UploadError

    course, ids = make_course(tmp_path)
    course.limits = Limits(max_bytes=50_000, max_notebooks=2, per_minute=2)
    nb = (tmp_path / "work" / "squares.ipynb").read_bytes()
    with pytest.raises(UploadError, match="over the limit of"):
        course.submit(ids["bo"], "squares", [("squares.ipynb", nb + b" " * 60_000)])
    with pytest.raises(UploadError, match="upload notebooks"):
        course.submit(ids["bo"], "squares", [("evil.sh", b"rm -rf /")])
    with pytest.raises(UploadError, match="more than 2 notebooks in one upload: at most 2 per submission"):
        course.submit(ids["bo"], "squares", [(f"n{i}.ipynb", nb) for i in range(3)])  # more than 2
    archive = tmp_path / "sub.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("work/squares.ipynb", nb)
        zf.writestr("../../escape.ipynb", nb)
    sid = course.submit(ids["bo"], "squares", [("sub.zip", archive.read_bytes())])
    folder = course.uploads / str(sid)
    assert [p.relative_to(folder).as_posix() for p in folder.rglob("*.ipynb")] == ["work/squares.ipynb"]
    assert not (tmp_path / "escape.ipynb").exists() and "escape" in course.submission(sid)["notes"]
    course.submit(ids["bo"], "squares", [("squares.ipynb", nb)])
    with pytest.raises(UploadError, match="a minute"):
        course.submit(ids["bo"], "squares", [("squares.ipynb", nb)])
    with course.db.transaction() as tx:
        tx.run("UPDATE assignments SET max_submissions = 1")
        tx.run("UPDATE submissions SET created_at = created_at - 120")
    with pytest.raises(UploadError, match="submission limit"):
        course.submit(ids["bo"], "squares", [("squares.ipynb", nb)])
    course.publish(ids["instructor"]["id"], "squares", False)
    with pytest.raises(UploadError, match="no open assignment"):
        course.submit(ids["ann"], "squares", [("squares.ipynb", nb)])


def test_sign_in_links_expire_setup_link_works_once_and_failures_are_rate_limited(tmp_path, monkeypatch):
    from grader.server.app import build_app
    from grader.server.auth import hash_token

    course, ids = make_course(tmp_path)
    assert course.first_start_link() is None  # an instructor exists
    assert course.db.value("SELECT COUNT(*) FROM tokens WHERE hash LIKE 'ey%'") == 0
    rows = course.db.all("SELECT hash, purpose FROM tokens")
    assert all(len(r["hash"]) == 64 for r in rows)  # sha256, never the token itself
    with course.db.transaction() as tx:
        token = course.issue_token(tx, ids["ann"]["id"], "signin", -1)  # already expired
    assert course.redeem(token) is None
    app = build_app(course)
    client = signed_in(app, course, None)
    token_csrf = session_csrf(client)
    for _ in range(3):
        assert client.post("/signin", data={"csrf": token_csrf, "name": "ann", "password": "wrong password"}).status_code == 401
    assert client.post("/signin", data={"csrf": token_csrf, "name": "ann", "password": "wrong password"}).status_code == 429
    course.set_password(ids["bo"]["id"], "a long enough password")
    stored = course.user_by_name("bo")["password_hash"]
    assert stored.startswith("$argon2") and hash_token("x") != stored
    ok = client.post("/signin", data={"csrf": token_csrf, "name": "bo", "password": "a long enough password"})
    assert ok.status_code == 303 and client.get("/me").status_code == 200


def test_learner_text_is_inert_in_pages(tmp_path, monkeypatch):
    from grader.server.app import build_app

    course, ids = make_course(tmp_path)
    app = build_app(course)
    prof = signed_in(app, course, ids["instructor"])
    manual = prof.get("/staff/a/squares/manual").text
    assert "&lt;b&gt;my answer&lt;/b&gt;" in manual and "<b>my answer</b>" not in manual
    roster = prof.post("/staff/roster", data={"csrf": session_csrf(prof)},
                       files=[("roster", ("r.csv", b"student\nzed\n<script>x</script>\n"))])  # fmt: skip
    assert roster.status_code == 303  # a bad name is refused as a whole, with a message
    assert course.user_by_name("zed") is None
    page = prof.get("/staff").text
    assert "not a usable user name" in page and "&lt;script&gt;" in page and "<script>x" not in page


def test_serve_refuses_without_bubblewrap_unless_allowed(tmp_path, monkeypatch, runner):
    from types import SimpleNamespace

    import grader.batch as batch
    from grader import sandbox
    from grader.cli import cli

    monkeypatch.delenv("LEARN_ALLOW_UNSANDBOXED", raising=False)
    monkeypatch.setattr(sandbox, "choose", lambda preference=None: SimpleNamespace(mode="rlimit", drops_privileges=False))
    monkeypatch.setattr(sandbox, "bwrap_status", lambda: (None, "bwrap is not installed"))
    monkeypatch.setattr(batch, "_isolation_warned", set())
    result = runner.invoke(cli, ["serve", str(tmp_path / "course"), "--port", "1"])
    assert result.exit_code == 2 and "refusing to grade other people's notebooks without filesystem isolation" in result.output
    assert not (tmp_path / "course").exists()  # nothing created before the refusal


def test_bad_input_gets_a_clear_message(tmp_path, runner, monkeypatch):
    import socket
    import zipfile

    from grader.cli import cli
    from grader.server.course import Limits, UploadError
    from grader.server.db import Database, ServerDatabaseError

    course, ids = make_course(tmp_path)
    with pytest.raises(ServerDatabaseError, match="unsupported database URL mysql://"):
        Database("mysql://root@db/course")
    with pytest.raises(UploadError, match="not a usable file name"):
        course.submit(ids["bo"], "squares", [("bad\x00name.ipynb", b"{}")])
    course.limits = Limits(max_unzipped=10_000)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("squares.ipynb", b" " * 8_000)
        zf.writestr("more/squares.ipynb", b" " * 8_000)  # each under the limit, together over it
    with pytest.raises(UploadError, match=r"bomb\.zip looks like a zip bomb"):
        course.submit(ids["bo"], "squares", [("bomb.zip", bomb.read_bytes())])
    assert not list(course.uploads.glob("incoming-*"))  # nothing left behind
    with pytest.raises(LearnError, match="'tara' is already a ta account"):
        course.add_roster("student\ntara\n", ids["instructor"]["id"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        result = runner.invoke(cli, ["serve", str(tmp_path / "c2"), "--port", str(s.getsockname()[1]), *allow_unsandboxed()])
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1" in result.output


def test_override_needs_a_finite_number(tmp_path, monkeypatch):
    from grader.server.app import build_app

    course, ids = make_course(tmp_path)
    prof = signed_in(build_app(course), course, ids["instructor"])
    for bad in ("nan", "inf", "-1", "lots"):
        prof.post(f"/staff/s/{ids['sid']}/override", data={"csrf": session_csrf(prof), "points": bad, "reason": "r"})
    assert course.db.value("SELECT COUNT(*) FROM overrides") == 0


def test_a_large_roster_shows_every_link_and_the_session_cookie_stays_small(tmp_path, monkeypatch):
    from grader.server.app import build_app

    course, ids = make_course(tmp_path)
    prof = signed_in(build_app(course), course, ids["instructor"])
    roster = "student\n" + "".join(f"student{i:03d}\n" for i in range(300))
    response = prof.post("/staff/roster", data={"csrf": session_csrf(prof)}, files=[("roster", ("r.csv", roster.encode()))])
    assert response.status_code == 200 and response.text.count("/signin/") == 300
    assert all(len(c.value or "") < 3000 for c in prof.cookies.jar)  # browsers drop cookies over 4 kB
    link = response.text.split("<code>")[1].split("</code>")[0]
    assert course.redeem(link.rsplit("/", 1)[1])["name"] == "student000"


def test_instructor_changes_due_date_and_late_policy_after_creation(tmp_path, monkeypatch):
    from grader.server.app import build_app
    from grader.server.course import DAY

    course, ids = make_course(tmp_path)
    app = build_app(course)
    prof = signed_in(app, course, ids["instructor"])
    with course.db.transaction() as tx:
        tx.run("UPDATE submissions SET state = 'graded', points = 3, max_points = 3 WHERE id = ?", ids["sid"])
    page = prof.get("/staff/a/squares").text
    assert 'action="/staff/a/squares/settings"' in page  # the form is on the instructor's page
    assert prof.get("/staff/a/squares").status_code == 200
    yesterday = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 1.5 * DAY))
    form = {"csrf": session_csrf(prof), "due": yesterday, "percent_per_day": "10", "cap": "30", "max_submissions": "5",
            "hidden_policy": "always"}  # fmt: skip
    prof.post("/staff/a/squares/settings", data=form)
    a = course.assignment("squares")
    assert a["late_percent_per_day"] == 10 and a["late_cap_percent"] == 30 and a["max_submissions"] == 5
    assert a["hidden_policy"] == "always" and a["due_at"] < time.time()
    graded = course.with_grade(course.submission(ids["sid"]))
    assert graded["late_penalty"] == 20  # two started days late at 10% a day: the new policy applies at once
    entry = course.db.one("SELECT * FROM audit WHERE action = 'assignment_settings'")
    assert entry is not None and '"late_percent_per_day": 10' in entry["detail"]
    # bad input: a clear message, nothing changed
    for bad in ({"cap": "250"}, {"percent_per_day": "lots"}, {"hidden_policy": "sometimes"}, {"due": "tomorrow"}, {}):
        response = prof.post("/staff/a/squares/settings", data={"csrf": session_csrf(prof), **bad}, headers={"Accept": "application/json"})
        assert response.status_code == 400 and response.json()["error"], bad
    assert course.assignment("squares") == a
    # a blank due date means none: nobody is late
    prof.post("/staff/a/squares/settings", data={"csrf": session_csrf(prof), "due": ""})
    assert course.assignment("squares")["due_at"] is None
    assert course.with_grade(course.submission(ids["sid"]))["late_penalty"] == 0
    # a TA sees the page but not the form, and cannot post it
    ta = signed_in(app, course, ids["ta"])
    assert 'action="/staff/a/squares/settings"' not in ta.get("/staff/a/squares").text


# ---------------------------------------------------------------------------------------------
# the per-check page for staff


PWN = '<img src=x onerror="alert(1)">'


def _graded(course, sid: int, *checks) -> None:
    """Mark a submission graded with these CheckResults (a fabricated run, no kernels)."""
    import json

    from grader.results import NotebookResult, RunResult, Status

    nb = NotebookResult("squares.ipynb", "squares", "tiny", Status.FAILED, checks=list(checks),
                        points=sum(c.points for c in checks), max_points=sum(c.max_points for c in checks))  # fmt: skip
    run = RunResult([nb])
    with course.db.transaction() as tx:
        tx.run("UPDATE submissions SET state = 'graded', status = ?, points = ?, max_points = ?, result_json = ? WHERE id = ?",
               "failed", run.points, run.max_points, json.dumps(run.to_dict()), sid)  # fmt: skip


def test_staff_see_every_students_verdict_on_one_check_grouped_by_mistake(tmp_path, monkeypatch):
    from grader.results import CaseResult, CheckResult, Status
    from grader.server.app import build_app

    course, ids = make_course(tmp_path)
    nb = (tmp_path / "work" / "squares.ipynb").read_bytes()
    doubled = CaseResult("three", Status.FAILED, "expected 9.0, got 6.0", mistake="doubled")
    _graded(course, ids["sid"], CheckResult("square", Status.FAILED, 0.0, 2.0, f"{PWN} expected 9.0\nsecond line", cases=[doubled],
                                            hint="You added x to itself.", kind="known_mistake"))  # fmt: skip
    _graded(course, course.submit(ids["bo"], "squares", [("squares.ipynb", nb)]), CheckResult("square", Status.PASSED, 2.0, 2.0))
    with course.db.transaction() as tx:
        cy = course.add_user(tx, "cy", "student")
    todo = CheckResult("square", Status.FAILED, 0.0, 2.0, "square is not written yet", kind="not_implemented")
    _graded(course, course.submit(course.user(cy), "squares", [("squares.ipynb", nb)]), todo)
    app = build_app(course)
    prof = signed_in(app, course, ids["instructor"])
    page = prof.get("/staff/a/squares/check/square")
    assert page.status_code == 200, page.text
    text = page.text
    for name, state in (("ann", "failed"), ("bo", "passed"), ("cy", "todo")):
        assert f'<a href="/staff/u/{name}">{name}</a></td><td class="{"ok" if state == "passed" else state}">{state}</td>' in text
    assert "1 passed" in text and "1 failed" in text and "1 todo" in text
    assert "mistake <strong>doubled</strong>: You added x to itself." in text  # the group, with the mistake's explanation
    assert "0 / 2" in text and "2 / 2" in text and f'href="/s/{ids["sid"]}"' in text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; expected 9.0" in text and PWN not in text  # learner text stays inert
    assert "second line" not in text  # the first line of the message only
    assert 'href="/staff/a/squares/check/square"' in prof.get("/staff/a/squares").text  # the pass-rate table links here
    # grouped: the most common problem first, with its count
    more = CaseResult("three", Status.FAILED, "expected 9.0, got 6.0", mistake="doubled")
    _graded(course, course.submit(course.user(cy), "squares", [("squares.ipynb", nb)]),
            CheckResult("square", Status.FAILED, 0.0, 2.0, "wrong", cases=[more], hint="You added x to itself."))  # fmt: skip
    groups = prof.get("/staff/a/squares/check/square").text.split('id="groups"')[1].split("</table>")[0]
    assert "<td>2</td><td>mistake <strong>doubled</strong>" in groups and "ann, cy" in groups
    # another student's verdicts are staff's only; a TA may look
    ann = signed_in(app, course, ids["ann"])
    refused = ann.get("/staff/a/squares/check/square")
    assert refused.status_code == 403 and "bo" not in refused.text and "doubled" not in refused.text
    assert "bo" in signed_in(app, course, ids["ta"]).get("/staff/a/squares/check/square").text
    # unknown check (HTML in its name) or assignment: a 404 that says so, escaped
    missing = prof.get("/staff/a/squares/check/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert missing.status_code == 404 and "no graded check &#39;&lt;img src=x onerror=alert(1)&gt;&#39;" in missing.text
    assert "<img src=x" not in missing.text
    nowhere = prof.get("/staff/a/nope/check/square")
    assert nowhere.status_code == 404 and "no such assignment" in nowhere.text


def test_check_rows_name_the_mistake_and_a_missing_check_is_todo():
    from grader.server.course import check_row, check_summary

    assert check_row(None)["state"] == "todo"
    row = check_row({"status": "timeout", "message": "", "as_written": {"mistake": "off_by_one"}, "points": 0, "max_points": 1})
    assert row["state"] == "error" and row["mistake"] == "off_by_one" and row["message"] == ""
    counts, groups = check_summary([{**row, "student": "a"}, {**check_row(None), "student": "b"}])
    assert counts == {"passed": 0, "failed": 0, "error": 1, "todo": 1}
    assert [(g["label"], g["named"], g["students"]) for g in groups] == [
        ("not in this submission", False, ["b"]),
        ("off_by_one", True, ["a"]),
    ]


MISTAKE_CHECKS = """
from grader.checks import Case, Mistake, check

def square_doubled(x):
    return x + x

@check("square", mistakes=[Mistake("doubled", "You added x to itself: multiply it by itself.", square_doubled)])
def square_cases(rng):
    yield Case.call(3.0, label="three")
    yield Case.call(rng.randn(4), random=True)

@check("cube")
def cube_cases(rng):
    yield Case.call(2.0, label="two")
"""


@pytest.mark.slow
def test_the_check_page_shows_a_really_graded_mistake(tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from tests import test_grade

    monkeypatch.setattr(test_grade, "TINY_CHECKS", MISTAKE_CHECKS)  # the tiny pack, with a named mistake for square
    app, course, ids = _server(tmp_path, monkeypatch)
    with TestClient(app):
        ann, bo = signed_in(app, course, ids["ann"]), signed_in(app, course, ids["bo"])
        wait_graded(ann, ids["sid"])
        wrong = upload(ann, "squares", write_nb(tmp_path / "w" / "squares.ipynb", "import torch", *WRONG))
        good = upload(bo, "squares", tmp_path / "work" / "squares.ipynb")
        for client, response in ((ann, wrong), (bo, good)):
            assert wait_graded(client, int(response.headers["location"].rsplit("/", 1)[1]))["state"] == "graded"
        prof = signed_in(app, course, ids["instructor"])
        text = prof.get("/staff/a/squares/check/square").text
        row = text.split('<a href="/staff/u/ann">ann</a>')[1].split("</tr>")[0]
        assert '<td class="failed">failed</td>' in row and "0 / 2" in row and "<td>doubled</td>" in row
        assert '<td class="ok">passed</td>\n<td>2 / 2</td>' in text.split('<a href="/staff/u/bo">bo</a>')[1].split("</tr>")[0]
        assert "mistake <strong>doubled</strong>: You added x to itself: multiply it by itself." in text
        assert "1 passed" in text and "1 failed" in text


def test_gradescope_and_junit_exports_hold_the_hand_graded_items_given_in_the_server(tmp_path, monkeypatch):
    import json
    import xml.etree.ElementTree as ET
    import zipfile

    from grader.results import CheckResult, Status
    from grader.server.app import build_app

    course, ids = make_course(tmp_path)
    course.db.run("UPDATE manual_items SET item = 'explain' WHERE id = ?", ids["mid"])  # the pack's [manual.explain], 2 points
    _graded(course, ids["sid"], CheckResult("square", Status.PASSED, 2.0, 2.0), CheckResult("cube", Status.FAILED, 0.0, 1.0, "no"))
    prof = signed_in(build_app(course), course, ids["instructor"])

    def exported():
        archive = zipfile.ZipFile(io.BytesIO(prof.get("/staff/a/squares/export/gradescope").content))
        results = json.loads(archive.read("ann/results.json"))
        manual = [t for t in results["tests"] if "manual" in t["tags"]]
        suite = ET.fromstring(prof.get("/staff/a/squares/export/junit").text).find("testsuite[@name='ann']")
        case = suite.find("testcase[@name='explain (graded by hand)']")
        total = {r["student"]: r for r in csv.DictReader(io.StringIO(prof.get("/staff/a/squares/export/csv").text))}["ann"]["total"]
        return results, manual, suite, case, total

    results, manual, suite, case, total = exported()
    assert len(manual) == 1 and manual[0]["score"] == 0 and manual[0]["max_score"] == 2 and manual[0]["output"] == "needs grading by hand"
    assert manual[0]["name"] == "squares.ipynb: Why does squaring keep the sign away? (graded by hand)"
    assert results["score"] == 2 and "2/5 points (2 still to be graded by hand)" in results["output"] and total == "2"
    assert case.find("skipped").get("message") == "needs grading by hand" and suite.get("skipped") == "1" and suite.get("tests") == "3"
    form = {"csrf": session_csrf(prof), "points": "1.5", "comment": "a good <b>start</b>"}
    assert prof.post(f"/staff/manual/{ids['mid']}", data=form).status_code == 303
    results, manual, suite, case, total = exported()
    assert manual[0]["score"] == 1.5 and manual[0]["output"] == "1.5/2 points, graded by hand\na good <b>start</b>"
    assert manual[0]["tags"] == ["manual", "graded"] and results["score"] == 3.5 and total == "3.5"  # counted once, as in the CSV
    assert case.find("skipped") is None and case.find("failure").get("message") == "1.5/2 points"
    assert "a good <b>start</b>" in case.find("system-out").text and suite.get("skipped") == "0"
    # an override replaces checks and hand-graded points together, in every export
    prof.post(f"/staff/s/{ids['sid']}/override", data={"csrf": session_csrf(prof), "points": "4", "reason": "regraded by hand"})
    results, manual, suite, case, total = exported()
    assert results["score"] == 4 and total == "4" and manual[0]["score"] == 1.5
