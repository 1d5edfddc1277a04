"""`kill -9` of `learn serve` mid-queue loses no submission and grades each exactly once
(the harness is bench/server_load.py, the load test's, run small)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests import server_util

pg_cluster, db_url = server_util.pg_cluster, server_util.db_url  # fixtures: PostgreSQL as well as SQLite

ROOT = Path(__file__).resolve().parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("server_load", ROOT / "bench" / "server_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kill_9_mid_queue_then_restart_grades_every_submission_exactly_once(db_url):
    bench = load_bench()
    result = bench.run(n=6, jobs=1, window=0.5, kill_after=1, sleep=1.5, compare=False, timeout=400, db_url=db_url)
    assert result["killed_mid_queue"] and result["rows_at_kill"] == 6  # every upload was in the database before the kill
    assert result["pending_at_kill"] >= 3, result  # the kill came mid-queue
    assert result["graded"] == result["in_database"] == 6, result
    assert result["graded_more_than_once"] == [] and result["never_graded"] == [], result
    assert result["ok"]


@pytest.mark.slow
def test_learn_submit_against_a_running_server(tmp_path, runner):
    from grader.cli import cli

    bench = load_bench()
    env = bench.build(tmp_path / "w", 3)
    port = bench.free_port()
    proc = bench.start(env["course"], port, 1, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        good, wrong = env["students"]["s000"], env["students"]["s002"]  # every third notebook is wrong
        ok = runner.invoke(cli, ["submit", "--server", base, "--token", good["token"], "squares", str(good["notebook"])])
        assert ok.exit_code == 0 and "graded: 3/3 points" in ok.output, ok.output
        bad = runner.invoke(cli, ["submit", "--server", base, "squares", str(wrong["notebook"])], env={"LEARN_TOKEN": wrong["token"]})
        assert bad.exit_code == 1 and "graded: 1/3 points" in bad.output, bad.output
        refused = runner.invoke(cli, ["submit", "--server", base, "--token", "nope", "squares", str(good["notebook"])])
        assert refused.exit_code == 2 and "did not accept the token" in refused.output
        missing = runner.invoke(cli, ["submit", "--server", base, "--token", good["token"], "nope", str(good["notebook"])])
        assert missing.exit_code == 2 and "no open assignment" in missing.output
        down = runner.invoke(cli, ["submit", "--server", f"http://127.0.0.1:{bench.free_port()}", "--token", "t", "squares",
                                   str(good["notebook"])])  # fmt: skip
        assert down.exit_code == 2 and "cannot reach the course server" in down.output
    finally:
        bench.kill_group(proc)
