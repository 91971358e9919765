"""The sanitize stage's output: a clean, standards-compliant message built from a ``Plan``.

What is delivered:

- the original top-level header fields, byte for byte, except the ``Content-*`` and
  ``MIME-Version`` fields of the old body, fields that claim to be ours (``X-Mugaika-*``),
  and fields the gateway treats as active (``DANGEROUS_HEADERS``);
- a new MIME body: the text a recipient reads (UTF-8, or ISO-2022-JP when configured, with
  the notice on top), the harmless copies of attachments (names sanitized, RFC 2231 and RFC
  2047 encoded so every mailer in Japan shows them), attached messages rebuilt the same way.
  A single text and nothing else is delivered as a plain ``text/plain`` message.

It never copies a byte of an original part into the output unless the plan says that part may
be kept (``keep`` for text, or a class the decision trusts for an authenticated sender).
"""

from __future__ import annotations

import binascii
import email
import email.policy
import re
import uuid
from collections.abc import Sequence
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from io import BytesIO

from gateway.charsets import encode_body
from gateway.detect import sanitize_filename
from gateway.framing import defuse_embedded_files
from gateway.inspect import DeliveryStatus, FilePlan, MessagePlan, Plan, TextBody
from gateway.mime import HeaderField
from gateway.report import Report

CRLF = b"\r\n"
# compat32 with CRLF: headers are written as built here; transfer encodings are chosen below.
# mangle_from_=False: compat32 writes a body line "From ..." as ">From ..." (mbox quoting);
# SMTP and Maildir need no such quoting, and it changed the text a recipient reads.
OUTPUT_POLICY = email.policy.compat32.clone(linesep="\r\n", max_line_length=78, mangle_from_=False)

# Top-level fields dropped from the output: the old body's MIME fields, our own (a sender must
# not forge our verdict), and fields mail clients act upon by fetching or opening something.
DANGEROUS_HEADERS = frozenset(
    {
        "x-mozilla-external-attachment-url",
        "content-base",
        "content-location",
        "x-ms-exchange-organization-authas",
    }
)


def keep_header(field: HeaderField) -> bool:
    name = field.name.lower()
    if name.startswith("content-") or name == "mime-version":
        return False
    if name.startswith("x-mugaika-"):
        return False
    return name not in DANGEROUS_HEADERS


def _entity(maintype: str, subtype: str, **params: str) -> Message:
    """A bare MIME entity. compat32 objects: headers are written exactly as set here, never
    re-parsed and re-encoded by the modern header machinery."""
    part = Message(policy=OUTPUT_POLICY)
    part["Content-Type"] = f"{maintype}/{subtype}"
    for key, value in params.items():
        part.set_param(key, value)
    return part


def _base64(data: bytes) -> str:
    """``base64.encodebytes`` with CRLF: 76-character lines (57 octets each, so one encoding
    of the whole cut every 76 characters is the same text), without its loop per line."""
    encoded = binascii.b2a_base64(data, newline=False).decode("ascii")
    if not encoded:
        return ""
    return "\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + "\r\n"


def _text_part(text: str, subtype: str, charset: str) -> Message:
    # Text is CRLF-delimited in canonical form (RFC 2046 section 4.1.1), also inside base64.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    if subtype == "plain":
        text = defuse_embedded_files(text)
    encoded = encode_body(text, charset)
    data, used = encoded.data, encoded.charset
    part = _entity("text", subtype, charset=used)
    if used.lower() == "iso-2022-jp" or (
        data.isascii() and all(len(line) <= 998 for line in data.split(b"\r\n"))
    ):
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(data.decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(_base64(data))
    return part


def _encoded_name(filename: str) -> str:
    """``name=`` as Japanese mailers expect it: RFC 2047 (non-standard, universally read)."""
    if filename.isascii():
        return filename
    return Header(filename, "utf-8").encode(maxlinelen=10_000)


def _file_part(data: bytes, filename: str, content_type: str) -> Message:
    """An attachment: ``filename*=`` (RFC 2231) for standard readers and ``name=`` in RFC 2047
    form for the Japanese mailers that read only that."""
    kind, *raw_params = (content_type or "application/octet-stream").split(";")
    maintype, _, subtype = kind.strip().lower().partition("/")
    if not subtype or not re.fullmatch(r"[a-z0-9.+-]+", maintype + subtype):
        maintype, subtype = "application", "octet-stream"
    part = _entity(maintype, subtype)
    for raw in raw_params:
        key, _, value = raw.strip().partition("=")
        value = value.strip().strip('"')
        if key.strip().lower() == "charset" and re.fullmatch(r"[A-Za-z0-9._-]+", value):
            part.set_param("charset", value)
    part.set_param("name", _encoded_name(filename))
    part["Content-Transfer-Encoding"] = "base64"
    if filename.isascii():
        part.add_header("Content-Disposition", "attachment", filename=filename)
    else:
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
    part.set_payload(_base64(data))
    return part


def _calendar_part(data: bytes, content_type: str, node: FilePlan) -> Message:
    """An inline meeting request as sent: ``text/calendar`` with its charset and ``method``,
    no file name, no attachment disposition (RT-12)."""
    charset = re.search(r"charset=([A-Za-z0-9._-]+)", content_type)
    part = _entity("text", "calendar", charset=charset.group(1) if charset else "utf-8")
    part.set_param("method", node.inline_method)
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(_base64(data))
    return part


def _message_part(data: bytes) -> Message:
    part = _entity("message", "rfc822")
    part["Content-Disposition"] = "attachment"
    # An already assembled message; the generator writes str payloads back as their bytes.
    part.set_payload(data.decode("ascii", "surrogateescape"))
    return part


def _multipart(subtype: str, parts: list[Message]) -> Message:
    container = Message(policy=OUTPUT_POLICY)
    container["Content-Type"] = f"multipart/{subtype}"
    container.set_boundary(f"=_mugaika_{uuid.uuid4().hex}")
    for part in parts:
        container.attach(part)
    return container


class Assembler:
    """Builds output messages. ``ascii_headers``: re-encode kept fields that carry raw 8-bit
    bytes as RFC 2047 words (for attached messages, which must be 7-bit to nest cleanly)."""

    def __init__(
        self,
        charset: str,
        notice_text: str,
        skip_classes: frozenset[str],
        ascii_headers: bool = False,
    ) -> None:
        self.charset = charset
        self.notice_text = notice_text
        self.skip_classes = skip_classes
        self.ascii_headers = ascii_headers

    def body_parts(self, plan: Plan, report: Report, with_notice: bool) -> list[Message]:
        parts: list[Message] = []
        notice_pending = with_notice and bool(self.notice_text)
        for node in plan.nodes:
            if isinstance(node, TextBody):
                text = node.text
                html = node.html
                if notice_pending:
                    text = f"{self.notice_text}\n{text}"
                    if html is not None:
                        html = _html_with_notice(html, self.notice_text)
                    notice_pending = False
                parts.append(self._text(text, html))
            elif isinstance(node, FilePlan):
                parts.extend(self._files(node))
            elif isinstance(node, MessagePlan):
                nested = self._nested(node, report)
                if nested is not None:
                    parts.append(nested)
            elif isinstance(node, DeliveryStatus):
                parts.append(self._delivery_status(node))
        if notice_pending:
            parts.insert(0, self._text(self.notice_text, None))
        return parts

    def _text(self, text: str, html: str | None) -> Message:
        plain = _text_part(text, "plain", self.charset)
        if html is None:
            return plain
        return _multipart("alternative", [plain, _text_part(html, "html", self.charset)])

    def _files(self, node: FilePlan) -> list[Message]:
        record = node.record
        if node.content_class in self.skip_classes and record.action != "held":
            record.action, record.reason = "kept", "TRUSTED_SENDER"
            name = sanitize_filename(node.original_name)
            return [_file_part(node.original, name, node.declared_type)]
        if record.action in ("held", "stripped") or not node.outputs:
            return []
        if node.inline_method and node.outputs[0].content_type.startswith("text/calendar"):
            return [_calendar_part(node.outputs[0].data, node.outputs[0].content_type, node)]
        return [
            _file_part(out.data, sanitize_filename(out.filename), out.content_type)
            for out in node.outputs
        ]

    def _delivery_status(self, node: DeliveryStatus) -> Message:
        """The fields under their own type, one block per field group (RFC 3464 section 2.1,
        7bit). Text that is not only fields, or cannot be written so (8-bit, a line no
        folding can bring under 998 octets), is delivered as a text/plain part instead: mail
        readers disagree on what else such a part shows (Python's lists the other lines as
        texts of their own, others show nothing)."""
        text = defuse_embedded_files(node.text)
        lines = text.strip("\n").split("\n")
        if (
            not text.isascii()
            or any(len(line) > 990 for line in lines)
            or not all(_STATUS_LINE.match(line) for line in lines)
        ):
            return _text_part(text, "plain", self.charset)
        maintype, _, subtype = node.media_type.partition("/")
        part = _entity(maintype, subtype)
        part["Content-Transfer-Encoding"] = "7bit"
        # The email package writes this type only from a list of field blocks.
        blocks = [b for b in re.split(r"\n[ \t]*\n", text.strip("\n")) if b.strip()]
        part.set_payload(
            [email.message_from_string(block + "\n", policy=OUTPUT_POLICY) for block in blocks]
        )
        return part

    def _nested(self, node: MessagePlan, report: Report) -> Message | None:
        if node.record.action in ("held", "stripped") or node.inner is None:
            return None
        inner = Assembler(self.charset, "", self.skip_classes, ascii_headers=True)
        return _message_part(inner.message(node.inner, report, with_notice=False))

    def _field_bytes(self, field: HeaderField) -> bytes:
        if self.ascii_headers and not field.raw.isascii():
            return _ascii_field(field)
        return field.raw

    def message(
        self,
        plan: Plan,
        report: Report,
        with_notice: bool = True,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        """The whole message: kept original fields, ``extra_headers`` on top, new body."""
        parts = self.body_parts(plan, report, with_notice)
        if plan.report_type and any(isinstance(n, DeliveryStatus) for n in plan.nodes):
            # A bounce stays a report (RFC 6522), human-readable part (with the notice) first.
            top = _multipart("report", parts)
            top.set_param("report-type", plan.report_type)
        elif len(parts) == 1 and parts[0].get_content_maintype() in ("text", "multipart"):
            top = parts[0]
        elif not parts:
            top = _text_part("", "plain", self.charset)
        else:
            top = _multipart("mixed", parts)
        top["MIME-Version"] = "1.0"
        head = b"".join(_field(name, value) for name, value in extra_headers)
        kept = b"".join(self._field_bytes(f) + CRLF for f in plan.parsed.headers if keep_header(f))
        return head + kept + serialise_entity(top)


# A line of a delivery-status part: a field (strict grammar: no space before the colon, which
# some readers take for a field and others for text), a continuation, or a blank line.
_STATUS_LINE = re.compile(r"[\x21-\x39\x3b-\x7e]+:|[ \t]+\S|[ \t]*$")


def _ascii_field(field: HeaderField) -> bytes:
    """``field`` with its decoded value as RFC 2047 encoded words (7-bit, folded)."""
    value = Header(field.untrusted_value, "utf-8", header_name=field.name).encode()
    return f"{field.name}: {value}".encode("ascii", "replace")


def _html_with_notice(html: str, notice: str) -> str:
    from html import escape

    block = f'<pre style="white-space:pre-wrap">{escape(notice)}</pre>'
    match = re.search(r"<body[^>]*>", html, re.IGNORECASE)
    if match:
        return html[: match.end()] + block + html[match.end() :]
    return block + html


def _field(name: str, value: str) -> bytes:
    line = f"{name}: {value}"
    return line.encode("ascii", "replace") + CRLF


class LineGenerator(BytesGenerator):
    """``BytesGenerator`` writing a body's lines in one write instead of two per line: the
    same bytes (tests/gateway/test_assemble_generator.py), a fraction of the calls for a
    multi-megabyte attachment (issue 13)."""

    _NL: str  # set by Generator.flatten: the policy's linesep
    _LINE_END = re.compile(r"\r\n|\r|\n")  # email.generator.NLCRE

    def _write_lines(self, lines: str) -> None:
        if not lines:
            return
        crlf = lines.count("\r\n")
        if self._NL == "\r\n" and lines.count("\r") == crlf and lines.count("\n") == crlf:
            self.write(lines)  # already CRLF throughout: splitting and joining gives it back
            return
        parts = self._LINE_END.split(lines)
        if len(parts) > 1:
            self.write(self._NL.join(parts[:-1]) + self._NL)
        if parts[-1]:
            self.write(parts[-1])


def serialise_entity(entity: Message) -> bytes:
    """MIME header fields of ``entity``, a blank line, and its body, with CRLF line ends."""
    out = BytesIO()
    LineGenerator(out, policy=OUTPUT_POLICY).flatten(entity, linesep="\r\n")
    return out.getvalue()
