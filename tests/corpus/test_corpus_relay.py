"""Every real-world mail of the shared corpus goes through the gateway: no crash, no loss.

The mails are sent over real SMTP, with line endings normalised to CRLF as an MTA's SMTP
client does (smtplib dot-stuffs but sends the line endings of bytes as they are), to a gateway
with the shipped default policy, delivering to a real sink. Each one must be answered 250 and
then be found at the sink or in the quarantine; anything else fails the test with its name.

The same pass checks the promise of every delivered notice: each reference it names
(「原本は参照番号 X で保管されています」, ``X-Mugaika-Reference``) resolves in the store to the
original as sent; and a message delivered without a reference is the original byte for byte
under the fields the gateway prepends (so no changed mail lost its original).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import smtplib
from email.message import Message
from pathlib import Path

import pytest

from quarantine.errors import ItemNotFound
from quarantine.sql import ItemQuery
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

NOTICE_REFERENCE = re.compile(r"原本は参照番号 (\d{8}-[0-9A-Z]{8}) で保管されています")
# Header fields the gateway puts on top of what it delivers: its trace field, authentication
# results, an ARC set, and its own summary.
PREPENDED = re.compile(rb"(received|authentication-results|arc-[a-z-]+|x-mugaika-[a-z-]+)$")


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
        broken_promises = _check_promises(store, paths, sink, config.hostname)
        # Every worker result passed the main process's checks (gateway.wire): an honest
        # outcome the checks refused would be held as WORKER_PROTOCOL and count here.
        registry = gateway.metrics.registry
        protocol = registry.get_sample_value(
            "mugaika_worker_restarts_total", {"reason": "protocol"}
        )
    assert failures == []
    assert broken_promises == []
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


def _fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, raw field with its folded lines) of a header block, in order."""
    out: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b"\r\n" + line)
        elif line:
            out.append((line.split(b":", 1)[0].strip().lower(), line))
    return out


def _split(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    head, separator, body = message.partition(b"\r\n\r\n")
    return _fields(head), separator + body


def _as_received(sent: bytes, delivered: bytes, authserv_id: bytes) -> bool:
    """True if ``delivered`` is ``sent`` with only fields of ours on top. What the gateway may
    drop: fields claiming to be ours (X-Mugaika-*, Authentication-Results of our authserv-id,
    RFC 8601 section 5). A message without a body may gain the empty line that ends its
    header: no body and an empty body are the same message (RFC 5322 section 3.5)."""
    sent_fields, sent_body = _split(sent)
    fields, body = _split(delivered)
    if body != (sent_body or b"\r\n\r\n"):
        return False
    forged_ours = re.compile(
        rb"authentication-results:\s*" + re.escape(authserv_id) + rb"\s*;", re.I
    )
    kept = [
        raw
        for name, raw in sent_fields
        if not name.startswith(b"x-mugaika-") and not forged_ours.match(raw)
    ]
    if len(fields) < len(kept) or [raw for _, raw in fields[len(fields) - len(kept) :]] != kept:
        return False
    return all(PREPENDED.match(name) for name, _ in fields[: len(fields) - len(kept)])


def _notice_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _check_promises(
    store: object, paths: list[Path], sink: SmtpSink, authserv_id: str
) -> list[str]:
    """Every delivered notice's reference resolves to the original; no unnamed change."""
    sent = {f"r{i}@example.lg.jp": p for i, p in enumerate(paths)}
    problems: list[str] = []
    for received in sink.messages:
        path = sent[received.rcpt_tos[0]]
        original = re.sub(rb"\r\n|\r|\n", b"\r\n", path.read_bytes())
        if not original.endswith(b"\r\n"):
            original += b"\r\n"  # smtplib ends DATA with a line break (RFC 5321 4.1.1.4)
        message = email.message_from_bytes(received.data, policy=email.policy.compat32)
        header = message["X-Mugaika-Reference"]
        named = set(NOTICE_REFERENCE.findall(_notice_text(message)))
        if header is not None:
            named.add(str(header))
        if not named:
            if not _as_received(original, received.data, authserv_id.encode()):
                problems.append(f"{path.name}: changed, but no original is named")
            continue
        if header is None or named != {str(header)}:
            problems.append(f"{path.name}: notice names {sorted(named)}, header {header}")
        for reference in named:
            try:
                item = store.get(reference)  # type: ignore[attr-defined]
            except ItemNotFound:
                problems.append(f"{path.name}: {reference} is not in the store")
                continue
            if item.original_sha256 != hashlib.sha256(original).hexdigest():
                problems.append(f"{path.name}: {reference} holds another original")
    return problems
