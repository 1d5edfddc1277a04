"""`learn check` through the CLI on real kernels: exit codes, messages, bad input."""

import json

import nbformat
import pytest

from grader.cli import cli

from .conftest import copy_to, solution, variant

pytestmark = pytest.mark.slow


def check(runner, *args):
    return runner.invoke(cli, ["check", *map(str, args)])


def test_solutions_pass_with_exit_0_and_write_json(runner, tmp_path):
    paths = [solution("lesson3", n) for n in ("01_quadratic.ipynb", "02_relu.ipynb", "03_matmul.ipynb")]
    out = tmp_path / "r.json"
    result = check(runner, *paths, "--json", out, "--seed", 99)
    assert result.exit_code == 0, result.output
    assert "Total: 22/22 points" in result.output and "seed 99" in result.output
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["seed"] == 99 and data["passed"] is True
    assert {c["name"] for nb in data["notebooks"] for c in nb["checks"]} >= {"quad", "fit_quad", "prep_money"}


def test_invalid_json_exits_2_without_traceback(runner, tmp_path):
    bad = tmp_path / "01_quadratic.ipynb"
    bad.write_text("{not json")
    result = check(runner, bad)
    assert result.exit_code == 2
    assert "not valid JSON" in result.output
    assert "Traceback" not in result.output


def test_unknown_notebook_exits_2(runner, tmp_path):
    nb = tmp_path / "notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), str(nb))
    result = check(runner, nb)
    assert result.exit_code == 2 and "cannot tell which exercise" in result.output


def test_empty_notebook_is_graded_as_missing_everything(runner, tmp_path):
    nb = tmp_path / "02_relu.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(nb))
    result = check(runner, nb)
    assert result.exit_code == 1
    assert "no cell of 02_relu.ipynb defines `rectified_linear`" in result.output


def test_renamed_function_is_reported_missing(runner, tmp_path):
    src = solution("lesson3", "01_quadratic.ipynb")
    text = src.read_text().replace("def mse(", "def mean_sq_err(").replace("mse(f(x), y)", "mean_sq_err(f(x), y)")
    nb = tmp_path / "01_quadratic.ipynb"
    nb.write_text(text)
    result = check(runner, nb, "--only", "mse", "--only", "quad_mse")
    assert result.exit_code == 1
    assert "no cell of 01_quadratic.ipynb defines `mse`" in result.output and "by this exact name" in result.output
    assert "quad_mse" in result.output


def test_learner_exception_shows_their_traceback_and_cell(runner, tmp_path):
    nb = variant(solution("lesson3", "02_relu.ipynb"), tmp_path / "02_relu.ipynb",
                 replace={"double_relu": "def double_relu(m1, b1, m2, b2, x):\n    return helper(m1, x)"})  # fmt: skip
    result = check(runner, nb, "--only", "double_relu", "--json", tmp_path / "r.json")
    assert result.exit_code == 1
    data = json.loads((tmp_path / "r.json").read_text())
    chk = data["notebooks"][0]["checks"][0]
    assert chk["kind"] == "unknown_name"
    assert "no cell of the notebook defines anything called `helper`" in chk["message"]
    assert "NameError: name 'helper' is not defined" in chk["message"]  # and Python's own words
    cell = 1 + next(i for i, c in enumerate(nbformat.read(str(nb), as_version=4).cells) if "def double_relu" in c.source)
    assert any(f"cell {cell}," in line for line in chk["traceback"]), chk["traceback"]


def test_infinite_loop_cell_times_out_and_later_cells_still_run(runner, tmp_path):
    src = solution("lesson3", "03_matmul.ipynb")
    nb = nbformat.read(str(src), as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell("while True:\n    pass"))
    path = tmp_path / "03_matmul.ipynb"
    nbformat.write(nb, str(path))
    result = check(runner, path, "--cell-timeout", 2, "--json", tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())["notebooks"][0]
    assert result.exit_code == 0, result.output  # every function is defined after the loop and still graded
    assert data["cell_problems"][0]["cell"] == 3 and data["cell_problems"][0]["kind"] == "timeout"
    assert data["points"] == data["max_points"]


def test_kernel_death_is_reported_and_grading_goes_on(runner, tmp_path):
    src = solution("lesson3", "02_relu.ipynb")
    nb = nbformat.read(str(src), as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("import os\nos._exit(1)"))
    path = tmp_path / "02_relu.ipynb"
    nbformat.write(nb, str(path))
    result = check(runner, path, "--json", tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())["notebooks"][0]
    assert result.exit_code == 1, result.output  # it ran and failed: not a usage error
    problem = data["cell_problems"][0]
    assert problem["kind"] == "kernel_died" and "exited with status 1" in problem["evalue"]
    # the notebook would not survive "Restart & Run All": no points, but each check says what it would score
    assert data["points"] == 0 and data["error_kind"] == "kernel_died"
    assert all("would score" in c["message"] for c in data["checks"])
    assert "killed its Python kernel in cell 4" in result.output


def test_nbformat3_notebook_is_upgraded_and_graded(runner, tmp_path):
    src = nbformat.read(str(solution("lesson3", "02_relu.ipynb")), as_version=4)
    v3 = nbformat.convert(src, 3)
    path = tmp_path / "02_relu.ipynb"
    path.write_text(nbformat.writes(v3, version=3))
    result = check(runner, path)
    assert result.exit_code == 0, result.output


def test_check_by_lesson_id_in_work_dir(runner, tmp_path):
    work = tmp_path / "w"
    assert runner.invoke(cli, ["fetch", "lesson3", "--dir", str(work)]).exit_code == 0
    copy_to(solution("lesson3", "03_matmul.ipynb"), work)
    result = check(runner, "lesson3", "--dir", work)
    assert result.exit_code == 1
    assert "03_matmul.ipynb" in result.output and "7/7 points" in result.output
    assert "not written yet" in result.output


def test_no_notebooks_is_a_usage_error(runner, tmp_path):
    result = check(runner, "lesson3", "--dir", tmp_path)
    assert result.exit_code == 2 and "learn fetch lesson3" in result.output
