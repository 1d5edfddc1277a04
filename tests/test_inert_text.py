"""Learner text stays text in every view: terminal, CSV, HTML, JUnit XML (grader.inert).

A hostile string - terminal escape sequences (OSC retitle, clear screen), rich markup, a
spreadsheet formula, HTML, a bidi override - travels as an exception message, a traceback, a
printed cell error, a notebook file name and a student folder name through the real rendering
and export code. Results are built directly (no kernels) except in the two slow tests, which
run a real `learn check` and a real `learn grade`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
from rich.console import Console

from grader import inert
from grader.batch import BatchSummary, Outcome, PlainProgress, RichProgress
from grader.cli import cli
from grader.export import csv_text, gradescope_results
from grader.gradebook import Gradebook
from grader.report import render_run
from grader.results import CellProblem, CheckResult, NotebookResult, RunResult, Status

from .conftest import allow_unsandboxed, solution, variant
from .test_gradebook import fake_run, fill

HOSTILE = '\x1b]0;pwn\x07\x1b[2J[bold]=HYPERLINK("http://x")</td><script>alert(1)</script>\u202e'
FORMULA_STUDENT = "=cmd|' /C calc'!A0"
SCRIPT_STUDENT = "<script>alert(1)<"
ESC_STUDENT = "\x1b]0;pwn\x07ann\u202e[link=http://x]y[/link]"
RAW = ("\x1b]", "\x1b[2J", "\x07", "\u202e")  # must never reach a terminal or file as such


def hostile_run(path: str = "class/\x1b[2Jevil\u202e[bold].ipynb") -> RunResult:
    tb = [f"\x1b[0;31mException\x1b[0m: {HOSTILE}", "  Cell In[3], line 1\n    raise Exception(...)\r\x08"]
    check = CheckResult(name="mse", status=Status.FAILED, points=0, max_points=1, message=f"mse raised Exception: {HOSTILE}",
                        kind="exception", traceback=tb, hint="take the mean")  # fmt: skip
    problem = CellProblem(cell=3, status=Status.ERROR, kind="exception", ename="Exception", evalue=HOSTILE, traceback=tb,
                          source=f"raise Exception({HOSTILE!r})")  # fmt: skip
    nb = NotebookResult(path=path, exercise="01_quadratic.ipynb", lesson="lesson3", status=Status.FAILED, points=0, max_points=1,
                        checks=[check], cell_problems=[problem], sandbox="bwrap")  # fmt: skip
    return RunResult([nb], seed=1)


def assert_inert(text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"{raw!r} reached the output"


# ---------------------------------------------------------------------------------------------
# the functions themselves


def test_visible_keeps_text_and_shows_controls():
    assert inert.visible("a\tb\nc") == "a\tb\nc"
    assert inert.visible("a\tb\nc", single_line=True) == "a\\x09b\\x0ac"
    assert inert.visible("\x1b[31mred\x1b[0m") == "red"  # colour codes of tracebacks: dropped
    shown = inert.visible(HOSTILE + "\r\x08\x9b\x7f\u2028\ud800\uffff")
    assert "\\x1b]0;pwn\\x07\\x1b[2J" in shown and "\\u202e" in shown and "\\x0d\\x08\\x9b\\x7f\\u2028\\ud800\\uffff" in shown
    assert_inert(shown)
    shown.encode("utf-8")  # no lone surrogate left: printing it cannot fail
    assert inert.visible("héllo wörld ✔ 日本") == "héllo wörld ✔ 日本"  # ordinary non-ASCII text is untouched
    console, buf = _console(False)
    console.print(f"[dim]{inert.markup('[bold red]x[/] [link=http://x]y[/link]')}[/dim]")
    assert buf.getvalue() == "[bold red]x[/] [link=http://x]y[/link]\n"


@pytest.mark.parametrize("cell, expected", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("\r=1", "\\x0d=1"), (FORMULA_STUDENT, "'" + FORMULA_STUDENT), ("ann", "ann"), ("", ""),
    (-1.5, -1.5), (3, 3), (None, None),
])  # fmt: skip
def test_csv_cells_never_start_a_formula(cell, expected):
    assert inert.csv_cell(cell) == expected


def test_scrub_copies_results_and_keeps_enums_and_numbers():
    run = hostile_run()
    clean = inert.scrub(run)
    assert clean is not run and run.notebooks[0].checks[0].message.startswith("mse raised")  # the original is unchanged
    nb = clean.notebooks[0]
    assert nb.status is Status.FAILED and nb.checks[0].status is Status.FAILED and nb.checks[0].points == 0
    assert_inert(json.dumps(clean.to_dict(), ensure_ascii=False))


# ---------------------------------------------------------------------------------------------
# terminal: learn check's report, learn grade's progress lines, learn progress, learn export


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=300, color_system="standard" if terminal else None), buf


@pytest.mark.parametrize("terminal", [True, False])
def test_check_report_shows_learner_text_literally(terminal):
    console, buf = _console(terminal)
    render_run(hostile_run(), console, verbose=True)
    out = buf.getvalue()
    assert_inert(out)
    if not terminal:
        assert "\x1b" not in out  # not even a colour: every escape in the output would be the learner's
    assert "[bold]=HYPERLINK" in out and "<script>alert(1)</script>" in out  # rich markup printed, not applied
    assert "\\x1b]0;pwn\\x07\\x1b[2J" in out and "\\u202e" in out  # and the attempt is visible
    assert "evil\\u202e[bold].ipynb" in out


def test_learn_check_cli_output_and_html_report_are_inert(tmp_path, runner, monkeypatch):
    import grader.cache

    nb = variant(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "work" / "01_quadratic.ipynb")
    monkeypatch.setattr(grader.cache, "cached_check", lambda paths, **kw: hostile_run(str(nb)))
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    result = runner.invoke(cli, ["check", str(nb), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output and "[bold]=HYPERLINK" in result.output
    page = (tmp_path / "r.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page and "</td><script>" not in page
    assert "\x1b" not in page and "\\x1b]0;pwn" in page  # tracebacks: colours dropped, other escapes shown


def test_grade_progress_lines_are_inert():
    lines: list[str] = []
    plain = PlainProgress(lines.append)
    summary = BatchSummary("lesson3")
    for student in (ESC_STUDENT, FORMULA_STUDENT, "bo\nok     fake: 22/22 points"):
        plain.update(Outcome(student, "graded", "error", 0, 3, 1.0, f"01.ipynb: {HOSTILE}"), summary)
        plain.update(Outcome(student, "failed", message=HOSTILE), summary)
    text = "\n".join(lines)
    assert_inert(text)
    assert "\x1b" not in text
    assert len(lines) == 6 and not any(line.startswith("ok") for line in text.split("\n"))  # a name cannot forge a line
    console, buf = _console(True)
    rich = RichProgress(console)
    rich.update(Outcome(ESC_STUDENT, "failed", message=HOSTILE), summary)
    rich.update(Outcome(ESC_STUDENT, "graded", "error", 0, 3, 1.0, HOSTILE), summary)
    out = buf.getvalue()
    assert_inert(out)
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's own colours (the highlighter splits the text)
    assert "\x1b" not in out  # no hyperlink was made from [link=...]
    assert "[link=http://x]y[/link]" in out and "[bold]=HYPERLINK" in out


def test_learn_progress_is_inert(tmp_path, runner, monkeypatch):
    from grader.progress import record_check

    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    run = hostile_run()
    nb = run.notebooks[0]
    nb.lesson = "[bold]" + HOSTILE
    nb.checks[0].name = "mse" + HOSTILE
    assert record_check(run) is None
    result = runner.invoke(cli, ["progress"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "[bold]" in result.output and "\\x1b]0;pwn" in result.output


def test_learn_errors_quote_names_inertly(tmp_path, runner):
    bad = tmp_path / f"nb{HOSTILE.replace('/', '_')}.ipynb"
    bad.write_text("{ not json")
    result = runner.invoke(cli, ["grade", str(bad), "--gradebook", str(tmp_path / "gb.db")])
    assert result.exit_code == 2 and "expected a folder of student folders" in result.output
    assert_inert(result.output)


# ---------------------------------------------------------------------------------------------
# CSV, JUnit XML, Gradescope JSON, HTML feedback and dashboard: from one gradebook


@pytest.fixture
def hostile_gradebook(tmp_path):
    path = tmp_path / "gb.db"
    with Gradebook(path) as gb:
        fill(gb, {
            FORMULA_STUDENT: fake_run({"quad": ("passed", 1, 1), "mse": ("failed", 0, 1)}),
            SCRIPT_STUDENT: fake_run({"quad": ("failed", 0, 1), "mse": ("passed", 1, 1)}, error=f"not valid JSON: {HOSTILE}"),
            ESC_STUDENT: hostile_run(f"{ESC_STUDENT}/01_quadratic.ipynb"),
        }, problems={FORMULA_STUDENT: [f"extra notebook (not part of the assignment, ignored): {HOSTILE}.ipynb"]})  # fmt: skip
    return path


def test_csv_export_has_no_formulas_and_no_escapes(hostile_gradebook, runner):
    result = runner.invoke(cli, ["export", "--gradebook", str(hostile_gradebook), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert_inert(result.output)
    assert "\x1b" not in result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    students = {r["student"] for r in rows}
    assert "'" + FORMULA_STUDENT in students and SCRIPT_STUDENT in students
    assert inert.visible(ESC_STUDENT) in students
    for row in rows:
        for value in row.values():
            assert not value.startswith(inert.FORMULA_START), f"{value!r} would be evaluated by a spreadsheet"
    by = {r["student"]: r for r in rows}
    assert by["'" + FORMULA_STUDENT]["total"] == "1" and by["'" + FORMULA_STUDENT]["percent"] == "50"  # numbers stay numbers


def test_csv_keeps_our_negative_scores_numeric(tmp_path):
    with Gradebook(tmp_path / "gb.db") as gb:
        fill(gb, {"-neg": fake_run({"quad": ("failed", -1.5, 1)})})
        records = gb.submissions()
    [row] = list(csv.DictReader(io.StringIO(csv_text(records))))
    assert row["student"] == "'-neg"  # a learner's text starting with '-' is quoted ...
    assert row["total"] == "-1.5" and row["quad"] == "-1.5" and row["percent"] == "-150"  # ... our numbers are not


def test_junit_xml_parses_and_escapes(hostile_gradebook, runner):
    result = runner.invoke(cli, ["export", "--gradebook", str(hostile_gradebook), "--format", "junit"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert_inert(text)
    assert "\x1b" not in text and "\x00" not in text
    root = ET.fromstring(text)  # parses: nothing XML 1.0 forbids is left
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {FORMULA_STUDENT, SCRIPT_STUDENT, inert.visible(ESC_STUDENT)}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text
    failure = suites[inert.visible(ESC_STUDENT)].find("testcase/failure")
    assert "<script>alert(1)</script>" in failure.text and "\\x1b]0;pwn" in failure.get("message")
    assert HOSTILE.replace("\x1b", "").replace("\x07", "") not in text  # nothing silently half-removed either


def test_gradescope_json_is_escaped(hostile_gradebook):
    with Gradebook(hostile_gradebook, create=False) as gb:
        records = gb.submissions(with_json=True)
    for record in records:
        text = json.dumps(gradescope_results(record), indent=2)
        assert_inert(text)
        assert "\x1b" not in text


def test_feedback_pages_and_dashboard_escape_learner_text(hostile_gradebook, tmp_path, runner):
    out = tmp_path / "fb"
    result = runner.invoke(cli, ["export", "--gradebook", str(hostile_gradebook), "--format", "feedback", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pages = {p.name: p.read_text() for p in out.iterdir()}
    assert len(pages) == 3 and all(name.endswith(".html") and "/" not in name and "<" not in name for name in pages)
    for page in pages.values():
        assert "<script>" not in page and "</td><script>" not in page
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in page for page in pages.values())
    assert any("feedback for &lt;script&gt;alert(1)&lt;" in page for page in pages.values())
    result = runner.invoke(cli, ["dashboard", "--gradebook", str(hostile_gradebook), "--out", str(tmp_path / "d.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "d.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;" in page


def test_templates_never_mark_learner_text_safe():
    from grader.html import environment, templates_dir

    assert environment().autoescape is True
    for template in Path(templates_dir()).glob("*.j2"):
        for line in template.read_text().splitlines():
            if "|safe" in line.replace(" ", ""):
                assert "svg|safe" in line.replace(" ", ""), f"{template.name}: {line.strip()}"  # only our own SVG plots


# ---------------------------------------------------------------------------------------------
# the real thing: kernels


@pytest.mark.slow
def test_real_learn_check_of_a_hostile_notebook(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    nb = variant(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "work" / "01_quadratic.ipynb",
                 f"raise Exception({HOSTILE!r})",
                 replace={"mse": f"def mse(preds, acts):\n    raise Exception({HOSTILE!r})"})  # fmt: skip
    result = runner.invoke(cli, ["check", str(nb), "--html", str(tmp_path / "r.html"), "--no-cache", "-v"])
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;pwn\\x07\\x1b[2J[bold]=HYPERLINK" in result.output
    page = (tmp_path / "r.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page


@pytest.mark.slow
def test_real_learn_grade_of_hostile_student_folders_and_every_export(tmp_path, runner):
    from .test_grade import GOOD, student, tiny_pack

    formula, esc = FORMULA_STUDENT.replace("/", "\\"), ESC_STUDENT.replace("/", "_")  # folder names cannot hold '/'
    pack = tiny_pack(tmp_path / "pack")
    subs = tmp_path / "subs"
    student(subs, formula, *GOOD)
    student(subs, SCRIPT_STUDENT, GOOD[0], f"def cube(x):\n    raise Exception({HOSTILE!r})")
    student(subs, esc, *GOOD, file="squares-Copy1.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), str(subs / esc / f"extra{HOSTILE.replace('/', '_')}.ipynb"))
    gb = tmp_path / "gb.db"
    result = runner.invoke(cli, ["grade", str(subs), "--assignment", str(pack), "--gradebook", str(gb), "-j", "2", *allow_unsandboxed()])
    assert result.exit_code == 0, result.output
    assert "3 graded" in result.output
    assert_inert(result.output)
    assert "\x1b" not in result.output  # the progress lines (not a terminal here)
    csv_out = runner.invoke(cli, ["export", "--gradebook", str(gb)]).output
    assert_inert(csv_out)
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(csv_out))}
    assert rows["'" + formula]["total"] == "3" and rows[SCRIPT_STUDENT]["cube"] == "0" and rows[inert.visible(esc)]["total"] == "3"
    assert "\\x1b[2J[bold]=HYPERLINK" in rows[inert.visible(esc)]["problems"]  # text, shown as it is
    xml = runner.invoke(cli, ["export", "--gradebook", str(gb), "--format", "junit"]).output
    assert_inert(xml)
    root = ET.fromstring(xml)
    cube = next(c for c in root.iter("testcase") if c.get("name") == "cube" and c.get("classname").startswith(SCRIPT_STUDENT))
    assert "&lt;script&gt;" in xml and "<script>alert(1)</script>" in ET.tostring(cube, encoding="unicode").replace("&lt;", "<").replace(
        "&gt;", ">"
    )
    out = tmp_path / "fb"
    assert runner.invoke(cli, ["export", "--gradebook", str(gb), "--format", "feedback", "--out", str(out)]).exit_code == 0
    for page in out.iterdir():
        assert "<script>" not in page.read_text()
