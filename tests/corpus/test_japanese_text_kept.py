"""Issue 4: Japanese corpus mail keeps every character of its body text through the gateway.

For each of the 207 corpus mails in a Japanese charset (FLAGS.tsv ``japanese-charset``), the
plain-text body parts are decoded from the input and defanged with the default URL policy;
every character of that text must appear, in order, in what the gateway delivers (which adds
only the notice). Whitespace and quote marks are left out of the comparison: format=flowed
text is legitimately re-flowed (RFC 3676). The decoding of the input is
``gateway.charsets.decode_body``, itself checked against Python's codecs and known samples in
``tests/text/test_charsets_corpus.py``; what this test guards is everything after it:
rebuilding, re-encoding and the notice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.charsets import decode_body
from gateway.framing import examine
from gateway.mime import parse_message
from gateway.report import Verdict
from gateway.sanitizers.urls import UrlPolicy, defang_text
from tests.helpers.pipeline import run, text_parts

pytestmark = pytest.mark.slow


def japanese_mails(corpus: Path) -> list[Path]:
    rows = (corpus / "FLAGS.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [corpus / r.split("\t")[0] for r in rows if "japanese-charset" in r.split("\t")[1]]


def characters(text: str) -> str:
    return "".join(c for c in text if not c.isspace() and c != ">")


def expected_texts(raw: bytes) -> list[str]:
    # The text as the gateway reads it: the canonical form when mail programs disagree about
    # the framing (gateway/framing.py; here a byte order mark before the first field, which
    # made Python's email read the header fields as body text).
    framing = examine(raw)
    parsed = parse_message(framing.canonical if framing.ambiguous else raw)
    texts: list[str] = []
    for part in parsed.root.walk():
        if part.declared_type == "text/plain" and not part.is_attachment and not part.children:
            text = decode_body(part.payload, part.declared_charset).text
            texts.append(characters(defang_text(text, UrlPolicy()).text))
    return [t for t in texts if t]


def test_japanese_corpus_mail_keeps_every_line_of_its_text(corpus: Path):
    paths = japanese_mails(corpus)
    assert len(paths) == 207
    checked = unchanged = held = 0
    problems: list[str] = []
    for path in paths:
        raw = path.read_bytes()
        outcome = run(raw)
        if outcome.message is None or outcome.verdict == Verdict.QUARANTINE:
            held += 1
            continue
        if outcome.message.endswith(raw):
            unchanged += 1  # delivered byte for byte: nothing can have been lost
            continue
        want = expected_texts(raw)
        if not want:
            continue
        got = characters(
            "".join(text for kind, text in text_parts(outcome.message) if kind == "text/plain")
        )
        checked += 1
        missing = [text[:80] for text in want if text not in got]
        if missing:
            problems.append(f"{path.relative_to(corpus)}: {missing}")
    assert problems == []
    assert checked + unchanged > 150, (checked, unchanged, held)
