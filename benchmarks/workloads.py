"""The messages `benchmarks/run` sends: four fixed sizes and a realistic mix from the corpus.

Each workload is a list of ``Template``s (an .eml file and its share of the messages); a
single-message workload has one template with weight 1. Files are written with CRLF line
ends, as smtp-source's ``-F`` and the latency client send them.

- ``text-5k``: ISO-2022-JP plain text, no URL (the gateway's fast path);
- ``html-5k``: multipart/alternative with an HTML part and 12 links;
- ``100k``: HTML with links and a PDF (the ``bench_cdr`` generator: text lines with URLs, a
  photo per page);
- ``2m``: HTML, a 40-page PDF and a DOCX with pictures;
- ``mix``: what municipal mail looks like, by message count: Japanese text mails from the
  corpus, HTML notices, PDFs, docx/xlsx, a JPEG photo and a ZIP of documents, each file taken
  from ``../shared/corpus`` where the corpus has one (it has no photo-sized JPEG: the photo is
  generated). Every corpus file is checked with the pipeline first: only what the default
  policy delivers goes in, so the sink must count every message sent.
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
SENDER = "sender@example.com"
RECIPIENT = "user@example.lg.jp"

WORKLOAD_NAMES = ("text-5k", "html-5k", "100k", "2m", "mix")


@dataclass(frozen=True)
class Template:
    label: str
    path: Path
    weight: int  # share of the workload's messages (and of its sessions)

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class Workload:
    name: str
    templates: tuple[Template, ...]

    @property
    def mean_size(self) -> float:
        total = sum(t.weight for t in self.templates)
        return sum(t.size * t.weight for t in self.templates) / total


JAPANESE_LINE = (
    "住民の皆様へ　令和七年度の予防接種の日程についてお知らせいたします。会場は市役所本庁舎です。\n"
)
ENGLISH_LINE = "Notice to residents: the schedule of this year's vaccinations is attached.\n"


def _headers(message: EmailMessage, subject: str, number: int) -> None:
    message["From"] = f"市民課 <{SENDER}>"
    message["To"] = RECIPIENT
    message["Subject"] = subject
    message["Date"] = "Wed, 25 Nov 2026 14:03:07 +0900"
    message["Message-ID"] = f"<bench-{number}@example.com>"


def _text(size: int) -> str:
    lines: list[str] = []
    while sum(len(line.encode("iso-2022-jp")) for line in lines) < size:
        lines.append(JAPANESE_LINE if len(lines) % 3 else ENGLISH_LINE)
    return "".join(lines)


def _html(links: int, size: int) -> tuple[str, str]:
    items = [
        f'<li><a href="https://www.city.example.lg.jp/kurashi/{i}.html">お知らせ {i}</a>'
        f" 詳しくは https://example.jp/docs/{i} をご覧ください。</li>"
        for i in range(links)
    ]
    body = "<html><body><h1>市からのお知らせ</h1><ul>" + "".join(items) + "</ul>"
    text = "市からのお知らせ\n" + "".join(f"お知らせ {i}\n" for i in range(links))
    while len(body.encode()) + len(text.encode()) < size:
        body += "<p>" + JAPANESE_LINE.strip() + "</p>"
        text += JAPANESE_LINE
    return text, body + "</body></html>"


def text_message(size: int = 5 * 1024, number: int = 0) -> bytes:
    message = EmailMessage()
    _headers(message, "予防接種のお知らせ", number)
    message.set_content(_text(size - 400), charset="iso-2022-jp", cte="7bit")
    return message.as_bytes(policy=SMTP)


def html_message(
    size: int = 5 * 1024, links: int = 12, attachments: list[tuple[str, bytes]] | None = None
) -> bytes:
    message = EmailMessage()
    _headers(message, "市からのお知らせ", 1)
    text, html = _html(links, size)
    message.set_content(text, charset="utf-8", cte="base64")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    for name, data in attachments or []:
        maintype, subtype = _mime_type(name).split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes(policy=SMTP)


def _mime_type(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return {
        "pdf": "application/pdf",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "jpg": "image/jpeg",
        "zip": "application/zip",
    }.get(suffix, "application/octet-stream")


def photo_jpeg(width: int = 2000, height: int = 1500, seed: int = 7) -> bytes:
    """A camera-like photo: smooth gradients with sensor noise (compresses like one)."""
    from PIL import Image, ImageFilter

    generator = random.Random(seed)  # noqa: S311 (reproducible pixels, not security)
    small = Image.frombytes("RGB", (40, 30), generator.randbytes(40 * 30 * 3))
    image = small.resize((width, height), Image.Resampling.BICUBIC)
    noise = Image.frombytes("L", (width, height), generator.randbytes(width * height))
    noise = noise.filter(ImageFilter.GaussianBlur(0.6)).convert("RGB")
    image = Image.blend(image, noise, 0.12)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def sized_workloads(directory: Path, scale: float = 1.0) -> list[Workload]:
    """The four fixed-size workloads (``scale`` < 1 makes the attachments smaller, for tests)."""
    from bench_cdr import make_docx, make_pdf

    small_pdf = make_pdf(pages=max(1, round(3 * scale)))
    large_pdf = make_pdf(pages=max(1, round(40 * scale)))
    docx = make_docx(paragraphs=max(8, round(300 * scale)), pictures=max(1, round(10 * scale)))
    files = {
        "text-5k": text_message(),
        "html-5k": html_message(),
        "100k": html_message(attachments=[("資料.pdf", small_pdf)]),
        "2m": html_message(attachments=[("報告書.pdf", large_pdf), ("通知文.docx", docx)]),
    }
    return [
        Workload(name, (Template(name, _write(directory / f"{name}.eml", data), 1),))
        for name, data in files.items()
    ]


def _write(path: Path, data: bytes) -> Path:
    """The message as ``smtp-source -F`` wants it: lines end in LF, and smtp-source sends
    each line with CRLF. A CRLF file would arrive with a bare CR before every CRLF, which the
    gateway rightly reads as ambiguous framing and rebuilds (and keeps the original of): the
    benchmark would measure malformed mail instead of the workload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.replace(b"\r\n", b"\n"))
    return path


def _corpus_rows() -> list[tuple[str, int, str]]:
    # The pipeline decides what goes in; files flagged as live malware are not even tried.
    flagged = {
        line.split("\t")[0]
        for line in (CORPUS / "FLAGS.tsv").read_text(encoding="utf-8").splitlines()[1:]
        if "MALWARE" in line
    }
    rows = []
    for line in (CORPUS / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        path, _sha, size, _source, kind = line.split("\t")
        if path not in flagged:
            rows.append((path, int(size), kind))
    return rows


def mix_workload(directory: Path, delivers: object, files_per_kind: int = 3) -> Workload:
    """The realistic mix; ``delivers(raw) -> bool`` says whether the default policy delivers."""
    check = delivers if callable(delivers) else (lambda raw: True)
    rows = _corpus_rows()

    def pick(kind: str, low: int, high: int, count: int, build: object) -> list[bytes]:
        chosen: list[bytes] = []
        for path, size, row_kind in sorted(rows, key=lambda r: (r[1], r[0])):
            if row_kind != kind or not low <= size <= high or len(chosen) >= count:
                continue
            raw = build(path, (CORPUS / path).read_bytes())  # type: ignore[operator]
            if raw is not None and check(raw):
                chosen.append(raw)
        return chosen

    def as_is(path: str, data: bytes) -> bytes | None:
        text = data.decode("latin-1").lower()
        multipart = "content-type: multipart" in text
        japanese = "iso-2022-jp" in text or "shift_jis" in text
        return data if japanese and not multipart and len(data) > 600 else None

    def attach(path: str, data: bytes) -> bytes:
        return html_message(size=2048, links=3, attachments=[(Path(path).name, data)])

    groups: list[tuple[str, int, list[bytes]]] = [
        ("text (corpus, Japanese)", 35, pick("eml", 600, 20_000, files_per_kind, as_is)),
        ("HTML notice with links", 25, [html_message(size=8 * 1024, links=20)]),
        ("PDF (corpus)", 15, pick("pdf", 80_000, 1_400_000, files_per_kind, attach)),
        ("docx (corpus)", 7, pick("docx", 10_000, 200_000, files_per_kind, attach)),
        ("xlsx (corpus)", 5, pick("xlsx", 5_000, 200_000, files_per_kind, attach)),
        ("JPEG photo", 7, [html_message(2048, 2, [("IMG_0412.jpg", photo_jpeg())])]),
    ]
    documents = [
        (name, (CORPUS / path).read_bytes())
        for name, path in _zip_members(rows)
        if (CORPUS / path).is_file()
    ]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for name, data in documents:
            zip_file.writestr(name, data)
    zipped = html_message(2048, 2, [("資料一式.zip", archive.getvalue())])
    groups.append(("ZIP of documents (corpus)", 6, [zipped] if check(zipped) else []))

    templates: list[Template] = []
    for label, weight, messages in groups:
        if not messages:
            raise SystemExit(f"benchmark mix: no {label} from {CORPUS} passes the pipeline")
        share, rest = divmod(weight, len(messages))
        for index, raw in enumerate(messages):
            name = f"mix-{len(templates):02d}.eml"
            templates.append(Template(label, _write(directory / name, raw), share + (index < rest)))
    return Workload("mix", tuple(t for t in templates if t.weight > 0))


def _zip_members(rows: list[tuple[str, int, str]]) -> list[tuple[str, str]]:
    wanted = {"pdf": 2, "docx": 2, "xlsx": 1}
    members: list[tuple[str, str]] = []
    for path, size, kind in sorted(rows, key=lambda r: (r[1], r[0])):
        if kind in wanted and wanted[kind] and 20_000 <= size <= 300_000:
            wanted[kind] -= 1
            members.append((f"資料/{Path(path).name}", path))
    return members


# The mix's groups whose attachments are timed one by one (issue 13's per-document target).
DOCUMENT_GROUPS = ("PDF (corpus)", "docx (corpus)", "xlsx (corpus)", "JPEG photo")


def workload_documents(
    workloads: list[Workload], per_group: int = 1
) -> list[tuple[str, str, bytes]]:
    """``(label, file name, bytes)`` of the documents the workloads carry: every attachment
    of ``2m`` and ``100k``, and of the first ``per_group`` messages of each of the mix's
    ``DOCUMENT_GROUPS``; read back from the very files the benchmark sends."""
    import email
    import email.policy

    documents: list[tuple[str, str, bytes]] = []
    for workload in workloads:
        taken: dict[str, int] = {}
        for template in workload.templates:
            if workload.name == "mix":
                if template.label not in DOCUMENT_GROUPS:
                    continue
                if taken.get(template.label, 0) >= per_group:
                    continue
                taken[template.label] = taken.get(template.label, 0) + 1
            elif workload.name not in ("2m", "100k"):
                continue
            raw = template.path.read_bytes().replace(b"\n", b"\r\n")
            message = email.message_from_bytes(raw, policy=email.policy.default)
            for part in message.iter_attachments():
                name = part.get_filename() or "attachment"
                label = template.label if workload.name == "mix" else workload.name
                documents.append((f"{label}: {name}", name, part.get_content()))
    return documents
