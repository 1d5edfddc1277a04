"""`learn serve` for a real class: deadline load, fairness, storage, grades students can read,
accounts that can be revoked, answers to bad uploads. Each test proves one of the defects found
when the server was tried as a real class would use it; all but one run without kernels
(TestClient, or uvicorn in a thread), the fairness test grades on real ones."""

from __future__ import annotations

import base64
import csv
import http.client
import http.cookiejar
import io
import json
import stat
import threading
import time
import types
import urllib.parse
import urllib.request
import zipfile

import pytest

from grader.errors import UploadError
from grader.results import CellProblem, CheckResult, RunResult, Status
from tests.server_util import csrf, grade_now, make_course, running, session_csrf, signed_in
from tests.test_grade import GOOD, TINY_CHECKS, write_nb


def free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def app_of(course):
    from grader.server.app import build_app

    return build_app(course)


def the_packs_item(course, ids) -> None:
    """make_course's hand-graded answer as the pack's own item (`explain`, 2 points)."""
    course.db.run("UPDATE manual_items SET item = 'explain' WHERE id = ?", ids["mid"])


def passing():
    return CheckResult("square", Status.PASSED, 2.0, 2.0), CheckResult("cube", Status.PASSED, 1.0, 1.0, hidden=True)


def notebook(tmp_path, name: str = "squares.ipynb", *cells: str) -> bytes:
    return write_nb(tmp_path / "nb" / name, "import torch", *(cells or GOOD)).read_bytes()


def browser_session(base: str, course, user: dict):
    """A urllib opener with a cookie session, signed in through a fresh sign-in link."""
    from grader.server.auth import SIGNIN_LINK_S

    with course.db.transaction() as tx:
        token = course.issue_token(tx, user["id"], "signin", SIGNIN_LINK_S)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"{base}/signin/{token}", timeout=10).read().decode()
    opener.open(urllib.request.Request(f"{base}/signin/{token}", data=urllib.parse.urlencode({"csrf": csrf(page)}).encode()), timeout=10)
    return opener


# ---------------------------------------------------------------------------------------------
# 1. nothing slow on the event loop


def test_a_report_is_rendered_once_per_grade_and_a_read_never_renders_it(tmp_path, monkeypatch):
    import grader.html

    course, ids = make_course(tmp_path)
    grade_now(course, ids["sid"], *passing())  # the queue worker renders and stores it with the grade
    calls = []
    real = grader.html.render_report
    monkeypatch.setattr(grader.html, "render_report", lambda *a, **k: calls.append(1) or real(*a, **k))
    ann = signed_in(app_of(course), course, ids["ann"])
    for _ in range(3):
        report = ann.get(f"/s/{ids['sid']}/report")
        assert report.status_code == 200 and "square" in report.text
    assert calls == []
    course.db.run("DELETE FROM reports")  # graded before reports were stored: rendered on the first read, then kept
    for _ in range(3):
        assert "square" in ann.get(f"/s/{ids['sid']}/report").text
    assert len(calls) == 2  # once: the full report and the student's (hidden checks left out)


def test_healthz_answers_at_once_while_reports_render(tmp_path, monkeypatch):
    import grader.html

    course, ids = make_course(tmp_path)
    grade_now(course, ids["sid"], *passing(), store_report=False)  # every read renders (a slow one)
    real = grader.html.render_report
    monkeypatch.setattr(grader.html, "render_report", lambda *a, **k: time.sleep(1.0) or real(*a, **k))
    with running(app_of(course)) as base:
        readers = [browser_session(base, course, ids["ann"]) for _ in range(4)]
        threads = [threading.Thread(target=lambda o=o: o.open(f"{base}/s/{ids['sid']}/report", timeout=60).read()) for o in readers]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the renders are under way
        slowest = 0.0
        for _ in range(5):
            started = time.monotonic()
            assert json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=10).read())["status"] == "ok"
            slowest = max(slowest, time.monotonic() - started)
        for t in threads:
            t.join(60)
    assert slowest < 0.5, f"/healthz took {slowest:.2f}s while 4 reports rendered"


def test_a_read_does_not_wait_for_a_write(tmp_path):
    course, ids = make_course(tmp_path)
    holding, release = threading.Event(), threading.Event()

    def writer():
        with course.db.transaction() as tx:
            tx.run("UPDATE users SET display = 'x' WHERE name = 'bo'")
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(5)
    started = time.monotonic()
    try:
        assert course.user_by_name("ann")["name"] == "ann"
        assert time.monotonic() - started < 1  # WAL readers see the last commit; they never queue for the write lock
    finally:
        release.set()
        thread.join()


# ---------------------------------------------------------------------------------------------
# 2. a fair queue


def test_the_queue_goes_round_robin_over_students_with_a_cap_each(tmp_path):
    from grader.server.queue import QueueWorker, fair_order

    course, ids = make_course(tmp_path)  # ann's first submission is queued
    nb = notebook(tmp_path)
    ann_more = [course.submit(ids["ann"], "squares", [("squares.ipynb", nb)]) for _ in range(3)]  # ann's infinite loops, say
    bo_first = course.submit(ids["bo"], "squares", [("squares.ipynb", nb)])
    worker = QueueWorker(course, executor_factory=None)
    first = worker.claim()
    assert first["submission_id"] == ids["sid"]
    assert worker.claim()["submission_id"] == bo_first  # ann has one in flight (her cap): bo's first is next
    assert worker.claim() is None  # both at their cap: nobody takes two slots
    worker.finish(first, RunResult([], seed=1))
    assert worker.claim()["submission_id"] == ann_more[0]
    # with two slots each: a student's later jobs wait behind everyone's earlier ones
    rows = [{"id": i, "state": "queued", "lease_owner": None, "lease_until": None, "user_id": u} for i, u in enumerate("aaabc")]
    assert [r["id"] for r in fair_order(rows, time.time(), 2)] == [0, 3, 4, 1, 2]
    # round-robin: of two students' first waiting jobs, the one whose student was served longer ago goes first
    assert [r["id"] for r in fair_order(rows[3:], time.time(), 1, served={"b": time.time(), "c": time.time() - 60})] == [4, 3]


# ---------------------------------------------------------------------------------------------
# 3. storage


def test_an_upload_keeps_only_its_notebooks_and_a_zip_bomb_is_named(tmp_path):
    import os

    course, ids = make_course(tmp_path)
    nb = notebook(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("work/squares.ipynb", nb)
        zf.writestr("work/data/weights.bin", os.urandom(3 * 2**20))  # incompressible data: not a bomb, not kept either
        zf.writestr("work/notes.txt", "hello")
    sid = course.submit(ids["bo"], "squares", [("work.zip", buf.getvalue())])
    folder = course.uploads / str(sid)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == ["work/squares.ipynb"]
    assert course.submission(sid)["bytes"] == len(nb) and "not kept: work/data/weights.bin" in course.submission(sid)["notes"]
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("squares.ipynb", nb)
        zf.writestr("zeros.bin", bytes(95 * 2**20))  # 95 MB of zeros in about 100 KB
    assert len(bomb.getvalue()) < 200 * 2**10
    before = sorted(p.name for p in course.uploads.iterdir())
    with pytest.raises(UploadError, match=r"bomb\.zip looks like a zip bomb: it would inflate to more than 95 MB"):
        course.submit(ids["bo"], "squares", [("bomb.zip", bomb.getvalue())])
    assert sorted(p.name for p in course.uploads.iterdir()) == before  # nothing kept


def test_a_zip_whose_sizes_lie_inflates_no_further_than_it_says(tmp_path):
    from grader.server.course import Limits

    course, ids = make_course(tmp_path)
    course.limits = Limits(max_unzipped=2**20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("squares.ipynb", bytes(3 * 2**20))
    data = bytearray(buf.getvalue())
    for header, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # declare 100 bytes inflated, in both headers
        at = data.find(header)
        data[at + offset : at + offset + 4] = (100).to_bytes(4, "little")
    with pytest.raises(UploadError, match=r"no notebook .*lying\.zip: skipped 'squares\.ipynb' \(damaged: Bad CRC-32"):
        course.submit(ids["bo"], "squares", [("lying.zip", bytes(data))])
    assert not list(course.uploads.glob("incoming-*")) and course.db.value("SELECT COUNT(*) FROM submissions") == 1


def test_everything_the_server_writes_is_its_owners_only(tmp_path):
    import os

    from grader.server.course import Course

    course, ids = make_course(tmp_path)
    grade_now(course, ids["sid"], *passing())
    signed_in(app_of(course), course, ids["ann"])  # a session row, the secret key
    assert (course.root / "course.db-wal").exists()
    written = [course.root, *course.root.rglob("*")]
    assert len(written) > 6
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is {oct(stat.S_IMODE(path.stat().st_mode))}"
    os.chmod(course.root / "course.db", 0o644)  # a course made by an older learn: made private when opened
    Course.open(course.root)
    assert stat.S_IMODE((course.root / "course.db").stat().st_mode) == 0o600


def test_a_students_uploads_are_held_to_a_quota(tmp_path):
    from grader.server.course import Limits, TooLarge

    course, ids = make_course(tmp_path)
    nb = notebook(tmp_path)
    course.limits = Limits(quota_bytes=2 * len(nb) + 10)
    course.submit(ids["bo"], "squares", [("squares.ipynb", nb)])
    course.submit(ids["bo"], "squares", [("squares.ipynb", nb)])
    with pytest.raises(TooLarge, match=r"your submissions keep .* of your .* quota"):
        course.submit(ids["bo"], "squares", [("squares.ipynb", nb)])


# ---------------------------------------------------------------------------------------------
# 4. grades that survive and that students can read


def test_an_override_stays_in_force_over_a_resubmission_until_cleared_and_is_bounded(tmp_path):
    course, ids = make_course(tmp_path)
    the_packs_item(course, ids)
    grade_now(course, ids["sid"], *passing())
    app = app_of(course)
    prof, ann = signed_in(app, course, ids["instructor"]), signed_in(app, course, ids["ann"])
    over = prof.post(f"/staff/s/{ids['sid']}/override", data={"csrf": session_csrf(prof), "points": "1000", "reason": "typo"})
    assert over.status_code == 303 and course.db.value("SELECT COUNT(*) FROM overrides") == 0
    assert "between 0 and 5" in prof.get("/staff").text  # 3 from the checks, 2 graded by hand (the pack's item)
    prof.post(f"/staff/s/{ids['sid']}/override", data={"csrf": session_csrf(prof), "points": "4", "reason": "oral exam"})
    sid2 = course.submit(ids["ann"], "squares", [("squares.ipynb", notebook(tmp_path))])
    grade_now(course, sid2, CheckResult("square", Status.FAILED, 0.0, 2.0), CheckResult("cube", Status.PASSED, 1.0, 1.0, hidden=True))
    assert course.with_grade(course.submission(sid2))["final"] == 4
    assert {r.student: r.points for r in course.records("squares")}["ann"] == 4
    page = ann.get(f"/s/{sid2}").text
    assert "oral exam" in page and "4 / 5" in page
    prof.post(f"/staff/s/{sid2}/override/clear", data={"csrf": session_csrf(prof)})
    assert course.with_grade(course.submission(sid2))["final"] == 1  # cleared: computed again (0 + 1, nothing graded by hand)
    course.update_assignment(ids["instructor"]["id"], "squares", extra_credit=1)
    prof.post(f"/staff/s/{sid2}/override", data={"csrf": session_csrf(prof), "points": "7", "reason": "bonus project"})
    assert course.with_grade(course.submission(sid2))["final"] == 7


TWO_TOML = """
id = "two"
title = "Two notebooks"
[defaults]
cell_timeout = 20
notebook_timeout = 60
probe_timeout = 5
[[notebooks]]
file = "squares.ipynb"
[[notebooks]]
file = "cubes.ipynb"
[checks.square]
notebook = "squares.ipynb"
points = 2
[checks.cube]
notebook = "cubes.ipynb"
points = 1
"""


def test_a_partial_upload_is_confirmed_first_and_completed_from_the_latest_copy(tmp_path):
    course, ids = make_course(tmp_path)
    pack = tmp_path / "two"
    pack.mkdir()
    (pack / "lesson.toml").write_text(TWO_TOML)
    (pack / "checks.py").write_text(TINY_CHECKS)
    write_nb(pack / "squares.ipynb", GOOD[0])
    write_nb(pack / "cubes.ipynb", GOOD[1])
    course.publish(ids["instructor"]["id"], course.create_assignment(ids["instructor"]["id"], str(pack), "two"), True)
    squares, cubes = notebook(tmp_path, "squares.ipynb", GOOD[0]), notebook(tmp_path, "cubes.ipynb", GOOD[1])
    app = app_of(course)
    ann = signed_in(app, course, ids["ann"])

    def upload(*files):
        return ann.post("/a/two/submit", data={"csrf": csrf(ann.get("/a/two").text)}, files=[("files", f) for f in files])

    first = upload(("squares.ipynb", squares), ("cubes.ipynb", cubes))
    sid1 = int(first.headers["location"].rsplit("/", 1)[1])
    count = course.db.value("SELECT COUNT(*) FROM submissions")
    held = upload(("squares.ipynb", squares))
    assert held.status_code == 200 and "cubes.ipynb" in held.text and f"graded from your submission #{sid1}" in held.text
    assert course.db.value("SELECT COUNT(*) FROM submissions") == count  # nothing accepted yet
    token = held.text.split('name="token" value="')[1].split('"')[0]
    done = ann.post("/a/two/confirm", data={"csrf": session_csrf(ann), "token": token, "action": "submit"})
    sid2 = int(done.headers["location"].rsplit("/", 1)[1])
    folder = course.uploads / str(sid2)
    assert (folder / "cubes.ipynb").read_bytes() == cubes and (folder / "squares.ipynb").read_bytes() == squares
    assert f"cubes.ipynb was not in this upload: graded from your submission #{sid1}" in course.submission(sid2)["notes"]
    assert ann.post("/a/two/confirm", data={"csrf": session_csrf(ann), "token": token, "action": "submit"}).status_code == 303
    assert course.db.value("SELECT COUNT(*) FROM submissions") == count + 1  # a held upload is accepted once
    cancelled = upload(("squares.ipynb", squares))
    token = cancelled.text.split('name="token" value="')[1].split('"')[0]
    ann.post("/a/two/confirm", data={"csrf": session_csrf(ann), "token": token, "action": "cancel"})
    assert course.db.value("SELECT COUNT(*) FROM submissions") == count + 1
    # the API (learn submit): refused with what is missing, unless partial
    bearer = {"Authorization": f"Bearer {course.new_api_token(ids['ann']['id'])}"}
    refused = ann.post("/api/submit/two", headers=bearer, files=[("files", ("squares.ipynb", squares))])
    assert refused.status_code == 409 and refused.json()["missing"]["cubes.ipynb"]["sid"] == sid2
    accepted = ann.post("/api/submit/two", headers=bearer, data={"partial": "1"}, files=[("files", ("squares.ipynb", squares))])
    assert accepted.status_code == 201, accepted.text


def test_learn_submit_warns_of_missing_notebooks_before_they_are_taken_from_the_latest_copy(tmp_path, runner):
    from grader.cli import cli

    course, ids = make_course(tmp_path)
    pack = tmp_path / "two"
    pack.mkdir()
    (pack / "lesson.toml").write_text(TWO_TOML)
    (pack / "checks.py").write_text(TINY_CHECKS)
    write_nb(pack / "squares.ipynb", GOOD[0])
    write_nb(pack / "cubes.ipynb", GOOD[1])
    course.publish(ids["instructor"]["id"], course.create_assignment(ids["instructor"]["id"], str(pack), "two"), True)
    first = course.submit(
        ids["bo"], "two", [("squares.ipynb", notebook(tmp_path, "squares.ipynb")), ("cubes.ipynb", notebook(tmp_path, "cubes.ipynb"))]
    )
    token, only = course.new_api_token(ids["bo"]["id"]), tmp_path / "nb" / "squares.ipynb"
    with running(app_of(course)) as base:
        args = ["submit", "--server", base, "--token", token, "--no-wait", "two", str(only)]
        warned = runner.invoke(cli, args)
        assert warned.exit_code == 2 and f"cubes.ipynb (graded from your submission #{first}" in warned.output, warned.output
        assert "add --partial to submit anyway" in warned.output
        done = runner.invoke(cli, [*args, "--partial"])
        assert done.exit_code == 0 and "submitted as #" in done.output, done.output


def test_students_see_what_their_grade_is_made_of(tmp_path):
    course, ids = make_course(tmp_path)
    the_packs_item(course, ids)
    course.update_assignment(ids["instructor"]["id"], "squares", due_at=time.time() - 3600, late_percent_per_day=10)
    grade_now(course, ids["sid"], *passing())
    app = app_of(course)
    ta, ann = signed_in(app, course, ids["ta"]), signed_in(app, course, ids["ann"])
    ta.post(f"/staff/manual/{ids['mid']}", data={"csrf": session_csrf(ta), "points": "1.5", "comment": "clear <b>answer</b>"})
    status = ann.get(f"/api/s/{ids['sid']}").json()
    assert (status["final"], status["possible"], status["late_penalty"], status["manual_points"]) == (4.2, 5, 10, 1.5)  # 3 - 10% + 1.5
    for text in (
        ann.get(f"/s/{ids['sid']}/report").text,
        ann.get(f"/s/{ids['sid']}").text,
        ann.get("/a/squares").text,
        ann.get("/me").text,
    ):
        assert "4.2 / 5" in text and "-10% of the checks" in text and "clear &lt;b&gt;answer&lt;/b&gt;" in text and "<b>answer" not in text
    ta.post(f"/staff/s/{ids['sid']}/override", data={"csrf": session_csrf(ta), "points": "4.5", "reason": "regraded in person"})
    report = ann.get(f"/s/{ids['sid']}/report").text
    assert "regraded in person" in report and "4.5 / 5" in report


# ---------------------------------------------------------------------------------------------
# 5. accounts


def test_failed_sign_ins_back_off_per_account_and_spare_a_lab_behind_one_address(tmp_path):
    from grader.server.auth import RateLimiter

    course, ids = make_course(tmp_path)
    for name in ("ann", "bo"):
        course.set_password(ids[name]["id"], f"{name} has a long password")
    app = app_of(course)
    lab = signed_in(app, course, None)  # every student of the lab signs in from this one address
    token = session_csrf(lab)
    codes = [lab.post("/signin", data={"csrf": token, "name": "ann", "password": "wrong password"}).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]  # ann's guesser backs off
    assert lab.post("/signin", data={"csrf": token, "name": "bo", "password": "a wrong password"}).status_code == 401
    ok = lab.post("/signin", data={"csrf": token, "name": "bo", "password": "bo has a long password"})
    assert ok.status_code == 303  # the lab next door is not locked out
    # a valid sign-in link works whatever the address did
    app.state.throttle.addresses = RateLimiter(3, 60)
    stranger = signed_in(app, course, None)
    codes = [stranger.post(f"/signin/guess{i}", data={"csrf": session_csrf(stranger)}).status_code for i in range(4)]
    assert codes == [403, 403, 403, 429]
    with course.db.transaction() as tx:
        link = course.issue_token(tx, ids["ann"]["id"], "signin", 3600)
    assert stranger.post(f"/signin/{link}", data={"csrf": session_csrf(stranger)}).status_code == 303


def test_the_throttle_backs_off_exponentially_and_spares_the_owners_browser():
    from grader.server.auth import SignInThrottle

    throttle = SignInThrottle()
    for _ in range(6):
        throttle.fail("ann", "10.0.0.1")
    assert 7 < throttle.wait("ann", "10.0.0.1") <= 8  # 3 free, then 1, 2, 4, 8 s
    assert throttle.wait("ann", "10.0.0.2") == 0  # another address: not yet the account's limit
    for i in range(10):  # strangers everywhere guess the instructor's password
        throttle.fail("instructor", f"10.1.0.{i}")
    assert throttle.wait("instructor", "192.168.1.5") > 0
    assert throttle.wait("instructor", "192.168.1.5", known=True) == 0  # the instructor's own browser is not locked out
    throttle.succeed("ann", "10.0.0.1")
    assert throttle.wait("ann", "10.0.0.1") == 0


def test_signing_out_ends_the_session_even_for_a_saved_cookie(tmp_path):
    from starlette.testclient import TestClient

    course, ids = make_course(tmp_path)
    app = app_of(course)
    ann = signed_in(app, course, ids["ann"])
    saved = dict(ann.cookies)
    assert ann.get("/me").status_code == 200
    ann.post("/signout", data={"csrf": session_csrf(ann)})
    thief = TestClient(app, follow_redirects=False, cookies=saved)
    assert thief.get("/me").status_code == 303 and thief.get("/me").headers["location"] == "/signin"


def test_a_session_unused_for_three_days_ends_and_use_keeps_it_alive(tmp_path, monkeypatch):
    from grader.server import course as course_module
    from grader.server.auth import SEEN_EVERY_S, SESSION_IDLE_S

    course, ids = make_course(tmp_path)
    app = app_of(course)
    ann, bo = signed_in(app, course, ids["ann"]), signed_in(app, course, ids["bo"])
    start = time.time()

    def seen(user: str) -> float:
        return course.db.value("SELECT s.seen_at FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.name = ?", user)

    first = seen("ann")
    assert ann.get("/me").status_code == 200 and seen("ann") == first  # used again at once: no write
    clock = types.SimpleNamespace(time=lambda: start + SEEN_EVERY_S + 1)
    monkeypatch.setattr(course_module, "time", clock)
    assert ann.get("/me").status_code == 200 and seen("ann") == start + SEEN_EVERY_S + 1  # noted, at most every 10 min
    clock.time = lambda: start + SESSION_IDLE_S + SEEN_EVERY_S / 2  # ann used it 3 days minus 5 min ago, bo 3 days + 5 min ago
    assert ann.get("/me").status_code == 200
    assert bo.get("/me").status_code == 303 and bo.get("/me").headers["location"] == "/signin"


def test_a_password_change_signs_out_the_other_sessions(tmp_path):
    course, ids = make_course(tmp_path)
    app = app_of(course)
    laptop, phone = signed_in(app, course, ids["bo"]), signed_in(app, course, ids["bo"])
    laptop.post("/me/password", data={"csrf": session_csrf(laptop), "password": "a brand new password"})
    assert laptop.get("/me").status_code == 200
    assert phone.get("/me").status_code == 303


def test_deactivating_a_student_revokes_every_way_in_and_keeps_the_grades(tmp_path):
    course, ids = make_course(tmp_path)
    grade_now(course, ids["sid"], *passing())
    app = app_of(course)
    prof, ann = signed_in(app, course, ids["instructor"]), signed_in(app, course, ids["ann"])
    token = course.new_api_token(ids["ann"]["id"])
    with course.db.transaction() as tx:
        link = course.issue_token(tx, ids["ann"]["id"], "signin", 3600)
    assert prof.post("/staff/u/ann/active", data={"csrf": session_csrf(prof), "active": "0"}).status_code == 303
    assert ann.get("/me").status_code == 303  # the session is gone
    assert ann.get("/api/a/squares", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert course.redeem(link) is None
    assert "ann" in {r.student for r in course.records("squares")}  # grades stay
    assert "deactivated" in prof.get("/staff/people").text
    ta = signed_in(app, course, ids["ta"])
    assert ta.post("/staff/u/ann/active", data={"csrf": session_csrf(ta), "active": "1"}).status_code == 403  # the instructor's call
    prof.post("/staff/u/ann/active", data={"csrf": session_csrf(prof), "active": "1"})
    assert signed_in(app, course, course.user_by_name("ann")).get("/me").status_code == 200


def test_a_new_sign_in_link_revokes_the_old_one_and_links_download_as_csv(tmp_path):
    course, ids = make_course(tmp_path)
    app = app_of(course)
    prof = signed_in(app, course, ids["instructor"])
    roster = ("roster", ("r.csv", b"student,email\nzed,zed@example.org\nyu,\n"))
    page = prof.post("/staff/roster", data={"csrf": session_csrf(prof)}, files=[roster])
    old = {row.split("</td>")[0]: row.split("/signin/")[1].split("<")[0] for row in page.text.split("<tr><td>")[1:]}
    assert 'download="signin-links.csv"' in page.text
    download = prof.post("/staff/roster", data={"csrf": session_csrf(prof), "format": "csv"}, files=[roster])
    assert download.headers["content-type"].startswith("text/csv") and "attachment" in download.headers["content-disposition"]
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(download.text))}
    assert rows["zed"]["email"] == "zed@example.org" and course.redeem(rows["zed"]["link"].rsplit("/", 1)[1])["name"] == "zed"
    assert course.redeem(old["zed"]) is None and course.redeem(old["yu"]) is None  # re-issued: the first links are dead
    again = prof.post("/staff/u/yu/link", data={"csrf": session_csrf(prof)}).text
    assert course.redeem(rows["yu"]["link"].rsplit("/", 1)[1]) is None
    assert course.redeem(again.split("/signin/")[1].split("<")[0])["name"] == "yu"


def test_cli_tokens_are_kept_on_the_server_only_listed_and_revocable(tmp_path):
    course, ids = make_course(tmp_path)
    app = app_of(course)
    ann, bo = signed_in(app, course, ids["ann"]), signed_in(app, course, ids["bo"])

    def new(label):
        return ann.post("/me/token", data={"csrf": session_csrf(ann), "label": label}).text.split('<code id="token">')[1].split("<")[0]

    laptop, desktop = new("laptop"), new("desktop")
    for cookie in ann.cookies.jar:
        payload = cookie.value.split(".")[0]
        assert laptop not in base64.b64decode(payload + "=" * (-len(payload) % 4)).decode(errors="replace")
    me = ann.get("/me").text
    assert "laptop" in me and "desktop" in me and laptop not in me
    tid = me.split('action="/me/tokens/')[1].split("/")[0]
    bo.post(f"/me/tokens/{tid}/revoke", data={"csrf": session_csrf(bo)})  # not bo's: nothing happens
    auth = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    assert ann.get("/api/a/squares", headers=auth(laptop)).status_code == 200
    ann.post(f"/me/tokens/{tid}/revoke", data={"csrf": session_csrf(ann)})
    assert ann.get("/api/a/squares", headers=auth(laptop)).status_code == 401
    assert ann.get("/api/a/squares", headers=auth(desktop)).status_code == 200


def test_whoever_runs_the_server_can_let_a_locked_out_instructor_in_and_set_the_quota(tmp_path, monkeypatch, runner):
    import uvicorn

    import grader.server
    from grader.cli import cli
    from grader.server.course import Course

    course, ids = make_course(tmp_path)
    printed = runner.invoke(cli, ["serve", str(course.root), "--signin-link", "instructor"])
    assert printed.exit_code == 0 and course.redeem(printed.output.split("/signin/")[1].split()[0])["role"] == "instructor"
    unknown = runner.invoke(cli, ["serve", str(course.root), "--signin-link", "nobody"])
    assert unknown.exit_code == 2 and "no account named 'nobody'" in unknown.output
    opened = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr(grader.server, "prepare", lambda *a, **k: (opened.append(Course.open(tmp_path / "c")) or opened[-1], None))
    assert runner.invoke(cli, ["serve", str(tmp_path / "c"), "--port", free_port(), "--student-quota", "50"]).exit_code == 0
    assert opened[0].limits.quota_bytes == 50 * 2**20


def test_forwarded_allow_ips_reaches_uvicorn_and_names_the_client(tmp_path, monkeypatch, runner):
    import uvicorn

    import grader.server
    from grader.cli import cli
    from grader.server.course import Course

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(grader.server, "prepare", lambda *a, **k: (Course.open(tmp_path / "c"), None))
    result = runner.invoke(cli, ["serve", str(tmp_path / "c"), "--port", free_port(), "--forwarded-allow-ips", "10.1.2.3"])
    assert result.exit_code == 0, result.output
    assert seen["forwarded_allow_ips"] == "10.1.2.3" and seen["proxy_headers"] is True
    # behind a trusted proxy (127.0.0.1, uvicorn's default) the throttle counts the forwarded addresses
    course, ids = make_course(tmp_path / "x")
    course.set_password(ids["ann"]["id"], "ann has a long password")
    with running(app_of(course)) as base:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        token = csrf(opener.open(f"{base}/signin").read().decode())

        def attempt(address):
            data = urllib.parse.urlencode({"csrf": token, "name": "ann", "password": "wrong password"}).encode()
            try:
                opener.open(urllib.request.Request(f"{base}/signin", data=data, headers={"X-Forwarded-For": address}))
            except urllib.error.HTTPError as exc:
                return exc.code

        assert [attempt("10.0.0.1") for _ in range(4)] == [401, 401, 401, 429]
        assert attempt("10.0.0.2") == 401  # another machine behind the proxy


# ---------------------------------------------------------------------------------------------
# 6. answers to bad uploads


def test_an_oversized_upload_gets_413_before_or_while_reading(tmp_path):
    from grader.server.course import Limits

    course, ids = make_course(tmp_path)
    course.limits = Limits(max_bytes=2**20)
    token = course.new_api_token(ids["bo"]["id"])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=x"}
    app = app_of(course)
    told = signed_in(app, course, None).post("/api/submit/squares", content=b"x" * 3 * 2**20, headers=headers)
    assert told.status_code == 413 and "over the limit of 1 MB per submission" in told.json()["error"]
    sent = []

    def chunks():  # 200 MB, chunked: no Content-Length to refuse it by
        head = b'--x\r\nContent-Disposition: form-data; name="files"; filename="squares.ipynb"\r\n\r\n'
        for i in range(200):
            sent.append(i)
            yield head if i == 0 else b" " * 2**20

    with running(app) as base:
        conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=30)
        try:
            conn.request("POST", "/api/submit/squares", body=chunks(), headers=headers, encode_chunked=True)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed
        response = conn.getresponse()
        assert response.status == 413 and b"over the limit of 1 MB" in response.read()
    assert len(sent) < 100, f"the server read {len(sent)} MB of a 200 MB upload over a 1 MB limit"
    assert course.db.value("SELECT COUNT(*) FROM submissions WHERE user_id = ?", ids["bo"]["id"]) == 0


def test_too_many_files_says_the_real_limit(tmp_path):
    course, ids = make_course(tmp_path)
    nb = notebook(tmp_path)
    client = signed_in(app_of(course), course, None)
    response = client.post("/api/submit/squares", headers={"Authorization": f"Bearer {course.new_api_token(ids['bo']['id'])}"},
                           files=[("files", (f"n{i}.ipynb", nb)) for i in range(12)])  # fmt: skip
    assert response.status_code == 413 and "at most 10 (notebooks, or one zip of them)" in response.json()["error"]


def test_learn_submit_says_the_servers_reason(tmp_path, runner, monkeypatch):
    from grader.cli import cli
    from grader.server import client

    course, ids = make_course(tmp_path)
    token = course.new_api_token(ids["bo"]["id"])
    big = tmp_path / "big" / "squares.ipynb"
    big.parent.mkdir()
    big.write_bytes(b" " * 25 * 2**20)
    with running(app_of(course)) as base:
        told = runner.invoke(cli, ["submit", "--server", base, "--token", token, "--no-wait", "squares", str(big)])
        assert told.exit_code == 2 and "the server takes at most 20 MB per submission" in told.output, told.output
        assert "cannot reach" not in told.output
        monkeypatch.setattr(client, "_preflight", lambda *a: {"max_bytes": 20 * 2**20})  # an upload the server itself refuses
        refused = runner.invoke(cli, ["submit", "--server", base, "--token", token, "--no-wait", "squares", str(big)])
        assert refused.exit_code == 2 and "cannot reach" not in refused.output, refused.output
        assert (
            "(413): the upload is over the limit of 20 MB" in refused.output or "closed the connection during the upload" in refused.output
        )
        monkeypatch.undo()
        ok = runner.invoke(
            cli, ["submit", "--server", base, "--token", token, "--no-wait", "squares", str(tmp_path / "work" / "squares.ipynb")]
        )
        assert ok.exit_code == 0 and "submitted as #" in ok.output, ok.output


def test_a_timed_out_notebook_is_a_problem_for_staff(tmp_path):
    from grader.dashboard import summarise

    course, ids = make_course(tmp_path)
    stuck = CellProblem(3, Status.TIMEOUT, "timeout", source="while True: pass")
    grade_now(course, ids["sid"], *passing(), cell_problems=[stuck])  # the checks pass: status "ok"
    record = {r.student: r for r in course.records("squares")}["ann"]
    assert "timeout: squares.ipynb cell 3 stopped at the cell time limit" in record.problems
    assert any("cell 3 stopped" in " ".join(a.reasons) for a in summarise([record]).attention if a.student == "ann")
    prof = signed_in(app_of(course), course, ids["instructor"])
    attention = prof.get("/staff/a/squares").text.split('id="attention"')[1].split("</table>")[0]
    assert "ann" in attention and "cell 3 stopped" in attention
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(prof.get("/staff/a/squares/export/csv").text))}
    assert "cell 3 stopped" in rows["ann"]["problems"]


def test_staff_see_who_has_not_submitted_and_every_export_lists_them_with_0(tmp_path):
    import xml.etree.ElementTree as ET

    course, ids = make_course(tmp_path)  # ann submitted, bo did not
    grade_now(course, ids["sid"], *passing())
    course.add_roster("student\ncy\n", ids["instructor"]["id"])
    course.set_active(ids["instructor"]["id"], "cy", False)  # dropped the course: not listed
    prof = signed_in(app_of(course), course, ids["instructor"])
    missing = prof.get("/staff/a/squares/missing").text.split('id="not-submitted"')[1]
    assert "bo" in missing and "ann" not in missing and "cy" not in missing
    assert 'href="/staff/a/squares/missing">1</a>' in prof.get("/staff").text
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(prof.get("/staff/a/squares/export/csv").text))}
    assert (rows["bo"]["total"], rows["bo"]["possible"], rows["bo"]["status"]) == ("0", "5", "not submitted") and "cy" not in rows
    canvas = {r[0]: r[-1] for r in csv.reader(io.StringIO(prof.get("/staff/a/squares/export/canvas").text))}
    assert canvas["bo"] == "0"
    archive = zipfile.ZipFile(io.BytesIO(prof.get("/staff/a/squares/export/gradescope").content))
    assert json.loads(archive.read("bo/results.json"))["score"] == 0
    suite = ET.fromstring(prof.get("/staff/a/squares/export/junit").text).find("testsuite[@name='bo']")
    assert suite is not None and suite.find("properties/property[@name='status']").get("value") == "not submitted"


# ---------------------------------------------------------------------------------------------
# 2. (with kernels) one student's infinite loops


@pytest.mark.slow
def test_one_students_infinite_loops_delay_anothers_feedback_by_one_time_budget_at_most(tmp_path):
    from starlette.testclient import TestClient

    from grader.server import prepare
    from grader.server.app import build_app
    from tests.conftest import allow_unsandboxed

    course, ids = make_course(tmp_path)
    budget = 8.0
    course.update_assignment(ids["instructor"]["id"], "squares", time_budget_s=budget)
    _, worker = prepare(course.root, allow_unsandboxed=bool(allow_unsandboxed()), jobs=1)  # one kernel: the strictest case
    worker.course, worker.db = course, course.db
    app = build_app(course, worker=worker)
    loop = notebook(tmp_path, "squares.ipynb", GOOD[0], "while True:\n    pass")
    with TestClient(app):
        bo = signed_in(app, course, ids["bo"])
        deadline = time.monotonic() + 240
        while course.submission(ids["sid"])["state"] != "graded" and time.monotonic() < deadline:  # kernels warm
            time.sleep(0.2)
        loops = [course.submit(ids["ann"], "squares", [("squares.ipynb", loop)]) for _ in range(3)]
        app.state.worker_notify()
        while course.submission(loops[0])["state"] != "grading":
            time.sleep(0.05)
        started = time.monotonic()
        sid = course.submit(ids["bo"], "squares", [("squares.ipynb", notebook(tmp_path))])
        app.state.worker_notify()
        while bo.get(f"/api/s/{sid}").json()["state"] != "graded" and time.monotonic() < deadline:
            time.sleep(0.1)
        waited = time.monotonic() - started
        states = [course.submission(s)["state"] for s in loops]
    assert course.submission(sid)["state"] == "graded" and course.submission(sid)["points"] == 3
    assert waited < budget + 6, f"bo waited {waited:.1f}s behind ann's loops (budget {budget:g}s)"
    assert states[1:] != ["graded", "graded"], states  # bo went ahead of ann's later loops
