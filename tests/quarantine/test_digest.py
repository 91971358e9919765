"""The daily digest over real SMTP (issue 16): what each recipient and the tenant's admins
receive, once a day whatever the number of runs, from the CLI and from serve's scheduler."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import time
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import load_config
from quarantine.cli import open_for
from quarantine.web.service import MaintenanceService
from tests.helpers.smtp_sink import SmtpSink
from tests.quarantine.conftest import hold_request, message

CITY = "city.example.lg.jp"
ADMIN = f"joho@{CITY}"


def write_config(tmp_path: Path, downstream: str, send_at: str | None = "08:30") -> Path:
    path = tmp_path / "mugaika.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "downstream": downstream,
                "digest": {"send_at": send_at, "sender": f"mugaika@{CITY}"},
                "tenants": {
                    CITY: {
                        "name": "テスト市",
                        "digest": {
                            "enabled": True,
                            "admins": [ADMIN],
                            "contact": "情報政策課（内線 1234）",
                        },
                    },
                    "town.example.lg.jp": {"name": "隣町"},
                },
            },
            allow_unicode=True,
        )
    )
    return path


def hold_some(store, now: float) -> dict[str, str]:  # type: ignore[no-untyped-def]
    ids = {}
    for key, recipients, subject, kind, age in (
        ("tanaka1", (f"tanaka@{CITY}",), "請求書の送付について", "quarantined", 3600),
        ("tanaka2", (f"tanaka@{CITY}", "x@town.example.lg.jp"), "見積書", "quarantined", 7200),
        ("suzuki", (f"suzuki@{CITY}",), "会議資料", "quarantined", 60),
        ("retained", (f"tanaka@{CITY}",), "届いたメール", "retained", 60),
        ("old", (f"tanaka@{CITY}",), "先週のメール", "quarantined", 3 * 86400),
        ("town", ("x@town.example.lg.jp",), "隣町宛て", "quarantined", 60),
    ):
        request = hold_request(
            recipients=recipients,
            raw=message(subject=subject),
            kind=kind,  # type: ignore[arg-type]
            received_at=now - age,
            reasons=("attachment policy: executable is quarantined",),
        )
        store.hold(request)
        ids[key] = request.reference_id
    return ids


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_digest_per_recipient_and_admin_once_a_day(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with SmtpSink() as sink:
        config_path = write_config(tmp_path, f"{sink.host}:{sink.port}")
        store = open_for(load_config(config_path))
        ids = hold_some(store, time.time())
        argv = ["digest", "send", "--config", str(config_path)]

        assert main([*argv, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "3 mails would be sent (dry run)" in out
        assert ids["tanaka1"] in out
        assert sink.messages == []

        assert main(argv) == 0
        assert "3 sent, 0 failed" in capsys.readouterr().out
        received = {m.rcpt_tos[0]: m for m in sink.wait_for(3)}
        assert sorted(received) == sorted([f"tanaka@{CITY}", f"suzuki@{CITY}", ADMIN])

        tanaka = parse(received[f"tanaka@{CITY}"].data)
        assert received[f"tanaka@{CITY}"].mail_from == f"mugaika@{CITY}"
        assert tanaka["Auto-Submitted"] == "auto-generated"
        assert tanaka["Subject"].startswith("【保留メールのお知らせ】")
        assert tanaka["Subject"].endswith(" 2件")
        body = tanaka.get_content()
        assert ids["tanaka1"] in body
        assert ids["tanaka2"] in body
        for other in ("suzuki", "retained", "old", "town"):
            assert ids[other] not in body, other
        assert "請求書の送付について" in body
        assert "添付ファイルの方針により保留（実行ファイル）" in body
        assert "参照番号を添えて情報政策課（内線 1234）に解放を依頼してください" in body
        assert " JST" in body
        assert "+0000" not in body

        admin = parse(received[ADMIN].data).get_content()
        assert parse(received[ADMIN].data)["Subject"].startswith("【保留メール一覧】テスト市")
        for key in ("tanaka1", "tanaka2", "suzuki"):
            assert ids[key] in admin
        assert ids["town"] not in admin
        assert ids["retained"] not in admin
        assert f"宛先: tanaka@{CITY}, x@town.example.lg.jp" in admin
        assert "mugaika quarantine release 参照番号 --sanitized" in admin

        # Once a day: a second run (another node, a cron job) sends nothing.
        assert main(argv) == 0
        assert "already sent today" in capsys.readouterr().out
        time.sleep(0.3)
        assert len(sink.messages) == 3
        store.engine.dispose()


def test_nothing_accepted_withdraws_the_claim(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with SmtpSink() as sink:
        config_path = write_config(tmp_path, f"{sink.host}:{sink.port}")
        store = open_for(load_config(config_path))
        hold_some(store, time.time())
        for _ in range(3):
            sink.fail_next("rcpt", 451)
        argv = ["digest", "send", "--config", str(config_path)]
        assert main(argv) == 1
        assert "0 sent, 3 failed" in capsys.readouterr().out
        assert main(argv) == 0  # the next attempt sends
        assert "3 sent, 0 failed" in capsys.readouterr().out
        assert len(sink.wait_for(3)) == 3
        store.engine.dispose()


def test_serve_scheduler_sends_after_send_at_local_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with SmtpSink() as sink:
        config = load_config(write_config(tmp_path, f"{sink.host}:{sink.port}", send_at="08:30"))
        store = open_for(config)
        jst = datetime.timezone(datetime.timedelta(hours=9))
        before = datetime.datetime(2026, 11, 25, 8, 29, tzinfo=jst)
        after = datetime.datetime(2026, 11, 25, 8, 31, tzinfo=jst)
        hold_some(store, after.timestamp())
        service = MaintenanceService(config, store)

        async def ticks() -> None:
            await service.send_due_digests(before)
            await asyncio.sleep(0.2)
            assert sink.messages == []  # 08:29 in Tokyo: not yet (23:29 UTC the day before)
            await service.send_due_digests(after)
            await service.send_due_digests(after + datetime.timedelta(minutes=1))

        asyncio.run(ticks())
        assert len(sink.wait_for(3)) == 3
        time.sleep(0.3)
        assert len(sink.messages) == 3
        store.engine.dispose()


def test_digest_keys_are_validated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("digest:\n  send_at: '25:00'\ntime_zone: Mars/Olympus\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert any(
        m.endswith("c.yaml:2: digest.send_at: '25:00': expected a time of day such as 08:30")
        for m in caught.value.messages
    )
    assert any(
        "time_zone: 'Mars/Olympus': expected an IANA time zone" in m for m in caught.value.messages
    )


def test_subjects_and_senders_in_the_digest_are_not_links(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The digest is delivered to the LGWAN side like any mail: the subject and the sender it
    quotes are the attacker's text, and are defanged as a body would be."""
    from gateway.config import load_config
    from quarantine.digest import compose
    from quarantine.sql import ItemSummary
    from tests.text.linkify import live_links

    config = load_config(write_config(tmp_path, "127.0.0.1:1"))
    now = datetime.datetime.now(datetime.UTC)
    item = ItemSummary(
        id="20261125-7K3QM9XD", kind="quarantined", status="held", tenant=CITY,
        received_at=now, message_id="<x@evil.example.jp>", envelope_from="bounce@evil.example.jp",
        recipients=[f"tanaka@{CITY}"], subject="至急 https://evil.example.jp/login www.evil.jp",
        header_from="Support <support@evil.example.jp>", size=10, verdict="quarantine",
        reasons=["attachment policy: executable is quarantined"], release_count=0,
        has_sanitized=False, interrupted=False,
    )  # fmt: skip
    for for_admin in (False, True):
        mail = compose(
            config, CITY, ADMIN, [item], now - datetime.timedelta(days=1), now, for_admin
        )
        # The tenant's own addresses (the one the digest is for, the recipients) are kept.
        assert live_links(mail.body, mail_addresses_kept=True) == [], mail.body
        assert "至急 hxxps://evil[.]example[.]jp/login www[.]evil[.]jp" in mail.body
        assert "差出人: Support <support@evil[.]example[.]jp>" in mail.body
        assert f"宛先: tanaka@{CITY}" in mail.body or not for_admin
