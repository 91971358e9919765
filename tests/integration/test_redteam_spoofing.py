"""Red team, sender spoofing of a configured tenant (internal) domain, default policy.

The gateway is configured with one tenant, ``city.example.lg.jp``; mail from the internet
that claims that domain without DMARC pass is held by ``spoofed-internal-from``. The readers
are Python ``email`` (default policy, as a modern client parses an address list). See
``tests/integration/test_redteam_attachments.py`` for the conventions.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator

import pytest

from tests.helpers.redteam import RedTeamChain

pytestmark = pytest.mark.slow

TENANT = "city.example.lg.jp"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedTeamChain]:
    tenants = {TENANT: {"name": "テスト市"}}
    with RedTeamChain(tmp_path_factory.mktemp("redteam-spoofing"), tenants=tenants) as running:
        yield running


def message(headers: str) -> str:
    return f"{headers}\nTo: {{RCPT}}\nSubject: 至急ご確認ください\n\n振込先の変更をお願いします。\n"


def shown_sender(data: bytes) -> str:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return str(parsed["From"].addresses[0].addr_spec)


@pytest.mark.xfail(strict=True, reason="redteam: RT-10 From with a trailing word passes")
def test_internal_from_followed_by_a_stray_word_is_held(chain: RedTeamChain):
    """RT-10. ``From: soumu@city.example.lg.jp x``: clients show the internal address (Python's
    modern parser reads ``soumu@city.example.lg.jp``); the gateway's legacy ``parseaddr`` glues
    the word to the domain (``city.example.lg.jpx``), so neither the internal-domain rule nor
    the lookalike rule fires and DMARC is ``none``."""
    outcome = chain.send(message(f"From: soumu@{TENANT} x"), mail_from="bounce@evil.example")
    if outcome.delivered:
        assert shown_sender(outcome.message) != f"soumu@{TENANT}", "spoofed sender delivered"
    assert outcome.was_held


@pytest.mark.xfail(strict=True, reason="redteam: RT-11 internal Sender: is not checked")
def test_internal_sender_header_on_external_mail_is_held(chain: RedTeamChain):
    """RT-11. Outlook shows ``Sender`` first ("soumu@city… on behalf of x@evil…"); the rules
    look at From, Reply-To and the envelope only."""
    outcome = chain.send(
        message(f"Sender: soumu@{TENANT}\nFrom: x@evil.example"), mail_from="x@evil.example"
    )
    assert outcome.was_held


def test_plain_internal_from_is_held(chain: RedTeamChain):
    """Control (passes today): the plain spoof is held."""
    outcome = chain.send(message(f"From: soumu@{TENANT}"), mail_from="bounce@evil.example")
    assert outcome.was_held
