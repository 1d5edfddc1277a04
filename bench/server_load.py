"""Load and crash test of `learn serve` on 127.0.0.1, and its throughput next to `learn grade`.

    build      a course (tiny pack 'squares', N students from a roster, a CLI token each) and the
               same class as folders for `learn grade`
    serve      `learn serve COURSE --port P -j J` as a subprocess (its own process group)
    submit     every student submits once, spread over --window seconds (threads, HTTP API)
    read       with --readers R: the first R students to submit are signed in (a browser's cookie
               session, through their sign-in link); each polls its submission like the page does
               (every second) until graded, then reads its feedback report in a loop (--think
               seconds between reads, default none) until every submission is graded; meanwhile
               a prober asks /healthz every 0.1 s - the deadline: a class opening its feedback
    kill       with --kill K: after K are graded, SIGKILL the server's whole process group
               (server and kernels), start it again; nothing may be lost or graded twice
    measure    time to feedback per submission (submitted -> seen graded), p50/p95; server
               throughput; report and /healthz latency p50/p95/max; then `learn grade -j J` of
               the same class, same run (the load average is printed with the figures)

    python bench/server_load.py [N] [--jobs 2] [--window 300] [--readers R] [--think 0] [--kill K] [--sleep 0] [--port 0]
                                [--pack lesson3] [--db postgresql://...] [--max-healthz-p95-ms MS] [--max-report-p95-ms MS]

Prints a JSON summary; exits 1 when a submission is lost, duplicated or not graded, a reader
failed, or a p95 is over its --max-...-p95-ms. With --kill and --readers, requests refused while
the server is down are counted (unavailable_during_restart), not failures: the readers go on
with the sessions they had.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import http.cookiejar
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
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


def build(work: Path, n: int, sleep: float = 0.0, db_url: str | None = None, pack_id: str | None = None) -> dict:
    """The course, tokens and notebooks (every third one wrong), and the class folder. With
    `pack_id` (a bundled pack, e.g. lesson3) every student submits the pack's solution notebooks
    instead: real grading times and full-size feedback reports."""
    if pack_id:
        return build_pack(work, n, pack_id, db_url)
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
    links = {row[0]: row[-1] for row in course.add_roster("student\n" + "\n".join(names) + "\n", prof["id"])}
    course.publish(prof["id"], course.create_assignment(prof["id"], str(pack), "squares"), True)
    students = {}
    for i, name in enumerate(names):
        cells = (WRONG if i % 3 == 2 else GOOD) + ([f"import time\ntime.sleep({sleep})"] if sleep else [])
        nb = write_nb(work / "class" / name / "squares.ipynb", cells)
        students[name] = {
            "token": course.new_api_token(course.user_by_name(name)["id"]),
            "notebook": nb,
            "notebooks": [nb],
            "link": links[name],
        }
    return {"course": work / "course", "pack": pack, "class": work / "class", "students": students, "db": course.db, "slug": "squares"}


def build_pack(work: Path, n: int, pack_id: str, db_url: str | None) -> dict:
    from grader.batch import resolve_assignment
    from grader.server.course import Course

    lesson = resolve_assignment(pack_id)
    course = Course.open(work / "course", db_url)
    prof = course.redeem(course.first_start_link())
    names = [f"s{i:03d}" for i in range(n)]
    links = {row[0]: row[-1] for row in course.add_roster("student\n" + "\n".join(names) + "\n", prof["id"])}
    slug = course.create_assignment(prof["id"], pack_id, pack_id)
    course.publish(prof["id"], slug, True)
    students = {}
    for name in names:
        folder = work / "class" / name
        folder.mkdir(parents=True)
        notebooks = [Path(shutil.copy(lesson.solution_path(spec), folder / spec.file)) for spec in lesson.notebooks]
        students[name] = {"token": course.new_api_token(course.user_by_name(name)["id"]), "notebooks": notebooks, "link": links[name]}
    return {"course": work / "course", "pack": pack_id, "class": work / "class", "students": students, "db": course.db, "slug": slug}


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


def submit_all(base: str, students: dict, window: float, on_submitted=None, slug: str = "squares") -> dict[int, float]:
    """Submit every student's notebook, spread over `window` seconds. Returns id -> submit time;
    `on_submitted(name, id)` is called as each is accepted."""
    from grader.server.client import submit

    gap = window / max(1, len(students))
    started = time.monotonic()

    def one(i_name):
        i, name = i_name
        time.sleep(max(0.0, started + i * gap - time.monotonic()))
        t = time.monotonic()
        status = submit(base, slug, students[name]["notebooks"], students[name]["token"], wait=False, echo=lambda *_: None)
        if on_submitted is not None:
            on_submitted(name, status["id"])
        return status["id"], t

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return dict(pool.map(one, enumerate(students)))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of `values`, or None."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def signed_in_client(base: str, link: str):
    """A urllib opener with a browser's cookie session, signed in through the sign-in link."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"{base}/signin/{link}", timeout=30).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    opener.open(urllib.request.Request(f"{base}/signin/{link}", data=urllib.parse.urlencode({"csrf": csrf}).encode()), timeout=30).read()
    return opener


class Readers:
    """R signed-in students: each polls its submission every second until graded, then reads its
    report in a loop (`think` seconds apart); a prober times /healthz every 0.1 s. All until stop.
    With `restarts` (the --kill run) a refused or broken connection is counted, not an error:
    the reader tries again half a second later - with the session it had (they are server-side)."""

    def __init__(self, base: str, students: dict, count: int, think: float, restarts: bool = False):
        self.base, self.students, self.think, self.restarts = base, students, think, restarts
        self.wanted = set(list(students)[:count])
        self.sids: dict[str, int] = {}
        self.ready = threading.Condition()
        self.stop = threading.Event()
        self.report_ms: list[float] = []
        self.healthz_ms: list[float] = []
        self.errors: list[str] = []
        self.unavailable = 0  # requests refused or cut while the server was down (restarts only)
        self.threads = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.wanted]
        self.threads.append(threading.Thread(target=self._probe, daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def submitted(self, name: str, sid: int) -> None:
        with self.ready:
            self.sids[name] = sid
            self.ready.notify_all()

    def finish(self) -> None:
        self.stop.set()
        with self.ready:
            self.ready.notify_all()
        for t in self.threads:
            t.join(60)

    def _retry(self, step):
        """step(), again after a pause while the server is down (restarts only)."""
        while not self.stop.is_set():
            try:
                return step()
            except (OSError, http.client.HTTPException):
                if not self.restarts:
                    raise
                self.unavailable += 1
                self.stop.wait(0.5)
        return None

    def _timed(self, opener, url: str) -> float:
        t = time.perf_counter()
        with opener.open(url, timeout=60) as response:
            response.read()
        return 1000 * (time.perf_counter() - t)

    def _probe(self) -> None:
        opener = urllib.request.build_opener()
        while not self.stop.is_set():
            try:
                self.healthz_ms.append(self._timed(opener, f"{self.base}/healthz"))
            except (OSError, http.client.HTTPException) as exc:
                if self.restarts:
                    self.unavailable += 1
                else:
                    self.errors.append(f"healthz: {exc}")
                    self.healthz_ms.append(60_000.0)
            self.stop.wait(0.1)

    def _state(self, opener, sid: int) -> str:
        with opener.open(f"{self.base}/api/s/{sid}", timeout=60) as response:
            return json.loads(response.read())["state"]

    def _read(self, name: str) -> None:
        try:
            with self.ready:
                self.ready.wait_for(lambda: name in self.sids or self.stop.is_set())
            if self.stop.is_set():
                return
            sid = self.sids[name]
            opener = self._retry(lambda: signed_in_client(self.base, self.students[name]["link"]))
            while not self.stop.is_set():  # the submission page polls like this
                if self._retry(lambda: self._state(opener, sid)) in ("graded", "failed"):
                    break
                self.stop.wait(1.0)
            while not self.stop.is_set():
                took = self._retry(lambda: self._timed(opener, f"{self.base}/s/{sid}/report"))
                if took is not None:
                    self.report_ms.append(took)
                if self.think:
                    self.stop.wait(self.think)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never silent
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")


def graded(db) -> dict[int, dict]:
    return {r["id"]: r for r in db.all("SELECT id, state, grade_count, points FROM submissions")}


def run(n: int = 20, jobs: int = 2, window: float = 10.0, kill_after: int | None = None, sleep: float = 0.0, port: int = 0,
        compare: bool = True, timeout: float = 1800, db_url: str | None = None, readers: int = 0, think: float = 0.0,
        pack: str | None = None, max_healthz: float | None = None, max_report: float | None = None) -> dict:  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="learn-load-"))
    try:
        env = build(work, n, sleep, db_url, pack)
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
        load_before = os.getloadavg()
        reading = Readers(base, env["students"], min(readers, n), think, restarts=kill_after is not None) if readers else None
        if reading is not None:
            reading.start()
        try:
            submitted = submit_all(base, env["students"], window, reading.submitted if reading else None, env["slug"])
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
            if reading is not None:
                reading.finish()
            kill_group(proc)
        serve_s = max(seen.values(), default=t0) - t0
        rows = graded(env["db"])
        latencies = sorted(seen[s] - submitted[s] for s in seen if s in submitted)
        result = {
            "database": "postgresql" if db_url else "sqlite", "pack": pack or "tiny", "students": n, "jobs": jobs, "window_s": window, "killed_mid_queue": killed,
            "submitted": len(submitted), "in_database": len(rows), "graded": sum(r["state"] == "graded" for r in rows.values()),
            "graded_more_than_once": sorted(s for s, r in rows.items() if r["grade_count"] > 1),
            "never_graded": sorted(s for s, r in rows.items() if r["state"] != "graded"),
            "rows_at_kill": len(lost_check) if killed else None,
            "pending_at_kill": sum(r["state"] != "graded" for r in lost_check.values()) if killed else None,
            "p50_feedback_s": round(statistics.median(latencies), 2) if latencies else None,
            "p95_feedback_s": round(latencies[max(0, int(0.95 * len(latencies)) - 1)], 2) if latencies else None,
            "server_start_until_warm_s": round(warmup_s, 2), "server_s": round(serve_s, 2), "server_per_s": round(n / serve_s, 3) if serve_s else None,
            "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }  # fmt: skip
        if reading is not None:
            ms = lambda v: None if v is None else round(v, 1)  # noqa: E731
            result.update({
                "readers": len(reading.wanted), "think_s": think, "reports_read": len(reading.report_ms),
                "report_p50_ms": ms(percentile(reading.report_ms, 0.5)), "report_p95_ms": ms(percentile(reading.report_ms, 0.95)),
                "report_max_ms": ms(max(reading.report_ms, default=None)), "healthz_probes": len(reading.healthz_ms),
                "healthz_p50_ms": ms(percentile(reading.healthz_ms, 0.5)), "healthz_p95_ms": ms(percentile(reading.healthz_ms, 0.95)),
                "healthz_max_ms": ms(max(reading.healthz_ms, default=None)), "reader_errors": reading.errors[:10],
                "unavailable_during_restart": reading.unavailable,
            })  # fmt: skip
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
        if reading is not None:
            result["ok"] = result["ok"] and not reading.errors
            late = [f"{key} {result[key]} > {limit}" for key, limit in (("healthz_p95_ms", max_healthz), ("report_p95_ms", max_report))
                    if limit is not None and (result[key] is None or result[key] > limit)]  # fmt: skip
            result["over_limits"] = late
            result["ok"] = result["ok"] and not late
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
    parser.add_argument("--readers", type=int, default=0, metavar="R", help="signed-in students reading their reports in a loop")
    parser.add_argument("--think", type=float, default=0.0, metavar="S", help="seconds a reader waits between reads (default: none)")
    parser.add_argument("--max-healthz-p95-ms", type=float, default=None, metavar="MS", help="not ok (exit 1) above this")
    parser.add_argument("--max-report-p95-ms", type=float, default=None, metavar="MS", help="not ok (exit 1) above this")
    parser.add_argument("--kill", type=int, default=None, metavar="K", help="kill -9 the server after K are graded, then restart")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each notebook sleeps (a slower class)")
    parser.add_argument("--pack", default=None, metavar="ID", help="a bundled pack (e.g. lesson3): its solutions, full-size reports")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-compare", action="store_true", help="skip the `learn grade` run")
    parser.add_argument("--db", default=None, metavar="URL", help="postgresql://... (default: SQLite in the course folder)")
    args = parser.parse_args()
    result = run(args.n, args.jobs, args.window, args.kill, args.sleep, args.port, compare=not args.no_compare, db_url=args.db,
                 readers=args.readers, think=args.think, pack=args.pack, max_healthz=args.max_healthz_p95_ms,
                 max_report=args.max_report_p95_ms)  # fmt: skip
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
