"""What must hold for any bytes at all: the properties the MIME fuzzers check.

Used by the coverage-guided fuzzer (``tests/fuzz/fuzz_mime.py``, atheris) and by the
regression tests that replay what it once found (``tests/fuzz/regressions``).

``framing`` (the header-block reader and the byte-for-byte proof):
  - ``examine`` raises nothing but ``MimeLimitExceeded``;
  - its canonical form has strict header blocks (no header-level ambiguity left) and is a
    fixed point of the repair;
  - when it proves a single text part verbatim, three independent readers (Python
    compat32, Python default, Rust mailparse) read exactly that: one text/plain part, the
    same decoded bytes, the same header field names as the gateway's own header reader.

``walker`` (the MIME walker the pipeline plans from):
  - ``parse_message`` of the bytes the pipeline would parse raises nothing but
    ``MimeLimitExceeded``; part ids are unique; only multiparts have children; the decoded
    size stays within the limit; every header field's value decodes.
"""

from __future__ import annotations

import email
import email.policy

from gateway.framing import (
    MIME_AMBIGUOUS_HEADER,
    MIME_DUPLICATE_FIELD,
    MIME_DUPLICATE_PARAMETER,
    MIME_MALFORMED_TYPE,
    examine,
)
from gateway.mime import MimeLimitExceeded, MimeLimits, parse_message, split_header_block

LIMITS = MimeLimits(max_depth=10, max_parts=100, max_decoded_size=4 * 1024 * 1024)
HEADER_CODES = frozenset(
    {MIME_AMBIGUOUS_HEADER, MIME_DUPLICATE_FIELD, MIME_DUPLICATE_PARAMETER, MIME_MALFORMED_TYPE}
)


class PropertyFailed(AssertionError):
    """A property does not hold for this input (the fuzzer saves it as a crash)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise PropertyFailed(message)


def framing(data: bytes) -> None:
    try:
        found = examine(data, LIMITS)
    except MimeLimitExceeded:
        return
    try:
        again = examine(found.canonical, LIMITS)
    except MimeLimitExceeded:
        return
    left = again.codes() & HEADER_CODES
    check(not left, f"canonical form still ambiguous: {again.ambiguities}")
    check(examine(again.canonical, LIMITS).canonical == again.canonical, "repair not a fixed point")
    if found.verbatim:
        one_text_reading(data)


def _rust_reading(data: bytes) -> tuple[str, bytes, bool, set[str]] | None:
    try:
        import fast_mail_parser
    except ImportError:
        return None
    try:
        root = fast_mail_parser.parse_email_tree(data)
    except Exception as exc:
        raise PropertyFailed(f"rust-mailparse refused a verbatim message: {exc}") from exc
    names = {name.lower() for name in root.headers}
    return (root.content_type.lower(), bytes(root.content or b""), bool(root.children), names)


def one_text_reading(data: bytes) -> None:
    """A message the proof admits, when it is one text part, reads the same everywhere."""
    parsed = parse_message(data, LIMITS)
    if parsed.root.is_multipart or parsed.root.declared_type != "text/plain":
        return
    ours = {field.name.lower() for field in split_header_block(data)[0]}
    readings = []
    for policy in (email.policy.compat32, email.policy.default):
        message = email.message_from_bytes(data, policy=policy)
        payload = message.get_payload(decode=True)
        readings.append(
            (
                message.get_content_type(),
                payload if isinstance(payload, bytes) else b"",
                message.is_multipart(),
                {name.lower() for name in message},
            )
        )
    rust = _rust_reading(data)
    if rust is not None:
        readings.append(rust)
    first = readings[0]
    check(first[0] == "text/plain" and not first[2], f"python reads {first[0]}")
    check(first[3] == ours, f"header names: ours {sorted(ours)} python {sorted(first[3])}")
    for other in readings[1:]:
        check(other[0] == first[0], f"types differ: {first[0]} / {other[0]}")
        check(other[2] == first[2], "multipart in one reading only")
        check(other[1] == first[1], f"decoded bodies differ: {first[1][:60]!r} / {other[1][:60]!r}")
        check(other[3] == first[3], f"header names differ: {sorted(first[3] ^ other[3])}")


def walker(data: bytes) -> None:
    try:
        found = examine(data, LIMITS)
        parsed = parse_message(found.canonical if found.ambiguous else data, LIMITS)
    except MimeLimitExceeded:
        return
    ids = [part.part_id for part in parsed.root.walk()]
    check(len(ids) == len(set(ids)), f"part ids repeat: {ids}")
    total = 0
    for part in parsed.root.walk():
        check(not part.children or part.is_multipart, f"{part.part_id} has children")
        total += len(part.payload)
    check(total <= 4 * LIMITS.max_decoded_size, f"decoded {total} bytes")
    for field in parsed.headers:
        field.untrusted_value  # noqa: B018 - must not raise


TARGETS = {"framing": framing, "walker": walker}
