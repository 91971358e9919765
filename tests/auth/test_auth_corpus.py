"""Every real-world message of the shared corpus through authentication and the base policy:
no crash, results from the RFC 8601 vocabulary, a header authres can parse, the body kept
byte for byte, every rule evaluated. DNS is a stub that knows nothing (no network)."""

from __future__ import annotations

import csv

import authres
import pytest

from gateway.auth import (
    ARC_RESULTS,
    DKIM_RESULTS,
    DMARC_RESULTS,
    SPF_RESULTS,
    AuthSettings,
    StaticResolver,
    add_authentication_results,
    authenticate,
)
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.report import Report
from rules.cli import HEADERS, _decoded
from rules.loader import load_policies
from tests.helpers.corpus import corpus_root

CORPUS = corpus_root()


def _messages() -> list[str]:
    if CORPUS is None:
        return []
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8") as f:
        return [row["path"] for row in csv.DictReader(f, delimiter="\t") if row["kind"] == "eml"]


MESSAGES = _messages()
for_each_message = pytest.mark.parametrize("name", MESSAGES, ids=MESSAGES)
SETTINGS = AuthSettings(authserv_id="gw.city.example.lg.jp", dns_timeout=1.0)
POLICY = load_policies(None).get("lgwan-base", frozenset({"city.example.lg.jp"}))


@pytest.mark.skipif(CORPUS is None, reason="the shared corpus (../shared/corpus) is not present")
def test_corpus_has_messages() -> None:
    assert len(MESSAGES) > 1000


@for_each_message
def test_corpus_message_authenticates_and_decides(name: str) -> None:
    assert CORPUS is not None
    raw = (CORPUS / name).read_bytes()
    envelope = Envelope(
        "Q1",
        "sender@example.com",
        (Recipient("user@city.example.lg.jp"),),
        client=ClientInfo("192.0.2.10", helo="mx.example.com", forwarded=True),
    )
    results = authenticate(raw, envelope, SETTINGS, StaticResolver())
    assert results.spf.result in SPF_RESULTS
    assert all(r.result in DKIM_RESULTS for r in results.dkim)
    assert results.dkim_result != "pass"  # no key is published in this DNS
    assert results.dmarc.result in DMARC_RESULTS
    assert results.arc.result in ARC_RESULTS
    parsed = authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + results.header_value
    )
    assert parsed.authserv_id == "gw.city.example.lg.jp"

    out = add_authentication_results(raw, results)
    separator = raw.find(b"\n\n") if b"\r\n\r\n" not in raw else raw.find(b"\r\n\r\n")
    if separator > 0:
        assert out.endswith(raw[separator:])  # the body, byte for byte

    import email

    message = email.message_from_bytes(raw)
    headers = {h: _decoded(message.get(h)) for h in HEADERS if message.get(h)}
    report = Report("Q1", auth=results.summary())
    decision = POLICY.decide(report, envelope, headers, auth=results, message_size=len(raw))
    assert len(decision.hits) + len(decision.misses) == len(POLICY.rules)
