"""Lesson packs are data: manifests are validated, errors name the file and the key."""

import shutil

import pytest

from grader.errors import LessonPackError, UnknownLessonError
from grader.lessons import all_lessons, get_lesson, identify, load_lesson
from grader.notebook import load_notebook

from .conftest import SOLUTIONS


def test_bundled_lessons_load_with_their_checks():
    lessons = all_lessons()
    assert "lesson3" in lessons
    for lesson in lessons.values():
        code = lesson.check_code()
        assert set(code) == set(lesson.checks)
        for spec in lesson.notebooks:
            assert lesson.solution_path(spec).is_file()
            assert lesson.exercise_path(spec).is_file()


def test_unknown_lesson_lists_known_ones():
    with pytest.raises(UnknownLessonError) as err:
        get_lesson("lesson99")
    assert "lesson3" in str(err.value)


def copy_pack(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(SOLUTIONS / "lesson3", pack)
    return pack


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.replace("points = 3", "pionts = 3"), "unknown key(s) ['pionts']"),
        (lambda t: t.replace('file = "02_relu.ipynb"', 'file = "nope.ipynb"'), "nope.ipynb does not exist"),
        (lambda t: t.replace('id = "lesson3"', 'id = "lesson 3"'), "id"),
        (lambda t: t + '\n[checks.extra]\nnotebook = "missing.ipynb"\n', "checks.extra.notebook"),
        (lambda t: t.replace("rtol = 1e-4", 'rtol = "small"'), "checks.fit_quad.rtol"),
        (lambda t: t + "\n[[[broken", "not valid TOML"),
    ],
)
def test_manifest_errors_name_file_and_key(tmp_path, edit, words):
    pack = copy_pack(tmp_path)
    manifest = pack / "lesson.toml"
    manifest.write_text(edit(manifest.read_text()))
    with pytest.raises(LessonPackError) as err:
        load_lesson(pack)
    assert "lesson.toml" in str(err.value)
    assert words in str(err.value)


def test_checks_must_match_the_manifest(tmp_path):
    pack = copy_pack(tmp_path)
    manifest = pack / "lesson.toml"
    manifest.write_text(manifest.read_text().replace("[checks.linear]", "[checks.linear_renamed]"))
    with pytest.raises(LessonPackError, match="linear"):
        load_lesson(pack).check_code()


def test_identify_by_metadata_then_by_file_name(tmp_path):
    nb = load_notebook(SOLUTIONS / "lesson3" / "02_relu.ipynb")
    lesson, spec = identify(nb, tmp_path / "whatever.ipynb")
    assert (lesson.id, spec.file) == ("lesson3", "02_relu.ipynb")
    nb.metadata.pop("learn")
    lesson, spec = identify(nb, tmp_path / "02_relu.ipynb")
    assert spec.file == "02_relu.ipynb"
    from grader.errors import UnknownNotebookError

    with pytest.raises(UnknownNotebookError, match="cannot tell which exercise"):
        identify(nb, tmp_path / "my_notes.ipynb")
