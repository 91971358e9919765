"""The SQL store on both backends: hold, read back, list, scope, purge, claims, audit."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.errors import StoreUnavailable
from quarantine import db
from quarantine.errors import BlobCorrupt, ItemNotFound, ReleaseRefused, SchemaNotCurrent
from quarantine.schema import managed_elsewhere, metadata
from quarantine.sql import ItemQuery, SqlStore
from quarantine.users import Actor, system_actor
from tests.quarantine.conftest import hold_request, message

ISO2022_SUBJECT = b"Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"  # こんにちは


def test_hold_then_read_back(store: SqlStore) -> None:
    raw = message(subject="Quarterly report", body="本文です")
    request = hold_request(raw=raw, recipients=("a@city.example.lg.jp", "b@town.example.lg.jp"))
    assert store.hold(request) == request.reference_id
    item = store.get(request.reference_id)
    assert item.summary.status == "held"
    assert item.summary.kind == "quarantined"
    assert item.summary.subject == "Quarterly report"
    assert item.summary.tenant == "city.example.lg.jp"
    assert item.domains == ["city.example.lg.jp", "town.example.lg.jp"]
    assert item.summary.reasons == ["OOXML_VBA_MACRO"]
    assert item.report["findings"][0]["code"] == "OOXML_VBA_MACRO"
    assert item.client["address"] == "192.0.2.7"
    assert ("Subject", "Quarterly report") in item.headers
    assert store.original(request.reference_id) == raw
    with pytest.raises(ItemNotFound, match="no sanitized copy"):
        store.sanitized(request.reference_id)
    history = store.history(request.reference_id)
    assert [(h.from_status, h.to_status, h.actor) for h in history] == [(None, "held", "gateway")]


def test_japanese_headers_are_decoded(store: SqlStore) -> None:
    raw = b"From: a@example.com\r\n" + ISO2022_SUBJECT + b"\r\nbody\r\n"
    request = hold_request(raw=raw)
    store.hold(request)
    assert store.get(request.reference_id).summary.subject == "こんにちは"
    page = store.list(ItemQuery(search="こんにちは"))
    assert [i.id for i in page.items] == [request.reference_id]


def test_raw_8bit_and_nul_headers_are_stored_not_refused(store: SqlStore) -> None:
    raw = b"Subject: \x82\xb1\x82\xf1 \x00 evil\r\nFrom: x@example.com\r\n\r\nbody\r\n"
    request = hold_request(raw=raw)
    store.hold(request)
    subject = store.get(request.reference_id).summary.subject
    assert "\x00" not in subject
    assert subject.startswith("こん")  # Shift_JIS guessed for raw 8-bit
    assert store.original(request.reference_id) == raw


def test_sanitized_copy_is_kept(store: SqlStore) -> None:
    request = hold_request(kind="retained", sanitized=b"Subject: clean\r\n\r\nclean\r\n")
    store.hold(request)
    assert store.sanitized(request.reference_id) == b"Subject: clean\r\n\r\nclean\r\n"
    assert store.get(request.reference_id).summary.kind == "retained"


def test_a_corrupted_blob_is_refused(store: SqlStore) -> None:
    request = hold_request()
    store.hold(request)
    digest = store.get(request.reference_id).original_sha256
    if store.blob_files is not None:
        store.blob_files.path(digest).write_bytes(b"tampered")
    else:
        from sqlalchemy import update

        from quarantine.schema import blobs

        with store.engine.begin() as conn:
            conn.execute(update(blobs).where(blobs.c.sha256 == digest).values(data=b"tampered"))
    with pytest.raises(BlobCorrupt, match="does not match"):
        store.original(request.reference_id)


def test_a_failed_hold_raises_store_unavailable_and_stores_nothing(store: SqlStore) -> None:
    request = hold_request()
    store.hold(request)
    with pytest.raises(StoreUnavailable, match="IntegrityError"):
        store.hold(request)  # same reference id: the second insert must fail whole
    assert store.list(ItemQuery()).total == 1


def test_hold_is_safe_from_many_threads(store: SqlStore) -> None:
    requests = [hold_request(raw=message(body=f"m{i}")) for i in range(24)]
    errors: list[BaseException] = []

    def work(chunk: list) -> None:
        for request in chunk:
            try:
                store.hold(request)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(requests[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.list(ItemQuery(limit=100)).total == 24


def test_list_filters_search_and_scope(store: SqlStore) -> None:
    now = time.time()
    a = hold_request(recipients=("x@a.example.lg.jp",), raw=message(subject="alpha"))
    b = hold_request(
        recipients=("y@b.example.lg.jp",), raw=message(subject="beta"), received_at=now - 86400
    )
    c = hold_request(recipients=("z@a.example.lg.jp", "w@b.example.lg.jp"), kind="retained")
    for request in (a, b, c):
        store.hold(request)
    assert store.list(ItemQuery()).total == 3
    assert {i.id for i in store.list(ItemQuery(tenant="a.example.lg.jp")).items} == {
        a.reference_id,
        c.reference_id,
    }
    assert [i.id for i in store.list(ItemQuery(search="BETA")).items] == [b.reference_id]
    assert [i.id for i in store.list(ItemQuery(kind="retained")).items] == [c.reference_id]
    since = datetime.datetime.fromtimestamp(now - 3600, datetime.UTC)
    assert b.reference_id not in {i.id for i in store.list(ItemQuery(since=since)).items}
    # A tenant admin of b sees b and the shared c, never a.
    scoped = store.list(ItemQuery(), scope=frozenset({"b.example.lg.jp"}))
    assert {i.id for i in scoped.items} == {b.reference_id, c.reference_id}
    with pytest.raises(ItemNotFound):
        store.get(a.reference_id, scope=frozenset({"b.example.lg.jp"}))
    with pytest.raises(ItemNotFound):
        store.original(a.reference_id, scope=frozenset({"b.example.lg.jp"}))
    # LIKE wildcards in the search are literal.
    assert store.list(ItemQuery(search="%")).total == 0


def test_list_pages_newest_first(store: SqlStore) -> None:
    now = time.time()
    ids = []
    for i in range(7):
        request = hold_request(received_at=now - i * 60)
        store.hold(request)
        ids.append(request.reference_id)
    first = store.list(ItemQuery(limit=3))
    second = store.list(ItemQuery(limit=3, offset=3))
    assert first.total == 7
    assert [i.id for i in first.items] + [i.id for i in second.items] == ids[:6]


def test_discard_forgets_a_retained_original(store: SqlStore) -> None:
    request = hold_request(kind="retained")
    store.hold(request)
    store.discard(request.reference_id, "DOWNSTREAM_UNAVAILABLE")
    with pytest.raises(ItemNotFound):
        store.get(request.reference_id)
    assert store.collect_garbage() == 1


def test_purge_follows_each_tenants_retention(store_factory) -> None:  # type: ignore[no-untyped-def]
    store = store_factory(tenants={"short.example.lg.jp": {"retention_days": 1}})
    now = time.time()
    old_short = hold_request(recipients=("u@short.example.lg.jp",), received_at=now - 2 * 86400)
    old_default = hold_request(recipients=("u@other.example.lg.jp",), received_at=now - 2 * 86400)
    ancient = hold_request(recipients=("u@other.example.lg.jp",), received_at=now - 31 * 86400)
    for request in (old_short, old_default, ancient):
        store.hold(request)
    result = store.purge()
    assert sorted(result.expired) == sorted([old_short.reference_id, ancient.reference_id])
    assert store.get(old_default.reference_id).summary.status == "held"
    expired = store.get(old_short.reference_id)
    assert expired.summary.status == "expired"
    assert not expired.original_available
    with pytest.raises(ItemNotFound, match="no longer kept"):
        store.original(old_short.reference_id)
    # Content shared with a live item survives: all three had distinct bytes, two are gone.
    assert result.blobs_removed == 2
    assert store.purge().expired == []  # idempotent


def test_identical_content_is_stored_once_and_kept_while_referenced(store: SqlStore) -> None:
    raw = message(body="same bytes")
    first, second = hold_request(raw=raw), hold_request(raw=raw)
    store.hold(first)
    store.hold(second)
    store.delete(first.reference_id, system_actor(), "test")
    assert store.original(second.reference_id) == raw
    store.delete(second.reference_id, system_actor(), "test")
    assert store.collect_garbage() == 0  # already collected by delete


def test_only_one_of_two_nodes_wins_a_claim(store_factory) -> None:  # type: ignore[no-untyped-def]
    nodes = [store_factory(), store_factory()]
    request = hold_request()
    nodes[0].hold(request)
    barrier = threading.Barrier(2)
    won: list[str] = []
    refused: list[str] = []

    def race(node: SqlStore) -> None:
        barrier.wait()
        try:
            node.claim(request.reference_id, Actor("admin", "superadmin"))
            won.append(node.node)
        except ReleaseRefused as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=race, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert len(refused) == 1
    assert "being released" in refused[0] or "releasing" in refused[0]


def test_stale_claim_is_recovered_as_interrupted(store: SqlStore) -> None:
    request = hold_request()
    store.hold(request)
    actor = Actor("admin", "superadmin")
    store.claim(request.reference_id, actor)
    assert store.recover_stale_claims(datetime.timedelta(minutes=5)) == []
    assert store.recover_stale_claims(datetime.timedelta(seconds=-1)) == [request.reference_id]
    item = store.get(request.reference_id)
    assert item.summary.status == "held"
    assert item.summary.interrupted
    with pytest.raises(ReleaseRefused, match="interrupted"):
        store.claim(request.reference_id, actor)
    store.claim(request.reference_id, actor, force=True)


def test_audit_log_is_appended_and_scoped(store: SqlStore) -> None:
    admin = Actor("alice", "tenant-admin", frozenset({"a.example.lg.jp"}), remote="192.0.2.1")
    store.audit(admin, "viewed", "ID1", "a.example.lg.jp", note="x")
    store.audit(admin, "viewed", "ID2", "b.example.lg.jp")
    entries, total = store.audit_entries()
    assert total == 2
    assert entries[0].item_id == "ID2"  # newest first
    assert entries[1].detail == {"note": "x"}
    assert entries[1].remote_addr == "192.0.2.1"
    scoped, _ = store.audit_entries(scope=frozenset({"a.example.lg.jp"}))
    assert [e.item_id for e in scoped] == ["ID1"]


def test_migrated_schema_matches_the_code(backend_url: str) -> None:
    engine = db.make_engine(backend_url)
    with pytest.raises(SchemaNotCurrent, match="mugaika db upgrade"):
        db.check_current(engine)
    before, after = db.upgrade(engine)
    assert before is None
    assert after == db.head_revision()
    db.check_current(engine)
    assert db.upgrade(engine) == (after, after)  # idempotent
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": managed_elsewhere})
        diff = compare_metadata(context, metadata)
    assert diff == []
    engine.dispose()
