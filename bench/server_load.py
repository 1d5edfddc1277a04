"""Load and crash test of `learn serve` on 127.0.0.1, and its throughput next to `learn grade`.

    build      a course (tiny pack 'squares', N students from a roster, a CLI token each) and the
               same class as folders for `learn grade`
    serve      `learn serve COURSE --port P -j J` as a subprocess (its own process group)
    submit     every student submits once, spread over --window seconds (threads, HTTP API)
    kill       with --kill K: after K are graded, SIGKILL the server's whole process group
               (server and kernels), start it again; nothing may be lost or graded twice
    measure    time to feedback per submission (submitted -> seen graded), p50/p95; server
               throughput; then `learn grade -j J` of the same class, same run

    python bench/server_load.py [N] [--jobs 2] [--window 300] [--kill K] [--sleep 0] [--port 0] [--db postgresql://...]

Prints a JSON summary; exits 1 when a submission is lost, duplicated or not graded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import nbformat


def _pack_files() -> tuple[str, str]:
    """lesson.toml and checks.py of the tiny pack the grade tests use (tests/test_grade.py)."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tests.test_grade import TINY_CHECKS, TINY_TOML

    return TINY_TOML, TINY_CHECKS


GOOD = ["import torch", "def square(x):\n    return x * x", "def cube(x):\n    return x ** 3"]
WRONG = ["import torch", "def square(x):\n    return x + x", "def cube(x):\n    return x ** 3"]


def write_nb(path: Path, cells: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), str(path))
    return path


def build(work: Path, n: int, sleep: float = 0.0, db_url: str | None = None) -> dict:
    """The course, tokens and notebooks (every third one wrong), and the class folder."""
    from grader.server.course import Course

    toml, checks = _pack_files()
    pack = work / "pack"
    pack.mkdir(parents=True)
    (pack / "lesson.toml").write_text(toml)
    (pack / "checks.py").write_text(checks)
    write_nb(pack / "squares.ipynb", GOOD)
    course = Course.open(work / "course", db_url)
    prof = course.redeem(course.first_start_link())
    names = [f"s{i:03d}" for i in range(n)]
    course.add_roster("student\n" + "\n".join(names) + "\n", prof["id"])
    course.publish(prof["id"], course.create_assignment(prof["id"], str(pack), "squares"), True)
    students = {}
    for i, name in enumerate(names):
        cells = (WRONG if i % 3 == 2 else GOOD) + ([f"import time\ntime.sleep({sleep})"] if sleep else [])
        nb = write_nb(work / "class" / name / "squares.ipynb", cells)
        students[name] = {"token": course.new_api_token(course.user_by_name(name)["id"]), "notebook": nb}
    return {"course": work / "course", "pack": pack, "class": work / "class", "students": students, "db": course.db}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def learn_bin() -> str:
    return str(Path(sys.executable).with_name("learn"))


def start(course: Path, port: int, jobs: int, log: Path, db_url: str | None = None, wait_ready: bool = True) -> subprocess.Popen:
    """Start `learn serve`; return once it answers and (with `wait_ready`) its kernels are warm."""
    from grader import sandbox

    extra = [] if sandbox.choose().mode == "bwrap" else ["--allow-unsandboxed"]
    db = ["--db", db_url] if db_url else []
    proc = subprocess.Popen([learn_bin(), "serve", str(course), "--port", str(port), "-j", str(jobs), *db, *extra],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"learn serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if not wait_ready or json.loads(response.read())["grading"] == "ready":
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("learn serve did not come up")


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def submit_all(base: str, students: dict, window: float) -> dict[int, float]:
    """Submit every student's notebook, spread over `window` seconds. Returns id -> submit time."""
    from grader.server.client import submit

    gap = window / max(1, len(students))
    started = time.monotonic()

    def one(i_name):
        i, name = i_name
        time.sleep(max(0.0, started + i * gap - time.monotonic()))
        t = time.monotonic()
        status = submit(base, "squares", [students[name]["notebook"]], students[name]["token"], wait=False, echo=lambda *_: None)
        return status["id"], t

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return dict(pool.map(one, enumerate(students)))


def graded(db) -> dict[int, dict]:
    return {r["id"]: r for r in db.all("SELECT id, state, grade_count, points FROM submissions")}


def run(n: int = 20, jobs: int = 2, window: float = 10.0, kill_after: int | None = None, sleep: float = 0.0, port: int = 0,
        compare: bool = True, timeout: float = 1800, db_url: str | None = None) -> dict:  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="learn-load-"))
    try:
        env = build(work, n, sleep, db_url)
        port = port or free_port()
        base, log = f"http://127.0.0.1:{port}", work / "serve.log"
        warm = time.monotonic()
        proc = start(env["course"], port, jobs, log, db_url)
        warmup_s = time.monotonic() - warm
        t0 = time.monotonic()
        seen: dict[int, float] = {}  # submission id -> when it was first seen graded (a watcher thread, while submitting)
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    for sid, row in graded(env["db"]).items():
                        if row["state"] in ("graded", "failed") and sid not in seen:
                            seen[sid] = time.monotonic()
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        killed, lost_check = False, {}
        deadline = time.monotonic() + timeout
        try:
            submitted = submit_all(base, env["students"], window)
            while len(seen) < n and time.monotonic() < deadline:
                if kill_after is not None and not killed and len(seen) >= kill_after:
                    kill_group(proc)  # kill -9, mid-queue (every upload answered): the server and its kernels
                    killed = True
                    lost_check = graded(env["db"])
                    proc = start(env["course"], port, jobs, log, db_url, wait_ready=False)  # submissions wait in the queue
                time.sleep(0.1)
        finally:
            stop.set()
            watcher.join()
            kill_group(proc)
        serve_s = max(seen.values(), default=t0) - t0
        rows = graded(env["db"])
        latencies = sorted(seen[s] - submitted[s] for s in seen if s in submitted)
        result = {
            "database": "postgresql" if db_url else "sqlite", "students": n, "jobs": jobs, "window_s": window, "killed_mid_queue": killed,
            "submitted": len(submitted), "in_database": len(rows), "graded": sum(r["state"] == "graded" for r in rows.values()),
            "graded_more_than_once": sorted(s for s, r in rows.items() if r["grade_count"] > 1),
            "never_graded": sorted(s for s, r in rows.items() if r["state"] != "graded"),
            "rows_at_kill": len(lost_check) if killed else None,
            "pending_at_kill": sum(r["state"] != "graded" for r in lost_check.values()) if killed else None,
            "p50_feedback_s": round(statistics.median(latencies), 2) if latencies else None,
            "p95_feedback_s": round(latencies[max(0, int(0.95 * len(latencies)) - 1)], 2) if latencies else None,
            "server_start_until_warm_s": round(warmup_s, 2), "server_s": round(serve_s, 2), "server_per_s": round(n / serve_s, 3) if serve_s else None,
        }  # fmt: skip
        if compare:
            t = time.monotonic()
            done = subprocess.run([learn_bin(), "grade", str(env["class"]), "--assignment", str(env["pack"]), "--gradebook",
                                   str(work / "gb.db"), "-j", str(jobs), *_extra()],
                                  capture_output=True, text=True)  # fmt: skip
            grade_s = time.monotonic() - t
            result.update(
                {"learn_grade_s": round(grade_s, 2), "learn_grade_per_s": round(n / grade_s, 3), "learn_grade_rc": done.returncode}
            )
        result["ok"] = result["submitted"] == result["in_database"] == result["graded"] == n and not result["graded_more_than_once"]
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extra() -> list[str]:
    from grader import sandbox

    return [] if sandbox.choose().mode == "bwrap" else ["--allow-unsandboxed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--window", type=float, default=300.0, help="seconds over which the students submit")
    parser.add_argument("--kill", type=int, default=None, metavar="K", help="kill -9 the server after K are graded, then restart")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each notebook sleeps (a slower class)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-compare", action="store_true", help="skip the `learn grade` run")
    parser.add_argument("--db", default=None, metavar="URL", help="postgresql://... (default: SQLite in the course folder)")
    args = parser.parse_args()
    result = run(args.n, args.jobs, args.window, args.kill, args.sleep, args.port, compare=not args.no_compare, db_url=args.db)
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
