"""Issue 11, bypass 2, over real SMTP with the default policy: framing readers disagree about.

Each message hides a program (``invoice.exe``) or an HTML form that Python's ``email`` does not
see and at least one other reader does (``tests/differential/ambiguous.py``; before
``gateway.framing`` the first five were delivered byte for byte, and Node mailparser, Perl
MIME-tools or Rust mailparse showed the program). Now no such message is delivered as sent:
the gateway reads it the way that shows the most structure, so the program is found and held,
and whatever reaches the downstream (or is kept as the sanitized copy of a held message) is
read alike by every reader, none of which sees a program, HTML or a live link.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.framing import FINDING_CODES
from quarantine.sql import ItemQuery
from tests.differential import ambiguous
from tests.differential.readers import Readers, disagreements
from tests.helpers import oracle
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink
from tests.text.linkify import live_links

EXE_SHA256 = hashlib.sha256(ambiguous.EXE).hexdigest()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, SmtpSink]]:
    with SmtpSink() as sink:
        data = tmp_path_factory.mktemp("framing")
        config = make_config(data, downstream=sink.address)
        with RunningGateway(config) as gateway:
            yield gateway, sink


@pytest.fixture(scope="module")
def readers() -> Iterator[Readers]:
    running = Readers()
    yield running
    running.close()


def relay(chain: tuple[RunningGateway, SmtpSink], raw: bytes, recipient: str):
    gateway, sink = chain
    with gateway.smtp() as client:
        client.sendmail("sender@partner.example", [recipient], raw)
    delivered = [m.data for m in sink.messages if m.rcpt_tos == [recipient]]
    store = gateway.server.store
    held = [
        store.get(item.id)
        for item in store.list(ItemQuery(kind="quarantined", limit=1000)).items
        if recipient in item.recipients
    ]
    return delivered, held


def assert_harmless_to_every_reader(output: bytes, readers: Readers, path: Path) -> None:
    path.write_bytes(output)
    [readings] = readers.read_all([path])
    assert len(readings) == len(readers.names)
    assert disagreements(readings) == [], readers.names
    for reading in readings:
        for file in reading.files:
            assert file.sha256 != EXE_SHA256, (reading.reader, file)
            kind = oracle.magic_mime(file.head)
            assert "executable" not in kind, (reading.reader, file)
            assert "dosexec" not in kind, (reading.reader, file)
            assert "html" not in kind, (reading.reader, file)
            assert not file.filename.lower().endswith((".exe", ".html", ".htm")), file
        assert not reading.html, reading.reader
        assert b"<form" not in reading.text.encode().lower(), reading.reader
        assert live_links(reading.text) == [], (reading.reader, reading.text)


def findings_of(delivered: list[bytes], held: list) -> set[str]:
    if held:
        return {f["code"] for f in held[0].report["findings"]}
    message = email.message_from_bytes(delivered[0], policy=email.policy.compat32)
    return {c.strip() for c in str(message.get("X-Mugaika-Findings", "")).split(",") if c.strip()}


@pytest.mark.parametrize("name", list(ambiguous.CASES))
def test_ambiguous_framing_is_never_delivered_as_sent(chain, readers, tmp_path, name):
    raw = ambiguous.build(name)
    recipient = f"{name}@city.example.lg.jp"
    delivered, held = relay(chain, raw, recipient)
    assert len(delivered) + len(held) == 1, "neither delivered nor held"
    outputs = list(delivered)
    if held:
        gateway, _ = chain
        outputs.append(gateway.server.store.sanitized(held[0].summary.id))
    for output in outputs:
        body = output.split(b"\r\n\r\n", 1)[1]
        assert body not in raw, "delivered byte for byte"
        assert_harmless_to_every_reader(output, readers, tmp_path / "out.eml")
    assert findings_of(delivered, held) & set(FINDING_CODES), "no framing finding"


@pytest.mark.parametrize("name", ambiguous.BYPASS_2)
def test_program_behind_ambiguous_framing_is_held(chain, name):
    """The reading that shows the most structure finds the program: the message is held
    with the framing finding and the executable as evidence."""
    delivered, held = relay(chain, ambiguous.build(name), f"held-{name}@city.example.lg.jp")
    assert delivered == []
    [item] = held
    codes = {f["code"] for f in item.report["findings"]}
    assert codes & set(FINDING_CODES)
    assert "EXECUTABLE" in codes
    [record] = [a for a in item.report["attachments"] if a["untrusted_filename"] == "invoice.exe"]
    assert record["sha256"] == EXE_SHA256
    assert record["action"] == "held"


@pytest.mark.parametrize("name", ["space-before-colon-form", "two-content-types-form"])
def test_form_behind_ambiguous_framing_arrives_as_text_with_a_notice(chain, name):
    delivered, held = relay(chain, ambiguous.build(name), f"form-{name}@city.example.lg.jp")
    assert held == []
    [output] = delivered
    message = email.message_from_bytes(output, policy=email.policy.default)
    text = "\n".join(
        part.get_content() for part in message.walk() if part.get_content_type() == "text/plain"
    )
    assert "Please confirm your account." in text  # the form's words, as text
    assert "メールの構造" in text  # the notice says why the message was rebuilt


@pytest.mark.parametrize("name", list(ambiguous.EMBEDDED))
def test_file_encoded_in_text_never_arrives_decodable(chain, readers, tmp_path, name):
    """uuencode without its end line, with tabs or in base64 form used to pass as text,
    and MIME-tools (like Thunderbird) made invoice.exe of what arrived. Now uuencoded, yEnc
    and BinHex files are extracted and held; what does not decode stays text that no reader
    decodes."""
    delivered, held = relay(chain, ambiguous.build_embedded(name), f"{name}@city.example.lg.jp")
    assert len(delivered) + len(held) == 1
    if ambiguous.EMBEDDED[name][1] == "exe":
        [item] = held
        codes = {f["code"] for f in item.report["findings"]}
        assert "EXECUTABLE" in codes
        gateway, _ = chain
        output = gateway.server.store.sanitized(item.summary.id)
    else:
        [output] = delivered
        text = "\n".join(
            part.get_payload(decode=True).decode()
            for part in email.message_from_bytes(output, policy=email.policy.compat32).walk()
            if part.get_content_type() == "text/plain"
        )
        assert "\n =ybegin " in text or "\n (This file must be converted" in text
    assert_harmless_to_every_reader(output, readers, tmp_path / "out.eml")
