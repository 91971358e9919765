"""Benchmark of content disarm and reconstruction (a script, not a test).

    .venv/bin/python benchmarks/bench_cdr.py [--runs 30] [--isolated]
    .venv/bin/python benchmarks/bench_cdr.py --per-document MANIFEST.json --out OUT.json [--runs 9]

Generates its inputs (nothing is read from disk): a ~1 MB PDF (50 pages of text, each with a
photo-like JPEG; every line's https:// URL is swapped glyph for glyph), the same PDF with a
mail address on every fifth page (those 10 pages are rasterized in place: issue 11), a ~500
KB docx (paragraphs and pictures), a ~5 MB JPEG (noise, which compresses badly), a ~1 MB
CP932 CSV with a formula cell on every row, and times the sanitizers on them; also the
legacy-Office inspection of the corpus's ``plain.doc`` (when ../shared/corpus is there) and
``gateway.detect`` on a ~1 MB XML file. Prints median and p99 per file and the rasterize
time per PDF page (PDFium at 150 dpi, JPEG pages reassembled by pikepdf).
``--isolated`` times each call through ``gateway.workers.run_isolated`` as the gateway runs
it (libraries preloaded as a worker does, fork, limits, the result read back as a checked
frame), so the fork cost is included; type detection runs in the worker itself, so ``xml``
is timed in-process either way. p99 over a few dozen runs is
close to the maximum: read it as "the slow end", not as a fine percentile.

``--per-document`` (what ``benchmarks/run`` calls, issue 13's "per document, median within
1.5× of the bare library calls") times the documents a manifest lists (``[{"label", "name",
"path"}]``) three ways, interleaved run by run in a worker-like process (the default policy's
``Pipeline`` built first, so the libraries are preloaded as in a pool worker): Mugaika's
sanitizer as the gateway runs it (``run_isolated`` with the default policy's options and
limits), the same sanitizer called in this process (what the isolation costs is the
difference), and the bare library calls doing the same essential work (``BARE``). Writes
medians and ratios as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pikepdf
from PIL import Image

from gateway.sanitizers import preload_libraries
from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.image import ImageSanitizer
from gateway.sanitizers.ole import OleSanitizer
from gateway.sanitizers.ooxml import OoxmlSanitizer
from gateway.sanitizers.pdf import SAVE_OPTIONS, PdfSanitizer, library_removals, rasterize_pdf
from gateway.sanitizers.text import TextSanitizer
from gateway.workers import run_isolated


def noise_jpeg(width: int, height: int, quality: int) -> bytes:
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_pdf(pages: int = 50, mail_every: int = 0) -> bytes:
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    photo = noise_jpeg(200, 150, 85)
    for number in range(pages):
        page = pdf.add_blank_page(page_size=(595, 842))
        image = pdf.make_stream(
            photo,
            Type=pikepdf.Name.XObject,
            Subtype=pikepdf.Name.Image,
            Width=200,
            Height=150,
            ColorSpace=pikepdf.Name.DeviceRGB,
            BitsPerComponent=8,
            Filter=pikepdf.Name.DCTDecode,
        )
        lines = "".join(
            f"BT /F1 10 Tf 50 {800 - 14 * i} Td (Page {number} line {i}: "
            f"municipal notice text, see https://example.jp/{i}) Tj ET\n"
            for i in range(40)
        )
        if mail_every and number % mail_every == 0:
            lines += "BT /F1 10 Tf 50 200 Td (Contact: soumu@city.example.lg.jp) Tj ET\n"
        content = lines + "q 160 0 0 120 380 60 cm /Im0 Do Q\n"
        page.obj.Resources = pikepdf.Dictionary(
            Font=pikepdf.Dictionary(F1=font), XObject=pikepdf.Dictionary(Im0=image)
        )
        page.obj.Contents = pdf.make_stream(content.encode())
    buffer = io.BytesIO()
    pdf.save(buffer, compress_streams=True)
    return buffer.getvalue()


def make_docx(paragraphs: int = 300, pictures: int = 8) -> bytes:
    import docx
    from docx.shared import Cm

    document = docx.Document()
    for index in range(paragraphs):
        document.add_paragraph(
            f"第{index}段落: 住民の皆様へのお知らせです。 Notice paragraph {index}."
        )
        if index % (paragraphs // pictures) == 0:
            document.add_picture(io.BytesIO(noise_jpeg(320, 240, 85)), width=Cm(8))
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_jpeg() -> bytes:
    return noise_jpeg(2400, 1800, 95)


def make_csv(rows: int = 12_000) -> bytes:
    lines = ["番号,氏名,住所,金額,備考"]
    for index in range(rows):
        lines.append(
            f"{index},山田 太郎{index},東京都千代田区霞が関{index}-1,-{index},=SUM(D{index})"
        )
    return ("\r\n".join(lines) + "\r\n").encode("cp932")


def make_xml(records: int = 8_000) -> bytes:
    body = "".join(
        f"<人 番号='{i}'><名前>山田{i}</名前><住所>東京都</住所></人>" for i in range(records)
    )
    return f'<?xml version="1.0" encoding="utf-8"?><住所録>{body}</住所録>'.encode()


class Detector:
    """``gateway.detect.detect`` shaped like a sanitizer, to time it alongside them."""

    def sanitize(self, data: bytes, name: str, part_id: str, options: Any) -> Any:
        from gateway.detect import detect

        return detect(data, name, "text/xml", part_id)


def timed(call: Callable[[], Any], runs: int) -> list[float]:
    call()  # warm-up: imports, caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


# --- per document: Mugaika against the bare library calls -----------------------------------


def bare_pdf(data: bytes) -> bytes:
    """pikepdf alone: open, its own removal of active content (the same ``pikepdf.sanitize``
    steps the PDF sanitizer starts with), written with the sanitizer's save options."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        library_removals().apply(pdf)
        out = io.BytesIO()
        pdf.save(out, **SAVE_OPTIONS)
    return out.getvalue()


def bare_ooxml(data: bytes) -> bytes:
    """zipfile alone: every member read, a new ZIP written (deflated)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    return out.getvalue()


def bare_image(data: bytes) -> bytes:
    """Pillow alone: decoded and encoded again in its format (JPEG at the sanitizer's 92)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    out = io.BytesIO()
    image.save(out, format=image.format, quality=92)
    return out.getvalue()


BARE: dict[str, Callable[[bytes], bytes]] = {
    "pdf": bare_pdf,
    "ooxml": bare_ooxml,
    "image": bare_image,
}


def per_document(documents: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    """Median ms per document: ``isolated`` (as the gateway runs it), ``in_process`` (the same
    sanitizer without its child) and ``bare`` (``BARE``); ``ratio`` is isolated / bare.
    ``documents``: ``{"label", "name", "data"}``. Must run in a single-threaded process."""
    import dataclasses

    from gateway.config import load_config
    from gateway.detect import detect
    from gateway.pipeline import Pipeline
    from gateway.sanitizers import sanitizer_for
    from gateway.scan import envelope_for

    config = load_config(environ={})
    pipeline = Pipeline(config)  # preloads the libraries, as a pool worker does
    head = b"From: sender@example.com\r\nTo: user@example.lg.jp\r\n\r\n"
    settings = pipeline.policy_for(envelope_for(head, None, None)).settings
    timeout = config.workers.document_timeout
    memory = config.workers.document_memory_limit_mb
    calls: list[tuple[dict[str, Any], dict[str, Callable[[], Any]]]] = []
    for document in documents:
        data, name = document["data"], document["name"]
        content_class = detect(data, name, "application/octet-stream", "1").content_class
        sanitizer = sanitizer_for(content_class)
        if sanitizer is None or content_class not in BARE:
            raise SystemExit(f"per-document: {name} is {content_class}: no sanitizer to time")
        options = dataclasses.replace(settings.sanitize_options(content_class), time_limit=timeout)

        def isolated(s: Any = sanitizer, d: bytes = data, n: str = name, o: Any = options) -> Any:
            return run_isolated(s.sanitize, d, n, "1", o, timeout=timeout, memory_limit_mb=memory)

        def in_process(s: Any = sanitizer, d: bytes = data, n: str = name, o: Any = options) -> Any:
            return s.sanitize(d, n, "1", o)

        def bare(c: str = content_class, d: bytes = data) -> Any:
            return BARE[c](d)

        result = isolated()  # warm-up, and proof that the default policy delivers it
        if not result.outputs:
            raise SystemExit(f"per-document: {name} gave no output ({result.findings})")
        in_process()
        bare()
        calls.append(
            (
                {**document, "content_class": content_class},
                {"isolated": isolated, "in_process": in_process, "bare": bare},
            )
        )
    samples: dict[int, dict[str, list[float]]] = {
        index: {kind: [] for kind in ("isolated", "in_process", "bare")}
        for index in range(len(calls))
    }
    for run in range(runs):
        for index, (_document, timed_calls) in enumerate(calls):
            # Rotated order, so that neither way always follows the other.
            order = list(timed_calls.items())
            shift = (run + index) % len(order)
            for kind, call in order[shift:] + order[:shift]:
                started = time.perf_counter()
                call()
                samples[index][kind].append(time.perf_counter() - started)
    rows = []
    for index, (document, _calls) in enumerate(calls):
        medians = {kind: 1000 * statistics.median(s) for kind, s in samples[index].items()}
        rows.append(
            {
                "label": document["label"],
                "name": document["name"],
                "content_class": document["content_class"],
                "size": len(document["data"]),
                "runs": runs,
                **{f"{kind}_ms": round(value, 2) for kind, value in medians.items()},
                "ratio": round(medians["isolated"] / medians["bare"], 3),
            }
        )
    return rows


def per_document_main(manifest: Path, out: Path, runs: int) -> None:
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    documents = [
        {"label": e["label"], "name": e["name"], "data": Path(e["path"]).read_bytes()}
        for e in entries
    ]
    rows = per_document(documents, runs)
    out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{'document':<34}{'size':>11}{'isolated':>10}{'in-proc':>9}{'bare':>8}{'ratio':>7}")
    for row in rows:
        print(
            f"{row['label'][:33]:<34}{row['size']:>11,}{row['isolated_ms']:>10.1f}"
            f"{row['in_process_ms']:>9.1f}{row['bare_ms']:>8.1f}{row['ratio']:>6.2f}×"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--isolated", action="store_true", help="time through run_isolated")
    parser.add_argument("--per-document", type=Path, metavar="MANIFEST", help="see above")
    parser.add_argument("--out", type=Path, help="with --per-document: the JSON to write")
    args = parser.parse_args()
    if args.per_document:
        if args.out is None:
            parser.error("--per-document needs --out")
        per_document_main(args.per_document, args.out, args.runs)
        return

    options = SanitizeOptions()
    inputs = {
        "pdf": ("report.pdf", make_pdf(), PdfSanitizer()),
        "pdf-mail": ("report.pdf", make_pdf(mail_every=5), PdfSanitizer()),
        "docx": ("notice.docx", make_docx(), OoxmlSanitizer()),
        "jpeg": ("photo.jpg", make_jpeg(), ImageSanitizer()),
        "csv": ("list.csv", make_csv(), TextSanitizer()),
        "xml": ("list.xml", make_xml(), Detector()),
    }
    plain_doc = (
        Path(__file__).resolve().parents[2] / "shared/corpus/msoffcrypto-tool/inputs/plain.doc"
    )
    if plain_doc.is_file():
        inputs["doc"] = ("plain.doc", plain_doc.read_bytes(), OleSanitizer())
    if args.isolated:
        preload_libraries()  # what a worker's Pipeline does before its first document
    print(f"runs={args.runs} isolated={args.isolated} cpu={os.cpu_count()}")
    print(f"{'input':<10}{'size':>12}{'median ms':>12}{'p99 ms':>10}")
    for label, (name, data, sanitizer) in inputs.items():
        if args.isolated and not isinstance(sanitizer, Detector):

            def call(s: Any = sanitizer, d: bytes = data, n: str = name) -> Any:
                return run_isolated(
                    s.sanitize, d, n, "1", options, timeout=120, memory_limit_mb=2048
                )
        else:

            def call(s: Any = sanitizer, d: bytes = data, n: str = name) -> Any:
                return s.sanitize(d, n, "1", options)

        samples = timed(call, args.runs)
        print(
            f"{label:<10}{len(data):>12,}{statistics.median(samples) * 1000:>12.1f}"
            f"{p99(samples) * 1000:>10.1f}"
        )

    pdf = inputs["pdf"][1]
    pages = len(pikepdf.open(io.BytesIO(pdf)).pages)
    raster_runs = max(3, args.runs // 5)
    samples = timed(lambda: rasterize_pdf(pdf, options), raster_runs)
    per_page = [s / pages for s in samples]
    print(
        f"rasterize {pages} pages at {options.rasterize_dpi} dpi: median "
        f"{statistics.median(per_page) * 1000:.1f} ms/page, p99 {p99(per_page) * 1000:.1f} "
        f"ms/page ({raster_runs} runs)"
    )


if __name__ == "__main__":
    main()
