"""Cost per message of sender authentication and of the policy decision, over the corpus.

Usage: .venv/bin/python benchmarks/rules_and_auth.py [CORPUS_DIR] [TENANTS]

DNS is a stub that answers nothing (so DKIM signatures are permerror, SPF none): this measures
our code and dkimpy/pyspf, not the network. Prints milliseconds per message for
``authenticate`` and for ``Policy.decide`` (lgwan-base, TENANTS tenant domains protected
against lookalikes), and the time to load the shipped policies.
"""

from __future__ import annotations

import csv
import email
import sys
import time
from pathlib import Path

from gateway.auth import AuthSettings, StaticResolver, authenticate
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.report import Report
from rules.cli import HEADERS, _decoded
from rules.loader import load_policies


def main() -> None:
    corpus = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).parents[1] / ".." / "shared" / "corpus"
    )
    if not (corpus / "MANIFEST.tsv").is_file():
        corpus = Path("/work/shared/corpus")
    tenant_count = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    with (corpus / "MANIFEST.tsv").open(encoding="utf-8") as f:
        paths = [r["path"] for r in csv.DictReader(f, delimiter="\t") if r["kind"] == "eml"]
    raws = [(corpus / p).read_bytes() for p in paths]

    started = time.perf_counter()
    policy_set = load_policies(None)
    load_ms = (time.perf_counter() - started) * 1000

    tenants = {f"city{i}.example.lg.jp": None for i in range(tenant_count)}
    envelope = Envelope(
        "Q1",
        "sender@example.com",
        (Recipient("user@city1.example.lg.jp"),),
        client=ClientInfo("192.0.2.10", helo="mx.example.com", forwarded=True),
    )
    settings = AuthSettings("gw.example.lg.jp", dns_timeout=1.0)
    resolver = StaticResolver()

    started = time.perf_counter()
    results = [authenticate(raw, envelope, settings, resolver) for raw in raws]
    auth_ms = (time.perf_counter() - started) * 1000 / len(raws)

    headers = []
    for raw in raws:
        message = email.message_from_bytes(raw)
        headers.append({h: _decoded(message.get(h)) for h in HEADERS if message.get(h)})
    policy = policy_set.for_recipients(["city1.example.lg.jp"], tenants)
    policy.decide(Report("Q1"), envelope, headers[0])  # build the confusables table once
    started = time.perf_counter()
    for result, header in zip(results, headers, strict=True):
        policy.decide(Report("Q1", auth=result.summary()), envelope, header, auth=result)
    decide_ms = (time.perf_counter() - started) * 1000 / len(raws)

    print(f"messages: {len(raws)} from {corpus}")
    print(f"load_policies (shipped): {load_ms:.1f} ms")
    print(f"authenticate: {auth_ms:.3f} ms/message (stub DNS)")
    print(f"decide (lgwan-base, {tenant_count} tenants): {decide_ms:.3f} ms/message")


if __name__ == "__main__":
    main()
