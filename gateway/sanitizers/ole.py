"""Legacy Office (doc/xls/ppt, CDFV2): inspected with oletools; delivered only if clean.

No library rebuilds a Word 97 binary document faithfully, so this sanitizer inspects instead
of rebuilding, with oletools:

- ``olevba`` for VBA projects (``OLE_VBA_MACRO``, with the auto-exec and suspicious keywords
  as evidence; a stomped or source-less project still counts) and Excel 4.0 macros in BIFF
  records (``OLE_XLM_MACRO``);
- ``msodde`` for DDE/DDEAUTO fields in Word and DDE links in Excel (``DDE_FIELD``);
- the compound file's own directory (olefile) for embedded objects: Word ``ObjectPool``,
  Excel ``MBD*`` storages, ``Ole10Native`` packages (the LNK/EXE carrier), ``Equation
  Native`` (CVE-2017-11882); in PowerPoint files a scan of the PowerPoint Document stream for
  object, OLE link and ActiveX records (``ppt_object_records``: oletools' PPT parser refuses
  ordinary files, see there); oleid's Flash detector (``OLE_EMBEDDED_OBJECT``).

Fail closed: a check that raises is the finding ``OLE_CHECK_FAILED`` (which check, which
error), never silence, so the file is not "verified clean" and gets no as-received output.

Then, by ``options.mode``:

``rebuild`` (the default action for this class)
    A file with none of the above is returned as received: it was verified, not rebuilt
    (the note says so). A file with any of them gets no output, only the findings: the
    policy strips it with a notice (the default) or quarantines it.
``rasterize`` / ``both``
    LibreOffice (``soffice --headless --convert-to pdf``) turns the document into a PDF,
    which ``gateway.sanitizers.pdf.rasterize_pdf`` renders to an image-only PDF. LibreOffice
    is an optional Debian package: without it the part gets no output and the finding
    ``OLE_RASTERIZE_UNAVAILABLE``. It runs with a throw-away profile, no macros (headless
    conversion never runs them), and the caller's time and memory limits.

Encrypted files (RC4/CryptoAPI .doc/.xls/.ppt, and encrypted OOXML, which is an OLE
container) cannot be inspected: ``OFFICE_ENCRYPTED``, no output. Other OLE files (Outlook
.msg, Visio, unknown) are not documents we can vouch for: ``OLE_UNSUPPORTED_TYPE``.

Temporary files: msodde and LibreOffice read from paths, so the input is written to a private
directory (``tempfile.TemporaryDirectory``, mode 0700) that is removed before returning.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from gateway.detect import extension_of, sanitize_filename
from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult

FINDING_CODES: tuple[str, ...] = (
    "OLE_VBA_MACRO",  # a VBA project (detail: auto-exec and suspicious keywords)
    "OLE_XLM_MACRO",  # Excel 4.0 macros
    "OLE_EMBEDDED_OBJECT",  # embedded OLE object, package, equation, Flash
    "DDE_FIELD",  # DDE/DDEAUTO field or DDE link
    "OFFICE_ENCRYPTED",  # encrypted: cannot inspect
    "OLE_UNSUPPORTED_TYPE",  # an OLE file that is not a Word/Excel/PowerPoint document
    "OLE_DAMAGED",  # the compound file cannot be read
    "OLE_VERIFIED_CLEAN",  # delivered as received: oletools found nothing active
    "OLE_RASTERIZED",  # rendered through LibreOffice into an image-only PDF
    "OLE_RASTERIZE_UNAVAILABLE",  # rasterize asked for, LibreOffice not installed
    "OLE_CHECK_FAILED",  # an inspection (olevba, msodde, object scan) raised: not verified
)

_SOFFICE_TIMEOUT = 120.0
_MIME = {
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
}


def _kind(ole: Any) -> str:
    streams = {"/".join(s).lower() for s in ole.listdir(streams=True, storages=True)}
    if "worddocument" in streams:
        return "doc"
    if "workbook" in streams or "book" in streams:
        return "xls"
    if "powerpoint document" in streams:
        return "ppt"
    return ""


# [MS-PPT] 2.13.24 RecordType values of the PowerPoint Document stream that carry or
# describe embedded content: ExOleObjStg / VbaProjectStg / ActiveX storage (0x1011, the
# compressed or raw compound file of the object itself), ExOleEmbedContainer (0x0FCC),
# ExOleLinkContainer (0x0FCE, a link to an outside file) and ExControlContainer (0x0FEE).
_PPT_OBJECT_HEADERS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\x11\x10", "ExOleObjStg (uncompressed)"),
    (b"\x10\x00\x11\x10", "ExOleObjStg (compressed)"),
    (b"\x0f\x00\xcc\x0f", "ExOleEmbedContainer"),
    (b"\x0f\x00\xce\x0f", "ExOleLinkContainer"),
    (b"\x0f\x00\xee\x0f", "ExControlContainer"),
)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def ppt_object_records(stream: bytes) -> list[str]:
    """Embedded-object records anywhere in a PowerPoint Document stream, as evidence.

    A signature scan over every offset, not a walk of the record tree: PowerPoint finds its
    persist objects through offsets (the persist directory), so a record may sit where a
    sequential walk never looks (inside another atom's body, after damaged records), and
    oletools' own parser gives up on ordinary files (``plain.ppt`` of the corpus: "CurrentUser
    record has wrong size"). A header counts when its length fits in the stream; a raw
    compound-file signature inside the stream counts too. Total: never raises."""
    found: list[str] = []
    for header, label in _PPT_OBJECT_HEADERS:
        start = stream.find(header)
        while start >= 0:
            if start + 8 <= len(stream):
                (length,) = struct.unpack_from("<I", stream, start + 4)
                if 0 < length <= len(stream) - start - 8:
                    found.append(f"{label} at offset {start}")
            start = stream.find(header, start + 1)
    embedded = stream.find(_OLE_MAGIC)
    if embedded >= 0:
        found.append(f"compound file inside the stream at offset {embedded}")
    return found


def _embedded_objects(ole: Any, data: bytes, kind: str) -> list[str]:
    """Evidence of embedded objects. Raises whatever a check raises: the caller turns that
    into ``OLE_CHECK_FAILED`` (a check that did not finish proves nothing)."""
    evidence: list[str] = []
    for path in ole.listdir(streams=True, storages=True):
        lowered = [p.lower() for p in path]
        joined = "/".join(path)
        if lowered[0] == "objectpool" and len(lowered) == 2:
            evidence.append(f"ObjectPool/{path[1]}")
        elif lowered[0].startswith("mbd") and len(lowered) == 1:
            evidence.append(f"embedded storage {path[0]}")
        elif lowered[-1] in ("\x01ole10native", "equation native", "package", "contents"):
            if lowered[-1] == "contents" and len(lowered) == 1:
                continue  # a top-level Contents stream is Publisher/Works, not an object
            evidence.append(joined.replace("\x01", "\\x01"))
    if kind == "ppt":
        records = ppt_object_records(ole.openstream("PowerPoint Document").read())
        if records:
            more = f"; and {len(records) - 3} more" if len(records) > 3 else ""
            evidence.append(f"PowerPoint records: {'; '.join(records[:3])}{more}")
    from oletools.oleid import detect_flash

    flashes = detect_flash(data)
    if flashes:
        evidence.append(f"{len(flashes)} Flash object(s)")
    return list(dict.fromkeys(evidence))


def _macros(data: bytes) -> tuple[str | None, str | None]:
    """(VBA evidence or None, XLM evidence or None), per olevba."""
    from oletools.olevba import VBA_Parser

    parser = VBA_Parser("input", data=data)
    try:
        vba = parser.detect_vba_macros()
        xlm = parser.detect_xlm_macros()
        keywords: list[str] = []
        if vba or xlm:
            # Evidence only: the macros were already found, so the file is not clean whether
            # or not the keyword analysis finishes.
            with contextlib.suppress(Exception):
                keywords = [
                    keyword
                    for kind, keyword, _ in parser.analyze_macros()
                    if kind in ("AutoExec", "Suspicious")
                ]
        evidence = ", ".join(dict.fromkeys(keywords))[:200]
        return (evidence or "VBA project" if vba else None), (
            evidence or "Excel 4.0 macro sheet" if xlm else None
        )
    finally:
        parser.close()


def _check_failed(check: str, exc: Exception, part_id: str) -> Finding:
    """A check that raised proves nothing, so it is a finding like any hazard: the file gets
    no as-received output (the policy strips or holds it) and the detail says which check
    failed and how. ``OLE_CHECK_FAILED`` is one of ``base.CHECK_FAILED_CODES``, so
    ``gateway.inspect`` delivers no output with it at all, a rasterized one included."""
    if isinstance(exc, MemoryError):
        raise exc  # the child is out of memory: run_isolated reports WORKER_MEMORY
    return Finding("OLE_CHECK_FAILED", part_id, f"{check}: {type(exc).__name__}: {exc}"[:200])


def _dde(path: Path) -> str:
    from oletools import msodde

    with contextlib.redirect_stdout(io.StringIO()):
        found = msodde.process_file(str(path), msodde.FIELD_FILTER_BLACKLIST)
    return " ".join(found.split())[:200] if found else ""


def soffice_path() -> str | None:
    """LibreOffice's ``soffice``, if installed (an optional Debian package)."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def office_to_pdf(path: Path, workdir: Path) -> bytes:
    """LibreOffice's PDF of an Office file (no macros run in headless conversion).
    Raises CannotSanitize OLE_RASTERIZE_UNAVAILABLE without LibreOffice."""
    soffice = soffice_path()
    if soffice is None:
        raise CannotSanitize("OLE_RASTERIZE_UNAVAILABLE", "LibreOffice is not installed")
    profile = workdir / "profile"
    outdir = workdir / "out"
    outdir.mkdir()
    env = {"HOME": str(workdir), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    try:
        subprocess.run(
            [
                soffice,
                f"-env:UserInstallation=file://{profile}",
                "--headless",
                "--norestore",
                "--nolockcheck",
                "--nodefault",
                "--convert-to",
                "pdf",
                "--outdir",
                str(outdir),
                str(path),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_SOFFICE_TIMEOUT,
            check=False,
            close_fds=True,
        )
    except subprocess.TimeoutExpired:
        raise CannotSanitize("WORKER_TIMEOUT", "LibreOffice conversion timed out") from None
    produced = list(outdir.glob("*.pdf"))
    if not produced:
        raise CannotSanitize("OLE_DAMAGED", "LibreOffice produced no PDF")
    return produced[0].read_bytes()


class OleSanitizer:
    """See Sanitizer."""

    name = "ole-inspect"
    description = "Inspect legacy doc/xls/ppt with oletools; deliver only verified-clean files"
    handles = frozenset({"ole"})

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        """See Sanitizer."""
        import olefile
        from oletools import crypto

        try:
            ole = olefile.OleFileIO(data)
        except Exception as exc:  # olefile raises OSError and assorted parse errors
            raise CannotSanitize("OLE_DAMAGED", f"{type(exc).__name__}: {exc}"[:200]) from None
        with ole:
            try:
                encrypted = crypto.is_encrypted(ole)
            except Exception:
                encrypted = True  # cannot tell: treat as uninspectable
            if encrypted:
                raise CannotSanitize("OFFICE_ENCRYPTED", "encrypted Office document")
            kind = _kind(ole)
            failed: list[Finding] = []
            if not kind:
                raise CannotSanitize("OLE_UNSUPPORTED_TYPE", "not a Word/Excel/PowerPoint file")
            try:
                objects = _embedded_objects(ole, data, kind)
            except Exception as exc:  # see _check_failed
                objects = []
                failed.append(_check_failed("embedded objects", exc, part_id))

        findings: list[Finding] = []
        try:
            vba, xlm = _macros(data)
        except Exception as exc:  # see _check_failed
            vba = xlm = None
            failed.append(_check_failed("olevba", exc, part_id))
        if vba:
            findings.append(Finding("OLE_VBA_MACRO", part_id, vba))
        if xlm:
            findings.append(Finding("OLE_XLM_MACRO", part_id, xlm))
        if objects:
            findings.append(Finding("OLE_EMBEDDED_OBJECT", part_id, "; ".join(objects)[:300]))

        name = sanitize_filename(
            filename or f"document.{kind}",
            new_extension=None if extension_of(filename) in _EXTENSIONS[kind] else kind,
        )
        with tempfile.TemporaryDirectory(prefix="mugaika-ole-") as tmp:
            workdir = Path(tmp)
            path = workdir / f"input.{kind}"
            path.write_bytes(data)
            try:
                dde = _dde(path)
            except Exception as exc:  # see _check_failed
                dde = ""
                failed.append(_check_failed("msodde", exc, part_id))
            if dde:
                findings.append(Finding("DDE_FIELD", part_id, dde))
            findings.extend(failed)

            if options.mode in ("rasterize", "both"):
                try:
                    pdf = office_to_pdf(path, workdir)
                except CannotSanitize as exc:
                    findings.append(Finding(exc.code, part_id, str(exc)[:200]))
                    return SanitizeResult(findings=tuple(findings))
                from gateway.sanitizers.pdf import rasterize_pdf

                image_pdf, pages = rasterize_pdf(pdf, options)
                findings.append(Finding("OLE_RASTERIZED", part_id, f"{pages} pages"))
                stem = name.rsplit(".", 1)[0]
                output = OutputFile(image_pdf, sanitize_filename(f"{stem}.pdf"), "application/pdf")
                return SanitizeResult(outputs=(output,), findings=tuple(findings))

        if findings:
            return SanitizeResult(findings=tuple(findings))
        findings.append(
            Finding("OLE_VERIFIED_CLEAN", part_id, "olevba, msodde, object scan: nothing active")
        )
        return SanitizeResult(
            outputs=(OutputFile(data, name, _MIME[kind]),),
            findings=tuple(findings),
            notes=("delivered as received after inspection; not rebuilt",),
        )


_EXTENSIONS = {
    "doc": {"doc", "dot"},
    "xls": {"xls", "xlt", "xla"},
    "ppt": {"ppt", "pot", "pps"},
}
