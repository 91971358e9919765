"""Every real-world mail of the shared corpus goes through the gateway: no crash, no loss.

The mails are sent over real SMTP, with line endings normalised to CRLF as an MTA's SMTP
client does (smtplib dot-stuffs but sends the line endings of bytes as they are), to a gateway
with the shipped default policy, delivering to a real sink. Each one must be answered 250 and
then be found at the sink or in the quarantine; anything else fails the test with its name.
"""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

import pytest

from quarantine.sql import ItemQuery
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow


def corpus_emails(corpus: Path) -> list[Path]:
    rows = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [corpus / row.split("\t")[0] for row in rows if row.split("\t")[4] == "eml"]


def test_every_corpus_mail_is_relayed(corpus: Path, tmp_path: Path, sink: SmtpSink):
    paths = corpus_emails(corpus)
    assert len(paths) > 1000
    config = make_config(tmp_path, downstream=sink.address, **{"workers.count": 2})
    failures: list[str] = []
    with RunningGateway(config) as gateway:
        client = gateway.smtp()
        for index, path in enumerate(paths):
            if index % 100 == 0:  # a new session now and then, as an MTA would
                client.quit()
                client = gateway.smtp()
            data = re.sub(rb"\r\n|\r|\n", b"\r\n", path.read_bytes())
            try:
                client.sendmail("corpus@example.com", [f"r{index}@example.lg.jp"], data)
            except smtplib.SMTPResponseException as exc:
                failures.append(f"{path.relative_to(corpus)}: {exc.smtp_code} {exc.smtp_error!r}")
                client.rset()
            except smtplib.SMTPRecipientsRefused as exc:
                failures.append(f"{path.relative_to(corpus)}: {exc.recipients}")
                client.rset()
        client.quit()
        store = gateway.server.store
        held = store.list(ItemQuery(kind="quarantined", limit=10_000)).items
        # Every worker result passed the main process's checks (gateway.wire): an honest
        # outcome the checks refused would be held as WORKER_PROTOCOL and count here.
        registry = gateway.metrics.registry
        protocol = registry.get_sample_value(
            "mugaika_worker_restarts_total", {"reason": "protocol"}
        )
    assert failures == []
    assert protocol == 0
    assert not [item.id for item in held if "WORKER_PROTOCOL" in item.reasons]
    delivered = {m.rcpt_tos[0] for m in sink.messages}
    quarantined = {address for item in held for address in item.recipients}
    missing = [
        str(p.relative_to(corpus))
        for i, p in enumerate(paths)
        if f"r{i}@example.lg.jp" not in delivered | quarantined
    ]
    assert missing == []
    assert len(delivered) + len(quarantined) == len(paths)
    # The known malware mails never reach the downstream.
    for name in ("mail_test_15", "mail_test_4", "mail_malformed_1", "mail_test_1", "mail_test_11"):
        index = next(i for i, p in enumerate(paths) if p.name == name)
        assert f"r{index}@example.lg.jp" in quarantined, name
