"""The course server's flow in a real headless Chromium, against `learn serve` on 127.0.0.1:
the instructor signs in with the first-start link, creates an assignment and uploads a roster;
a student uploads a wrong notebook, sees the feedback, uploads a fixed one and sees full marks;
the instructor overrides a grade with a reason (it stays in force over the fixed submission until
cleared), grades a free-response answer with a comment the student then reads, sets an
extension and exports CSV; the sign-in links download as CSV; a too-large upload is stopped
in the page with the real limit; signing out ends the session. Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import time

import nbformat
import pytest

from tests.conftest import ROOT, keep_screenshot
from tests.server_util import declare_manual_item
from tests.test_grade import GOOD, tiny_pack

pytestmark = [pytest.mark.slow, pytest.mark.browser]
WRONG = ("def square(x):\n    return x + x", "def cube(x):\n    return x ** 3")
PWN = '<img src=x onerror="alert(1)">'


def _bench():
    spec = importlib.util.spec_from_file_location("server_load", ROOT / "bench" / "server_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook(path, *defs, answer: str | None = None):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in ("import torch", *defs)])
    if answer is not None:
        cell = nbformat.v4.new_markdown_cell(answer)
        cell.metadata["nbgrader"] = {"grade": True, "solution": True, "grade_id": "explain", "points": 2}
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def server(tmp_path):
    bench = _bench()
    port, log = bench.free_port(), tmp_path / "serve.log"
    proc = bench.start(tmp_path / "course", port, 1, log)
    link = re.search(r"(http://\S+/signin/\S+)", log.read_text())
    yield f"http://127.0.0.1:{port}", link.group(1) if link else None
    bench.kill_group(proc)


def shot(page, name: str) -> None:
    keep_screenshot(page, f"server-{name}", docs_name=f"server-{name}")


def wait_state(page, state: str, timeout: float = 180) -> None:
    page.wait_for_function(f"document.getElementById('state') && document.getElementById('state').textContent === '{state}'",
                           timeout=timeout * 1000)  # fmt: skip


def test_course_flow_in_chromium(server, browser, tmp_path):
    base, setup_link = server
    assert setup_link, "learn serve printed no first-start link"
    pack = declare_manual_item(tiny_pack(tmp_path / "pack"))
    prof = browser.new_context().new_page()
    dialogs = []
    prof.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    prof.goto(setup_link)
    prof.click("#continue")
    prof.wait_for_url(f"{base}/staff")
    prof.fill("input[name=pack_path]", str(pack))
    prof.fill("input[name=slug]", "squares")
    prof.click("#create")
    assert "assignment squares created" in prof.inner_text("#flash")
    roster = tmp_path / "roster.csv"
    roster.write_text("student,email\nann,ann@example.org\nbo,\n")
    prof.set_input_files("input[name=roster]", str(roster))
    prof.click("#upload-roster")
    links = dict(row.split("\t") for row in prof.inner_text("#links").splitlines())
    with prof.expect_download() as download:
        prof.click("#links-csv")
    assert {r["name"]: r["link"] for r in csv.DictReader(open(download.value.path()))} == {k: v.strip() for k, v in links.items()}
    prof.goto(f"{base}/staff")
    prof.click("#publish-squares")
    prof.wait_for_selector("text=Unpublish")
    shot(prof, "staff")
    # the student: a wrong notebook, its feedback, then a fixed one
    ann = browser.new_context().new_page()
    ann.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    ann.goto(links["ann"].strip())
    ann.click("#continue")
    ann.wait_for_url(f"{base}/me")
    ann.click("a[href='/a/squares']")
    assert "Late policy" in ann.inner_text("body") and "Due:" in ann.inner_text("body")
    big = tmp_path / "big" / "squares.ipynb"
    big.parent.mkdir()
    big.write_bytes(b" " * 21 * 2**20)
    ann.set_input_files("input[name=files]", str(big))
    ann.click("#submit")
    assert "the limit is 20 MB per submission" in ann.inner_text("#upload-problem") and ann.url == f"{base}/a/squares"  # never sent
    ann.set_input_files("input[name=files]", str(notebook(tmp_path / "w" / "squares.ipynb", *WRONG)))
    ann.click("#submit")
    wait_state(ann, "graded")
    assert "1 / 5" in ann.inner_text("#score")  # 2 more points are graded by hand
    wrong_url = ann.url
    report = ann.context.new_page()
    report.goto(ann.get_attribute("#report", "href") and base + ann.get_attribute("#report", "href"))
    assert "square" in report.inner_text("body")
    shot(ann, "feedback")
    ann.goto(f"{base}/a/squares")
    ann.set_input_files("input[name=files]", str(notebook(tmp_path / "f" / "squares.ipynb", *GOOD, answer=f"It is linear {PWN}")))
    ann.click("#submit")
    wait_state(ann, "graded")
    assert "3 / 5" in ann.inner_text("#score")
    fixed_url = ann.url
    # the instructor: override with a reason, a free-response grade, an extension, the CSV
    prof.goto(wrong_url)
    prof.fill("input[name=points]", "2")
    prof.fill("input[name=reason]", "the rubric allows x+x for 2")
    prof.click("#override")
    assert "the rubric allows x+x for 2" in prof.inner_text("body")
    ann.goto(fixed_url)  # the override is the student's grade for the assignment, with its reason, until cleared
    assert "the rubric allows x+x for 2" in ann.inner_text("#grade") and "2 / 5" in ann.inner_text("#final")
    prof.goto(fixed_url)
    with prof.expect_navigation():  # by keyboard: headless Chromium can drop the first clicks while the report's frame paints
        prof.locator("#clear-override").press("Enter")
    assert "override cleared" in prof.inner_text("#flash")
    prof.goto(f"{base}/staff/a/squares/manual")
    assert PWN in prof.inner_text("pre")  # shown as text
    prof.fill("form.manual input[name=points]", "2")
    prof.fill("form.manual input[name=comment]", f"well put {PWN}")
    prof.press("form.manual input[name=points]", "Enter")
    prof.wait_for_load_state("load")
    assert prof.input_value("form.manual input[name=points]") == "2"
    ann.goto(fixed_url)  # the student reads the points and the comment graded by hand
    grade = ann.inner_text("#grade")
    assert f"2 / 2 - well put {PWN}" in grade and "5 / 5" in ann.inner_text("#final")
    prof.goto(f"{base}/staff/a/squares")
    prof.fill("input[name=student]", "ann")
    prof.fill("input[name=due]", time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 7 * 86400)))
    prof.click("#extend")
    assert "extension set" in prof.inner_text("#flash")
    with prof.expect_download() as download:
        prof.click("#export-csv")
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(open(download.value.path()).read()))}
    assert rows["ann"]["total"] == "5" and rows["ann"]["possible"] == "5"  # 3 from the checks, 2 graded by hand
    prof.goto(f"{base}/staff/a/squares")
    assert "5 / 5" in prof.inner_text("#students")
    shot(prof, "assignment")
    # signing out ends the session: the pages ask to sign in again
    ann.locator("nav button").press("Enter")  # (on a page with the report's frame: see the clear above)
    ann.wait_for_url(f"{base}/signin")
    ann.goto(fixed_url)
    assert ann.url == f"{base}/signin"
    assert dialogs == []  # no learner HTML ran
