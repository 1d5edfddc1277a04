"""`learn submit --server URL ASSIGNMENT NOTEBOOK...`: upload to a course server and wait for the grade.

GET /api/a/ASSIGNMENT (Authorization: Bearer TOKEN)   ──► the notebooks, the limits, the quota:
                                                          refused here, with the server's figures,
                                                          before anything is sent
multipart POST /api/submit/ASSIGNMENT                 ──► {"id", "status_url"}, or the server's reason
                                                          (413 too large, 409 notebooks missing:
                                                          --partial grades them from your latest copy)
GET status_url every second until graded (or failed, or --no-wait)   ──► grade, report URL
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import LearnError
from .uploads import size_text

__all__ = ["submit", "TOKEN_ENV"]

TOKEN_ENV = "LEARN_TOKEN"


def _multipart(paths: list[Path], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = f"learn-{secrets.token_hex(12)}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    for path in paths:
        name = path.name.replace('"', "")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")  # fmt: skip
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Refused(LearnError):
    """The server answered with an error: its status and reason."""

    def __init__(self, status: int, message: str, body: dict):
        super().__init__(f"the server refused the submission ({status}): {message}")
        self.status, self.body = status, body


def _call(request: urllib.request.Request, timeout: float = 60, during: str = "") -> dict:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
            message = body.get("error") or exc.reason
        except ValueError:
            body, message = {}, exc.reason
        if exc.code == 401:
            message = "the server did not accept the token (make one on your 'My work' page, pass --token or set LEARN_TOKEN)"
        raise Refused(exc.code, message, body) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if during and isinstance(reason, BrokenPipeError | ConnectionResetError):
            raise LearnError(f"the server closed the connection {during} ({reason}): it may have refused the upload") from None
        raise LearnError(f"cannot reach the course server: {reason}") from None


def _grade_line(status: dict) -> str:
    line = f"graded: {status['final']:g}/{status.get('possible') or status['max_points']:g} points"
    extra = []
    if status.get("override"):
        extra.append(f"set by staff: {status['override']['reason']}")
    if status.get("late_penalty"):
        extra.append(f"late: -{status['late_penalty']:g}% of the checks' points")
    if status.get("manual_pending"):
        extra.append(f"{status['manual_pending']:g} points still to be graded by hand")
    return line + (f" ({'; '.join(extra)})" if extra else "")


def _preflight(base: str, assignment: str, notebooks: list[Path], headers: dict) -> dict:
    """The assignment's notebooks and the server's limits; refuses what the server would."""
    info = _call(urllib.request.Request(f"{base}/api/a/{urllib.parse.quote(assignment)}", headers=headers))
    total = sum(p.stat().st_size for p in notebooks)
    if total > info["max_bytes"]:
        raise LearnError(f"the server takes at most {size_text(info['max_bytes'])} per submission (all files together); "
                         f"these files are {size_text(total)}: submit the notebooks without their outputs, or fewer files")  # fmt: skip
    if len(notebooks) > info["max_notebooks"]:
        raise LearnError(
            f"the server takes at most {info['max_notebooks']} files per submission, not {len(notebooks)}: submit a zip of them"
        )
    if info["used_bytes"] + total > info["quota_bytes"]:
        raise LearnError(f"your submissions keep {size_text(info['used_bytes'])} of your {size_text(info['quota_bytes'])} quota on the "
                         f"server; these files need {size_text(total)}: ask the course staff")  # fmt: skip
    return info


def submit(server: str, assignment: str, notebooks: list[Path], token: str, *, wait: bool = True, timeout: float = 1800,
           partial: bool = False, echo=print) -> dict:  # fmt: skip
    """Submit and (by default) wait for the grade. Returns the last status. An upload lacking some
    of the assignment's notebooks is refused (saying which, and where each would come from)
    unless `partial`: then each is graded from the student's latest copy on the server."""
    if not token:
        raise LearnError(f"no token: pass --token or set {TOKEN_ENV} (make one on your 'My work' page of the course server)")
    for path in notebooks:
        if not path.is_file():
            raise LearnError(f"{path}: no such file")
    base = server.rstrip("/")
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    info = _preflight(base, assignment, notebooks, auth)
    body, content_type = _multipart(notebooks, {"partial": "1"} if partial else {})
    request = urllib.request.Request(f"{base}/api/submit/{urllib.parse.quote(assignment)}", data=body,
                                     headers={**auth, "Content-Type": content_type}, method="POST")  # fmt: skip
    try:
        made = _call(request, during=f"during the upload of {size_text(len(body))} (its limit is {size_text(info['max_bytes'])})")
    except Refused as exc:
        if exc.status == 409 and exc.body.get("missing"):
            raise LearnError(f"{exc.body['error'].split(': submit again')[0]}.\nSubmit all of them, or add --partial to submit "
                             "anyway.") from None  # fmt: skip
        raise
    echo(f"submitted as #{made['id']}: {base}{made['url']}")
    status = {"state": "queued", **made}
    deadline = time.monotonic() + timeout
    while wait and status.get("state") not in ("graded", "failed") and time.monotonic() < deadline:
        time.sleep(1)
        status = _call(urllib.request.Request(f"{base}{made['status_url']}", headers=auth))
    if status.get("state") == "graded":
        echo(f"{_grade_line(status)} - feedback: {base}{status['report_url']}")
    elif status.get("state") == "failed":
        echo(f"grading failed (not your fault; staff can regrade it): {status.get('error')}")
    return status
