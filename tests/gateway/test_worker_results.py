"""What a worker or a sanitizer child sends back is checked before anything uses it (issue 11).

``gateway.wire`` frames and the ``from_frame``/``from_dict`` of each type that crosses:
``Outcome`` (worker → main process), ``SanitizeResult`` (sanitizer child → worker),
``Report`` and the quarantine ``Summary`` inside an outcome. Each refusal here is a
``WireError``, which the pool turns into a killed worker and a failed message
(``tests/gateway/test_workers.py`` shows that end to end).
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pytest

from gateway import wire
from gateway.errors import CannotSanitize
from gateway.pipeline import Outcome
from gateway.replies import Reply
from gateway.report import AttachmentRecord, Report, Verdict
from gateway.sanitizers.base import OutputFile, SanitizeResult
from gateway.workers import WorkerLimits, WorkerPool, WorkerProtocolError, run_isolated
from quarantine.summary import MAX_PREVIEW_CHARS, PreviewPart, Summary
from tests.gateway.compromised import forge_from_sanitizer_child
from tests.helpers.pipeline import run as run_pipeline


def _outcome(**changes: Any) -> Outcome:
    report = Report(queue_id="Q1", reference_id="20261125-ABCDEFGH")
    report.add_finding("PDF_JAVASCRIPT", "2", "OpenAction")
    report.add_action("urls-defanged", "1", count=3)
    report.attachments.append(
        AttachmentRecord("2", "a.pdf", "application/pdf", "application/pdf", "0" * 64, 10)
    )
    fields: dict[str, Any] = {
        "verdict": Verdict.DELIVER,
        "report": report,
        "message": b"Subject: x\r\n\r\nbody\r\n",
        "summary": Summary(
            "x",
            "a@example.com",
            "<m@x>",
            (("Subject", "x"),),
            (PreviewPart("1", "text/plain", "", 4, "body"),),
        ),
        "rebuilt": True,
    }
    fields.update(changes)
    return Outcome(**fields)


def _round_trip(outcome: Outcome) -> Outcome:
    return Outcome.from_frame(wire.decode(wire.encode(outcome.to_frame())))


def _tampered(outcome: Outcome, change: Any) -> wire.Frame:
    """The outcome's frame after ``change(header)`` edited its JSON, as a forger would."""
    frame = wire.decode(wire.encode(outcome.to_frame()))
    header = json.loads(json.dumps(frame.header))
    change(header)
    return wire.Frame(header, frame.blobs)


def test_an_outcome_round_trips_exactly() -> None:
    outcome = _outcome()
    assert _round_trip(outcome) == outcome
    reject = _outcome(verdict=Verdict.REJECT, message=None, reply=Reply(550, "5.7.1", "Nein"))
    assert _round_trip(reject) == reject


def test_a_real_pipeline_outcome_round_trips() -> None:
    outcome = run_pipeline(
        b"From: a@example.com\r\nSubject: =?UTF-8?B?5pel5pys6Kqe?=\r\n\r\nsee https://x.example/\r\n"
    )
    again = _round_trip(outcome)
    assert again == outcome
    assert again.summary.subject == "日本語"
    assert again.rebuilt


def _set(path: str, value: Any) -> Any:
    def change(header: dict[str, Any]) -> None:
        node: Any = header
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


@pytest.mark.parametrize(
    ("outcome", "change", "problem"),
    [
        # A worker must not answer the sender 250 for a message nobody keeps.
        (
            _outcome(verdict=Verdict.REJECT, message=None, reply=Reply(550, "5.7.1", "x")),
            _set("reply.code", 250),
            "reply.code",
        ),
        (
            _outcome(verdict=Verdict.REJECT, message=None, reply=Reply(550, "5.7.1", "x")),
            _set("reply.text", "ok\r\n250 2.0.0 forged"),
            "reply.text",
        ),
        (
            _outcome(),
            _set("reply", {"code": 550, "enhanced": "5.7.1", "text": "x"}),
            "a reply with",
        ),
        (_outcome(), _set("verdict", "reject"), "a message with verdict reject"),
        (_outcome(), _set("verdict", "DELIVER"), "verdict"),
        (_outcome(), _set("message", False), "message flag"),
        (_outcome(), _set("rebuilt", 1), "rebuilt"),  # strict: no 1 for True
        (_outcome(), _set("report.actions.0.count", 10**12), "actions.0.count"),
        (_outcome(), _set("report.attachments.0.size", -1), "attachments.0.size"),
        (_outcome(), _set("report.findings.0.code", "X" * 300), "findings.0.code"),
        (_outcome(), _set("report.findings.0.detail", 7), "findings.0.detail"),
        (_outcome(), _set("report.extra", "field"), "extra"),
        (_outcome(), _set("report.verdict", "release"), "report: verdict"),
        (_outcome(), _set("summary.parts.0.text", "x" * (MAX_PREVIEW_CHARS + 1)), "parts.0.text"),
        (_outcome(), _set("summary.parts.0.size", 1 << 50), "parts.0.size"),
        (_outcome(), _set("summary.headers", [{"name": "a", "value": "b"}] * 201), "headers"),
        (_outcome(), _set("summary.subject", None), "subject"),
    ],
)
def test_a_dishonest_outcome_is_refused(outcome: Outcome, change: Any, problem: str) -> None:
    with pytest.raises(wire.WireError, match=problem):
        Outcome.from_frame(_tampered(outcome, change))


def test_a_preview_longer_in_total_than_its_bound_is_refused() -> None:
    half = "x" * (MAX_PREVIEW_CHARS // 2 + 1)
    parts = tuple(PreviewPart(str(i), "text/plain", "", 1, half) for i in range(2))
    with pytest.raises(wire.WireError, match="preview of"):
        _round_trip(_outcome(summary=Summary(parts=parts)))


def test_undecodable_bytes_in_strings_cross_as_replacement_characters() -> None:
    # An honest worker's strings may carry bytes that did not decode (surrogateescape) and
    # NUL; they arrive as valid text the database takes.
    outcome = _outcome(summary=Summary(subject="a\udcffb\x00c"))
    outcome.report.add_finding("FILENAME_BIDI_CONTROL", "2", "name\udc80.exe")
    again = _round_trip(outcome)
    assert again.summary.subject == "a?b\ufffdc"
    assert again.report.findings[-1].detail == "name?.exe"


def test_a_forged_lone_surrogate_is_refused() -> None:
    frame = _tampered(_outcome(), _set("summary.subject", "a\ud800b"))
    with pytest.raises(wire.WireError, match="subject"):
        Outcome.from_frame(frame)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"PICKLE", "bad magic"),
        (wire.MAGIC + struct.pack(">I", 10) + b"{}", "past the end"),
        (wire.MAGIC + struct.pack(">I", 2) + b"{}", "truncated"),
        (wire.encode(wire.Frame({})) + b"x", "after the frame"),
        (wire.MAGIC + struct.pack(">I", 3) + b"[1]" + struct.pack(">I", 0), "not a JSON object"),
        (wire.MAGIC + struct.pack(">I", 5) + b"NaN\x00\x00" + struct.pack(">I", 0), "not JSON"),
        (
            wire.MAGIC + struct.pack(">I", 2) + b"{}" + struct.pack(">IQ", 1, 1 << 40),
            "past the end",
        ),
        (
            wire.MAGIC + struct.pack(">I", 2) + b"{}" + struct.pack(">I", 10**6),
            "byte strings exceed",
        ),
    ],
)
def test_malformed_frames_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(wire.WireError, match=problem):
        wire.decode(data)


def test_deep_json_nesting_is_refused_not_a_crash() -> None:
    header = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    data = wire.MAGIC + struct.pack(">I", len(header)) + header + struct.pack(">I", 0)
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.decode(data)


def test_frame_limits_are_checked_before_reading() -> None:
    data = wire.encode(wire.Frame({"x": "y" * 100}))
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode(data, wire.WireLimits(max_header_bytes=50))
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode(data, wire.WireLimits(max_total_bytes=50))


# --- the sanitizer child's result ---------------------------------------------------------


def test_a_sanitize_result_round_trips() -> None:
    result = SanitizeResult(
        (OutputFile(b"%PDF-1.7", "見積書.pdf", "application/pdf"),),
        (),
        ("rebuilt",),
    )
    assert SanitizeResult.from_frame(wire.decode(wire.encode(result.to_frame()))) == result


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        # These become the part's headers in the delivered message: no header injection.
        (OutputFile(b"x", "a.pdf", "text/plain\r\nContent-Type: multipart/mixed"), "content_type"),
        (OutputFile(b"x", "a.pdf\r\nContent-Type: text/html", "application/pdf"), "filename"),
        (OutputFile(b"x", "a.pdf", "no-slash"), "content_type"),
    ],
)
def test_a_sanitize_result_that_could_write_headers_is_refused(
    output: OutputFile, problem: str
) -> None:
    frame = SanitizeResult((output,)).to_frame()
    with pytest.raises(wire.WireError, match=problem):
        SanitizeResult.from_frame(wire.decode(wire.encode(frame)))


def test_declared_output_sizes_must_match_the_bytes() -> None:
    frame = SanitizeResult((OutputFile(b"abc", "a.txt", "text/plain"),)).to_frame()
    frame.header["outputs"][0]["size"] = 2
    with pytest.raises(wire.WireError, match="not 2"):
        SanitizeResult.from_frame(frame)


def test_a_sanitizer_child_sending_a_forged_frame_fails_its_part_closed() -> None:
    forged = wire.encode(
        wire.Frame(
            {
                "result": {
                    "outputs": [{"filename": "a", "content_type": "a/b", "size": 99}],
                    "findings": [],
                    "notes": [],
                }
            },
            (b"short",),
        )
    )
    with pytest.raises(CannotSanitize) as caught:
        run_isolated(forge_from_sanitizer_child, forged, timeout=5, memory_limit_mb=256)
    assert caught.value.code == "WORKER_PROTOCOL"


# --- the pool -------------------------------------------------------------------------------


def _pool_run(job: Any, decode: Any, max_result_bytes: int = wire.MAX_TOTAL_BYTES) -> Any:
    async def body() -> tuple[Any, list[str]]:
        restarts: list[str] = []
        pool = WorkerPool(
            "tests.gateway.compromised:init_compromised",
            None,
            1,
            WorkerLimits(memory_limit_mb=256, timeout=5, max_jobs=10),
            on_restart=restarts.append,
            decode=decode,
            max_result_bytes=max_result_bytes,
        )
        await pool.start()
        try:
            try:
                return await pool.run(job), restarts
            except WorkerProtocolError as exc:
                return exc, restarts
        finally:
            await pool.close(grace=1)

    return asyncio.run(body())


def test_a_worker_whose_outcome_breaks_the_rules_is_replaced_and_the_message_fails() -> None:
    reject = _outcome(verdict=Verdict.REJECT, message=None, reply=Reply(550, "5.7.1", "x"))
    frame = _tampered(reject, _set("reply.code", 250))
    data = wire.encode(wire.Frame({"result": frame.header}, frame.blobs))
    error, restarts = _pool_run(("raw", data), Outcome.from_frame)
    assert isinstance(error, WorkerProtocolError)
    assert "reply.code" in str(error)
    assert restarts == ["protocol"]


def test_an_oversized_result_is_refused_unread() -> None:
    data = wire.encode(wire.Frame({"result": {"value": "x" * 10_000}}))
    error, restarts = _pool_run(("raw", data), wire.plain_value, max_result_bytes=4096)
    assert isinstance(error, WorkerProtocolError)
    assert "4096" in str(error)
    assert restarts == ["protocol"]


def test_a_forged_failure_code_is_refused() -> None:
    data = wire.encode(wire.Frame({"failure": {"code": "ok; rm -rf", "detail": "x"}}))
    error, restarts = _pool_run(("raw", data), wire.plain_value)
    assert isinstance(error, WorkerProtocolError)
    assert restarts == ["protocol"]
