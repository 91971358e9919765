"""Two gateway nodes sharing one PostgreSQL quarantine, fed by one Postfix that balances
across them and fails over (deploy/postfix/scale-out.*, deploy/README.md).

internet client → Postfix ─randmap─► node A ─┐
                           └fallback► node B ─┴─► LGWAN-side server (a recording SMTP sink)
                                      both ──► one PostgreSQL quarantine (metadata and bytes)

The nodes are real ``mugaika serve`` processes with their own data directories; the database
is a throw-away one on 127.0.0.1:5432. Node A is killed for good (SIGKILL, its data directory
deleted) and everything it held is still readable and released, once, from node B.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.postfix import PostfixInstance, deploy_snippet, free_port, is_root, wait_until
from tests.helpers.postgres import temporary_database
from tests.helpers.process import GatewayProcess
from tests.helpers.smtp_sink import SmtpSink
from tests.integration.mails import link_mail, mugaika, program_mail, submit

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not is_root(), reason="a private Postfix master must run as root"),
]

ROOT = Path(__file__).resolve().parents[2]


class Node:
    def __init__(self, name: str, root: Path, url: str, downstream: str) -> None:
        self.name = name
        self.data_dir = root / name
        self.data_dir.mkdir()
        self.config = root / f"{name}.yaml"
        self.config.write_text(
            # The downstream in the file, not only on serve's command line: releases made
            # with the CLI on this node must go where the node delivers.
            f"workers: {{count: 1}}\nquarantine: {{url: '{url}'}}\ndownstream: '{downstream}'\n"
            "smtp: {accepted_domains: [example.lg.jp]}\n"
        )
        self.port = free_port()
        self.process = GatewayProcess(
            "--config",
            str(self.config),
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
        )

    def options(self) -> list[str]:
        return ["--config", str(self.config), "--data-dir", str(self.data_dir)]

    def handled(self, verdict: str) -> int:
        return sum(f"verdict={verdict}" in line for line in self.process.lines)

    def destroy(self) -> None:
        """Node A is gone for good: processes killed, its disk wiped."""
        self.process.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Cluster:
    def __init__(self, postfix: PostfixInstance, port: int, a: Node, b: Node, sink: SmtpSink):
        self.postfix = postfix
        self.port = port
        self.a = a
        self.b = b
        self.sink = sink

    def arrived(self, prefix: str) -> Counter[str]:
        ids = Counter()
        for message in self.sink.messages:
            for line in message.data.split(b"\r\n"):
                if line.lower().startswith(b"message-id: " + prefix.encode()):
                    ids[line.split(b" ", 1)[1].decode()] += 1
        return ids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    with temporary_database() as url, SmtpSink() as sink:
        a = Node("a", root, url, sink.address)
        b = Node("b", root, url, sink.address)
        # A configured URL is never migrated implicitly: the operator's step, once.
        mugaika("db", "upgrade", *a.options())
        starters = [threading.Thread(target=n.process.start) for n in (a, b)]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join(90)
        assert a.process.port == a.port, a.process.output()
        assert b.process.port == b.port, b.process.output()
        front_port = free_port()
        nodes = {"192.0.2.11": a.port, "192.0.2.12": b.port}
        main_cf = deploy_snippet("scale-out.main.cf").replace(
            "city-a.example.lg.jp city-b.example.lg.jp", "example.lg.jp"
        )
        main_cf = main_cf.replace(
            "city-a.example.lg.jp=node, city-b.example.lg.jp=node", "example.lg.jp=node"
        )
        master_cf = deploy_snippet("scale-out.master.cf")
        for documented, port in nodes.items():
            main_cf = main_cf.replace(f"[{documented}]:2525", f"[127.0.0.1]:{port}")
            master_cf = master_cf.replace(f"[{documented}]:2525", f"[127.0.0.1]:{port}")
        postfix = PostfixInstance(
            "balancer",
            main_cf=main_cf,
            master_cf=f"127.0.0.1:{front_port} inet n - n - - smtpd\n" + master_cf,
        )
        try:
            with postfix:
                yield Cluster(postfix, front_port, a, b, sink)
        finally:
            a.process.kill()
            b.process.kill()


def test_postfix_balances_across_both_nodes(cluster: Cluster) -> None:
    count = 16
    for n in range(count):
        submit(cluster.port, link_mail(f"<lb-{n}@internet.example>"), rcpt=f"u{n}@example.lg.jp")
    assert wait_until(lambda: len(cluster.arrived("<lb-")) == count, 60), cluster.postfix.maillog()[
        -3000:
    ]
    assert set(cluster.arrived("<lb-").values()) == {1}
    # Each node's verdict lines reach us through its log pipe, a moment after its reply.
    assert wait_until(
        lambda: cluster.a.handled("delivered") + cluster.b.handled("delivered") == count
    )
    a, b = cluster.a.handled("delivered"), cluster.b.handled("delivered")
    assert a > 0, "node A got nothing: Postfix did not balance"
    assert b > 0, "node B got nothing: Postfix did not balance"


def test_held_through_a_is_released_from_b_exactly_once_with_a_gone(cluster: Cluster) -> None:
    original = program_mail("<held-on-a@internet.example>")
    with smtplib.SMTP("127.0.0.1", cluster.a.port, timeout=60) as client:
        client.sendmail("someone@internet.example", ["user@example.lg.jp"], original)
    # The verdict line reaches us through the node's log pipe, a moment after the reply.
    assert cluster.a.process.wait_for_output("verdict=quarantined", 30)
    [reference] = [
        line.split("ref=")[1].split()[0]
        for line in cluster.a.process.lines
        if "verdict=quarantined" in line
    ]
    # The bytes went to the shared database, not to node A's disk.
    assert not any((cluster.a.data_dir / "blobs").rglob("*"))
    cluster.a.destroy()

    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "quarantine",
            "export",
            reference,
            *cluster.b.options(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    assert exported.stdout == original

    # Two admins on node B release it at the same moment: one sends, one is refused.
    release = [sys.executable, "-m", "gateway.cli", "quarantine", "release", reference]
    release += ["--target", "original", "--reason", "checked with the recipient"]
    release += cluster.b.options()
    racers = [
        subprocess.Popen(release, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        for _ in range(2)
    ]
    codes = sorted(p.wait(120) for p in racers)
    assert codes == [0, 1], [p.stderr.read() for p in racers if p.stderr]
    assert wait_until(
        lambda: cluster.arrived("<held-on-a@") == Counter({"<held-on-a@internet.example>": 1})
    ), [m.data[:600] for m in cluster.sink.messages[-2:]]
    shown = json.loads(
        mugaika("quarantine", "show", reference, "--json", *cluster.b.options()).stdout
    )
    assert shown["status"] == "released"


def test_postfix_fails_over_when_a_node_is_gone(cluster: Cluster) -> None:
    cluster.a.destroy()  # idempotent: node A stays down for the rest of the module
    before = cluster.b.handled("delivered")
    count = 12
    for n in range(count):
        submit(cluster.port, link_mail(f"<fo-{n}@internet.example>"), rcpt=f"v{n}@example.lg.jp")
    assert wait_until(lambda: len(cluster.arrived("<fo-")) == count, 60), cluster.postfix.maillog()[
        -3000:
    ]
    assert set(cluster.arrived("<fo-").values()) == {1}
    assert wait_until(lambda: cluster.b.handled("delivered") - before == count)
    assert cluster.postfix.queue_is_empty()
    # Postfix did pick the dead node for some of them and went on to the other one.
    refused = f"connect to 127.0.0.1[127.0.0.1]:{cluster.a.port}: Connection refused"
    assert refused in cluster.postfix.maillog()
