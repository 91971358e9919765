# ruff: noqa: E501  (the table below is one row per code, however long its words)
"""Every code the gateway can report, once: its severity and its words for people.

A *code* is a SHOUTED, stable name for a fact about a message or a part: a finding
(``Finding("PDF_JAVASCRIPT", "1.2", "OpenAction")``) or the reason recorded for what became of
an attachment (``POLICY``, ``TRUSTED_SENDER``, the content class a policy holds, a worker's
failure code). The same string appears in reports, policy YAML (``when: {finding: [...]}``),
metric labels, the admin UI and the ``X-Mugaika-Findings`` field. Codes are for machines and
administrators; a recipient only ever reads the words below.

This table is the one place a code is defined (dangerzone's ``errors.py``): detection and the
sanitizers emit codes; ``gateway.notice`` turns them into words; ``gateway.metrics``
initialises one series per code; the admin UI shows the words beside the code; the policy
schema refuses a code that is not here (so a typo in a rule is an error, not a rule that never
fires). ``tests/qa/test_findings_registry.py`` scans the source for every code any module can
emit and fails when one is missing here.

Adding a code is adding one row to ``_ROWS``. Words are short and plain: what it means for
the person who receives the mail, never how the gateway works inside. They are written to
read well in parentheses after any attachment action (「再作成しました（マクロを除去）」,
"held (an executable program)").

Severity orders what people see (the most serious first) and is shown in the UI. It does
not decide anything: verdicts come from the policy.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType


class Severity(IntEnum):
    """How serious a code is for the recipient, for ordering notices and the UI."""

    INFO = 0  # bookkeeping: reformatted, repaired, checked and found normal
    LOW = 1  # removed or changed, common in honest mail (links, metadata, styles)
    MEDIUM = 2  # suspicious or unreadable: cannot be checked, could hide an attack
    HIGH = 3  # active content or a known attack technique

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One row of the registry."""

    code: str
    severity: Severity
    ja: str
    en: str

    def words(self, language: str) -> str:
        return self.ja if language == "ja" else self.en


_I, _L, _M, _H = Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH

# fmt: off
_ROWS: tuple[CodeInfo, ...] = (
    # -- attachment type and name (gateway.detect) -------------------------------------------
    CodeInfo("TYPE_MISMATCH", _M, "拡張子と中身の種類が不一致", "name does not match the content"),
    CodeInfo("DOUBLE_EXTENSION", _H, "二重の拡張子で種類を偽装", "a double extension disguising the file type"),
    CodeInfo("FILENAME_BIDI_CONTROL", _H, "ファイル名の表示を偽装する文字", "characters that disguise how the name is shown"),
    CodeInfo("FILENAME_CONTROL_CHAR", _M, "ファイル名に制御文字", "control characters in the name"),
    CodeInfo("FILENAME_PATH", _M, "ファイル名にフォルダの指定", "folder names in the file name"),
    CodeInfo("FILENAME_TOO_LONG", _L, "ファイル名が長すぎる", "file name too long"),
    CodeInfo("EXECUTABLE", _H, "実行ファイル（プログラム）", "an executable program"),
    CodeInfo("SCRIPT", _H, "開くと動くスクリプト", "a script that runs when opened"),
    CodeInfo("ACTIVE_FILE_TYPE", _H, "開くとWindowsやOfficeが動作する種類のファイル", "a file type Windows or Office acts on when opened"),
    CodeInfo("MESSAGE_FILE", _L, "メールソフトがメールとして開くファイル", "a file mail programs open as a message"),
    CodeInfo("DANGEROUS_CONTAINER", _H, "開くと中のプログラムが動くディスクイメージ等", "a disk image or similar that can run programs when opened"),
    CodeInfo("ARCHIVE_ENCRYPTED", _M, "パスワード付きで中身を検査できない", "password-protected: its content cannot be checked"),
    CodeInfo("ARCHIVE_MALFORMED", _M, "圧縮ファイルが壊れていて検査できない", "a damaged archive that cannot be checked"),
    CodeInfo("ENCRYPTED_DOCUMENT", _M, "暗号化された文書で中身を検査できない", "an encrypted document that cannot be checked"),
    CodeInfo("POLYGLOT", _H, "別の種類のファイルが隠されていた", "another file hidden inside"),
    CodeInfo("DDE_FIELD", _H, "他のプログラムを起動する仕掛け（DDE）", "a field that can start other programs (DDE)"),
    CodeInfo("RTF_EMBEDDED_OBJECT", _H, "攻撃に使われる埋め込みオブジェクト", "an embedded object of a kind used in attacks"),
    CodeInfo("OFFICE_XML", _M, "マクロ等を含められる旧Office XML形式", "an old Office XML format that can carry macros"),
    CodeInfo("SVG_ACTIVE_CONTENT", _H, "画像内のスクリプトや外部参照を除去", "scripts or outside references in the image removed"),
    CodeInfo("EMPTY_FILE", _I, "空のファイル", "an empty file"),
    CodeInfo("DETECTION_ERROR", _M, "ファイルの種類を判別できなかった", "its type could not be determined"),
    # -- archives (gateway.sanitizers.archive) -------------------------------------------------
    CodeInfo("ARCHIVE_BOMB", _H, "展開すると異常に大きくなる", "expands to an abnormal size"),
    CodeInfo("ARCHIVE_TOO_DEEP", _M, "圧縮ファイルの入れ子が深すぎる", "archives nested too deep"),
    CodeInfo("ARCHIVE_TOO_MANY_MEMBERS", _M, "中のファイルが多すぎる", "too many files inside"),
    CodeInfo("ARCHIVE_PATH_TRAVERSAL", _H, "展開先の外に書き込むファイル名", "a name that would write outside its folder"),
    CodeInfo("ARCHIVE_SYMLINK", _M, "中のリンクを除去", "links inside removed"),
    CodeInfo("ARCHIVE_DUPLICATE_NAME", _M, "同じ名前のファイルの重複を除去", "duplicate file names removed"),
    CodeInfo("ARCHIVE_MEMBER_STRIPPED", _L, "中のファイルの一部を削除", "some files inside removed"),
    CodeInfo("ARCHIVE_MEMBER_QUARANTINE", _H, "隔離対象のファイルを含む", "contains a file that is held"),
    CodeInfo("ARCHIVE_EMPTY", _L, "安全に残せるファイルが中になかった", "nothing inside could be kept safely"),
    # -- the partner's own password mail (gateway.ppap, issue 17) ------------------------------
    CodeInfo("ARCHIVE_UNLOCKED", _I, "送信者が後から送ったパスワードで開き、中身を個別に検査", "opened with the password the sender sent later; each file inside checked"),
    CodeInfo("ARCHIVE_PASSWORD_WRONG", _M, "後から届いたメールのパスワードでは開けなかった", "the password in the later mail did not open it"),
    CodeInfo("PASSWORD_NOT_FOUND", _I, "パスワードの記載がない", "no password line"),
    CodeInfo("PASSWORD_MASKED", _I, "本文のパスワードを伏せ字に変更", "the password in the text was masked"),
    # -- images (gateway.sanitizers.image) -----------------------------------------------------
    CodeInfo("IMAGE_TRAILING_DATA", _M, "画像の後ろに隠されたデータを除去", "data hidden after the image removed"),
    CodeInfo("IMAGE_METADATA", _I, "撮影情報などのメタデータを除去", "metadata (camera, location...) removed"),
    CodeInfo("IMAGE_BOMB", _M, "画像が大きすぎて処理できない", "image too large to process"),
    CodeInfo("IMAGE_DECODE_ERROR", _M, "画像が壊れていて読み取れない", "a damaged image that cannot be read"),
    CodeInfo("IMAGE_FORMAT_CHANGED", _I, "画像を一般的な形式に変換", "image converted to a common format"),
    CodeInfo("IMAGE_HEIC_TO_JPEG", _I, "HEIC形式の写真をJPEG形式に変換", "HEIC photo converted to JPEG"),
    CodeInfo("SVG_RASTERIZED", _I, "SVG画像を通常の画像（PNG）に変換", "drawing (SVG) converted to a picture (PNG)"),
    CodeInfo("SVG_RASTERIZE_UNAVAILABLE", _M, "SVG画像を変換できなかった", "the drawing (SVG) could not be converted"),
    # -- legacy Office (gateway.sanitizers.ole) ------------------------------------------------
    CodeInfo("OLE_VBA_MACRO", _H, "マクロを含む", "contains macros"),
    CodeInfo("OLE_XLM_MACRO", _H, "Excel 4.0マクロを含む", "contains Excel 4.0 macros"),
    CodeInfo("OLE_EMBEDDED_OBJECT", _H, "埋め込みオブジェクトを含む", "contains embedded objects"),
    CodeInfo("OFFICE_ENCRYPTED", _M, "パスワード付きの文書で中身を検査できない", "a password-protected document that cannot be checked"),
    CodeInfo("OLE_UNSUPPORTED_TYPE", _M, "Word・Excel・PowerPoint以外の旧形式", "an old format other than Word, Excel or PowerPoint"),
    CodeInfo("OLE_DAMAGED", _M, "文書が壊れていて検査できない", "a damaged document that cannot be checked"),
    CodeInfo("OLE_VERIFIED_CLEAN", _I, "検査の結果、危険な要素なし", "checked: nothing active found"),
    CodeInfo("OLE_CHECK_FAILED", _H, "安全確認を完了できなかった", "its safety checks could not be completed"),
    CodeInfo("OLE_RASTERIZED", _I, "文書を画像化", "converted to images"),
    CodeInfo("OLE_RASTERIZE_UNAVAILABLE", _M, "画像化できなかった", "could not be converted to images"),
    CodeInfo("OLE_CONVERTED", _I, "旧形式の文書を、マクロなどを除いた新しい形式に変換", "converted to the current format, without macros or other active content"),
    CodeInfo("OLE_CONVERT_FAILED", _M, "新しい形式への変換に失敗", "conversion to the current format failed"),
    CodeInfo("OLE_CONVERT_UNAVAILABLE", _M, "新しい形式に変換する仕組みが導入されていない", "no converter to the current format is installed"),
    CodeInfo("OLE_HELD_BY_POLICY", _M, "危険な要素を含む旧形式の文書は保留する設定", "the policy holds old-format documents with active content"),
    # -- Office Open XML (gateway.sanitizers.ooxml) --------------------------------------------
    CodeInfo("OOXML_VBA_MACRO", _H, "マクロを除去", "macros removed"),
    CodeInfo("OOXML_XLM_MACRO", _H, "Excel 4.0マクロを除去", "Excel 4.0 macros removed"),
    CodeInfo("OOXML_ACTIVEX", _H, "ActiveXコントロールを除去", "ActiveX controls removed"),
    CodeInfo("OOXML_OLE_OBJECT", _H, "埋め込みオブジェクトを除去", "embedded objects removed"),
    CodeInfo("OOXML_EXTERNAL_RELATIONSHIP", _H, "外部への参照を除去", "references to outside files removed"),
    CodeInfo("OOXML_HYPERLINK", _L, "リンクを無効化（文字は残しています）", "links disabled (their text is kept)"),
    CodeInfo("OOXML_CUSTOM_UI", _M, "独自のメニュー設定を除去", "custom menus removed"),
    CodeInfo("OOXML_DATA_CONNECTION", _M, "外部データへの接続を除去", "connections to outside data removed"),
    CodeInfo("OOXML_ALT_CHUNK", _M, "埋め込まれた別形式の文書を除去", "documents embedded in other formats removed"),
    CodeInfo("OOXML_FIELD_REMOVED", _M, "外部を参照するフィールドを除去", "fields that fetch outside content removed"),
    CodeInfo("OOXML_FORMULA_REMOVED", _M, "外部と通信する数式を除去", "formulas that call outside removed"),
    CodeInfo("OOXML_EXTERNAL_REFERENCE", _H, "外部のファイルを参照する数式を値に置き換え", "formulas referring to outside files replaced by their values"),
    CodeInfo("OOXML_ACTION_REMOVED", _H, "プログラムを実行する動作設定を除去", "actions that run programs removed"),
    CodeInfo("OOXML_MACRO_ENABLED_TYPE", _L, "マクロ有効形式を通常の形式に変更", "changed from a macro-enabled type to the ordinary one"),
    CodeInfo("OOXML_PART_REMOVED", _L, "文書に不要な付属データを除去", "extra data the document does not need removed"),
    CodeInfo("OOXML_BINARY", _M, "再作成できないバイナリ形式のブック", "a binary workbook that cannot be rebuilt"),
    CodeInfo("OOXML_DAMAGED", _M, "文書が壊れていて読み取れない", "a damaged document that cannot be read"),
    CodeInfo("OOXML_VERIFY_FAILED", _M, "作り直した文書の確認に失敗", "the rebuilt copy failed its check"),
    CodeInfo("OOXML_RASTERIZED", _I, "文書を画像化", "converted to images"),
    CodeInfo("OOXML_RASTERIZE_UNAVAILABLE", _M, "画像化できなかった", "could not be converted to images"),
    # -- PDF (gateway.sanitizers.pdf) ----------------------------------------------------------
    CodeInfo("PDF_JAVASCRIPT", _H, "JavaScriptを除去", "JavaScript removed"),
    CodeInfo("PDF_ACTION", _H, "自動で動く動作を除去", "automatic actions removed"),
    CodeInfo("PDF_LAUNCH", _H, "プログラムを起動する動作を除去", "actions that start programs removed"),
    CodeInfo("PDF_REMOTE_ACTION", _M, "別の文書を開く動作を除去", "actions that open other documents removed"),
    CodeInfo("PDF_FORM_SUBMIT", _M, "入力内容を送信する機能を除去", "sending of form contents removed"),
    CodeInfo("PDF_URI", _L, "リンクを除去", "links removed"),
    CodeInfo("PDF_EMBEDDED_FILE", _H, "埋め込みファイルを除去", "embedded files removed"),
    CodeInfo("PDF_RICHMEDIA", _M, "動画・音声・Flashを除去", "video, sound and Flash removed"),
    CodeInfo("PDF_3D", _M, "3Dモデルを除去", "3D models removed"),
    CodeInfo("PDF_XFA", _M, "XFAフォームを除去", "XFA forms removed"),
    CodeInfo("PDF_ENCRYPTED", _M, "パスワード付きで中身を検査できない", "password-protected: its content cannot be checked"),
    CodeInfo("PDF_ENCRYPTION_REMOVED", _I, "空のパスワードによる暗号化を解除", "encryption with an empty password removed"),
    CodeInfo("PDF_DAMAGED", _M, "PDFが壊れていて読み取れない", "a damaged PDF that cannot be read"),
    CodeInfo("PDF_REPAIRED", _I, "壊れていた構造を修復", "damaged structure repaired"),
    CodeInfo("PDF_INCREMENTAL_UPDATE", _L, "追記された版を1つにまとめた", "later revisions merged into one"),
    CodeInfo("PDF_URI_TEXT_DEFANGED", _L, "本文中のURLをクリックできない形に変更", "URLs in the text made unclickable"),
    CodeInfo("PDF_URL_TEXT_RASTERIZED", _L, "リンクになる文字を含むページを画像化", "pages with text a viewer turns into links converted to images"),
    CodeInfo("PDF_URL_TEXT_HELD", _M, "ビューアがリンクにする文字を含む", "contains text a viewer turns into links"),
    CodeInfo("PDF_TEXT_CHECK_FAILED", _M, "ページの文字を確認できなかった", "its page text could not be checked"),
    CodeInfo("PDF_TOO_MANY_PAGES", _M, "ページが多すぎて画像化できない", "too many pages to convert to images"),
    CodeInfo("PDF_RASTERIZED", _I, "PDFを画像化", "converted to images"),
    CodeInfo("PDF_VERIFY_FAILED", _M, "作り直したPDFの確認に失敗", "the rebuilt copy failed its check"),
    # -- HTML bodies and attachments (gateway.sanitizers.html, htmlfile) -------------------------
    CodeInfo("HTML_ATTACHMENT_REBUILT", _I, "HTMLファイルを安全な形に作り直した", "HTML file rebuilt in a safe form"),
    CodeInfo("HTML_SCRIPT", _H, "スクリプトを除去", "scripts removed"),
    CodeInfo("HTML_EVENT_HANDLER", _H, "操作で動くスクリプトを除去", "scripts triggered by clicks or loading removed"),
    CodeInfo("HTML_SCRIPT_URL", _H, "スクリプトを実行するリンクを除去", "links that run scripts removed"),
    CodeInfo("HTML_OBJECT", _H, "埋め込みオブジェクトを除去", "embedded objects removed"),
    CodeInfo("HTML_IFRAME", _M, "埋め込みフレームを除去", "embedded frames removed"),
    CodeInfo("HTML_FORM", _M, "入力フォームを除去", "forms removed"),
    CodeInfo("HTML_META_REFRESH", _M, "自動で別のページへ移動する設定を除去", "automatic redirects removed"),
    CodeInfo("HTML_CSS_ACTIVE", _M, "動作を含むスタイル指定を除去", "active style rules removed"),
    CodeInfo("HTML_BASE", _L, "リンク先を書き換える設定を除去", "a setting that rewrites link targets removed"),
    CodeInfo("HTML_SVG", _L, "埋め込み図形（SVG）を除去", "embedded drawings (SVG) removed"),
    CodeInfo("HTML_MATHML", _L, "数式表示（MathML）を除去", "formula markup (MathML) removed"),
    CodeInfo("HTML_EXTERNAL_RESOURCE", _L, "外部から読み込む要素を除去", "content loaded from outside removed"),
    CodeInfo("HTML_DATA_IMAGE", _L, "埋め込み画像を除去", "embedded images removed"),
    CodeInfo("HTML_REMOTE_IMAGE", _L, "外部画像（開封の追跡に使われる）を除去", "remote images (used to track opening) removed"),
    CodeInfo("HTML_CONDITIONAL_COMMENT", _L, "Outlook向けの条件付き記述を除去", "Outlook-only markup removed"),
    CodeInfo("HTML_STYLE", _I, "スタイル設定を除去", "styles removed"),
    CodeInfo("HTML_LAYOUT_FLATTENED", _I, "入れ子の深いレイアウトを簡略化", "deeply nested layout simplified"),
    CodeInfo("HTML_TOO_LARGE", _M, "本文が大きすぎて処理できない", "text too large to process"),
    CodeInfo("HTML_TOO_DEEP", _M, "入れ子が深すぎて処理できない", "structure nested too deep to process"),
    # -- URLs (gateway.sanitizers.urls; URL_DEFANGED/URL_REMOVED by gateway.inspect) ---------
    CodeInfo("URL_DEFANGED", _L, "URLをクリックできない形に変更", "URLs made unclickable"),
    CodeInfo("URL_REMOVED", _L, "URLを削除", "URLs removed"),
    CodeInfo("URL_USERINFO", _H, "行き先を偽装するユーザー名付きURL", "a URL with a user name disguising its destination"),
    CodeInfo("URL_OBFUSCATED", _H, "偽装・難読化されたURL", "a disguised or obfuscated URL"),
    CodeInfo("URL_JAVASCRIPT", _H, "スクリプトを実行するURL", "a URL that runs a script"),
    CodeInfo("URL_PROTOCOL_HANDLER", _H, "アプリを起動するURL", "a URL that starts an application"),
    CodeInfo("URL_UNC_PATH", _H, "ネットワーク上のファイルを開くパス", "a path that opens a network file"),
    CodeInfo("URL_IP_HOST", _M, "IPアドレスを直接指定したURL", "a URL to a bare IP address"),
    CodeInfo("URL_PUNYCODE", _M, "国際化ドメイン名（Punycode）のURL", "an internationalised domain name (punycode)"),
    CodeInfo("URL_IDN", _M, "英数字以外を含むドメイン名のURL", "a domain name with non-Latin characters"),
    CodeInfo("URL_DATA", _M, "データを埋め込んだURL", "a URL with embedded data"),
    CodeInfo("URL_FILE", _M, "パソコン内のファイルを開くURL", "a URL that opens a local file"),
    CodeInfo("URL_FLOOD", _M, "URLが多すぎる", "too many URLs"),
    CodeInfo("URL_OTHER_SCHEME", _L, "その他の形式のURL", "a URL of another kind"),
    CodeInfo("URL_MAILTO", _I, "メール作成のリンク", "a link that writes an email"),
    CodeInfo("URL_MAIL_ADDRESS", _I, "メールアドレス", "an email address"),
    # -- character sets (gateway.charsets) and text attachments (gateway.sanitizers.text) ----
    CodeInfo("CHARSET_MISLABELED", _I, "誤った文字コード表示を補正して読み取り", "a wrong character set label corrected"),
    CodeInfo("CHARSET_UNDECLARED_8BIT", _I, "文字コードを判別して読み取り", "character set recognised (none was declared)"),
    CodeInfo("CHARSET_UNKNOWN", _L, "不明な文字コードの指定", "an unknown character set"),
    CodeInfo("CHARSET_UNDECODABLE", _L, "読み取れない文字を置き換え", "unreadable characters replaced"),
    CodeInfo("CHARSET_FALLBACK_UTF8", _I, "元の文字コードにない文字のためUTF-8で保存", "saved as UTF-8 for characters the original encoding lacks"),
    CodeInfo("TEXT_UNDECODABLE", _M, "文字として読み取れない", "not readable as text"),
    CodeInfo("TEXT_BINARY", _M, "テキストではないデータを含む", "contains data that is not text"),
    CodeInfo("CSV_FORMULA_NEUTRALIZED", _L, "数式として実行されるセルの先頭に「'」を付けて文字列に変更", "cells that would run as spreadsheet formulas prefixed with ' to show as text"),
    CodeInfo("CSV_FORMULA_HELD", _H, "数式として実行されるセルを含む", "cells that would run as spreadsheet formulas"),
    CodeInfo("XML_ACTIVE_CONTENT", _H, "スクリプトやスタイルシートを実行するXML", "XML that runs scripts or stylesheets"),
    # -- message structure (gateway.mime, gateway.inspect) ------------------------------------
    CodeInfo("MIME_HIDDEN_PART", _H, "メールの構造の外に隠されたファイル", "a file hidden outside the message structure"),
    CodeInfo("MIME_HIDDEN_TEXT", _M, "メールの構造の外に隠された本文", "text hidden outside the message structure"),
    CodeInfo("MIME_EXTERNAL_BODY", _M, "外部から内容を取り寄せる指定を除去", "a pointer to fetch content from outside removed"),
    CodeInfo("MIME_PARTIAL", _M, "分割されたメールで検査できない", "a split message that cannot be checked"),
    CodeInfo("SMIME_OPAQUE", _M, "暗号化・署名された内容で検査できない", "encrypted or signed content that cannot be checked"),
    CodeInfo("ENCRYPTED_MESSAGE", _M, "暗号化されたメールで検査できない", "an encrypted message that cannot be checked"),
    CodeInfo("SIGNED_MESSAGE", _L, "電子署名付きのメール", "a digitally signed message"),
    CodeInfo("LIMIT_DEPTH", _M, "メールの入れ子が深すぎる", "messages nested too deep"),
    CodeInfo("LIMIT_PARTS", _M, "メールの部品が多すぎる", "too many parts in the message"),
    CodeInfo("LIMIT_DECODED_SIZE", _M, "展開後のサイズが大きすぎる", "too large once decoded"),
    # -- framing that mail programs read differently (gateway.framing) ------------------------
    CodeInfo("MIME_AMBIGUOUS_HEADER", _H, "メールソフトによって読み方が異なるヘッダ行", "a header line mail programs read differently"),
    CodeInfo("MIME_DUPLICATE_FIELD", _H, "構造を決めるヘッダ（Content-Type 等）の重複", "a structural header field (Content-Type...) given twice"),
    CodeInfo("MIME_DUPLICATE_PARAMETER", _H, "区切り（boundary）や文字コード指定の重複", "a boundary or charset given twice"),
    CodeInfo("MIME_MALFORMED_TYPE", _M, "種類（Content-Type）の書式が不正", "a malformed Content-Type"),
    CodeInfo("MIME_AMBIGUOUS_BOUNDARY", _H, "メールソフトによって読み方が異なる部品の区切り", "part boundaries mail programs read differently"),
    CodeInfo("MIME_AMBIGUOUS_ENCODING", _M, "不明な、または不適切な転送エンコーディング", "an unknown or misplaced transfer encoding"),
    CodeInfo("MIME_BARE_CR", _H, "一部のメールソフトだけが改行とみなす文字（CR）", "a bare CR that only some programs take for a line end"),
    CodeInfo("MIME_NUL", _M, "メール中のNUL文字", "a NUL byte in the message"),
    # -- RTF (gateway.sanitizers.rtf) -------------------------------------------------------------
    CodeInfo("RTF_OBJECT_REMOVED", _H, "埋め込みオブジェクトを除去（表示用の画像は残しました）", "embedded objects removed (their pictures kept)"),
    CodeInfo("RTF_FIELD_REMOVED", _M, "フィールド（リンクや外部参照）を除去し文字だけ残しました", "fields (links, outside references) removed, their text kept"),
    CodeInfo("RTF_DATA_REMOVED", _M, "隠しデータを除去", "hidden data removed"),
    CodeInfo("RTF_PICTURE_REMOVED", _L, "安全に変換できない形式の画像を除去", "pictures in a format that cannot be checked removed"),
    CodeInfo("RTF_NOT_HARMLESS", _H, "危険な要素を取り除けなかった", "active content could not be removed"),
    # -- OpenDocument (gateway.sanitizers.odf) -------------------------------------------------
    CodeInfo("ODF_MACRO", _H, "マクロを除去", "macros removed"),
    CodeInfo("ODF_EVENT_LISTENER", _H, "開いたときなどに動く仕掛けを除去", "actions run on opening and other events removed"),
    CodeInfo("ODF_EXTERNAL_LINK", _L, "外部へのリンクや参照を除去（文字は残しました）", "outside links and references removed (their text kept)"),
    CodeInfo("ODF_EMBEDDED_OBJECT", _H, "埋め込みオブジェクトを除去", "embedded objects removed"),
    CodeInfo("ODF_DAMAGED", _M, "文書が壊れていて検査できない", "a damaged document that cannot be checked"),
    # -- calendars and contacts (gateway.sanitizers.calendar) ------------------------------------
    CodeInfo("CALENDAR_HTML_CONVERTED", _L, "予定の説明のHTMLを文字に変換", "the event's HTML description converted to text"),
    CodeInfo("CALENDAR_BINARY_REMOVED", _M, "予定・連絡先に埋め込まれたファイルを除去", "files embedded in the event or contact removed"),
    # -- known malware (gateway.antivirus) -------------------------------------------------------
    CodeInfo("VIRUS_FOUND", _H, "既知のウイルスを検出", "known malware detected"),
    CodeInfo("VIRUS_SCAN_UNAVAILABLE", _M, "ウイルス検査を実行できなかった", "the virus scan could not be run"),
    CodeInfo("VIRUS_SCAN_SKIPPED", _L, "大きすぎてウイルス検査の対象外", "too large for the virus scan"),
    # -- failures (gateway.inspect, gateway.workers, gateway.errors) -------------------------
    CodeInfo("SANITIZE_FAILED", _M, "無害化できなかった", "could not be made harmless"),
    CodeInfo("UNKNOWN_TYPE", _M, "種類を判別できない形式", "a file type that cannot be recognised"),
    CodeInfo("WORKER_PROTOCOL", _M, "処理結果が不正だったため処理を中止", "processing stopped: its result was not valid"),
    CodeInfo("WORKER_TIMEOUT", _M, "処理が時間内に終わらなかった", "processing did not finish in time"),
    CodeInfo("WORKER_CRASHED", _M, "処理中に異常が起きた", "processing failed"),
    CodeInfo("WORKER_MEMORY", _M, "処理に必要なメモリが上限を超えた", "processing needed too much memory"),
    CodeInfo("WORKER_EXCEPTION", _M, "処理中の内部エラー", "an internal error during processing"),
    CodeInfo("SANITIZER_ERROR", _M, "処理中の内部エラー", "an internal error during processing"),
    CodeInfo("INTERNAL_ERROR", _M, "処理中の内部エラー", "an internal error during processing"),
    CodeInfo("CANNOT_SANITIZE", _M, "無害化できなかった", "could not be made harmless"),
    CodeInfo("CONFIG_INVALID", _M, "設定の誤りのため処理できなかった", "not processed: configuration error"),
    CodeInfo("STORE_UNAVAILABLE", _M, "保管場所に書き込めなかった", "could not be stored"),
    CodeInfo("DOWNSTREAM_UNAVAILABLE", _M, "配送先に接続できなかった", "the next mail server could not be reached"),
    CodeInfo("DOWNSTREAM_REFUSED", _M, "配送先が受け付けなかった", "the next mail server refused it"),
    # -- reasons for what became of an attachment (gateway.inspect, gateway.pipeline) --------
    CodeInfo("POLICY", _L, "組織の設定による", "by your organisation's policy"),
    CodeInfo("MESSAGE", _I, "添付されたメールも同じ処理", "an attached message, treated the same way"),
    CodeInfo("TRUSTED_SENDER", _I, "信頼済みの送信者のため変更なし", "trusted sender: kept as sent"),
    # A policy that holds a whole content class records the class as the reason
    # (``gateway.inspect``: ``content_class.upper()``; one row per ``CONTENT_CLASSES`` entry,
    # EXECUTABLE, SCRIPT and MESSAGE are above).
    CodeInfo("PDF", _L, "組織の設定でPDFは隔離対象", "PDF files are held by your organisation's policy"),
    CodeInfo("OOXML", _L, "組織の設定でOffice文書は隔離対象", "Office documents are held by your organisation's policy"),
    CodeInfo("OLE", _L, "組織の設定で旧形式のOffice文書は隔離対象", "old-format Office documents are held by your organisation's policy"),
    CodeInfo("RTF", _L, "組織の設定でRTF文書は隔離対象", "RTF documents are held by your organisation's policy"),
    CodeInfo("OPENDOCUMENT", _L, "組織の設定でOpenDocument文書は隔離対象", "OpenDocument files are held by your organisation's policy"),
    CodeInfo("IMAGE", _L, "組織の設定で画像は隔離対象", "images are held by your organisation's policy"),
    CodeInfo("SVG", _L, "組織の設定でSVG画像は隔離対象", "SVG drawings are held by your organisation's policy"),
    CodeInfo("ARCHIVE", _L, "組織の設定で圧縮ファイルは隔離対象", "archives are held by your organisation's policy"),
    CodeInfo("ENCRYPTED_ARCHIVE", _M, "パスワード付き圧縮ファイルは隔離対象", "password-protected archives are held"),
    CodeInfo("OTHER_ARCHIVE", _M, "ZIP以外の圧縮ファイル・ディスクイメージは隔離対象", "archives other than ZIP and disk images are held"),
    CodeInfo("TEXT", _L, "組織の設定でテキストファイルは隔離対象", "text files are held by your organisation's policy"),
    CodeInfo("HTML", _L, "組織の設定でHTMLファイルは隔離対象", "HTML files are held by your organisation's policy"),
    CodeInfo("UNKNOWN", _M, "種類を判別できないファイルは隔離対象", "files of unknown type are held"),
)
# fmt: on


def _index(rows: Iterable[CodeInfo]) -> Mapping[str, CodeInfo]:
    table: dict[str, CodeInfo] = {}
    for row in rows:
        if row.code in table:
            raise RuntimeError(f"finding code {row.code} is registered twice")
        if not row.code.replace("_", "").isalnum() or row.code != row.code.upper():
            raise RuntimeError(f"finding code {row.code!r} is not UPPER_SNAKE")
        if not row.ja or not row.en or row.code in (row.ja, row.en):
            raise RuntimeError(f"finding code {row.code} needs words for people in ja and en")
        table[row.code] = row
    return MappingProxyType(table)


REGISTRY: Mapping[str, CodeInfo] = _index(_ROWS)
CODES: tuple[str, ...] = tuple(REGISTRY)

# What a recipient reads for a code the table does not know (a bug the registry test catches;
# never the internal code itself).
_UNKNOWN_WORDS = {"ja": "その他の理由", "en": "another reason"}


def is_registered(code: str) -> bool:
    return code in REGISTRY


def severity(code: str) -> Severity:
    """The code's severity; an unregistered code counts as MEDIUM (shown, not hidden)."""
    row = REGISTRY.get(code)
    return row.severity if row is not None else Severity.MEDIUM


def words(code: str, language: str) -> str:
    """What ``code`` means for people, in ``language`` (``ja``; anything else is English)."""
    row = REGISTRY.get(code)
    if row is None:
        return _UNKNOWN_WORDS["ja" if language == "ja" else "en"]
    return row.words(language)


def by_severity(codes: Iterable[str]) -> list[str]:
    """``codes`` without duplicates, the most serious first (ties keep their order)."""
    unique = list(dict.fromkeys(c for c in codes if c))
    return sorted(unique, key=lambda c: -severity(c))


def matching(pattern: str) -> list[str]:
    """The registered codes a policy pattern (``LIMIT_*``, ``PDF_?S``, or a code) selects."""
    if pattern in REGISTRY:
        return [pattern]
    return [code for code in CODES if fnmatch.fnmatchcase(code, pattern)]


def unknown_pattern_problem(pattern: str) -> str:
    """Why a policy's ``finding`` pattern selects nothing ("" when it selects a code), with
    the nearest registered code as a suggestion for a typo."""
    if matching(pattern):
        return ""
    if any(c in pattern for c in "*?"):
        return "matches no finding code"
    close = difflib.get_close_matches(pattern, CODES, n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown finding code{hint}"
