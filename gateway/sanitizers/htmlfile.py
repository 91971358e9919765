"""HTML attachments (not the message body): rebuilt as sanitized HTML with no live links.

An ``.html`` attachment opens in a browser, outside the mail client's protections, so it is
rebuilt with ``gateway.sanitizers.html.sanitize_html``: no script, no event handlers, forms,
frames, remote resources or ``href`` at all; URL text defanged. The result is UTF-8 with a
``<meta charset>`` so the browser does not guess. Fails closed (``CannotSanitize``) on input
too large for the HTML sanitizer.

The part may have arrived under another markup name (``.shtml``, ``.xht``, ``.xml`` with XHTML
elements...: ``gateway.detect`` decides by what renders it). The rebuilt copy is HTML, so it is
named ``.html``: under an XML name a browser would parse it as XML and show an error instead
of the text. Other names (``.txt``, no extension) are kept: they open as text.
"""

from __future__ import annotations

from gateway.charsets import decode_body
from gateway.detect import HTML_EXTENSIONS, XML_EXTENSIONS, extension_of, sanitize_filename
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult
from gateway.sanitizers.html import sanitize_html
from gateway.sanitizers.urls import UrlPolicy

FINDING_CODES = ("HTML_ATTACHMENT_REBUILT",)


class HtmlFileSanitizer:
    """See Sanitizer."""

    name = "html-file"
    description = "HTML attachments: scripts, forms, frames, remote resources and links removed"
    handles = frozenset({"html"})

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        decoded = decode_body(data, None)
        policy = UrlPolicy() if options.defang_urls else UrlPolicy(mode="keep")
        result = sanitize_html(decoded.text, policy)
        page = '<!DOCTYPE html>\n<meta charset="utf-8">\n' + result.text
        findings = [Finding(f.code, part_id, f.detail) for f in result.findings]
        findings.append(Finding("HTML_ATTACHMENT_REBUILT", part_id, f"{result.urls_defanged} URLs"))
        if extension_of(filename) in (HTML_EXTENSIONS | XML_EXTENSIONS) - {"htm", "html"}:
            filename = sanitize_filename(filename, new_extension="html")
        output = OutputFile(page.encode("utf-8"), filename, "text/html; charset=utf-8")
        return SanitizeResult((output,), tuple(findings))
