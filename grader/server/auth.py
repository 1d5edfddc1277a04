"""Who may do what: accounts, sign-in links, passwords, sessions, CSRF, and the one route table.

    request ──► SessionMiddleware (signed cookie: user id, csrf) or `Authorization: Bearer TOKEN`
            ──► guard(route name): RULES[name] = (roles, ownership rule)  ── 401/403 here, nowhere else
            ──► CSRF: every POST from a cookie session carries the session's token (form or header)
            ──► the view

Tokens (sign-in links, CLI tokens) are random, shown once, and stored as sha256 hashes.
Passwords are argon2id hashes. Failed sign-ins are rate-limited per client and per name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

__all__ = ["Rule", "RULES", "ROLES", "hash_token", "new_token", "RateLimiter", "hash_password", "verify_password"]

ROLES = ("anonymous", "student", "ta", "instructor")
STAFF = frozenset({"ta", "instructor"})
SIGNIN_LINK_S = 14 * 24 * 3600  # a student's sign-in link works for two weeks
SETUP_LINK_S = 24 * 3600  # the instructor's first-start link: one day, once


@dataclass(frozen=True)
class Rule:
    """Roles allowed on a route; `owner` names the path parameter whose object a student must own
    (staff pass it); `anyone` routes are open (sign-in pages)."""

    roles: frozenset[str]
    owner: str | None = None  # "submission" -> the {sid} path parameter is a submission the student owns


ANYONE = Rule(frozenset(ROLES))
SIGNED_IN = Rule(frozenset({"student", "ta", "instructor"}))
STUDENT_OWN = Rule(frozenset({"student", "ta", "instructor"}), owner="submission")
STAFF_ONLY = Rule(STAFF)
INSTRUCTOR = Rule(frozenset({"instructor"}))

# Every route of the app, by name. app.build_app refuses a route without a rule, and
# tests/test_server_authz.py walks every route as each role against this table.
RULES: dict[str, Rule] = {
    "home": ANYONE,
    "signin_page": ANYONE,
    "signin_password": ANYONE,
    "signin_link": ANYONE,
    "health": ANYONE,
    "signout": SIGNED_IN,
    "me": SIGNED_IN,
    "password": SIGNED_IN,
    "cli_token": SIGNED_IN,
    "assignment": SIGNED_IN,
    "submit": SIGNED_IN,
    "api_submit": SIGNED_IN,
    "submission": STUDENT_OWN,
    "submission_status": STUDENT_OWN,
    "submission_report": STUDENT_OWN,
    "staff": STAFF_ONLY,
    "staff_queue": STAFF_ONLY,
    "staff_assignment": STAFF_ONLY,
    "staff_check": STAFF_ONLY,
    "staff_student": STAFF_ONLY,
    "staff_override": STAFF_ONLY,
    "staff_regrade": STAFF_ONLY,
    "staff_regrade_all": STAFF_ONLY,
    "staff_extension": STAFF_ONLY,
    "staff_export": STAFF_ONLY,
    "staff_manual": STAFF_ONLY,
    "staff_manual_grade": STAFF_ONLY,
    "create_assignment": INSTRUCTOR,
    "publish": INSTRUCTOR,
    "assignment_settings": INSTRUCTOR,
    "roster": INSTRUCTOR,
    "add_ta": INSTRUCTOR,
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import Argon2Error, InvalidHashError

    if not stored:
        return False
    try:
        return PasswordHasher().verify(stored, password)
    except (Argon2Error, InvalidHashError):
        return False


class RateLimiter:
    """At most `limit` events per key within `window` seconds (in this process)."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.events: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque:
        q = self.events[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self.lock:
            return any(len(self._trim(k, now)) >= self.limit for k in keys)

    def hit(self, *keys: str) -> None:
        now = time.monotonic()
        with self.lock:
            for k in keys:
                self._trim(k, now).append(now)
