"""Mugaika as a relay hop between two real Postfix instances (deploy/postfix/relay-hop.*).

internet client (127.0.0.5) → internet-side Postfix → Mugaika → LGWAN-side Postfix → Maildir

Both Postfix instances run from Debian's package under private configuration directories on
loopback ports, with the ``main.cf``/``master.cf`` lines of ``deploy/postfix/`` verbatim. The
gateway keeps the default XFORWARD: the LGWAN side logs the internet client as
``orig_client=`` and Mugaika's own ``Received:`` names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.postfix import PostfixInstance, deploy_snippet, free_port, is_root, wait_until
from tests.integration.mails import (
    DEFANGED,
    INTERNET_CLIENT,
    INTERNET_HELO,
    LINK,
    link_mail,
    mugaika,
    program_mail,
    submit,
)

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.slow,
    pytest.mark.skipif(not is_root(), reason="a private Postfix master must run as root"),
]

# The LGWAN side refuses one address itself, so a permanent downstream refusal is real.
LGWAN_REFUSES = (
    "smtpd_recipient_restrictions = check_recipient_access "
    "inline:{{gone@example.lg.jp=550 5.1.1 No such user here}}, "
    "permit_mynetworks, reject_unauth_destination\n"
)


class Chain:
    def __init__(self, front: PostfixInstance, back: PostfixInstance, front_port: int) -> None:
        self.front = front
        self.back = back
        self.front_port = front_port
        self.gateway: RunningGateway | None = None
        self.data_dir = Path()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    front_port, back_port, gateway_port = free_port(), free_port(), free_port()
    back = PostfixInstance(
        "lgwan",
        main_cf=deploy_snippet("lgwan-side.main.cf") + LGWAN_REFUSES,
        master_cf=f"127.0.0.1:{back_port} inet n - n - - smtpd\n",
        mailbox_domains="example.lg.jp",
    )
    main_cf = deploy_snippet("relay-hop.main.cf", p2525=gateway_port).replace(
        "city-a.example.lg.jp city-b.example.lg.jp", "example.lg.jp"
    )
    front = PostfixInstance(
        "internet",
        main_cf=main_cf,
        master_cf=f"127.0.0.1:{front_port} inet n - n - - smtpd\n"
        + deploy_snippet("relay-hop.master.cf"),
    )
    data_dir = tmp_path_factory.mktemp("gateway")
    config = make_config(
        data_dir,
        listen=f"127.0.0.1:{gateway_port}",
        downstream=f"127.0.0.1:{back_port}",
        **{"smtp.accepted_domains": ["example.lg.jp"]},
    )
    with back, front, RunningGateway(config) as gateway:
        running = Chain(front, back, front_port)
        running.gateway = gateway
        running.data_dir = data_dir
        yield running


def _by_id(chain: Chain, message_id: str) -> list:
    return [m for m in chain.back.delivered() if m["Message-ID"] == message_id]


def test_mail_arrives_sanitized_with_the_internet_client_named(chain: Chain) -> None:
    submit(chain.front_port, link_mail("<hop-1@internet.example>"))
    assert wait_until(lambda: _by_id(chain, "<hop-1@internet.example>")), chain.front.maillog()
    [delivered] = _by_id(chain, "<hop-1@internet.example>")
    body = delivered.get_body(("plain",)).get_content()
    assert DEFANGED in body
    assert LINK not in delivered.as_string()
    received = delivered.get_all("Received")
    # Newest first: the LGWAN side (from the gateway), Mugaika (from the internet client as
    # the internet-side Postfix passed it by XFORWARD), the internet side (from the client).
    assert "(localhost [127.0.0.1])" in received[0]
    assert received[1].startswith(f"from {INTERNET_HELO} (unknown [{INTERNET_CLIENT}])")
    assert "(Mugaika)" in received[1]
    assert received[2].startswith(f"from {INTERNET_HELO} (unknown [{INTERNET_CLIENT}])")
    # The LGWAN side believed the gateway's XFORWARD and logged the internet client.
    assert f"orig_client=unknown[{INTERNET_CLIENT}]" in chain.back.maillog()


def test_quarantined_mail_does_not_arrive_and_is_listed(chain: Chain) -> None:
    submit(chain.front_port, program_mail("<hop-held@internet.example>"))
    assert wait_until(lambda: "Held for review as" in chain.front.maillog()), chain.front.maillog()
    listed = mugaika(
        "quarantine",
        "list",
        "--json",
        "--data-dir",
        str(chain.data_dir),
        "--search",
        "hop-held@internet.example",
    )
    [item] = json.loads(listed.stdout)
    assert item["status"] == "held"
    assert item["id"] in chain.front.maillog()  # the reference Postfix logged with 250
    assert _by_id(chain, "<hop-held@internet.example>") == []


def test_lgwan_outage_is_deferred_and_delivered_once(chain: Chain) -> None:
    chain.back.stop()
    try:
        submit(chain.front_port, link_mail("<hop-outage@internet.example>"))
        assert wait_until(
            lambda: (
                "451 4.4.1" in chain.front.maillog() and "status=deferred" in chain.front.maillog()
            )
        ), chain.front.maillog()
    finally:
        chain.back.start()
    chain.front.flush()
    assert wait_until(lambda: _by_id(chain, "<hop-outage@internet.example>")), chain.front.maillog()
    assert wait_until(chain.front.queue_is_empty)
    assert len(_by_id(chain, "<hop-outage@internet.example>")) == 1


def test_lgwan_refusal_bounces_with_the_lgwan_text(chain: Chain) -> None:
    submit(chain.front_port, link_mail("<hop-gone@internet.example>"), rcpt="gone@example.lg.jp")
    assert wait_until(lambda: "status=bounced" in chain.front.maillog()), chain.front.maillog()
    assert "said: 550 5.1.1 <gone@example.lg.jp>: Recipient address rejected: No such user" in (
        chain.front.maillog()
    )
    assert _by_id(chain, "<hop-gone@internet.example>") == []
