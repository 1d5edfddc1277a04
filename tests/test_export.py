"""Exports of a gradebook: CSV, Gradescope results.json (checked against the documented keys),
JUnit XML (parsed back), and per-student feedback pages. The gradebook is filled with results
shaped as the grader makes them (no kernels needed)."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest

from grader.cli import cli
from grader.export import csv_text, gradescope_results, junit_xml, safe_name
from grader.gradebook import Gradebook

from .test_gradebook import fake_run, fill

# https://gradescope-autograders.readthedocs.io/en/latest/specs/ (results.json)
GRADESCOPE_TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format", "visibility",
                  "stdout_visibility", "extra_data", "tests", "leaderboard"}  # fmt: skip
GRADESCOPE_TEST = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


@pytest.fixture
def gradebook(tmp_path):
    path = tmp_path / "gb.db"
    with Gradebook(path) as gb:
        fill(gb, {
            "ann": fake_run({"quad": ("passed", 1, 1), "mse": ("passed", 1, 1), "fit_quad": ("passed", 3, 3)}),
            "bo": fake_run({"quad": ("passed", 1, 1), "mse": ("failed", 0, 1), "fit_quad": ("timeout", 0, 3)}, hidden={"fit_quad"}),
            "cy, the <third> & \"last\"": fake_run({"quad": ("error", 0, 1), "mse": ("error", 0, 1), "fit_quad": ("error", 0, 3)},
                                                   error="not valid JSON \x1b[31m\x00"),
        }, problems={"bo": ["missing notebook: 02_relu.ipynb"]})  # fmt: skip
    return path


def test_csv_has_a_row_per_student_with_total_and_per_check_points(gradebook, runner):
    result = runner.invoke(cli, ["export", "--gradebook", str(gradebook), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert list(rows[0])[:5] == ["student", "total", "possible", "percent", "status"]
    by = {r["student"]: r for r in rows}
    assert [(s, r["total"], r["possible"], r["status"]) for s, r in by.items()] == [
        ("ann", "5", "5", "ok"), ("bo", "1", "5", "failed"), ('cy, the <third> & "last"', "0", "5", "error")]  # fmt: skip
    assert (by["bo"]["quad"], by["bo"]["mse"], by["bo"]["fit_quad"]) == ("1", "0", "0")
    assert by["bo"]["problems"] == "missing notebook: 02_relu.ipynb" and "not valid JSON" in by['cy, the <third> & "last"']["problems"]
    assert [c for c in rows[0] if any(w in c for w in ("total", "score", "points"))] == ["total"]


def test_csv_to_a_file_and_check_columns_that_look_like_totals_are_prefixed(gradebook, tmp_path, runner):
    out = tmp_path / "grades.csv"
    assert runner.invoke(cli, ["export", "--gradebook", str(gradebook), "--out", str(out)]).exit_code == 0
    assert out.read_text().startswith("student,total,")
    with Gradebook(gradebook) as gb:
        fill(gb, {"dee": fake_run({"total_loss": ("passed", 1, 1)})}, assignment="chapter4")
        records = gb.submissions()
    header = next(csv.reader(io.StringIO(csv_text(records))))
    assert "check:chapter4:total_loss" in header and "lesson3 total" in header and "chapter4 total" in header


def test_gradescope_results_follow_the_documented_schema(gradebook, tmp_path, runner):
    out = tmp_path / "gs"
    result = runner.invoke(cli, ["export", "--gradebook", str(gradebook), "--format", "gradescope", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*/results.json"))
    assert len(files) == 3  # one results.json per student, as Gradescope's autograder writes it
    for path in files:
        data = json.loads(path.read_text())
        assert set(data) <= GRADESCOPE_TOP and {"score", "tests", "execution_time"} <= set(data)
        assert data["visibility"] in VISIBILITY and data["stdout_visibility"] in VISIBILITY and data["output_format"] in FORMATS
        assert isinstance(data["score"], (int, float)) and isinstance(data["execution_time"], (int, float))
        for test in data["tests"]:
            assert set(test) <= GRADESCOPE_TEST and {"name", "score", "max_score", "output", "visibility"} <= set(test)
            assert test["visibility"] in VISIBILITY and test["status"] in ("passed", "failed")
            assert 0 <= test["score"] <= test["max_score"]
        assert data["score"] == sum(t["score"] for t in data["tests"])
    bo = json.loads((out / "bo" / "results.json").read_text())
    assert [t["name"] for t in bo["tests"]] == ["01_quadratic.ipynb: quad", "01_quadratic.ipynb: mse", "01_quadratic.ipynb: fit_quad"]
    assert bo["tests"][2]["visibility"] == "after_published" and bo["tests"][0]["visibility"] == "visible"
    assert bo["tests"][1]["output"] == "mse is wrong" and "missing notebook: 02_relu.ipynb" in bo["output"]
    one = runner.invoke(cli, ["export", "--gradebook", str(gradebook), "--format", "gradescope", "--student", "ann"])
    assert one.exit_code == 0 and json.loads(one.output)["score"] == 5
    many = runner.invoke(cli, ["export", "--gradebook", str(gradebook), "--format", "gradescope"])
    assert many.exit_code == 2 and "give --out DIR" in many.output


def test_junit_xml_parses_back_with_a_suite_per_student(gradebook, runner):
    result = runner.invoke(cli, ["export", "--gradebook", str(gradebook), "--format", "junit"])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.output)
    assert root.tag == "testsuites" and (root.get("tests"), root.get("failures"), root.get("errors")) == ("9", "1", "4")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"ann", "bo", 'cy, the <third> & "last"'}
    bo = suites["bo"]
    assert (bo.get("tests"), bo.get("failures"), bo.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in bo.findall("testcase")}
    assert cases["mse"].find("failure").get("message") == "mse is wrong" and cases["mse"].get("classname") == "bo.01_quadratic"
    assert cases["fit_quad"].find("error").get("type") == "values" and cases["quad"].find("failure") is None
    assert "missing notebook" in bo.find("system-err").text
    assert "\x1b" not in result.output and "\x00" not in result.output


def test_feedback_pages_reuse_the_learner_report(gradebook, tmp_path, runner):
    out = tmp_path / "feedback"
    result = runner.invoke(cli, ["export", "--gradebook", str(gradebook), "--format", "feedback", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pages = sorted(p.name for p in out.iterdir())
    assert pages == sorted(["ann.html", "bo.html", safe_name('cy, the <third> & "last"') + ".html"])
    html = (out / "bo.html").read_text()
    assert "lesson3: feedback for bo" in html and "mse is wrong" in html and "fit_quad" in html
    assert "<third>" not in (out / pages[-1]).read_text()  # escaped


def test_export_errors_are_one_line_messages(tmp_path, runner):
    result = runner.invoke(cli, ["export", "--gradebook", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no gradebook at" in result.output and "Traceback" not in result.output
    Gradebook(tmp_path / "empty.db").close()
    result = runner.invoke(cli, ["export", "--gradebook", str(tmp_path / "empty.db")])
    assert result.exit_code == 2 and "no graded submissions" in result.output


def test_xml_and_csv_views_agree_on_points(gradebook):
    with Gradebook(gradebook) as gb:
        records = gb.submissions(with_json=True)
    totals = {r["student"]: float(r["total"]) for r in csv.DictReader(io.StringIO(csv_text(records)))}
    root = ET.fromstring(junit_xml(records))
    props = {s.get("name"): float(s.find("properties/property[@name='points']").get("value")) for s in root.findall("testsuite")}
    assert totals == props == {r.student: gradescope_results(r)["score"] for r in records}
