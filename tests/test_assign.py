"""`learn assign`: packs and nbgrader sources become a release (for students) and a source (to
grade with); every check is proved on the solution and the stub first; hidden tests never reach
the release; an nbgrader assignment's test cells grade a class."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import nbformat
import pytest

from grader.assign import MARKER, convert_notebooks, is_test_cell
from grader.cli import cli
from grader.errors import LearnError
from grader.gradebook import Gradebook
from grader.lessons import load_lesson

from .conftest import EXERCISES, SOLUTIONS, allow_unsandboxed


def nbgrader_meta(grade_id: str, **flags) -> dict:
    return {"nbgrader": {"grade_id": grade_id, "schema_version": 3, "locked": False, "solution": False, "grade": False, **flags}}


SQUARES = 'def squares(n):\n    """The first n square numbers."""\n    ### BEGIN SOLUTION\n    return [i * i for i in range(1, n + 1)]\n    ### END SOLUTION'
SQUARES_TEST = (
    "assert squares(1) == [1]\n"
    'assert squares(3) == [1, 4, 9], "squares(3) should be [1, 4, 9]"\n'
    "### BEGIN HIDDEN TESTS\n"
    "assert squares(12)[-1] == 144  # SECRET-HIDDEN-CASE\n"
    "### END HIDDEN TESTS"
)


def nbgrader_source(folder: Path, extra_test: str | None = None) -> Path:
    """An nbgrader-style source folder: a solution cell with markers, one without (the whole cell
    is the answer), two autograder test cells (one with hidden tests), a written answer, a data file."""
    c = nbformat.v4
    cells = [
        c.new_markdown_cell("# Problem set 1: squares and cubes"),
        c.new_code_cell(SQUARES, metadata=nbgrader_meta("squares", solution=True)),
        c.new_code_cell(SQUARES_TEST, metadata=nbgrader_meta("test_squares", grade=True, locked=True, points=2)),
        c.new_code_cell("def cube(x):\n    return x ** 3", metadata=nbgrader_meta("cube", solution=True)),
        c.new_code_cell(
            "assert cube(2) == 8\nassert open('base.txt').read().strip() == '2'",
            metadata=nbgrader_meta("test cube", grade=True, locked=True, points=1),
        ),
        c.new_markdown_cell(
            "Why?\n\n### BEGIN SOLUTION\nBecause cubes grow fast.\n### END SOLUTION",
            metadata=nbgrader_meta("why", solution=True, grade=True, points=1),
        ),
    ]
    if extra_test:
        cells.append(c.new_code_cell(extra_test, metadata=nbgrader_meta("always", grade=True, points=1)))
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(c.new_notebook(cells=cells), str(folder / "problem1.ipynb"))
    (folder / "base.txt").write_text("2\n")
    return folder


def test_test_cells_are_nbgrader_graded_cells_or_plain_asserts():
    c = nbformat.v4
    assert is_test_cell(c.new_code_cell("x = 1", metadata=nbgrader_meta("t", grade=True)))
    assert not is_test_cell(c.new_code_cell("assert x", metadata=nbgrader_meta("s", grade=True, solution=True)))  # manual grading
    assert not is_test_cell(c.new_code_cell("assert x", metadata=nbgrader_meta("r", locked=True)))  # read-only, not graded
    assert is_test_cell(c.new_code_cell("import math\nassert f(2) == 4"))  # no nbgrader metadata: asserts make a test
    assert not is_test_cell(c.new_code_cell("def f(x):\n    assert x > 0\n    return x"))  # assert inside a function
    assert not is_test_cell(c.new_code_cell("#| begin solution\nassert y\n#| end solution"))
    assert not is_test_cell(c.new_markdown_cell("assert x"))


def test_nbgrader_notebooks_convert_into_a_pack_with_one_check_per_test_cell(tmp_path):
    src = nbgrader_source(tmp_path / "ps1")
    names = convert_notebooks([src / "problem1.ipynb"], tmp_path / "pack", "ps1", [src / "base.txt"])
    assert names == ["test_squares", "test_cube"]
    lesson = load_lesson(tmp_path / "pack")
    assert lesson.id == "ps1" and lesson.title == "Problem set 1: squares and cubes"
    assert [(c.name, c.points, c.hidden) for c in lesson.checks.values()] == [("test_squares", 2.0, True), ("test_cube", 1.0, False)]
    assert lesson.notebooks[0].data == ("base.txt",)
    code = lesson.check_code()
    [case] = code["test_squares"].build_cases(1)
    assert "SECRET-HIDDEN-CASE" in case.args[0] and case.reference is False  # hidden tests run at grading time
    nb = nbformat.read(str(tmp_path / "pack" / "problem1.ipynb"), as_version=4)
    assert nb.cells[3].source.startswith("### BEGIN SOLUTION")  # an nbgrader solution cell without markers


def test_bad_sources_are_clear_errors(tmp_path, runner):
    result = runner.invoke(cli, ["assign", "no-such-lesson"])
    assert result.exit_code == 2 and "not a lesson id" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["assign", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "holds no notebooks" in result.output
    src = tmp_path / "plain"
    src.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), str(src / "a.ipynb"))
    with pytest.raises(LearnError, match="no graded test cells"):
        convert_notebooks([src / "a.ipynb"], tmp_path / "pack", "plain")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    result = runner.invoke(cli, ["assign", "lesson3", "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "was not written by `learn assign`" in result.output
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
def test_nbgrader_assignment_release_and_class_grades(tmp_path, runner):
    src = nbgrader_source(tmp_path / "ps1")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["assign", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 checks pass on the solution and fail on the student version" in result.output
    release, source = out / "release", out / "source"
    assert sorted(p.name for p in release.iterdir()) == ["base.txt", "problem1.ipynb"]
    released = "".join(p.read_text() for p in release.iterdir())
    for secret in ("SECRET-HIDDEN-CASE", "144", "HIDDEN TESTS", "BEGIN SOLUTION", "return [i * i", "Because cubes", "x ** 3"):
        assert secret not in released, f"{secret!r} leaked into the release"
    assert "assert squares(3) == [1, 4, 9]" in released  # visible tests stay for students to run
    assert "SECRET-HIDDEN-CASE" in (source / "problem1.ipynb").read_text() and (source / "checks.py").is_file()

    subs = tmp_path / "subs"
    for name in ("good", "partial", "none"):
        (subs / name).mkdir(parents=True)
    shutil.copy(source / "problem1.ipynb", subs / "good")
    shutil.copy(release / "problem1.ipynb", subs / "none")
    nb = nbformat.read(str(release / "problem1.ipynb"), as_version=4)
    nb.cells[1].source = "def squares(n):\n    return [i * i for i in range(1, min(n, 3) + 1)]"  # passes only the visible tests
    nb.cells[3].source = "def cube(x):\n    return x * x * x"
    nbformat.write(nb, str(subs / "partial" / "problem1.ipynb"))
    gb = tmp_path / "gb.db"
    graded = runner.invoke(cli, ["grade", str(subs), "--assignment", str(out), "--gradebook", str(gb), "-j", "2", *allow_unsandboxed()])
    assert graded.exit_code == 0, graded.output
    with Gradebook(gb, create=False) as book:
        recs = {r.student: r for r in book.submissions(with_json=True)}
    assert {s: r.points for s, r in recs.items()} == {"good": 3, "partial": 1, "none": 0}
    partial = {c.name: c for c in recs["partial"].checks}
    assert partial["test_squares"].status == "failed" and partial["test_squares"].message == "a hidden test failed (AssertionError)"
    assert partial["test_cube"].status == "passed"
    none = {c.name: c for c in recs["none"].checks}
    assert none["test_squares"].kind == "not_implemented" and "line 1: assert squares(1) == [1]" in none["test_squares"].message
    assert "SECRET-HIDDEN-CASE" not in "".join(r.result_json for r in recs.values())


@pytest.mark.slow
def test_a_check_that_cannot_fail_makes_assign_refuse(tmp_path, runner):
    src = nbgrader_source(tmp_path / "ps1", extra_test="assert 1 + 1 == 2")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["assign", str(src), "--out", str(out), "--id", "ps1"])
    assert result.exit_code == 1
    assert "always (problem1.ipynb): passes on the generated student version" in result.output
    assert "refusing to write" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_lesson_pack_release_matches_the_exercises_and_keeps_hidden_checks_out(tmp_path, runner):
    pack = tmp_path / "lesson3"
    shutil.copytree(SOLUTIONS / "lesson3", pack, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (pack / "lesson.toml").read_text().replace('[checks.mse]\nnotebook = "01_quadratic.ipynb"',
                                                       '[checks.mse]\nnotebook = "01_quadratic.ipynb"\nhidden = true')  # fmt: skip
    (pack / "lesson.toml").write_text(toml)
    (pack / "checks.py").write_text((pack / "checks.py").read_text() + "\n# INSTRUCTOR-ONLY-MARKER\n")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["assign", str(pack), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "15 checks pass" in result.output
    release = out / "release"
    assert sorted(p.name for p in release.iterdir()) == sorted(p.name for p in (EXERCISES / "lesson3").iterdir())
    for p in release.iterdir():
        assert filecmp.cmp(p, EXERCISES / "lesson3" / p.name, shallow=False), f"{p.name} differs from exercises/lesson3"
        assert "INSTRUCTOR-ONLY-MARKER" not in p.read_text() and "hidden = true" not in p.read_text()
    assert "hidden = true" in (out / "source" / "lesson.toml").read_text()
    assert (out / MARKER).is_file()
    again = runner.invoke(cli, ["assign", str(pack), "--out", str(out)])  # re-running replaces its own output
    assert again.exit_code == 0, again.output
