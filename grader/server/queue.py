"""The durable job queue: jobs in the database, leased fairly, worked by an Executor in a thread.

    submit ──► submissions + jobs(state=queued)           one transaction (course.Course.accept)
    worker thread (its own event loop):
        claim   the next job in fair order (below), as the executor has room:
                UPDATE jobs SET state='leased', lease_owner=me, lease_until=now+LEASE
                WHERE state='queued' OR (state='leased' AND lease_until < now)
        renew   every LEASE/3 for the jobs in flight
        grade   executor.run(GradingJob)  (grader.executor: the local warm pool, or Dask), within
                the assignment's time budget per submission
        render  the feedback report (grader.server.render), in a worker thread
        finish  one transaction: the job leased by me -> done, and only then the result and its
                report onto the submission; a job whose lease someone else took over writes nothing

Fair order: round-robin over students. A job's rank is how many of its student's jobs are ahead
of it (in flight, or queued earlier); the lowest rank goes first, then the student whose last
job finished longest ago, then the oldest job. A student with Limits.jobs_per_student jobs in
flight waits. So one student's four infinite loops hold
at most one slot, and another student's first submission is next in line: it waits at most
one job's time budget, whatever the first student queued.

A restart or `kill -9` loses nothing: the submission and its job are in the database before the
upload is answered, and a lease that is not renewed runs out (or its owner's process is gone),
so the job is claimed again. Machinery failures are retried and never recorded as the learner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from pathlib import Path

from ..errors import ExecutionError, SandboxRequiredError
from ..gradebook import new_owner, owner_dead
from .render import report_title, variants

__all__ = ["QueueWorker", "LEASE_S", "MAX_ATTEMPTS", "fair_order"]

LEASE_S = 60.0
MAX_ATTEMPTS = 3
SERVED_S = 3600.0  # round-robin remembers whose job finished last for this long
log = logging.getLogger("learn.serve")


def fair_order(rows: list[dict], now: float, per_student: int, me: str | None = None, served: dict | None = None) -> list[dict]:
    """The jobs that may be claimed now, in fair order (module docstring). `rows`: the queued
    and leased jobs, oldest first; `served`: when each student's last job finished. A lease
    that is current and whose owner lives counts as in flight; one that ran out (or whose owner
    is gone) can be taken over, first in line. Order: fewest of the student's jobs ahead, then
    the student served longest ago (round-robin), then the oldest job."""
    served = served or {}
    in_flight: dict = {}
    takeable = []
    for row in rows:
        live = row["state"] == "leased" and (
            row["lease_owner"] == me or ((row["lease_until"] or 0) > now and not owner_dead(row["lease_owner"]))
        )
        if live:
            in_flight[row["user_id"]] = in_flight.get(row["user_id"], 0) + 1
        else:
            takeable.append(row)
    ahead = dict(in_flight)
    ranked = []
    for row in takeable:  # oldest first: a student's k-th waiting job has k-1 of theirs ahead
        user = row["user_id"]
        ranked.append((ahead.get(user, 0), 0 if row["state"] == "leased" else 1, served.get(user, 0.0), row["id"], row))
        ahead[user] = ahead.get(user, 0) + 1
    ranked.sort(key=lambda r: r[:4])
    return [r[4] for r in ranked if in_flight.get(r[4]["user_id"], 0) < max(1, per_student)]


class QueueWorker:
    """Works the course's job queue in a background thread (see module docstring)."""

    def __init__(self, course, executor_factory, poll_s: float = 0.5):
        self.course, self.db = course, course.db
        self.executor_factory = executor_factory
        self.poll_s = poll_s
        self.owner = new_owner()
        self.in_flight: set[int] = set()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()  # kernels warm and the published assignments' references computed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name="learn-queue", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 30) -> None:
        self.stopping.set()
        self.wake.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(task.cancel)  # also while it waits for room in the executor
        if self.thread is not None:
            self.thread.join(timeout)

    def notify(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self.wake.set()

    def _main(self) -> None:
        while not self.stopping.is_set():
            try:
                asyncio.run(self._run())
            except asyncio.CancelledError:
                break
            except Exception as exc:  # the machinery (kernels, the Dask client): say so, try again
                self.error = exc
                log.exception("the grading queue stopped; starting it again in 5s")
                self.stopping.wait(5)
            finally:
                self.release_all()

    def release_all(self) -> None:
        """Put the jobs this worker holds back in the queue (a clean stop; a crash leaves the
        leases, which are taken over once the process is seen gone or the lease runs out)."""
        with contextlib.suppress(Exception):
            with self.db.transaction() as tx:
                for job in tx.all("SELECT id, submission_id FROM jobs WHERE state = 'leased' AND lease_owner = ?", self.owner):
                    tx.run("UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = ?", job["id"])
                    tx.run("UPDATE submissions SET state = 'queued' WHERE id = ? AND state = 'grading'", job["submission_id"])
        self.in_flight.clear()

    async def _run(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        if self.stopping.is_set():
            return
        async with self.executor_factory() as executor:
            await self._warm(executor)
            heartbeat = asyncio.ensure_future(self._heartbeat())
            tasks: set[asyncio.Task] = set()
            try:
                while not self.stopping.is_set():
                    await executor.acquire()
                    job = self.claim()
                    if job is None:
                        await executor.release()
                        await asyncio.get_running_loop().run_in_executor(None, self.wake.wait, self.poll_s)
                        self.wake.clear()
                        continue
                    tasks.add(asyncio.ensure_future(self._work(executor, job)))
                    tasks = {t for t in tasks if not t.done()}
            finally:
                heartbeat.cancel()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(heartbeat, *tasks, return_exceptions=True)

    async def _warm(self, executor) -> None:
        """Reference results of the published assignments before the first learner waits on them."""
        for a in self.db.all("SELECT pack, seed FROM assignments WHERE published = 1"):
            try:
                await executor.prepare(self.course.lesson(a["pack"]), a["seed"], None)
            except Exception as exc:  # a broken pack: its submissions fail (and say so), the others are graded
                log.warning("could not prepare %s: %s", a["pack"], exc)
        self.ready.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            if self.in_flight:
                with contextlib.suppress(Exception):
                    marks = ",".join("?" * len(self.in_flight))
                    self.db.run(f"UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND state = 'leased' AND id IN ({marks})",
                                time.time() + LEASE_S, self.owner, *sorted(self.in_flight))  # fmt: skip

    # --- the database side ---------------------------------------------------------------------

    def claim(self) -> dict | None:
        """Lease the next job in fair order (module docstring) that is queued, or leased by
        someone whose lease ran out or whose process is gone. Returns the job, or None."""
        now = time.time()
        with self.db.transaction() as tx:
            rows = tx.all("SELECT id, lease_owner, lease_until, state, user_id FROM jobs WHERE state IN ('queued', 'leased') ORDER BY id")
            if not rows:
                return None
            served = {r["user_id"]: r["last"] for r in tx.all("SELECT user_id, MAX(finished_at) AS last FROM jobs WHERE state = 'done' "
                                                                "AND finished_at > ? GROUP BY user_id", now - SERVED_S)}  # fmt: skip
            for row in fair_order(rows, now, self.course.limits.jobs_per_student, self.owner, served):
                take = "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ? AND "
                if row["state"] == "queued":
                    took = tx.run(take + "state = 'queued'", self.owner, now + LEASE_S, row["id"])
                else:
                    took = tx.run(take + "state = 'leased' AND lease_owner = ?", self.owner, now + LEASE_S, row["id"], row["lease_owner"])
                if took == 1:
                    job = tx.one("SELECT * FROM jobs WHERE id = ?", row["id"])
                    tx.run("UPDATE submissions SET state = 'grading' WHERE id = ? AND state <> 'graded'", job["submission_id"])
                    self.in_flight.add(job["id"])
                    return job
        return None

    def finish(self, job: dict, run=None, error: str | None = None, retry: bool = False, reports: dict | None = None) -> bool:
        """Write the outcome of a job once: only while the lease is still ours, with its rendered
        `reports` (grader.server.render.variants). `retry` (the machinery failed) puts the job
        back in the queue unless it has failed too often."""
        from ..gradebook import submission_status

        now = time.time()
        with self.db.transaction() as tx:
            if retry and job["attempts"] < MAX_ATTEMPTS:
                took = tx.run("UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ? "
                              "AND state = 'leased'", job["id"], self.owner)  # fmt: skip
                if took:
                    tx.run("UPDATE submissions SET state = 'queued' WHERE id = ? AND state = 'grading'", job["submission_id"])
                return bool(took)
            took = tx.run("UPDATE jobs SET state = 'done', finished_at = ? WHERE id = ? AND lease_owner = ? AND state = 'leased'", now,
                          job["id"], self.owner)  # fmt: skip
            if took != 1:
                return False
            if run is not None:
                tx.run("UPDATE submissions SET state = 'graded', status = ?, points = ?, max_points = ?, result_json = ?, error = ?, "
                       "graded_at = ?, grade_count = grade_count + 1 WHERE id = ?", submission_status(run), run.points,
                       run.max_points, json.dumps(run.to_dict()), error, now, job["submission_id"])  # fmt: skip
                sub = tx.one("SELECT * FROM submissions WHERE id = ?", job["submission_id"])
                self.course.collect_manual(tx, sub)
                if reports:
                    self.course.store_reports(tx, job["submission_id"], reports)
            else:
                tx.run("UPDATE submissions SET state = 'failed', error = ?, graded_at = ?, grade_count = grade_count + 1 WHERE id = ?",
                       error or "grading failed", now, job["submission_id"])  # fmt: skip
            return True

    # --- grading ---------------------------------------------------------------------------------

    def grading_job(self, sub: dict):
        from ..batch import match_notebooks
        from ..executor import GradingJob

        a = self.db.one("SELECT * FROM assignments WHERE id = ?", sub["assignment_id"])
        student = self.db.value("SELECT name FROM users WHERE id = ?", sub["user_id"])
        lesson = self.course.lesson(a["pack"])
        folder = self.course.uploads / sub["files"]
        files = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not p.is_symlink())
        matched, missing, extra, notes = match_notebooks(files, lesson)
        notes = json.loads(sub["notes"] or "[]") + notes + [f"extra notebook (not part of the assignment, ignored): {n}" for n in extra]
        return GradingJob(lesson, student, matched, a["seed"], self.course.budget(a), None, notes, Path(folder),
                          self.course.allow_unsandboxed)  # fmt: skip

    async def _work(self, executor, job: dict) -> None:
        try:
            sub = self.db.one("SELECT * FROM submissions WHERE id = ?", job["submission_id"])
            started = time.monotonic()
            try:
                grading = self.grading_job(sub)
                run = await executor.run(grading)
            except (ExecutionError, SandboxRequiredError) as exc:
                log.warning("grading submission %s failed (machinery): %s", job["submission_id"], exc)
                self.finish(job, error=f"the grading machinery failed: {exc}", retry=True)
                return
            except Exception as exc:  # our bug or a broken pack: never the learner's fault, never cached as a grade
                log.exception("grading submission %s failed", job["submission_id"])
                self.finish(job, error=f"the grader failed: {type(exc).__name__}: {exc}", retry=True)
                return
            run.duration = time.monotonic() - started
            first = next((nb for nb in run.notebooks if nb.error), None)
            reports = None
            try:  # rendered once, here, off the web server's event loop
                slug = self.db.value("SELECT slug FROM assignments WHERE id = ?", sub["assignment_id"])
                reports = await asyncio.to_thread(variants, run.to_dict(), report_title(slug, sub["id"]))
            except Exception:  # a report can be rendered again when it is read; the grade stands
                log.exception("rendering the report of submission %s failed", job["submission_id"])
            self.finish(job, run, error=f"{Path(first.path).name}: {first.error}" if first else None, reports=reports)
        finally:
            self.in_flight.discard(job["id"])
            await executor.release()
