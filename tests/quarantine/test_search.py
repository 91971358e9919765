"""Search of the quarantine list on both backends (issue 16): subject, sender, recipients,
attachment file names, reference ids; Japanese substrings; trigram indexes really used."""

from __future__ import annotations

import contextlib
import datetime
import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import and_, event, inspect, select, text

from gateway.report import AttachmentRecord
from quarantine import db
from quarantine.schema import item_domains, items
from quarantine.sql import ItemQuery, SqlStore, normalize_search, open_store
from quarantine.users import system_actor
from tests.helpers.postgres import PG_HOST, PG_PORT, _admin_connection, temporary_database
from tests.quarantine.conftest import hold_request, make_config, message

DAY = datetime.timedelta(days=1)


def held(
    store: SqlStore,
    subject: str,
    filename: str = "",
    mail_from: str = "a@example.com",
    recipients: tuple[str, ...] = ("user@city.example.lg.jp",),
) -> str:
    request = hold_request(raw=message(subject=subject), mail_from=mail_from, recipients=recipients)
    if filename:
        request.report.attachments.append(
            AttachmentRecord("2", filename, "application/pdf", "application/pdf", "0" * 64, 10)
        )
    store.hold(request)
    return request.reference_id


def downgrade(engine: Any, revision: str) -> None:
    """Back to ``revision``, keeping the items: how items held by an older version look
    (the store's code writes only the current schema)."""
    with engine.begin() as connection:
        command.downgrade(db._alembic_config(connection), revision)


def found(store: SqlStore, search: str, **filters: str) -> set[str]:
    return {i.id for i in store.list(ItemQuery(search=search, **filters)).items}  # type: ignore[arg-type]


def test_search_by_every_field_in_japanese_and_ascii(store: SqlStore) -> None:
    estimate = held(store, "見積書の送付について", "【重要】令和8年度予算要求資料.xlsx")
    invoice = held(store, "Invoice 4242", "請求書.pdf", mail_from="keiri@example.co.jp")
    meeting = held(store, "Re: 打合せ日程", recipients=("suzuki.hanako@town.example.lg.jp",))
    assert found(store, "予算要求") == {estimate}  # a file name, 4 characters (trigram index)
    assert found(store, "請求") == {invoice}  # 2 characters: LIKE
    assert found(store, "請求書.pdf") == {invoice}
    assert found(store, "見積書") == {estimate}  # the subject
    assert found(store, "ＩＮＶＯＩＣＥ") == {invoice}  # full-width, any case
    assert found(store, "keiri@example") == {invoice}  # the sender
    assert found(store, "suzuki.hanako") == {meeting}  # a recipient
    assert found(store, meeting) == {meeting}  # the reference id
    assert found(store, meeting.lower()[-6:]) == {meeting}  # part of it, any case
    assert found(store, "invoice 4242") == {invoice}  # every term (AND)
    assert found(store, "invoice 打合せ") == set()
    assert found(store, "%") == set()  # LIKE wildcards are literal
    assert found(store, 'in"voice') == set()  # FTS5 syntax is literal too
    assert found(store, "見積", status="held") == {estimate}
    assert found(store, "見積", status="released") == set()
    page = store.list(ItemQuery(search="example", limit=2))
    assert page.total == 3  # counted over every match, not the page


def test_the_trigram_index_answers_long_terms(store: SqlStore) -> None:
    assert store.search_index() == ("fts5" if store.backend == "sqlite" else "pg_trgm")
    held(store, "見積書の送付について")
    conditions = store._search_conditions("送付について")
    from sqlalchemy import and_, select

    from quarantine.schema import items

    statement = select(items.c.id).where(and_(*conditions))
    with store.engine.connect() as conn:
        if store.backend == "sqlite":
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            plan = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
            assert any("VIRTUAL TABLE INDEX" in str(row) for row in plan), plan
        else:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
            assert "ix_items_search_trgm" in plan, plan


def test_upgrade_indexes_items_held_before_it(tmp_path, backend_url: str) -> None:  # type: ignore[no-untyped-def]
    engine = db.make_engine(backend_url)
    db.upgrade(engine)
    old = open_store(make_config(tmp_path / "data", backend_url))
    reference = held(old, "古い件名", "古い見積書.pdf")
    old.engine.dispose()
    downgrade(engine, "0002")  # the item now is as 0002 left it, but for its search text:
    # What 0002 stored: no file names in the search text.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE items SET search_text = :s WHERE id = :i"),
            {"s": reference.lower(), "i": reference},
        )
    db.upgrade(engine)
    store = open_store(make_config(tmp_path / "data", backend_url))
    assert found(store, "古い見積書") == {reference}
    assert found(store, "古い件名") == {reference}
    old.engine.dispose()
    store.engine.dispose()
    engine.dispose()


@contextlib.contextmanager
def database_without_create_privilege() -> Iterator[str]:
    """A database owned by a role that may create tables but not extensions."""
    role = f"mugaika_plain_{secrets.token_hex(4)}"
    with temporary_database() as url, _admin_connection() as admin:
        name = url.rsplit("/", 1)[1]
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC')
        admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
        import psycopg

        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname=name, autocommit=True
        ) as conn:
            conn.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        try:
            yield f"postgresql+psycopg://{role}@{PG_HOST}:{PG_PORT}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
def test_without_pg_trgm_search_still_works_and_says_so(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with database_without_create_privilege() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        out = capsys.readouterr().out
        assert "pg_trgm could not be set up" in out
        assert "CREATE EXTENSION IF NOT EXISTS pg_trgm" in out
        store = open_store(make_config(tmp_path / "data", url))
        assert store.search_index() == "none"
        reference = held(store, "見積書の送付について", "予算要求資料.xlsx")
        assert found(store, "予算要求") == {reference}
        store.engine.dispose()
        engine.dispose()


# Texts with one- and two-character words that the trigram indexes cannot answer alone, LIKE
# wildcards and FTS5 syntax that must stay literal, and forms NFKC folds together.
SAMPLE_SUBJECTS = [
    "見積書の送付について",
    "請求書 No.4242",
    "【重要】会議資料",
    "Re: 打合せ日程",
    "見積",
    "ｶﾞｲﾄﾞ ① ㈱テスト",
    "100% off_sale \\ path",
    'say "hi" AND NOT x*',
    "予算要求",
    "Invoice 見積 請求",
    "a",
    "ab",
]
SAMPLE_FILES = ["見積書.pdf", "請求書_1.xlsx", "議事録.docx", "", "", "a_b%c.txt"]


def substring_scan(store: SqlStore, search: str) -> set[str]:
    """What search means, computed by Python over the stored text: every term occurs."""
    terms = normalize_search(search).split()
    with store.engine.connect() as conn:
        rows = conn.execute(select(items.c.id, items.c.search_text)).all()
    return {row.id for row in rows if all(term in row.search_text for term in terms)}


def test_short_and_long_terms_find_exactly_what_a_substring_scan_finds(store: SqlStore) -> None:
    rng = random.Random(16)
    for n, subject in enumerate(SAMPLE_SUBJECTS * 2):
        held(store, subject, SAMPLE_FILES[n % len(SAMPLE_FILES)], mail_from=f"s{n}@example.com")
    with store.engine.connect() as conn:
        texts = list(conn.execute(select(items.c.search_text)).scalars())
    terms = ["見", "見積", "積書", "請求", "%", "_", "\\", "a", "ab", "1", "①", "ｶﾞ", "ガ", "㈱"]
    terms += ["x*", '"', "no", "zz", "見積書", "会議資料", "a_b", "100%", "invoice 見積", "見 請"]
    for _ in range(60):
        source = rng.choice(texts).replace(" ", "")
        length = rng.choice((1, 1, 2, 2, 3, 4))
        start = rng.randrange(max(1, len(source) - length))
        terms.append(source[start : start + length])
    for term in terms:
        if not term.strip():
            continue
        expected = substring_scan(store, term)
        page = store.list(ItemQuery(search=term, limit=1000))
        assert {i.id for i in page.items} == expected, term
        assert page.total == len(expected), term
        assert not page.total_capped


@pytest.mark.postgres
def test_short_terms_use_the_gram_index_on_postgresql(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with temporary_database() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        store = open_store(make_config(tmp_path / "data", url))
        held(store, "見積書の送付について")
        statement = select(items.c.id).where(and_(*store._search_conditions("見積 書")))
        with store.engine.connect() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
        assert "ix_items_search_grams" in plan, plan
        store.engine.dispose()
        engine.dispose()


@pytest.mark.postgres
def test_the_count_of_a_frequent_term_is_capped_and_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with temporary_database() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        store = open_store(make_config(tmp_path / "data", url))
        store.count_cap = 3
        for n in range(6):
            held(store, f"見積 {n}")
        held(store, "請求")
        capped = store.list(ItemQuery(search="見積", limit=2))
        assert (capped.total, capped.total_capped, len(capped.items)) == (3, True, 2)
        deeper = store.list(ItemQuery(search="見積", limit=2, offset=2))
        assert (deeper.total, deeper.total_capped) == (4, True)  # always past the page shown
        last = store.list(ItemQuery(search="見積", limit=2, offset=4))
        assert (last.total, last.total_capped) == (6, False)
        exact = store.list(ItemQuery(search="請求", limit=2))
        assert (exact.total, exact.total_capped) == (1, False)
        unsearched = store.list(ItemQuery(limit=2))
        assert (unsearched.total, unsearched.total_capped) == (7, False)  # cheap: exact
        store.engine.dispose()
        engine.dispose()


@pytest.mark.postgres
def test_gram_migration_fills_old_items_and_downgrades_cleanly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with temporary_database() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        old = open_store(make_config(tmp_path / "data", url))
        reference = held(old, "古い見積書")
        old.engine.dispose()
        downgrade(engine, "0004")  # held before 0005: no grams
        db.upgrade(engine)
        store = open_store(make_config(tmp_path / "data", url))
        assert found(store, "見積") == {reference}
        assert found(store, "い") == {reference}
        assert substring_scan(store, "見積") == {reference}

        def gram_objects() -> set[str]:
            with engine.connect() as conn:
                return set(
                    conn.execute(
                        text(
                            "SELECT 'column' FROM information_schema.columns "
                            "WHERE table_name = 'items' AND column_name = 'search_grams' "
                            "UNION ALL SELECT 'index' FROM pg_indexes "
                            "WHERE indexname = 'ix_items_search_grams' "
                            "UNION ALL SELECT 'function' FROM pg_proc "
                            "WHERE proname = 'mugaika_short_grams'"
                        )
                    ).scalars()
                )

        assert gram_objects() == {"column", "index", "function"}
        with engine.begin() as connection:
            command.downgrade(db._alembic_config(connection), "0004")
        assert gram_objects() == set()
        db.upgrade(engine)
        assert gram_objects() == {"column", "index", "function"}
        assert found(store, "見積") == {reference}
        store.engine.dispose()
        engine.dispose()


TENANTS = ("a.example.lg.jp", "b.example.lg.jp", "c.example.lg.jp")


def test_tenant_with_every_other_filter_finds_exactly_what_a_scan_finds(store: SqlStore) -> None:
    """The tenant filter reads item_domains' copy of received_at (migration 0006): the pages
    must hold the same items in the same order as filtering the whole list by hand."""
    rng = random.Random(6)
    now = time.time()
    same_second = now - 5000  # ties on received_at are ordered by id, as without a tenant
    for n in range(60):
        recipients = tuple(
            f"u{n}@{domain}" for domain in rng.sample(TENANTS, rng.choice((1, 1, 2, 3)))
        )
        received = same_second if n % 7 == 0 else now - rng.randint(0, 40 * 86400)
        request = hold_request(
            raw=message(subject=rng.choice(SAMPLE_SUBJECTS)),
            recipients=recipients,
            received_at=received,
            kind="retained" if n % 4 == 0 else "quarantined",
        )
        store.hold(request)
        if n % 5 == 0:
            store.delete(request.reference_id, system_actor("test"), "test")
    everything = store.list(ItemQuery(limit=1000)).items
    since = datetime.datetime.fromtimestamp(now - 30 * 86400, datetime.UTC)
    until = datetime.datetime.fromtimestamp(now - 86400, datetime.UTC)
    for tenant in (*TENANTS, "B.EXAMPLE.LG.JP", "other.example.lg.jp"):
        for filters in (
            {},
            {"status": "held"},
            {"since": since},
            {"since": since, "until": until, "kind": "quarantined"},
            {"status": "held", "since": since, "search": "見積"},
            {"search": "請求 a"},
        ):
            search = filters.get("search")
            expected = [
                i.id
                for i in everything
                if any(r.lower().endswith("@" + tenant.lower()) for r in i.recipients)
                and i.status == filters.get("status", i.status)
                and i.kind == filters.get("kind", i.kind)
                and i.received_at >= filters.get("since", i.received_at)
                and i.received_at < filters.get("until", i.received_at + DAY)
                and (not search or i.id in substring_scan(store, str(search)))
            ]
            pages = [
                store.list(ItemQuery(tenant=tenant, limit=4, offset=offset, **filters))  # type: ignore[arg-type]
                for offset in range(0, max(1, len(expected)), 4)
            ]
            assert [i.id for p in pages for i in p.items] == expected, (tenant, filters)
            assert {p.total for p in pages} == {len(expected)}, (tenant, filters)


@pytest.mark.postgres
def test_tenant_page_walks_the_domain_time_index_on_postgresql(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with temporary_database() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        store = open_store(make_config(tmp_path / "data", url))
        for n in range(3):
            held(store, f"見積 {n}", recipients=(f"u@{TENANTS[n]}",))
        statements: list[tuple[str, Any]] = []

        def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            statements.append((statement, parameters))

        event.listen(store.engine, "before_cursor_execute", record)
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
        query = ItemQuery(status="held", tenant=TENANTS[1], since=since, search="見積")
        assert len(store.list(query).items) == 1
        event.remove(store.engine, "before_cursor_execute", record)
        page_statement = next((s, p) for s, p in statements if "ORDER BY" in s)
        with store.engine.connect() as conn:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            plan = "\n".join(
                r[0]
                for r in conn.exec_driver_sql("EXPLAIN " + page_statement[0], page_statement[1])
            )
        assert "ix_item_domains_domain_received_at_item_id" in plan, plan
        store.engine.dispose()
        engine.dispose()


def test_domain_time_migration_fills_old_items_and_downgrades_cleanly(
    tmp_path, backend_url: str
) -> None:  # type: ignore[no-untyped-def]
    engine = db.make_engine(backend_url)
    db.upgrade(engine)
    store = open_store(make_config(tmp_path / "data", backend_url))
    old = time.time() - 3 * 86400
    first = hold_request(recipients=("x@a.example.lg.jp", "y@b.example.lg.jp"), received_at=old)
    second = hold_request(recipients=("z@b.example.lg.jp",))
    for request in (first, second):
        store.hold(request)
    store.engine.dispose()

    def columns() -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns("item_domains")}

    downgrade(engine, "0005")
    assert columns() == {"item_id", "domain"}
    assert "ix_item_domains_domain_received_at_item_id" not in {
        i["name"] for i in inspect(engine).get_indexes("item_domains")
    }
    db.upgrade(engine)
    assert "received_at" in columns()
    with engine.connect() as conn:
        copied = conn.execute(
            select(item_domains.c.item_id, item_domains.c.received_at, items.c.received_at).join(
                items, items.c.id == item_domains.c.item_id
            )
        ).all()
    assert len(copied) == 3
    assert all(row[1] == row[2] for row in copied), copied
    store = open_store(make_config(tmp_path / "data", backend_url))
    since = datetime.datetime.fromtimestamp(old + 60, datetime.UTC)
    assert [i.id for i in store.list(ItemQuery(tenant="b.example.lg.jp")).items] == [
        second.reference_id,
        first.reference_id,
    ]
    assert [i.id for i in store.list(ItemQuery(tenant="b.example.lg.jp", since=since)).items] == [
        second.reference_id
    ]
    store.engine.dispose()
    engine.dispose()
