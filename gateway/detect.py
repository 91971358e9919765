"""True-type detection of attachments, and checks on their untrusted file names.

``detect(data, untrusted_filename, declared_type, part_id)`` says what a part *is*, from its
bytes: libmagic (python-magic) gives a first answer, then structure checks that libmagic does
not make refine it (PE/ELF/Mach-O/LNK headers, the OLE root CLSID that marks an MSI, the ZIP
central directory that tells OOXML from ODF from JAR, ISO 9660 and VHD signatures at their
offsets, OneNote's file GUID, script markers inside HTML). The name and the declared MIME type
are then compared with what the content is; they never decide the type on their own, except in
one direction: a name that Windows would *run* (``.js``, ``.exe``, ``.hta``...) makes the part
at least that dangerous whatever its content, because the recipient's desktop goes by the name.

The result is a ``Detection``: the content's MIME type, one content class of
``gateway.sanitizers.base.CONTENT_CLASSES`` (what the policy decides about), and findings with
evidence. ``sanitize_filename`` makes a name safe to show and to write into the rebuilt mail.

What this module deliberately does not do: it never decompresses an archive member except the
small ``[Content_Types].xml``/``mimetype`` entries it needs (bounded; a bomb is never expanded
here), never parses a document fully (that is a sanitizer's job, in a worker), and never trusts
the declared type. It is a pure function of its arguments, fast enough to run in the message
worker without a separate process.
"""

from __future__ import annotations

import functools
import html
import io
import re
import struct
import unicodedata
import zipfile
from dataclasses import dataclass

import magic

from gateway.report import Finding

FINDING_CODES: tuple[str, ...] = (
    "TYPE_MISMATCH",  # name extension or declared type disagree with the content
    "DOUBLE_EXTENSION",  # invoice.pdf.exe, a.jpg_.zip
    "FILENAME_BIDI_CONTROL",  # RLO/LRO/isolates and other Unicode Cf characters in the name
    "FILENAME_CONTROL_CHAR",  # C0/C1 control characters in the name
    "FILENAME_PATH",  # the name carries directory parts (../, C:\, /etc/)
    "FILENAME_TOO_LONG",  # longer than any desktop keeps
    "EXECUTABLE",  # PE, ELF, Mach-O, LNK, MSI, Java class/JAR, APK, MSIX, by content or name
    "SCRIPT",  # js/vbs/hta/ps1/bat/... by name or content, HTML with script, CHM
    "ACTIVE_FILE_TYPE",  # a name Windows or Office acts on (.scf, .theme, .dqy, .rdp, .cer...)
    "MESSAGE_FILE",  # a file a mail program opens as a message (.eml name or mail headers)
    "DANGEROUS_CONTAINER",  # ISO/UDF/IMG/VHD(X)/DMG/WIM, OneNote: mount-and-run carriers
    "ARCHIVE_ENCRYPTED",  # ZIP with encrypted members (ZipCrypto or AES): cannot inspect
    "ARCHIVE_MALFORMED",  # starts like a ZIP but its central directory cannot be read
    "ENCRYPTED_DOCUMENT",  # Office file encrypted (CDFV2 Encrypted): cannot inspect
    "POLYGLOT",  # a second format hidden in the file (ZIP appended, PDF header not at 0)
    "DDE_FIELD",  # DDE formula in CSV text, DDEAUTO field in RTF
    "RTF_EMBEDDED_OBJECT",  # \\object / \\objdata in RTF (CVE-2017-11882 and friends)
    "OFFICE_XML",  # Word/Excel 2003 XML: can carry DDE, OLE objects and macros
    "SVG_ACTIVE_CONTENT",  # script, event handlers, foreignObject or external references
    "XML_ACTIVE_CONTENT",  # XML a browser runs: XSLT, XHTML/SVG script, entity declarations
    "EMPTY_FILE",  # zero bytes
    "DETECTION_ERROR",  # the checks themselves failed: class unknown (fail closed)
)


@dataclass(frozen=True, slots=True)
class Detection:
    """What a part is by its content. ``content_class`` is one of ``CONTENT_CLASSES``.

    ``description`` is libmagic's text (or ours), for the report; ``mime`` is the content's
    MIME type, never the declared one.
    """

    mime: str
    content_class: str
    findings: tuple[Finding, ...] = ()
    description: str = ""

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}


# --- name tables ---------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Extensions Windows (or macOS/Java) runs directly: executable code under that name, or a
# manifest that installs code from the network (ClickOnce, App Installer, Office add-ins).
EXECUTABLE_EXTENSIONS = frozenset(
    _words(
        "exe dll scr com pif cpl msi msp mst msc msu jar lnk sys drv ocx appx appxbundle msix "
        "msixbundle appinstaller apk app xll wll gadget application xbap vsto elf so dylib deb "
        "rpm pkg class pyc pyo pyz pyzw fxp diagcab printerexport"
    )
)
# Extensions that Windows Script Host, mshta, PowerShell, cmd or Office run as code.
SCRIPT_EXTENSIONS = frozenset(
    _words(
        "js jse vbs vbe wsf wsh wsc ws sct hta ps1 ps1xml ps2 ps2xml psm1 psd1 psdm1 psc1 psc2 "
        "pssc cdxml msh msh1 msh2 mshxml msh1xml msh2xml bat cmd scr com vb vbp bas reg inf url "
        "website chm jnlp sh bash zsh csh ksh command applescript scpt py pyw pl rb iqy slk "
        "settingcontent-ms library-ms searchconnector-ms appref-ms xbap mht mhtml shs shb mde "
        "ade adp xnk htc htt asp aspx prg vsmacros"
    )
)
# Files that are not programs but that Windows, Explorer or Office *act on* when they are
# opened or merely shown in a folder (RT-05): Explorer commands and themes fetch icons and
# wallpapers from UNC paths (NTLM leak, CVE-2024-21320), Excel queries and data links open
# connections, Remote Desktop files connect and share drives (2024 campaigns against
# governments), certificates install trust, Access databases and help files run macros,
# printer and sandbox settings install drivers or run commands. Outlook blocks most of them
# (its Level 1 list); Thunderbird, Becky! and webmail do not. Every name on Outlook's Level 1
# list is in one of these tables (tests/sanitizers/test_detect.py holds Microsoft's list).
ACTIVE_EXTENSIONS = frozenset(
    _words(
        "scf theme themepack deskthemepack dqy rqy oqy udl rdp cer crt der p7r sst stl "
        "appcontent-ms asx bgi cnt grp hlp hpj ins isp its mcf mad maf mag mam maq mar mas mat "
        "mau mav maw mda mdb mdt mdw mdz accdb accde accda accdr accdt accdu ops osd pcd plg prf "
        "pst tmp vsw webpnp wsb diagcfg diagpkg inetloc webloc fileloc"
    )
)
# Disk images and notebooks used to smuggle executables past mark-of-the-web (2022-2023).
CONTAINER_EXTENSIONS = frozenset(_words("iso img udf vhd vhdx dmg wim one onepkg"))
# Archives, and the text encodings of files that archivers (WinZip, 7-Zip, StuffIt) open as
# archives: a uuencoded or BinHex file attached under such a name is a file inside text.
OTHER_ARCHIVE_EXTENSIONS = frozenset(
    _words(
        "7z rar tar gz tgz bz2 tbz xz txz zst lzh lha arj ace cab z uue xxe r00 r01 gzip "
        "hqx bhx b64 mim yenc"
    )
)
# Names mail programs open as a message (Outlook, Thunderbird, Windows Mail, Apple Mail), so
# a file under one of them is an attached message whatever libmagic calls it (RT-01).
MESSAGE_EXTENSIONS = frozenset(_words("eml nws emlx"))
# Extensions used as decoys in front of the real one (``invoice.pdf.exe``).
DECOY_EXTENSIONS = frozenset(
    _words(
        "pdf doc docx docm xls xlsx xlsm ppt pptx pptm rtf txt csv jpg jpeg png gif bmp tif tiff "
        "webp heic mp3 mp4 mov avi wav htm html xml zip odt ods odp eml msg"
    )
)

# What each extension says the content should be, as a content class.
_EXTENSION_CLASS: dict[str, str] = {
    "pdf": "pdf",
    **dict.fromkeys(
        _words(
            "docx docm dotx dotm xlsx xlsm xltx xltm xlsb xlam pptx pptm potx potm ppsx ppsm "
            "ppam sldx sldm"
        ),
        "ooxml",
    ),
    **dict.fromkeys(_words("doc dot xls xlt xla ppt pot pps msg"), "ole"),
    "rtf": "rtf",
    **dict.fromkeys(_words("odt ods odp odg ott ots otp"), "opendocument"),
    **dict.fromkeys(_words("jpg jpeg jpe jfif png gif bmp dib tif tiff webp"), "image"),
    "svg": "svg",
    "svgz": "svg",
    "zip": "archive",
    **dict.fromkeys(OTHER_ARCHIVE_EXTENSIONS, "other_archive"),
    **dict.fromkeys(CONTAINER_EXTENSIONS, "other_archive"),
    **dict.fromkeys(_words("txt csv tsv ics vcf vcs log md json xml"), "text"),
    **dict.fromkeys(_words("htm html xhtml"), "html"),
    **dict.fromkeys(MESSAGE_EXTENSIONS, "message"),
}

# Declared MIME types (lower case) mapped to the class they claim. Unlisted ones are not judged.
_DECLARED_CLASS: dict[str, str] = {
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/msword": "ole",
    "application/vnd.ms-excel": "ole",
    "application/vnd.ms-powerpoint": "ole",
    "application/vnd.ms-outlook": "ole",
    "application/rtf": "rtf",
    "text/rtf": "rtf",
    "application/zip": "archive",
    "application/x-zip-compressed": "archive",
    "application/x-zip": "archive",
    "image/jpeg": "image",
    "image/jpg": "image",
    "image/pjpeg": "image",
    "image/png": "image",
    "image/gif": "image",
    "image/bmp": "image",
    "image/x-ms-bmp": "image",
    "image/tiff": "image",
    "image/webp": "image",
    "image/svg+xml": "svg",
    "text/plain": "text",
    "text/csv": "text",
    "text/calendar": "text",
    "text/vcard": "text",
    "text/x-vcard": "text",
    "text/html": "html",
    "message/rfc822": "message",
    "application/x-msdownload": "executable",
    "application/x-dosexec": "executable",
    "application/x-msdos-program": "executable",
    "application/javascript": "script",
    "text/javascript": "script",
    "application/x-7z-compressed": "other_archive",
    "application/x-rar-compressed": "other_archive",
    "application/vnd.rar": "other_archive",
    "application/gzip": "other_archive",
    "application/x-gzip": "other_archive",
    "application/x-iso9660-image": "other_archive",
}
for _suffix in ("wordprocessingml", "spreadsheetml", "presentationml"):
    _DECLARED_CLASS[f"application/vnd.openxmlformats-officedocument.{_suffix}.document"] = "ooxml"
_DECLARED_CLASS.update(
    {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "ooxml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "ooxml",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation": "ooxml",
        "application/vnd.ms-word.document.macroenabled.12": "ooxml",
        "application/vnd.ms-excel.sheet.macroenabled.12": "ooxml",
        "application/vnd.ms-powerpoint.presentation.macroenabled.12": "ooxml",
    }
)

# Classes that can stand in for each other without a mismatch: a .doc that is RTF is *not*
# one of them (a classic trick), but text/plain declared for HTML-free CSV is fine.
_COMPATIBLE = {
    ("text", "message"),
    ("message", "text"),
    ("archive", "encrypted_archive"),
    ("other_archive", "archive"),  # .cab/.tar names are judged by content anyway
    ("html", "script"),  # an HTML file with script is still the HTML it says it is
    ("svg", "svg"),
    ("text", "html"),  # .txt holding HTML: flagged separately below via class change
}

_OFFICE_CLASSES = frozenset({"ooxml", "ole", "rtf", "opendocument"})
MAX_FILENAME_CHARS = 120  # what we write back; Windows Explorer shows about this much
_MAGIC_BYTES = 2 * 1024 * 1024  # libmagic reads at most this much of the part

_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_UNSAFE_NAME_CHARS = re.compile(r'[\\/:*?"<>|]')


# --- file names ----------------------------------------------------------------------------


def _name_without_controls(untrusted_filename: str) -> str:
    """The name as a program sees it: format and control characters carry no meaning there,
    and trailing dots and spaces are dropped by Windows (``evil.exe.`` runs as ``evil.exe``)."""
    kept = "".join(
        c for c in untrusted_filename if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp")
    )
    return kept.rstrip(". \u3000")


def _basename(name: str) -> str:
    return re.split(r"[\\/]", name)[-1]


def extension_of(untrusted_filename: str) -> str:
    """The lower-case extension a desktop would use, without the dot ("" if none).

    NFKC-folded so that full-width ``.ｅｘｅ`` and ``.EXE`` compare as ``exe``.
    """
    base = _basename(_name_without_controls(untrusted_filename))
    base = unicodedata.normalize("NFKC", base).lower()
    if "." not in base.strip("."):
        return ""
    return base.rsplit(".", 1)[1].strip()


def _filename_findings(untrusted_filename: str, part_id: str) -> list[Finding]:
    findings: list[Finding] = []
    if not untrusted_filename:
        return findings
    bidi = [
        f"U+{ord(c):04X}@{i}"
        for i, c in enumerate(untrusted_filename)
        if unicodedata.category(c) == "Cf"
    ]
    if bidi:
        findings.append(Finding("FILENAME_BIDI_CONTROL", part_id, " ".join(bidi[:10])))
    controls = [
        f"U+{ord(c):04X}@{i}"
        for i, c in enumerate(untrusted_filename)
        if unicodedata.category(c) in ("Cc", "Zl", "Zp")
    ]
    if controls:
        findings.append(Finding("FILENAME_CONTROL_CHAR", part_id, " ".join(controls[:10])))
    if re.search(r"(^|[\\/])\.\.([\\/]|$)|^[\\/]|^[A-Za-z]:[\\/]|[\\/]", untrusted_filename):
        findings.append(Finding("FILENAME_PATH", part_id, _shown(untrusted_filename)))
    if len(untrusted_filename) > 255:
        findings.append(
            Finding("FILENAME_TOO_LONG", part_id, f"{len(untrusted_filename)} characters")
        )
    double = _double_extension(untrusted_filename)
    if double:
        findings.append(Finding("DOUBLE_EXTENSION", part_id, double))
    return findings


def _double_extension(untrusted_filename: str) -> str:
    """``"pdf.exe"`` for ``invoice.pdf.exe`` (also ``jpg_.zip``, ``pdf   .exe``), else ""."""
    base = unicodedata.normalize("NFKC", _basename(_name_without_controls(untrusted_filename)))
    parts = base.lower().split(".")
    if len(parts) < 3:
        return ""
    final = parts[-1].strip()
    inner = parts[-2].strip(" _-~\u3000")
    risky = (
        EXECUTABLE_EXTENSIONS
        | SCRIPT_EXTENSIONS
        | CONTAINER_EXTENSIONS
        | OTHER_ARCHIVE_EXTENSIONS
        | {"zip", "htm", "html", "svg"}
    )
    if inner in DECOY_EXTENSIONS and final in risky and inner != final:
        return f"{parts[-2].strip()}.{final}"
    # Padding before the real extension hides it in narrow columns.
    if final in risky and re.search(r"\.[a-z0-9]{2,4}[ _]{3,}\.", base.lower()):
        return f"padded .{final}"
    return ""


def _shown(untrusted: str, limit: int = 200) -> str:
    """An untrusted string made safe for a finding's detail."""
    out = "".join(
        "\ufffd" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") else c
        for c in untrusted[:limit]
    )
    return out + ("…" if len(untrusted) > limit else "")


def sanitize_filename(
    untrusted_filename: str,
    *,
    new_extension: str | None = None,
    default: str = "attachment",
    max_chars: int = MAX_FILENAME_CHARS,
) -> str:
    """A file name safe to write into the delivered message and to save on a desktop.

    Removes control and format characters (RLO and the other bidi controls, zero-width
    characters), path parts, and characters Windows forbids; NFC-normalises; keeps Japanese
    and other letters; bounds the length to ``max_chars`` characters while keeping the
    extension; avoids Windows device names. ``new_extension`` replaces the extension
    (``docm`` -> ``docx``). Never returns an empty string. Pure and idempotent.
    """
    name = _basename(untrusted_filename.replace("\x00", ""))
    name = "".join(
        c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
    )
    name = unicodedata.normalize("NFC", name)
    name = _UNSAFE_NAME_CHARS.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .\u3000")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip(" ."):
        stem, ext = name, ""
    ext = ext.strip()
    if new_extension is not None:
        ext = new_extension.lstrip(".")
    ext = ext[:16]
    stem = stem.strip(" .") or default
    if _WINDOWS_RESERVED.match(stem):
        stem = f"_{stem}"
    room = max(1, max_chars - (len(ext) + 1 if ext else 0))
    if len(stem) > room:
        stem = stem[:room].rstrip(" .") or default
    return f"{stem}.{ext}" if ext else stem


# --- content -------------------------------------------------------------------------------


def _magic(data: bytes) -> tuple[str, str]:
    head = data[:_MAGIC_BYTES]
    try:
        return magic.from_buffer(head, mime=True), magic.from_buffer(head)
    except Exception:  # libmagic refuses some inputs; the structure checks still run
        return "application/octet-stream", "data"


def _is_pe(data: bytes) -> str:
    if not data.startswith(b"MZ"):
        return ""
    if len(data) >= 0x40:
        (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
        if 0 < e_lfanew < len(data) - 4 and data[e_lfanew : e_lfanew + 4] == b"PE\0\0":
            return "PE executable"
    return "MS-DOS executable"


_MACHO_MAGICS = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
_LNK_HEADER = b"\x4c\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"
_ONENOTE_GUID = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3")
_ONENOTE_PKG = b"MSCF"  # .onepkg is a CAB; judged as other_archive


def _executable_kind(data: bytes) -> str:
    pe = _is_pe(data)
    if pe:
        return pe
    if data.startswith(b"\x7fELF"):
        return "ELF executable"
    if data[:4] in _MACHO_MAGICS:
        return "Mach-O executable"
    if data.startswith(b"\xca\xfe\xba\xbe") and len(data) >= 8:
        # Shared magic: Java class files have major version >= 45 here; fat Mach-O has a
        # small architecture count.
        (second,) = struct.unpack_from(">I", data, 4)
        return "Java class file" if (second & 0xFFFF) >= 45 else "Mach-O universal binary"
    if data.startswith(_LNK_HEADER):
        return "Windows shortcut (LNK)"
    if data.startswith(b"dex\n"):
        return "Android DEX"
    return ""


def _container_kind(data: bytes) -> str:
    for offset in (0x8001, 0x8801, 0x9001):
        marker = data[offset : offset + 5]
        if marker == b"CD001":
            return "ISO 9660 disk image"
        if marker in (b"BEA01", b"NSR02", b"NSR03"):
            return "UDF disk image"
    if data.startswith(b"conectix") or data[-512:].startswith(b"conectix"):
        return "VHD disk image"
    if data.startswith(b"vhdxfile"):
        return "VHDX disk image"
    if len(data) >= 512 and data[-512:].startswith(b"koly"):
        return "Apple disk image (DMG)"
    if data.startswith(b"MSWIM\0\0\0"):
        return "Windows imaging (WIM)"
    if data.startswith(_ONENOTE_GUID):
        return "OneNote section"
    if (
        len(data) >= 512
        and data[510:512] == b"\x55\xaa"
        and (data[0x36:0x39] == b"FAT" or data[0x52:0x57] == b"FAT32" or data[3:7] == b"NTFS")
    ):
        return "FAT/NTFS disk image"
    return ""


_OTHER_ARCHIVES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (0, b"Rar!\x1a\x07", "RAR archive"),
    (0, b"\x1f\x8b", "gzip data"),
    (0, b"BZh", "bzip2 data"),
    (0, b"\xfd7zXZ\x00", "xz data"),
    (0, b"\x28\xb5\x2f\xfd", "zstd data"),
    (0, b"MSCF", "Microsoft cabinet"),
    (257, b"ustar", "tar archive"),
    (7, b"**ACE**", "ACE archive"),
    (0, b"\x60\xea", "ARJ archive"),
    (2, b"-lh", "LHA archive"),
    (0, b"\x1f\x9d", "compress'd data"),
    (0, b"xar!", "XAR archive"),
)

_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MSI_CLSIDS = {
    "000C1084-0000-0000-C000-000000000046": "Windows Installer package (MSI)",
    "000C1086-0000-0000-C000-000000000046": "Windows Installer patch (MSP)",
    "000C1082-0000-0000-C000-000000000046": "Windows Installer transform (MST)",
}

_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body|meta|title|script|iframe|div|"
    rb"table|p|a|form|style|hta:application)\b",
    re.IGNORECASE | re.DOTALL,
)
_SVG_ROOT = re.compile(
    rb"^\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*|<!DOCTYPE[^>]*(\[.*?\])?\s*>\s*)*<(\w+:)?svg\b",
    re.IGNORECASE | re.DOTALL,
)
_SVG_ACTIVE = re.compile(
    rb"<\s*(\w+:)?script\b|[\s/\"'`]on[a-z]+\s*=|<\s*(\w+:)?foreignObject\b|javascript\s*:|"
    rb"href\s*=\s*['\"]\s*(?!#|data:image/)[a-z][a-z0-9+.-]*:|<!ENTITY|<\s*(\w+:)?handler\b",
    re.IGNORECASE,
)
_OFFICE_XML = re.compile(
    rb"<\?mso-application|<w:wordDocument\b|<(ss:)?Workbook\b[^>]*urn:schemas-microsoft-com|"
    rb"schemas\.microsoft\.com/office/word/2003/wordml|"
    rb"schemas\.microsoft\.com/office/2006/xmlPackage",
    re.IGNORECASE,
)
_RTF_OBJECT = re.compile(rb"\\object\b|\\objdata\b|\\objupdate\b|\\objautlink\b", re.IGNORECASE)
# Word opens RTF behind a byte-order mark, blank lines or spaces, and with any letter case in
# ``{\rt`` (RT-02); and text with an RTF object in it is RTF to whoever opens it.
_RTF_HEAD = re.compile(rb"^(?:\xef\xbb\xbf)?[\x00-\x20]*\{\\rt", re.IGNORECASE)
_RTF_OBJECT_IN_TEXT = re.compile(rb"\{[^{}]{0,64}\\(objdata|objemb|objlink|objautlink)\b", re.I)
_RTF_DDE = re.compile(rb"\\fldinst[^}]{0,200}?\bDDE(AUTO)?\b", re.IGNORECASE | re.DOTALL)
# msodde's CSV_DDE_FORMAT: =cmd|'/c calc'!A0 and its +, -, @ variants, per cell.
_CSV_DDE = re.compile(rb"(^|[,;\t|^\"\n])\s*\"?[=+\-@][^,;\t\n]*\|[^,;\t\n]*![^\n]*", re.MULTILINE)
_SCRIPT_CONTENT = (
    (re.compile(rb"^#@~\^"), "encoded script (JScript.Encode/VBScript.Encode)"),
    (re.compile(rb"^\s*#!"), "script with #! interpreter line"),
    (re.compile(rb"^\s*@?echo\s+off\b", re.IGNORECASE), "Windows batch file"),
    (re.compile(rb"^\s*<\?xml[^>]*>\s*<(package|job)\b", re.IGNORECASE), "Windows Script File"),
    (re.compile(rb"^\s*<(package|job)\b[^>]*>\s*<(job|script)\b", re.IGNORECASE), "WSF"),
    (re.compile(rb"^\s*<\?xml[^>]*>\s*<scriptlet\b", re.IGNORECASE), "Windows scriptlet"),
    (re.compile(rb"^ITSF\x03\x00\x00\x00"), "compiled HTML help (CHM)"),
    (re.compile(rb"^\[InternetShortcut\]", re.IGNORECASE), "Internet shortcut"),
    (re.compile(rb"^ID;P"), "SYLK spreadsheet (can carry XLM macros and DDE)"),
    (re.compile(rb"^Windows Registry Editor|^REGEDIT4", re.IGNORECASE), "registry file"),
)


def _decode_text_head(data: bytes, limit: int = 256 * 1024) -> bytes:
    """ASCII-compatible bytes of the start of a text file (UTF-16/32 BOMs decoded)."""
    head = data[:limit]
    for bom, codec in (
        (b"\xff\xfe\x00\x00", "utf-32-le"),
        (b"\x00\x00\xfe\xff", "utf-32-be"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if head.startswith(bom):
            return head.decode(codec, errors="replace").encode("utf-8", errors="replace")
    return head.removeprefix(b"\xef\xbb\xbf")


def _zip_kind(data: bytes, part_id: str) -> tuple[str, str, str, list[Finding]]:
    """(mime, class, description, findings) of a ZIP, from its central directory only."""
    findings: list[Finding] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = {i.filename for i in infos}
            lowered = {n.lower() for n in names}
            if any(i.flag_bits & 0x1 for i in infos):
                methods = sorted({"AES" if i.compress_type == 99 else "ZipCrypto" for i in infos})
                encrypted = sum(1 for i in infos if i.flag_bits & 0x1)
                findings.append(
                    Finding(
                        "ARCHIVE_ENCRYPTED",
                        part_id,
                        f"{encrypted} of {len(infos)} members encrypted ({', '.join(methods)})",
                    )
                )
                return "application/zip", "encrypted_archive", "encrypted ZIP", findings
            if "[content_types].xml" in lowered:
                mime = _ooxml_mime(archive)
                if mime != _OOXML_GENERIC:
                    return mime, "ooxml", "Office Open XML package", findings
                if any("fixeddocseq" in n or n.endswith(".fdseq") for n in lowered):
                    return "application/oxps", "unknown", "XPS document", findings
                return mime, "unknown", "Open Packaging Conventions package", findings
            if "mimetype" in names:
                declared = _small_member(archive, "mimetype").strip().decode("ascii", "replace")
                if declared.startswith("application/vnd.oasis.opendocument"):
                    return declared, "opendocument", "OpenDocument", findings
            if "meta-inf/manifest.mf" in lowered or any(n.endswith(".class") for n in lowered):
                findings.append(Finding("EXECUTABLE", part_id, "Java archive (JAR)"))
                return "application/java-archive", "executable", "Java archive", findings
            if "classes.dex" in lowered or "androidmanifest.xml" in lowered:
                findings.append(Finding("EXECUTABLE", part_id, "Android package (APK)"))
                return "application/vnd.android.package-archive", "executable", "APK", findings
            if "appxmanifest.xml" in lowered or "appxmetadata/appxbundlemanifest.xml" in lowered:
                findings.append(Finding("EXECUTABLE", part_id, "Windows app package (MSIX/APPX)"))
                return "application/msix", "executable", "MSIX/APPX package", findings
            return "application/zip", "archive", f"ZIP archive, {len(infos)} members", findings
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        findings.append(Finding("ARCHIVE_MALFORMED", part_id, _shown(str(exc), 120)))
        return "application/zip", "other_archive", "unreadable ZIP", findings
    except NotImplementedError as exc:
        findings.append(Finding("ARCHIVE_MALFORMED", part_id, _shown(str(exc), 120)))
        return "application/zip", "other_archive", "unsupported ZIP", findings


def _small_member(archive: zipfile.ZipFile, name: str, limit: int = 1024 * 1024) -> bytes:
    """Read at most ``limit`` bytes of one member; the bound holds whatever the header says."""
    info = archive.getinfo(name)
    if info.file_size > limit or info.flag_bits & 0x1:
        return b""
    with archive.open(info) as member:
        return member.read(limit)


_OOXML_MAIN_MIMES = {
    "wordprocessingml.document.main": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    ),
    "wordprocessingml.template.main": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template"
    ),
    "ms-word.document.macroenabled.main": "application/vnd.ms-word.document.macroEnabled.12",
    "ms-word.template.macroenabledtemplate.main": (
        "application/vnd.ms-word.template.macroEnabled.12"
    ),
    "spreadsheetml.sheet.main": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "spreadsheetml.template.main": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template"
    ),
    "ms-excel.sheet.macroenabled.main": "application/vnd.ms-excel.sheet.macroEnabled.12",
    "ms-excel.template.macroenabled.main": "application/vnd.ms-excel.template.macroEnabled.12",
    "ms-excel.addin.macroenabled.main": "application/vnd.ms-excel.addin.macroEnabled.12",
    "ms-excel.sheet.binary.macroenabled.main": (
        "application/vnd.ms-excel.sheet.binary.macroEnabled.12"
    ),
    "presentationml.presentation.main": (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    ),
    "presentationml.slideshow.main": (
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow"
    ),
    "presentationml.template.main": (
        "application/vnd.openxmlformats-officedocument.presentationml.template"
    ),
    "ms-powerpoint.presentation.macroenabled.main": (
        "application/vnd.ms-powerpoint.presentation.macroEnabled.12"
    ),
    "ms-powerpoint.slideshow.macroenabled.main": (
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.12"
    ),
    "ms-powerpoint.template.macroenabled.main": (
        "application/vnd.ms-powerpoint.template.macroEnabled.12"
    ),
    "ms-powerpoint.addin.macroenabled.main": "application/vnd.ms-powerpoint.addin.macroEnabled.12",
}


def _ooxml_mime(archive: zipfile.ZipFile) -> str:
    name = next(
        i.filename for i in archive.infolist() if i.filename.lower() == "[content_types].xml"
    )
    text = _small_member(archive, name).decode("utf-8", "replace").lower()
    for key, mime in _OOXML_MAIN_MIMES.items():
        if key in text:
            return mime
    return _OOXML_GENERIC


_OOXML_GENERIC = "application/vnd.openxmlformats-package"


def _ole_kind(data: bytes, part_id: str) -> tuple[str, str, str, list[Finding]]:
    import olefile  # imported here: only OLE parts need it

    findings: list[Finding] = []
    try:
        with olefile.OleFileIO(data) as ole:
            clsid = (ole.root.clsid or "").upper() if ole.root is not None else ""
            if clsid in _MSI_CLSIDS:
                findings.append(Finding("EXECUTABLE", part_id, _MSI_CLSIDS[clsid]))
                return "application/x-msi", "executable", _MSI_CLSIDS[clsid], findings
            streams = {"/".join(s).lower() for s in ole.listdir(streams=True, storages=True)}
    except Exception as exc:
        return "application/x-ole-storage", "ole", f"damaged OLE file ({exc})", findings
    if "encryptedpackage" in streams or "encryptioninfo" in streams:
        findings.append(Finding("ENCRYPTED_DOCUMENT", part_id, "encrypted Office Open XML"))
        return "application/encrypted", "ole", "CDFV2 Encrypted", findings
    if "worddocument" in streams:
        return "application/msword", "ole", "Word 97-2003 document", findings
    if "workbook" in streams or "book" in streams:
        return "application/vnd.ms-excel", "ole", "Excel 97-2003 workbook", findings
    if "powerpoint document" in streams:
        return "application/vnd.ms-powerpoint", "ole", "PowerPoint 97-2003", findings
    if any(s.startswith("__substg1.0_") for s in streams):
        return "application/vnd.ms-outlook", "ole", "Outlook message", findings
    return "application/x-ole-storage", "ole", "OLE compound file", findings


def _appended_zip(data: bytes) -> str:
    """Evidence of a ZIP hidden at the end of a non-ZIP file (polyglot), else ""."""
    tail = data[-(65536 + 22) :]
    index = tail.rfind(b"PK\x05\x06")
    if index < 0 or len(data) < 30:
        return ""
    start = data.find(b"PK\x03\x04", 1)
    if start < 0:
        return ""
    return f"ZIP archive appended at offset {start}"


def _content(
    data: bytes, part_id: str
) -> tuple[str, str, str, list[Finding]]:  # mime, class, description, findings
    """Classify by content alone."""
    findings: list[Finding] = []
    if not data:
        return "application/x-empty", "unknown", "empty", [Finding("EMPTY_FILE", part_id, "")]

    kind = _executable_kind(data)
    if kind:
        findings.append(Finding("EXECUTABLE", part_id, kind))
        mime = {
            "ELF executable": "application/x-executable",
            "Mach-O executable": "application/x-mach-binary",
            "Mach-O universal binary": "application/x-mach-binary",
            "Java class file": "application/x-java-applet",
            "Windows shortcut (LNK)": "application/x-ms-shortcut",
        }.get(kind, "application/x-dosexec")
        return mime, "executable", kind, findings

    kind = _container_kind(data)
    if kind:
        findings.append(Finding("DANGEROUS_CONTAINER", part_id, kind))
        mime = "application/onenote" if kind.startswith("OneNote") else "application/x-disk-image"
        return mime, "other_archive", kind, findings

    if data.startswith(_OLE_MAGIC):
        return _ole_kind(data, part_id)

    pdf_at = data.find(b"%PDF-", 0, 1024)
    if pdf_at >= 0:
        return _pdf(data, pdf_at, part_id, findings)

    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _zip_kind(data, part_id)

    if _RTF_HEAD.match(data[:4096]) or (
        b"\x00" not in data[:4096] and _RTF_OBJECT_IN_TEXT.search(data[: 4 * 1024 * 1024])
    ):
        if _RTF_OBJECT.search(data):
            match = _RTF_OBJECT.search(data)
            assert match is not None
            findings.append(
                Finding("RTF_EMBEDDED_OBJECT", part_id, match.group().decode("ascii", "replace"))
            )
        dde = _RTF_DDE.search(data)
        if dde:
            findings.append(Finding("DDE_FIELD", part_id, _shown(dde.group().decode("latin-1"))))
        return "text/rtf", "rtf", "Rich Text Format", findings

    for offset, signature, description in _OTHER_ARCHIVES:
        if data[offset : offset + len(signature)] == signature:
            return "application/octet-stream", "other_archive", description, findings

    for signature, mime in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return _image(data, mime, part_id, findings)
    if (
        data.startswith(b"BM")
        and len(data) > 26
        and struct.unpack_from("<I", data, 14)[0]
        in (
            12,
            40,
            52,
            56,
            64,
            108,
            124,
        )
    ):
        return _image(data, "image/bmp", part_id, findings)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _image(data, "image/webp", part_id, findings)

    # Readers search far beyond byte 1024 for the header (pdf.js anywhere): a PDF behind junk
    # is still a PDF to them, so it is one to us.
    pdf_at = data.find(b"%PDF-")
    if pdf_at >= 0:
        return _pdf(data, pdf_at, part_id, findings)
    if _appended_zip(data) and data.find(b"PK\x03\x04") > 0:
        mime, content_class, description, zip_findings = _zip_kind(data, part_id)
        if content_class != "other_archive":
            offset = data.find(b"PK\x03\x04")
            zip_findings.append(Finding("POLYGLOT", part_id, f"ZIP preceded by {offset} bytes"))
            return mime, content_class, description, zip_findings

    text = _decode_text_head(data)
    for pattern, description in _SCRIPT_CONTENT:
        if pattern.search(text[:4096]):
            findings.append(Finding("SCRIPT", part_id, description))
            return "application/x-script", "script", description, findings

    if _SVG_ROOT.match(text):
        active = _SVG_ACTIVE.search(text)
        if active:
            findings.append(
                Finding("SVG_ACTIVE_CONTENT", part_id, _shown(active.group().decode("latin-1")))
            )
        return "image/svg+xml", "svg", "SVG image", findings

    if not _HTML_START.match(text) and _OFFICE_XML.search(text[:8192]):
        findings.append(Finding("OFFICE_XML", part_id, "Word/Excel 2003 XML or flat OPC"))
        return "application/xml", "unknown", "Office XML document", findings

    mime, description = _magic(data)
    if mime == "image/svg+xml":
        active = _SVG_ACTIVE.search(text)
        if active:
            findings.append(Finding("SVG_ACTIVE_CONTENT", part_id, _evidence(active)))
        return mime, "svg", description, findings
    if mime == "text/html" or _HTML_START.match(text):
        element = _active_in(_markup_view(data))
        if element:
            findings.append(Finding("SCRIPT", part_id, f"HTML with {_shown(element, 60)}"))
            return "text/html", "script", "HTML with active content", findings
        return "text/html", "html", "HTML document", findings
    if mime == "message/rfc822" or mime == "message/news":
        return "message/rfc822", "message", description, findings
    if mime.startswith("image/"):
        # Formats Pillow decodes beyond the six we name (PPM, SGI, ICO...): the image
        # sanitizer re-encodes them as PNG.
        return _image(data, mime, part_id, findings)
    if mime.startswith("text/") or mime in ("application/json", "application/csv"):
        dde = _CSV_DDE.search(data[: 4 * 1024 * 1024])
        if dde:
            findings.append(
                Finding("DDE_FIELD", part_id, _shown(dde.group().strip().decode("latin-1"), 120))
            )
        if mime in ("text/x-shellscript", "text/x-perl", "text/x-python", "text/x-php"):
            findings.append(Finding("SCRIPT", part_id, description))
            return mime, "script", description, findings
        return mime, "text", description, findings
    if mime in ("application/x-iso9660-image", "application/x-vhd"):
        findings.append(Finding("DANGEROUS_CONTAINER", part_id, description))
        return mime, "other_archive", description, findings
    if mime in ("application/x-dosexec", "application/x-executable", "application/x-msi"):
        findings.append(Finding("EXECUTABLE", part_id, description))
        return mime, "executable", description, findings
    return mime, "unknown", description, findings


def _pdf(
    data: bytes, pdf_at: int, part_id: str, findings: list[Finding]
) -> tuple[str, str, str, list[Finding]]:
    if pdf_at > 0:
        findings.append(Finding("POLYGLOT", part_id, f"PDF header at offset {pdf_at}"))
    appended = _appended_zip(data)
    if appended:
        findings.append(Finding("POLYGLOT", part_id, appended))
    return "application/pdf", "pdf", "PDF document", findings


def _image(
    data: bytes, mime: str, part_id: str, findings: list[Finding]
) -> tuple[str, str, str, list[Finding]]:
    appended = _appended_zip(data)
    if appended:
        findings.append(Finding("POLYGLOT", part_id, appended))
    return mime, "image", mime.split("/", 1)[1].upper() + " image", findings


def _name_class(extension: str) -> tuple[str, str]:
    """(class, finding code) a name forces, for names a desktop runs; ("", "") otherwise."""
    if extension in EXECUTABLE_EXTENSIONS:
        return "executable", "EXECUTABLE"
    if extension in SCRIPT_EXTENSIONS:
        return "script", "SCRIPT"
    if extension in ACTIVE_EXTENSIONS:
        # Not a program, but held like one: the policy's script class (quarantine by default).
        return "script", "ACTIVE_FILE_TYPE"
    if extension in CONTAINER_EXTENSIONS:
        return "other_archive", "DANGEROUS_CONTAINER"
    return "", ""


def name_class(untrusted_filename: str) -> str:
    """The content class a file name alone forces ("" when the name forces none): what the
    recipient's desktop would do with the file whatever it holds."""
    extension = extension_of(untrusted_filename)
    forced, _ = _name_class(extension)
    if not forced and extension in OTHER_ARCHIVE_EXTENSIONS:
        return "other_archive"
    return forced


def detect(data: bytes, untrusted_filename: str, declared_type: str, part_id: str) -> Detection:
    """Classify one attachment by its content; check its name and declared type against it.

    Bounded: libmagic sees at most 2 MiB; ZIPs are read through their central directory only.
    Never raises for any input bytes or name: a failure of the checks themselves gives class
    ``unknown`` (stripped by default) with the finding ``DETECTION_ERROR``.
    """
    try:
        return _detect(data, untrusted_filename, declared_type, part_id)
    except Exception as exc:  # fail closed: what we cannot classify is not delivered as is
        detail = f"{type(exc).__name__}: {exc}"
        return Detection(
            "application/octet-stream",
            "unknown",
            (Finding("DETECTION_ERROR", part_id, _shown(detail, 200)),),
            "unclassified",
        )


def _detect(data: bytes, untrusted_filename: str, declared_type: str, part_id: str) -> Detection:
    mime, by_content, description, findings = _content(data, part_id)
    content_class = by_content
    findings.extend(_filename_findings(untrusted_filename, part_id))
    extension = extension_of(untrusted_filename)

    # Names a browser renders: a text file called .svg is an SVG to whoever opens it.
    if content_class in ("text", "unknown") and extension == "svg":
        content_class = "svg"
        active = _SVG_ACTIVE.search(_decode_text_head(data))
        if active:
            findings.append(Finding("SVG_ACTIVE_CONTENT", part_id, _evidence(active)))

    declared = declared_type.split(";", 1)[0].strip().lower()
    message = _message_evidence(data, content_class, extension)
    if message:
        # Outlook and Thunderbird open it as a message and offer what is attached inside:
        # recursed into like message/rfc822 (gateway.inspect), never kept as text (RT-01).
        findings.append(Finding("MESSAGE_FILE", part_id, message))
        content_class = "message"
    if content_class in ("text", "unknown", "html"):
        content_class, markup = _markup_class(data, content_class, mime, extension, declared)
        findings.extend(Finding(code, part_id, detail) for code, detail in markup)

    if content_class == "text" and _EXTENSION_CLASS.get(extension) in _OFFICE_CLASSES:
        # Text named as an Office document (RT-02): Office sniffs it (RTF, HTML, SYLK...);
        # it is not a text file to keep.
        content_class = "unknown"

    if content_class in ("text", "unknown") and extension in OTHER_ARCHIVE_EXTENSIONS:
        # Text under an archiver's name (.uue, .hqx, .b64...): WinZip and 7-Zip decode the
        # file encoded in it. It is the archive its name says, not text to keep.
        content_class = "other_archive"

    forced_class, forced_code = _name_class(extension)
    if forced_class and content_class not in ("executable", "script"):
        if forced_class != content_class:
            findings.append(
                Finding(forced_code, part_id, f"name ends in .{extension} (content: {description})")
            )
            content_class = forced_class
        elif forced_code == "DANGEROUS_CONTAINER" and "DANGEROUS_CONTAINER" not in {
            f.code for f in findings
        }:
            findings.append(Finding(forced_code, part_id, f"name ends in .{extension}"))

    expected = _EXTENSION_CLASS.get(extension)
    if expected and not _compatible(expected, by_content):
        findings.append(
            Finding(
                "TYPE_MISMATCH",
                part_id,
                f"name .{extension} but content is {mime} ({_shown(description, 80)})",
            )
        )
    claimed = _DECLARED_CLASS.get(declared)
    if claimed and not _compatible(claimed, by_content):
        findings.append(
            Finding(
                "TYPE_MISMATCH",
                part_id,
                f"declared {_shown(declared, 80)} but content is {mime}",
            )
        )
    return Detection(mime, content_class, tuple(_dedupe(findings)), description)


# --- attached messages ---------------------------------------------------------------------

# A header field (RFC 5322 section 2.2: printable ASCII but the colon, then a colon), or the
# continuation of one; the mbox "From " separator a saved message may start with.
_HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_MBOX_FROM = re.compile(rb"From [^\r\n]*\r?\n")
_MIME_FIELD = re.compile(rb"(?:mime-version|content-type)[ \t]*:", re.IGNORECASE)
_MESSAGE_HEAD_BYTES = 64 * 1024


def _message_evidence(data: bytes, content_class: str, extension: str) -> str:
    """Why a file is a message to a mail program ("" when it is not one): its name, or bytes
    that are a header block with a MIME field (what libmagic misses when the first field is
    not one it keys on, such as ``MIME-Version``). Only text-like content qualifies: a
    ``.eml`` that is a PE stays the executable it is."""
    if content_class not in ("text", "unknown") or not data:
        return ""
    if _header_block_with_mime(data[:_MESSAGE_HEAD_BYTES]):
        return "mail header fields with MIME structure"
    if content_class == "text" and extension in MESSAGE_EXTENSIONS:
        return f"name ends in .{extension}"
    return ""


def _header_block_with_mime(head: bytes) -> bool:
    """True when ``head`` opens with an RFC 5322 header block (field lines, continuations, an
    empty line at its end) that holds ``MIME-Version`` or ``Content-Type``."""
    mbox = _MBOX_FROM.match(head)
    position = mbox.end() if mbox else 0
    mime = False
    fields = 0
    while position < len(head):
        end = head.find(b"\n", position)
        if end < 0:
            return False  # the block never ends within what we read
        line = head[position:end].removesuffix(b"\r")
        position = end + 1
        if not line:
            return fields > 0 and mime
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return False
            continue
        if not _HEADER_FIELD.match(line):
            return False
        fields += 1
        mime = mime or bool(_MIME_FIELD.match(line))
    return False


# --- markup: what a browser or a mail client's viewer would render ---------------------------

# Names Windows and browsers open as HTML, and as XML (browsers render XML with its
# stylesheet, and XHTML/SVG elements inside it as such). .mht/.mhtml/.hta/.htc/.htt are
# scripts (SCRIPT_EXTENSIONS); .svg has its own class.
HTML_EXTENSIONS = frozenset(_words("htm html shtml shtm stm xht xhtml"))
XML_EXTENSIONS = frozenset(_words("xml xsl xslt rss atom rdf"))
_HTML_DECLARED = frozenset(
    _words(
        "text/html application/xhtml+xml application/vnd.wap.xhtml+xml text/x-server-parsed-html"
    )
)
_XML_DECLARED = frozenset(
    _words(
        "text/xml application/xml text/xsl application/xslt+xml application/rss+xml "
        "application/atom+xml application/rdf+xml"
    )
)
# WHATWG MIME Sniffing 7.1 ("identifying a resource with an unknown MIME type"): a resource
# whose first non-whitespace bytes are one of these tags is HTML to a browser, whatever its
# label; widened to every HTML element name (old Internet Explorer sniffed text/plain that
# way too), plus XML's own start.
_LEADING_HTML = re.compile(
    r"^[\t\n\f\r \ufeff]*(<!--|<!doctype\s+html|<(html|head|body|script|iframe|h[1-6]|div|font|"
    r"table|a|style|title|b|br|p|img|svg|math|meta|link|form|input|button|object|embed|span|"
    r"center|frameset|frame|base|pre|ul|ol|li|hr|i|u|em|strong|section|article|nav|header|"
    r"footer|main|video|audio|details|marquee|plaintext|xmp|textarea|select|isindex|"
    r"hta:application)(?=[\s/>]))",
    re.IGNORECASE,
)
_CALENDAR_START = re.compile(r"^[\t\n\r \ufeff]*BEGIN:(VCALENDAR|VCARD)\r?\n", re.IGNORECASE)
_LEADING_XML = re.compile(r"^[\t\n\f\r \ufeff]*<\?xml[\s?]", re.IGNORECASE)
# What makes markup run something, in HTML and in XML (namespaced elements included), found
# in the markup's elements, never in its text (RT-15: a security bulletin that shows
# ``&lt;img onerror=…&gt;`` in a <pre> is text to every browser): scripting and embedding
# elements, event handler attributes (also after "/", as in <svg/onload=>), script URLs in
# attribute values (character references decoded, the tabs and newlines URL parsers drop
# removed), meta refresh, HTML imports, srcdoc, XSLT and SVG namespaces, and the XML
# stylesheet instruction and entity declarations (expansion bombs against the viewer).
#
# The tokenizer follows WHATWG HTML 13.2.5 where it matters for this: a tag is "<" and an
# ASCII letter; attributes split as the spec splits them; comments end at "-->" or "--!>";
# the content of raw-text elements (title, textarea, style...) is not markup. Where it errs,
# it errs towards "active": the text of comments and raw-text elements is scanned as markup
# too (IE's conditional comments; a parser that ends them elsewhere), and an unfinished tag
# at the end counts. Markup that passes is still rebuilt by nh3 (html5ever), which removes
# what this missed; this check decides only whether the part is held.
_ACTIVE_ELEMENTS = frozenset(
    _words(
        "script iframe frame frameset object embed applet form base portal foreignobject "
        "handler listener import hta:application"
    )
)
_RAW_TEXT_ELEMENTS = frozenset(
    _words("title textarea style xmp iframe noembed noframes noscript script")
)
_MARKUP_DECLARATIONS = re.compile(r"<\?xml-stylesheet\b|<!entity\b", re.IGNORECASE)
_TAG_OPEN = re.compile(r"<(?:(/)?([a-zA-Z][^\s/>]*)|!--|!|\?)")
_ATTRIBUTE = re.compile(
    r"""[\s/]*(?P<name>=?[^\s/>=]*)"""
    r"""(?:\s*=\s*(?:"(?P<dq>[^"]*)"?|'(?P<sq>[^']*)'?|(?P<uq>[^\s>]*)))?"""
)
# The rest of a start tag whose attributes are all plainly written (names without quotes or
# "=", values quoted or without quotes): the tokenizer would split it the same way.
_SIMPLE_TAG_REST = re.compile(
    r"""(?:\s+[^\s/>="'<]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*\s*/?>"""
)
# Anything in such attributes ``_active_element`` might flag: a name starting with "on", a
# colon (a URL scheme, a namespace prefix), a character reference, srcdoc, refresh, import.
_SUSPECT_ATTRIBUTES = re.compile(r"on[a-z]|[:&]|srcdoc|w3\.org|refresh|import", re.IGNORECASE)
_COMMENT_END = re.compile(r"--!?>")
_BOGUS_COMMENT_END = re.compile(">")
_SCRIPT_URL = re.compile(r"(?:java|vb|live)script:|data:text/html")
# Removed before looking for a script URL: URL parsers drop tabs and line breaks, and
# "data : text/html" is how the old check read a spaced scheme.
_URL_SPACE = re.compile(r"[\t\n\r]|(?<=:)\s+|\s+(?=:)")
_ACTIVE_NAMESPACES = ("http://www.w3.org/1999/xsl/transform", "http://www.w3.org/2000/svg")
_EVENT_HANDLER = re.compile(r"on[a-z]+")
# A superset of what ``_active_element`` and the declarations flag, searched for in the raw
# lower-cased text, each pattern starting with a literal so that the regex engine skips ahead
# to it (one alternation starting with a class took 2 s on a 7 MB page, these 0.1 s).
_MAYBE_ACTIVE = tuple(
    re.compile(pattern)
    for pattern in (
        r"<\s*(?:[^\s/>]*:)?(?:script|iframe|frame|object|embed|applet|form|base|portal|"
        r"foreignobject|handler|listener|import|hta:application)",
        "srcdoc",
        "refresh",
        r"<\s*link\b",
        r"w3\.org/(?:1999/xsl/transform|2000/svg)",
        r"<\?xml-stylesheet",
        "<!entity",
    )
)
_MAYBE_EVENT_HANDLER = re.compile(r"on[a-z]+\s*=")
# On the text without tabs and line breaks (URL parsers drop them: java\tscript:); a numeric
# reference may spell any letter.
_MAYBE_SCRIPT_URL = tuple(
    re.compile(pattern) for pattern in (r"script\s*(?::|&colon;)", r"data\s*(?::|&colon;)", "&#")
)
_URL_IGNORED = str.maketrans("", "", "\t\n\r")
# Nesting of scanned comment and raw-text contents (each level only shrinks the text).
_MAX_MARKUP_DEPTH = 4


@functools.lru_cache(maxsize=2)
def _active_in(view: str) -> str:
    """``_active_markup`` of a whole part, remembered: type detection and the markup class
    both ask about the same bytes."""
    return _active_markup(view)


def _active_markup(text: str, depth: int = 0) -> str:
    """The first active construct among the elements of ``text`` (see above), or "".

    Linear in the text at each of at most ``_MAX_MARKUP_DEPTH`` levels; text in which not
    even the raw bytes hold a candidate (``_MAYBE_ACTIVE``) is not tokenized."""
    if depth == 0 and not _may_be_active(text):
        return ""
    declaration = _MARKUP_DECLARATIONS.search(text)
    if declaration:
        return declaration.group().lower()
    position = 0
    while True:
        opened = _TAG_OPEN.search(text, position)
        if opened is None:
            return ""
        opener = opened.group()
        if opener in ("<!--", "<!", "<?"):
            if opener == "<!--":
                closed = _COMMENT_END.search(text, opened.end())
            else:  # a bogus comment to the next ">" (DOCTYPE, CDATA, processing instruction)
                closed = _BOGUS_COMMENT_END.search(text, opened.end())
            inner_end = closed.start() if closed else len(text)
            inner = _scan_inner(text[opened.end() : inner_end], depth)
            if inner:
                return inner
            position = closed.end() if closed else len(text)
            continue
        name = opened.group(2).lower()
        simple = _SIMPLE_TAG_REST.match(text, opened.end())
        if opened.group(1) or (simple and not _SUSPECT_ATTRIBUTES.search(simple.group())):
            # An end tag (browsers ignore its attributes), or nothing in the attributes that
            # could run: the common case, decided without splitting them.
            found = "" if opened.group(1) else _active_element(name, [])
            end = simple.end() if simple else _attributes(text, opened.end())[0]
        else:
            end, attributes = _attributes(text, opened.end())
            found = _active_element(name, attributes)
        if found:
            return found
        position = end
        if name in _RAW_TEXT_ELEMENTS:
            closing = re.compile(rf"</{re.escape(name)}(?=[\s/>])", re.IGNORECASE)
            closed = closing.search(text, position)
            inner_end = closed.start() if closed else len(text)
            inner = _scan_inner(text[position:inner_end], depth)
            if inner:
                return inner
            position = inner_end
        elif name == "plaintext":  # the rest of the document is text
            return _scan_inner(text[position:], depth)


def _may_be_active(text: str) -> bool:
    """False only when nothing ``_active_markup`` flags can be in ``text``: a quick search of
    the raw text (a 5 MB page in milliseconds) before the tokenizer (seconds)."""
    lowered = text.lower()
    if any(pattern.search(lowered) for pattern in _MAYBE_ACTIVE):
        return True
    for handler in _MAYBE_EVENT_HANDLER.finditer(lowered):
        # An attribute name starts after white space, "/" or a quote (IE: a backquote too).
        start = handler.start()
        if start == 0 or lowered[start - 1] in " \t\n\f\r/\"'`":
            return True
    without_breaks = lowered.translate(_URL_IGNORED)
    return any(pattern.search(without_breaks) for pattern in _MAYBE_SCRIPT_URL)


def _scan_inner(text: str, depth: int) -> str:
    """Text a browser does not read as markup, scanned as markup anyway (see above)."""
    if depth >= _MAX_MARKUP_DEPTH:
        return "markup nested too deep to read" if "<" in text else ""  # counts as active
    return _active_markup(text, depth + 1) if "<" in text else ""


def _attributes(text: str, position: int) -> tuple[int, list[tuple[str, str]]]:
    """The attributes of a tag whose name ends at ``position``, and where the tag ends."""
    attributes: list[tuple[str, str]] = []
    while position < len(text):
        if text[position] == ">":
            return position + 1, attributes
        match = _ATTRIBUTE.match(text, position)
        if match is None or match.end() == position:
            position += 1  # a lone "/" before ">" and the like
            continue
        value = match.group("dq") or match.group("sq") or match.group("uq") or ""
        if match.group("name"):
            attributes.append((match.group("name").lower(), value))
        position = match.end()
    return position, attributes


def _active_element(name: str, attributes: list[tuple[str, str]]) -> str:
    """What in one start tag runs something, shown as evidence, or ""."""
    local = name.rpartition(":")[2]
    if name in _ACTIVE_ELEMENTS or local in _ACTIVE_ELEMENTS:
        return f"<{name}"
    for attribute, raw_value in attributes:
        # A namespaced "x:onclick" is no event handler, in HTML or in XML.
        if _EVENT_HANDLER.fullmatch(attribute) or attribute == "srcdoc":
            return f"{attribute}="
        value = html.unescape(raw_value).lower() if "&" in raw_value else raw_value.lower()
        if ":" in value:
            script_url = _SCRIPT_URL.search(_URL_SPACE.sub("", value))
            if script_url:
                return script_url.group()
        if "w3.org" in value and any(namespace in value for namespace in _ACTIVE_NAMESPACES):
            return f"{attribute}={_shown(value, 60)}"
        if local == "meta" and attribute == "http-equiv" and value.strip() == "refresh":
            return "<meta http-equiv=refresh"
        if local == "link" and attribute == "rel" and "import" in value.split():
            return "<link rel=import"
    return ""


_XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"
# Browsers sniff at most this much of a resource (WHATWG: 1445 bytes), IE only 256: markup
# this early in a text file can be taken for HTML by a sniffing viewer.
_SNIFF_BYTES = 1445


def _markup_view(data: bytes) -> str:
    """The markup as text (BOMs decoded; bytes beyond ASCII kept one character each)."""
    return _decode_text_head(data, len(data)).decode("latin-1")


def _markup_class(
    data: bytes, content_class: str, mime: str, extension: str, declared: str
) -> tuple[str, list[tuple[str, str]]]:
    """The class of a text-like part as a browser or a mail client's viewer reads it.

    Decided by what renders it, never by the label alone: an HTML or XML name or declared
    type, or leading markup in the bytes (also under .txt or text/plain), makes it markup.
    Markup with anything active is a script (held by default); HTML, and XML with XHTML
    elements, without anything active is HTML (rebuilt by the HTML sanitizer); other XML is
    data (text). Plain text with active markup within what a browser sniffs is a script too.
    Never makes a part less dangerous than its content class said, except HTML without
    anything active staying HTML; ``unknown`` (Office 2003 XML, undecodable bytes) never
    becomes text. Returns the class and (code, detail) findings.
    """
    head = _decode_text_head(data, _SNIFF_BYTES).decode("latin-1")
    if (
        content_class in ("html", "script")
        or extension in HTML_EXTENSIONS
        or declared in _HTML_DECLARED
        or _LEADING_HTML.match(head)
    ):
        kind = "html"
    elif (
        extension in XML_EXTENSIONS
        or declared in _XML_DECLARED
        or mime in ("text/xml", "application/xml")
        or _LEADING_XML.match(head)
    ):
        kind = "xml"
    elif content_class == "text" and _CALENDAR_START.match(head):
        # iCalendar/vCard: opened by a calendar or address book, never sniffed as a page;
        # markup in its values is converted to text by gateway.sanitizers.calendar (RT-19).
        return content_class, []
    elif content_class == "text":
        active = _active_in(_markup_view(data[:_SNIFF_BYTES]))
        if not active:
            return content_class, []
        detail = f"text with {_shown(active, 60)} where browsers sniff for HTML"
        return "script", [("SCRIPT", detail)]
    else:
        return content_class, []
    view = _markup_view(data)
    active = _active_in(view)
    if active:
        evidence = _shown(active, 60)
        if kind == "xml":
            return "script", [("XML_ACTIVE_CONTENT", f"XML with {evidence}")]
        return "script", [("SCRIPT", f"HTML with {evidence}")]
    if kind == "html" or _XHTML_NAMESPACE in html.unescape(view).lower():
        return "html", []
    return content_class, []  # XML data stays what its content is: text, or unknown


def _evidence(match: re.Match[bytes]) -> str:
    return _shown(match.group().decode("latin-1"), 80)


def _compatible(claimed: str, actual: str) -> bool:
    return claimed == actual or (claimed, actual) in _COMPATIBLE


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[Finding] = set()
    out = []
    for finding in findings:
        if finding not in seen:
            seen.add(finding)
            out.append(finding)
    return out
