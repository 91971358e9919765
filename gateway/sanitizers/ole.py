"""Legacy Office (doc/xls/ppt, CDFV2): inspected with oletools; delivered only if clean.

No library rebuilds a Word 97 binary document faithfully, so this sanitizer inspects instead
of rebuilding, with oletools:

- ``olevba`` for VBA projects (``OLE_VBA_MACRO``, with the auto-exec and suspicious keywords
  as evidence; a stomped or source-less project still counts) and Excel 4.0 macros in BIFF
  records (``OLE_XLM_MACRO``);
- ``msodde`` for DDE/DDEAUTO fields in Word and DDE links in Excel (``DDE_FIELD``);
- the compound file's own directory (olefile) and ``oleobj``'s PowerPoint record walker for
  embedded objects: Word ``ObjectPool``, Excel ``MBD*`` storages, ``Ole10Native`` packages
  (the LNK/EXE carrier), ``Equation Native`` (CVE-2017-11882), Flash (``OLE_EMBEDDED_OBJECT``).

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
import subprocess
import tempfile
from pathlib import Path

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
)

_SOFFICE_TIMEOUT = 120.0
_MIME = {
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
}


def _kind(ole: object) -> str:
    streams = {"/".join(s).lower() for s in ole.listdir(streams=True, storages=True)}  # type: ignore[attr-defined]
    if "worddocument" in streams:
        return "doc"
    if "workbook" in streams or "book" in streams:
        return "xls"
    if "powerpoint document" in streams:
        return "ppt"
    return ""


def _embedded_objects(ole: object, data: bytes, kind: str) -> list[str]:
    evidence: list[str] = []
    for path in ole.listdir(streams=True, storages=True):  # type: ignore[attr-defined]
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
        with contextlib.suppress(Exception):
            from oletools.oleobj import find_ole_in_ppt

            count = sum(1 for _ in find_ole_in_ppt(data))
            if count:
                evidence.append(f"{count} embedded OLE object(s) in PowerPoint records")
    with contextlib.suppress(Exception):
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
            if not kind:
                raise CannotSanitize("OLE_UNSUPPORTED_TYPE", "not a Word/Excel/PowerPoint file")
            objects = _embedded_objects(ole, data, kind)

        findings: list[Finding] = []
        try:
            vba, xlm = _macros(data)
        except Exception as exc:  # olevba could not parse: the file is not verified clean
            raise CannotSanitize("OLE_DAMAGED", f"olevba: {type(exc).__name__}") from None
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
            except Exception as exc:
                raise CannotSanitize("OLE_DAMAGED", f"msodde: {type(exc).__name__}") from None
            if dde:
                findings.append(Finding("DDE_FIELD", part_id, dde))

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
            Finding("OLE_VERIFIED_CLEAN", part_id, "olevba, msodde, oleobj found nothing active")
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
