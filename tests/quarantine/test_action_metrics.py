"""``mugaika_quarantine_releases_total`` counts what any process did (issue 12, item 5).

It stayed 0 after releases from the UI, the API and the CLI: nothing incremented it, and a
counter in the serving process cannot see a CLI run or another node anyway. Now the store's
append-only audit log is the source: the serving gateway reports its totals per
(action, tenant) at scrape time, with the backlog, counting settled rows once and only recent
rows again. The tenant label follows the one rule of every tenant-labelled metric: a domain
configured under ``tenants:``, else ``other``.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from gateway.metrics import QUARANTINE_ACTIONS, Metrics
from quarantine import db
from quarantine.release import release, request_release
from quarantine.schema import audit_log
from quarantine.sql import ACTION_SETTLE, AUDIT_ACTIONS, SqlStore
from quarantine.users import Actor, UserStore
from tests.helpers.process import GatewayProcess
from tests.helpers.smtp_sink import SmtpSink
from tests.quarantine.conftest import hold_request
from tests.quarantine.test_released_copy import MESSAGE as HELD_MESSAGE
from tests.quarantine.test_web import csrf, login

CITY = "city.example.lg.jp"
TOWN = "town.example.lg.jp"
ADMIN = Actor("alice", "superadmin")
REPO = Path(__file__).resolve().parents[2]


def value(metrics: Metrics, action: str, tenant: str) -> float | None:
    return metrics.registry.get_sample_value(
        "mugaika_quarantine_releases_total", {"action": action, "tenant": tenant}
    )


def scrape(metrics: Metrics, store: SqlStore) -> None:
    metrics.set_quarantine_backlog(store.backlog())


def test_the_action_words_agree() -> None:
    assert sorted(set(AUDIT_ACTIONS.values())) == sorted(QUARANTINE_ACTIONS)


def test_totals_come_from_the_audit_log_of_every_node(store_factory) -> None:  # type: ignore[no-untyped-def]
    serving, other_node = store_factory(), store_factory()
    metrics = Metrics(tenants=[CITY])
    scrape(metrics, serving)
    for action in QUARANTINE_ACTIONS:
        assert value(metrics, action, CITY) == 0
        assert value(metrics, action, "other") == 0
    with SmtpSink() as sink:
        from gateway.delivery import SmtpDownstream

        downstream = SmtpDownstream(
            sink.host, sink.port, "gateway.test", starttls="off", pool_size=0
        )
        for recipient in (f"u@{CITY}", f"u@{CITY}", f"u@{TOWN}"):
            request = hold_request(recipients=(recipient,))
            other_node.hold(request)
            asyncio.run(
                release(other_node, downstream, request.reference_id, ADMIN, "x", target="original")
            )
        sink.wait_for(3)
    deleted = hold_request(recipients=(f"u@{CITY}",))
    other_node.hold(deleted)
    other_node.delete(deleted.reference_id, ADMIN, "gone")
    other_node.audit(ADMIN, "deleted", deleted.reference_id, CITY)
    asked = hold_request(recipients=(f"u@{CITY}",))
    other_node.hold(asked)
    request_release(other_node, asked.reference_id, ADMIN, "please")
    other_node.audit(ADMIN, "viewed", asked.reference_id, CITY)  # not an action we count
    scrape(metrics, serving)
    assert value(metrics, "released", CITY) == 2
    assert value(metrics, "released", "other") == 1  # TOWN is not a configured tenant
    assert value(metrics, "deleted", CITY) == 1
    assert value(metrics, "requested", CITY) == 1
    assert value(metrics, "approved", CITY) == 0
    # Rows settled long ago are counted once into the cache, recent ones on every call; both
    # add up the same, call after call.
    engine = serving.engine
    old = datetime.datetime.now(datetime.UTC) - ACTION_SETTLE * 10
    with db.write_transaction(engine) as conn:
        conn.execute(
            insert(audit_log),
            [
                {"at": old, "actor": "x", "action": "released", "tenant": CITY, "detail": "{}"}
                for _ in range(5)
            ],
        )
    for _ in range(3):
        scrape(metrics, serving)
        assert value(metrics, "released", CITY) == 7
    assert serving._action_watermark == 0  # recent rows before the old ones: not settled yet
    fresh = store_factory()
    assert fresh.action_totals()[(CITY, "released")] == 7


def test_settled_rows_are_counted_once_behind_the_watermark(store: SqlStore) -> None:
    old = datetime.datetime.now(datetime.UTC) - ACTION_SETTLE * 2
    with db.write_transaction(store.engine) as conn:
        conn.execute(
            insert(audit_log),
            [
                {"at": old, "actor": "x", "action": a, "tenant": CITY, "detail": "{}"}
                for a in ("released", "deleted", "viewed", "request-refused")
            ],
        )
    assert store.action_totals() == {
        (CITY, "released"): 1,
        (CITY, "deleted"): 1,
        (CITY, "refused"): 1,
    }
    assert store._action_watermark == 4
    store.audit(ADMIN, "released", "X", CITY)
    store.audit(ADMIN, "request-approved", "X", TOWN)
    for _ in range(2):
        totals = store.action_totals()
        assert totals[(CITY, "released")] == 2
        assert totals[(TOWN, "approved")] == 1
    assert store._action_watermark == 4


def test_with_no_tenants_configured_every_quarantine_series_says_other(store: SqlStore) -> None:
    request = hold_request(recipients=(f"u@{CITY}",))
    store.hold(request)
    store.audit(ADMIN, "released", request.reference_id, CITY)
    assert store.get(request.reference_id).summary.tenant == CITY  # what the store records
    metrics = Metrics()
    scrape(metrics, store)
    get = metrics.registry.get_sample_value
    assert get("mugaika_quarantine_items", {"tenant": "other"}) == 1
    assert value(metrics, "released", "other") == 1
    assert value(metrics, "released", CITY) is None  # never a label value from mail
    metrics.set_tenants([CITY])
    scrape(metrics, store)
    assert get("mugaika_quarantine_items", {"tenant": CITY}) == 1
    assert value(metrics, "released", CITY) == 1
    assert value(metrics, "released", "other") == 0


# -- the real thing: mugaika serve, and releases from three places ---------------------------


def metric_values(url: str) -> dict[tuple[str, str], float]:
    text = requests.get(f"{url}/metrics", timeout=30).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "mugaika_quarantine_releases":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[(sample.labels["action"], sample.labels["tenant"])] = sample.value
    return out


def cli(config: Path, *argv: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_serving_gateway_exports_releases_done_by_other_processes(tmp_path: Path) -> None:
    import smtplib

    from quarantine.sql import ItemQuery, open_store
    from tests.quarantine.conftest import make_config

    with SmtpSink() as sink:
        config = tmp_path / "mugaika.yaml"
        settings = {
            "downstream": sink.address,
            "data_dir": str(tmp_path / "data"),
            "workers": {"count": 1},
            "tenants": {CITY: {"name": "City"}},
        }
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        with GatewayProcess(
            "--config",
            str(config),
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ) as gateway:
            assert gateway.wait_for_output("metrics listening")
            output = gateway.output()
            admin_url = re.search(r"admin UI listening address=(http://[\d.:]+)", output)
            metrics_url = re.search(r"metrics listening address=(http://[\d.:]+)", output)
            assert admin_url, output
            assert metrics_url, output
            with smtplib.SMTP("127.0.0.1", gateway.port, timeout=60) as client:
                for recipient in [f"u@{CITY}"] * 4 + [f"u@{TOWN}"]:
                    client.sendmail("soumu@example.com", [recipient], HELD_MESSAGE)
            store = open_store(make_config(tmp_path / "data"))
            held = store.list(ItemQuery(status="held")).items
            ids = [i.id for i in held if i.recipients == [f"u@{CITY}"]]
            ids += [i.id for i in held if i.recipients == [f"u@{TOWN}"]]
            assert len(ids) == 5
            assert sink.messages == []
            users = UserStore(store.engine)
            users.add("alice", "superadmin", [], "correct horse battery")
            admin = SimpleNamespace(url=admin_url.group(1))
            api = {"Authorization": f"Bearer {users.create_token('alice', 't')}"}
            # 1. the CLI, in processes of its own: a release, a deletion, and the approval
            #    (which releases too) of a request made through the API.
            cli(config, "quarantine", "release", ids[0], "--target", "sanitized", "--reason", "a")
            cli(config, "quarantine", "delete", ids[1], "--reason", "spam")
            asked = requests.post(
                f"{admin.url}/api/v1/items/{ids[2]}/requests",
                headers=api,
                json={"reason": "need it"},
                timeout=60,
            )
            assert asked.status_code == 201, asked.text
            cli(config, "quarantine", "approve", str(asked.json()["request"]), "--reason", "ok")
            # 2. the serving gateway's web UI, 3. its API (an unconfigured tenant's item).
            web = login(admin, "alice")  # type: ignore[arg-type]
            page = web.post(
                f"{admin.url}/items/{ids[3]}/release",
                data={"csrf": csrf(web, admin), "reason": "web", "target": "sanitized"},  # type: ignore[arg-type]
            )
            assert page.status_code == 200
            answer = requests.post(
                f"{admin.url}/api/v1/items/{ids[4]}/release",
                headers=api,
                json={"reason": "api", "target": "sanitized"},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            assert len(sink.wait_for(4)) == 4
            counts = metric_values(metrics_url.group(1))
            store.engine.dispose()
    assert counts[("released", CITY)] == 3  # CLI, approval by the CLI, UI
    assert counts[("released", "other")] == 1
    assert counts[("deleted", CITY)] == 1
    assert counts[("requested", CITY)] == 1
    assert counts[("approved", CITY)] == 1
    assert counts[("refused", CITY)] == 0
    assert {tenant for _, tenant in counts} == {CITY, "other"}  # bounded labels only
