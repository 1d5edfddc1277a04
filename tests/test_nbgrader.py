"""nbgrader assignments without loss, on our own nbgrader-format course (tests/fixtures/nbgrader):
the release holds no answer (written, whole-cell code, hidden tests, answer images), manual items
keep their points, unsupported directives are refused by name."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from grader import assign as assign_mod
from grader.assign import leak_check, stage
from grader.cli import cli
from grader.errors import AnswerLeakError, LessonPackError
from grader.generate import generate_lesson

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nbgrader"
SOURCE = FIXTURES / "course" / "source" / "ps_errors"

_spec = importlib.util.spec_from_file_location("make_nbgrader_fixtures", FIXTURES / "make_fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

# every answer of the fixture course, as the instructor wrote it: none may reach a release
SECRETS = [
    "diffs = [(p - t) ** 2",  # a code answer inside markers
    "total_gap = sum(abs(p - t)",  # a whole-cell code answer (no markers)
    "HIDDEN-MSE-CASE",  # hidden tests
    "mse(VALUES, VALUES)",
    "Squaring makes one large miss",  # a written answer
    "def error_table",  # a manually graded code answer
    "square metres",  # written answers of problem2
    r"\frac{1}{n}\sum",  # LaTeX answer
    fixtures.png((10, 160, 60))[:60],  # the image pasted into a written answer
    fixtures.png((200, 30, 30))[:60],  # the plot the instructor's run left in an answer cell's outputs
]


def staged(tmp_path: Path, source: Path = SOURCE):
    lesson = stage([str(source)], tmp_path / "staging", None)
    generate_lesson(lesson, tmp_path / "staging" / "release")
    return lesson, tmp_path / "staging" / "release"


def release_text(release: Path) -> str:
    return "".join(p.read_text() for p in sorted(release.iterdir()))


def test_the_committed_fixtures_are_what_make_fixtures_writes():
    for name, text in fixtures.files().items():
        assert (SOURCE / name).read_text(encoding="utf-8") == text, f"{name} is stale: run tests/fixtures/nbgrader/make_fixtures.py"


def test_fixture_course_really_holds_every_secret():
    text = "".join((SOURCE / n).read_text() for n in ("problem1.ipynb", "problem2.ipynb"))
    for secret in SECRETS:
        assert json.dumps(secret)[1:-1] in text or secret in text, secret


def test_the_release_is_the_student_version_nbgrader_writes(tmp_path):
    lesson, release = staged(tmp_path)
    leak_check(lesson, release)
    text = release_text(release)
    for secret in SECRETS:
        assert json.dumps(secret)[1:-1] not in text and secret not in text, f"{secret!r} leaked into the release"
    p1 = nbformat.read(str(release / "problem1.ipynb"), as_version=4)
    p2 = nbformat.read(str(release / "problem2.ipynb"), as_version=4)
    sources = [c.source for c in p1.cells]
    assert sources[6] == sources[11] == "# YOUR CODE HERE\nraise NotImplementedError()"  # whole-cell code answers
    assert sources[3].endswith("    # YOUR CODE HERE\n    raise NotImplementedError()")  # inside markers, indented
    assert sources[9] == "YOUR ANSWER HERE" and "attachments" not in p1.cells[9]  # written answer and its image
    assert [c.source for c in p2.cells][2] == [c.source for c in p2.cells][4] == "YOUR ANSWER HERE"
    assert sources[12].startswith("## Task: compare the two")  # a task keeps its instructions
    assert "data:image/png;base64," + fixtures.png((20, 90, 200)) in sources[2]  # an image in the instructions stays
    assert "assert mse([0, 0], [3, 4]) == 12.5" in sources[4] and "HIDDEN" not in sources[4]  # visible tests stay
    assert all(not c.get("outputs") for c in p1.cells if c.cell_type == "code")
    assert not any("nbgrader" in c.metadata for c in p1.cells + p2.cells)


def test_manual_items_keep_their_points_and_titles(tmp_path):
    lesson, _ = staged(tmp_path)
    assert lesson.title == "Measuring prediction error"  # the first notebook's title, not "Squared error (2 points)"
    assert lesson.max_points == fixtures.AUTO_POINTS
    manual = {m.name: (m.notebook, m.kind, m.points, m.title) for m in lesson.manual.values()}
    assert manual == {
        "why_squared": ("problem1.ipynb", "markdown", 2.0, "Which one? (markdown answer)"),
        "gap_table": ("problem1.ipynb", "code", 2.0, "A table of gaps (code answer)"),
        "compare_task": ("problem1.ipynb", "task", 3.0, "Task: compare the two"),
        "units": ("problem2.ipynb", "markdown", 2.0, "Units (markdown answer)"),
        "formula": ("problem2.ipynb", "markdown", 1.0, "Formula (markdown answer)"),
    }
    assert lesson.max_points + sum(m.points for m in lesson.manual.values()) == fixtures.TOTAL_POINTS  # nbgrader's total
    assert [n.file for n in lesson.notebooks] == ["problem1.ipynb", "problem2.ipynb"]  # an all-manual notebook is kept


def test_a_folder_without_a_title_is_named_after_the_folder(tmp_path):
    src = tmp_path / "week_two"
    src.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## Part A (2 points)"), nbformat.v4.new_code_cell("assert 1")])
    nbformat.write(nb, str(src / "a.ipynb"))
    lesson, _ = staged(tmp_path, src)
    assert lesson.title == "week two"


def test_the_leak_check_names_the_cell_of_a_planted_answer(tmp_path):
    lesson, release = staged(tmp_path)
    nb = nbformat.read(str(release / "problem2.ipynb"), as_version=4)
    nb.cells[1].source += "\n\nHint: the mean absolute gap stays in metres, while the squared version is in square metres"
    nbformat.write(nb, str(release / "problem2.ipynb"))
    with pytest.raises(AnswerLeakError, match=r"problem2.ipynb cell 3: the student version would contain solution text"):
        leak_check(lesson, release)


def test_the_leak_check_catches_a_conversion_that_keeps_unmarked_answers(tmp_path, monkeypatch, runner):
    monkeypatch.setattr(assign_mod, "_prepare_cell", lambda cell, meta: None)  # the old conversion: answers kept as written
    result = runner.invoke(cli, ["assign", str(SOURCE), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "problem1.ipynb cell 7: the student version would contain solution text" in result.output
    assert "refusing to write the release" in result.output and not (tmp_path / "out").exists()


def test_bundled_packs_pass_the_leak_check(tmp_path):
    from grader.lessons import all_lessons

    for lesson in all_lessons().values():
        out = tmp_path / lesson.id
        generate_lesson(lesson, out)
        leak_check(lesson, out)


AUTOTESTS_YML = (FIXTURES / "autotests.yml").read_text()  # nbgrader's format; a few of its templates
# what `nbgrader generate_assignment` (0.9.6) wrote for the directive cell of test_autotest_directives_...
NBGRADER_AUTOTEST_CELL = (FIXTURES / "autotest_cell_by_nbgrader_0.9.6.txt").read_text()


def _with_autotest(tmp_path: Path, directive: str, yml: bool = True) -> Path:
    src = tmp_path / "ps"
    shutil.copytree(SOURCE, src)
    nb = nbformat.read(str(src / "problem1.ipynb"), as_version=4)
    nb.cells[7].source = directive  # the test cell of mae
    nbformat.write(nb, str(src / "problem1.ipynb"))
    if yml:
        (src / "autotests.yml").write_text(AUTOTESTS_YML)
    return src


def test_autotest_without_autotests_yml_is_refused_by_name(tmp_path, runner):
    src = _with_autotest(tmp_path, "### AUTOTEST mae([1, 2, 3], [2, 2, 2])", yml=False)
    result = runner.invoke(cli, ["assign", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "use nbgrader's ### AUTOTEST directive but there is no autotests.yml" in result.output


@pytest.mark.slow
def test_autotest_directives_become_the_asserts_nbgrader_writes(tmp_path, runner):
    src = _with_autotest(tmp_path, "### AUTOTEST mae([1, 2, 3], [2, 2, 2]); len(VALUES)\n### HASHED AUTOTEST mae(VALUES, [0] * 4)")
    lesson = stage([str(src)], tmp_path / "staging", None)
    test = nbformat.read(str(lesson.root / "problem1.ipynb"), as_version=4).cells[7].source
    assert test == NBGRADER_AUTOTEST_CELL  # byte for byte what nbgrader's own release holds
    assert "AUTOTEST" not in test and test.startswith("from hashlib import sha1\n") and test.endswith("print('Success!')")
    assert 'assert str(round(mae([1, 2, 3], [2, 2, 2]), 2)) == """0.67"""' in test
    # the dispatch (type shown by IPython: "float", "int") picks the templates; values are what str() displays
    assert 'assert str(type(len(VALUES))) == """<class \'int\'>""", """type of len(VALUES) is not correct"""' in test
    assert 'assert str(len(VALUES)) == """4"""' in test
    assert '"""type of mae(VALUES, [0] * 4) is not float"""' in test  # the float templates, hashed
    assert "2.5" not in test.split("HASHED")[-1] and 'sha1(str(round(mae(VALUES, [0] * 4), 2)).encode("utf-8")+b"' in test
    made = runner.invoke(cli, ["assign", str(src), "--out", str(tmp_path / "out")])  # the generated asserts tell work from a stub
    assert made.exit_code == 0, made.output


# ---------------------------------------------------------------------------------------------
# the round trip: release, grade, manual export and import, feedback (kernels: slow)


def _answer(nb, grade_id: str, source: str) -> None:
    [cell] = [c for c in nb.cells if c.metadata.get("learn", {}).get("manual") == grade_id]
    cell.source = source


def _class(tmp_path: Path, out: Path) -> Path:
    """good: every answer; tamper: right code, a test cell commented out and the setup cell edited;
    none: the release as handed out."""
    release = out / "release"
    subs = tmp_path / "subs"
    for name in ("good", "tamper", "none"):
        (subs / name).mkdir(parents=True)
        for f in ("problem1.ipynb", "problem2.ipynb"):
            shutil.copy(release / f, subs / name / f)
    for name in ("good", "tamper"):
        p1 = nbformat.read(str(subs / name / "problem1.ipynb"), as_version=4)
        p1.cells[3].source = "def mse(preds, targets):\n    return sum((p - t) ** 2 for p, t in zip(preds, targets)) / len(preds)"
        p1.cells[6].source = "def mae(preds, targets):\n    return sum(abs(p - t) for p, t in zip(preds, targets)) / len(preds)"
        _answer(p1, "why_squared", '=HYPERLINK("http://x") big misses cost more\x1b[31m')
        _answer(p1, "gap_table", "print('my table')")
        task = [i for i, c in enumerate(p1.cells) if c.metadata.get("learn", {}).get("manual") == "compare_task"][0]
        p1.cells.insert(task + 1, nbformat.v4.new_code_cell("print(mse(VALUES, [2.5] * 4), mae(VALUES, [2.5] * 4))"))
        p1.cells.insert(task + 2, nbformat.v4.new_markdown_cell("The squared one is smaller here: gaps under 1 shrink."))
        if name == "tamper":
            p1.cells[4].source = "# " + p1.cells[4].source.replace("\n", "\n# ")  # the locked test, commented out
            p1.cells[1].source = "VALUES = [0.0]"  # the locked setup, edited
        nbformat.write(p1, str(subs / name / "problem1.ipynb"))
        p2 = nbformat.read(str(subs / name / "problem2.ipynb"), as_version=4)
        _answer(p2, "units", "metres and square metres")
        nbformat.write(p2, str(subs / name / "problem2.ipynb"))
    return subs


@pytest.mark.slow
def test_nbgrader_round_trip_release_grade_manual_export_import_feedback(tmp_path, runner):
    import csv

    from grader.gradebook import Gradebook
    from grader.manual import audit

    from .conftest import allow_unsandboxed

    out = tmp_path / "out"
    made = runner.invoke(cli, ["assign", str(SOURCE), "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert "5 item(s) graded by hand (10 points)" in made.output
    for secret in SECRETS:
        assert json.dumps(secret)[1:-1] not in release_text(out / "release"), secret

    subs, gb = _class(tmp_path, out), tmp_path / "gb.db"
    graded = runner.invoke(cli, ["grade", str(subs), "--assignment", str(out), "--gradebook", str(gb), "-j", "2", *allow_unsandboxed()])
    assert graded.exit_code == 0, graded.output
    assert "15 answer(s) need grading (30 points pending)" in graded.output and "3 auto points + 10 graded by hand" in graded.output
    [line] = [line for line in graded.output.splitlines() if "tamper:" in line]
    assert "changed locked cell in problem1.ipynb: 'test_mse' was changed; graded with the instructor's copy" in line
    assert "'setup' was changed" in line
    with Gradebook(gb, create=False) as book:
        recs = {r.student: r for r in book.submissions()}
    # the tampered notebook is graded with the instructor's cells: its setup (VALUES) and its test cell run as written
    assert {s: r.points for s, r in recs.items()} == {"good": 3, "tamper": 3, "none": 0}
    assert not any(p.startswith("changed locked") for p in recs["good"].problems + recs["none"].problems)

    def totals() -> dict:
        got = runner.invoke(cli, ["export", "--gradebook", str(gb), "--format", "csv"])
        assert got.exit_code == 0, got.output
        return {
            r["student"]: tuple(r[k] for k in ("total", "possible", "auto", "manual", "pending"))
            for r in csv.DictReader(got.output.splitlines())
        }

    assert totals() == {"good": ("3", "13", "3", "0", "10"), "none": ("0", "13", "0", "0", "10"), "tamper": ("3", "13", "3", "0", "10")}
    exported = runner.invoke(cli, ["export", "--gradebook", str(gb), "--format", "manual"])
    assert exported.exit_code == 0, exported.output
    table = list(csv.DictReader(exported.output.splitlines(keepends=True)))
    assert len(table) == 15 and {r["state"] for r in table} == {"needs grading"}
    good = {r["item"]: r for r in table if r["student"] == "good"}
    assert good["why_squared"]["answer"].startswith("'=HYPERLINK") and "\x1b" not in exported.output  # inert
    assert good["gap_table"]["answer"] == "print('my table')"
    assert "print(mse(VALUES" in good["compare_task"]["answer"] and "gaps under 1 shrink" in good["compare_task"]["answer"]
    assert {r["item"]: r["answer"] for r in table if r["student"] == "none"}["units"] == "YOUR ANSWER HERE"

    for row in table:
        row["points"], row["comment"] = ("2", "clear") if row["student"] == "good" and row["item"] == "why_squared" else ("0", "")
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    done = runner.invoke(cli, ["import-grades", str(filled), "--gradebook", str(gb), "--by", "ta-ann"])
    assert done.exit_code == 0 and "recorded 15 grade(s)" in done.output, done.output
    assert totals()["good"] == ("5", "13", "3", "2", "0")  # nbgrader's 13 points: 3 auto, 10 by hand
    with Gradebook(gb, create=False) as book:
        trail = audit(book)
    assert len(trail) == 15 and trail[0][1] == "ta-ann" and trail[0][5] == "needs grading" and trail[0][6] is None

    fb = tmp_path / "fb"
    pages = runner.invoke(cli, ["export", "--gradebook", str(gb), "--format", "feedback", "--out", str(fb)])
    assert pages.exit_code == 0, pages.output
    page = (fb / "good.html").read_text()
    assert "Graded by hand" in page and "clear" in page and "Which one? (markdown answer)" in page
    assert "changed locked cell" in (fb / "tamper.html").read_text() and "changed locked cell" not in page
    assert "HIDDEN-MSE-CASE" not in "".join(p.read_text() for p in fb.iterdir())

    from grader.dashboard import summarise
    from grader.export import load_records

    with Gradebook(gb, create=False) as book:
        attention = {a.student: a.reasons for a in summarise(load_records(book)).attention}
    assert any("'test_mse' was changed" in r for r in attention["tamper"]) and "good" not in attention
    board = runner.invoke(cli, ["dashboard", "--gradebook", str(gb), "--out", str(tmp_path / "d.html")])
    assert board.exit_code == 0 and "changed locked cell in problem1.ipynb" in (tmp_path / "d.html").read_text()


# ---------------------------------------------------------------------------------------------
# manual items in the gradebook, without kernels


@pytest.fixture
def manual_book(tmp_path):
    """A gradebook holding the answers of two students (ann: answered, bob: the release as is)."""
    from grader.gradebook import Gradebook
    from grader.manual import record_answers

    lesson, release = staged(tmp_path)
    ann = tmp_path / "ann"
    ann.mkdir()
    p2 = nbformat.read(str(release / "problem2.ipynb"), as_version=4)
    _answer(p2, "units", "metres, then square metres")
    nbformat.write(p2, str(ann / "problem2.ipynb"))
    gb = Gradebook(tmp_path / "gb.db")
    record_answers(gb, lesson, "ann", {"problem1.ipynb": release / "problem1.ipynb", "problem2.ipynb": ann / "problem2.ipynb"})
    record_answers(gb, lesson, "bob", {"problem1.ipynb": release / "problem1.ipynb"})  # problem2 not submitted
    yield gb, lesson, ann
    gb.close()


def _grades_file(tmp_path: Path, rows: list[tuple]) -> Path:
    path = tmp_path / "grades.csv"
    lines = ["student,assignment,item,points,comment"] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_answers_are_stored_as_needing_grading(manual_book):
    from grader.manual import pending, rows

    gb, lesson, _ = manual_book
    got = {(r.student, r.item): (r.state, r.answer, r.found) for r in rows(gb)}
    assert got[("ann", "units")] == ("needs grading", "metres, then square metres", True)
    assert got[("ann", "why_squared")] == ("needs grading", "YOUR ANSWER HERE", True)
    assert got[("bob", "units")] == ("needs grading", "", False)  # not submitted: no answer, still to grade (0)
    assert got[("ann", "compare_task")][1] == ""  # no cells added after the task
    assert pending(gb, "ps_errors") == (10, 20.0)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("zed", "ps_errors", "units", 1, ""), "unknown student 'zed'"),
        (("ann", "ps_errors", "nope", 1, ""), "'ann' has no manual item 'nope' in 'ps_errors'"),
        (("ann", "ps_errors", "units", 2.5, ""), "2.5 points is over the item's maximum of 2"),
        (("ann", "ps_errors", "units", "lots", ""), "points 'lots' is not a number"),
        (("ann", "ps_errors", "units", -1, ""), "points must be between 0 and 2"),
        (("ann", "ps_errors", "units", "nan", ""), "points must be between 0 and 2"),
        (("ann", "ps_errors", "units", "", "nice"), "a comment without points"),
    ],
)
def test_a_bad_grades_file_is_refused_whole(manual_book, tmp_path, runner, row, message):
    from grader.manual import audit, rows

    gb, _, _ = manual_book
    path = _grades_file(tmp_path, [("ann", "ps_errors", "formula", 1, "ok"), row])
    result = runner.invoke(cli, ["import-grades", str(path), "--gradebook", str(gb.path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "line 3" in result.output and "Traceback" not in result.output
    assert not audit(gb) and {r.state for r in rows(gb)} == {"needs grading"}  # nothing written, not even the good row


def test_a_file_that_is_not_a_grades_file_is_refused(manual_book, tmp_path, runner):
    gb, _, _ = manual_book
    (tmp_path / "x.csv").write_text("name,score\nann,3\n")
    result = runner.invoke(cli, ["import-grades", str(tmp_path / "x.csv"), "--gradebook", str(gb.path)])
    assert result.exit_code == 2 and "not a manual grades file (no column student, assignment, item, points)" in result.output
    result = runner.invoke(cli, ["import-grades", str(tmp_path / "missing.csv"), "--gradebook", str(gb.path)])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_grades_are_recorded_and_audited_with_the_previous_value(manual_book, tmp_path):
    import sqlite3

    from grader.manual import audit, import_grades, record_answers, rows

    gb, lesson, ann = manual_book
    assert import_grades(gb, _grades_file(tmp_path, [("ann", "ps_errors", "units", 1.5, "half right")]), who="ta1") == {"recorded": 1}
    assert import_grades(gb, _grades_file(tmp_path, [("ann", "ps_errors", "units", 1.5, "half right")]), who="ta1") == {"recorded": 0}
    assert import_grades(gb, _grades_file(tmp_path, [("ann", "ps_errors", "units", 2, "regraded")]), who="ta2") == {"recorded": 1}
    row = {(r.student, r.item): r for r in rows(gb)}[("ann", "units")]
    assert (row.state, row.points, row.comment, row.graded_by) == ("graded", 2.0, "regraded", "ta2")
    trail = [(t[1], t[5], t[6], t[7], t[8], t[9]) for t in audit(gb)]
    assert trail == [("ta1", "needs grading", None, None, "graded", 1.5), ("ta2", "graded", 1.5, "half right", "graded", 2.0)]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        gb.conn.execute("UPDATE manual_audit SET who = 'me'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        gb.conn.execute("DELETE FROM manual_audit")
    # the same answer submitted again keeps its grade; a changed one needs grading again (old grade audited)
    record_answers(gb, lesson, "ann", {"problem2.ipynb": ann / "problem2.ipynb"})
    assert {(r.student, r.item): r.state for r in rows(gb)}[("ann", "units")] == "graded"
    p2 = nbformat.read(str(ann / "problem2.ipynb"), as_version=4)
    _answer(p2, "units", "something else")
    nbformat.write(p2, str(ann / "problem2.ipynb"))
    record_answers(gb, lesson, "ann", {"problem2.ipynb": ann / "problem2.ipynb"})
    row = {(r.student, r.item): r for r in rows(gb)}[("ann", "units")]
    assert (row.state, row.points, row.answer) == ("needs grading", None, "something else")
    assert audit(gb)[-1][1:] == ("learn grade", "ann", "ps_errors", "units", "graded", 2.0, "regraded", "needs grading", None, None)


def test_gradescope_and_junit_exports_count_hand_graded_items(manual_book, tmp_path):
    """Pending items: 0 points and "needs grading" (Gradescope), <skipped> (JUnit); graded ones
    their points and comment; the comment stays inert."""
    import xml.etree.ElementTree as ET

    from grader.export import gradescope_results, junit_xml
    from grader.gradebook import SubmissionRecord
    from grader.manual import import_grades, rows

    gb, _, _ = manual_book
    import_grades(gb, _grades_file(tmp_path, [("ann", "ps_errors", "units", 1.5, "<b>half</b> right")]), who="ta1")
    by: dict = {}
    for row in rows(gb):
        by.setdefault((row.student, row.assignment), []).append(row)
    record = SubmissionRecord(1, "ann", "ps_errors", "graded", "failed", 3.0, 3.0, 1.0, None, None, [], None, "", "", "")
    ann = by[("ann", "ps_errors")]
    result = gradescope_results(record, ann)
    hand = [t for t in result["tests"] if "manual" in t["tags"]]
    assert len(hand) == len(ann) and result["score"] == 3.0 + 1.5
    units = next(t for t in hand if "graded" in t["tags"])
    assert units["score"] == 1.5 and units["max_score"] == 2 and "<b>half</b> right" in units["output"]
    assert all(t["score"] == 0 and "needs grading" in t["output"] for t in hand if t is not units)
    assert "still to be graded by hand" in result["output"]
    root = ET.fromstring(junit_xml([record], by))
    cases = root.findall(".//testcase")
    assert len(cases) == len(ann)
    assert len(root.findall(".//testcase/skipped")) == len(ann) - 1
    failed = root.findall(".//testcase/failure")
    assert len(failed) == 1 and failed[0].get("message") == "1.5/2 points" and failed[0].text == "<b>half</b> right"
    assert gradescope_results(record)["score"] == 3.0  # without manual rows: as before


def test_a_schema_1_gradebook_gains_the_manual_tables(tmp_path):
    import sqlite3

    from grader.gradebook import SCHEMA_VERSION, Gradebook
    from grader.manual import rows

    path = tmp_path / "old.db"
    with Gradebook(path) as gb:
        pass
    conn = sqlite3.connect(path)  # make it what learn before manual grading wrote: schema 1, no manual tables
    conn.executescript("DROP TRIGGER manual_audit_no_update; DROP TRIGGER manual_audit_no_delete; DROP TABLE manual_answers;"
                       "DROP TABLE manual_audit; UPDATE meta SET value = '1' WHERE key = 'schema_version';")  # fmt: skip
    conn.close()
    with Gradebook(path, create=False) as gb:
        assert gb.meta()["schema_version"] == str(SCHEMA_VERSION) == "2" and rows(gb) == []


def test_export_manual_needs_manual_answers(tmp_path, runner):
    from grader.gradebook import Gradebook

    with Gradebook(tmp_path / "gb.db"):
        pass
    result = runner.invoke(cli, ["export", "--gradebook", str(tmp_path / "gb.db"), "--format", "manual"])
    assert result.exit_code == 2 and "holds no" in result.output


def test_tamper_warnings_name_changed_and_deleted_locked_cells(tmp_path):
    from grader.manual import instructor_cells, tamper_warnings

    lesson, release = staged(tmp_path)
    (tmp_path / "s").mkdir()
    nb = nbformat.read(str(release / "problem1.ipynb"), as_version=4)
    assert tamper_warnings(lesson, {"problem1.ipynb": release / "problem1.ipynb"}) == []
    nb.cells[1].source = "VALUES = [9.0]"
    del nb.cells[7]  # the test cell of mae
    nbformat.write(nb, str(tmp_path / "s" / "problem1.ipynb"))
    subs = {"problem1.ipynb": tmp_path / "s" / "problem1.ipynb"}
    assert tamper_warnings(lesson, subs) == [
        "changed locked cell in problem1.ipynb: 'setup' was changed; graded with the instructor's copy",
        "changed locked cell in problem1.ipynb: 'test_mae' was deleted; graded with the instructor's copy",
    ]
    before = subs["problem1.ipynb"].read_bytes()
    with instructor_cells(lesson, subs) as (graded, original):
        copy = graded["problem1.ipynb"]
        assert original == {copy: subs["problem1.ipynb"]}
        assert nbformat.read(str(copy), as_version=4).cells[1].source.startswith("VALUES = [float(v)")
    assert not copy.exists() and subs["problem1.ipynb"].read_bytes() == before  # the student's file is never written


@pytest.mark.parametrize("level", ["assignment", "course", "course source"])
def test_grading_against_an_nbgrader_folder_suggests_learn_assign(tmp_path, runner, level):
    course = tmp_path / "my course"
    shutil.copytree(SOURCE, course / "source" / "ps_errors")
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    shutil.copy(SOURCE / "problem2.ipynb", tmp_path / "subs" / "ann")
    target = {"assignment": course / "source" / "ps_errors", "course": course, "course source": course / "source"}[level]
    result = runner.invoke(cli, ["grade", str(tmp_path / "subs"), "--assignment", str(target), "--gradebook", str(tmp_path / "gb.db")])
    assert result.exit_code == 2, result.output
    assert "not a lesson pack: convert it with `learn assign` first" in result.output
    assert f"learn assign '{course}/source/ps_errors' --out assignment-ps_errors" in result.output
    assert "learn grade SUBMISSIONS --assignment assignment-ps_errors" in result.output
    assert not (tmp_path / "gb.db").exists()


def test_a_pack_without_torch_gets_kernels_that_do_not_preload_it(tmp_path):
    lesson, _ = staged(tmp_path)
    assert {nb.profile for nb in lesson.notebooks} == {"python"} and lesson.kernel_profile() == "python"
    src = tmp_path / "uses_torch"
    shutil.copytree(SOURCE, src)
    nb = nbformat.read(str(src / "problem2.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import torch\nassert torch.ones(1).item() == 1"))
    nbformat.write(nb, str(src / "problem2.ipynb"))
    lesson = stage([str(src)], tmp_path / "staging2", None)
    assert [n.profile for n in lesson.notebooks] == ["python", None] and lesson.kernel_profile() == "torch"


@pytest.mark.slow
def test_grading_a_test_cell_pack_never_imports_torch_in_the_grader(tmp_path):
    import subprocess
    import sys

    from .conftest import allow_unsandboxed

    lesson, release = staged(tmp_path)
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    shutil.copy(lesson.root / "problem1.ipynb", tmp_path / "subs" / "ann")
    script = (
        "import sys; from pathlib import Path; from grader.batch import grade_folder\n"
        f"s = grade_folder(Path({str(tmp_path / 'subs')!r}), Path({str(tmp_path / 'gb.db')!r}), {str(lesson.root)!r}, jobs=1,"
        f" allow_unsandboxed={bool(allow_unsandboxed())})\n"
        "print(s.graded, s.ok, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["1", "0", "False"], out.stdout + out.stderr  # graded (problem2 missing: not ok), no torch


def test_answers_and_locked_cells_are_found_by_nbgrader_grade_id_too(tmp_path):
    """A notebook from nbgrader's own release carries nbgrader metadata, not ours."""
    from grader.manual import answers_of, tamper_warnings

    lesson, release = staged(tmp_path)
    nb = nbformat.read(str(release / "problem1.ipynb"), as_version=4)
    for cell in nb.cells:
        learn = cell.metadata.pop("learn", None)
        if learn:
            cell.metadata["nbgrader"] = {"grade_id": next(iter(learn.values())), "schema_version": 3}
    task = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "compare_task")
    nb.cells[task + 1 : task + 1] = [nbformat.v4.new_code_cell(""), nbformat.v4.new_code_cell("print(mae(VALUES, [2.5] * 4))")]
    nb.cells[9].source = "Big misses dominate."
    nb.cells[4].source = "pass"  # the mse test cell, emptied
    nbformat.write(nb, str(tmp_path / "p1.ipynb"))
    answers = answers_of(lesson, "problem1.ipynb", tmp_path / "p1.ipynb")
    assert answers["why_squared"] == ("Big misses dominate.", True)
    assert answers["compare_task"] == ("print(mae(VALUES, [2.5] * 4))", True)  # an empty cell in between is skipped
    assert tamper_warnings(lesson, {"problem1.ipynb": tmp_path / "p1.ipynb"}) == [
        "changed locked cell in problem1.ipynb: 'test_mse' was changed; graded with the instructor's copy"
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cell", "source", "message"),
    [
        (6, "### AUTOTEST mae([1], [2])", "problem1.ipynb cell 7: ### AUTOTEST belongs in an autograder test cell"),
        (7, "### AUTOTEST mae([], [])", "problem1.ipynb cell 8: the solution raised ZeroDivisionError"),
    ],
)
def test_autotest_problems_name_the_cell(tmp_path, cell, source, message):
    src = _with_autotest(tmp_path, "assert True")
    nb = nbformat.read(str(src / "problem1.ipynb"), as_version=4)
    nb.cells[cell].source = source
    nbformat.write(nb, str(src / "problem1.ipynb"))
    with pytest.raises(LessonPackError, match=message):
        stage([str(src)], tmp_path / "staging", None)


def test_cluster_payloads_carry_the_instructors_locked_cells(tmp_path):
    from grader.cluster import _payload
    from grader.executor import GradingJob

    lesson, release = staged(tmp_path)
    folder = tmp_path / "class" / "ann"
    folder.mkdir(parents=True)
    nb = nbformat.read(str(release / "problem1.ipynb"), as_version=4)
    nb.cells[1].source = "VALUES = [0.0]"
    nbformat.write(nb, str(folder / "problem1.ipynb"))
    job = GradingJob(lesson, "ann", {"problem1.ipynb": folder / "problem1.ipynb"}, seed=1, budget=60.0, folder=folder)
    name, data = _payload(job)["notebooks"]["problem1.ipynb"]
    assert name == "problem1.ipynb" and nbformat.reads(data.decode(), as_version=4).cells[1].source.startswith("VALUES = [float(v)")
