"""`learn serve`: the course server - web submissions graded by the same engine as `learn grade`.

    browser / `learn submit` ──HTTP──► app (Starlette; guard = auth.RULES; every view in a worker
    thread, only /healthz on the event loop) ──► course (accounts, assignments, submissions,
    grades) ──► db (SQLite WAL in COURSE_DIR, or PostgreSQL; versioned SQL)
                                                      ▲
    queue.QueueWorker (thread) ── lease jobs fairly ──┘──► executor (local warm pool / Dask) ──► RunResult
                                                      └──► render (the report, once per grade)

Modules: app (routes, guard, middleware, lifespan), auth (route table, tokens, passwords,
sign-in back-off), course (the data), uploads (what is kept of an upload), render (reports off
the event loop, bounded), db (the thin database layer and migrations), queue (the durable, fair
job queue), views (pages and JSON), client (`learn submit`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["serve", "prepare", "signin_link"]


def prepare(course_dir: Path, db: str | None = None, scheduler: str | None = None, jobs: int | None = None,
            allow_unsandboxed: bool = False, warn=None):  # fmt: skip
    """(course, worker) for `learn serve`: refuses (SandboxRequiredError) without bubblewrap
    unless allowed, exactly as `learn grade` does; opens (and migrates) the database."""
    from ..batch import open_executor, require_isolation, unsandboxed_allowed
    from .course import Course
    from .queue import QueueWorker

    allowed = unsandboxed_allowed(allow_unsandboxed)
    require_isolation(allowed, scheduler, warn=warn)
    course = Course.open(Path(course_dir), db)
    course.allow_unsandboxed = allowed
    worker = QueueWorker(course, lambda: open_executor(jobs or 2, scheduler))
    return course, worker


def _port_free(host: str, port: int) -> None:
    import socket

    from ..errors import LearnError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise LearnError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def signin_link(course_dir: Path, name: str, db: str | None = None) -> str:
    """A fresh sign-in link (the path /signin/TOKEN) for any account of the course, the
    instructor's included: for whoever runs the server, when a password is lost. The earlier
    link of that account stops working; audited."""
    from .course import Course

    course = Course.open(Path(course_dir), db)
    return f"/signin/{course.new_signin_link(None, name, any_role=True)}"


def serve(course_dir: Path, *, db: str | None = None, scheduler: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          jobs: int | None = None, allow_unsandboxed: bool = False, https_only: bool = False, forwarded_allow_ips: str | None = None,
          student_quota_mb: float | None = None, echo=print, warn=None) -> None:  # fmt: skip
    """Run the course server until interrupted. `forwarded_allow_ips`: the proxies (comma-separated
    addresses, or *) whose X-Forwarded-For/-Proto are believed - the client address that sign-in
    limits count, and https; default: uvicorn's (127.0.0.1, or $FORWARDED_ALLOW_IPS).
    `student_quota_mb`: what one student's submissions may keep on disk (Limits.quota_bytes)."""
    try:
        import argon2  # noqa: F401
        import python_multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        from ..errors import LearnError

        raise LearnError(f"`learn serve` needs the server extra ({exc.name} is missing): pip install 'learn-grader[server]'") from None

    from .app import build_app

    _port_free(host, port)
    course, worker = prepare(course_dir, db, scheduler, jobs, allow_unsandboxed, warn)
    if student_quota_mb:
        course.limits.quota_bytes = int(student_quota_mb * 2**20)
    link = course.first_start_link()
    base = f"http://{host}:{port}"
    if link:
        echo(f"First start: open this link once to create the instructor account (valid 24 hours):\n  {base}/signin/{link}")
    echo(f"learn serve: {course.root} on {base} (database: {'PostgreSQL' if course.db.postgres else course.db.path})")
    app = build_app(course, worker=worker, https_only=https_only)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips)
