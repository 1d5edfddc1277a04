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
from grader.assign import _stage, leak_check
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
    lesson = _stage([str(source)], tmp_path / "staging", None)
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


@pytest.mark.parametrize("directive", ["### AUTOTEST mse", "### HASHED AUTOTEST mae"])
def test_autotest_directives_are_refused_by_name(tmp_path, directive, runner):
    src = tmp_path / "ps"
    shutil.copytree(SOURCE, src)
    nb = nbformat.read(str(src / "problem1.ipynb"), as_version=4)
    nb.cells[7].source = directive
    nbformat.write(nb, str(src / "problem1.ipynb"))
    (src / "autotests.yml").write_text("mse:\n  - test: 'type(mse(1, 2))'\n")
    with pytest.raises(LessonPackError, match=f"cell 8: nbgrader's `{directive.rsplit(' ', 1)[0]}` directive"):
        _stage([str(src)], tmp_path / "staging", None)
    result = runner.invoke(cli, ["assign", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is not supported by `learn assign`" in result.output
