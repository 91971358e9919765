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
- Login attempts are limited per (user name, client address) in a sliding window, so an
  attacker locks out only their own pair, never the same user at another address nor other
  users (issue 11: behind a proxy, the old per-name and per-address keys let one attacker lock
  out every admin). A client failing for ``SPRAY_FACTOR`` times as many attempts over any
  names is blocked as a whole (that client only). Per process; each node counts its own.
- The client address is the TCP peer, or, when the peer is one of ``admin.trusted_proxies``,
  the rightmost ``X-Forwarded-For`` entry that is not itself a trusted proxy
  (``client_address``): entries to the left of it were written by the client and prove
  nothing.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence

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
    return bool(expected) and bool(given) and secrets.compare_digest(expected or "", given or "")


Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
MAX_FORWARDED_HOPS = 20


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Networks) -> bool:
    return any(address in network for network in proxies)


def client_address(peer: str, forwarded_for: Sequence[str], proxies: Networks) -> str:
    """The client behind ``peer`` (see module docstring); ``peer`` itself when it is not a
    trusted proxy, when there is no header, or when the header is malformed."""
    address = _ip(peer)
    if address is None or not proxies or not _trusted(address, proxies):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")][-MAX_FORWARDED_HOPS:]
    client = peer
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break  # garbage: keep the last address a trusted proxy vouched for
        client = str(address)
        if not _trusted(address, proxies):
            break
    return client


SPRAY_FACTOR = 10


class LoginLimiter:
    """At most ``attempts`` failures per (name, client) within ``window`` seconds, and at
    most ``attempts * SPRAY_FACTOR`` per client over all names."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, client: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("pair", f"{name.lower()}\0{client}"), ("client", client)

    def _trim(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def blocked(self, name: str, client: str) -> bool:
        pair, whole = self._keys(name, client)
        now = time.monotonic()
        with self._lock:
            return (
                len(self._trim(pair, now)) >= self.attempts
                or len(self._trim(whole, now)) >= self.attempts * SPRAY_FACTOR
            )

    def failed(self, name: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in self._keys(name, client):
                self._trim(key, now).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spraying attack
                self._failures.clear()

    def succeeded(self, name: str, client: str) -> None:
        # Only the pair: a valid login of one account must not clear a client's spraying.
        with self._lock:
            self._failures.pop(self._keys(name, client)[0], None)
