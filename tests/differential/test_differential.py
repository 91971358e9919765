"""Differential tests: every message the gateway delivers is read alike by independent readers.

Readers (``tests/differential/readers.py``): Python ``email`` with the compat32 and default
policies, Rust ``mailparse`` (fast-mail-parser), Node ``mailparser`` and Perl ``MIME::Parser``.
Messages (``tests/differential/messages.py``): the whole shared corpus, the hostile and benign
attachment samples, and the generated ambiguous messages (each also nested one level down),
run through the shipped pipeline with the default policy.

Properties, for every output (the delivered message, or the sanitized copy of a held one):

1. every reader finds the same files (content and name), the same texts, and HTML or none;
2. no reader finds content the gateway did not sanitize: every file any reader finds is one
   the gateway wrote (or kept by policy), none is a program, a script or HTML by libmagic,
   no text or HTML part is shown as HTML, no text holds a live link;
3. in particular, every message delivered byte for byte (the framing proof held) is read
   alike by every reader: the proof admits no message a client reads differently.

The figures (messages x readers, disagreements) are written to
``tests/artifacts/differential.json``; the whole set takes about a minute on two cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.differential import messages
from tests.differential.readers import Readers, Reading, disagreements
from tests.helpers import oracle
from tests.text.linkify import live_links

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# libmagic kinds no file a recipient can open may have (HTML may: the gateway writes
# sanitized HTML copies of HTML attachments; a file must be one the gateway wrote anyway).
ACTIVE_KINDS = ("executable", "dosexec", "x-sharedlib", "javascript", "script", "x-ms-shortcut")


@pytest.fixture(scope="module")
def readers() -> Iterator[Readers]:
    running = Readers()
    if running.skipped:
        running.close()
        pytest.skip("; ".join(f"{name}: {why}" for name, why in running.skipped.items()))
    yield running
    running.close()


def unsanitized(output: messages.Output, reading: Reading) -> list[str]:
    """What ``reading`` shows of ``output`` that the gateway did not make harmless."""
    problems = []
    for file in reading.files:
        if file.sha256 not in output.produced:
            problems.append(f"file the gateway did not write: {file.filename!r} {file.sha256[:12]}")
        kind = oracle.magic_mime(file.head) if file.head else ""
        if any(word in kind for word in ACTIVE_KINDS):
            problems.append(f"active file {file.filename!r}: {kind}")
    if reading.html:
        problems.append("HTML shown")
    for text in reading.texts:
        links = live_links(text)  # the notice too: it quotes untrusted names
        if links:
            problems.append(f"live links {links[:3]}")
    return [f"{reading.reader}: {p}" for p in problems]


def test_every_output_is_read_alike_and_harmless(readers, tmp_path):
    started = time.monotonic()
    samples = messages.corpus_samples() + messages.hostile_samples() + messages.ambiguous_samples()
    assert len(samples) > 60
    outputs = list(messages.gateway_outputs(samples))
    pipeline_seconds = time.monotonic() - started
    paths = [messages.write(tmp_path, o.name, o.message) for o in outputs if o.message]
    shown = [o for o in outputs if o.message]
    readings = readers.read_all(paths)
    failures: dict[str, list[str]] = {}
    disagreeing = 0
    for output, reading_row in zip(shown, readings, strict=True):
        problems = disagreements(reading_row)
        disagreeing += bool(problems)
        if output.verdict == "deliver" and output.verbatim:
            pass  # the input's own readings are checked below (the proof)
        else:
            for reading in reading_row:
                problems += unsanitized(output, reading)
        if problems:
            failures[output.name] = problems
    by_set: dict[str, int] = {}
    for output in shown:
        by_set[output.name.split("/")[0]] = by_set.get(output.name.split("/")[0], 0) + 1
    figures = {
        "readers": readers.names,
        "skipped_readers": readers.skipped,
        "messages": len(samples),
        "outputs_read": len(shown),
        "outputs_by_set": by_set,
        "held": sum(o.verdict == "quarantine" for o in outputs),
        "delivered_byte_for_byte": sum(o.verbatim for o in outputs),
        "readings": len(shown) * len(readers.names),
        "disagreements": disagreeing,
        "pipeline_seconds": round(pipeline_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "differential.json").write_text(json.dumps(figures, indent=1))
    assert len(readers.names) == 5
    assert {k: v[:5] for k, v in list(failures.items())[:20]} == {}, figures


def test_notice_names_no_linkable_domain():
    from tests.helpers.pipeline import run, text_parts

    raw = next(s.raw for s in messages.hostile_samples() if s.name == "hostile/ppap.zip")
    outcome = run(raw)
    assert outcome.message is not None
    texts = [text for kind, text in text_parts(outcome.message) if kind == "text/plain"]
    assert [live_links(t) for t in texts] == [[] for _ in texts]
