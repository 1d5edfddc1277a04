"""`learn grade`: a class graded into a gradebook on real kernels - known answers, bad notebooks,
skipping unchanged work, a SIGKILL mid-batch and a resume, two graders at once, zip input.

Most tests use a tiny lesson pack (one notebook, two checks) written into tmp_path, so a
submission costs a fraction of a second; one test grades lesson 3 itself.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from grader.batch import _class_root, discover, match_notebooks, resolve_assignment, safe_extract
from grader.cli import cli
from grader.errors import LearnError
from grader.gradebook import Gradebook

from .conftest import ROOT, allow_unsandboxed, solution

TINY_TOML = """
id = "tiny"
title = "Tiny: squares and cubes"
[defaults]
cell_timeout = 20
notebook_timeout = 60
probe_timeout = 5
[[notebooks]]
file = "squares.ipynb"
title = "Squares"
[checks.square]
notebook = "squares.ipynb"
points = 2
[checks.cube]
notebook = "squares.ipynb"
points = 1
hidden = true
"""

TINY_CHECKS = """
from grader.checks import Case, check

@check("square")
def square_cases(rng):
    yield Case.call(3.0, label="three")
    yield Case.call(rng.randn(4), random=True)

@check("cube")
def cube_cases(rng):
    yield Case.call(2.0, label="two")
"""

SQUARE = "def square(x):\n    #| begin solution\n    return x * x\n    #| end solution"
CUBE = "def cube(x):\n    #| begin solution\n    return x ** 3\n    #| end solution"


def tiny_pack(folder: Path) -> Path:
    """A lesson pack with one notebook (square: 2 points, cube: 1 point, hidden)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lesson.toml").write_text(TINY_TOML)
    (folder / "checks.py").write_text(TINY_CHECKS)
    write_nb(folder / "squares.ipynb", "import torch", SQUARE, CUBE)
    return folder


def write_nb(path: Path, *cells: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(nb, str(path))
    return path


def student(root: Path, name: str, *cells: str, file: str = "squares.ipynb") -> Path:
    return write_nb(root / name / file, "import torch", *cells)


GOOD = ("def square(x):\n    return x * x", "def cube(x):\n    return x ** 3")


def grade(runner, subs, gb, *args):
    return runner.invoke(cli, ["grade", str(subs), "--gradebook", str(gb), *map(str, args), *allow_unsandboxed()])


def table(gb_path: Path) -> dict[str, tuple]:
    with Gradebook(gb_path, create=False) as gb:
        return {r.student: (r.points, r.status, {c.name: c.status for c in r.checks}) for r in gb.submissions()}


# ---------------------------------------------------------------------------------------------
# discovery and zip files (no kernels)


def test_notebooks_are_matched_by_name_metadata_or_copy_suffix(tmp_path):
    lesson = resolve_assignment(str(ROOT / "solutions" / "lesson3"))
    a = write_nb(tmp_path / "01_quadratic (1).ipynb", "x = 1")
    b = tmp_path / "my relu work.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["learn"] = {"lesson": "lesson3", "notebook": "02_relu.ipynb"}
    nbformat.write(nb, str(b))
    c = write_nb(tmp_path / "notes.ipynb", "y = 2")
    matched, missing, extra, notes = match_notebooks([a, b, c], lesson)
    assert matched == {"01_quadratic.ipynb": a, "02_relu.ipynb": b}
    assert missing == ["03_matmul.ipynb"] and extra == ["notes.ipynb"]
    assert any("matched 01_quadratic.ipynb" in n for n in notes)


def _zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    links = links or {}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return path


def test_safe_extract_skips_unsafe_entries_and_limits_size(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "class.zip", {"export/ann/a.ipynb": b"{}", "../evil.txt": b"x", "/abs.txt": b"x",
                                            "export/bo/../../up.txt": b"x"}, links={"export/ann/link.ipynb": "/etc/passwd"})  # fmt: skip
    dest = tmp_path / "out"
    dest.mkdir()
    warnings = safe_extract(archive, dest)
    assert (dest / "export" / "ann" / "a.ipynb").read_bytes() == b"{}"
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "up.txt").exists() and not Path("/abs.txt").exists()
    assert not (dest / "export" / "ann" / "link.ipynb").exists()
    text = "\n".join(warnings)
    assert "'..'" in text and "absolute path" in text and "symbolic link" in text
    assert _class_root(dest) == dest / "export"
    import grader.batch as batch

    monkeypatch.setattr(batch, "MAX_ZIP_TOTAL", 1000)
    big = _zip(tmp_path / "big.zip", {"s/a.ipynb": b"0" * 5000})
    with pytest.raises(LearnError, match="inflates to more than the limit"):
        safe_extract(big, tmp_path / "out2")


def test_not_a_class_folder_is_a_clear_error(tmp_path, runner):
    (tmp_path / "loose.ipynb").write_text("{}")
    with pytest.raises(LearnError, match="no student folders"):
        discover(tmp_path, resolve_assignment("lesson3"))
    bad = tmp_path / "notzip.zip"
    bad.write_text("nope")
    result = runner.invoke(cli, ["grade", str(bad), "--gradebook", str(tmp_path / "gb.db")])
    assert result.exit_code == 2 and "expected a folder of student folders or a zip" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# grading (real kernels)


@pytest.mark.slow
def test_class_with_known_answers_gives_the_expected_gradebook(tmp_path, runner):
    pack = tiny_pack(tmp_path / "pack")
    subs = tmp_path / "subs"
    student(subs, "ann", *GOOD)
    student(subs, "bo", "def square(x):\n    return x + x", GOOD[1])  # wrong square
    student(subs, "cy", GOOD[0])  # no cube
    student(subs, "di", *GOOD, "import os\nos._exit(3)")  # kills its kernel
    (subs / "eve").mkdir()
    (subs / "eve" / "squares.ipynb").write_text('{"cells": [')  # truncated JSON
    student(subs, "fay", *GOOD, file="squares-Copy1.ipynb")  # renamed copy: still matched
    write_nb(subs / "fay" / "scratch.ipynb", "1 + 1")  # extra notebook
    write_nb(subs / "gus" / "other.ipynb", "1 + 1")  # the assignment's notebook is missing
    student(subs, "hal", *GOOD, "raise ValueError('oops')")  # a cell error does not cost points
    gb = tmp_path / "gb.db"
    result = grade(runner, subs, gb, "--assignment", pack, "-j", 2, "--feedback", tmp_path / "fb")
    assert result.exit_code == 0, result.output
    assert "8 graded" in result.output and "feedback: 8 pages" in result.output
    assert table(gb) == {
        "ann": (3, "ok", {"square": "passed", "cube": "passed"}),
        "bo": (1, "failed", {"square": "failed", "cube": "passed"}),
        "cy": (2, "failed", {"square": "passed", "cube": "error"}),
        "di": (0, "error", {"square": "error", "cube": "error"}),
        "eve": (0, "error", {"square": "error", "cube": "error"}),
        "fay": (3, "ok", {"square": "passed", "cube": "passed"}),
        "gus": (0, "error", {"square": "error", "cube": "error"}),
        "hal": (3, "ok", {"square": "passed", "cube": "passed"}),
    }
    with Gradebook(gb, create=False) as book:
        recs = {r.student: r for r in book.submissions(with_json=True)}
    assert all(r.max_points == 3 and r.grader_version and r.fingerprint and len(r.content_hash) == 64 for r in recs.values())
    assert "killed its Python kernel in cell 4" in recs["di"].error and "would score 2/2" in recs["di"].checks[0].message
    assert "not valid JSON" in recs["eve"].error and "eve/squares.ipynb" in recs["eve"].error
    assert recs["fay"].problems == [
        "extra notebook (not part of the assignment, ignored): scratch.ipynb",
        "squares-Copy1.ipynb matched squares.ipynb",
    ]
    assert recs["gus"].problems[0] == "missing notebook: squares.ipynb" and recs["gus"].checks[0].kind == "not_submitted"
    page = (tmp_path / "fb" / "bo.html").read_text()
    assert "square(3)" in page and "cube(2)" not in page  # the hidden check shows no inputs
    run = recs["hal"].run_result()
    assert run.notebooks[0].cell_problems[0].evalue == "oops" and run.notebooks[0].points == 3


@pytest.mark.slow
def test_unchanged_submissions_are_skipped_without_starting_kernels(tmp_path, runner, monkeypatch):
    pack = tiny_pack(tmp_path / "pack")
    subs = tmp_path / "subs"
    student(subs, "ann", *GOOD)
    student(subs, "bo", GOOD[0])
    gb = tmp_path / "gb.db"
    assert grade(runner, subs, gb, "--assignment", pack, "-j", 2).exit_code == 0
    import grader.kernels

    async def no_kernels(self):
        raise AssertionError("a kernel pool was started for unchanged submissions")

    monkeypatch.setattr(grader.kernels.KernelPool, "__aenter__", no_kernels)
    again = grade(runner, subs, gb, "--assignment", pack)
    assert again.exit_code == 0 and "0 graded" in again.output and "2 unchanged" in again.output
    monkeypatch.undo()
    student(subs, "bo", *GOOD)  # bo resubmits
    third = grade(runner, subs, gb, "--assignment", pack, "-j", 1)
    assert third.exit_code == 0 and "1 graded" in third.output and "1 unchanged" in third.output
    assert table(gb)["bo"][0] == 3
    forced = grade(runner, subs, gb, "--assignment", pack, "--regrade", "-j", 2)
    assert "2 graded" in forced.output


@pytest.mark.slow
def test_a_hanging_submission_hits_its_budget_and_the_batch_goes_on(tmp_path, runner):
    pack = tiny_pack(tmp_path / "pack")
    subs = tmp_path / "subs"
    student(subs, "ann", *GOOD)
    student(subs, "loop", *GOOD, "while True:\n    pass")
    student(subs, "zed", *GOOD)
    gb = tmp_path / "gb.db"
    result = grade(runner, subs, gb, "--assignment", pack, "-j", 2, "--timeout", 4)
    assert result.exit_code == 0, result.output
    t = table(gb)
    assert t["ann"][0] == t["zed"][0] == 3
    assert t["loop"][:2] == (0, "error") and set(t["loop"][2].values()) == {"timeout"}
    with Gradebook(gb, create=False) as book:
        [loop] = book.submissions(students=["loop"])
    assert "time limit of 4s" in loop.error and loop.duration < 30
    # with only a cell limit, the loop is interrupted and the functions are still graded
    gb2 = tmp_path / "gb2.db"
    assert grade(runner, subs, gb2, "--assignment", pack, "-j", 2, "--cell-timeout", 1).exit_code == 0
    assert table(gb2)["loop"][0] == 3


@pytest.mark.slow
def test_lesson3_class_from_a_zip(tmp_path, runner):
    sols = sorted((ROOT / "solutions" / "lesson3").glob("*.ipynb"))
    entries = {f"export/ok/{p.name}": p.read_bytes() for p in sols}
    wrong = nbformat.read(str(solution("lesson3", "01_quadratic.ipynb")), as_version=4)
    wrong.cells.append(nbformat.v4.new_code_cell("def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"))
    entries.update({f"export/wrong/{p.name}": p.read_bytes() for p in sols[1:]})
    entries["export/wrong/01_quadratic.ipynb"] = nbformat.writes(wrong).encode()
    entries["export/../escape.txt"] = b"no"
    archive = _zip(tmp_path / "lms-export.zip", entries)
    gb = tmp_path / "gb.db"
    result = grade(runner, archive, gb, "-j", 2)  # assignment guessed from the notebook names
    assert result.exit_code == 0, result.output
    assert "skipped 'export/../escape.txt'" in result.output
    t = table(gb)
    assert t["ok"][0] == 22 and t["ok"][1] == "ok"
    assert t["wrong"][2]["mse"] == "failed" and t["wrong"][0] < 22
    with Gradebook(gb, create=False) as book:
        [rec] = book.submissions(students=["wrong"], with_json=True)
    mse = next(c for c in rec.checks if c.name == "mse")
    assert mse.kind == "known_mistake" and "adds the squared errors up" in mse.message
    assert "learn-subs-" not in rec.result_json  # no temporary paths in the stored results


# ---------------------------------------------------------------------------------------------
# crashes and concurrency: real `learn grade` processes


def _learn(*args, **kw) -> subprocess.Popen:
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "grader.cli", *map(str, args), *allow_unsandboxed()], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)  # fmt: skip


def _slow_class(tmp_path: Path, n: int, seconds: float) -> Path:
    subs = tmp_path / "subs"
    for i in range(n):
        student(subs, f"s{i}", *GOOD, f"import time\ntime.sleep({seconds})")
    return subs


def _graded(gb: Path) -> int:
    if not gb.exists():
        return 0
    try:
        with sqlite3.connect(gb, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM submissions WHERE state = 'graded'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_a_consistent_gradebook_and_resume_grades_the_rest(tmp_path):
    pack = tiny_pack(tmp_path / "pack")
    subs = _slow_class(tmp_path, 6, 1.5)
    gb = tmp_path / "gb.db"
    proc = _learn("grade", subs, "--assignment", pack, "--gradebook", gb, "-j", "1")
    deadline = time.monotonic() + 240
    while _graded(gb) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _graded(gb)
    assert 2 <= done < 6, f"kill came too late or too early ({done} graded)"
    with sqlite3.connect(gb) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT s.student, s.result_json, COUNT(c.check_name) FROM submissions s LEFT JOIN check_results c"
                            " ON c.submission_id = s.id WHERE s.state = 'graded' GROUP BY s.id").fetchall()  # fmt: skip
        first_graded = {r[0] for r in rows}
        assert all(json.loads(js)["points"] == 3 and n == 2 for _, js, n in rows)  # every graded row is whole
        stamps = dict(conn.execute("SELECT student, graded_at FROM submissions WHERE state = 'graded'").fetchall())
    resume = _learn("grade", subs, "--assignment", pack, "--gradebook", gb, "-j", "2")
    out = resume.communicate(timeout=300)[0]
    assert resume.returncode == 0, out
    assert f"{6 - done} graded" in out and f"{done} unchanged" in out, out
    with sqlite3.connect(gb) as conn:
        final = dict(conn.execute("SELECT student, graded_at FROM submissions WHERE state = 'graded'").fetchall())
        attempts = dict(conn.execute("SELECT student, attempts FROM submissions").fetchall())
    assert len(final) == 6 and all(final[s] == stamps[s] for s in first_graded)
    assert set(attempts.values()) == {1}


@pytest.mark.slow
def test_two_graders_on_one_gradebook_share_the_work(tmp_path):
    pack = tiny_pack(tmp_path / "pack")
    subs = _slow_class(tmp_path, 6, 1.0)
    gb = tmp_path / "gb.db"
    Gradebook(gb).close()
    procs = [_learn("grade", subs, "--assignment", pack, "--gradebook", gb, "-j", "1") for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with sqlite3.connect(gb) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT student, state, attempts, points FROM submissions ORDER BY student").fetchall()
        checks = conn.execute("SELECT COUNT(*) FROM check_results").fetchone()[0]
    assert rows == [(f"s{i}", "graded", 1, 3.0) for i in range(6)]  # each graded exactly once
    assert checks == 12
    graded_by = [int(out.split(" graded (")[0].rsplit(" ", 1)[-1]) for out in outs]
    assert sum(graded_by) == 6, outs


# ---------------------------------------------------------------------------------------------
# fail closed: no filesystem isolation, no grading of other people's notebooks (unless told)


def test_grade_refuses_without_bubblewrap_and_leaves_no_gradebook(tmp_path, runner, monkeypatch):
    pack = tiny_pack(tmp_path / "pack")
    subs = tmp_path / "subs"
    student(subs, "ann", *GOOD)
    monkeypatch.setenv("LEARN_SANDBOX", "rlimit")  # forces the fallback, as on a machine without bubblewrap
    monkeypatch.delenv("LEARN_ALLOW_UNSANDBOXED", raising=False)
    gb = tmp_path / "gb.db"
    args = ["grade", str(subs), "--assignment", str(pack), "--gradebook", str(gb)]
    result = runner.invoke(cli, args)
    out = result.output
    assert result.exit_code == 2, out
    assert "refusing to grade other people's notebooks without filesystem isolation" in out
    assert "LEARN_SANDBOX=rlimit" in out and "the reference solutions" in out and "the network" in out
    assert "--allow-unsandboxed" in out and "LEARN_ALLOW_UNSANDBOXED=1" in out and "Traceback" not in out
    assert not gb.exists() and not list(tmp_path.glob("gb.db*"))  # nothing written, not even an empty gradebook
    monkeypatch.setenv("LEARN_ALLOW_UNSANDBOXED", "0")  # only an explicit yes opts in
    assert runner.invoke(cli, args).exit_code == 2 and not gb.exists()


def test_the_refusal_says_what_would_be_exposed(monkeypatch):
    import grader.batch as batch
    import grader.sandbox as sandbox
    from grader.errors import LearnError, SandboxRequiredError

    monkeypatch.delenv("LEARN_ALLOW_UNSANDBOXED", raising=False)
    monkeypatch.delenv("LEARN_SANDBOX", raising=False)
    box = sandbox.RlimitOnly()
    monkeypatch.setattr(sandbox, "choose", lambda preference=None: box)
    monkeypatch.setattr(sandbox, "bwrap_status", lambda: (None, "bwrap is not installed (not found on PATH)"))
    for euid, drops, words in ((0, False, "as root"), (0, True, "any user may read"), (1000, False, "as you")):
        monkeypatch.setattr(batch.os, "geteuid", lambda euid=euid: euid)
        box.drops_privileges = drops
        with pytest.raises(SandboxRequiredError) as caught:
            batch.require_isolation()
        message = str(caught.value)
        assert words in message and "the network" in message and "bubblewrap (bwrap) is not installed" in message
        assert "apt-get install bubblewrap" in message and "learn doctor" in message
    assert issubclass(SandboxRequiredError, LearnError) and SandboxRequiredError.exit_code == 2
    monkeypatch.setattr(batch, "_isolation_warned", set())
    warned: list[str] = []
    batch.require_isolation(allow=True, warn=warned.append)
    batch.require_isolation(allow=True, warn=warned.append)  # grade_folder, then grade_class: one warning
    assert len(warned) == 1 and warned[0].startswith("WARNING: grading without filesystem isolation")
    monkeypatch.setattr(sandbox, "choose", lambda preference=None: SimpleNamespace(mode="bwrap"))
    batch.require_isolation()  # bubblewrap: nothing to say


def test_cluster_workers_without_bubblewrap_are_refused_too(monkeypatch):
    import grader.batch as batch
    import grader.cluster as cluster
    from grader.errors import SandboxRequiredError

    monkeypatch.delenv("LEARN_ALLOW_UNSANDBOXED", raising=False)
    reports = {"tcp://10.0.0.7:4000": {"mode": "rlimit", "why": "bubblewrap (bwrap) is not installed", "exposure": "X.", "fix": "Y"},
               "tcp://10.0.0.8:4000": {"mode": "bwrap"}}  # fmt: skip
    monkeypatch.setattr(cluster, "worker_isolation", lambda address: reports)
    monkeypatch.setattr(batch, "_worker_reports", {})
    with pytest.raises(SandboxRequiredError, match=r"on Dask worker tcp://10\.0\.0\.7:4000: bubblewrap \(bwrap\) is not installed"):
        batch.require_isolation(scheduler="tcp://sched:8786")
    # a worker that joins later checks for itself, unless the coordinator allowed it
    state = SimpleNamespace(pool=SimpleNamespace(box=SimpleNamespace(mode="rlimit")))
    monkeypatch.setattr(cluster._WorkerGrading, "get", classmethod(lambda cls: state))
    with pytest.raises(SandboxRequiredError, match="on a Dask worker"):
        cluster.grade_remote(b"", {"allow_unsandboxed": False})


@pytest.mark.slow
def test_grade_with_the_flag_or_the_variable_grades_without_bubblewrap_and_warns(tmp_path, runner, monkeypatch):
    import grader.batch as batch

    pack = tiny_pack(tmp_path / "pack")
    subs = tmp_path / "subs"
    student(subs, "ann", *GOOD)
    student(subs, "bo", GOOD[0])
    monkeypatch.setenv("LEARN_SANDBOX", "rlimit")
    monkeypatch.delenv("LEARN_ALLOW_UNSANDBOXED", raising=False)
    monkeypatch.setattr(batch, "_isolation_warned", set())
    result = runner.invoke(cli, ["grade", str(subs), "--assignment", str(pack), "--gradebook", str(tmp_path / "a.db"), "-j", "2",
                                 "--allow-unsandboxed"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "WARNING: grading without filesystem isolation" in result.output and "2 graded" in result.output
    assert {s: t[0] for s, t in table(tmp_path / "a.db").items()} == {"ann": 3, "bo": 2}
    monkeypatch.setenv("LEARN_ALLOW_UNSANDBOXED", "1")  # the same for scripted CI rows
    again = runner.invoke(cli, ["grade", str(subs), "--assignment", str(pack), "--gradebook", str(tmp_path / "b.db"), "-j", "2"])
    assert again.exit_code == 0, again.output
    assert table(tmp_path / "b.db") == table(tmp_path / "a.db")
    with Gradebook(tmp_path / "b.db", create=False) as book:
        assert {nb.sandbox for r in book.submissions(with_json=True) for nb in r.run_result().notebooks} == {"rlimit"}
