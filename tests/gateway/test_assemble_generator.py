"""The assembler's output shortcuts write the same bytes as the library calls they replace.

``gateway.assemble.LineGenerator`` writes a body's lines in one call, ``_base64`` encodes
without ``base64.encodebytes``'s loop (issue 13): every delivered message goes through them.
"""

from __future__ import annotations

import base64
import email.generator
from email.message import Message
from io import BytesIO

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.assemble import OUTPUT_POLICY, LineGenerator, _base64

_TEXT = st.lists(
    st.sampled_from(["\r\n", "\r", "\n", "a", "From x", ".", " ", "\udce3", "日本"]), max_size=50
).map("".join)


def _flatten(generator: type[email.generator.BytesGenerator], payload: str) -> bytes | str:
    inner = Message(policy=OUTPUT_POLICY)
    inner["Content-Type"] = "text/plain"
    inner.set_payload(payload)
    outer = Message(policy=OUTPUT_POLICY)
    outer["Content-Type"] = 'multipart/mixed; boundary="b"'
    outer.attach(inner)
    outer.preamble = payload
    out = BytesIO()
    try:
        generator(out, policy=OUTPUT_POLICY).flatten(outer, linesep="\r\n")
    except UnicodeError as exc:
        return type(exc).__name__  # both must fail alike
    return out.getvalue()


@settings(max_examples=1500)
@given(_TEXT)
def test_line_generator_writes_what_bytes_generator_writes(payload: str) -> None:
    assert _flatten(LineGenerator, payload) == _flatten(email.generator.BytesGenerator, payload)


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_base64_is_encodebytes_with_crlf(data: bytes) -> None:
    assert _base64(data) == base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")


def test_a_line_starting_with_from_is_delivered_as_written() -> None:
    from gateway.assemble import _text_part, serialise_entity

    part = _text_part("Notice.\r\nFrom here on we talk.\r\n", "plain", "us-ascii")
    body = serialise_entity(part).split(b"\r\n\r\n", 1)[1]
    assert body == b"Notice.\r\nFrom here on we talk.\r\n"
