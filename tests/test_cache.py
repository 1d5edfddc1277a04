"""An unchanged notebook's check result comes back from the cache without running anything."""

import json

import nbformat
import pytest

import grader.grading
import grader.lessons
import grader.sandbox
from grader.cache import cached_check
from grader.cli import cli

from .conftest import copy_to, solution

pytestmark = pytest.mark.slow


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def forbid_grading(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a cached check must not grade anything")

    monkeypatch.setattr(grader.grading, "check_notebooks", boom)


def test_second_check_is_served_from_the_cache(cache_env, monkeypatch):
    nb = copy_to(solution("lesson3", "02_relu.ipynb"), cache_env / "w")
    first = cached_check([nb])
    assert not first.notebooks[0].cached and first.passed
    with monkeypatch.context() as m:
        forbid_grading(m)
        second = cached_check([nb])
    assert second.notebooks[0].cached
    assert second.notebooks[0].points == first.notebooks[0].points
    assert second.notebooks[0].seed == first.notebooks[0].seed


def test_changes_and_options_miss_the_cache(cache_env, monkeypatch):
    nb = copy_to(solution("lesson3", "02_relu.ipynb"), cache_env / "w")
    cached_check([nb], only=["double_relu"])
    assert cached_check([nb], only=["double_relu"]).notebooks[0].cached
    assert not cached_check([nb], only=["rectified_linear"]).notebooks[0].cached  # other options: a miss
    assert not cached_check([nb], only=["double_relu"], use_cache=False).notebooks[0].cached  # --no-cache
    edited = nbformat.read(str(nb), as_version=4)
    edited.cells.append(nbformat.v4.new_code_cell("# a change"))
    nbformat.write(edited, str(nb))
    assert not cached_check([nb], only=["double_relu"]).notebooks[0].cached


def test_cli_reports_cached_results_and_no_cache_flag(cache_env, runner):
    nb = copy_to(solution("lesson3", "03_matmul.ipynb"), cache_env / "w")
    assert runner.invoke(cli, ["check", str(nb)]).exit_code == 0
    again = runner.invoke(cli, ["check", str(nb), "--json", str(cache_env / "r.json")])
    assert again.exit_code == 0 and "cached (unchanged" in again.output
    assert json.loads((cache_env / "r.json").read_text())["notebooks"][0]["cached"] is True
    forced = runner.invoke(cli, ["check", str(nb), "--no-cache"])
    assert forced.exit_code == 0 and "cached (unchanged" not in forced.output


def test_unreadable_notebooks_are_never_cached(cache_env):
    bad = cache_env / "01_quadratic.ipynb"
    bad.write_text("{oops")
    for _ in range(2):
        result = cached_check([bad])
        assert not result.notebooks[0].cached and result.has_input_errors


def test_the_machine_is_part_of_the_key(cache_env, monkeypatch):
    """Another torch, IPython, sandbox mode or kernel backend may grade differently: no reuse."""
    import grader.cache as cache

    nb = copy_to(solution("lesson3", "03_matmul.ipynb"), cache_env / "w")
    options = {"only": [], "seed": None, "cell_timeout": None}
    lessons = grader.lessons.all_lessons()
    keys = {}
    for mode in ("bwrap", "rlimit"):
        monkeypatch.setattr(grader.sandbox, "choose", lambda *a, _m=mode: type("Box", (), {"mode": _m})())
        keys[mode] = cache._key_for(nb, options, lessons)
    monkeypatch.setenv("LEARN_KERNEL_BACKEND", "spawn")
    keys["spawn"] = cache._key_for(nb, options, lessons)
    from grader import fingerprint

    monkeypatch.setattr(fingerprint, "_library_versions", lambda: ("3.11.0", "torch=0.0", "ipython=9.7.0"))
    keys["versions"] = cache._key_for(nb, options, lessons)
    assert len(set(keys.values())) == 4, keys
    assert cache._key_for(nb, options, lessons) == keys["versions"]  # and stable


@pytest.mark.parametrize("kind", ["execution", "lesson"])
def test_machinery_failures_are_never_cached(cache_env, monkeypatch, kind):
    """A kernel that did not start or a reference that failed is the machine's fault: the next
    check after the fix grades again instead of repeating "cannot be graded"."""
    from grader.results import NotebookResult, RunResult, Status

    nb = copy_to(solution("lesson3", "03_matmul.ipynb"), cache_env / "w")
    calls = []

    async def broken(paths, **kw):
        calls.append(paths)
        return RunResult([NotebookResult(path=str(p), exercise="03_matmul.ipynb", lesson="lesson3", status=Status.ERROR,
                                         error="the machinery broke", error_kind=kind) for p in paths], seed=1)  # fmt: skip

    monkeypatch.setattr(grader.cache, "_grade_fresh", broken)
    for _ in range(2):
        result = cached_check([nb])
        assert not result.notebooks[0].cached and result.notebooks[0].error_kind == kind
    assert len(calls) == 2
    monkeypatch.undo()
    monkeypatch.setenv("LEARN_CACHE_DIR", str(cache_env / "cache"))
    assert cached_check([nb]).passed  # the machine is fixed: a real grade, not the stored failure


def test_a_failed_reference_is_not_remembered(cache_env, monkeypatch):
    """The reference cache must not keep a failure either (the reference is re-run next time)."""
    from click.testing import CliRunner

    from grader.cli import cli as learn

    nb = copy_to(solution("lesson3", "03_matmul.ipynb"), cache_env / "w")
    real = grader.grading.Lesson.solution_path

    def broken_solution(self, spec):
        bad = cache_env / "broken" / spec.file
        bad.parent.mkdir(exist_ok=True)
        sol = nbformat.read(str(real(self, spec)), as_version=4)
        sol.cells.insert(0, nbformat.v4.new_code_cell("import no_such_module_here"))
        nbformat.write(sol, str(bad))
        return bad

    monkeypatch.setattr(grader.grading.Lesson, "solution_path", broken_solution)
    first = CliRunner().invoke(learn, ["check", str(nb), "--no-html"])
    assert first.exit_code == 2 and "reference solution" in first.output, first.output
    monkeypatch.setattr(grader.grading.Lesson, "solution_path", real)
    again = CliRunner().invoke(learn, ["check", str(nb), "--no-html"])
    assert again.exit_code == 0, again.output
    assert "cached (unchanged" not in again.output
