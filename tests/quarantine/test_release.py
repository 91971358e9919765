"""Release through a real downstream (an SMTP sink on loopback): once, with a reason, recorded."""

from __future__ import annotations

import asyncio
import email
import threading

import pytest

from gateway.delivery import SmtpDownstream
from quarantine.errors import ItemNotFound, PermissionDenied, ReleaseFailed, ReleaseRefused
from quarantine.release import decide_request, release, request_release
from quarantine.sql import SqlStore
from quarantine.users import Actor
from tests.helpers.smtp_sink import SmtpSink
from tests.quarantine.conftest import hold_request, message

ADMIN = Actor("alice", "superadmin", remote="192.0.2.10")
TENANT_A = Actor("tanaka", "tenant-admin", frozenset({"city.example.lg.jp"}))
TENANT_B = Actor("suzuki", "tenant-admin", frozenset({"town.example.lg.jp"}))
APPROVER = Actor("sato", "approver")


@pytest.fixture
def sink():  # type: ignore[no-untyped-def]
    with SmtpSink() as running:
        yield running


def downstream(sink: SmtpSink) -> SmtpDownstream:
    return SmtpDownstream(sink.host, sink.port, "gateway.test", starttls="off", pool_size=0)


def test_release_delivers_once_with_headers_and_audit(store: SqlStore, sink: SmtpSink) -> None:
    raw = message(subject="請求書") + b""
    request = hold_request(raw=raw)
    store.hold(request)
    result = asyncio.run(
        release(
            store,
            downstream(sink),
            request.reference_id,
            ADMIN,
            "業務上必要と確認",
            target="original",
        )
    )
    assert result.recipients == ["user@city.example.lg.jp"]
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["user@city.example.lg.jp"]
    assert received.mail_from == "a@example.com"
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["X-Mugaika-Released-By"] == "alice"
    assert parsed["X-Mugaika-Released-Reason"] == "業務上必要と確認"
    assert parsed["X-Mugaika-Released-At"]
    assert received.data.endswith(raw)
    item = store.get(request.reference_id)
    assert item.summary.status == "released"
    assert item.released_by == "alice"
    entries, _ = store.audit_entries(item_id=request.reference_id)
    assert [e.action for e in entries] == ["released"]
    assert entries[0].remote_addr == "192.0.2.10"
    assert entries[0].detail["reason"] == "業務上必要と確認"

    with pytest.raises(ReleaseRefused, match="already released"):
        asyncio.run(
            release(
                store, downstream(sink), request.reference_id, ADMIN, "again", target="original"
            )
        )
    assert len(sink.messages) == 1
    asyncio.run(
        release(
            store,
            downstream(sink),
            request.reference_id,
            ADMIN,
            "again",
            force=True,
            target="original",
        )
    )
    assert len(sink.wait_for(2)) == 2


def test_release_to_another_address_and_sanitized_copy(store: SqlStore, sink: SmtpSink) -> None:
    request = hold_request(sanitized=b"Subject: clean\r\n\r\nsanitized body\r\n")
    store.hold(request)
    asyncio.run(
        release(
            store,
            downstream(sink),
            request.reference_id,
            TENANT_A,
            "send the safe copy",
            to=["clerk@city.example.lg.jp"],
            target="sanitized",
        )
    )
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["clerk@city.example.lg.jp"]
    assert received.data.endswith(b"sanitized body\r\n")


def test_forged_release_headers_are_removed(store: SqlStore, sink: SmtpSink) -> None:
    raw = (
        b"X-Mugaika-Released-By: the-mayor\r\n\tcontinued\r\nSubject: hi\r\n"
        b"x-mugaika-released-reason: approved\r\n\r\nbody\r\n"
    )
    request = hold_request(raw=raw)
    store.hold(request)
    asyncio.run(
        release(store, downstream(sink), request.reference_id, ADMIN, "ok", target="original")
    )
    data = sink.wait_for(1)[0].data
    assert b"the-mayor" not in data
    assert b"continued" not in data
    assert data.count(b"X-Mugaika-Released-By:") == 1
    assert b"Subject: hi\r\n\r\nbody\r\n" in data


@pytest.mark.parametrize(("stage", "code"), [("rcpt", 451), ("data", 554), ("mail", 421)])
def test_a_refused_release_returns_the_item_to_held(
    store: SqlStore, sink: SmtpSink, stage: str, code: int
) -> None:
    request = hold_request()
    store.hold(request)
    sink.fail_next(stage, code)
    with pytest.raises(ReleaseFailed, match=str(code)):
        asyncio.run(
            release(store, downstream(sink), request.reference_id, ADMIN, "try", target="original")
        )
    assert store.get(request.reference_id).summary.status == "held"
    entries, _ = store.audit_entries(item_id=request.reference_id)
    assert entries[0].action == "release-failed"
    asyncio.run(
        release(store, downstream(sink), request.reference_id, ADMIN, "retry", target="original")
    )
    assert len(sink.wait_for(1)) == 1


def test_unreachable_downstream_fails_cleanly(store: SqlStore) -> None:
    request = hold_request()
    store.hold(request)
    with SmtpSink() as gone:
        port = gone.port
    dead = SmtpDownstream("127.0.0.1", port, "gw", connect_timeout=2, starttls="off")
    with pytest.raises(ReleaseFailed, match="DOWNSTREAM_UNAVAILABLE"):
        asyncio.run(release(store, dead, request.reference_id, ADMIN, "try", target="original"))
    assert store.get(request.reference_id).summary.status == "held"


def test_concurrent_releases_from_two_nodes_deliver_once(store_factory, sink: SmtpSink) -> None:  # type: ignore[no-untyped-def]
    nodes = [store_factory(), store_factory()]
    request = hold_request()
    nodes[0].hold(request)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def node_main(node: SqlStore) -> None:
        async def go() -> None:
            barrier.wait()
            try:
                await release(
                    node, downstream(sink), request.reference_id, ADMIN, "race", target="original"
                )
                outcomes.append("released")
            except ReleaseRefused:
                outcomes.append("refused")

        asyncio.run(go())

    threads = [threading.Thread(target=node_main, args=(n,)) for n in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "released"]
    assert len(sink.messages) == 1


def test_tenant_scope_hides_other_tenants_items(store: SqlStore, sink: SmtpSink) -> None:
    request = hold_request(recipients=("u@city.example.lg.jp",))
    store.hold(request)
    with pytest.raises(ItemNotFound):
        asyncio.run(
            release(
                store, downstream(sink), request.reference_id, TENANT_B, "mine?", target="original"
            )
        )
    assert sink.messages == []


def test_a_multi_tenant_message_goes_only_to_the_admins_own_recipients(
    store: SqlStore, sink: SmtpSink
) -> None:
    request = hold_request(recipients=("u@city.example.lg.jp", "v@town.example.lg.jp"))
    store.hold(request)
    asyncio.run(
        release(store, downstream(sink), request.reference_id, TENANT_B, "mine", target="original")
    )
    assert sink.wait_for(1)[0].rcpt_tos == ["v@town.example.lg.jp"]


def test_auditor_and_approver_cannot_release_directly(store: SqlStore, sink: SmtpSink) -> None:
    request = hold_request()
    store.hold(request)
    for actor in (Actor("kato", "auditor"), APPROVER):
        with pytest.raises(PermissionDenied):
            asyncio.run(
                release(
                    store, downstream(sink), request.reference_id, actor, "x", target="original"
                )
            )
    assert store.get(request.reference_id).summary.status == "held"


def test_a_reason_is_required(store: SqlStore, sink: SmtpSink) -> None:
    request = hold_request()
    store.hold(request)
    with pytest.raises(Exception, match="reason is required"):
        asyncio.run(
            release(store, downstream(sink), request.reference_id, ADMIN, "  ", target="original")
        )


def test_two_person_rule_for_originals(store: SqlStore, sink: SmtpSink) -> None:
    request = hold_request()
    store.hold(request)
    ds = downstream(sink)
    with pytest.raises(PermissionDenied, match="second person"):
        asyncio.run(
            release(
                store,
                ds,
                request.reference_id,
                TENANT_A,
                "need",
                policy="two_person",
                target="original",
            )
        )
    request_id = request_release(store, request.reference_id, TENANT_A, "受信者から依頼")
    with pytest.raises(PermissionDenied, match="may not decide"):
        asyncio.run(decide_request(store, ds, request_id, TENANT_A, True, "self"))
    superadmin_requester = Actor("tanaka", "superadmin")  # same name as the requester
    with pytest.raises(PermissionDenied, match="different person"):
        asyncio.run(decide_request(store, ds, request_id, superadmin_requester, True, "self"))
    result = asyncio.run(decide_request(store, ds, request_id, APPROVER, True, "確認済み"))
    assert result is not None
    assert sink.wait_for(1)[0].rcpt_tos == ["user@city.example.lg.jp"]
    assert store.get_request(request_id).status == "done"
    actions = [e.action for e in store.audit_entries(item_id=request.reference_id)[0]]
    assert actions == ["released", "request-approved", "release-requested"]


def test_a_refused_request_sends_nothing(store: SqlStore, sink: SmtpSink) -> None:
    request = hold_request()
    store.hold(request)
    request_id = request_release(store, request.reference_id, TENANT_A, "please")
    assert (
        asyncio.run(decide_request(store, downstream(sink), request_id, APPROVER, False, "no"))
        is None
    )
    assert store.get_request(request_id).status == "refused"
    assert sink.messages == []
