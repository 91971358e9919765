"""List-page latency with many quarantined items, in SQLite and in PostgreSQL.

Fills a fresh store with N items (default 100,000: 20 tenants, mixed statuses, Japanese and
ASCII subjects, Japanese attachment names; metadata inserted in bulk, all items sharing one
stored original, because the list never reads bytes), starts the real admin app (uvicorn on
loopback), logs in, and times HTTP GETs of the first list page: unfiltered, by status, by
tenant, by period, by search (ASCII, Japanese, a file name, two characters, an id), and all
combined. Prints median and p95 per case, in milliseconds.

    .venv/bin/python benchmarks/list_latency.py --backend sqlite --items 100000
    .venv/bin/python benchmarks/list_latency.py --backend postgres --items 100000

PostgreSQL: a database ``mugaika_bench_<hex>`` is created on 127.0.0.1:5432 and dropped.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config import Config
from quarantine import db
from quarantine.schema import blobs, item_domains, items
from quarantine.sql import open_store, search_text
from quarantine.users import UserStore
from tests.helpers.postgres import temporary_database
from tests.quarantine.conftest import RunningAdmin

SUBJECTS = [
    "請求書の送付について",
    "Invoice {n}",
    "【重要】会議資料",
    "Re: 打合せ日程",
    "見積書 No.{n}",
]
STATUSES = ["held"] * 6 + ["released"] * 2 + ["deleted", "expired"]
FILES = ["見積書.pdf", "請求書_{n}.xlsx", "議事録.docx", "", ""]


def fill(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.UTC)
    rng = random.Random(6)  # noqa: S311 - reproducible test data, not a secret
    digest = "0" * 64
    with engine.begin() as conn:
        conn.execute(insert(blobs).values(sha256=digest, size=1000, data=b"x", created_at=now))
    batch: list[dict] = []
    domains: list[dict] = []
    for n in range(count):
        tenant = f"city{n % 20:02d}.example.lg.jp"
        received = now - datetime.timedelta(seconds=rng.randint(0, 60 * 86400))
        subject = rng.choice(SUBJECTS).format(n=n)
        filename = rng.choice(FILES).format(n=n)
        item_id = f"{received:%Y%m%d}-{n:08d}"
        batch.append(
            {
                "id": item_id,
                "kind": "quarantined" if n % 3 else "retained",
                "status": rng.choice(STATUSES),
                "tenant": tenant,
                "received_at": received,
                "queue_id": f"Q{n}",
                "message_id": f"<{n}@example.com>",
                "envelope_from": f"sender{n % 997}@example.com",
                "recipients": json.dumps([{"address": f"user{n % 50}@{tenant}", "options": []}]),
                "subject": subject,
                "header_from": f"Sender <sender{n % 997}@example.com>",
                "size": 1000 + n % 5000,
                "original_sha256": digest,
                "original_blob": digest,
                "verdict": "quarantine",
                "reasons": json.dumps(["OOXML_VBA_MACRO"]),
                "report": "{}",
                "client": "{}",
                "headers": "[]",
                "mail_options": "[]",
                # As the store writes it (the SQLite FTS5 table is filled by its trigger).
                "search_text": search_text(
                    item_id,
                    f"sender{n % 997}@example.com",
                    [f"user{n % 50}@{tenant}"],
                    subject,
                    f"Sender <sender{n % 997}@example.com>",
                    f"<{n}@example.com>",
                    [filename],
                ),
                "release_count": 0,
                "updated_at": now,
            }
        )
        domains.append({"item_id": item_id, "domain": tenant, "received_at": received})
        if len(batch) == 5000:
            with engine.begin() as conn:
                conn.execute(insert(items), batch)
                conn.execute(insert(item_domains), domains)
            batch, domains = [], []
    if batch:
        with engine.begin() as conn:
            conn.execute(insert(items), batch)
            conn.execute(insert(item_domains), domains)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # The steady state autovacuum keeps: statistics, and a visibility map that lets
            # the counters use index-only scans.
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:  # as MaintenanceService does (SqlStore.optimize)
            conn.exec_driver_sql("ANALYZE")


CASES = {
    "first page": {},
    "status=held": {"status": "held"},
    "tenant": {"tenant": "city07.example.lg.jp"},
    "last 7 days": {"days": "7"},
    "search ascii": {"q": "invoice 4242"},
    "search japanese": {"q": "会議資料"},
    "search file name": {"q": "請求書_4242"},
    "search 2 chars": {"q": "見積"},
    "search id": {"q": "00042424"},
    "combined": {"status": "held", "tenant": "city07.example.lg.jp", "days": "30", "q": "請求"},
}


def measure(url: str, data_dir: Path, count: int, rounds: int) -> None:
    config = Config.model_validate(
        {"data_dir": str(data_dir), "quarantine": {"url": url}, "admin": {"listen": "127.0.0.1:0"}}
    )
    engine = db.make_engine(url)
    db.upgrade(engine)
    started = time.monotonic()
    fill(engine, count)
    print(f"filled {count} items in {time.monotonic() - started:.0f}s ({engine.dialect.name})")
    store = open_store(config)
    UserStore(store.engine).add("bench", "superadmin", [], "benchmark-password")
    admin = RunningAdmin(config, store, ("127.0.0.1", 9))
    try:
        session = requests.Session()
        page = session.get(f"{admin.url}/login", timeout=30)
        token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        session.post(
            f"{admin.url}/login",
            data={"login_token": token, "username": "bench", "password": "benchmark-password"},
            timeout=30,
        )
        for name, params in CASES.items():
            timings = []
            for _ in range(rounds):
                begin = time.perf_counter()
                response = session.get(f"{admin.url}/items", params=params, timeout=60)
                timings.append((time.perf_counter() - begin) * 1000)
                assert response.status_code == 200, response.status_code
            timings.sort()
            p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
            print(f"  {name:<16} median {statistics.median(timings):7.1f} ms   p95 {p95:7.1f} ms")
    finally:
        admin.close()
        store.engine.dispose()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "sqlite":
            measure(f"sqlite:///{tmp}/q.db", Path(tmp), args.items, args.rounds)
        else:
            with temporary_database() as url:
                measure(url, Path(tmp), args.items, args.rounds)


if __name__ == "__main__":
    main()
