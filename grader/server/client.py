"""`learn submit --server URL ASSIGNMENT NOTEBOOK...`: upload to a course server and wait for the grade.

multipart POST /api/submit/ASSIGNMENT (Authorization: Bearer TOKEN)  ──► {"id", "status_url"}
GET status_url every second until graded (or failed, or --no-wait)   ──► score, report URL
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import LearnError

__all__ = ["submit", "TOKEN_ENV"]

TOKEN_ENV = "LEARN_TOKEN"


def _multipart(paths: list[Path]) -> tuple[bytes, str]:
    boundary = f"learn-{secrets.token_hex(12)}"
    parts = []
    for path in paths:
        name = path.name.replace('"', "")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")  # fmt: skip
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _call(request: urllib.request.Request, timeout: float = 60) -> dict:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            message = exc.reason
        if exc.code == 401:
            message = "the server did not accept the token (make one on your 'My work' page, pass --token or set LEARN_TOKEN)"
        raise LearnError(f"the server refused the submission ({exc.code}): {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LearnError(f"cannot reach the course server: {exc}") from None


def submit(server: str, assignment: str, notebooks: list[Path], token: str, *, wait: bool = True, timeout: float = 1800,
           echo=print) -> dict:  # fmt: skip
    """Submit and (by default) wait for the grade. Returns the last status."""
    if not token:
        raise LearnError(f"no token: pass --token or set {TOKEN_ENV} (make one on your 'My work' page of the course server)")
    for path in notebooks:
        if not path.is_file():
            raise LearnError(f"{path}: no such file")
    base = server.rstrip("/")
    body, content_type = _multipart(notebooks)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type, "Accept": "application/json"}
    made = _call(urllib.request.Request(f"{base}/api/submit/{assignment}", data=body, headers=headers, method="POST"))
    echo(f"submitted as #{made['id']}: {base}{made['url']}")
    status = {"state": "queued", **made}
    deadline = time.monotonic() + timeout
    while wait and status.get("state") not in ("graded", "failed") and time.monotonic() < deadline:
        time.sleep(1)
        status = _call(urllib.request.Request(f"{base}{made['status_url']}", headers={"Authorization": f"Bearer {token}",
                                                                                     "Accept": "application/json"}))  # fmt: skip
    if status.get("state") == "graded":
        echo(f"graded: {status['final']:g}/{status['max_points']:g} points - feedback: {base}{status['report_url']}")
    elif status.get("state") == "failed":
        echo(f"grading failed (not your fault; staff can regrade it): {status.get('error')}")
    return status
