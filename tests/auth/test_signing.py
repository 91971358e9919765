"""Signing happens in the signer process only (issue 11), and ``auth.dkim_sign`` signs what the
gateway rebuilt (issue 12 item 6): real gateway, real SMTP, signatures verified by dkimpy with
the public keys served by a real DNS server on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from auth_helpers import rsa_key
from dns_server import DnsServer

from gateway import wire
from gateway.auth import DnsResolver
from gateway.signer import MAX_SIGNATURE_BYTES, Signatures
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.pipeline import body_text
from tests.helpers.smtp_sink import SmtpSink

AUTHSERV = "gw.example.lg.jp"
TENANT = "city.example.lg.jp"


def _message(body: str) -> bytes:
    return (
        f"From: Sender <sender@example.com>\r\nTo: user@{TENANT}\r\nSubject: signing\r\n"
        "Message-ID: <signing@example.com>\r\nDate: Mon, 01 Jun 2026 09:00:00 +0900\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    files = {}
    for name in ("arc", "dkim"):
        files[name] = folder / f"{name}.pem"
        files[name].write_bytes(rsa_key(f"signing-{name}")[0])
    return files


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    zone = {
        (f"arc2026._domainkey.{TENANT}", "TXT"): [rsa_key("signing-arc")[1]],
        (f"mugaika._domainkey.{TENANT}", "TXT"): [rsa_key("signing-dkim")[1]],
    }
    with DnsServer(zone) as server:
        yield server


def _dnsfunc(server: DnsServer):  # type: ignore[no-untyped-def]
    resolver = DnsResolver(timeout=2, nameservers=["127.0.0.1"], port=server.port)

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        answers = resolver.lookup(name.decode(), "TXT")
        return "".join(answers).encode() if answers else None

    return lookup


@pytest.fixture
def gateway(tmp_path: Path, sink: SmtpSink, keys: dict[str, Path]) -> Iterator[RunningGateway]:
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{
            "smtp.accepted_domains": [TENANT],
            "auth.authserv_id": AUTHSERV,
            # The gateway's own checks find no DNS (nothing answers on 127.0.0.1:53): every
            # result is temperror or none, which is enough to have something to seal.
            "auth.nameservers": ["127.0.0.1"],
            "auth.dns_timeout": 0.5,
            "auth.spf_lifetime": 1.0,
            "auth.arc_seal": {
                "domain": TENANT,
                "selector": "arc2026",
                "key_file": str(keys["arc"]),
            },
            "auth.dkim_sign": [
                {"domain": TENANT, "selector": "mugaika", "key_file": str(keys["dkim"])}
            ],
        },
    )
    with RunningGateway(config) as running:
        yield running


def _send(gateway: RunningGateway, raw: bytes) -> None:
    with gateway.smtp() as client:
        client.sendmail("sender@example.com", [f"user@{TENANT}"], raw)


def _our_dkim_domains(message: bytes) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0]
    return re.findall(rb"(?im)^DKIM-Signature:(?:.|\r\n[ \t])*?\bd=([^;\s]+)", head)


def test_a_rebuilt_message_is_dkim_signed_and_arc_sealed_and_both_verify(
    gateway: RunningGateway, sink: SmtpSink, dns: DnsServer
) -> None:
    _send(gateway, _message("Please see https://evil.example/login now."))
    delivered = sink.messages[0].data
    assert "hxxps://evil[.]example/login" in body_text(delivered)  # the body was rebuilt
    assert _our_dkim_domains(delivered) == [TENANT.encode()]
    lookup = _dnsfunc(dns)
    assert dkim.verify(delivered, dnsfunc=lookup)
    cv, sets, why = dkim.arc_verify(delivered, dnsfunc=lookup)
    assert (cv, why) == (dkim.CV_Pass, "success")
    assert sets[0]["as-domain"] == TENANT.encode()
    assert f"{AUTHSERV};".encode() in sets[0]["aar-value"]
    # Our summary fields are covered by the signature: a server behind us can trust them.
    signature = next(v for n, v in dkim.DKIM(delivered).headers if n == b"DKIM-Signature")
    assert b"x-mugaika-verdict" in signature.lower()
    # Tampering with what we signed breaks it.
    tampered = delivered.replace(b"Subject: signing", b"Subject: signinG")
    assert not dkim.verify(tampered, dnsfunc=lookup)


def test_a_message_delivered_unchanged_is_sealed_but_not_signed_by_us(
    gateway: RunningGateway, sink: SmtpSink, dns: DnsServer
) -> None:
    raw = _message("Nothing to change here.")
    _send(gateway, raw)
    delivered = sink.messages[0].data
    assert delivered.endswith(raw.split(b"\r\n\r\n", 1)[1])  # the body as sent
    assert _our_dkim_domains(delivered) == []  # the sender's own signature is what counts
    cv, _, _ = dkim.arc_verify(delivered, dnsfunc=_dnsfunc(dns))
    assert cv == dkim.CV_Pass


def _memory_contains(pid: int, needles: list[bytes]) -> bool:
    """True when any of ``needles`` is in a readable mapping of process ``pid``."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    longest = max(len(n) for n in needles)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            previous = b""
            for offset in range(start, end, 1 << 24):
                try:
                    mem.seek(offset)
                    chunk = mem.read(min(1 << 24, end - offset))
                except OSError:
                    break
                window = previous + chunk
                if any(needle in window for needle in needles):
                    return True
                previous = chunk[-longest:]
    return False


def _key_material(path: Path) -> list[bytes]:
    """Lines of the PEM body: the text every copy of the key file contains."""
    lines = path.read_bytes().splitlines()
    return [line for line in lines[1:-1] if len(line) == 64][:3]


def test_no_worker_process_holds_the_signing_keys(
    gateway: RunningGateway, sink: SmtpSink, keys: dict[str, Path]
) -> None:
    _send(gateway, _message("Please see https://evil.example/login now."))
    assert _our_dkim_domains(sink.messages[0].data) == [TENANT.encode()]  # keys were used
    needles = _key_material(keys["arc"]) + _key_material(keys["dkim"])
    server = gateway.server
    assert server.pool is not None
    workers = server.pool.pids()
    assert workers
    for pid in workers:
        assert not _memory_contains(pid, needles), f"worker {pid} holds key material"
    # The scan finds a key where one is: in the signer process (and only one process).
    assert server.signer is not None
    signers = server.signer.pids()
    assert len(signers) == 1
    assert _memory_contains(signers[0], needles)
    assert not set(signers) & set(workers)


# --- what the main process accepts from the signer ------------------------------------------


def _frame(fields: bytes) -> wire.Frame:
    return wire.Frame({"size": len(fields), "problems": []}, (fields,))


def test_signature_fields_are_accepted() -> None:
    fields = b"ARC-Seal: i=1; a=rsa-sha256;\r\n\tb=abc\r\nDKIM-Signature: v=1; d=x\r\n"
    assert Signatures.from_frame(_frame(fields)).fields == fields


@pytest.mark.parametrize(
    "fields",
    [
        b"X-Mugaika-Verdict: deliver\r\n",  # not a signature field
        b"DKIM-Signature: v=1\r\n\r\nMIME-Version: 1.0\r\n",  # ends the header block
        b"DKIM-Signature: v=1\nX-Injected: 1\n",  # bare LF (a second field to readers)
        b"DKIM-Signature: v=1\rContent-Type: multipart/mixed\r\n",  # bare CR
        b"DKIM-Signature: v=1",  # no line end
        b"DKIM-Signature: v=1\x00\r\n",  # NUL
    ],
)
def test_anything_but_signature_fields_from_the_signer_is_refused(fields: bytes) -> None:
    with pytest.raises(wire.WireError, match="signature"):
        Signatures.from_frame(_frame(fields))


def test_oversized_signatures_are_refused_before_use() -> None:
    big = b"DKIM-Signature: " + b"a" * MAX_SIGNATURE_BYTES + b"\r\n"
    with pytest.raises(wire.WireError, match="signatures: size"):
        Signatures.from_frame(_frame(big))
    with pytest.raises(wire.WireError, match="not 0"):
        Signatures.from_frame(wire.Frame({"size": 0, "problems": []}, (b"DKIM-Signature: x\r\n",)))
