"""The messages the differential tests send through the gateway, and running them there.

Three sets: every mail of the shared corpus (line ends made CRLF, as an MTA's SMTP client
sends them), the hostile and benign attachments of ``tests/helpers/hostile.py`` in mails, and
the generated ambiguous messages of ``tests/differential/ambiguous.py`` (plus variants of each
trick nested one level down and with an HTML form instead of a program).

``gateway_outputs`` runs the shipped pipeline (default policy, no DNS) on each in a pool of
worker processes (spawned, so that each can fork its sanitizer children as the gateway's
workers do) and returns what the gateway would deliver: for a delivered message the message,
for a held one the sanitized copy kept with it (an admin may release that copy).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from tests.differential import ambiguous
from tests.helpers import hostile
from tests.helpers.corpus import corpus_root


@dataclass(frozen=True, slots=True)
class Sample:
    name: str  # "corpus/cpython-email/msg_01.txt", "hostile/macro.docm", "ambiguous/..."
    raw: bytes


@dataclass(frozen=True, slots=True)
class Output:
    name: str
    verdict: str
    message: bytes  # delivered message, or the sanitized copy of a held one
    produced: frozenset[str]  # SHA-256 of every file the gateway wrote or kept
    findings: frozenset[str]
    verbatim: bool  # delivered byte for byte (the framing proof held)


def corpus_samples() -> list[Sample]:
    root = corpus_root()
    if root is None:
        return []
    rows = (root / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for row in rows:
        path, kind = row.split("\t")[0], row.split("\t")[4]
        if kind == "eml":
            data = re.sub(rb"\r\n|\r|\n", b"\r\n", (root / path).read_bytes())
            out.append(Sample(f"corpus/{path}", data))
    return out


HOSTILE: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("js-everywhere.pdf", hostile.pdf_with_js_everywhere, "application", "pdf"),
    ("macro.docm", hostile.docm, "application", "vnd.ms-word.document.macroEnabled.12"),
    ("macro.xlsm", hostile.xlsm, "application", "vnd.ms-excel.sheet.macroEnabled.12"),
    ("template.docx", hostile.docx_remote_template, "application", "octet-stream"),
    ("dde.docx", hostile.docx_dde, "application", "octet-stream"),
    ("ppap.zip", hostile.zipcrypto_zip, "application", "zip"),
    ("traversal.zip", hostile.zip_traversal, "application", "zip"),
    ("photo.jpg", hostile.polyglot_jpeg, "image", "jpeg"),
    ("invoice.pdf", hostile.pe_bytes, "application", "pdf"),
    ("shortcut.lnk", hostile.lnk_bytes, "application", "octet-stream"),
    ("tool", hostile.elf_bytes, "application", "octet-stream"),
    ("page.html", hostile.html_with_script, "text", "html"),
    ("logo.svg", hostile.svg_with_script, "image", "svg+xml"),
    ("報告書.pdf", lambda: hostile.benign_pdf(pages=2, url=True), "application", "pdf"),
    ("議事録.docx", lambda: hostile.benign_docx(link=True), "application", "octet-stream"),
    ("集計.xlsx", hostile.benign_xlsx, "application", "octet-stream"),
    ("写真.jpg", lambda: hostile.jpeg(exif=True), "image", "jpeg"),
    ("名簿.csv", lambda: "氏名,メール\n山田,yamada@example.jp\n".encode("cp932"), "text", "csv"),
    *[(name, hostile.pe_bytes, "application", "octet-stream") for name in hostile.RTLO_NAMES],
]


def hostile_samples() -> list[Sample]:
    out = []
    for index, (filename, make, maintype, subtype) in enumerate(HOSTILE):
        message = EmailMessage()
        message["From"] = "sender@partner.example"
        message["To"] = "user@city.example.lg.jp"
        message["Subject"] = f"sample {filename}"
        message["Message-ID"] = f"<h{index}@partner.example>"
        message.set_content("添付をご確認ください。 https://partner.example/info")
        message.add_attachment(make(), maintype=maintype, subtype=subtype, filename=filename)
        raw = message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out.append(Sample(f"hostile/{filename}", raw))
    return out


def ambiguous_samples() -> list[Sample]:
    """Every case as built, and each one again as an attached message (the same trick one
    level down, where only the recursive reading finds it); and the files encoded in text."""
    out = []
    for name in ambiguous.CASES:
        raw = ambiguous.build(name)
        out.append(Sample(f"ambiguous/{name}", raw))
        wrapper = ambiguous.top(
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="OUTER"\r\n',
            f"nested-{name}".encode(),
        )
        nested = (
            wrapper
            + b"\r\n"
            + ambiguous.multipart_body(
                ambiguous.text_part(b"Forwarded."),
                b"Content-Type: message/rfc822\r\n\r\n" + raw,
                boundary=b"OUTER",
            )
        )
        out.append(Sample(f"ambiguous/nested-{name}", nested))
    for name in ambiguous.EMBEDDED:
        out.append(Sample(f"ambiguous/{name}", ambiguous.build_embedded(name)))
    return out


def _process(sample: Sample) -> Output:
    from gateway.report import Verdict
    from tests.helpers.pipeline import run

    outcome = run(sample.raw)
    report = outcome.report
    produced = set()
    for record in report.attachments:
        if record.output_sha256:
            produced.add(record.output_sha256)
        if record.action == "kept":
            produced.add(record.sha256)
    body = outcome.message or b""
    verbatim = bool(body) and body.endswith(sample.raw)  # trace and summary fields on top
    return Output(
        sample.name,
        Verdict(outcome.verdict).label,
        body,
        frozenset(produced),
        frozenset(report.finding_codes()),
        verbatim and outcome.verdict == Verdict.DELIVER,
    )


def gateway_outputs(samples: list[Sample], workers: int = 2) -> Iterator[Output]:
    """The pipeline's output for each sample, in order."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(_process, samples, chunksize=8)


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / (hashlib.sha256(name.encode()).hexdigest()[:16] + ".eml")
    path.write_bytes(data)
    return path
