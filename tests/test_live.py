"""Live progress: the running notebooks' table (grader.live) and the students being graded now (learn grade)."""

from __future__ import annotations

import io
import types

from rich.console import Console

from grader import live


def test_a_running_notebook_says_which_cell_and_for_how_long_against_its_limit():
    job = types.SimpleNamespace(name="01_quadratic.ipynb", label="")
    live.started(job)
    try:
        live.cell(job, 5, 23, 60.0)
        [entry] = [e for e in live.snapshot() if e.name == "01_quadratic.ipynb"]
        assert live.describe(entry, entry.since + 2.1) == "01_quadratic.ipynb: cell 5 of 23, 2.1s (limit 60s)"
        live.checking(job, 14)
        [entry] = [e for e in live.snapshot() if e.name == "01_quadratic.ipynb"]
        assert live.describe(entry, entry.since + 1).startswith("01_quadratic.ipynb: checking 14 calls of the graded functions")
    finally:
        live.finished(job)
    assert not [e for e in live.snapshot() if e.name == "01_quadratic.ipynb"]


def test_the_reference_run_is_labelled():
    job = types.SimpleNamespace(name="01_quadratic.ipynb", label="01_quadratic.ipynb (the reference solution)")
    live.started(job)
    try:
        assert any(e.name.endswith("(the reference solution)") for e in live.snapshot())
    finally:
        live.finished(job)


def test_shown_draws_nothing_outside_a_terminal():
    out = io.StringIO()
    with live.shown(Console(file=out), "Checking 1 notebook"):
        pass
    assert out.getvalue() == ""


def test_learn_grade_shows_the_students_being_graded_now():
    from grader.batch import BatchSummary, Outcome, RichProgress

    progress = RichProgress(Console(file=io.StringIO(), force_terminal=True, width=200))
    progress.start(3, 0)
    try:
        progress.started("alice")
        progress.in_flight["alice"] -= 12  # started twelve seconds ago
        progress.started("bob")
        column = progress.progress.columns[-1]
        assert str(column.render(None)).startswith("now: alice 12s, bob 0s")
        progress.update(Outcome("alice", "graded", "ok", 1, 1, 12.0), BatchSummary("lesson3", total=3))
        assert str(column.render(None)).startswith("now: bob")
    finally:
        progress.stop()


def test_the_service_sends_one_requests_entries_and_the_client_shows_them():
    first, second = (types.SimpleNamespace(name=n, label="") for n in ("a.ipynb", "b.ipynb"))
    mine, theirs = object(), object()
    token = live.OWNER.set(mine)
    live.started(first)
    live.OWNER.reset(token)
    token = live.OWNER.set(theirs)
    live.started(second)
    live.OWNER.reset(token)
    try:
        live.cell(first, 3, 9, 60.0)
        wire = live.to_wire(live.snapshot(mine))
        assert [(e["name"], e["stage"], e["cell"], e["total"], e["limit"]) for e in wire] == [("a.ipynb", "cell", 3, 9, 60.0)]
    finally:
        live.finished(first), live.finished(second)
    live.remote([{**wire[0], "elapsed": 4.0}, {"name": "broken"}, "not even a dict"])  # what cannot be read is dropped
    try:
        [entry] = [e for e in live.snapshot() if e.name == "a.ipynb"]
        assert live.describe(entry).startswith("a.ipynb: cell 3 of 9, 4.0s (limit 60s)")
    finally:
        live.remote([])
    assert not [e for e in live.snapshot() if e.name == "a.ipynb"]
