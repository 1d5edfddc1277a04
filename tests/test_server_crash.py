"""`kill -9` of `learn serve` mid-queue loses no submission and grades each exactly once
(the harness is bench/server_load.py, the load test's, run small)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("server_load", ROOT / "bench" / "server_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kill_9_mid_queue_then_restart_grades_every_submission_exactly_once():
    bench = load_bench()
    result = bench.run(n=6, jobs=1, window=0.5, kill_after=1, sleep=1.5, compare=False, timeout=400)
    assert result["killed_mid_queue"] and result["rows_at_kill"] == 6  # every upload was in the database before the kill
    assert result["pending_at_kill"] >= 3, result  # the kill came mid-queue
    assert result["graded"] == result["in_database"] == 6, result
    assert result["graded_more_than_once"] == [] and result["never_graded"] == [], result
    assert result["ok"]
