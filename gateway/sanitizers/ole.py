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
    With ``options.legacy_office == "convert"`` (the default) and LibreOffice installed, a
    file with active content is converted instead (see "Conversion" below); with
    ``"quarantine"`` it gets the finding ``OLE_HELD_BY_POLICY``, which holds the message.
``rasterize`` / ``both``
    LibreOffice (``soffice --headless --convert-to pdf``) turns the document into a PDF,
    which ``gateway.sanitizers.pdf.rasterize_pdf`` renders to an image-only PDF. LibreOffice
    is an optional Debian package: without it the part gets no output and the finding
    ``OLE_RASTERIZE_UNAVAILABLE``. It runs with a throw-away profile, no macros (headless
    conversion never runs them), and the caller's time and memory limits.

Conversion (``convert_to_ooxml``): LibreOffice (``soffice --headless --convert-to``) writes
the OOXML equivalent (doc -> docx, xls -> xlsx, ppt -> pptx), which then goes through
``gateway.sanitizers.ooxml`` like any received docx, so VBA, OLE objects, external links and
DDE are removed and the result verified; the file is delivered renamed. What the inspection
found becomes the OOXML sanitizer's "removed" codes (``OOXML_VBA_MACRO``...), beside
``OLE_CONVERTED``. LibreOffice runs in this (already isolated, limited) sanitizer child with:
a throw-away profile whose settings forbid macros outright (security level "very high",
macro execution disabled, VBA not even loaded) and never update links; no network (a fresh
user and network namespace: only a loopback that is down); its own process group, killed
whole at the deadline (``options.time_limit`` less a margin). Any failure -- no network
isolation, timeout, no output, an output the OOXML sanitizer refuses -- is
``OLE_CONVERT_FAILED`` and no output: the part is held as before. Without LibreOffice:
``OLE_CONVERT_UNAVAILABLE``, no output, as before.

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
import time
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
    "OLE_CONVERTED",  # active content: converted to OOXML by LibreOffice, then rebuilt
    "OLE_CONVERT_FAILED",  # conversion failed or timed out: no output
    "OLE_CONVERT_UNAVAILABLE",  # conversion asked for, LibreOffice not installed
    "OLE_HELD_BY_POLICY",  # active content, and the policy holds it (legacy_office: quarantine)
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


# The private profile's settings (registrymodifications.xcu), written before LibreOffice
# starts: macros can never run (security level 3 "very high" trusts no location and no
# signature; execution disabled), VBA is not even loaded, links are never updated, and
# documents may not fetch from untrusted referers. Headless conversion runs no macros anyway;
# this makes it a setting, not a behaviour.
_PROFILE_SETTINGS = (
    ("/org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel", "3"),
    ("/org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution", "true"),
    ("/org.openoffice.Office.Common/Security/Scripting", "BlockUntrustedRefererLinks", "true"),
    ("/org.openoffice.Office.Writer/Filter/Import/VBA", "Load", "false"),
    ("/org.openoffice.Office.Writer/Filter/Import/VBA", "Executable", "false"),
    ("/org.openoffice.Office.Calc/Filter/Import/VBA", "Load", "false"),
    ("/org.openoffice.Office.Calc/Filter/Import/VBA", "Executable", "false"),
    ("/org.openoffice.Office.Impress/Filter/Import/VBA", "Load", "false"),
    ("/org.openoffice.Office.Writer/Content/Update", "Link", "2"),  # 2: never
    ("/org.openoffice.Office.Calc/Content/Update", "Link", "2"),
)
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
# What is left of the sanitizer's time for LibreOffice: the child still has to rebuild and
# verify the result, and must answer before gateway.workers kills it.
_TIME_MARGIN = 3.0
_CONVERSIONS = {
    "doc": ("docx", "docx:MS Word 2007 XML"),
    "xls": ("xlsx", "xlsx:Calc MS Excel 2007 XML"),
    "ppt": ("pptx", "pptx:Impress MS PowerPoint 2007 XML"),
}


class SofficeFailed(Exception):
    """LibreOffice did not produce its output (why in the message)."""


def _write_profile(profile: Path) -> None:
    items = "".join(
        f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse">'
        f"<value>{value}</value></prop></item>\n"
        for path, name, value in _PROFILE_SETTINGS
    )
    user = profile / "user"
    user.mkdir(parents=True)
    (user / "registrymodifications.xcu").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"{items}</oor:items>\n",
        encoding="utf-8",
    )


def _without_network() -> None:
    """In the forked child, before exec: a new user namespace (so no privilege is needed)
    holding a new network namespace, whose only interface is a loopback that is down.
    The user's own ids are mapped to themselves, so files keep their owner. Raising here
    makes ``subprocess`` raise ``SubprocessError`` in the parent: no isolation, no run."""
    import ctypes

    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def run_soffice(path: Path, workdir: Path, convert_to: str, timeout: float) -> bytes:
    """LibreOffice's conversion of ``path`` (``--convert-to convert_to``): the bytes of the
    one file it wrote. Throw-away profile with macros forbidden (``_PROFILE_SETTINGS``), no
    network (``_without_network``), stdin closed, its own process group killed whole at
    ``timeout``. Raises ``SofficeFailed``; ``CannotSanitize`` OLE_RASTERIZE_UNAVAILABLE when
    LibreOffice is not installed."""
    soffice = soffice_path()
    if soffice is None:
        raise CannotSanitize("OLE_RASTERIZE_UNAVAILABLE", "LibreOffice is not installed")
    profile = workdir / "profile"
    outdir = workdir / "out"
    outdir.mkdir()
    _write_profile(profile)
    env = {"HOME": str(workdir), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    argv = [
        soffice,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--norestore",
        "--nolockcheck",
        "--nodefault",
        "--convert-to",
        convert_to,
        "--outdir",
        str(outdir),
        str(path),
    ]
    try:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,  # soffice forks soffice.bin: kill the whole group
            # preexec_fn is safe here: the sanitizer child is single-threaded.
            preexec_fn=_without_network,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SofficeFailed(f"cannot start LibreOffice without network: {exc}") from None
    try:
        process.wait(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        raise SofficeFailed(f"LibreOffice did not finish in {timeout:.0f} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, 9)
        process.wait()
    produced = sorted(outdir.iterdir())
    if len(produced) != 1 or not produced[0].is_file():
        raise SofficeFailed(f"LibreOffice wrote no output (exit status {process.returncode})")
    return produced[0].read_bytes()


def office_to_pdf(path: Path, workdir: Path) -> bytes:
    """LibreOffice's PDF of an Office file (see ``run_soffice``). Raises CannotSanitize
    OLE_RASTERIZE_UNAVAILABLE without LibreOffice."""
    try:
        return run_soffice(path, workdir, "pdf", _SOFFICE_TIMEOUT)
    except SofficeFailed as exc:
        code = "WORKER_TIMEOUT" if "did not finish" in str(exc) else "OLE_DAMAGED"
        raise CannotSanitize(code, str(exc)) from None


# Inspection findings, and what they become once the file is converted and rebuilt: the
# OOXML sanitizer's words for what it removes (tests check that the output has none of it).
_REMOVED_BY_CONVERSION = {
    "OLE_VBA_MACRO": "OOXML_VBA_MACRO",
    "OLE_XLM_MACRO": "OOXML_XLM_MACRO",
    "OLE_EMBEDDED_OBJECT": "OOXML_OLE_OBJECT",
}


def convert_to_ooxml(
    data: bytes, kind: str, name: str, found: list[Finding], part_id: str, options: SanitizeOptions
) -> SanitizeResult:
    """A file with active content, converted by LibreOffice and rebuilt by the OOXML
    sanitizer (see the module docstring). Failure: ``OLE_CONVERT_FAILED``, no output."""
    from gateway.sanitizers.ooxml import OoxmlSanitizer

    extension, convert_to = _CONVERSIONS[kind]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    new_name = sanitize_filename(f"{stem}.{extension}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mugaika-convert-") as tmp:
        workdir = Path(tmp)
        path = workdir / f"input.{kind}"
        path.write_bytes(data)
        try:
            converted = run_soffice(path, workdir, convert_to, options.time_limit - _TIME_MARGIN)
        except SofficeFailed as exc:
            failed = Finding("OLE_CONVERT_FAILED", part_id, str(exc)[:200])
            return SanitizeResult(findings=(*found, failed))
    seconds = time.monotonic() - started
    try:
        rebuilt = OoxmlSanitizer().sanitize(converted, new_name, part_id, options)
    except CannotSanitize as exc:
        failed = Finding("OLE_CONVERT_FAILED", part_id, f"{exc.code}: {exc}"[:200])
        return SanitizeResult(findings=(*found, failed))
    evidence: dict[str, list[str]] = {}
    for finding in found:
        code = _REMOVED_BY_CONVERSION.get(finding.code)
        if finding.code == "DDE_FIELD":
            code = "OOXML_DATA_CONNECTION" if kind == "xls" else "OOXML_FIELD_REMOVED"
        evidence.setdefault(code or finding.code, []).append(f"in the .{kind}: {finding.detail}")
    for finding in rebuilt.findings:
        evidence.setdefault(finding.code, []).append(finding.detail)
    findings = [
        Finding("OLE_CONVERTED", part_id, f".{kind} -> .{extension} in {seconds:.1f} s"),
        *(Finding(code, part_id, "; ".join(details)[:500]) for code, details in evidence.items()),
    ]
    output = rebuilt.outputs[0]
    return SanitizeResult(
        outputs=(OutputFile(output.data, new_name, output.content_type),),
        findings=tuple(findings),
        notes=(f"converted from .{kind} by LibreOffice, then rebuilt",),
    )


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

        if failed or not findings:
            pass  # a check that failed proves nothing: withheld, as before; or clean
        elif options.legacy_office == "quarantine":
            held = Finding("OLE_HELD_BY_POLICY", part_id, "sanitize.legacy_office: quarantine")
            return SanitizeResult(findings=(*findings, held))
        elif soffice_path() is None:
            missing = Finding("OLE_CONVERT_UNAVAILABLE", part_id, "LibreOffice is not installed")
            return SanitizeResult(findings=(*findings, missing))
        else:
            return convert_to_ooxml(data, kind, name, findings, part_id, options)
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
