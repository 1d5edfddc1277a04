"""`learn grade --scheduler`: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.gradebook import Gradebook

from .conftest import ROOT, SOLUTIONS, allow_unsandboxed, variant

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dask")
    env = dict(os.environ, PYTHONPATH=str(ROOT), LEARN_HOME=str(tmp / "home"), LEARN_CACHE_DIR=str(tmp / "cache"),
               DASK_DISTRIBUTED__WORKER__DAEMON="False")  # fmt: skip
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "scheduler.log", "w"))]  # fmt: skip
    for i in range(2):
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                  "--no-dashboard", "--name", f"w{i}", "--death-timeout", "60"]  # fmt: skip
        procs.append(subprocess.Popen(worker, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp / f"worker{i}.log", "w")))
    client = distributed.Client(address, timeout=60)
    try:
        client.wait_for_workers(2, timeout=120)
        yield {"address": address, "client": client, "tmp": tmp, "env": env}
    finally:
        client.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def make_class(root: Path, students: dict[str, str | None]) -> Path:
    """students: name -> code appended to 01_quadratic (None: the plain solutions)."""
    for name, extra in students.items():
        folder = root / name
        folder.mkdir(parents=True)
        for nb in sorted((SOLUTIONS / "lesson3").glob("*.ipynb")):
            shutil.copy(nb, folder / nb.name)
        if extra:
            variant(SOLUTIONS / "lesson3" / "01_quadratic.ipynb", folder / "01_quadratic.ipynb", extra)
    return root


def grade(classroom: Path, gradebook: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "grader.cli", "grade", str(classroom), "--assignment", "lesson3", "--gradebook", str(gradebook),
           "--seed", "777", "--cell-timeout", "10", *extra, *allow_unsandboxed()]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def table(gradebook: Path) -> dict:
    with Gradebook(gradebook, create=False) as gb:
        out = {}
        for rec in gb.submissions(with_json=True):
            run = rec.run_result()
            out[rec.student] = [(nb.exercise, c.name, c.status.value, c.points, c.kind) for nb in run.notebooks for c in nb.checks]
        return out


def test_cluster_grades_the_same_gradebook_as_a_local_run(cluster, tmp_path):
    classroom = make_class(tmp_path / "class", {
        "ada": None, "bob": "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()",
        "cyd": "import os\nos._exit(1)", "dee": None,
    })  # fmt: skip
    local = grade(classroom, tmp_path / "local.db", cluster["env"], "-j", "2")
    assert local.returncode == 0, local.stderr[-2000:]
    remote = grade(classroom, tmp_path / "dask.db", cluster["env"], "--scheduler", cluster["address"])
    assert remote.returncode == 0, remote.stdout[-2000:] + remote.stderr[-2000:]
    assert table(tmp_path / "dask.db") == table(tmp_path / "local.db")
    again = grade(classroom, tmp_path / "dask.db", cluster["env"], "--scheduler", cluster["address"])
    assert again.returncode == 0 and "4 unchanged" in again.stdout, again.stdout  # resume works as locally


def test_lost_workers_are_retried_and_a_worker_killer_is_an_error(cluster, tmp_path):
    from tests.dask_plugins import KillWorkerOn

    state = tmp_path / "plugin-state"
    state.mkdir()
    cluster["client"].register_plugin(KillWorkerOn(always=["poison"], once=["flaky"], state_dir=str(state)))
    try:
        classroom = make_class(tmp_path / "class", {"ok": None, "flaky": None, "poison": None})
        started = time.monotonic()
        done = grade(classroom, tmp_path / "gb.db", cluster["env"], "--scheduler", cluster["address"])
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert time.monotonic() - started < 600
    finally:
        cluster["client"].unregister_worker_plugin(KillWorkerOn.name)
    results = table(tmp_path / "gb.db")
    assert (state / "killed-flaky").exists(), "the flaky submission did take a worker down once"
    assert all(status == "passed" for *_, status, _, _ in results["flaky"]), "a lost worker's submission is retried elsewhere"
    assert all(status == "passed" for *_, status, _, _ in results["ok"])
    assert {kind for *_, kind in results["poison"]} == {"killed_workers"}
    assert sum(points for *_, points, _ in results["poison"]) == 0
    cluster["client"].wait_for_workers(2, timeout=120)  # the nannies brought the workers back


def test_the_course_server_grades_on_the_cluster(cluster, tmp_path, monkeypatch):
    """`learn serve --scheduler`: the server's queue worked by the Dask executor."""
    from grader.server import prepare
    from tests.server_util import make_course

    course, ids = make_course(tmp_path)
    _, worker = prepare(course.root, scheduler=cluster["address"], allow_unsandboxed=bool(allow_unsandboxed()))
    worker.course, worker.db = course, course.db
    worker.start()
    try:
        deadline = time.monotonic() + 300
        while course.submission(ids["sid"])["state"] not in ("graded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.stop()
    row = course.submission(ids["sid"])
    assert row["state"] == "graded" and row["points"] == row["max_points"] == 3, row
    assert row["grade_count"] == 1 and worker.error is None
