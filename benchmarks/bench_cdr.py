"""Benchmark of content disarm and reconstruction (a script, not a test).

    .venv/bin/python benchmarks/bench_cdr.py [--runs 30] [--isolated]

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
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
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
from gateway.sanitizers.pdf import PdfSanitizer, rasterize_pdf
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--isolated", action="store_true", help="time through run_isolated")
    args = parser.parse_args()

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
