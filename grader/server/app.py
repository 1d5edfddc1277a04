"""The ASGI application of `learn serve`: routes, the guard in front of every one, lifespan.

uvicorn ─► Headers        X-Frame-Options / frame-ancestors, nosniff, no-referrer on every response
        ─► BodyLimit      413 for a body over its route's limit: at once from Content-Length, else
                          while it is read (chunked uploads too); never more than the limit in memory
        ─► SessionMiddleware (signed cookie: a server-side session id, csrf, flash)
        ─► Route(path, guard(name, view))
             on the event loop:   read the form (multipart files spool to disk), nothing else
             in a worker thread:  who (the session row, or a bearer token), RULES[name] (roles,
                                  ownership), CSRF, then the view: every query and every page
        ─► views.*                pages (Jinja2, autoescape) and JSON
lifespan: QueueWorker thread (grader.server.queue) with the executor (local pool or Dask)

Only /healthz answers on the event loop itself: it touches neither the database nor a page, so
a load balancer sees the server alive however busy the worker threads are.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

import anyio
from itsdangerous import URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import LearnError
from . import views
from .auth import RULES, SignInThrottle, same
from .course import Course
from .uploads import size_text

__all__ = ["build_app", "ROUTES", "BodyTooLarge"]

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
    ("/me/tokens/{tid}/revoke", views.revoke_token, ["POST"]),
    ("/a/{slug}", views.assignment, ["GET"]),
    ("/api/a/{slug}", views.api_assignment, ["GET"]),
    ("/a/{slug}/submit", views.submit, ["POST"]),
    ("/a/{slug}/confirm", views.confirm_upload, ["POST"]),
    ("/api/submit/{slug}", views.api_submit, ["POST"]),
    ("/s/{sid:int}", views.submission, ["GET"]),
    ("/api/s/{sid:int}", views.submission_status, ["GET"]),
    ("/s/{sid:int}/report", views.submission_report, ["GET"]),
    ("/staff", views.staff, ["GET"]),
    ("/api/queue", views.staff_queue, ["GET"]),
    ("/staff/people", views.staff_people, ["GET"]),
    ("/staff/assignments", views.create_assignment, ["POST"]),
    ("/staff/roster", views.roster, ["POST"]),
    ("/staff/tas", views.add_ta, ["POST"]),
    ("/staff/a/{slug}", views.staff_assignment, ["GET"]),
    ("/staff/a/{slug}/missing", views.staff_not_submitted, ["GET"]),
    ("/staff/a/{slug}/publish", views.publish, ["POST"]),
    ("/staff/a/{slug}/settings", views.assignment_settings, ["POST"]),
    ("/staff/a/{slug}/regrade", views.staff_regrade_all, ["POST"]),
    ("/staff/a/{slug}/extension", views.staff_extension, ["POST"]),
    ("/staff/a/{slug}/export/{fmt}", views.staff_export, ["GET"]),
    ("/staff/a/{slug}/manual", views.staff_manual, ["GET"]),
    ("/staff/a/{slug}/check/{check}", views.staff_check, ["GET"]),
    ("/staff/manual/{mid:int}", views.staff_manual_grade, ["POST"]),
    ("/staff/u/{name}", views.staff_student, ["GET"]),
    ("/staff/u/{name}/active", views.set_active, ["POST"]),
    ("/staff/u/{name}/link", views.new_link, ["POST"]),
    ("/staff/s/{sid:int}/override", views.staff_override, ["POST"]),
    ("/staff/s/{sid:int}/override/clear", views.staff_clear_override, ["POST"]),
    ("/staff/s/{sid:int}/regrade", views.staff_regrade, ["POST"]),
]

ON_LOOP = {"health"}  # answered on the event loop: no database, no session, no page
PAGE_THREADS = 8  # requests worked at once in worker threads (the rest wait their turn, in order)
SMALL_BODY = 256 * 2**10  # any POST but an upload or a roster
ROSTER_BODY = 5 * 2**20


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


DENIED = {"X-Learn-Denied": "1"}  # marks the guard's refusals (the authorization walk test looks for it)


def _denied(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status, headers=DENIED)
    if status == 401:
        return RedirectResponse("/signin", status_code=303, headers=DENIED)
    return HTMLResponse(f"<!doctype html><title>{status}</title><p>{message}</p>", status_code=status, headers=DENIED)


def _problem(request: Request, status: int, message: str, close: bool = False) -> Response:
    """A refusal that is not about who you are (too large, unreadable): JSON or a short page.
    `close`: end the connection after it (uvicorn then reads no more of the request's body)."""
    import html

    headers = {"Connection": "close"} if close else None
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    back = html.escape(request.headers.get("referer") or "/", quote=True)
    return HTMLResponse(f'<!doctype html><title>{status}</title><p id="flash">{html.escape(message)}</p><p><a href="{back}">Back</a></p>',
                        status_code=status, headers=headers)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# ASGI middleware


class BodyTooLarge(Exception):
    """Raised from `receive` once a request body passes its route's limit."""


def body_limit(path: str, course: Course) -> tuple[int, str]:
    """(bytes a POST to `path` may send, what the limit is) - uploads the course's limit."""
    if path.startswith("/api/submit/") or (path.startswith("/a/") and path.endswith("/submit")):
        limit = course.limits.max_bytes
        return limit + 64 * 2**10, f"the upload is over the limit of {size_text(limit)} per submission (all files together)"
    if path == "/staff/roster":
        return ROSTER_BODY, f"the roster is over the limit of {size_text(ROSTER_BODY)}"
    return SMALL_BODY, f"the request is over the limit of {size_text(SMALL_BODY)}"


class BodyLimit:
    """413 for a request body over its limit (body_limit): before reading when Content-Length
    says so, else as soon as the bytes received pass it - a chunked upload is stopped there, and
    the guard answers 413 (BodyTooLarge)."""

    def __init__(self, app, course: Course):
        self.app, self.course = app, course

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        limit, message = body_limit(scope["path"], self.course)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            wants_json = scope["path"].startswith("/api/") or b"application/json" in dict(scope["headers"]).get(b"accept", b"")
            response = JSONResponse({"error": message}, status_code=413) if wants_json else HTMLResponse(
                f'<!doctype html><title>413</title><p id="flash">{message}</p>', status_code=413)  # fmt: skip
            response.headers["Connection"] = "close"
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message_ = await receive()
            if message_["type"] == "http.request":
                seen += len(message_.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(message)
            return message_

        return await self.app(scope, limited, send)


class Headers:
    """Headers every response carries: no framing by other sites (X-Frame-Options and CSP
    frame-ancestors, unless the view set its own CSP), no MIME sniffing, no Referer (sign-in
    links hold tokens), and HSTS behind TLS."""

    def __init__(self, app, https_only: bool = False):
        self.app, self.https_only = app, https_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-frame-options", b"SAMEORIGIN"), (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", b"frame-ancestors 'self'"))
                if self.https_only:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers + [(k, v) for k, v in extra if k not in names]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------------------------------------
# the guard


def _who(request: Request) -> tuple[dict | None, bool]:
    """(user, by bearer token). A bearer token never needs CSRF (no cookie is involved)."""
    course: Course = request.app.state.course
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return course.api_user(header[7:].strip()), True
    return course.session_user(request.session.get("sid")), False


def _admit(request: Request, rule) -> Response | None:
    """Who, and whether the rule lets them in (a worker thread: these are queries)."""
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(24)
    request.state.csrf = request.session["csrf"]
    user, bearer = _who(request)
    request.state.user, request.state.bearer = user, bearer
    role = user["role"] if user else "anonymous"
    if role not in rule.roles:
        return _denied(request, 401 if user is None else 403, "sign in first" if user is None else "not allowed")
    if rule.owner == "submission" and role == "student":
        owner = request.app.state.course.db.value("SELECT user_id FROM submissions WHERE id = ?", request.path_params["sid"])
        if owner != user["id"]:
            return _denied(request, 404, "no such submission")  # another student's work does not exist for you
    return None


def _call(request: Request, view: Callable) -> Response:
    try:
        return view(request)
    except LearnError as exc:
        if _wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))
        request.session["flash"] = str(exc)
        return RedirectResponse(request.headers.get("referer") or "/", status_code=303) if request.method == "POST" else (
            views.page(request, "base.html", 400, title="Problem"))  # fmt: skip


async def _read_form(request: Request) -> Response | None:
    limits = request.app.state.course.limits
    try:
        request.state.form = await request.form(max_files=limits.max_notebooks, max_part_size=SMALL_BODY)
    except BodyTooLarge as exc:
        return _problem(request, 413, str(exc), close=True)  # the rest of the body is never read
    except (MultiPartException, HTTPException) as exc:  # Starlette turns the parser's errors into HTTPException(400)
        text = str(getattr(exc, "detail", "") or exc)
        if "Too many files" in text:
            return _problem(request, 413, f"too many files in one upload: at most {limits.max_notebooks} (notebooks, or one zip of them)")
        return _problem(request, 400, f"unreadable form: {text}")
    except Exception as exc:  # garbage instead of a form
        return _problem(request, 400, f"unreadable form: {type(exc).__name__}")
    return None


def guard(name: str, view: Callable) -> Callable:
    """The one place access is decided: the route's rule, ownership, CSRF (see auth.RULES)."""
    rule = RULES[name]
    if name in ON_LOOP:

        async def on_loop(request: Request) -> Response:
            return await view(request)

        on_loop.__name__ = name
        return on_loop

    async def endpoint(request: Request) -> Response:
        run = functools.partial(anyio.to_thread.run_sync, limiter=request.app.state.limiter)
        refused = await run(_admit, request, rule)
        if refused is not None:
            return refused
        request.state.form = None
        if request.method == "POST":
            refused = await _read_form(request)
            if refused is not None:
                return refused
            if not request.state.bearer:
                form = request.state.form
                token = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
                if not token or not same(token, request.session["csrf"]):
                    return _denied(request, 403, "missing or wrong CSRF token: reload the page and try again")
        try:
            return await run(_call, request, view)
        finally:
            if request.state.form is not None:
                await request.state.form.close()  # the spooled upload files

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

    middleware = [
        Middleware(Headers, https_only=https_only),
        Middleware(BodyLimit, course=course),
        Middleware(SessionMiddleware, secret_key=course.secret_key(), session_cookie="learn_session", same_site="lax",
                   https_only=https_only, max_age=14 * 24 * 3600),
    ]  # fmt: skip
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.course = course
    app.state.https_only = https_only
    app.state.limiter = anyio.CapacityLimiter(PAGE_THREADS)
    app.state.throttle = SignInThrottle()
    app.state.known_signer = URLSafeTimedSerializer(course.secret_key(), salt="learn-known-accounts")
    app.state.templates = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                                      autoescape=select_autoescape(default=True, default_for_string=True))  # fmt: skip
    app.state.templates.filters["pts"] = lambda v: "" if v is None else f"{float(v):g}"
    app.state.templates.filters["when"] = views.when
    app.state.worker_notify = worker.notify if worker is not None else (lambda: None)
    app.state.worker_ready = lambda: worker is not None and worker.ready.is_set()
    app.state.worker_problem = lambda: f"{type(worker.error).__name__}: {worker.error}" if worker is not None and worker.error else None
    return app
