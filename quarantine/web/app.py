"""The admin web UI: server-rendered pages (Starlette + Jinja2), no JavaScript.

Pages: login, the list (search, filters, pagination, bulk actions), the detail page (headers,
reasons, findings, attachments with detected types, a safe text preview, history, release /
request / delete forms), the approval queue and the audit log. Japanese by default, English
by user setting, cookie or ``Accept-Language``.

Rules every route keeps (``tests/quarantine/test_web.py`` enumerates the routes to check):

- nothing but ``/login``, ``/healthz`` and ``/static/*`` answers without a session;
- an item outside the user's tenant scope is 404, exactly like an item that does not exist;
- every POST needs the session's CSRF token (and a same-origin ``Origin`` when sent);
- untrusted text (headers, file names, body text) passes through ``replace_control_chars``
  and Jinja's autoescape, and is never rendered as HTML; there are no links built from it;
- database calls run in a thread, never on the event loop the SMTP gateway shares.

Not here: the JSON API (``quarantine/web/api.py``), starting the server (``service.py``).
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway import findings
from gateway.config import Config
from gateway.delivery import Downstream
from gateway.errors import MugaikaError
from gateway.logs import replace_control_chars
from gateway.notice import local_time
from quarantine import summary as summary_module
from quarantine import words
from quarantine.errors import ItemNotFound, PermissionDenied, QuarantineError, UserError
from quarantine.pages import PreviewRenderer
from quarantine.release import (
    check_reason,
    check_release,
    check_target,
    decide_request,
    planned_recipients,
    release,
    request_release,
)
from quarantine.sql import Item, ItemQuery, SqlStore
from quarantine.users import Actor, Session, UserStore
from quarantine.web import i18n
from quarantine.web.security import (
    SECURITY_HEADERS,
    LoginLimiter,
    client_address,
    get_cookie,
    is_loopback,
    same_origin,
    set_cookie,
    tokens_match,
)

HERE = Path(__file__).parent
SESSION_COOKIE = "mugaika_session"
LOGIN_COOKIE = "mugaika_login"
LANGUAGE_COOKIE = "mugaika_lang"
STATUSES = ("held", "releasing", "released", "deleted", "expired")
Handler = Callable[[Request], Awaitable[Response]]


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _display(value: Any, keep_newlines: bool = False) -> str:
    return replace_control_chars("" if value is None else str(value), keep_newlines)


def _size(value: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return f"{value:.1f} GiB"


def _tiles(counts: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """The list page's counters: held messages and retained originals apart (the first is
    the ``mugaika_quarantine_items`` metric), then the other statuses over both kinds."""
    tiles = [
        {
            "key": "tile.held",
            "css": "held",
            "n": counts.get(("quarantined", "held"), 0),
            "filters": {"status": "held", "kind": "quarantined"},
        },
        {
            "key": "tile.retained",
            "css": "retained",
            "n": counts.get(("retained", "held"), 0),
            "filters": {"status": "held", "kind": "retained"},
        },
    ]
    for status in STATUSES[1:]:
        tiles.append(
            {
                "key": f"status.{status}",
                "css": status,
                "n": sum(n for (_kind, s), n in counts.items() if s == status),
                "filters": {"status": status},
            }
        )
    for tile in tiles:
        filters = tile["filters"]
        assert isinstance(filters, dict)
        tile["href"] = "/items?" + urllib.parse.urlencode(filters)
    return tiles


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) < 7 else 0


def _details(value: dict[str, Any]) -> str:
    """Audit details as ``key: value`` pairs, Japanese kept readable (no \\u escapes)."""
    import json

    parts = []
    for key, item in value.items():
        if item in (None, [], {}, False, ""):
            continue
        text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        parts.append(f"{key}: {text}")
    return " · ".join(parts)


class AdminApp:
    """State shared by the routes: configuration, store, users, templates, rate limits."""

    def __init__(self, config: Config, store: SqlStore, downstream: Downstream) -> None:
        self.config = config
        self.store = store
        self.downstream = downstream
        self.users = UserStore(store.engine)
        admin = config.admin
        self.limiter = LoginLimiter(admin.login_attempts, admin.login_window_seconds)
        self.idle = datetime.timedelta(minutes=admin.session_idle_minutes)
        self.max_age = datetime.timedelta(hours=admin.session_max_hours)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["display"] = _display
        self.env.filters["size"] = _size
        # Stored in UTC, shown in the configured zone with its name (issue 16: "+0000").
        zone = config.zone
        self.env.filters["when"] = lambda value: "" if value is None else local_time(value, zone)
        self.env.filters["when_s"] = lambda value: (
            "" if value is None else local_time(value, zone, seconds=True)
        )
        self.get_routes: list[BaseRoute] = []
        # Page images of sanitized copies, rendered in a worker process of their own.
        self.renderer = PreviewRenderer()
        self.env.filters["details"] = _details
        # What a finding or reason code means, in the page's language (gateway/findings.py).
        self.env.globals["finding_words"] = findings.words
        self.env.globals["finding_severity"] = lambda code: findings.severity(code).label

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def cookie_mode(self) -> str:
        return self.config.admin.cookie_secure

    @staticmethod
    def peer(request: Request) -> str:
        """The TCP peer (uvicorn runs with ``proxy_headers=False``, so never a header)."""
        return request.client.host if request.client else ""

    def remote(self, request: Request) -> str:
        """The client: the peer, or what a trusted proxy says (``client_address``)."""
        return client_address(
            self.peer(request),
            request.headers.getlist("x-forwarded-for"),
            self.config.admin.trusted_proxies,
        )

    def language(self, request: Request, session: Session | None = None) -> str:
        if session is not None and session.user.language in i18n.LANGUAGES:
            return str(session.user.language)
        cookie = request.cookies.get(LANGUAGE_COOKIE)
        if cookie in i18n.LANGUAGES:
            return str(cookie)
        return i18n.negotiate(request.headers.get("accept-language", "")) or (
            self.config.admin.language
        )

    def render(
        self,
        request: Request,
        template: str,
        status_code: int = 200,
        session: Session | None = None,
        **context: Any,
    ) -> HTMLResponse:
        language = self.language(request, session)
        actor = session.user.actor(self.remote(request)) if session else None
        html = self.env.get_template(template).render(
            lang=language,
            t=lambda key, **values: i18n.translate(language, key, **values),
            reason_words=lambda reason: words.reason_words(reason, language),
            finding_words=lambda code: words.finding_words(code, language),
            action_words=lambda action: words.action_words(action, language),
            actor=actor,
            csrf=session.csrf if session else "",
            path=request.url.path,
            # Where the language switch returns to: this page when a GET shows it again,
            # else the page the form was sent from (issue 16: switching language on the
            # error page of a POST sent a GET to the POST route).
            here=self.page_to_return_to(request),
            zone=self.config.time_zone,
            zone_abbr=local_time(datetime.datetime.now(datetime.UTC), self.config.zone).split()[-1],
            policy=self.config.quarantine.release.originals,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def is_page(self, path: str) -> bool:
        """True when ``path`` is a page a GET shows (not a POST-only route)."""
        scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
        return any(route.matches(scope)[0] == Match.FULL for route in self.get_routes)

    def page_to_return_to(self, request: Request) -> str:
        path = request.url.path
        if request.method == "GET" and self.is_page(path):
            return path + (f"?{request.url.query}" if request.url.query else "")
        referer = urllib.parse.urlsplit(request.headers.get("referer", ""))
        if referer.netloc == request.url.netloc and self.is_page(referer.path):
            return referer.path + (f"?{referer.query}" if referer.query else "")
        return "/items"

    def error(
        self, request: Request, status: int, message: str, session: Session | None = None
    ) -> HTMLResponse:
        return self.render(request, "error.html", status, session, status=status, message=message)

    def error_words(self, language: str, exc: QuarantineError) -> str:
        """The error in the user's language: its own words (``key``), else its code's."""
        if exc.key:
            values = {
                name: i18n.translate(language, f"status.{value}") if name == "status" else value
                for name, value in exc.values.items()
            }
            return i18n.translate(language, f"error.{exc.key}", **values)
        return i18n.translate(language, f"error.code.{exc.code}")

    def trusted_proxy(self, request: Request) -> bool:
        import ipaddress

        host = self.peer(request)  # never X-Forwarded-For: a client could name a proxy
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.config.admin.header_auth.trusted_proxies)

    async def session(self, request: Request) -> Session | None:
        session_id = get_cookie(request, self.cookie_mode, SESSION_COOKIE)
        session = None
        if session_id:
            session = await run_in_threadpool(
                self.users.session, session_id, self.idle, self.max_age
            )
        header = self.config.admin.header_auth.header
        if header:
            untrusted_name = request.headers.get(header)
            stale = session is None or session.user.username != untrusted_name
            if untrusted_name and stale and self.trusted_proxy(request):
                session = await self._header_login(request, untrusted_name)
        return session

    async def _header_login(self, request: Request, name: str) -> Session | None:
        from quarantine.errors import UserError

        try:
            user = await run_in_threadpool(self.users.get, name)
        except UserError:
            return None
        if user.disabled:
            return None
        session_id, csrf = await run_in_threadpool(
            self.users.create_session, user, self.remote(request), "header"
        )
        request.state.new_session = session_id
        await run_in_threadpool(
            self.store.audit, user.actor(self.remote(request)), "login", None, None, via="header"
        )
        return Session(user=user, csrf=csrf, via="header")

    def page(
        self, handler: Callable[..., Awaitable[Response]], permission: str = "view"
    ) -> Handler:
        """Wrap a handler: session required, permission, CSRF on POST, errors as pages."""

        async def endpoint(request: Request) -> Response:
            session = await self.session(request)
            if session is None:
                target = urllib.parse.quote(request.url.path)
                return RedirectResponse(f"/login?next={target}", status_code=303)
            actor = session.user.actor(self.remote(request))
            language = self.language(request, session)
            form: Any = None
            if request.method == "POST":
                form = await request.form(max_files=0, max_fields=2000)
                if not same_origin(request) or not tokens_match(session.csrf, form.get("csrf")):
                    return self.error(request, 403, i18n.translate(language, "error.csrf"), session)
            try:
                if not actor.can(permission):
                    raise PermissionDenied("your role may not do this", key="403")
                response = await handler(request, session, actor, form)
            except ItemNotFound:
                response = self.error(request, 404, i18n.translate(language, "error.404"), session)
            except QuarantineError as exc:
                message = self.error_words(language, exc)
                response = self.error(request, exc.http_status, message, session)
            new_session = getattr(request.state, "new_session", None)
            if new_session:
                set_cookie(response, request, self.cookie_mode, SESSION_COOKIE, new_session, None)
            return response

        return endpoint

    # -- login -------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        import secrets

        token = secrets.token_urlsafe(24)
        response = self.render(
            request,
            "login.html",
            login_token=token,
            next=self._next(request.query_params.get("next")),
            insecure=request.url.scheme != "https" and not is_loopback(request.url.hostname),
        )
        set_cookie(response, request, self.cookie_mode, LOGIN_COOKIE, token, 600)
        return response

    @staticmethod
    def _next(value: str | None) -> str:
        # Only local paths: an open redirect after login would help phishing.
        if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
            return value
        return "/items"

    async def login(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        language = self.language(request)
        cookie = get_cookie(request, self.cookie_mode, LOGIN_COOKIE)
        if not same_origin(request) or not tokens_match(cookie, str(form.get("login_token", ""))):
            return self.error(request, 403, i18n.translate(language, "error.csrf"))
        username = str(form.get("username", ""))[:128]
        password = str(form.get("password", ""))[:1024]
        remote = self.remote(request)
        if self.limiter.blocked(username, remote):
            await run_in_threadpool(
                self.store.audit,
                Actor(username or "?", "none", remote=remote),
                "login-throttled",
                None,
                None,
            )
            return self._login_again(request, "login.throttled", 429)
        user = await run_in_threadpool(self.users.authenticate, username, password)
        if user is None:
            self.limiter.failed(username, remote)
            await run_in_threadpool(
                self.store.audit,
                Actor(username or "?", "none", remote=remote),
                "login-failed",
                None,
                None,
            )
            return self._login_again(request, "login.failed", 401)
        self.limiter.succeeded(username, remote)
        session_id, _csrf = await run_in_threadpool(
            self.users.create_session, user, remote, "password"
        )
        await run_in_threadpool(self.store.audit, user.actor(remote), "login", None, None)
        response = RedirectResponse(self._next(str(form.get("next", ""))), status_code=303)
        set_cookie(response, request, self.cookie_mode, SESSION_COOKIE, session_id, None)
        set_cookie(response, request, self.cookie_mode, LOGIN_COOKIE, "", 0)
        return response

    def _login_again(self, request: Request, message: str, status: int) -> Response:
        import secrets

        token = secrets.token_urlsafe(24)
        response = self.render(
            request, "login.html", status, login_token=token, next="/items", message=message
        )
        set_cookie(response, request, self.cookie_mode, LOGIN_COOKIE, token, 600)
        return response

    async def logout(self, request: Request, session: Session, actor: Actor, form: Any) -> Response:
        session_id = get_cookie(request, self.cookie_mode, SESSION_COOKIE)
        if session_id:
            await run_in_threadpool(self.users.end_session, session_id)
        await run_in_threadpool(self.store.audit, actor, "logout", None, None)
        response = RedirectResponse("/login", status_code=303)
        set_cookie(response, request, self.cookie_mode, SESSION_COOKIE, "", 0)
        return response

    async def set_language(
        self, request: Request, session: Session, actor: Actor, form: Any
    ) -> Response:
        language = str(form.get("lang", ""))
        if language not in i18n.LANGUAGES:
            language = self.config.admin.language
        await run_in_threadpool(self.users.set_language, session.user.username, language)
        back = self._next(str(form.get("next", "")))
        if not self.is_page(urllib.parse.urlsplit(back).path):
            back = "/items"  # never redirect a GET to a POST-only route
        response = RedirectResponse(back, status_code=303)
        set_cookie(response, request, self.cookie_mode, LANGUAGE_COOKIE, language, 365 * 86400)
        return response

    # -- pages -------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        ok = await run_in_threadpool(self.store.ping)
        return JSONResponse({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)

    async def home(self, request: Request, session: Session, actor: Actor, form: Any) -> Response:
        return RedirectResponse("/items", status_code=303)

    def query_from(self, params: Any, page_size: int) -> tuple[ItemQuery, dict[str, str], int]:
        status = params.get("status") or ""
        status = status if status in STATUSES else ""
        kind = params.get("kind") or ""
        kind = kind if kind in ("quarantined", "retained") else ""
        days = params.get("days") or ""
        days = days if days in ("1", "7", "30") else ""
        try:
            page = max(1, min(int(params.get("page") or 1), 100_000))
        except ValueError:
            page = 1
        search = (params.get("q") or "").strip()[:200]
        tenant = (params.get("tenant") or "").strip().lower()[:255]
        since = (
            datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=int(days))
            if days
            else None
        )
        query = ItemQuery(
            status=status or None,
            kind=kind or None,
            tenant=tenant or None,
            since=since,
            search=search or None,
            limit=page_size,
            offset=(page - 1) * page_size,
        )
        filters = {"status": status, "kind": kind, "days": days, "q": search, "tenant": tenant}
        return query, filters, page

    async def items(self, request: Request, session: Session, actor: Actor, form: Any) -> Response:
        size = self.config.admin.page_size
        query, filters, page = self.query_from(request.query_params, size)
        result = await run_in_threadpool(self.store.list, query, actor.scope)
        base = {k: v for k, v in filters.items() if v}

        def link(number: int) -> str:
            return "/items?" + urllib.parse.urlencode({**base, "page": str(number)})

        counts = await run_in_threadpool(self.store.kind_status_counts, actor.scope)
        tiles = _tiles(counts)
        pending = len(await run_in_threadpool(self.store.requests, actor.scope, "pending"))
        return self.render(
            request,
            "list.html",
            session=session,
            page=result,
            filters=filters,
            statuses=STATUSES,
            tiles=tiles,
            pending=pending,
            prev_link=link(page - 1) if page > 1 else None,
            next_link=link(page + 1)
            if result.total_capped or result.offset + len(result.items) < result.total
            else None,
            tenants=sorted(actor.domains)
            if actor.scope is not None
            else sorted(self.config.tenants),
            done=request.query_params.get("done"),
            done_ok=_count(request.query_params.get("ok")),
            done_failed=_count(request.query_params.get("failed")),
        )

    async def item(self, request: Request, session: Session, actor: Actor, form: Any) -> Response:
        item_id = request.path_params["item_id"]
        item = await run_in_threadpool(self.store.get, item_id, actor.scope)
        history = await run_in_threadpool(self.store.history, item_id)
        requests = await run_in_threadpool(self.store.requests, actor.scope, None, item_id)
        # The preview the worker computed when the message was held (quarantine.summary):
        # the web process never parses a held message. None once the original is gone.
        parts: list[summary_module.PreviewPart] | None = None
        if item.original_available:
            parts = item.preview if item.preview is not None else []
        audit: list[Any] = []
        if actor.can("audit"):
            audit, _ = await run_in_threadpool(
                lambda: self.store.audit_entries(actor.scope, item_id=item_id, limit=50)
            )
        documents, pages_problem = await self.previews_for(item)
        await run_in_threadpool(self.store.audit, actor, "viewed", item_id, item.summary.tenant)
        policy = self.config.quarantine.release.originals
        return self.render(
            request,
            "detail.html",
            session=session,
            item=item,
            s=item.summary,
            history=history,
            requests=requests,
            parts=parts,
            preview_note=item.preview_note,
            documents=documents,
            pages_problem=pages_problem,
            audit=audit,
            can_release_original=actor.can("release-original") and policy == "single",
            can_release_sanitized=actor.can("release-sanitized") and item.sanitized_available,
            can_request=actor.can("request-original"),
            can_delete=actor.can("delete"),
            can_approve=actor.can("approve"),
            done=request.query_params.get("done"),
            done_to=request.query_params.get("to", ""),
        )

    async def previews_for(self, item: Item) -> tuple[list[dict[str, Any]] | None, str]:
        """The sanitized copy's documents with their page images (cached, else rendered now
        in the preview worker); None when there is no sanitized copy. A failure is a code."""
        sha = item.sanitized_sha256
        if not item.sanitized_available or sha is None:
            return None, ""
        cached = await run_in_threadpool(self.store.preview, sha)
        if cached is not None:
            return cached, ""
        data = await run_in_threadpool(self.store.sanitized, item.id)
        try:
            documents, pages = await self.renderer.render(data)
        except MugaikaError as exc:  # the worker crashed, timed out or broke the protocol
            return [], exc.code
        manifest = [d.to_dict() for d in documents]
        images = [
            [(w, h, png) for (w, h), png in zip(d.sizes, pngs, strict=True)]
            for d, pngs in zip(documents, pages, strict=True)
        ]
        await run_in_threadpool(self.store.put_preview, sha, manifest, images)
        return manifest, ""

    async def page_image(
        self, request: Request, session: Session, actor: Actor, form: Any
    ) -> Response:
        """One rendered page of a sanitized copy's document (only from the cache)."""
        item = await run_in_threadpool(self.store.get, request.path_params["item_id"], actor.scope)
        try:
            document = int(request.query_params.get("doc", ""))
            number = int(request.query_params.get("n", ""))
        except ValueError:
            raise ItemNotFound("no such page", key="not_found") from None
        if not item.sanitized_available or item.sanitized_sha256 is None:
            raise ItemNotFound("no sanitized copy", key="not_found")
        png = await run_in_threadpool(
            self.store.preview_page, item.sanitized_sha256, document, number
        )
        if png is None:
            raise ItemNotFound("no such page", key="not_found")
        return Response(png, media_type="image/png")

    @staticmethod
    def _addresses(form: Any) -> list[str]:
        return [a for a in str(form.get("to", "")).replace(",", " ").split() if a]

    async def release_item(
        self, request: Request, session: Session, actor: Actor, form: Any
    ) -> Response:
        item_id = request.path_params["item_id"]
        target = check_target(str(form.get("target", "")))
        to = self._addresses(form)
        reason = check_reason(str(form.get("reason", "")))
        force = form.get("force") == "1"
        policy = self.config.quarantine.release.originals
        if target == "original" and form.get("confirm") != "yes":
            # An original may carry exactly what the item was held for: say what goes to whom
            # and send only after a second, deliberate submit (no script: the CSP allows none).
            item = await run_in_threadpool(self.store.get, item_id, actor.scope)
            check_release(item, actor, target, policy)
            plans = [(item, planned_recipients(item, actor, to or None))]
            fields = {"target": target, "reason": reason, "to": " ".join(to)}
            fields["force"] = "1" if force else ""
            here = f"/items/{urllib.parse.quote(item_id)}"
            return self._confirm(request, session, f"{here}/release", here, plans, fields)
        result = await release(
            self.store,
            self.downstream,
            item_id,
            actor,
            reason,
            target=target,
            to=to or None,
            force=force,
            policy=policy,
        )
        query = urllib.parse.urlencode({"done": "released", "to": ",".join(result.recipients)})
        return RedirectResponse(f"/items/{urllib.parse.quote(item_id)}?{query}", 303)

    def _confirm(
        self,
        request: Request,
        session: Session,
        action: str,
        cancel: str,
        plans: list[tuple[Item, list[str]]],
        fields: dict[str, str],
        selected: int = 1,
    ) -> Response:
        """The confirmation page: each original, its recipients, and one form to go on."""
        return self.render(
            request,
            "confirm.html",
            session=session,
            action=action,
            cancel=cancel,
            plans=plans,
            fields={k: v for k, v in fields.items() if v},
            bulk=action == "/items/bulk",
            skipped=selected - len(plans),
        )

    async def request_item(
        self, request: Request, session: Session, actor: Actor, form: Any
    ) -> Response:
        item_id = request.path_params["item_id"]
        to = self._addresses(form)
        await run_in_threadpool(
            request_release,
            self.store,
            item_id,
            actor,
            str(form.get("reason", "")),
            to or None,
            str(form.get("target") or "original"),
        )
        return RedirectResponse(f"/items/{urllib.parse.quote(item_id)}?done=requested", 303)

    async def delete_item(
        self, request: Request, session: Session, actor: Actor, form: Any
    ) -> Response:
        item_id = request.path_params["item_id"]
        reason = check_reason(str(form.get("reason", "")))
        item = await run_in_threadpool(self.store.get, item_id, actor.scope)
        await run_in_threadpool(self.store.delete, item_id, actor, reason, actor.scope)
        await run_in_threadpool(
            self.store.audit, actor, "deleted", item_id, item.summary.tenant, reason=reason
        )
        return RedirectResponse(f"/items/{urllib.parse.quote(item_id)}?done=deleted", 303)

    BULK_ACTIONS = ("release-sanitized", "release-original", "request", "delete")

    async def bulk(self, request: Request, session: Session, actor: Actor, form: Any) -> Response:
        ids = [str(i) for i in form.getlist("ids")][:500]
        action = str(form.get("action", ""))
        if action not in self.BULK_ACTIONS:
            raise UserError(f"unknown action {action[:40]!r}", key="unknown_action")
        reason = check_reason(str(form.get("reason", "")))
        policy = self.config.quarantine.release.originals
        if action == "release-original" and form.get("confirm") != "yes":
            plans = []
            for item_id in ids:
                try:
                    item = await run_in_threadpool(self.store.get, item_id, actor.scope)
                    check_release(item, actor, "original", policy)
                    plans.append((item, planned_recipients(item, actor, None)))
                except QuarantineError:
                    continue  # not shown, not sent: counted as failed when confirmed
            fields = {"action": action, "reason": reason}
            return self._confirm(request, session, "/items/bulk", "/items", plans, fields, len(ids))
        done = failed = 0
        for item_id in ids:
            try:
                if action == "delete":
                    if not actor.can("delete"):
                        raise PermissionDenied("delete", key="role_delete")
                    item = await run_in_threadpool(self.store.get, item_id, actor.scope)
                    await run_in_threadpool(self.store.delete, item_id, actor, reason, actor.scope)
                    await run_in_threadpool(
                        self.store.audit,
                        actor,
                        "deleted",
                        item_id,
                        item.summary.tenant,
                        reason=reason,
                    )
                elif action in ("release-sanitized", "release-original"):
                    await release(
                        self.store,
                        self.downstream,
                        item_id,
                        actor,
                        reason,
                        target=action.removeprefix("release-"),
                        policy=policy,
                    )
                else:
                    await run_in_threadpool(request_release, self.store, item_id, actor, reason)
                done += 1
            except QuarantineError:
                failed += 1
        query = urllib.parse.urlencode({"done": "bulk", "ok": done, "failed": failed})
        return RedirectResponse(f"/items?{query}", status_code=303)

    async def requests_page(
        self, request: Request, session: Session, actor: Actor, form: Any
    ) -> Response:
        pending = await run_in_threadpool(self.store.requests, actor.scope, "pending")
        return self.render(
            request,
            "requests.html",
            session=session,
            requests=pending,
            can_approve=actor.can("approve"),
            done=request.query_params.get("done"),
            done_id=request.query_params.get("id", ""),
        )

    async def decide(self, request: Request, session: Session, actor: Actor, form: Any) -> Response:
        try:
            request_id = int(request.path_params["request_id"])
        except ValueError:
            raise ItemNotFound("no such request", key="not_found") from None
        approve = request.url.path.endswith("/approve")
        await decide_request(
            self.store,
            self.downstream,
            request_id,
            actor,
            approve,
            str(form.get("reason", "")),
            self.config.requests,
        )
        done = "approved" if approve else "refused"
        return RedirectResponse(f"/requests?done={done}&id={request_id}", status_code=303)

    async def audit_page(
        self, request: Request, session: Session, actor: Actor, form: Any
    ) -> Response:
        params = request.query_params
        try:
            page = max(1, min(int(params.get("page") or 1), 100_000))
        except ValueError:
            page = 1
        size = self.config.admin.page_size
        filters = {
            "item": (params.get("item") or "").strip()[:40],
            "actor": (params.get("actor") or "").strip()[:128],
            "action": (params.get("action") or "").strip()[:64],
        }
        entries, total = await run_in_threadpool(
            lambda: self.store.audit_entries(
                actor.scope,
                item_id=filters["item"] or None,
                actor=filters["actor"] or None,
                action=filters["action"] or None,
                limit=size,
                offset=(page - 1) * size,
            )
        )
        base = {k: v for k, v in filters.items() if v}
        return self.render(
            request,
            "audit.html",
            session=session,
            entries=entries,
            total=total,
            filters=filters,
            prev_link=f"/audit?{urllib.parse.urlencode({**base, 'page': page - 1})}"
            if page > 1
            else None,
            next_link=f"/audit?{urllib.parse.urlencode({**base, 'page': page + 1})}"
            if page * size < total
            else None,
        )

    # -- routing -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        page = self.page
        return [
            Route("/login", self.login_form, methods=["GET"], name="login"),
            Route("/login", self.login, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"], name="healthz"),
            Route("/logout", page(self.logout), methods=["POST"]),
            Route("/language", page(self.set_language), methods=["POST"]),
            Route("/", page(self.home), methods=["GET"]),
            Route("/items", page(self.items), methods=["GET"]),
            Route("/items/bulk", page(self.bulk), methods=["POST"]),
            Route("/items/{item_id}", page(self.item), methods=["GET"]),
            Route("/items/{item_id}/page", page(self.page_image), methods=["GET"]),
            Route("/items/{item_id}/release", page(self.release_item), methods=["POST"]),
            Route(
                "/items/{item_id}/request",
                page(self.request_item, "request-original"),
                methods=["POST"],
            ),
            Route("/items/{item_id}/delete", page(self.delete_item, "delete"), methods=["POST"]),
            Route("/requests", page(self.requests_page), methods=["GET"]),
            Route(
                "/requests/{request_id}/approve",
                page(self.decide, "approve"),
                methods=["POST"],
            ),
            Route("/requests/{request_id}/refuse", page(self.decide, "approve"), methods=["POST"]),
            Route("/audit", page(self.audit_page, "audit"), methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


def create_app(config: Config, store: SqlStore, downstream: Downstream) -> Starlette:
    """The whole admin application: UI pages and ``/api/v1``."""
    from quarantine.web.api import api_routes

    admin = AdminApp(config, store, downstream)

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "NOT_FOUND", "detail": "not found"}, 404)
        session = await admin.session(request)
        language = admin.language(request, session)
        return admin.error(request, 404, i18n.translate(language, "error.404"), session)

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "METHOD_NOT_ALLOWED"}, 405)
        # A page in the user's language with a way back, never raw JSON (issue 16).
        session = await admin.session(request)
        language = admin.language(request, session)
        return admin.error(request, 405, i18n.translate(language, "error.405"), session)

    async def server_error(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "INTERNAL_ERROR"}, 500)
        return admin.error(request, 500, i18n.translate(admin.language(request), "error.500"))

    routes = admin.routes()
    admin.get_routes = [r for r in routes if isinstance(r, Route) and "GET" in (r.methods or ())]
    app = Starlette(
        routes=[*routes, *api_routes(admin)],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error},
    )
    app.state.admin = admin
    return app
