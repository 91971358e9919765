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

from gateway.auth import auth_settings
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


def test_internal_from_followed_by_a_stray_word_is_held(chain: RedTeamChain):
    """RT-10. ``From: soumu@city.example.lg.jp x``: clients show the internal address (Python's
    modern parser reads ``soumu@city.example.lg.jp``); the gateway's legacy ``parseaddr`` glues
    the word to the domain (``city.example.lg.jpx``), so neither the internal-domain rule nor
    the lookalike rule fires and DMARC is ``none``."""
    outcome = chain.send(message(f"From: soumu@{TENANT} x"), mail_from="bounce@evil.example")
    if outcome.delivered:
        assert shown_sender(outcome.message) != f"soumu@{TENANT}", "spoofed sender delivered"
    assert outcome.was_held


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


@pytest.mark.parametrize(
    "forged",
    [
        '"{id}"; dmarc=pass header.from=city.example.lg.jp',
        '"{id}" (x); dkim=pass',
        "{ID} ; spf=pass",
    ],
    ids=["quoted-authserv-id", "quoted-with-comment", "upper-case-and-space"],
)
def test_forged_results_under_our_authserv_id_are_removed(chain: RedTeamChain, forged: str):
    """RT-17. RFC 8601 section 2.2: the authserv-id is a ``value`` (RFC 2045), a token or a
    quoted-string, so ``"gw.example"`` names the same server as ``gw.example``. A forged
    field in quoted form survived next to ours."""
    ours = auth_settings(chain.gateway.config).authserv_id
    forged = forged.format(id=ours, ID=ours.upper())
    outcome = chain.send(
        f"From: x@partner.example\nAuthentication-Results: {forged}\nTo: {{RCPT}}\n"
        "Subject: ar\n\nhello\n"
    )
    head = outcome.message.split(b"\r\n\r\n", 1)[0].decode()
    fields = [line for line in head.split("\r\n") if line.lower().startswith("authentication-")]
    assert fields == [f"Authentication-Results: {ours};"], fields


def test_internal_from_with_a_quoted_domain_is_held(chain: RedTeamChain):
    """RT-22. ``From: soumu@"city.example.lg.jp"``: our Authentication-Results names
    ``header.from=city.example.lg.jp``, yet the rules' address parser finds no domain (the
    legacy parser returns ``city.example.lg.jp`` without the ``@``), so the internal-domain
    rule does not fire. Clients show the tenant's domain."""
    outcome = chain.send(message(f'From: soumu@"{TENANT}"'), mail_from="bounce@evil.example")
    assert outcome.was_held
