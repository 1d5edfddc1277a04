"""Exercises are generated from solutions: markers, nbgrader compatibility, and no drift."""

import filecmp

import nbformat
import pytest

from grader.generate import MarkerError, generate_lesson, make_exercise, stub_code, stub_markdown
from grader.lessons import all_lessons


def test_solution_block_becomes_a_stub_at_its_indentation():
    src = "def f(x):\n    'doc'\n    #| begin solution\n    y = x + 1\n    return y\n    #| end solution\n"
    out = stub_code(src)
    assert "return y" not in out and "'doc'" in out
    assert "    raise NotImplementedError()" in out


def test_custom_stub_lines():
    src = "def f(x):\n    #| begin solution\n    #| stub: return ...  # fill in\n    return x\n    #| end solution"
    assert stub_code(src) == "def f(x):\n    return ...  # fill in"


def test_nbgrader_markers_and_hidden_tests():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert "# YOUR CODE HERE" in stub_code(src) and "return x" not in stub_code(src)
    tests = "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == 2\n### END HIDDEN TESTS\n"
    assert stub_code(tests).strip() == "assert f(1) == 1"
    assert stub_markdown("Answer:\n### BEGIN SOLUTION\nsecret\n### END SOLUTION") == "Answer:\nYOUR ANSWER HERE"  # as nbgrader writes it
    assert "secret" not in stub_markdown("<!-- begin solution -->secret<!-- end solution -->")


@pytest.mark.parametrize(
    "src",
    [
        "#| begin solution\nx = 1\n",
        "x = 1\n#| end solution\n",
        "#| begin solution\n#| begin solution\n#| end solution\n",
        "#| stub: x = 1\n",
        "#| begin hidden\nx = 1\n",
    ],
)
def test_unbalanced_markers_are_errors(src):
    with pytest.raises(MarkerError):
        stub_code(src, "nb.ipynb cell 3")


def test_exercise_metadata_and_solution_only_cells():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("#| solution-only\nprint('answer')"), nbformat.v4.new_code_cell("x = 1")]
    )
    ex = make_exercise(nb, "lessonX", "a.ipynb")
    assert [c.source for c in ex.cells] == ["x = 1"]
    assert ex.metadata["learn"] == {"lesson": "lessonX", "notebook": "a.ipynb", "version": "1", "kind": "exercise"}


@pytest.mark.parametrize("lesson_id", sorted(all_lessons()))
def test_committed_exercises_match_generation(tmp_path, lesson_id):
    lesson = all_lessons()[lesson_id]
    for path in generate_lesson(lesson, tmp_path):
        committed = lesson.exercises_dir / path.relative_to(tmp_path)
        assert committed.is_file(), f"{committed} is missing: run `learn generate`"
        assert filecmp.cmp(path, committed, shallow=False), f"{committed} is out of date: run `learn generate {lesson_id}`"


@pytest.mark.parametrize("lesson_id", sorted(all_lessons()))
def test_exercises_contain_no_solution_code(lesson_id):
    lesson = all_lessons()[lesson_id]
    for spec in lesson.notebooks:
        text = lesson.exercise_path(spec).read_text()
        assert "begin solution" not in text and "BEGIN SOLUTION" not in text
