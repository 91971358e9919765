"""The admin web UI and API over real HTTP (uvicorn on loopback) with a real SMTP sink.

Route coverage is enumerated from the application itself: a route added later that is not
classified here fails ``test_every_route_is_classified``, so it cannot escape the
authentication and tenant-isolation checks below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests
from starlette.routing import Mount, Route

from quarantine.users import PERMISSIONS, UserStore
from quarantine.web import i18n
from tests.quarantine.conftest import RunningAdmin, hold_request

PASSWORD = "correct horse battery"
CITY = "city.example.lg.jp"
TOWN = "town.example.lg.jp"

PUBLIC = {("/login", "GET"), ("/login", "POST"), ("/healthz", "GET")}
# Routes naming one item or request: must be 404 for another tenant's.
ITEM_ROUTES = {
    ("/items/{item_id}", "GET"),
    ("/items/{item_id}/page", "GET"),
    ("/items/{item_id}/release", "POST"),
    ("/items/{item_id}/request", "POST"),
    ("/items/{item_id}/delete", "POST"),
    ("/requests/{request_id}/approve", "POST"),
    ("/requests/{request_id}/refuse", "POST"),
    ("/api/v1/items/{item_id}", "GET"),
    ("/api/v1/items/{item_id}", "DELETE"),
    ("/api/v1/items/{item_id}/release", "POST"),
    ("/api/v1/items/{item_id}/requests", "POST"),
    ("/api/v1/requests/{request_id}/approve", "POST"),
    ("/api/v1/requests/{request_id}/refuse", "POST"),
}
# Routes listing items, requests or audit entries: must never show another tenant's.
LIST_ROUTES = {
    ("/items", "GET"),
    ("/requests", "GET"),
    ("/audit", "GET"),
    ("/api/v1/items", "GET"),
    ("/api/v1/requests", "GET"),
    ("/api/v1/audit", "GET"),
}
# Routes carrying no tenant data of their own (bulk is checked separately).
OTHER_ROUTES = {
    ("/", "GET"),
    ("/logout", "POST"),
    ("/language", "POST"),
    ("/items/bulk", "POST"),
    ("/api/v1/openapi.json", "GET"),
}


def app_routes(admin: RunningAdmin) -> set[tuple[str, str]]:
    found = set()
    for route in admin.app.routes:
        if isinstance(route, Mount):
            assert route.path == "/static", f"unexpected mount {route.path}"
            continue
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((route.path, method))
    return found


def add_user(admin: RunningAdmin, name: str, role: str, domains: list[str] | None = None) -> None:
    UserStore(admin.store.engine).add(name, role, domains or [], PASSWORD)


def login(admin: RunningAdmin, name: str, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{admin.url}/login", timeout=10)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token, page.text
    response = session.post(
        f"{admin.url}/login",
        data={"login_token": token.group(1), "username": name, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    session.last_login = response  # type: ignore[attr-defined]
    return session


def csrf(session: requests.Session, admin: RunningAdmin, path: str = "/items") -> str:
    page = session.get(f"{admin.url}{path}", timeout=10)
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


def token(admin: RunningAdmin, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {UserStore(admin.store.engine).create_token(name, 't')}"}


def route_permission(path: str, method: str) -> str:
    if path.endswith(("/approve", "/refuse")):
        return "approve"
    if path.endswith("/delete") or method == "DELETE":
        return "delete"
    if path.endswith(("/request", "/requests")) and method == "POST":
        return "request-original"
    return "view"


def fill(path: str, item_id: str, request_id: int) -> str:
    return path.replace("{item_id}", item_id).replace("{request_id}", str(request_id))


# -- static checks ---------------------------------------------------------------------------


def test_both_languages_have_the_same_keys_and_templates_use_only_known_ones() -> None:
    ja, en = i18n.messages("ja"), i18n.messages("en")
    assert set(ja) == set(en)
    templates = Path(i18n.__file__).parent.parent / "templates"
    used = set()
    for template in templates.glob("*.html"):
        used |= set(
            re.findall(r'(?<![\w.])t\("([a-z_.0-9]+)"', template.read_text(encoding="utf-8"))
        )
    dynamic = {k for k in used if k.endswith(".")}
    assert used - dynamic - set(ja) == set()
    app_py = (templates.parent / "app.py").read_text(encoding="utf-8")
    for key in re.findall(r'translate\(language, "([a-z_.0-9]+)"\)', app_py):
        assert key in ja


def test_accept_language_negotiation() -> None:
    assert i18n.negotiate("en-US,en;q=0.9,ja;q=0.8") == "en"
    assert i18n.negotiate("fr, ja;q=0.5, en;q=0.4") == "ja"
    assert i18n.negotiate("fr") is None


# -- authentication --------------------------------------------------------------------------


def test_every_route_is_classified(admin: RunningAdmin) -> None:
    assert app_routes(admin) == PUBLIC | ITEM_ROUTES | LIST_ROUTES | OTHER_ROUTES


def test_nothing_but_login_and_health_answers_without_credentials(admin: RunningAdmin) -> None:
    for path, method in sorted(app_routes(admin) - PUBLIC):
        url = admin.url + fill(path, "20260101-AAAAAAAA", 1)
        response = requests.request(method, url, allow_redirects=False, timeout=10)
        if path.startswith("/api/"):
            assert response.status_code == 401, (method, path)
            assert response.json()["error"] == "UNAUTHENTICATED"
        else:
            assert response.status_code == 303, (method, path)
            assert response.headers["location"].startswith("/login")
    assert requests.get(f"{admin.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{admin.url}/static/style.css", timeout=10).status_code == 200


def test_login_logout_and_strict_headers(admin: RunningAdmin) -> None:
    add_user(admin, "alice", "superadmin")
    session = login(admin, "alice")
    response = session.last_login  # type: ignore[attr-defined]
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "mugaika_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    page = session.get(f"{admin.url}/items", timeout=10)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src" not in csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "<script" not in page.text
    assert " style=" not in page.text  # CSP forbids inline styles too
    out = session.post(
        f"{admin.url}/logout",
        data={"csrf": csrf(session, admin)},
        allow_redirects=False,
        timeout=10,
    )
    assert out.status_code == 303
    assert session.get(f"{admin.url}/items", allow_redirects=False).status_code == 303
    actions = [e.action for e in admin.store.audit_entries()[0]]
    assert actions[:2] == ["logout", "login"]


def test_secure_cookies_when_configured(admin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = admin_factory(admin={"cookie_secure": "always"})
    page = requests.get(f"{admin.url}/login", timeout=10)
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-mugaika_login=")
    assert "Secure" in cookie
    assert "Path=/" in cookie


def test_wrong_password_and_rate_limit(admin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = admin_factory(admin={"login_attempts": 3})
    add_user(admin, "alice", "superadmin")
    for _ in range(3):
        assert login(admin, "alice", "wrong password!").last_login.status_code == 401  # type: ignore[attr-defined]
    # Even the right password is refused while throttled.
    assert login(admin, "alice").last_login.status_code == 429  # type: ignore[attr-defined]
    actions = [e.action for e in admin.store.audit_entries()[0]]
    assert actions.count("login-failed") == 3
    assert "login-throttled" in actions


def test_disabled_user_cannot_log_in(admin: RunningAdmin) -> None:
    add_user(admin, "bob", "superadmin")
    UserStore(admin.store.engine).set_disabled("bob", True)
    assert login(admin, "bob").last_login.status_code == 401  # type: ignore[attr-defined]


def test_login_form_needs_its_token(admin: RunningAdmin) -> None:
    add_user(admin, "alice", "superadmin")
    response = requests.post(
        f"{admin.url}/login",
        data={"username": "alice", "password": PASSWORD, "login_token": "forged"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 403


def test_header_sso_only_from_trusted_proxies(admin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = admin_factory(admin={"header_auth": {"header": "X-Remote-User"}})
    add_user(admin, "sso-user", "superadmin")
    page = requests.get(
        f"{admin.url}/items",
        headers={"X-Remote-User": "sso-user"},
        allow_redirects=False,
        timeout=10,
    )
    assert page.status_code == 200  # loopback is a trusted proxy by default
    assert "sso-user" in page.text
    unknown = requests.get(
        f"{admin.url}/items", headers={"X-Remote-User": "nobody"}, allow_redirects=False, timeout=10
    )
    assert unknown.status_code == 303
    untrusted = admin_factory(
        admin={"header_auth": {"header": "X-Remote-User", "trusted_proxies": ["192.0.2.0/24"]}}
    )
    page = requests.get(
        f"{untrusted.url}/items",
        headers={"X-Remote-User": "sso-user"},
        allow_redirects=False,
        timeout=10,
    )
    assert page.status_code == 303


# -- CSRF ------------------------------------------------------------------------------------


def test_csrf_is_required_for_every_post(admin: RunningAdmin, sink) -> None:  # type: ignore[no-untyped-def]
    add_user(admin, "alice", "superadmin")
    request = hold_request()
    admin.store.hold(request)
    session = login(admin, "alice")
    good = csrf(session, admin)
    posts = sorted(p for p, m in app_routes(admin) - PUBLIC if m == "POST" and "/api/" not in p)
    for path in posts:
        url = admin.url + fill(path, request.reference_id, 1)
        data = {"reason": "x", "ids": request.reference_id, "action": "delete"}
        missing = session.post(url, data=data, allow_redirects=False)
        assert missing.status_code == 403, path
        forged = session.post(url, data={**data, "csrf": "forged"}, allow_redirects=False)
        assert forged.status_code == 403, path
        cross = session.post(
            url,
            data={**data, "csrf": good},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        )
        assert cross.status_code == 403, path
    assert admin.store.get(request.reference_id).summary.status == "held"
    assert sink.messages == []
    released = session.post(
        f"{admin.url}/items/{request.reference_id}/release",
        data={"csrf": good, "reason": "ok", "target": "original", "confirm": "yes"},
        headers={"Origin": admin.url},
        allow_redirects=False,
    )
    assert released.status_code == 303
    assert len(sink.wait_for(1)) == 1


# -- tenant isolation ------------------------------------------------------------------------


def test_tenant_isolation_over_every_route(admin: RunningAdmin, sink) -> None:  # type: ignore[no-untyped-def]
    add_user(admin, "city-admin", "tenant-admin", [CITY])
    add_user(admin, "town-admin", "tenant-admin", [TOWN])
    add_user(admin, "town-approver", "approver", [TOWN])
    add_user(admin, "town-auditor", "auditor", [TOWN])
    city_item = hold_request(recipients=(f"u@{CITY}",), sanitized=b"Subject: s\r\n\r\nsafe\r\n")
    admin.store.hold(city_item)
    city = login(admin, "city-admin")
    session_csrf = csrf(city, admin)
    city.post(
        f"{admin.url}/items/{city_item.reference_id}/request",
        data={"csrf": session_csrf, "reason": "need it"},
    )
    [request] = admin.store.requests()
    city.get(f"{admin.url}/items/{city_item.reference_id}")  # an audit entry for CITY

    roles = {"town-admin": "tenant-admin", "town-approver": "approver", "town-auditor": "auditor"}
    for outsider, role in roles.items():
        web = login(admin, outsider)
        web_csrf = csrf(web, admin)
        api = token(admin, outsider)
        for path, method in sorted(ITEM_ROUTES):
            # A role without the route's permission is refused (403) before any lookup;
            # with it, another tenant's item is 404 exactly like one that does not exist.
            expected = 404 if role in PERMISSIONS[route_permission(path, method)] else 403
            url = admin.url + fill(path, city_item.reference_id, request.id)
            if path.startswith("/api/"):
                body = {"reason": "x"}
                if not path.endswith(("/approve", "/refuse")):
                    body["target"] = "original"  # a valid body: the lookup decides
                response = requests.request(method, url, headers=api, json=body, timeout=10)
            else:
                data = {"csrf": web_csrf, "reason": "x", "target": "original"}
                response = web.request(method, url, data=data, allow_redirects=False)
            assert response.status_code == expected, (outsider, method, path)
            # Nothing about the item leaks (its id may be echoed back: the caller sent it).
            assert "Invoice" not in response.text, (outsider, method, path)
            assert "a@example.com" not in response.text, (outsider, method, path)
        for path, _method in sorted(LIST_ROUTES):
            if path.startswith("/api/"):
                response = requests.get(admin.url + path, headers=api, timeout=10)
            else:
                response = web.get(admin.url + path)
            assert response.status_code in (200, 403), (outsider, path)
            assert city_item.reference_id not in response.text, (outsider, path)
            assert "Invoice" not in response.text, (outsider, path)
        bulk = web.post(
            f"{admin.url}/items/bulk",
            data={
                "csrf": web_csrf,
                "ids": city_item.reference_id,
                "action": "delete",
                "reason": "x",
            },
            allow_redirects=False,
        )
        assert "failed=1" in bulk.headers.get("location", "") or bulk.status_code == 403
    # The approver of TOWN, with the approve permission, still gets 404 for CITY's request.
    approver = login(admin, "town-approver")
    response = approver.post(
        f"{admin.url}/requests/{request.id}/approve",
        data={"csrf": csrf(approver, admin), "reason": "x"},
    )
    assert response.status_code == 404
    assert admin.store.get(city_item.reference_id).summary.status == "held"
    assert sink.messages == []
    # The owner still sees it.
    assert city_item.reference_id in city.get(f"{admin.url}/items").text


# -- pages and actions -----------------------------------------------------------------------


HOSTILE = (
    "From: =?UTF-8?B?5pSv5omV44GE?= <a@example.com>\r\n"
    "To: u@city.example.lg.jp\r\n"
    "Subject: <script>alert(1)</script> \u202eexe.pdf\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    '<html><body><a href="http://evil.example/login">click</a>'
    '<script>steal()</script><img src="http://evil.example/p.gif">本文</body></html>\r\n'
    '--b\r\nContent-Type: application/octet-stream; name="invoice\u202efdp.exe"\r\n'
    'Content-Disposition: attachment; filename="invoice\u202efdp.exe"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n"
).encode()


def test_detail_page_shows_hostile_content_as_inert_text(admin: RunningAdmin) -> None:
    add_user(admin, "alice", "superadmin")
    request = hold_request(raw=HOSTILE)
    admin.store.hold(request)
    session = login(admin, "alice")
    page = session.get(f"{admin.url}/items/{request.reference_id}")
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html
    assert 'href="http://evil' not in html
    assert 'src="http://evil' not in html
    assert "&lt;a href=&#34;http://evil.example/login&#34;&gt;click&lt;/a&gt;" in html
    assert "\u202e" not in html
    assert "invoice\ufffdfdp.exe" in html
    assert "支払い" in html  # the RFC 2047 From, decoded
    assert "本文" in html
    assert "OOXML_VBA_MACRO" in html
    entries, _ = admin.store.audit_entries(item_id=request.reference_id)
    assert entries[0].action == "viewed"


def test_release_from_the_ui_reaches_the_sink(admin: RunningAdmin, sink) -> None:  # type: ignore[no-untyped-def]
    add_user(admin, "alice", "superadmin")
    request = hold_request(raw=b"Subject: hello\r\n\r\nbody\r\n")
    admin.store.hold(request)
    session = login(admin, "alice")
    response = session.post(
        f"{admin.url}/items/{request.reference_id}/release",
        data={
            "csrf": csrf(session, admin),
            "reason": "確認済み",
            "target": "original",
            "confirm": "yes",
        },
    )
    assert response.status_code == 200
    assert "解放しました" in response.text
    [received] = sink.wait_for(1)
    assert b"X-Mugaika-Released-By: alice" in received.data
    again = session.post(
        f"{admin.url}/items/{request.reference_id}/release",
        data={
            "csrf": csrf(session, admin),
            "reason": "again",
            "target": "original",
            "confirm": "yes",
        },
    )
    assert again.status_code == 409
    assert len(sink.messages) == 1


def test_english_by_switch_and_by_accept_language(admin: RunningAdmin) -> None:
    add_user(admin, "alice", "superadmin")
    session = login(admin, "alice")
    assert "検疫されたメッセージ" in session.get(f"{admin.url}/items").text
    session.post(
        f"{admin.url}/language", data={"csrf": csrf(session, admin), "lang": "en", "next": "/"}
    )
    assert "Quarantined messages" in session.get(f"{admin.url}/items").text
    page = requests.get(
        f"{admin.url}/login", headers={"Accept-Language": "en-GB,en;q=0.9"}, timeout=10
    )
    assert "Log in" in page.text


def test_list_search_filters_and_bulk(admin: RunningAdmin, sink) -> None:  # type: ignore[no-untyped-def]
    add_user(admin, "alice", "superadmin")
    first = hold_request(raw=b"Subject: needle one\r\n\r\nx\r\n")
    second = hold_request(raw=b"Subject: hay\r\n\r\ny\r\n")
    admin.store.hold(first)
    admin.store.hold(second)
    session = login(admin, "alice")
    page = session.get(f"{admin.url}/items", params={"q": "needle"}).text
    assert first.reference_id in page
    assert second.reference_id not in page
    page = session.get(f"{admin.url}/items", params={"status": "released"}).text
    assert first.reference_id not in page
    response = session.post(
        f"{admin.url}/items/bulk",
        data={
            "csrf": csrf(session, admin),
            "ids": [first.reference_id, second.reference_id],
            "action": "release-original",
            "reason": "bulk",
            "confirm": "yes",
        },
        allow_redirects=False,
    )
    assert "ok=2" in response.headers["location"]
    assert len(sink.wait_for(2)) == 2


def test_two_person_approval_in_the_ui(admin_factory, sink) -> None:  # type: ignore[no-untyped-def]
    admin = admin_factory(quarantine={"release": {"originals": "two_person"}})
    add_user(admin, "tanaka", "tenant-admin", [CITY])
    add_user(admin, "sato", "approver")
    request = hold_request(recipients=(f"u@{CITY}",))
    admin.store.hold(request)
    tanaka = login(admin, "tanaka")
    direct = tanaka.post(
        f"{admin.url}/items/{request.reference_id}/release",
        data={"csrf": csrf(tanaka, admin), "reason": "x", "target": "original"},
    )
    assert direct.status_code == 403
    tanaka.post(
        f"{admin.url}/items/{request.reference_id}/request",
        data={"csrf": csrf(tanaka, admin), "reason": "受信者から依頼"},
    )
    [pending] = admin.store.requests()
    sato = login(admin, "sato")
    queue = sato.get(f"{admin.url}/requests").text
    assert "受信者から依頼" in queue
    sato.post(
        f"{admin.url}/requests/{pending.id}/approve",
        data={"csrf": csrf(sato, admin, "/requests"), "reason": "確認"},
    )
    assert sink.wait_for(1)[0].rcpt_tos == [f"u@{CITY}"]
    assert admin.store.get_request(pending.id).status == "done"


# -- API -------------------------------------------------------------------------------------


def test_api_list_show_release_and_openapi(admin: RunningAdmin, sink) -> None:  # type: ignore[no-untyped-def]
    add_user(admin, "robot", "superadmin")
    headers = token(admin, "robot")
    request = hold_request()
    admin.store.hold(request)
    listing = requests.get(f"{admin.url}/api/v1/items", headers=headers, timeout=10).json()
    assert listing["total"] == 1
    assert {
        "id",
        "message_id",
        "envelope_from",
        "recipients",
        "subject",
        "reasons",
        "status",
        "received_at",
        "tenant",
    } <= set(listing["items"][0])
    item = requests.get(
        f"{admin.url}/api/v1/items/{request.reference_id}", headers=headers, timeout=10
    ).json()
    assert item["history"][0]["to_status"] == "held"
    no_reason = requests.post(
        f"{admin.url}/api/v1/items/{request.reference_id}/release",
        headers=headers,
        json={"target": "original", "reason": "   "},
        timeout=10,
    )
    assert no_reason.status_code == 400
    assert no_reason.json()["error"] == "USER_ERROR"
    released = requests.post(
        f"{admin.url}/api/v1/items/{request.reference_id}/release",
        headers=headers,
        json={"reason": "api", "target": "original", "to": ["clerk@city.example.lg.jp"]},
        timeout=10,
    )
    assert released.status_code == 200, released.text
    assert sink.wait_for(1)[0].rcpt_tos == ["clerk@city.example.lg.jp"]
    document = requests.get(f"{admin.url}/api/v1/openapi.json", headers=headers, timeout=10)
    paths = document.json()["paths"]
    assert "/api/v1/items/{item_id}/release" in paths
    assert "post" in paths["/api/v1/items/{item_id}/release"]
    bad = requests.get(
        f"{admin.url}/api/v1/items", headers={"Authorization": "Bearer mgk_wrong"}, timeout=10
    )
    assert bad.status_code == 401
    malformed = requests.post(
        f"{admin.url}/api/v1/items/{request.reference_id}/release",
        headers={**headers, "Content-Type": "application/json"},
        data=b"[1,2",
        timeout=10,
    )
    assert malformed.status_code == 422
    assert json.loads(malformed.text)["error"] == "INVALID_REQUEST"


def test_a_capped_count_is_said_in_the_ui_and_the_api(admin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = admin_factory(admin={"page_size": 10})
    add_user(admin, "alice", "superadmin")
    add_user(admin, "robot", "superadmin")
    admin.store.count_cap = 2
    for n in range(12):
        admin.store.hold(hold_request(raw=f"Subject: 見積 {n}\r\n\r\nx\r\n".encode()))
    # PostgreSQL stops counting a search's matches; SQLite's FTS5 counts them cheaply.
    capped = admin.store.backend == "postgresql"
    listing = requests.get(
        f"{admin.url}/api/v1/items",
        params={"search": "見積", "limit": 3},
        headers=token(admin, "robot"),
        timeout=10,
    ).json()
    assert (listing["total"], listing["total_capped"]) == ((3, True) if capped else (12, False))
    session = login(admin, "alice")
    page = session.get(f"{admin.url}/items", params={"q": "見積"}).text
    expected = "10 件超のうち 1–10 件（それ以上は数えていません）" if capped else "12 件中 1–10 件"
    assert expected in page
    assert "page=2" in page  # a next page either way
    session.post(
        f"{admin.url}/language", data={"csrf": csrf(session, admin), "lang": "en", "next": "/"}
    )
    page = session.get(f"{admin.url}/items", params={"q": "見積", "page": "2"}).text
    expected = "11–12 of 12"  # the last page: counted to its end, exactly
    assert expected in page
