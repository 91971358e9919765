"""Words for people, in Japanese and English, for what the pipeline records as codes and
reasons: finding codes (``OOXML_VBA_MACRO``), the reasons a message was held (``attachment
policy: executable is quarantined``), content classes and attachment actions.

The pipeline's reasons are English sentences made from a few fixed shapes
(``gateway/inspect.py``, ``gateway/pipeline.py``, ``gateway/relay.py``); ``REASON_SHAPES``
maps each shape to words. ``tests/quarantine/test_i18n.py`` reads every reason the gateway's
source can produce and fails when a shape is missing here. A reason that matches no shape is
a policy rule's own ``reason:`` text, written by the operator (often in Japanese already),
and is shown as written.

Finding codes: the words come from the finding registry (``gateway.findings``), the one
table of codes. The code itself is always shown beside the words (it is what rules, metrics
and logs use).

Not done here: HTML. Every value is plain text for Jinja's autoescape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gateway import findings

CLASSES: dict[str, dict[str, str]] = {
    "ja": {
        "pdf": "PDF",
        "ooxml": "Office 文書",
        "ole": "旧形式の Office 文書",
        "rtf": "RTF 文書",
        "opendocument": "OpenDocument 文書",
        "image": "画像",
        "svg": "SVG 画像",
        "archive": "ZIP 書庫",
        "encrypted_archive": "パスワード付き書庫",
        "other_archive": "ZIP 以外の書庫",
        "executable": "実行ファイル",
        "script": "スクリプト",
        "text": "テキストファイル",
        "html": "HTML ファイル",
        "message": "添付されたメール",
        "unknown": "不明な形式",
    },
    "en": {
        "pdf": "PDF",
        "ooxml": "Office document",
        "ole": "legacy Office document",
        "rtf": "RTF document",
        "opendocument": "OpenDocument file",
        "image": "image",
        "svg": "SVG image",
        "archive": "ZIP archive",
        "encrypted_archive": "password-protected archive",
        "other_archive": "non-ZIP archive",
        "executable": "executable",
        "script": "script",
        "text": "text file",
        "html": "HTML file",
        "message": "attached message",
        "unknown": "unknown type",
    },
}


def finding_words(code: str, language: str) -> str:
    """Words for a finding code, from the registry."""
    return findings.words(code, language)


def class_words(content_class: str, language: str) -> str:
    return CLASSES.get(language, CLASSES["en"]).get(content_class, content_class)


def _codes(text: str, language: str) -> str:
    separator = "、" if language == "ja" else ", "
    return separator.join(finding_words(c.strip(), language) for c in text.split(",") if c)


Shape = tuple[re.Pattern[str], dict[str, str], Callable[[re.Match[str], str], dict[str, Any]]]

_CODE = r"(?P<code>[A-Z][A-Z0-9_]+)"


def _no_fields(match: re.Match[str], language: str) -> dict[str, Any]:
    return {}


def _class_field(match: re.Match[str], language: str) -> dict[str, Any]:
    return {"what": class_words(match.group("cls"), language)}


def _code_field(match: re.Match[str], language: str) -> dict[str, Any]:
    return {"what": _codes(match.group("code"), language)}


def _code_and_detail(match: re.Match[str], language: str) -> dict[str, Any]:
    return {"what": finding_words(match.group("code"), language), "detail": match.group("detail")}


# (pattern, words per language, fields): the shapes of the pipeline's own reasons.
REASON_SHAPES: tuple[Shape, ...] = (
    (
        re.compile(r"attachment policy: (?P<cls>[a-z_]+) is quarantined"),
        {
            "ja": "添付ファイルの方針により保留（{what}）",
            "en": "held by the attachment policy ({what})",
        },
        _class_field,
    ),
    (
        re.compile(r"attachment policy: (?P<code>[A-Z0-9_,]+) is held"),
        {
            "ja": "添付ファイルの方針により保留（{what}）",
            "en": "held by the attachment policy ({what})",
        },
        _code_field,
    ),
    (
        re.compile(r"attachment policy: message"),
        {
            "ja": "添付ファイルの方針により保留（添付されたメール）",
            "en": "held by the attachment policy (attached message)",
        },
        _no_fields,
    ),
    (
        re.compile(r"attachment could not be made harmless \((?P<code>[A-Z0-9_,]+)\)"),
        {
            "ja": "添付ファイルを無害化できませんでした（{what}）",
            "en": "an attachment could not be made harmless ({what})",
        },
        _code_field,
    ),
    (
        re.compile(_CODE + r": content cannot be inspected"),
        {
            "ja": "内容を検査できないため保留（{what}）",
            "en": "content cannot be inspected ({what})",
        },
        _code_field,
    ),
    (
        re.compile(_CODE + r": body not sanitized"),
        {
            "ja": "本文を無害化できなかったため保留（{what}）",
            "en": "the body could not be made harmless ({what})",
        },
        _code_field,
    ),
    (
        re.compile(r"mail programs would read the structure differently \((?P<code>[A-Z0-9_,]+)\)"),
        {
            "ja": "メールソフトによって構造の読み方が異なるため保留（{what}）",
            "en": "held: mail programs would read its structure differently ({what})",
        },
        _code_field,
    ),
    (
        re.compile(r"signed mail held by policy"),
        {"ja": "方針により電子署名付きのメールを保留", "en": "signed mail held by policy"},
        _no_fields,
    ),
    (
        re.compile(r"message could not be rebuilt"),
        {"ja": "メールを再構成できませんでした", "en": "the message could not be rebuilt"},
        _no_fields,
    ),
    (
        re.compile(r"(?P<code>LIMIT_[A-Z_]+): (?P<detail>.*)"),
        {
            "ja": "構造の上限を超えています（{what}: {detail}）",
            "en": "limit exceeded ({what}: {detail})",
        },
        _code_and_detail,
    ),
    (
        re.compile(r"(?P<code>VIRUS_[A-Z_]+): (?P<detail>.*)"),
        {
            "ja": "ウイルス検査により保留（{what}: {detail}）",
            "en": "held by the virus scan ({what}: {detail})",
        },
        _code_and_detail,
    ),
    (
        re.compile(r"(?P<code>WORKER_[A-Z_]+|INTERNAL_ERROR)(: .*)?"),
        {
            "ja": "処理中の障害のため保留（{what}）",
            "en": "held after a processing failure ({what})",
        },
        _code_field,
    ),
    (
        re.compile(r"(?P<code>[A-Z][A-Z0-9_]+(,[A-Z][A-Z0-9_]+)*)"),
        {"ja": "{what}", "en": "{what}"},
        _code_field,
    ),
)


def reason_words(reason: str, language: str) -> str:
    """Words for one reason of a held message (see the module docstring)."""
    language = language if language in CLASSES else "en"
    for pattern, words, fields in REASON_SHAPES:
        match = pattern.fullmatch(reason)
        if match:
            return words[language].format(**fields(match, language))
    return reason  # a policy rule's own text


def action_words(action: str, language: str) -> str:
    """Words for what was done to an attachment (``AttachmentRecord.action``)."""
    table = {
        "ja": {
            "rebuilt": "再作成",
            "both": "再作成と画像化",
            "rasterized": "画像化",
            "stripped": "削除",
            "held": "保留",
            "kept": "そのまま",
            "checked": "検査のみ（受信したまま）",
            "": "—",
        },
        "en": {
            "rebuilt": "rebuilt",
            "both": "rebuilt and rasterized",
            "rasterized": "rasterized",
            "stripped": "removed",
            "held": "held",
            "kept": "kept",
            "checked": "checked, kept as received",
            "": "—",
        },
    }
    return table.get(language, table["en"]).get(action, action)
