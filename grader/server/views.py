"""The pages and JSON endpoints of `learn serve`. Authorization is not decided here: every
handler runs behind `app.guard` (grader.server.auth.RULES); handlers only check what an object
is (an open assignment, a form's values)."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import time
import zipfile

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..errors import LearnError
from .auth import RateLimiter, verify_password
from .course import UploadError

SIGNIN_LIMIT = RateLimiter(limit=5, window=15 * 60)  # failed sign-ins per client and per name
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


def when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "none"


HIDDEN_TEXT = {"after_due": "hidden checks show after the due date", "always": "hidden checks show at once",
               "never": "hidden checks are not shown"}  # fmt: skip


def policy(a: dict) -> str:
    if not a["late_percent_per_day"]:
        late = "late work is not penalised" if a["due_at"] else "no due date"
    else:
        late = f"-{a['late_percent_per_day']:g}% per day late, at most -{a['late_cap_percent']:g}%"
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


def course(request: Request):
    return request.app.state.course


def uid(request: Request) -> int:
    return request.state.user["id"]


# ---------------------------------------------------------------------------------------------
# signing in


async def home(request: Request):
    user = request.state.user
    if user is None:
        return RedirectResponse("/signin", status_code=303)
    return RedirectResponse("/staff" if user["role"] in ("ta", "instructor") else "/me", status_code=303)


async def signin_page(request: Request):
    return page(request, "signin.html", title="Sign in")


def _sign_in(request: Request, user: dict) -> RedirectResponse:
    request.session.clear()  # a new session id and CSRF token for the signed-in user
    request.session["uid"] = user["id"]
    return RedirectResponse("/", status_code=303)


async def signin_password(request: Request):
    form = await request.form()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    client = request.client.host if request.client else "?"
    if SIGNIN_LIMIT.blocked(f"ip:{client}", f"name:{name}"):
        return page(request, "signin.html", 429, title="Sign in", flash="too many failed sign-ins: wait 15 minutes")
    user = course(request).user_by_name(name)
    if not user or user["role"] == "setup" or not verify_password(user["password_hash"], password):
        SIGNIN_LIMIT.hit(f"ip:{client}", f"name:{name}")
        return page(request, "signin.html", 401, title="Sign in", flash="wrong name or password")
    return _sign_in(request, user)


async def signin_link(request: Request):
    client = request.client.host if request.client else "?"
    if SIGNIN_LIMIT.blocked(f"ip:{client}"):
        return page(request, "signin.html", 429, title="Sign in", flash="too many failed sign-ins: wait 15 minutes")
    if request.method == "GET":  # a confirmation step, so that link previews do not use the link up
        return page(request, "link.html", title="Sign in")
    user = course(request).redeem(request.path_params["token"])
    if user is None:
        SIGNIN_LIMIT.hit(f"ip:{client}")
        return page(
            request, "signin.html", 403, title="Sign in", flash="this sign-in link is unknown, used up or expired: ask for a new one"
        )
    return _sign_in(request, user)


async def health(request: Request):
    """For load balancers and `systemctl`-style checks: the app answers and whether grading is warm."""
    state = request.app.state
    grading = "problem" if state.worker_problem() else "ready" if state.worker_ready() else "starting"
    return JSONResponse({"status": "ok", "grading": grading})


async def signout(request: Request):
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


# ---------------------------------------------------------------------------------------------
# students


def _plot(history: list[dict]) -> str | None:
    points = [(i + 1, 100 * s["final"] / s["max_points"]) for i, s in enumerate(history) if s["final"] is not None and s["max_points"]]
    if len(points) < 2:
        return None
    from ..html import svg_lines

    xs, ys = zip(*points)
    return svg_lines("Score over time", {"score": (list(xs), list(ys))}, xlabel="submission", ylabel="% of points")


async def me(request: Request):
    c = course(request)
    history = c.history(uid(request), viewer=request.state.user)
    for s in history:
        s["when"] = when(s["created_at"])
    assignments = []
    for a in c.assignments(published_only=True):
        mine = [s for s in history if s["assignment"] == a["slug"]]
        assignments.append({**a, "due_text": when(c.due_for(a, uid(request))), "policy": policy(a),
                            "best": mine[-1]["final"] if mine else None})  # fmt: skip
    token = request.session.pop("new_token", None)
    return page(request, "me.html", title="My work", assignments=assignments, history=history, plot=_plot(history), token=token,
                base_url=str(request.base_url).rstrip("/"))  # fmt: skip


async def password(request: Request):
    form = await request.form()
    course(request).set_password(uid(request), str(form.get("password", "")))
    return back(request, "/me", "password set")


async def cli_token(request: Request):
    request.session["new_token"] = course(request).new_api_token(uid(request))
    return back(request, "/me")


def _open_assignment(request: Request) -> dict | None:
    a = course(request).assignment(request.path_params["slug"])
    if a and (a["published"] or request.state.user["role"] in ("ta", "instructor")):
        return a
    return None


async def assignment(request: Request):
    c, a = course(request), _open_assignment(request)
    if a is None:
        return page(request, "base.html", 404, title="Not found", flash="no such assignment")
    history = c.history(uid(request), a["id"], viewer=request.state.user)
    for s in history:
        s["when"] = when(s["created_at"])
    notebooks = [spec.file for spec in c.lesson(a["pack"]).notebooks]
    return page(request, "assignment.html", title=a["title"], a=a, history=history, notebooks=notebooks,
                due_text=when(c.due_for(a, uid(request))), policy=policy(a))  # fmt: skip


async def _files(request: Request) -> list[tuple[str, bytes]]:
    form = await request.form()
    files = []
    for item in form.getlist("files"):
        if hasattr(item, "read"):
            files.append((item.filename or "", await item.read()))
    return files


def _submit(request: Request, files) -> int:
    sid = course(request).submit(request.state.user, request.path_params["slug"], files)
    request.app.state.worker_notify()
    return sid


async def submit(request: Request):
    try:
        sid = _submit(request, await _files(request))
    except UploadError as exc:
        return back(request, f"/a/{request.path_params['slug']}", str(exc))
    return RedirectResponse(f"/s/{sid}", status_code=303)


async def api_submit(request: Request):
    try:
        sid = _submit(request, await _files(request))
    except UploadError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400 if "limit" not in str(exc) and "a minute" not in str(exc) else 429)
    return JSONResponse({"id": sid, "status_url": f"/api/s/{sid}", "url": f"/s/{sid}"}, status_code=201)


def _submission(request: Request) -> dict | None:
    c = course(request)
    s = c.submission(int(request.path_params["sid"]))
    return c.with_grade(s, request.state.user) if s else None


async def submission(request: Request):
    s = _submission(request)
    if s is None:
        return page(request, "base.html", 404, title="Not found", flash="no such submission")
    staff = request.state.user["role"] in ("ta", "instructor")
    return page(request, "submission.html", title=f"Submission {s['id']}", s=s, when=when(s["created_at"]), staff=staff)


async def submission_status(request: Request):
    s = _submission(request)
    if s is None:
        return JSONResponse({"error": "no such submission"}, status_code=404)
    return JSONResponse({"id": s["id"], "state": s["state"], "points": s["points"], "max_points": s["max_points"], "final": s["final"],
                         "late_penalty": s["late_penalty"], "status": s["status"], "hidden_pending": s["hidden_pending"], "error": s["error"] if s["state"] == "failed" else None,
                         "report_url": f"/s/{s['id']}/report" if s["state"] == "graded" else None})  # fmt: skip


async def submission_report(request: Request):
    s = _submission(request)
    if s is None or not s["result_json"]:
        return page(request, "base.html", 404, title="Not found", flash="no feedback (yet)")
    from ..html import render_report
    from ..results import RunResult

    run = RunResult.from_dict(json.loads(s["result_json"]))
    if s["hidden_pending"]:
        run = without_hidden(run)
    html = render_report(run, title=f"{s['assignment']}: submission {s['id']}")
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})


def without_hidden(run):
    """The run as a student sees it before the hidden checks show: those checks and their points left out."""
    for nb in run.notebooks:
        hidden = [c for c in nb.checks if c.hidden]
        nb.checks = [c for c in nb.checks if not c.hidden]
        nb.points = round(nb.points - sum(c.points for c in hidden), 2)
        nb.max_points = round(nb.max_points - sum(c.max_points for c in hidden), 2)
    return run


# ---------------------------------------------------------------------------------------------
# staff


async def staff(request: Request):
    from ..lessons import all_lessons

    c = course(request)
    assignments = [{**a, "due_text": when(a["due_at"])} for a in c.assignments()]
    return page(request, "staff.html", title="Course", assignments=assignments, queue=c.queue_counts(), packs=sorted(all_lessons()),
                instructor=request.state.user["role"] == "instructor", problem=request.app.state.worker_problem())  # fmt: skip


async def staff_queue(request: Request):
    return JSONResponse({**course(request).queue_counts(), "problem": request.app.state.worker_problem()})


async def staff_assignment(request: Request):
    from ..dashboard import summarise

    c = course(request)
    a = c.assignment(request.path_params["slug"])
    if a is None:
        return page(request, "base.html", 404, title="Not found", flash="no such assignment")
    all_records = c.records(a["slug"])
    totals = {r.id: (r.points, r.max_points) for r in all_records}  # with hand-graded answers, as exported
    rows = [{**c.with_grade(r), "total": totals.get(r["id"])} for r in c.latest(a["slug"])]
    records = [r for r in all_records if r.state == "graded"]
    checks = summarise(records).checks if records else []
    from .course import HIDDEN_POLICIES

    due_input = dt.datetime.fromtimestamp(a["due_at"], dt.UTC).strftime("%Y-%m-%dT%H:%M") if a["due_at"] else ""
    return page(request, "staff_assignment.html", title=a["title"], a=a, rows=rows, checks=checks, due_text=when(a["due_at"]),
                policy=policy(a), instructor=request.state.user["role"] == "instructor", due_input=due_input,
                hidden_policies=HIDDEN_POLICIES)  # fmt: skip


async def staff_check(request: Request):
    """One graded check of an assignment: every student's verdict on it (latest graded submission),
    counts by state and the problems grouped (a named mistake, else the message's first line)."""
    from .course import check_summary

    c, slug, name = course(request), request.path_params["slug"], request.path_params["check"]
    a = c.assignment(slug)
    if a is None:
        return page(request, "base.html", 404, title="Not found", flash="no such assignment")
    spec = c.lesson(a["pack"]).checks.get(name)
    if spec is None:
        return page(request, "base.html", 404, title="Not found", flash=f"assignment {slug} has no graded check {name!r}")
    rows = c.check_rows(slug, name)
    counts, groups = check_summary(rows)
    return page(request, "staff_check.html", title=f"{slug}: {name}", a=a, name=name, spec=spec, rows=rows, counts=counts,
                groups=groups)  # fmt: skip


async def staff_student(request: Request):
    c = course(request)
    u = c.user_by_name(request.path_params["name"])
    if u is None:
        return page(request, "base.html", 404, title="Not found", flash="no such student")
    history = c.history(u["id"])
    for s in history:
        s["when"] = when(s["created_at"])
    return page(request, "staff_student.html", title=u["name"], u=u, history=history)


async def staff_override(request: Request):
    form = await request.form()
    sid = int(request.path_params["sid"])
    course(request).override(uid(request), sid, number(form.get("points"), "points"), str(form.get("reason", "")))
    return back(request, f"/s/{sid}", "grade overridden")


async def staff_regrade(request: Request):
    sid = int(request.path_params["sid"])
    if course(request).submission(sid) is None:
        return back(request, "/staff", "no such submission")
    course(request).regrade(uid(request), [sid])
    request.app.state.worker_notify()
    return back(request, f"/s/{sid}", "queued for regrading")


async def staff_regrade_all(request: Request):
    c = course(request)
    slug = request.path_params["slug"]
    n = c.regrade(uid(request), [r["id"] for r in c.latest(slug)])
    request.app.state.worker_notify()
    return back(request, f"/staff/a/{slug}", f"{n} submissions queued for regrading")


async def staff_extension(request: Request):
    form = await request.form()
    slug = request.path_params["slug"]
    due = parse_due(str(form.get("due", "")))
    if due is None:
        raise LearnError("an extension needs a new due date")
    course(request).extend(uid(request), slug, str(form.get("student", "")).strip(), due)
    return back(request, f"/staff/a/{slug}", "extension set")


def canvas_csv(records) -> str:
    """Canvas's gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, then one column per assignment."""
    import csv

    from ..export import _fmt
    from ..inert import csv_cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    column = f"{records[0].assignment}" if records else "assignment"
    writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column])
    writer.writerow(["    Points Possible", "", "", "", "", _fmt(records[0].max_points) if records else ""])
    for r in records:
        writer.writerow([csv_cell(r.student), "", "", csv_cell(r.student), "", _fmt(r.points) if r.state == "graded" else ""])
    return out.getvalue()


async def staff_export(request: Request):
    from .. import export

    c, slug, fmt = course(request), request.path_params["slug"], request.path_params["fmt"]
    if c.assignment(slug) is None:
        return page(request, "base.html", 404, title="Not found", flash="no such assignment")
    split = fmt in ("junit", "gradescope")  # these list the hand-graded items on their own (grader.export)
    records, manual = c.records(slug, split_manual=split), c.manual_rows(slug) if split else {}
    name = f"{slug}-{time.strftime('%Y%m%d')}"
    if fmt == "csv":
        return Response(
            export.csv_text(records), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'}
        )
    if fmt == "canvas":
        return Response(canvas_csv(records), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}-canvas.csv"'})  # fmt: skip
    if fmt == "junit":
        return Response(export.junit_xml(records, manual), media_type="application/xml")
    if fmt == "gradescope":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for r in records:
                results = export.gradescope_results(r, manual.get((r.student, r.assignment), []))
                archive.writestr(f"{export.safe_name(r.student)}/results.json", json.dumps(results, indent=2))
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}-gradescope.zip"'})  # fmt: skip
    if fmt == "dashboard":
        from ..dashboard import render_dashboard, summarise

        graded = [r for r in records if r.state == "graded"]
        if not graded:
            return page(request, "base.html", 404, title="Not found", flash="nothing graded yet")
        return HTMLResponse(
            render_dashboard(summarise(graded), title=f"Class dashboard: {slug}"), headers={"Content-Security-Policy": REPORT_CSP}
        )
    return page(request, "base.html", 404, title="Not found", flash=f"no export format {fmt!r} (csv, canvas, junit, gradescope, dashboard)")


async def staff_manual(request: Request):
    c = course(request)
    a = c.assignment(request.path_params["slug"])
    if a is None:
        return page(request, "base.html", 404, title="Not found", flash="no such assignment")
    items = c.db.all("SELECT m.*, u.name AS student FROM manual_items m JOIN users u ON u.id = m.user_id WHERE m.assignment_id = ? "
                     "ORDER BY (m.points IS NOT NULL), u.name, m.item", a["id"])  # fmt: skip
    return page(request, "manual.html", title=f"Manual grading: {a['slug']}", a=a, items=items)


async def staff_manual_grade(request: Request):
    form = await request.form()
    c, mid = course(request), int(request.path_params["mid"])
    item = c.db.one("SELECT m.*, a.slug FROM manual_items m JOIN assignments a ON a.id = m.assignment_id WHERE m.id = ?", mid)
    if item is None:
        return back(request, "/staff", "no such answer")
    points = number(form.get("points"), "points")
    if points is None or not 0 <= points <= item["max_points"]:
        raise LearnError(f"points must be between 0 and {item['max_points']:g}")
    with c.db.transaction() as tx:
        tx.run("UPDATE manual_items SET points = ?, comment = ?, graded_by = ?, graded_at = ? WHERE id = ?", points,
               str(form.get("comment", "")), uid(request), time.time(), mid)  # fmt: skip
        c.audit(tx, uid(request), "manual_grade", {"item": mid, "points": points})
    return back(request, f"/staff/a/{item['slug']}/manual", "saved")


async def create_assignment(request: Request):
    form = await request.form()
    max_subs = number(form.get("max_submissions"), "submission limit")
    slug = course(request).create_assignment(
        uid(request), str(form.get("pack_path") or form.get("pack") or "").strip(), str(form.get("slug", "")).strip(),
        str(form.get("title", "")).strip(),
        parse_due(str(form.get("due", ""))), number(form.get("percent_per_day"), "late % per day", 0.0),
        number(form.get("cap"), "cap", 100.0), int(max_subs) if max_subs else None,
        str(form.get("hidden_policy") or "after_due"),
    )  # fmt: skip
    return back(request, "/staff", f"assignment {slug} created (not published yet)")


async def assignment_settings(request: Request):
    """The instructor changes the due date (blank: none), late policy, limit or hidden-check policy."""
    form = await request.form()
    slug = request.path_params["slug"]
    c = course(request)
    if c.assignment(slug) is None:
        return back(request, "/staff", "no such assignment")
    changes: dict = {}
    if "due" in form:
        changes["due_at"] = parse_due(str(form.get("due", "")))
    if form.get("percent_per_day") not in (None, ""):
        changes["late_percent_per_day"] = number(form.get("percent_per_day"), "late % per day")
    if form.get("cap") not in (None, ""):
        changes["late_cap_percent"] = number(form.get("cap"), "cap")
    if "max_submissions" in form:
        limit = number(form.get("max_submissions"), "submission limit")
        changes["max_submissions"] = int(limit) if limit else None
    if form.get("hidden_policy"):
        changes["hidden_policy"] = str(form.get("hidden_policy"))
    if not changes:
        raise LearnError("nothing to change: give a due date, a late policy, a submission limit or a hidden-check policy")
    c.update_assignment(uid(request), slug, **changes)
    return back(request, f"/staff/a/{slug}", "settings saved")


async def publish(request: Request):
    form = await request.form()
    slug = request.path_params["slug"]
    if course(request).assignment(slug) is None:
        return back(request, "/staff", "no such assignment")
    course(request).publish(uid(request), slug, str(form.get("published", "1")) == "1")
    return back(request, "/staff")


def _links(request: Request, pairs) -> list[tuple[str, str]]:
    base = str(request.base_url).rstrip("/")
    return [(name, f"{base}/signin/{token}") for name, token in pairs]


async def roster(request: Request):
    form = await request.form()
    upload = form.get("roster")
    if not hasattr(upload, "read"):
        raise LearnError("upload a roster CSV file")
    data = await upload.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LearnError("the roster is not UTF-8 text") from None
    pairs = course(request).add_roster(text, uid(request))
    # shown in this response, never kept in the session cookie (a class's links would not fit)
    return page(request, "links.html", title="Sign-in links", links=_links(request, pairs),
                flash=f"{len(pairs)} students on the roster; send each their sign-in link")  # fmt: skip


async def add_ta(request: Request):
    form = await request.form()
    c = course(request)
    name = str(form.get("name", "")).strip()
    with c.db.transaction() as tx:
        user_id = c.add_user(tx, name, "ta")
        tx.run("UPDATE users SET role = 'ta' WHERE id = ? AND role = 'student'", user_id)
        from .auth import SIGNIN_LINK_S

        token = c.issue_token(tx, user_id, "signin", SIGNIN_LINK_S)
        c.audit(tx, uid(request), "add_ta", {"name": name})
    return page(request, "links.html", title="Sign-in links", links=_links(request, [(name, token)]), flash=f"{name} is a TA")
