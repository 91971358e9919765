"""Where a release may go (issue 11): a tenant admin's ``to`` stays within their own domains.

Before, a tenant admin could send an original with ``to`` (UI, API) to another tenant's user
or to any outside address. Now only addresses in the admin's own domains are accepted (an
approver without domains: the item's own recipient domains); beyond that only a superadmin
may send, and the audit entry lists the addresses outside the item's recipient domains.
The CLI acts as a superadmin (whoever runs it can read the database): allowed, audited.

Real HTTP (uvicorn), a real SMTP sink, the real CLI parser; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio

import pytest
import requests

from gateway.cli import main
from gateway.delivery import SmtpDownstream
from quarantine.errors import PermissionDenied
from quarantine.release import decide_request, release, request_release
from quarantine.sql import SqlStore
from quarantine.users import Actor
from tests.helpers.smtp_sink import SmtpSink
from tests.quarantine.conftest import RunningAdmin, hold_request
from tests.quarantine.test_web import add_user, csrf, login, token

CITY = "city.example.lg.jp"
TOWN = "town.example.lg.jp"
CITY_ADMIN = Actor("tanaka", "tenant-admin", frozenset({CITY}))
TWO_CITIES = Actor("mori", "tenant-admin", frozenset({CITY, "village.example.lg.jp"}))
APPROVER = Actor("sato", "approver")
SUPER = Actor("root", "superadmin")
OUTSIDE = (f"clerk@{TOWN}", "attacker@example.com", f"x@sub.{CITY}")


def downstream(sink: SmtpSink) -> SmtpDownstream:
    return SmtpDownstream(sink.host, sink.port, "gateway.test", starttls="off", pool_size=0)


def held(store: SqlStore) -> str:
    request = hold_request(recipients=(f"u@{CITY}",), sanitized=b"Subject: s\r\n\r\nsafe\r\n")
    store.hold(request)
    return request.reference_id


def run_release(
    store: SqlStore, sink: SmtpSink, actor: Actor, to: list[str], **kw: object
) -> object:
    item_id = kw.pop("item_id", None) or held(store)
    return asyncio.run(
        release(store, downstream(sink), str(item_id), actor, "x", target="original", to=to, **kw)  # type: ignore[arg-type]
    )


def test_a_tenant_admin_may_not_send_outside_their_domains(store: SqlStore) -> None:
    with SmtpSink() as sink:
        for address in OUTSIDE:
            item_id = held(store)
            with pytest.raises(PermissionDenied, match="outside your domains"):
                run_release(store, sink, CITY_ADMIN, [f"u@{CITY}", address], item_id=item_id)
            assert store.get(item_id).summary.status == "held"
        assert sink.messages == []
        # Upper case and a trailing dot are the same domain.
        run_release(store, sink, CITY_ADMIN, [f"Clerk@{CITY.upper()}"])
        # An admin of two tenants may send an item of one to a user of the other.
        run_release(store, sink, TWO_CITIES, ["head@village.example.lg.jp"])
        assert [m.rcpt_tos for m in sink.wait_for(2)] == [
            [f"Clerk@{CITY.upper()}"],
            ["head@village.example.lg.jp"],
        ]
    actions = [e.action for e in store.audit_entries()[0]]
    assert actions.count("released") == 2


def test_a_superadmin_may_send_anywhere_and_it_is_audited(store: SqlStore) -> None:
    with SmtpSink() as sink:
        item_id = held(store)
        run_release(store, sink, SUPER, [f"u@{CITY}", "auditor@example.com"], item_id=item_id)
        assert sink.wait_for(1)[0].rcpt_tos == [f"u@{CITY}", "auditor@example.com"]
        inside = held(store)
        run_release(store, sink, SUPER, [f"other@{CITY}"], item_id=inside)
    [entry] = [e for e in store.audit_entries(item_id=item_id)[0] if e.action == "released"]
    assert entry.detail["outside_item_domains"] == ["auditor@example.com"]
    [entry] = [e for e in store.audit_entries(item_id=inside)[0] if e.action == "released"]
    assert "outside_item_domains" not in entry.detail


def test_requests_and_approvals_keep_to_within_the_domains(store: SqlStore) -> None:
    item_id = held(store)
    with pytest.raises(PermissionDenied, match="outside your domains"):
        request_release(store, item_id, CITY_ADMIN, "please", to=["attacker@example.com"])
    assert store.requests() == []
    # A superadmin's request may name an outside address; an approver without domains may not
    # carry it out (only the item's recipient domains), a superadmin approver may.
    request_id = request_release(store, item_id, SUPER, "legal hold", to=["lawyer@example.com"])
    with SmtpSink() as sink:
        with pytest.raises(PermissionDenied, match="outside your domains"):
            asyncio.run(decide_request(store, downstream(sink), request_id, APPROVER, True, "ok"))
        assert sink.messages == []
    assert store.get(item_id).summary.status == "held"


def test_ui_and_api_refuse_outside_addresses_for_a_tenant_admin(
    admin: RunningAdmin,
    sink,  # type: ignore[no-untyped-def]
) -> None:
    add_user(admin, "tanaka", "tenant-admin", [CITY])
    item_id = held(admin.store)
    web = login(admin, "tanaka")
    form = {"csrf": csrf(web, admin), "reason": "x", "to": "attacker@example.com"}
    for target in ("sanitized", "original"):
        page = web.post(f"{admin.url}/items/{item_id}/release", data={**form, "target": target})
        assert page.status_code == 403, (target, page.text[:300])
        assert "attacker@example.com" in page.text
        confirmed = web.post(
            f"{admin.url}/items/{item_id}/release",
            data={**form, "target": target, "confirm": "yes"},
        )
        assert confirmed.status_code == 403
    requested = web.post(f"{admin.url}/items/{item_id}/request", data=form)
    assert requested.status_code == 403
    api = token(admin, "tanaka")
    for body in (
        {"reason": "x", "target": "original", "to": [f"clerk@{TOWN}"]},
        {"reason": "x", "target": "sanitized", "to": ["attacker@example.com"]},
    ):
        response = requests.post(
            f"{admin.url}/api/v1/items/{item_id}/release", headers=api, json=body, timeout=30
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "FORBIDDEN"
    response = requests.post(
        f"{admin.url}/api/v1/items/{item_id}/requests",
        headers=api,
        json={"reason": "x", "to": ["attacker@example.com"]},
        timeout=30,
    )
    assert response.status_code == 403
    assert sink.messages == []
    assert admin.store.get(item_id).summary.status == "held"
    # Within the domain: fine.
    ok = requests.post(
        f"{admin.url}/api/v1/items/{item_id}/release",
        headers=api,
        json={"reason": "x", "target": "sanitized", "to": [f"clerk@{CITY}"]},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text
    assert sink.wait_for(1)[0].rcpt_tos == [f"clerk@{CITY}"]


def test_cli_is_a_superadmin_and_its_outside_release_is_audited(
    store: SqlStore,
    tmp_path,  # type: ignore[no-untyped-def]
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    from quarantine.cli import open_for
    from tests.quarantine.conftest import make_config

    data_dir = tmp_path / "cli-data"
    cli_store = open_for(make_config(data_dir))
    item_id = held(cli_store)
    with SmtpSink() as sink:
        code = main(
            [
                "quarantine",
                "release",
                item_id,
                "--target",
                "sanitized",
                "--to",
                "auditor@example.com",
                "--reason",
                "forwarded to the auditor",
                "--downstream",
                f"{sink.host}:{sink.port}",
                "--data-dir",
                str(data_dir),
            ]
        )
        assert code == 0, capsys.readouterr().err
        assert sink.wait_for(1)[0].rcpt_tos == ["auditor@example.com"]
    [entry] = [e for e in cli_store.audit_entries(item_id=item_id)[0] if e.action == "released"]
    assert entry.actor.startswith("cli:")
    assert entry.detail["outside_item_domains"] == ["auditor@example.com"]
    cli_store.engine.dispose()
