"""Page previews of a sanitized copy's documents, so an admin judges without downloading.

What is shown (issue 16): every PDF attachment of the **sanitized copy** (the rebuilt one,
never the original), its first ``MAX_PAGES`` pages rendered to PNG by PDFium (pypdfium2,
Chrome's PDF engine, the one the PDF sanitizer already uses); for Office documents
(docx/xlsx/pptx) the text of the rebuilt copy, because page images of Office files need
LibreOffice, which this gateway does not ship: the page says so.

Where it runs: never in the web process. ``PreviewRenderer`` keeps a one-worker
``gateway.workers.WorkerPool`` (a forkserver process with its own memory limit and a
wall-clock limit per job), started on first use. Inside it, the sanitized message is parsed
with the gateway's MIME parser (``gateway.mime``, limits on depth and parts) and each
document is rendered in its own forked child (``run_isolated``: RLIMIT_AS, RLIMIT_CPU, wall
clock), so a document that crashes PDFium costs only its own preview.

What comes back is data: one JSON manifest and PNG byte strings (``gateway.wire``), checked
here before use: counts, sizes, dimensions, and that every image is a PNG whose header
agrees with its stated size. The result is cached in the store (``previews``,
``preview_pages``), keyed by the sanitized copy's sha256, and dropped with it.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from gateway import wire
from gateway.wire import Frame

MAX_DOCUMENTS = 10
MAX_PAGES = 10  # rendered per document; the page count says how many there are
DPI = 96
MAX_SIDE = 1400  # pixels, either side of a page image
MAX_PNG_BYTES = 4 * 1024 * 1024
MAX_TEXT = 50_000  # characters of an Office document's text
DOCUMENT_TIMEOUT = 20.0
DOCUMENT_MEMORY_MB = 768
JOB_TIMEOUT = 90.0
WORKER_MEMORY_MB = 1536
OFFICE_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
}
_PNG = b"\x89PNG\r\n\x1a\n"


class _WireDocument(wire.WireModel):
    part_id: Annotated[str, Field(max_length=200)]
    filename: Annotated[str, Field(max_length=1000)]
    kind: Literal["pdf", "docx", "xlsx", "pptx"]
    page_count: Annotated[int, Field(ge=0, le=1_000_000)]
    sizes: Annotated[
        list[
            Annotated[
                list[Annotated[int, Field(ge=1, le=MAX_SIDE)]], Field(min_length=2, max_length=2)
            ]
        ],
        Field(max_length=MAX_PAGES),
    ]
    text: Annotated[str, Field(max_length=MAX_TEXT)] | None
    problem: Annotated[str, Field(max_length=300)]


class _WireManifest(wire.WireModel):
    documents: Annotated[list[_WireDocument], Field(max_length=MAX_DOCUMENTS)]


@dataclass(frozen=True, slots=True)
class PreviewDocument:
    part_id: str
    filename: str
    kind: str  # pdf, docx, xlsx, pptx
    page_count: int  # pages in the document (PDF); 0 when unknown
    sizes: tuple[tuple[int, int], ...]  # of the rendered page images, in order
    text: str | None  # Office documents: their text (no page images without LibreOffice)
    problem: str  # why there is no preview (e.g. PDF_DAMAGED), or ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "part_id": self.part_id,
            "filename": self.filename,
            "kind": self.kind,
            "page_count": self.page_count,
            "sizes": [list(s) for s in self.sizes],
            "text": self.text,
            "problem": self.problem,
        }


def manifest_from_dict(data: object) -> list[PreviewDocument]:
    checked = wire.check(_WireManifest, data, "preview manifest")
    return [
        PreviewDocument(
            d.part_id,
            d.filename,
            d.kind,
            d.page_count,
            tuple((w, h) for w, h in d.sizes),
            d.text,
            d.problem,
        )
        for d in checked.documents
    ]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR; ValueError when it is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def check_result(frame: Frame) -> tuple[list[PreviewDocument], list[list[bytes]]]:
    """The worker's answer, checked: the manifest, and per document its page images."""
    documents = manifest_from_dict(frame.header)
    blobs = list(frame.blobs)
    pages: list[list[bytes]] = []
    for document in documents:
        images = []
        for width, height in document.sizes:
            if not blobs:
                raise wire.WireError("preview: fewer images than the manifest says")
            image = blobs.pop(0)
            if len(image) > MAX_PNG_BYTES:
                raise wire.WireError("preview: page image too large")
            if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
                raise wire.WireError("preview: page image of an impossible size")
            try:
                actual = png_size(image)
            except ValueError:
                raise wire.WireError("preview: page image is not a PNG") from None
            if actual != (width, height):
                raise wire.WireError("preview: page image does not match its size")
            images.append(image)
        pages.append(images)
    if blobs:
        raise wire.WireError("preview: more images than the manifest says")
    return documents, pages


# --- in the worker ---------------------------------------------------------------------------


def _render_pdf(data: bytes) -> Frame:
    """In a forked child: the first pages of a PDF as PNG."""
    import io

    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = "PDF_ENCRYPTED" if "password" in str(exc).lower() else "PDF_DAMAGED"
        return Frame({"page_count": 0, "sizes": [], "problem": code})
    try:
        count = len(document)
        sizes, images = [], []
        for index in range(min(count, MAX_PAGES)):
            page = document[index]
            try:
                width, height = page.get_size()
                if page.get_rotation() in (90, 270):
                    width, height = height, width
                scale = DPI / 72.0
                longest = max(width, height) * scale
                if longest > MAX_SIDE:
                    scale *= MAX_SIDE / longest
                image = page.render(scale=scale, draw_annots=True).to_pil().convert("RGB")
            finally:
                page.close()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=False)
            sizes.append([image.width, image.height])
            images.append(buffer.getvalue())
        return Frame({"page_count": count, "sizes": sizes, "problem": ""}, tuple(images))
    finally:
        document.close()


def _office_text(data: bytes, kind: str) -> Frame:
    """In a forked child: the text of a rebuilt docx/xlsx/pptx (lxml, no entities, no
    network), paragraphs on lines."""
    import io
    import zipfile

    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    prefix = {"docx": "word/", "xlsx": "xl/", "pptx": "ppt/slides/"}[kind]
    wanted = {
        "docx": ("word/document.xml",),
        "xlsx": ("xl/sharedStrings.xml",),
        "pptx": (),
    }[kind]
    lines: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".xml")]
        if kind == "pptx":
            names = sorted(
                (n for n in names if n.rsplit("/", 1)[-1].startswith("slide")),
                key=lambda n: int("".join(c for c in n if c.isdigit()) or 0),
            )
        else:
            names = [n for n in wanted if n in names]
        for name in names:
            info = archive.getinfo(name)
            if info.file_size > 20 * 1024 * 1024:
                continue
            root = etree.fromstring(archive.read(name), parser)
            for paragraph in root.iter("{*}p", "{*}si"):
                text = "".join(t.text or "" for t in paragraph.iter("{*}t"))
                if text.strip():
                    lines.append(text)
            if sum(len(line) for line in lines) > MAX_TEXT:
                break
    return Frame({"text": "\n".join(lines)[:MAX_TEXT]})


def _pdf_child_result(frame: Frame) -> Frame:
    return frame


def render_message(message: bytes) -> Frame:
    """In the pool worker: every PDF and Office attachment of ``message`` (a sanitized copy),
    each in its own limited child. Never raises for any input: a failure is a ``problem``."""
    from gateway.detect import detect
    from gateway.errors import CannotSanitize
    from gateway.mime import MimeLimitExceeded, MimeLimits, parse_message
    from gateway.workers import run_isolated

    try:
        parsed = parse_message(message, MimeLimits(max_depth=10, max_parts=500))
    except (MimeLimitExceeded, Exception):
        return Frame({"documents": []})
    documents: list[dict[str, Any]] = []
    images: list[bytes] = []
    for part in parsed.root.walk():
        if len(documents) >= MAX_DOCUMENTS:
            break
        if part.is_multipart or not part.payload:
            continue
        found = detect(part.payload, part.untrusted_filename, part.declared_type, part.part_id)
        kind = "pdf" if found.mime == "application/pdf" else OFFICE_TYPES.get(found.mime)
        if kind is None:
            continue
        entry: dict[str, Any] = {
            "part_id": part.part_id[:200],
            "filename": part.untrusted_filename[:1000],
            "kind": kind,
            "page_count": 0,
            "sizes": [],
            "text": None,
            "problem": "",
        }
        try:
            if kind == "pdf":
                result = run_isolated(
                    _render_pdf,
                    part.payload,
                    timeout=DOCUMENT_TIMEOUT,
                    memory_limit_mb=DOCUMENT_MEMORY_MB,
                    decode=_pdf_child_result,
                )
                entry["page_count"] = int(result.header.get("page_count", 0))
                entry["problem"] = str(result.header.get("problem", ""))[:300]
                sizes = result.header.get("sizes", [])
                if len(sizes) != len(result.blobs) or len(sizes) > MAX_PAGES:
                    raise CannotSanitize("WORKER_PROTOCOL", "page images and sizes differ")
                entry["sizes"] = sizes
                images.extend(result.blobs)
            else:
                result = run_isolated(
                    _office_text,
                    part.payload,
                    kind,
                    timeout=DOCUMENT_TIMEOUT,
                    memory_limit_mb=DOCUMENT_MEMORY_MB,
                    decode=_pdf_child_result,
                )
                entry["text"] = str(result.header.get("text", ""))[:MAX_TEXT]
        except CannotSanitize as exc:
            entry["problem"] = exc.code
            entry["sizes"] = []
        documents.append(entry)
    return Frame({"documents": documents}, tuple(images))


def worker(init_payload: object) -> Any:
    """``WorkerPool`` target: the job is the sanitized message's bytes."""
    return render_message


# --- in the web process ----------------------------------------------------------------------


class PreviewRenderer:
    """Renders previews in a worker pool of its own, started on first use; one job at a
    time (an admin's click, not mail flow). ``render`` returns the checked result."""

    def __init__(self) -> None:
        self.pool: Any = None
        self._lock = asyncio.Lock()

    async def render(self, message: bytes) -> tuple[list[PreviewDocument], list[list[bytes]]]:
        from gateway.workers import WorkerLimits, WorkerPool

        async with self._lock:
            if self.pool is None:
                self.pool = WorkerPool(
                    "quarantine.pages:worker",
                    None,
                    count=1,
                    limits=WorkerLimits(
                        memory_limit_mb=WORKER_MEMORY_MB, timeout=JOB_TIMEOUT, max_jobs=50
                    ),
                    preload=("quarantine.pages",),
                    decode=check_result,
                    max_result_bytes=MAX_DOCUMENTS * MAX_PAGES * MAX_PNG_BYTES + (1 << 20),
                )
                await self.pool.start()
            return await self.pool.run(message)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close(grace=5)
            self.pool = None
