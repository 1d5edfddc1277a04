"""Who may do what: accounts, sign-in links, passwords, sessions, CSRF, and the one route table.

    request ──► SessionMiddleware (signed cookie: a session id, csrf) or `Authorization: Bearer TOKEN`
            ──► the session id's row in `sessions` (server-side: sign-out, a password change or
                deactivation delete it, and the cookie is worth nothing from then on)
            ──► guard(route name): RULES[name] = (roles, ownership rule)  ── 401/403 here, nowhere else
            ──► CSRF: every POST from a cookie session carries the session's token (form or header)
            ──► the view

Tokens (sign-in links, CLI tokens, session ids) are random, shown once, and stored as sha256
hashes. Passwords are argon2id hashes. Failed password sign-ins back off exponentially per
account and per (account, address), and are limited per address (SignInThrottle).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

__all__ = ["Rule", "RULES", "ROLES", "hash_token", "new_token", "RateLimiter", "SignInThrottle", "hash_password", "verify_password"]

ROLES = ("anonymous", "student", "ta", "instructor")
STAFF = frozenset({"ta", "instructor"})
SIGNIN_LINK_S = 14 * 24 * 3600  # a student's sign-in link works for two weeks
SETUP_LINK_S = 24 * 3600  # the instructor's first-start link: one day, once
SESSION_S = 14 * 24 * 3600  # a session lasts two weeks at most (signing out ends it at once)
SESSION_IDLE_S = 3 * 24 * 3600  # ... and ends after three days unused (a shared or lost laptop)
SEEN_EVERY_S = 600  # a session's last use is written at most this often (not one write per request)


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
    "revoke_token": SIGNED_IN,  # the view only finds the caller's own tokens
    "assignment": SIGNED_IN,
    "api_assignment": SIGNED_IN,
    "submit": SIGNED_IN,
    "confirm_upload": SIGNED_IN,  # the view only finds the caller's own pending upload
    "api_submit": SIGNED_IN,
    "submission": STUDENT_OWN,
    "submission_status": STUDENT_OWN,
    "submission_report": STUDENT_OWN,
    "staff": STAFF_ONLY,
    "staff_queue": STAFF_ONLY,
    "staff_assignment": STAFF_ONLY,
    "staff_check": STAFF_ONLY,
    "staff_student": STAFF_ONLY,
    "staff_people": STAFF_ONLY,
    "staff_not_submitted": STAFF_ONLY,
    "staff_override": STAFF_ONLY,
    "staff_clear_override": STAFF_ONLY,
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
    "set_active": INSTRUCTOR,
    "new_link": INSTRUCTOR,  # a sign-in link is a way into the account: the instructor's only
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
    """At most `limit` events per key within `window` seconds (in this process); keys without
    recent events are dropped, so memory follows the recent traffic."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.events: dict[str, deque] = {}
        self.lock = threading.Lock()

    def _trim(self, key: str, now: float) -> int:
        q = self.events.get(key)
        if q is None:
            return 0
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self.events[key]
        return len(q)

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self.lock:
            return any(self._trim(k, now) >= self.limit for k in keys)

    def hit(self, *keys: str) -> None:
        now = time.monotonic()
        with self.lock:
            for k in keys:
                self._trim(k, now)
                self.events.setdefault(k, deque()).append(now)


class SignInThrottle:
    """Failed password sign-ins, remembered in this process (see the module docstring):

        (account, address)  exponential back-off after PAIR_FREE failures: 1 s, 2 s, 4 s ... 15 min
        account             the same after ACCOUNT_FREE failures from anywhere - waived for a browser
                            that signed in to this account before (`known`: a signed device cookie),
                            so a stranger cannot lock the instructor out of their own browser
        address             at most ADDRESS_LIMIT failures in ADDRESS_WINDOW: a lab of 100 students
                            behind one NAT, each mistyping twice, stays far below it

    Failures are forgotten FORGET_S after the last one; a success clears its (account, address).
    A valid sign-in link is never throttled (the view does not ask); a bad one counts against its
    address only. Memory is bounded: at most MAX_KEYS entries, the oldest dropped first.
    """

    PAIR_FREE, ACCOUNT_FREE = 3, 10
    MAX_DELAY, FORGET_S = 15 * 60.0, 3600.0
    ADDRESS_LIMIT, ADDRESS_WINDOW = 300, 15 * 60.0
    MAX_KEYS = 100_000

    def __init__(self):
        self.failures: dict[str, tuple[int, float]] = {}  # key -> (count, time of the last failure)
        self.addresses = RateLimiter(self.ADDRESS_LIMIT, self.ADDRESS_WINDOW)
        self.lock = threading.Lock()

    @classmethod
    def delay(cls, count: int, free: int) -> float:
        return 0.0 if count < free else min(cls.MAX_DELAY, 2.0 ** (count - free))

    def _count(self, key: str, now: float) -> tuple[int, float]:
        count, last = self.failures.get(key, (0, 0.0))
        return (0, 0.0) if now - last > self.FORGET_S else (count, last)

    def wait(self, account: str, address: str, known: bool = False) -> float:
        """Seconds before this account may try a password from this address (0: now)."""
        now = time.monotonic()
        if self.addresses.blocked(f"ip:{address}"):
            return self.ADDRESS_WINDOW
        with self.lock:
            pair = self._count(f"pair:{account}|{address}", now)
            whole = (0, 0.0) if known else self._count(f"acct:{account}", now)
        return max(0.0, pair[1] + self.delay(pair[0], self.PAIR_FREE) - now, whole[1] + self.delay(whole[0], self.ACCOUNT_FREE) - now)

    def address_blocked(self, address: str) -> bool:
        return self.addresses.blocked(f"ip:{address}")

    def fail(self, account: str | None, address: str) -> None:
        now = time.monotonic()
        self.addresses.hit(f"ip:{address}")
        if account is None:
            return
        with self.lock:
            for key in (f"pair:{account}|{address}", f"acct:{account}"):
                count, _ = self._count(key, now)
                self.failures.pop(key, None)  # re-inserted last: the dict stays in order of last failure
                self.failures[key] = (count + 1, now)
            while len(self.failures) > self.MAX_KEYS:
                self.failures.pop(next(iter(self.failures)))

    def succeed(self, account: str, address: str) -> None:
        with self.lock:
            self.failures.pop(f"pair:{account}|{address}", None)
