"""Admin sessions: signed, expiring cookies, CSRF tokens, and the login rate limit.

Sessions live in the cookie itself (HMAC-signed with a server secret from the store), so every
worker process and host sharing the store accepts them with no session table. A session names
the password hash it was opened under: setting a new password ends every session at once.
CSRF tokens are an HMAC of the session id (or, before login, of a random pre-login cookie), so
a forged form from another site cannot carry one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass

#: The store's name for the server secret that signs admin cookies.
SESSION_SECRET = "admin-session"
COOKIE = "shim_admin"
#: Before login: a random nonce whose HMAC is the login form's CSRF token.
PRE_COOKIE = "shim_admin_pre"


@dataclass(frozen=True)
class Session:
    sid: str
    issued_at: float
    expires_at: float
    password_tag: str


def _sign(secret: bytes, text: str) -> str:
    mac = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def open_session(secret: bytes, password_tag: str, now: float, lifetime: float) -> str:
    """A new session's cookie value."""
    body = f"{secrets.token_urlsafe(16)}|{now:.0f}|{now + lifetime:.0f}|{password_tag}"
    return f"{body}|{_sign(secret, body)}"


def read_session(secret: bytes, value: str | None, password_tag: str, now: float) -> Session | None:
    """The session in a cookie value, or None if it is forged, expired or for an old password."""
    if not value:
        return None
    body, _, mac = value.rpartition("|")
    if not hmac.compare_digest(mac, _sign(secret, body)):
        return None
    try:
        sid, issued, expires, tag = body.split("|")
        session = Session(sid, float(issued), float(expires), tag)
    except ValueError:
        return None
    if session.expires_at <= now or not hmac.compare_digest(tag, password_tag):
        return None
    return session


def csrf_token(secret: bytes, anchor: str) -> str:
    """The CSRF token for a session id or a pre-login nonce."""
    return _sign(secret, "csrf|" + anchor)


def csrf_ok(secret: bytes, anchor: str | None, given: str | None) -> bool:
    return bool(anchor and given) and hmac.compare_digest(
        csrf_token(secret, anchor or ""), given or ""
    )


def cookie_header(
    name: str, value: str, *, max_age: int | None, secure: bool, path: str = "/admin"
) -> bytes:
    """A Set-Cookie value: always HttpOnly and SameSite=Strict, Secure over HTTPS."""
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode()


class LoginLimiter:
    """At most ``attempts`` failed logins per ``window`` seconds from one address, and
    ``10 * attempts`` from all addresses together (a guesser with many addresses)."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> deque[float]:
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def allowed(self, source: str, now: float) -> bool:
        mine = self._trim(self._failures.get(source, deque()), now)
        return len(mine) < self.attempts and len(self._trim(self._all, now)) < 10 * self.attempts

    def failed(self, source: str, now: float) -> None:
        if len(self._failures) > 10_000:  # many addresses: forget the quiet ones
            self._failures = {k: v for k, v in self._failures.items() if self._trim(v, now)}
        self._failures.setdefault(source, deque()).append(now)
        self._all.append(now)

    def succeeded(self, source: str) -> None:
        self._failures.pop(source, None)
