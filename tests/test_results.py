"""The result model serialises to versioned JSON and back without loss."""

import json

import pytest

from grader.results import SCHEMA_VERSION, CaseResult, CellProblem, CheckResult, Diff, NotebookResult, RunResult, Status


def sample() -> NotebookResult:
    diff = Diff(kind="values", path="[0]", rtol=1e-5, atol=1e-5, mismatched=2, total=20, max_abs=3.0, max_abs_index=[5])
    case = CaseResult(label="fixed input 1", status=Status.FAILED, message="values differ", diff=diff, call="mse(...)", kind="values")
    check = CheckResult(name="mse", status=Status.FAILED, points=0.5, max_points=1, message="m", hint="h", cases=[case], kind="values")
    problem = CellProblem(cell=3, status=Status.ERROR, kind="exception", ename="ValueError", evalue="bad", traceback=["x"])
    return NotebookResult(
        path="a.ipynb",
        exercise="01.ipynb",
        lesson="lesson3",
        status=Status.FAILED,
        points=0.5,
        max_points=1,
        checks=[check],
        cell_problems=[problem],
        seed=7,
        sandbox="bwrap",
    )


def test_round_trip_through_json():
    nb = sample()
    data = json.loads(json.dumps(nb.to_dict()))
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["status"] == "failed"
    back = NotebookResult.from_dict(data)
    assert back == nb
    assert back.checks[0].diff.max_abs_index == [5]


def test_run_totals_and_round_trip():
    run = RunResult([sample(), sample()], seed=7)
    assert run.points == 1.0 and run.max_points == 2 and not run.passed
    data = json.loads(json.dumps(run.to_dict()))
    assert RunResult.from_dict(data).notebooks[1] == run.notebooks[1]


def test_other_schema_versions_are_refused():
    data = sample().to_dict()
    data["schema_version"] = 99
    with pytest.raises(ValueError):
        NotebookResult.from_dict(data)


def test_nan_is_not_written_as_invalid_json():
    nb = sample()
    nb.checks[0].cases[0].diff.max_rel = float("nan")
    json.loads(json.dumps(nb.to_dict(), allow_nan=False))
