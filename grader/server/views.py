"""The pages and JSON endpoints of `learn serve`. Authorization is not decided here: every
handler runs behind `app.guard` (grader.server.auth.RULES); handlers only check what an object
is (an open assignment, a form's values) and whose it is where a route is everyone's (a CLI
token, a held upload).

Every handler but `health` is a plain function run in a worker thread (app.guard): queries,
pages and reports never block the event loop. The form was read by the guard: `request.state.form`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import time
import urllib.parse
import zipfile

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..errors import LearnError
from . import render
from .auth import verify_password
from .course import PartialUpload, UploadError
from .uploads import discard, size_text

REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
KNOWN_COOKIE = "learn_known"  # which accounts this browser signed in to (SignInThrottle waives their account back-off)
KNOWN_S = 365 * 24 * 3600


def when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "none"


HIDDEN_TEXT = {"after_due": "hidden checks show after the due date", "always": "hidden checks show at once",
               "never": "hidden checks are not shown"}  # fmt: skip


def policy(a: dict) -> str:
    if not a["late_percent_per_day"]:
        late = "late work is not penalised" if a["due_at"] else "no due date"
    else:
        late = f"-{a['late_percent_per_day']:g}% per day late (of the checks' points), at most -{a['late_cap_percent']:g}%"
    return f"{late}; {HIDDEN_TEXT.get(a.get('hidden_policy') or 'after_due', '')}"


def parse_due(value: str | None) -> float | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise LearnError(f"not a date and time: {value!r} (expected YYYY-MM-DDTHH:MM, UTC)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def number(value, what: str, default: float | None = None) -> float | None:
    if value in (None, ""):
        return default
    try:
        out = float(value)
    except ValueError:
        raise LearnError(f"{what}: not a number: {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise LearnError(f"{what}: expected a number of at least 0, not {value!r}")
    return out


def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    app = request.app.state
    context.setdefault("flash", request.session.pop("flash", None))
    html = app.templates.get_template(template).render(user=request.state.user, csrf=request.state.csrf, **context)
    return HTMLResponse(html, status_code=status)


def back(request: Request, url: str, flash: str | None = None) -> RedirectResponse:
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)


def form(request: Request):
    return request.state.form


def course(request: Request):
    return request.app.state.course


def uid(request: Request) -> int:
    return request.state.user["id"]


def staff_user(request: Request) -> bool:
    return request.state.user["role"] in ("ta", "instructor")


def not_found(request: Request, what: str) -> HTMLResponse:
    return page(request, "base.html", 404, title="Not found", flash=what)


# ---------------------------------------------------------------------------------------------
# signing in


def home(request: Request):
    user = request.state.user
    if user is None:
        return RedirectResponse("/signin", status_code=303)
    return RedirectResponse("/staff" if user["role"] in ("ta", "instructor") else "/me", status_code=303)


def signin_page(request: Request):
    return page(request, "signin.html", title="Sign in")


def _address(request: Request) -> str:
    """The client's address (uvicorn puts a trusted proxy's X-Forwarded-For here: --forwarded-allow-ips)."""
    return request.client.host if request.client else "?"


def _signer(request: Request):
    return request.app.state.known_signer  # an itsdangerous serializer with the course's key (app.build_app)


def _known(request: Request) -> list[int]:
    from itsdangerous import BadData

    try:
        return list(_signer(request).loads(request.cookies.get(KNOWN_COOKIE, ""), max_age=KNOWN_S))
    except (BadData, TypeError, ValueError):
        return []


def _sign_in(request: Request, user: dict) -> RedirectResponse:
    """A new server-side session (and CSRF token) for `user`; this browser remembered as theirs."""
    c = course(request)
    c.end_session(request.session.get("sid"))
    request.session.clear()
    request.session["sid"] = c.new_session(user["id"])
    response = RedirectResponse("/", status_code=303)
    known = [user["id"], *(k for k in _known(request) if k != user["id"])][:5]
    response.set_cookie(KNOWN_COOKIE, _signer(request).dumps(known), max_age=KNOWN_S, path="/signin", httponly=True,
                        samesite="lax", secure=request.app.state.https_only)  # fmt: skip
    return response


def signin_password(request: Request):
    name, password = str(form(request).get("name", "")).strip()[:64], str(form(request).get("password", ""))
    address, throttle = _address(request), request.app.state.throttle
    user = course(request).user_by_name(name)
    wait = throttle.wait(name, address, known=user is not None and user["id"] in _known(request))
    if wait > 0:
        minutes = "a minute" if wait <= 60 else f"{math.ceil(wait / 60)} minutes"
        return page(request, "signin.html", 429, title="Sign in",
                    flash=f"too many failed sign-ins for this name: wait {minutes} (or use your sign-in link)")  # fmt: skip
    if not user or user["role"] == "setup" or not user["active"] or not verify_password(user["password_hash"], password):
        throttle.fail(name, address)
        return page(request, "signin.html", 401, title="Sign in", flash="wrong name or password")
    throttle.succeed(name, address)
    return _sign_in(request, user)


def signin_link(request: Request):
    if request.method == "GET":  # a confirmation step, so that link previews do not use the link up
        return page(request, "link.html", title="Sign in")
    user = course(request).redeem(request.path_params["token"])
    if user is not None:  # a valid link always works: no limit applies to it
        return _sign_in(request, user)
    throttle, address = request.app.state.throttle, _address(request)
    if throttle.address_blocked(address):
        return page(request, "signin.html", 429, title="Sign in", flash="too many failed sign-ins from this address: wait 15 minutes")
    throttle.fail(None, address)
    return page(request, "signin.html", 403, title="Sign in", flash="this sign-in link is unknown, used up or expired: ask for a new one")


async def health(request: Request):
    """For load balancers and `systemctl`-style checks: the app answers and whether grading is
    warm. On the event loop, touching neither the database nor a page."""
    state = request.app.state
    grading = "problem" if state.worker_problem() else "ready" if state.worker_ready() else "starting"
    return JSONResponse({"status": "ok", "grading": grading})


def signout(request: Request):
    course(request).end_session(request.session.get("sid"))  # the cookie, saved or not, is worth nothing now
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


# ---------------------------------------------------------------------------------------------
# students


def _plot(history: list[dict]) -> str | None:
    points = [(i + 1, 100 * s["final"] / s["possible"]) for i, s in enumerate(history) if s["final"] is not None and s["possible"]]
    if len(points) < 2:
        return None
    from ..html import svg_lines

    xs, ys = zip(*points)
    return svg_lines("Score over time", {"score": (list(xs), list(ys))}, xlabel="submission", ylabel="% of points")


def _me(request: Request, token: str | None = None, label: str = "") -> HTMLResponse:
    c = course(request)
    history = c.history(uid(request), viewer=request.state.user)
    assignments = []
    for a in c.assignments(published_only=True):
        mine = [s for s in history if s["assignment"] == a["slug"]]
        assignments.append({**a, "due_text": when(c.due_for(a, uid(request))), "policy": policy(a), "latest": mine[-1] if mine else None,
                            "titles": c.manual_titles(a)})  # fmt: skip
    return page(request, "me.html", title="My work", assignments=assignments, history=history, plot=_plot(history), token=token,
                token_label=label, tokens=c.api_tokens(uid(request)), base_url=str(request.base_url).rstrip("/"))  # fmt: skip


def me(request: Request):
    return _me(request)


def password(request: Request):
    c = course(request)
    c.set_password(uid(request), str(form(request).get("password", "")))  # ends every session of the account
    request.session["sid"] = c.new_session(uid(request))  # ... but this one goes on
    return back(request, "/me", "password set: every other session of your account is signed out")


def cli_token(request: Request):
    """A new CLI token, shown in this response only (never in a cookie or the database)."""
    label = str(form(request).get("label", "")).strip()
    token = course(request).new_api_token(uid(request), label)
    return _me(request, token=token, label=label)


def revoke_token(request: Request):
    ok = course(request).revoke_api_token(uid(request), request.path_params["tid"])
    return back(request, "/me", "token revoked" if ok else "no such token")


def _open_assignment(request: Request) -> dict | None:
    a = course(request).assignment(request.path_params["slug"])
    if a and (a["published"] or staff_user(request)):
        return a
    return None


def assignment(request: Request):
    c, a = course(request), _open_assignment(request)
    if a is None:
        return not_found(request, "no such assignment")
    history = c.history(uid(request), a["id"], viewer=request.state.user)
    notebooks = [spec.file for spec in c.lesson(a["pack"]).notebooks]
    return page(request, "assignment.html", title=a["title"], a=a, history=history, notebooks=notebooks, latest=history[-1] if history else None,
                due_text=when(c.due_for(a, uid(request))), policy=policy(a), budget=c.budget(a), limits=c.limits,
                limit_text=size_text(c.limits.max_bytes), titles=c.manual_titles(a))  # fmt: skip


def api_assignment(request: Request):
    """What `learn submit` asks before uploading: the notebooks, the limits, the student's quota,
    and where each notebook would come from if left out (their latest copy)."""
    c, a = course(request), _open_assignment(request)
    if a is None:
        return JSONResponse({"error": f"no open assignment {request.path_params['slug']!r}"}, status_code=404)
    notebooks = [spec.file for spec in c.lesson(a["pack"]).notebooks]
    copies = c.latest_copies(uid(request), a, notebooks)
    return JSONResponse({"slug": a["slug"], "title": a["title"], "notebooks": notebooks, "due_at": c.due_for(a, uid(request)),
                         "max_bytes": c.limits.max_bytes, "max_notebooks": c.limits.max_notebooks, "quota_bytes": c.limits.quota_bytes,
                         "used_bytes": c.usage(uid(request)), "time_budget_s": c.budget(a),
                         "latest": {k: ({"sid": v["sid"], "at": v["at"]} if v else None) for k, v in copies.items()}})  # fmt: skip


def _files(request: Request) -> list[tuple[str, object]]:
    """(file name, spooled file) of the form's `files` (the guard read the form)."""
    return [(item.filename or "", item.file) for item in form(request).getlist("files") if hasattr(item, "read")]


def _queued(request: Request, sid: int) -> int:
    request.app.state.worker_notify()
    return sid


def submit(request: Request):
    """An upload from the page: accepted at once, or - lacking some of the assignment's notebooks -
    held and shown to the student with what is missing and where it would come from."""
    c, slug = course(request), request.path_params["slug"]
    try:
        upload = c.receive(request.state.user, slug, _files(request))
    except UploadError as exc:
        return back(request, f"/a/{slug}", str(exc))
    if upload.missing:
        token = c.hold(upload)
        return page(request, "confirm.html", title="Some notebooks are missing", slug=slug, token=token, warning=upload.warning(),
                    missing=upload.missing, kept=upload.notes)  # fmt: skip
    try:
        sid = _queued(request, c.accept(upload))
    except UploadError as exc:
        return back(request, f"/a/{slug}", str(exc))
    return RedirectResponse(f"/s/{sid}", status_code=303)


def confirm_upload(request: Request):
    c, slug = course(request), request.path_params["slug"]
    upload = c.held(request.state.user, str(form(request).get("token", "")))
    if upload is None or upload.slug != slug:
        if upload is not None:
            discard(upload.folder)
        return back(request, f"/a/{slug}", "that upload is no longer waiting (kept for an hour): upload again")
    if form(request).get("action") != "submit":
        discard(upload.folder)
        return back(request, f"/a/{slug}", "upload cancelled: nothing was submitted")
    try:
        sid = _queued(request, c.accept(upload))
    except UploadError as exc:
        return back(request, f"/a/{slug}", str(exc))
    return RedirectResponse(f"/s/{sid}", status_code=303)


def api_submit(request: Request):
    partial = str(form(request).get("partial", "")).lower() in ("1", "true", "yes")
    try:
        sid = _queued(request, course(request).submit(request.state.user, request.path_params["slug"], _files(request), partial=partial))
    except PartialUpload as exc:
        return JSONResponse({"error": str(exc), "missing": exc.missing}, status_code=exc.status)
    except UploadError as exc:
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))
    return JSONResponse({"id": sid, "status_url": f"/api/s/{sid}", "url": f"/s/{sid}"}, status_code=201)


def _submission(request: Request) -> dict | None:
    c = course(request)
    s = c.submission(int(request.path_params["sid"]))
    return c.with_grade(s, request.state.user) if s else None


def submission(request: Request):
    s = _submission(request)
    if s is None:
        return not_found(request, "no such submission")
    c = course(request)
    a = c.assignment(s["assignment"])
    latest = c.db.value("SELECT MAX(id) FROM submissions WHERE user_id = ? AND assignment_id = ?", s["user_id"], s["assignment_id"])
    return page(request, "submission.html", title=f"Submission {s['id']}", s=s, when=when(s["created_at"]), staff=staff_user(request),
                notes=json.loads(s["notes"] or "[]"), titles=c.manual_titles(a), latest=latest, a=a,
                maximum=sum(c.maximum(a)), timeouts=_timeouts(s))  # fmt: skip


def _timeouts(s: dict) -> list[str]:
    from .course import timeouts

    return timeouts(json.loads(s["result_json"])) if s.get("result_json") else []


def submission_status(request: Request):
    s = _submission(request)
    if s is None:
        return JSONResponse({"error": "no such submission"}, status_code=404)
    override = {"points": s["override"]["points"], "reason": s["override"]["reason"]} if s["override"] else None
    return JSONResponse({"id": s["id"], "state": s["state"], "points": s["points"], "max_points": s["max_points"], "final": s["final"],
                         "possible": s["possible"], "late_penalty": s["late_penalty"], "late_points": s["late_points"],
                         "manual_points": s["manual_points"], "manual_max": s["manual_max"], "manual_pending": s["manual_pending"],
                         "override": override, "status": s["status"], "hidden_pending": s["hidden_pending"],
                         "error": s["error"] if s["state"] == "failed" else None,
                         "report_url": f"/s/{s['id']}/report" if s["state"] == "graded" else None})  # fmt: skip


def submission_report(request: Request):
    """The stored report of the current grade (rendered once, by the queue worker) with the grade
    block on top; rendered here - bounded - only when none is stored."""
    s = _submission(request)
    if s is None or not s["result_json"]:
        return not_found(request, "no feedback (yet)")
    c = course(request)
    variant = "student" if s["hidden_pending"] else "full"
    html = c.stored_report(s["id"], variant)
    if html is None:
        reports = render.variants(json.loads(s["result_json"]), render.report_title(s["assignment"], s["id"]))
        with c.db.transaction() as tx:
            if tx.value("SELECT grade_count FROM submissions WHERE id = ?", s["id"]) == s["grade_count"]:
                c.store_reports(tx, s["id"], reports)
        html = reports.get(variant, reports["full"])
    a = c.assignment(s["assignment"])
    block = request.app.state.templates.get_template("report_grade.html").render(
        s=s, notes=json.loads(s["notes"] or "[]"), titles=c.manual_titles(a), staff=staff_user(request)
    )
    return HTMLResponse(render.with_block(html, block), headers={"Content-Security-Policy": REPORT_CSP})


# ---------------------------------------------------------------------------------------------
# staff


def staff(request: Request):
    from ..lessons import all_lessons

    c = course(request)
    assignments = [{**a, "due_text": when(a["due_at"]), "missing": len(c.not_submitted(a["slug"]))} for a in c.assignments()]
    return page(request, "staff.html", title="Course", assignments=assignments, queue=c.queue_counts(), packs=sorted(all_lessons()),
                instructor=request.state.user["role"] == "instructor", problem=request.app.state.worker_problem())  # fmt: skip


def staff_queue(request: Request):
    return JSONResponse({**course(request).queue_counts(), "problem": request.app.state.worker_problem()})


def staff_people(request: Request):
    people = course(request).people()
    return page(request, "people.html", title="People", people=people, instructor=request.state.user["role"] == "instructor")


def staff_assignment(request: Request):
    from ..dashboard import summarise

    c = course(request)
    a = c.assignment(request.path_params["slug"])
    if a is None:
        return not_found(request, "no such assignment")
    with render.bounded():  # a class's records: a slow page, like the exports
        records = c.records(a["slug"])
        rows = [{**c.with_grade(r), "timeouts": _timeouts(r)} for r in c.latest(a["slug"])]
        summary = summarise([r for r in records if r.state != "not_submitted"])
    graded = [r for r in records if r.state == "graded"]
    checks = summarise(graded).checks if graded else []
    from .course import HIDDEN_POLICIES

    due_input = dt.datetime.fromtimestamp(a["due_at"], dt.UTC).strftime("%Y-%m-%dT%H:%M") if a["due_at"] else ""
    missing = [r.student for r in records if r.state == "not_submitted"]
    return page(request, "staff_assignment.html", title=a["title"], a=a, rows=rows, checks=checks, due_text=when(a["due_at"]),
                policy=policy(a), instructor=request.state.user["role"] == "instructor", due_input=due_input,
                hidden_policies=HIDDEN_POLICIES, attention=summary.attention, missing=missing, budget=c.budget(a),
                maximum=sum(c.maximum(a)))  # fmt: skip


def staff_not_submitted(request: Request):
    c = course(request)
    a = c.assignment(request.path_params["slug"])
    if a is None:
        return not_found(request, "no such assignment")
    return page(request, "missing.html", title=f"Not submitted: {a['slug']}", a=a, people=c.not_submitted(a["slug"]))


def staff_check(request: Request):
    """One graded check of an assignment: every student's verdict on it (latest graded submission),
    counts by state and the problems grouped (a named mistake, else the message's first line)."""
    from .course import check_summary

    c, slug, name = course(request), request.path_params["slug"], request.path_params["check"]
    a = c.assignment(slug)
    if a is None:
        return not_found(request, "no such assignment")
    spec = c.lesson(a["pack"]).checks.get(name)
    if spec is None:
        return not_found(request, f"assignment {slug} has no graded check {name!r}")
    rows = c.check_rows(slug, name)
    counts, groups = check_summary(rows)
    return page(request, "staff_check.html", title=f"{slug}: {name}", a=a, name=name, spec=spec, rows=rows, counts=counts,
                groups=groups)  # fmt: skip


def staff_student(request: Request):
    c = course(request)
    u = c.user_by_name(request.path_params["name"])
    if u is None:
        return not_found(request, "no such student")
    history = c.history(u["id"])
    return page(request, "staff_student.html", title=u["name"], u=u, history=history, tokens=c.api_tokens(u["id"]),
                instructor=request.state.user["role"] == "instructor")  # fmt: skip


def set_active(request: Request):
    name = request.path_params["name"]
    active = str(form(request).get("active", "0")) == "1"
    course(request).set_active(uid(request), name, active)
    return back(request, f"/staff/u/{urllib.parse.quote(name)}",
                f"{name} reactivated" if active else f"{name} deactivated: signed out everywhere, links and tokens revoked; grades kept")  # fmt: skip


def new_link(request: Request):
    name = request.path_params["name"]
    token = course(request).new_signin_link(uid(request), name)
    user = course(request).user_by_name(name)
    return _links_page(request, [(name, user["email"], token)], f"a new sign-in link for {name} (the earlier one no longer works)")


def staff_override(request: Request):
    sid = int(request.path_params["sid"])
    course(request).override(uid(request), sid, number(form(request).get("points"), "points"), str(form(request).get("reason", "")))
    return back(request, f"/s/{sid}", "grade overridden: it stays in force over later submissions until cleared")


def staff_clear_override(request: Request):
    sid = int(request.path_params["sid"])
    done = course(request).clear_override(uid(request), sid)
    return back(request, f"/s/{sid}", "override cleared: the grade is computed again" if done else "no override in force")


def staff_regrade(request: Request):
    sid = int(request.path_params["sid"])
    if course(request).submission(sid) is None:
        return back(request, "/staff", "no such submission")
    course(request).regrade(uid(request), [sid])
    request.app.state.worker_notify()
    return back(request, f"/s/{sid}", "queued for regrading")


def staff_regrade_all(request: Request):
    c = course(request)
    slug = request.path_params["slug"]
    n = c.regrade(uid(request), [r["id"] for r in c.latest(slug)])
    request.app.state.worker_notify()
    return back(request, f"/staff/a/{slug}", f"{n} submissions queued for regrading")


def staff_extension(request: Request):
    slug = request.path_params["slug"]
    due = parse_due(str(form(request).get("due", "")))
    if due is None:
        raise LearnError("an extension needs a new due date")
    course(request).extend(uid(request), slug, str(form(request).get("student", "")).strip(), due)
    return back(request, f"/staff/a/{slug}", "extension set")


def canvas_csv(records) -> str:
    """Canvas's gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, then one column
    per assignment; a student who did not submit gets 0."""
    from ..export import fmt_points
    from ..inert import csv_cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    column = f"{records[0].assignment}" if records else "assignment"
    writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column])
    writer.writerow(["    Points Possible", "", "", "", "", fmt_points(records[0].max_points) if records else ""])
    for r in records:
        shown = fmt_points(r.points) if r.state in ("graded", "not_submitted") else ""
        writer.writerow([csv_cell(r.student), "", "", csv_cell(r.student), "", shown])
    return out.getvalue()


def _attachment(body, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def staff_export(request: Request):
    """The exports (bounded like the reports: a class's records are a slow page). Every active
    student is in them: those who did not submit with 0 ('not submitted')."""
    from .. import export

    c, slug, fmt = course(request), request.path_params["slug"], request.path_params["fmt"]
    if c.assignment(slug) is None:
        return not_found(request, "no such assignment")
    if fmt not in ("csv", "canvas", "junit", "gradescope", "dashboard"):
        return not_found(request, f"no export format {fmt!r} (csv, canvas, junit, gradescope, dashboard)")
    with render.bounded():
        split = fmt in ("junit", "gradescope")  # these list the hand-graded items on their own (grader.export)
        records, manual = c.records(slug, split_manual=split), c.manual_rows(slug) if split else {}
        name = f"{slug}-{time.strftime('%Y%m%d')}"
        if fmt == "csv":
            return _attachment(export.csv_text(records), "text/csv", f"{name}.csv")
        if fmt == "canvas":
            return _attachment(canvas_csv(records), "text/csv", f"{name}-canvas.csv")
        if fmt == "junit":
            return Response(export.junit_xml(records, manual), media_type="application/xml")
        if fmt == "gradescope":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as archive:
                for r in records:
                    results = export.gradescope_results(r, manual.get((r.student, r.assignment), []))
                    archive.writestr(f"{export.safe_name(r.student)}/results.json", json.dumps(results, indent=2))
            return _attachment(buf.getvalue(), "application/zip", f"{name}-gradescope.zip")
        from ..dashboard import render_dashboard, summarise

        graded = [r for r in records if r.state == "graded"]
        if not graded:
            return not_found(request, "nothing graded yet")
        html = render_dashboard(summarise(graded), title=f"Class dashboard: {slug}")
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})


def staff_manual(request: Request):
    c = course(request)
    a = c.assignment(request.path_params["slug"])
    if a is None:
        return not_found(request, "no such assignment")
    items = c.db.all("SELECT m.*, u.name AS student FROM manual_items m JOIN users u ON u.id = m.user_id WHERE m.assignment_id = ? "
                     "ORDER BY (m.points IS NOT NULL), u.name, m.item", a["id"])  # fmt: skip
    return page(request, "manual.html", title=f"Manual grading: {a['slug']}", a=a, items=items)


def staff_manual_grade(request: Request):
    c, mid = course(request), int(request.path_params["mid"])
    item = c.db.one("SELECT m.*, a.slug FROM manual_items m JOIN assignments a ON a.id = m.assignment_id WHERE m.id = ?", mid)
    if item is None:
        return back(request, "/staff", "no such answer")
    points = number(form(request).get("points"), "points")
    if points is None or not 0 <= points <= item["max_points"]:
        raise LearnError(f"points must be between 0 and {item['max_points']:g}")
    with c.db.transaction() as tx:
        tx.run("UPDATE manual_items SET points = ?, comment = ?, graded_by = ?, graded_at = ? WHERE id = ?", points,
               str(form(request).get("comment", "")), uid(request), time.time(), mid)  # fmt: skip
        c.audit(tx, uid(request), "manual_grade", {"item": mid, "points": points})
    return back(request, f"/staff/a/{item['slug']}/manual", "saved")


def create_assignment(request: Request):
    f = form(request)
    max_subs = number(f.get("max_submissions"), "submission limit")
    slug = course(request).create_assignment(
        uid(request), str(f.get("pack_path") or f.get("pack") or "").strip(), str(f.get("slug", "")).strip(),
        str(f.get("title", "")).strip(),
        parse_due(str(f.get("due", ""))), number(f.get("percent_per_day"), "late % per day", 0.0),
        number(f.get("cap"), "cap", 100.0), int(max_subs) if max_subs else None,
        str(f.get("hidden_policy") or "after_due"),
    )  # fmt: skip
    return back(request, "/staff", f"assignment {slug} created (not published yet)")


def assignment_settings(request: Request):
    """The instructor changes the due date (blank: none), late policy, limit, hidden-check
    policy, time budget per submission (blank: the notebooks' own limits) or extra credit."""
    f = form(request)
    slug = request.path_params["slug"]
    c = course(request)
    if c.assignment(slug) is None:
        return back(request, "/staff", "no such assignment")
    changes: dict = {}
    if "due" in f:
        changes["due_at"] = parse_due(str(f.get("due", "")))
    if f.get("percent_per_day") not in (None, ""):
        changes["late_percent_per_day"] = number(f.get("percent_per_day"), "late % per day")
    if f.get("cap") not in (None, ""):
        changes["late_cap_percent"] = number(f.get("cap"), "cap")
    if "max_submissions" in f:
        limit = number(f.get("max_submissions"), "submission limit")
        changes["max_submissions"] = int(limit) if limit else None
    if f.get("hidden_policy"):
        changes["hidden_policy"] = str(f.get("hidden_policy"))
    if "time_budget_s" in f:
        changes["time_budget_s"] = number(f.get("time_budget_s"), "time budget (seconds)")
    if "extra_credit" in f:
        changes["extra_credit"] = int(str(f.get("extra_credit")) == "1")
    if not changes:
        raise LearnError("nothing to change: give a due date, a late policy, a submission limit, a hidden-check policy, "
                         "a time budget or extra credit")  # fmt: skip
    c.update_assignment(uid(request), slug, **changes)
    return back(request, f"/staff/a/{slug}", "settings saved")


def publish(request: Request):
    slug = request.path_params["slug"]
    if course(request).assignment(slug) is None:
        return back(request, "/staff", "no such assignment")
    course(request).publish(uid(request), slug, str(form(request).get("published", "1")) == "1")
    return back(request, "/staff")


def _links(request: Request, triples) -> list[tuple[str, str, str]]:
    base = str(request.base_url).rstrip("/")
    return [(name, email, f"{base}/signin/{token}") for name, email, token in triples]


def links_csv(links: list[tuple[str, str, str]]) -> str:
    """name,email,link - for a mail merge (cells inert: names come from the roster)."""
    from ..inert import csv_cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "email", "link"])
    for name, email, link in links:
        writer.writerow([csv_cell(name), csv_cell(email), link])
    return out.getvalue()


def _links_page(request: Request, triples, flash: str) -> HTMLResponse:
    links = _links(request, triples)
    data_url = "data:text/csv;charset=utf-8," + urllib.parse.quote(links_csv(links), safe="")
    return page(request, "links.html", title="Sign-in links", links=links, csv_url=data_url, flash=flash)


def roster(request: Request):
    upload = form(request).get("roster")
    if not hasattr(upload, "read"):
        raise LearnError("upload a roster CSV file")
    data = upload.file.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LearnError("the roster is not UTF-8 text") from None
    triples = course(request).add_roster(text, uid(request))
    # shown in this response (or downloaded as CSV), never kept: a class's links fit no cookie
    if str(form(request).get("format", "")) == "csv":
        return _attachment(links_csv(_links(request, triples)), "text/csv", f"signin-links-{time.strftime('%Y%m%d')}.csv")
    return _links_page(
        request, triples, f"{len(triples)} students on the roster; send each their sign-in link (earlier links no longer work)"
    )


def add_ta(request: Request):
    c = course(request)
    name = str(form(request).get("name", "")).strip()
    with c.db.transaction() as tx:
        user_id = c.add_user(tx, name, "ta")
        tx.run("UPDATE users SET role = 'ta' WHERE id = ? AND role = 'student'", user_id)
        from .auth import SIGNIN_LINK_S

        token = c.issue_token(tx, user_id, "signin", SIGNIN_LINK_S)
        c.audit(tx, uid(request), "add_ta", {"name": name})
    return _links_page(request, [(name, "", token)], f"{name} is a TA")
