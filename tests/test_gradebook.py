"""The gradebook on its own (no kernels): schema, claims and leases, atomic writes, two processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from grader import __version__
from grader.errors import GradebookError
from grader.gradebook import Gradebook, submission_status
from grader.results import CheckResult, NotebookResult, RunResult, Status


def fake_run(checks: dict[str, tuple[str, float, float]], notebook: str = "01_quadratic.ipynb", hidden=(), error=None) -> RunResult:
    """A RunResult as the grader would make it: {check: (status, points, max_points)}."""
    rows = [
        CheckResult(
            name=name,
            status=Status(status),
            points=points,
            max_points=max_points,
            hidden=name in hidden,
            message="" if status == "passed" else f"{name} is wrong",
            kind=None if status == "passed" else "values",
        )  # fmt: skip
        for name, (status, points, max_points) in checks.items()
    ]
    failed = error or any(c.status is not Status.PASSED for c in rows)
    nb = NotebookResult(path=f"x/{notebook}", exercise=notebook, lesson="lesson3", status=Status.ERROR if error else Status.FAILED if failed else Status.PASSED,
                        points=sum(c.points for c in rows), max_points=sum(c.max_points for c in rows), checks=rows, error=error,
                        error_kind="load" if error else None, grader_version=__version__)  # fmt: skip
    return RunResult([nb], seed=7, duration=1.5)


def fill(gb: Gradebook, runs: dict[str, RunResult], assignment: str = "lesson3", problems=None) -> None:
    for student, run in runs.items():
        key = (f"hash-{student}", __version__, "fp")
        assert gb.claim(student, assignment, key) == "claimed"
        error = next((nb.error for nb in run.notebooks if nb.error), None)
        assert gb.record(student, assignment, key, run, status=submission_status(run), problems=(problems or {}).get(student, []),
                         error=error, error_kind="load" if error else None)  # fmt: skip


def test_new_gradebook_uses_wal_and_a_busy_timeout(tmp_path):
    with Gradebook(tmp_path / "gb.db") as gb:
        assert gb.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert gb.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert gb.meta()["kind"] == "learn-gradebook"


def test_not_a_gradebook_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite at all" * 100)
    with pytest.raises(GradebookError, match="not a usable gradebook"):
        Gradebook(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (x)").connection.commit()
    with pytest.raises(GradebookError, match="not a learn gradebook"):
        Gradebook(other)
    with pytest.raises(GradebookError, match="no gradebook"):
        Gradebook(tmp_path / "missing.db", create=False)


def test_seed_is_chosen_once_per_assignment(tmp_path):
    with Gradebook(tmp_path / "gb.db") as gb:
        assert gb.seed("lesson3", 11) == 11
        assert gb.seed("lesson3", 99) == 11  # kept
        assert gb.seed("chapter4", 5) == 5
        assert gb.seed("lesson3", 42, force=True) == 42


def test_record_stores_rows_and_json_and_unchanged_is_skipped(tmp_path):
    with Gradebook(tmp_path / "gb.db") as gb:
        fill(
            gb,
            {"ann": fake_run({"quad": ("passed", 1, 1), "mse": ("failed", 0, 1)})},
            problems={"ann": ["missing notebook: 02_relu.ipynb"]},
        )
        [rec] = gb.submissions("lesson3", with_json=True)
        assert (rec.student, rec.state, rec.status, rec.points, rec.max_points) == ("ann", "graded", "failed", 1, 2)
        assert [(c.name, c.status, c.points) for c in rec.checks] == [("quad", "passed", 1), ("mse", "failed", 0)]
        assert rec.problems == ["missing notebook: 02_relu.ipynb"]
        assert rec.run_result().points == 1
        key = ("hash-ann", __version__, "fp")
        assert gb.unchanged("lesson3", {"ann": key}) == {"ann"}
        assert gb.unchanged("lesson3", {"ann": ("other-hash", __version__, "fp")}) == set()
        assert gb.claim("ann", "lesson3", key) == "unchanged"
        assert gb.claim("ann", "lesson3", key, regrade=True) == "claimed"


def test_a_live_lease_is_respected_and_a_dead_or_expired_one_is_taken_over(tmp_path):
    path = tmp_path / "gb.db"
    key = ("h", __version__, "fp")
    with Gradebook(path) as first, Gradebook(path) as second:
        assert first.claim("bo", "lesson3", key) == "claimed"
        assert second.claim("bo", "lesson3", key) == "busy"  # same host, live pid, lease not expired
        first.conn.execute("UPDATE submissions SET lease_until = 0")  # expired
        assert second.claim("bo", "lesson3", key) == "claimed"
        # the first process's result no longer counts: the claim is the second's now
        assert not first.record("bo", "lesson3", key, fake_run({"quad": ("passed", 1, 1)}), status="ok", problems=[])
        assert second.record("bo", "lesson3", key, fake_run({"quad": ("passed", 1, 1)}), status="ok", problems=[])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Gradebook(path) as gb:
        gb.conn.execute("INSERT INTO students (id, first_seen) VALUES ('cy', 'now')")
        gb.conn.execute(
            "INSERT INTO submissions (student, assignment, content_hash, grader_version, fingerprint, state, lease_owner, lease_until)"
            " VALUES ('cy', 'lesson3', 'h', ?, 'fp', 'pending', ?, ?)",
            (__version__, f"{gb.owner.split(':')[0]}:{dead.stdout.strip()}:dead", time.time() + 3600),
        )
        assert gb.claim("cy", "lesson3", key) == "claimed"  # its owner's process is gone


def test_a_failing_write_leaves_the_previous_grade_intact(tmp_path):
    with Gradebook(tmp_path / "gb.db") as gb:
        fill(gb, {"di": fake_run({"quad": ("passed", 1, 1), "mse": ("passed", 1, 1)})})
        key = ("new-hash", __version__, "fp")
        assert gb.claim("di", "lesson3", key) == "claimed"
        bad = fake_run({"quad": ("failed", 0, 1), "mse": ("failed", 0, 1)})
        bad.notebooks[0].checks[1].name = None  # type: ignore[assignment]  # NOT NULL violation, after the first writes
        with pytest.raises(sqlite3.IntegrityError):
            gb.record("di", "lesson3", key, bad, status="failed", problems=[])
        [rec] = gb.submissions("lesson3")
        assert rec.content_hash == "hash-di" and rec.points == 2 and len(rec.checks) == 2  # the old grade, whole
        assert gb.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_machinery_failure_is_retried_and_keeps_a_previous_grade(tmp_path):
    with Gradebook(tmp_path / "gb.db") as gb:
        key = ("h", __version__, "fp")
        assert gb.claim("new", "lesson3", key) == "claimed"
        assert gb.record("new", "lesson3", key, fake_run({"quad": ("error", 0, 1)}), status="error", problems=[], failed=True)
        assert gb.submissions()[0].state == "failed" and gb.unchanged("lesson3", {"new": key}) == set()
        fill(gb, {"old": fake_run({"quad": ("passed", 1, 1)})})
        old_key = ("hash-old", __version__, "fp")
        assert gb.claim("old", "lesson3", old_key, regrade=True) == "claimed"
        assert gb.record("old", "lesson3", old_key, fake_run({"quad": ("error", 0, 1)}), status="error", problems=[], failed=True)
        [old] = gb.submissions(students=["old"])
        assert (old.state, old.points) == ("graded", 1) and gb.attempts("old", "lesson3") == 2


CLAIMER = textwrap.dedent(
    """
    import sys, time
    from grader.gradebook import Gradebook
    got = []
    with Gradebook(sys.argv[1]) as gb:
        for i in range(40):
            student = f"s{i:02d}"
            if gb.claim(student, "lesson3", ("h", "v", "fp")) == "claimed":
                got.append(student)
                time.sleep(0.01)
    print(" ".join(got))
    """
)


def test_two_processes_never_claim_the_same_submission(tmp_path):
    path = tmp_path / "gb.db"
    Gradebook(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(path)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert not set(outs[0]) & set(outs[1])
    assert sorted(outs[0] + outs[1]) == [f"s{i:02d}" for i in range(40)]
