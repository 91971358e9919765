"""What leaves the quarantine is named explicitly and identically everywhere (issue 12, item 4).

``target: sanitized | original`` in the API body, the web form and the CLI (``--target``). The
API's request bodies are pydantic models with ``extra="forbid"``: an unknown or missing field
is a 422 that names it, never a silently dropped field (``{"target": "sanitized"}`` once
released the original of a held executable because the API only knew a boolean
``sanitized``). Query parameters are validated the same way and a bad value is a 400 naming
the parameter (issue 11: ``since=`` answered 500). Releasing an original from the web UI
first shows a confirmation page naming what goes to whom; the list's bulk action defaults to
the sanitized copy.

Over real HTTP (uvicorn) to a real SMTP sink, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any, get_args

import pytest
import requests

from quarantine.release import TARGETS
from quarantine.web.models import DecisionBody, ReleaseBody, RequestBody, Target
from tests.quarantine.conftest import RunningAdmin, hold_request
from tests.quarantine.test_web import add_user, csrf, login, token

CITY = "city.example.lg.jp"
ORIGINAL = (
    b"From: a@example.com\r\nTo: u@city.example.lg.jp\r\nSubject: invoice\r\n"
    b"Message-ID: <target-test@example.com>\r\n\r\nORIGINAL-WITH-PROGRAM MZ\r\n"
)
SANITIZED = b"Subject: invoice\r\n\r\nSANITIZED-COPY\r\n"


def held(admin: RunningAdmin, sanitized: bytes | None = SANITIZED) -> str:
    request = hold_request(recipients=(f"u@{CITY}",), raw=ORIGINAL, sanitized=sanitized)
    admin.store.hold(request)
    return request.reference_id


def api_post(admin: RunningAdmin, path: str, headers: dict[str, str], body: Any) -> Any:
    return requests.post(f"{admin.url}{path}", headers=headers, json=body, timeout=30)


# -- API bodies ---------------------------------------------------------------------------------


def test_api_target_sanitized_sends_the_sanitized_copy(admin: RunningAdmin, sink) -> None:  # type: ignore[no-untyped-def]
    add_user(admin, "robot", "superadmin")
    item_id = held(admin)
    response = api_post(
        admin,
        f"/api/v1/items/{item_id}/release",
        token(admin, "robot"),
        {"reason": "checked", "target": "sanitized"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["target"] == "sanitized"
    [received] = sink.wait_for(1)
    assert b"SANITIZED-COPY" in received.data
    assert b"ORIGINAL-WITH-PROGRAM" not in received.data


def test_api_unknown_missing_and_invalid_fields_are_422(admin: RunningAdmin, sink) -> None:  # type: ignore[no-untyped-def]
    add_user(admin, "robot", "superadmin")
    headers = token(admin, "robot")
    item_id = held(admin)
    path = f"/api/v1/items/{item_id}/release"
    cases: list[tuple[Any, str]] = [
        ({"reason": "x", "sanitized": True}, "sanitized: unknown field"),
        ({"reason": "x", "target": "sanitized", "sanitised": True}, "sanitised: unknown field"),
        ({"reason": "x"}, "target: required field is missing"),
        ({"target": "sanitized"}, "reason: required field is missing"),
        ({"reason": "x", "target": "copy"}, "target: 'copy': Input should be 'sanitized' or"),
        ({"reason": "x", "target": "original", "force": "yes"}, "force: 'yes': Input should be"),
        ({"reason": "x", "target": "original", "to": "a@city.example.lg.jp"}, "to: "),
        ([1, 2], "the body must be a JSON object"),
    ]
    for body, expected in cases:
        response = api_post(admin, path, headers, body)
        assert response.status_code == 422, (body, response.text)
        answer = response.json()
        assert answer["error"] == "INVALID_REQUEST", answer
        assert expected in answer["detail"], (body, answer)
    for path, body in (
        (f"/api/v1/items/{item_id}/requests", {"reason": "x", "sanitized": True}),
        ("/api/v1/requests/1/approve", {"reason": "x", "release": True}),
    ):
        response = api_post(admin, path, headers, body)
        assert response.status_code == 422, (path, response.text)
    malformed = requests.post(
        f"{admin.url}{path}",
        headers={**headers, "Content-Type": "application/json"},
        data=b"[1,2",
        timeout=10,
    )
    assert malformed.status_code == 422
    assert admin.store.get(item_id).summary.status == "held"
    assert admin.store.requests() == []
    assert sink.messages == []


def test_the_target_words_are_the_same_in_models_and_release() -> None:
    assert get_args(Target) == TARGETS


def test_openapi_request_bodies_come_from_the_models(admin: RunningAdmin) -> None:
    add_user(admin, "robot", "auditor")
    document = requests.get(
        f"{admin.url}/api/v1/openapi.json", headers=token(admin, "robot"), timeout=10
    ).json()
    schemas = document["components"]["schemas"]
    for path, model in (
        ("/api/v1/items/{item_id}/release", ReleaseBody),
        ("/api/v1/items/{item_id}/requests", RequestBody),
        ("/api/v1/requests/{request_id}/approve", DecisionBody),
    ):
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}"
        schema = schemas[model.__name__]
        assert schema == model.model_json_schema(ref_template="#/components/schemas/{model}")
        assert schema["additionalProperties"] is False
        assert "422" in document["paths"][path]["post"]["responses"]
    release = schemas["ReleaseBody"]
    assert set(release["required"]) == {"reason", "target"}
    assert release["properties"]["target"]["enum"] == ["sanitized", "original"]
    assert "sanitized" not in release["properties"]
    listing = document["paths"]["/api/v1/items"]["get"]["parameters"]
    assert {p["name"] for p in listing} == {
        "status",
        "kind",
        "tenant",
        "since",
        "search",
        "limit",
        "offset",
    }
    assert all(p["in"] == "query" for p in listing)


# -- API query parameters (issue 11) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "named"),
    [
        ("/api/v1/items", {"since": "yesterday"}, "since"),
        ("/api/v1/items", {"since": "2026-13-45"}, "since"),
        ("/api/v1/items", {"since": "99999999999d"}, "since"),
        ("/api/v1/items", {"limit": "abc"}, "limit"),
        ("/api/v1/items", {"limit": "0"}, "limit"),
        ("/api/v1/items", {"limit": "1" + "0" * 30}, "limit"),
        ("/api/v1/items", {"offset": "-1"}, "offset"),
        ("/api/v1/items", {"status": "bogus"}, "status"),
        ("/api/v1/items", {"kind": "bogus"}, "kind"),
        ("/api/v1/items", {"sort": "id"}, "sort"),
        ("/api/v1/audit", {"limit": "x"}, "limit"),
        ("/api/v1/audit", {"offset": "1e3"}, "offset"),
        ("/api/v1/requests", {"status": "bogus"}, "status"),
    ],
)
def test_api_bad_query_parameters_answer_400(
    admin: RunningAdmin, path: str, query: dict[str, str], named: str
) -> None:
    add_user(admin, "robot", "superadmin")
    response = requests.get(
        f"{admin.url}{path}", headers=token(admin, "robot"), params=query, timeout=10
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "INVALID_PARAMETER"
    assert answer["detail"].startswith(f"{named}: "), answer
    assert "Traceback" not in response.text


def test_api_good_query_parameters_still_work(admin: RunningAdmin) -> None:
    add_user(admin, "robot", "superadmin")
    headers = token(admin, "robot")
    item_id = held(admin)
    for query in (
        {"since": "7d"},
        {"since": "2020-01-01"},
        {"since": "2020-01-01T09:00:00+09:00", "status": "held", "limit": "5", "offset": "0"},
        {"kind": "quarantined", "tenant": CITY, "search": "invoice"},
    ):
        response = requests.get(
            f"{admin.url}/api/v1/items", headers=headers, params=query, timeout=10
        )
        assert response.status_code == 200, (query, response.text)
        assert [i["id"] for i in response.json()["items"]] == [item_id], query
    bad_id = requests.post(
        f"{admin.url}/api/v1/requests/abc/approve",
        headers=headers,
        json={"reason": "x"},
        timeout=10,
    )
    assert bad_id.status_code == 400
    assert bad_id.json()["error"] == "INVALID_PARAMETER"


# -- web form --------------------------------------------------------------------------------


def test_ui_original_needs_a_confirmation_naming_what_goes_to_whom(
    admin: RunningAdmin,
    sink,  # type: ignore[no-untyped-def]
) -> None:
    add_user(admin, "alice", "superadmin")
    item_id = held(admin)
    session = login(admin, "alice")
    form = {"csrf": csrf(session, admin), "reason": "受信者に確認", "target": "original"}
    page = session.post(f"{admin.url}/items/{item_id}/release", data=form)
    assert page.status_code == 200
    assert sink.messages == []
    assert admin.store.get(item_id).summary.status == "held"
    html = page.text
    confirm = re.search(r'<form method="post" action="/items/[^"]+/release" class="confirm">', html)
    assert confirm, html
    assert "原本" in html
    assert f"u@{CITY}" in html
    assert item_id in html
    assert "invoice" in html  # the subject
    assert "OOXML_VBA_MACRO" in html  # why it was held
    assert 'name="confirm" value="yes"' in html
    assert 'name="target" value="original"' in html
    done = session.post(f"{admin.url}/items/{item_id}/release", data={**form, "confirm": "yes"})
    assert done.status_code == 200
    [received] = sink.wait_for(1)
    assert b"ORIGINAL-WITH-PROGRAM" in received.data
    assert received.rcpt_tos == [f"u@{CITY}"]


def test_ui_sanitized_needs_no_confirmation_and_target_is_required(
    admin: RunningAdmin,
    sink,  # type: ignore[no-untyped-def]
) -> None:
    add_user(admin, "alice", "superadmin")
    item_id = held(admin)
    session = login(admin, "alice")
    token_value = csrf(session, admin)
    missing = session.post(
        f"{admin.url}/items/{item_id}/release", data={"csrf": token_value, "reason": "x"}
    )
    assert missing.status_code == 400
    assert sink.messages == []
    done = session.post(
        f"{admin.url}/items/{item_id}/release",
        data={"csrf": token_value, "reason": "x", "target": "sanitized"},
        allow_redirects=False,
    )
    assert done.status_code == 303
    [received] = sink.wait_for(1)
    assert b"SANITIZED-COPY" in received.data


def test_detail_form_preselects_the_sanitized_copy(admin: RunningAdmin) -> None:
    add_user(admin, "alice", "superadmin")
    item_id = held(admin)
    html = login(admin, "alice").get(f"{admin.url}/items/{item_id}").text
    assert re.search(r'name="target" value="sanitized" checked', html)
    assert not re.search(r'name="target" value="original"[^>]* checked', html)


def test_bulk_defaults_to_sanitized_and_originals_need_confirmation(
    admin: RunningAdmin,
    sink,  # type: ignore[no-untyped-def]
) -> None:
    add_user(admin, "alice", "superadmin")
    first, second = held(admin), held(admin)
    session = login(admin, "alice")
    listing = session.get(f"{admin.url}/items").text
    select = re.search(r'<select name="action"[^>]*>(.*?)</select>', listing, re.S)
    assert select, listing
    options = re.findall(r'<option value="([^"]+)"( selected)?', select.group(1))
    assert options[0] == ("release-sanitized", " selected"), options
    assert ("release-original", "") in options
    token_value = csrf(session, admin)
    base = {"csrf": token_value, "ids": [first, second], "reason": "bulk"}
    legacy = session.post(
        f"{admin.url}/items/bulk", data={**base, "action": "release"}, allow_redirects=False
    )
    assert legacy.status_code == 400
    page = session.post(f"{admin.url}/items/bulk", data={**base, "action": "release-original"})
    assert page.status_code == 200
    assert sink.messages == []
    assert first in page.text
    assert second in page.text
    assert "原本" in page.text
    assert f"u@{CITY}" in page.text
    done = session.post(
        f"{admin.url}/items/bulk",
        data={**base, "action": "release-original", "confirm": "yes"},
        allow_redirects=False,
    )
    assert "ok=2" in done.headers["location"]
    assert all(b"ORIGINAL-WITH-PROGRAM" in m.data for m in sink.wait_for(2))
    third = held(admin)
    done = session.post(
        f"{admin.url}/items/bulk",
        data={**base, "ids": [third], "action": "release-sanitized"},
        allow_redirects=False,
    )
    assert "ok=1" in done.headers["location"]
    assert b"SANITIZED-COPY" in sink.wait_for(3)[2].data


def test_confirmation_names_the_attachments_of_a_real_held_message(
    admin: RunningAdmin,
    sink,  # type: ignore[no-untyped-def]
) -> None:
    from quarantine.store import HoldRequest
    from tests.helpers import pipeline
    from tests.quarantine.test_released_copy import MESSAGE

    outcome = pipeline.run(MESSAGE, recipients=(f"tanaka@{CITY}",))
    admin.store.hold(
        HoldRequest(
            outcome.report.reference_id,
            "quarantined",
            pipeline.envelope((f"tanaka@{CITY}",)),
            MESSAGE,
            outcome.report,
            outcome.message,
        )
    )
    add_user(admin, "alice", "superadmin")
    session = login(admin, "alice")
    page = session.post(
        f"{admin.url}/items/{outcome.report.reference_id}/release",
        data={"csrf": csrf(session, admin), "reason": "x", "target": "original"},
    )
    assert page.status_code == 200
    assert "invoice.pdf.exe" in page.text
    assert f"tanaka@{CITY}" in page.text
    for reason in outcome.report.reasons:
        assert reason.split()[0] in page.text
    assert sink.messages == []
