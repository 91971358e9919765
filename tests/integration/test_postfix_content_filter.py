"""Mugaika as Postfix's after-queue content filter (deploy/postfix/content-filter.*).

internet client (127.0.0.5) → Postfix smtpd → queue → Mugaika (a real ``mugaika serve``
process) → the re-injection smtpd on its own port → queue → virtual(8) → Maildir

One Postfix instance from Debian's package, under a private configuration directory on
loopback ports, with the lines of ``deploy/postfix/content-filter.*`` verbatim. The gateway
uses ``delivery.forward_client: xclient``, so the re-injection smtpd's ``Received:`` and log
name the internet client, not the gateway (with XFORWARD Postfix logs it as ``orig_client=``
only: its Received: always names the connecting host).
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.helpers.postfix import PostfixInstance, deploy_snippet, free_port, is_root, wait_until
from tests.helpers.process import GatewayProcess
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


class Filter:
    """The running set-up; ``restart`` replaces the gateway process on the same port."""

    def __init__(self, postfix: PostfixInstance, smtpd_port: int, args: list[str]) -> None:
        self.postfix = postfix
        self.smtpd_port = smtpd_port
        self.args = args
        self.gateway = GatewayProcess(*args).start()

    def stop(self, signum: int) -> None:
        if signum == signal.SIGKILL:
            self.gateway.kill()  # the whole process group, workers included
        else:
            self.gateway.signal(signum)
        self.gateway.wait(90)

    def start(self) -> None:
        self.gateway = GatewayProcess(*self.args).start()

    def arrived(self, prefix: str) -> Counter[str]:
        return Counter(i for i in self.postfix.delivered_ids() if i.startswith(prefix))


@pytest.fixture(scope="module")
def content_filter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filter]:
    smtpd_port, reinject_port, gateway_port = free_port(), free_port(), free_port()
    master_cf = deploy_snippet("content-filter.master.cf").replace(
        "127.0.0.1:10025", f"127.0.0.1:{reinject_port}"
    )
    postfix = PostfixInstance(
        "filter",
        main_cf=deploy_snippet("content-filter.main.cf", p10024=gateway_port),
        master_cf=f"127.0.0.1:{smtpd_port} inet n - n - - smtpd\n" + master_cf,
        mailbox_domains="example.lg.jp",
    )
    data_dir = tmp_path_factory.mktemp("gateway")
    config = data_dir / "mugaika.yaml"
    config.write_text(
        "workers: {count: 1}\n"
        "delivery: {forward_client: xclient}\n"
        "smtp: {accepted_domains: [example.lg.jp]}\n"
    )
    args = [
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{gateway_port}",
        "--downstream",
        f"127.0.0.1:{reinject_port}",
    ]
    with postfix:
        running = Filter(postfix, smtpd_port, args)
        try:
            yield running
        finally:
            running.gateway.kill()


def test_sanitized_mail_names_the_internet_client_in_every_received(
    content_filter: Filter,
) -> None:
    postfix = content_filter.postfix
    submit(content_filter.smtpd_port, link_mail("<cf-1@internet.example>"))
    assert wait_until(lambda: content_filter.arrived("<cf-1@")), postfix.maillog()
    [delivered] = [m for m in postfix.delivered() if m["Message-ID"] == "<cf-1@internet.example>"]
    assert DEFANGED in delivered.get_body(("plain",)).get_content()
    assert LINK not in delivered.as_string()
    received = delivered.get_all("Received")
    # The re-injection smtpd (newest), Mugaika, the public smtpd: all name the client.
    assert len(received) == 3
    for header in received:
        assert header.startswith(f"from {INTERNET_HELO} (unknown [{INTERNET_CLIENT}])"), header
    assert "[127.0.0.1]" not in " ".join(received)
    # And the re-injection smtpd logged the client itself, not the gateway.
    reinjected = [line for line in postfix.maillog().splitlines() if ": client=" in line]
    assert len(reinjected) >= 2
    assert all(f"client=unknown[{INTERNET_CLIENT}]" in line for line in reinjected), reinjected


def test_quarantined_mail_does_not_arrive_and_is_listed(content_filter: Filter) -> None:
    postfix = content_filter.postfix
    submit(content_filter.smtpd_port, program_mail("<cf-held@internet.example>"))
    assert wait_until(lambda: "Held for review as" in postfix.maillog()), postfix.maillog()
    data_dir = content_filter.args[content_filter.args.index("--data-dir") + 1]
    listed = mugaika(
        "quarantine",
        "list",
        "--json",
        "--data-dir",
        data_dir,
        "--search",
        "cf-held@internet.example",
    )
    [item] = json.loads(listed.stdout)
    assert item["status"] == "held"
    assert f"Held for review as {item['id']}" in postfix.maillog()
    assert content_filter.arrived("<cf-held@") == Counter()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill"])
def test_gateway_restarted_mid_traffic_loses_nothing(content_filter: Filter, signum: int) -> None:
    postfix = content_filter.postfix
    prefix = f"<cf-{signum.name}-"
    count = 30
    earlier = sum("verdict=" in line for line in content_filter.gateway.lines)
    for n in range(count):
        submit(content_filter.smtpd_port, link_mail(f"{prefix}{n}@internet.example>"))

    # Restart while Postfix is still handing the burst to the gateway: as soon as the gateway
    # itself has decided the first message (the mailbox lags behind it, so waiting for an
    # arrival there let a fast machine finish the burst before the restart).
    def decided() -> int:
        return sum("verdict=" in line for line in content_filter.gateway.lines) - earlier

    deadline = time.monotonic() + 30
    while decided() < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    content_filter.stop(signum)
    assert decided() < count, "the burst was over before the restart: nothing was proved"
    content_filter.start()
    postfix.flush()
    assert wait_until(lambda: len(content_filter.arrived(prefix)) == count, 60), postfix.maillog()[
        -3000:
    ]
    assert wait_until(postfix.queue_is_empty, 30)
    arrived = content_filter.arrived(prefix)
    assert set(arrived) == {f"{prefix}{n}@internet.example>" for n in range(count)}
    if signum == signal.SIGTERM:
        # A graceful restart finishes what is in flight: every message exactly once.
        assert set(arrived.values()) == {1}, arrived
    else:
        # SIGKILL between the downstream's 250 and ours may duplicate (RFC 5321 6.1), at most
        # one per session in flight (the transport's process limit is 10); never lose.
        assert sum(arrived.values()) - count <= 10, arrived
