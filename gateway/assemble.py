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

import email.policy
import re
from collections.abc import Iterable, Sequence
from email.generator import BytesGenerator
from email.header import Header
from email.message import EmailMessage
from io import BytesIO

from gateway.charsets import encode_body
from gateway.detect import sanitize_filename
from gateway.inspect import FilePlan, MessagePlan, Plan, TextBody
from gateway.mime import HeaderField
from gateway.report import Report

CRLF = b"\r\n"
# Serialise with CRLF and RFC-conformant folding; 7bit-safe transfer encodings are chosen below.
OUTPUT_POLICY = email.policy.SMTP.clone(max_line_length=78)

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


def _text_part(text: str, subtype: str, charset: str) -> EmailMessage:
    part = EmailMessage(policy=OUTPUT_POLICY)
    # Text is CRLF-delimited in canonical form (RFC 2046 section 4.1.1), also inside base64.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    encoded = encode_body(text, charset)
    data, used = encoded.data, encoded.charset
    if used.lower() == "iso-2022-jp" or (
        data.isascii() and all(len(line) <= 998 for line in data.split(b"\n"))
    ):
        cte = "7bit"
    else:
        cte = "base64"
    part.set_content(data, maintype="text", subtype=subtype, cte=cte)
    part.set_param("charset", used)
    del part["MIME-Version"]  # only the top-level entity carries it (RFC 2045 section 4)
    return part


def _encoded_name(filename: str) -> str:
    """``name=`` as Japanese mailers expect it: RFC 2047 (non-standard, universally read)."""
    if filename.isascii():
        return filename
    return Header(filename, "utf-8").encode(maxlinelen=10_000)


def _file_part(data: bytes, filename: str, content_type: str) -> EmailMessage:
    kind, *raw_params = (content_type or "application/octet-stream").split(";")
    maintype, _, subtype = kind.strip().lower().partition("/")
    if not subtype or not re.fullmatch(r"[a-z0-9.+-]+", maintype + subtype):
        maintype, subtype = "application", "octet-stream"
    params = {}
    for raw in raw_params:
        key, _, value = raw.strip().partition("=")
        if key.strip().lower() == "charset" and re.fullmatch(r"[A-Za-z0-9._-]+", value.strip()):
            params["charset"] = value.strip()
    part = EmailMessage(policy=OUTPUT_POLICY)
    part.set_content(
        data,
        maintype=maintype,
        subtype=subtype,
        cte="base64",
        disposition="attachment",
        filename=filename,
        params=params,
    )
    # filename*= (RFC 2231) is set above; name= in RFC 2047 form for older mailers.
    part.set_param("name", _encoded_name(filename))
    del part["MIME-Version"]
    return part


def _message_part(data: bytes) -> EmailMessage:
    part = EmailMessage(policy=OUTPUT_POLICY)
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = "attachment"
    # An already assembled message; the generator writes str payloads back as their bytes.
    part.set_payload(data.decode("ascii", "surrogateescape"))
    return part


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

    def body_parts(self, plan: Plan, report: Report, with_notice: bool) -> list[EmailMessage]:
        parts: list[EmailMessage] = []
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
        if notice_pending:
            parts.insert(0, self._text(self.notice_text, None))
        return parts

    def _text(self, text: str, html: str | None) -> EmailMessage:
        plain = _text_part(text, "plain", self.charset)
        if html is None:
            return plain
        alternative = EmailMessage(policy=OUTPUT_POLICY)
        alternative.make_alternative()
        alternative.attach(plain)
        alternative.attach(_text_part(html, "html", self.charset))
        return alternative

    def _files(self, node: FilePlan) -> list[EmailMessage]:
        record = node.record
        if node.content_class in self.skip_classes and record.action != "held":
            record.action, record.reason = "kept", "TRUSTED_SENDER"
            name = sanitize_filename(node.original_name)
            return [_file_part(node.original, name, node.declared_type)]
        if record.action in ("held", "stripped") or not node.outputs:
            return []
        return [
            _file_part(out.data, sanitize_filename(out.filename), out.content_type)
            for out in node.outputs
        ]

    def _nested(self, node: MessagePlan, report: Report) -> EmailMessage | None:
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
        if len(parts) == 1 and parts[0].get_content_maintype() == "text":
            top = parts[0]
        elif not parts:
            top = _text_part("", "plain", self.charset)
        else:
            top = EmailMessage(policy=OUTPUT_POLICY)
            top.make_mixed()
            for part in parts:
                top.attach(part)
        del top["MIME-Version"]
        top["MIME-Version"] = "1.0"
        head = b"".join(_field(name, value) for name, value in extra_headers)
        kept = b"".join(self._field_bytes(f) + CRLF for f in plan.parsed.headers if keep_header(f))
        return head + kept + serialise_entity(top)


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


def serialise_entity(entity: EmailMessage) -> bytes:
    """MIME header fields of ``entity``, a blank line, and its body, with CRLF line ends."""
    out = BytesIO()
    BytesGenerator(out, policy=OUTPUT_POLICY).flatten(entity, linesep="\r\n")
    data = out.getvalue()
    return data


def header_block(fields: Iterable[HeaderField]) -> bytes:
    return b"".join(f.raw + CRLF for f in fields)
