"""`learn watch`: after the first check, a save re-checks exactly the notebook whose content
changed - on the same warm kernels - and a save that changes nothing re-checks nothing."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from grader.cli import cli
from grader.results import Status
from grader.watch import is_watched_name, watch

from .conftest import copy_to, solution, variant

LINEAR_NO_BIAS = "def linear(x, w, b):\n    return x @ w\n"


def test_only_notebooks_a_learner_edits_are_watched():
    assert is_watched_name("/w/01_quadratic.ipynb")
    for name in ("/w/.ipynb_checkpoints/01_quadratic-checkpoint.ipynb", "/w/01.bak.20240101.ipynb", "/w/.~01.ipynb",
                 "/w/learn-report.html", "/w/notes.txt"):  # fmt: skip
        assert not is_watched_name(name), name


def wait_for(condition, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for watch"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_save_rechecks_exactly_the_changed_notebook(tmp_path):
    quad = copy_to(solution("lesson3", "01_quadratic.ipynb"), tmp_path)
    matmul = copy_to(solution("lesson3", "03_matmul.ipynb"), tmp_path)
    rounds = []
    loop_box: dict = {}

    def run():
        async def main():
            loop_box["stop"] = asyncio.Event()
            loop_box["loop"] = asyncio.get_running_loop()
            return await watch([quad, matmul], on_round=rounds.append, stop_event=loop_box["stop"], max_rounds=2,
                               only=["quad", "linear"], seed=5, debounce_ms=200, poll_s=0.5)  # fmt: skip

        loop_box["rounds"] = asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(rounds) >= 1)
        first = rounds[0]
        assert sorted(p.name for p in first.changed) == ["01_quadratic.ipynb", "03_matmul.ipynb"]
        assert first.run.passed and first.report is not None and first.report.is_file()
        # an autosave that changes nothing: new mtime, same bytes
        os.utime(quad, (time.time() + 5, time.time() + 5))
        time.sleep(1.5)
        assert len(rounds) == 1, "an unchanged notebook was re-checked"
        variant(matmul, matmul, replace={"linear": LINEAR_NO_BIAS})
        wait_for(lambda: len(rounds) >= 2)
    finally:
        if "loop" in loop_box:
            loop_box["loop"].call_soon_threadsafe(loop_box["stop"].set)
        thread.join(120)
    assert not thread.is_alive() and loop_box["rounds"] == 2
    second = rounds[1]
    assert [p.name for p in second.changed] == ["03_matmul.ipynb"]
    [nb] = second.run.notebooks
    assert nb.exercise == "03_matmul.ipynb" and nb.checks[0].name == "linear" and nb.checks[0].status is Status.FAILED
    assert "bias" in nb.checks[0].message
    # the report keeps the latest result of both notebooks
    assert [n.exercise for n in second.latest.notebooks] == ["01_quadratic.ipynb", "03_matmul.ipynb"]
    assert second.latest.notebooks[0].passed and not second.latest.notebooks[1].passed
    html = second.report.read_text()
    assert "01_quadratic.ipynb" in html and "03_matmul.ipynb" in html and "bias" in html


@pytest.mark.slow
def test_watch_command_checks_then_stops_after_max_runs(runner, tmp_path):
    copy_to(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "w")
    result = runner.invoke(cli, ["watch", "--dir", str(tmp_path / "w"), "--only", "quad", "--max-runs", "1"])
    assert result.exit_code == 0, result.output
    assert "round 1" in result.output and "1/1 points" in result.output and "Watching 1 notebook" in result.output
    assert (tmp_path / "w" / "learn-report.html").is_file()
