"""Security plumbing of the admin web app: headers, cookies, CSRF, login rate limits.

- Every response carries a strict CSP without inline script or style (the UI has no
  JavaScript at all; forms and links do everything), ``frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY`` (clickjacking), ``nosniff``, ``Referrer-Policy: same-origin``
  (item ids never leak to other sites; not ``no-referrer``, under which browsers send
  ``Origin: null`` with every form POST, per the Fetch standard, defeating the Origin check),
  ``Cache-Control: no-store`` (mail content must not
  stay in shared caches), and a restrictive ``Permissions-Policy``.
- Session cookies are HttpOnly, ``SameSite=Strict`` and Secure; the ``__Host-`` prefix pins
  them to this host and path. ``cookie_secure: auto`` drops Secure only for plain http to a
  loopback address, where a browser could not send it back otherwise.
- CSRF: a per-session synchronizer token in every form, compared in constant time, plus an
  Origin check when the browser sends one (OWASP CSRF cheat sheet). The login form uses a
  double-submit cookie, because there is no session yet (login CSRF).
- Login attempts are limited per user name and per client address in a sliding window
  (per process; each node counts its own).
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections import defaultdict, deque

from starlette.requests import Request
from starlette.responses import Response

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_secure(request: Request, mode: str) -> bool:
    if mode == "always" or request.url.scheme == "https":
        return True
    return not is_loopback(request.url.hostname)


def cookie_name(base: str, secure: bool) -> str:
    # RFC 6265bis section 4.1.3.2: __Host- cookies must be Secure, Path=/, no Domain.
    return f"__Host-{base}" if secure else base


def set_cookie(
    response: Response, request: Request, mode: str, base: str, value: str, max_age: int | None
) -> None:
    secure = cookie_secure(request, mode)
    response.set_cookie(
        cookie_name(base, secure),
        value,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def get_cookie(request: Request, mode: str, base: str) -> str | None:
    return request.cookies.get(cookie_name(base, cookie_secure(request, mode)))


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    expected = f"{request.url.scheme}://{request.url.netloc}"
    return origin == expected


def tokens_match(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and secrets.compare_digest(expected, given)  # type: ignore[arg-type]


class LoginLimiter:
    """At most ``attempts`` failures per key within ``window`` seconds."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._trim(k, now)) >= self.attempts for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._trim(key, now).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spraying attack
                self._failures.clear()

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
