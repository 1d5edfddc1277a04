"""The ASGI application of `learn serve`: routes, the guard in front of every one, lifespan.

uvicorn ─► SessionMiddleware (signed cookie, key in COURSE_DIR/secret.key, 0600)
        ─► Route(path, guard(name, view))          guard: who (session or bearer token),
                                                   RULES[name] (roles, ownership), CSRF
        ─► views.*                                 pages (Jinja2, autoescape) and JSON
lifespan: QueueWorker thread (grader.server.queue) with the executor (local pool or Dask)
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import LearnError
from . import views
from .auth import RULES, same
from .course import Course

__all__ = ["build_app", "ROUTES"]

log = logging.getLogger("learn.serve")

# (path, view, methods); the route's name is the view's name, and RULES must have it
ROUTES: list[tuple[str, Callable, list[str]]] = [
    ("/", views.home, ["GET"]),
    ("/signin", views.signin_page, ["GET"]),
    ("/signin", views.signin_password, ["POST"]),
    ("/signin/{token}", views.signin_link, ["GET", "POST"]),
    ("/signout", views.signout, ["POST"]),
    ("/healthz", views.health, ["GET"]),
    ("/me", views.me, ["GET"]),
    ("/me/password", views.password, ["POST"]),
    ("/me/token", views.cli_token, ["POST"]),
    ("/a/{slug}", views.assignment, ["GET"]),
    ("/a/{slug}/submit", views.submit, ["POST"]),
    ("/api/submit/{slug}", views.api_submit, ["POST"]),
    ("/s/{sid:int}", views.submission, ["GET"]),
    ("/api/s/{sid:int}", views.submission_status, ["GET"]),
    ("/s/{sid:int}/report", views.submission_report, ["GET"]),
    ("/staff", views.staff, ["GET"]),
    ("/api/queue", views.staff_queue, ["GET"]),
    ("/staff/assignments", views.create_assignment, ["POST"]),
    ("/staff/roster", views.roster, ["POST"]),
    ("/staff/tas", views.add_ta, ["POST"]),
    ("/staff/a/{slug}", views.staff_assignment, ["GET"]),
    ("/staff/a/{slug}/publish", views.publish, ["POST"]),
    ("/staff/a/{slug}/settings", views.assignment_settings, ["POST"]),
    ("/staff/a/{slug}/regrade", views.staff_regrade_all, ["POST"]),
    ("/staff/a/{slug}/extension", views.staff_extension, ["POST"]),
    ("/staff/a/{slug}/export/{fmt}", views.staff_export, ["GET"]),
    ("/staff/a/{slug}/manual", views.staff_manual, ["GET"]),
    ("/staff/a/{slug}/check/{check}", views.staff_check, ["GET"]),
    ("/staff/manual/{mid:int}", views.staff_manual_grade, ["POST"]),
    ("/staff/u/{name}", views.staff_student, ["GET"]),
    ("/staff/s/{sid:int}/override", views.staff_override, ["POST"]),
    ("/staff/s/{sid:int}/regrade", views.staff_regrade, ["POST"]),
]


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


DENIED = {"X-Learn-Denied": "1"}  # marks the guard's refusals (the authorization walk test looks for it)


def _denied(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status, headers=DENIED)
    if status == 401:
        return RedirectResponse("/signin", status_code=303, headers=DENIED)
    return HTMLResponse(f"<!doctype html><title>{status}</title><p>{message}</p>", status_code=status, headers=DENIED)


def _who(request: Request) -> tuple[dict | None, bool]:
    """(user, by bearer token). A bearer token never needs CSRF (no cookie is involved)."""
    course: Course = request.app.state.course
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return course.api_user(header[7:].strip()), True
    user = course.user(request.session.get("uid"))
    if user is not None and user["role"] == "setup":
        user = None
    return user, False


def guard(name: str, view: Callable) -> Callable:
    """The one place access is decided: the route's rule, ownership, CSRF (see auth.RULES)."""
    rule = RULES[name]

    async def endpoint(request: Request) -> Response:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)
        request.state.csrf = request.session["csrf"]
        user, bearer = _who(request)
        request.state.user = user
        role = user["role"] if user else "anonymous"
        if role not in rule.roles:
            return _denied(request, 401 if user is None else 403, "sign in first" if user is None else "not allowed")
        if rule.owner == "submission" and role == "student":
            owner = request.app.state.course.db.value("SELECT user_id FROM submissions WHERE id = ?", request.path_params["sid"])
            if owner != user["id"]:
                return _denied(request, 404, "no such submission")  # another student's work does not exist for you
        if request.method == "POST":
            limits = request.app.state.course.limits
            length = request.headers.get("content-length")
            if length and length.isdecimal() and int(length) > limits.max_bytes + 2**20:
                return JSONResponse({"error": f"the upload is over the limit of {limits.max_bytes / 2**20:.0f} MB"}, status_code=413)
            try:
                form = await request.form(max_files=limits.max_notebooks + 1, max_part_size=limits.max_bytes)
            except Exception as exc:  # multipart errors: too many files, a part too big, garbage
                return JSONResponse({"error": f"unreadable form: {exc}"}, status_code=400)
            if not bearer:
                token = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
                if not token or not same(token, request.session["csrf"]):
                    return _denied(request, 403, "missing or wrong CSRF token: reload the page and try again")
        try:
            return await view(request)
        except LearnError as exc:
            if _wants_json(request):
                return JSONResponse({"error": str(exc)}, status_code=400)
            request.session["flash"] = str(exc)
            return RedirectResponse(request.headers.get("referer") or "/", status_code=303) if request.method == "POST" else (
                views.page(request, "base.html", 400, title="Problem"))  # fmt: skip

    endpoint.__name__ = name
    return endpoint


def build_app(course: Course, *, worker=None, https_only: bool = False) -> Starlette:
    """The application for `course`; `worker` (a QueueWorker) is started and stopped with it."""
    routes = []
    for path, view, methods in ROUTES:
        name = view.__name__
        if name not in RULES:
            raise RuntimeError(f"route {path} ({name}) has no authorization rule in grader.server.auth.RULES")
        routes.append(Route(path, guard(name, view), methods=methods, name=name))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    middleware = [Middleware(SessionMiddleware, secret_key=course.secret_key(), session_cookie="learn_session", same_site="lax",
                             https_only=https_only, max_age=14 * 24 * 3600)]  # fmt: skip
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.course = course
    app.state.templates = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                                      autoescape=select_autoescape(default=True, default_for_string=True))  # fmt: skip
    app.state.templates.filters["pts"] = lambda v: "" if v is None else f"{float(v):g}"
    app.state.worker_notify = worker.notify if worker is not None else (lambda: None)
    app.state.worker_ready = lambda: worker is not None and worker.ready.is_set()
    app.state.worker_problem = lambda: f"{type(worker.error).__name__}: {worker.error}" if worker is not None and worker.error else None
    return app
