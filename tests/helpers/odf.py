"""OpenDocument files built in code, benign and hostile, for the ODF sanitizer's tests."""

from __future__ import annotations

import io
import zipfile

from tests.helpers import hostile

NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0" '
    'xmlns:ooo="http://openoffice.org/2004/office" '
    'xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0"'
)
TEXT_MIME = "application/vnd.oasis.opendocument.text"


def odt(
    body: str, *, extra: dict[str, bytes] | None = None, head: str = "", meta: str = ""
) -> bytes:
    """An ODT whose ``office:text`` is ``body``; ``head`` goes before ``office:body``
    (``office:scripts``, ``office:font-face-decls``), ``extra`` adds package members."""
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {NS} office:version="1.3">'
        '<office:automatic-styles><style:style style:name="B" style:family="text">'
        '<style:text-properties fo:font-weight="bold"/></style:style></office:automatic-styles>'
        f"{head}<office:body><office:text>{body}</office:text></office:body>"
        "</office:document-content>"
    )
    out = io.BytesIO()
    members = {
        "content.xml": content.encode(),
        "styles.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><office:document-styles {NS} '
            'office:version="1.3"><office:styles><style:style style:name="Standard" '
            'style:family="paragraph"/></office:styles></office:document-styles>'
        ).encode(),
        "meta.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><office:document-meta {NS} '
            f'office:version="1.3"><office:meta>{meta}</office:meta></office:document-meta>'
        ).encode(),
        **(extra or {}),
    }
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr(zipfile.ZipInfo("mimetype"), TEXT_MIME)
        entries = "".join(
            f'<manifest:file-entry manifest:full-path="{name}" manifest:media-type="text/xml"/>'
            for name in members
        )
        package.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:'
            'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3"><manifest:file-entry'
            f' manifest:full-path="/" manifest:media-type="{TEXT_MIME}"/>{entries}'
            "</manifest:manifest>",
        )
        for name, data in members.items():
            package.writestr(name, data)
    return out.getvalue()


def benign_odt() -> bytes:
    """Paragraphs, bold, a heading, a list and an embedded picture: what must survive."""
    picture = hostile.png(16, 16)
    return odt(
        '<text:h text:outline-level="1">議事録</text:h>'
        '<text:p>日時: <text:span text:style-name="B">10時</text:span>から</text:p>'
        "<text:list><text:list-item><text:p>予算</text:p></text:list-item></text:list>"
        '<text:p><draw:frame draw:name="図1" svg:width="1cm" svg:height="1cm">'
        '<draw:image xlink:href="Pictures/1.png" xlink:type="simple"/></draw:frame></text:p>',
        extra={"Pictures/1.png": picture},
    )


def hostile_odt() -> bytes:
    """A macro library, an on-load event, a hyperlink, a linked image, a remote template,
    an embedded object and a DDE connection."""
    return odt(
        '<text:p>本文 <text:a xlink:type="simple" xlink:href="https://evil.example/login">'
        "ログイン</text:a> 終わり</text:p>"
        '<text:p><draw:frame><draw:image xlink:href="http://evil.example/track.png"/></draw:frame>'
        '<draw:frame><draw:object xlink:href="./Object 1"/></draw:frame></text:p>'
        '<text:p><text:execute-macro text:name="Standard.Module1.Run">押す'
        "</text:execute-macro></text:p>"
        '<text:dde-connection-decls><text:dde-connection-decl text:name="x" '
        'office:dde-application="cmd" office:dde-topic="/c calc" office:dde-item="x"/>'
        "</text:dde-connection-decls>",
        head=(
            "<office:scripts><office:event-listeners>"
            '<script:event-listener script:language="ooo:script" script:event-name="dom:load" '
            'xlink:href="vnd.sun.star.script:Standard.Module1.Run?language=Basic&amp;location='
            'document"/></office:event-listeners></office:scripts>'
        ),
        meta='<meta:template xlink:href="\\\\10.0.0.5\\share\\t.ott" xlink:type="simple"/>',
        extra={
            "Basic/Standard/Module1.xml": (
                b'<script:module>Sub Run\nShell("calc")\nEnd Sub</script:module>'
            ),
            "Scripts/python/x.py": b"import os\nos.system('calc')\n",
            "Object 1/content.xml": b"<x/>",
            "Configurations2/menubar/menubar.xml": b"<x/>",
        },
    )
