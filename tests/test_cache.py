"""An unchanged notebook's check result comes back from the cache without running anything."""

import json

import nbformat
import pytest

import grader.grading
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
