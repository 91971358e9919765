"""Red-team harness: hostile mail over real SMTP, default policy, judged by independent readers.

``RedTeamChain`` runs a real gateway (shipped pipeline, ``lgwan-base``) in front of a real SMTP
sink, so tests see the bytes a downstream server receives. ``send`` returns what happened to
one message: the reply, the delivered copies, the held items. The readers below look at a
delivered message the way a client would, never with the code under test: Python ``email``
with both policies, the raw bytes, libmagic, and the separate linkifier of
``tests/text/linkify.py``.

Each finding of the red-team review (``/work/helpers/redteam-findings.md``) is one test in
``tests/integration/test_redteam_*.py`` built from these pieces.
"""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import smtplib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from quarantine.sql import ItemQuery
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink
from tests.text.linkify import live_links

POLICIES = (email.policy.compat32, email.policy.default)
_counter = itertools.count(1)


@dataclass
class Outcome:
    """What became of one message: the SMTP reply, the copies the sink got, the held items."""

    code: int
    reply: str
    delivered: list[bytes] = field(default_factory=list)
    held: list[Any] = field(default_factory=list)

    @property
    def was_held(self) -> bool:
        return bool(self.held)

    @property
    def message(self) -> bytes:
        assert len(self.delivered) == 1, (self.code, self.reply, len(self.delivered))
        return self.delivered[0]


class RedTeamChain:
    """A gateway with the default policy between smtplib and a real SMTP sink.

    ``tenants`` configures internal domains (the spoofing rules protect them).
    """

    def __init__(self, data_dir: Path, tenants: dict[str, dict[str, str]] | None = None) -> None:
        self.data_dir = data_dir
        self.tenants = tenants or {}
        self._sink: SmtpSink | None = None
        self._gateway: RunningGateway | None = None

    def __enter__(self) -> RedTeamChain:
        self._sink = SmtpSink().start()
        overrides: dict[str, Any] = {"workers.count": 2}
        if self.tenants:
            overrides["tenants"] = self.tenants
        config = make_config(self.data_dir, downstream=self._sink.address, **overrides)
        self._gateway = RunningGateway(config).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._gateway is not None:
            self._gateway.__exit__(*exc)
        if self._sink is not None:
            self._sink.stop()

    @property
    def gateway(self) -> RunningGateway:
        assert self._gateway is not None
        return self._gateway

    @property
    def sink(self) -> SmtpSink:
        assert self._sink is not None
        return self._sink

    def send(
        self, raw: bytes | str, *, mail_from: str = "sender@partner.example", domain: str = ""
    ) -> Outcome:
        """Send ``raw`` (``{RCPT}`` is replaced by a fresh recipient) and collect the outcome."""
        rcpt = f"rt{next(_counter)}@{domain or 'city.example.lg.jp'}"
        data = raw.encode() if isinstance(raw, str) else raw
        data = data.replace(b"{RCPT}", rcpt.encode())
        if b"\r\n" not in data:
            data = data.replace(b"\n", b"\r\n")
        try:
            with self.gateway.smtp(timeout=120) as client:
                client.ehlo("mx.partner.example")
                client.mail(mail_from)
                client.rcpt(rcpt)
                code, text = client.data(data)
        except smtplib.SMTPResponseException as exc:
            code, text = exc.smtp_code, exc.smtp_error
        delivered = [m.data for m in self.sink.messages if rcpt in m.rcpt_tos]
        held = [
            item
            for item in self.gateway.server.store.list(
                ItemQuery(kind="quarantined", limit=1000)
            ).items
            if rcpt in item.recipients
        ]
        return Outcome(code, text.decode("utf-8", "replace"), delivered, held)


# --- message builders ----------------------------------------------------------------------


def plain(body: str, *, headers: str = "", charset: str = "utf-8") -> str:
    return (
        "From: a@partner.example\nTo: {RCPT}\nSubject: redteam\nMIME-Version: 1.0\n"
        f"{headers}Content-Type: text/plain; charset={charset}\n"
        f"Content-Transfer-Encoding: 8bit\n\n{body}\n"
    )


def with_attachment(
    filename: str,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    body: str = "添付をご確認ください。",
) -> bytes:
    """A multipart/mixed message with one base64 attachment; a name that is not plain ASCII
    (or holds a backslash or quote, which a quoted-string would escape) as RFC 2231."""
    if filename.isascii() and not set(filename) & {"\\", '"'}:
        params = f'; name="{filename}"'
        disposition = f'attachment; filename="{filename}"'
    else:
        params = ""
        disposition = "attachment; filename*=UTF-8''" + urllib.parse.quote(filename, safe="")
    return (
        "From: a@partner.example\nTo: {RCPT}\nSubject: redteam\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="RTB"\n\n'
        f"--RTB\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
        f"--RTB\nContent-Type: {content_type}{params}\nContent-Disposition: {disposition}\n"
        "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data).decode() + "--RTB--\n"
    ).encode()


# --- independent readers -------------------------------------------------------------------


def leaves(data: bytes) -> Iterator[tuple[Message, bytes]]:
    """Every non-multipart part with its decoded payload, as both Python policies see it."""
    for policy in POLICIES:
        for part in email.message_from_bytes(data, policy=policy).walk():
            if not part.is_multipart():
                payload = part.get_payload(decode=True)
                yield part, payload if isinstance(payload, bytes) else b""


def filenames(data: bytes) -> set[str]:
    return {str(part.get_filename()) for part, _ in leaves(data) if part.get_filename()}


def texts(data: bytes) -> list[str]:
    """The decoded text of every text/* leaf (compat32), in its declared charset."""
    out = []
    for part in email.message_from_bytes(data, policy=email.policy.compat32).walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            try:
                out.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
            except LookupError:
                out.append(payload.decode("utf-8", "replace"))
    return out


def notice_of(data: bytes) -> str:
    """The gateway's notice: the first text part up to its rule line."""
    first = texts(data)[0]
    return first.split("─" * 10, 1)[0]


def all_live_links(data: bytes) -> list[str]:
    return [link for text in texts(data) for link in live_links(text)]


# --- benign samples ------------------------------------------------------------------------

# A 64x48 HEIC photo (what iPhones send when "Most Compatible" is off), made with pillow-heif
# 1.x: ``Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format="HEIF", quality=50)``
# after ``pillow_heif.register_heif_opener()``; libmagic: "ISO Media, HEIF Image HEVC Main".
HEIC_PHOTO = base64.b64decode(
    "AAAAHGZ0eXBoZWljAAAAAG1pZjFoZWljbWlhZgAAAX1tZXRhAAAAAAAAACFoZGxyAAAAAAAAAABw"
    "aWN0AAAAAAAAAAAAAAAAAAAAACJpbG9jAAAAAERAAAEAAQAAAAABoQABAAAAAAAAAB0AAAAjaWlu"
    "ZgAAAAAAAQAAABVpbmZlAgAAAAABAABodmMxAAAAAA5waXRtAAAAAAABAAAA/WlwcnAAAADdaXBj"
    "bwAAAHZodmNDAQNwAAAAkAAAAAAAHvAA/P34+AAADwNgAAEAGEABDAH//wNwAAADAJAAAAMAAAMA"
    "HroCQGEAAQAqQgEBA3AAAAMAkAAAAwAAAwAeoCCBBZbq5Ka5uAhoMCAAAAMDIAAAAwAhYgABAAZE"
    "AcFzwIkAAAATY29scm5jbHgAAQANAAaAAAAAFGlzcGUAAAAAAAAAQAAAAEAAAAAoY2xhcAAAAEAA"
    "AAABAAAAMAAAAAEAAAAAAAAAAv////AAAAACAAAAEHBpeGkAAAAAAwgICAAAABhpcG1hAAAAAAAA"
    "AAEAAQWBAgMFhAAAACVtZGF0AAAAGSgBrxOA9SeBP//gpUf/utZ4fg8Lfnny1PA="
)


def minimal_odt(text: str = "議事録です") -> bytes:
    """A minimal OpenDocument text (what LibreOffice Writer needs to open it)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text"
        )  # first and stored, as ODF 1.2 section 3.3 asks
        archive.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:'
            'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry'
            ' manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"'
            '/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"'
            "/></manifest:manifest>",
        )
        archive.writestr(
            "content.xml",
            '<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:'
            'oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:'
            'opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:text>'
            f"<text:p>{text}</text:p></office:text></office:body></office:document-content>",
        )
    return out.getvalue()
