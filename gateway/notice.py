"""The notice a recipient reads, and the ``X-Mugaika-*`` summary headers machines read.

The notice is a short block at the top of the message text listing what was changed, why, and
the reference id under which the original is kept ("quote this id to ask for the original").
Japanese by default, English by policy (``notice.language``). Every sentence is a template
that a policy may override (``notice.templates: {kind: text}``) using ``str.format`` fields
named in ``TEMPLATES`` below; an override with an unknown field is reported and the built-in
text used instead, so a typo in a policy never breaks mail flow.

The notice only reads the ``Report``; it decides nothing. Untrusted names (attachment file
names, new names, malware names) pass through ``replace_control_chars`` so RTLO cannot reorder
what a recipient reads, and through the URL defanger so that no client makes a link of them
(``www.evil.jp.7z``, ``\\\\host\\share.7z``, ``invoice.zip``: ``.zip`` is a top-level domain).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping

from gateway import findings
from gateway.logs import replace_control_chars
from gateway.report import AttachmentRecord, Report, Verdict
from gateway.sanitizers.urls import defang_untrusted

log = logging.getLogger("mugaika.notice")

TEMPLATES: dict[str, dict[str, str]] = {
    "ja": {
        "title": "【無害化処理のお知らせ】",
        "intro": "このメールはインターネットから届いたため、安全のため次の処理を行いました。",
        "html-to-text": "・HTML形式の本文をテキストに変換しました。",
        "html-sanitized": (
            "・HTML本文から危険な要素（スクリプト、フォーム、外部画像など）を除去しました。"
        ),
        "urls-defanged": "・URL {count}件をクリックできない形に変更しました（例: hxxps://example[.]com）。",
        "urls-removed": "・URL {count}件を削除しました。",
        "attachment-rebuilt": "・添付ファイル「{name}」を無害化して再作成しました（{reason}）。",
        "attachment-checked": (
            "・添付ファイル「{name}」を検査しました。危険な要素が見つからなかったため、"
            "受信したまま添付しています（{reason}）。"
        ),
        "attachment-rasterized": "・添付ファイル「{name}」を画像化しました（{reason}）。",
        "attachment-stripped": "・添付ファイル「{name}」を削除しました（{reason}）。",
        "attachment-held": (
            "・添付ファイル「{name}」は隔離され、このメールには含まれていません（{reason}）。"
        ),
        "attachment-renamed": "・添付ファイル「{name}」の名前を「{new_name}」に変更しました。",
        "signature-removed": "・電子署名は内容の変更により検証できなくなるため、取り除きました。",
        "tnef-unpacked": "・Outlook形式（winmail.dat）の添付ファイルを取り出しました。",
        "uuencode-extracted": "・本文に埋め込まれた添付ファイル（uuencode）を取り出しました。",
        "binhex-extracted": "・本文に埋め込まれた添付ファイル（BinHex）を取り出しました。",
        "yenc-extracted": "・本文に埋め込まれた添付ファイル（yEnc）を取り出しました。",
        "virus-found": "・既知のウイルス「{name}」が見つかったため、このメールは隔離されました。",
        "archive-unlocked": (
            "・パスワード付き圧縮ファイル「{name}」は、送信者が後から送ったメールのパスワードで開き、"
            "中のファイルを一つずつ検査しました。"
        ),
        "password-masked": (
            "・本文のパスワード {count}件を伏せ字（********）にしました。"
            "先に届いたパスワード付き圧縮ファイルは、このパスワードでゲートウェイが開いて検査しました。"
        ),
        "nothing-found": "危険な要素は見つかりませんでした",
        "mime-canonicalized": (
            "・メールの構造（ヘッダや区切り）がメールソフトによって異なる内容に見える形式だった"
            "ため、どのソフトでも同じに見える標準的な形式に組み立て直しました。"
        ),
        "reference": "原本は参照番号 {reference} で保管されています。"
        "必要な場合はこの番号を添えてシステム管理者にお問い合わせください。",
        "request": (
            "原本が必要な場合は、件名に参照番号 {reference} を書いて {address} 宛てにメールを"
            "送ってください（本文の1行目に理由）。承認されると届きます。"
            "パスワード付き圧縮ファイルが保留されている場合は、本文に「パスワード：（パスワード）」と"
            "書いて同じ宛先に送ると、ゲートウェイが開いて検査し、安全な中身をお届けします。"
        ),
        "rule": "─" * 30,
    },
    "en": {
        "title": "[Made harmless by the mail gateway]",
        "intro": "This message came from the internet. For your safety the gateway changed it:",
        "html-to-text": "- The HTML body was converted to plain text.",
        "html-sanitized": "- Dangerous HTML (scripts, forms, remote images...) was removed.",
        "urls-defanged": "- {count} URL(s) were made unclickable (e.g. hxxps://example[.]com).",
        "urls-removed": "- {count} URL(s) were removed.",
        "attachment-rebuilt": '- Attachment "{name}" was rebuilt without active content '
        "({reason}).",
        "attachment-checked": '- Attachment "{name}" was checked and, as nothing active was '
        "found, is attached as received ({reason}).",
        "attachment-rasterized": '- Attachment "{name}" was converted to images ({reason}).',
        "attachment-stripped": '- Attachment "{name}" was removed ({reason}).',
        "attachment-held": '- Attachment "{name}" is held in quarantine, not in this copy '
        "({reason}).",
        "attachment-renamed": '- Attachment "{name}" was renamed to "{new_name}".',
        "signature-removed": "- The digital signature was removed: it cannot verify after changes.",
        "tnef-unpacked": "- Attachments were unpacked from an Outlook winmail.dat.",
        "uuencode-extracted": "- A file embedded in the text (uuencode) was extracted.",
        "binhex-extracted": "- A file embedded in the text (BinHex) was extracted.",
        "yenc-extracted": "- A file embedded in the text (yEnc) was extracted.",
        "virus-found": '- Known malware "{name}" was found: this message is held.',
        "archive-unlocked": '- The password-protected archive "{name}" was opened with the '
        "password the sender sent in a later mail, and each file inside was checked.",
        "password-masked": "- {count} password(s) in the text were masked (********). The "
        "gateway used them to open and check the password-protected archive that arrived earlier.",
        "nothing-found": "no active content found",
        "mime-canonicalized": "- The message's structure (headers or part boundaries) could be "
        "read differently by different mail programs; it was rebuilt in a standard form that "
        "every program reads alike.",
        "reference": "The original is kept under reference {reference}. Quote it to your "
        "administrator if you need the original.",
        "request": "To ask for the original, mail {address} with reference {reference} in "
        "the subject and your reason on the first line; it arrives once approved. For a held "
        'password-protected archive, send "Password: (the password)" in the text to the same '
        "address: the gateway opens it, checks it and delivers what is safe inside.",
        "rule": "-" * 40,
    },
}


def quoted(untrusted: str) -> str:
    """An untrusted string as a notice may show it: no control or bidi characters, no link."""
    return defang_untrusted(replace_control_chars(untrusted))


def reason_text(codes: str, language: str) -> str:
    """``"OOXML_MACRO_ENABLED_TYPE,OOXML_VBA_MACRO"`` → ``"マクロを除去、マクロ有効形式を通常の
    形式に変更"``: the registry's words (``gateway/findings.py``), the most serious first, each
    once; "" when there is no code. Never the codes themselves."""
    ordered = findings.by_severity(code.strip() for code in codes.split(","))
    words = dict.fromkeys(findings.words(code, language) for code in ordered)
    return ("、" if language == "ja" else ", ").join(words)


class Notice:
    """Renders notices in one language, with optional per-policy template overrides."""

    def __init__(
        self,
        language: str = "ja",
        overrides: Mapping[str, str] | None = None,
        request_address: str | None = None,
    ) -> None:
        self.language = language if language in TEMPLATES else "ja"
        # ``requests.address`` (gateway/requests.py): named with the reference id, or not at all.
        self.request_address = request_address
        self.templates = dict(TEMPLATES[self.language])
        for kind, text in (overrides or {}).items():
            if kind not in self.templates:
                log.warning("notice template %r is not a known kind; ignored", kind)
                continue
            try:
                text.format(count=0, name="", reason="", reference="", new_name="", address="")
            except (KeyError, IndexError, ValueError) as exc:
                log.warning("notice template %r is invalid (%s); built-in text used", kind, exc)
                continue
            self.templates[kind] = text

    def _line(self, kind: str, **fields: object) -> str:
        return self.templates[kind].format(**fields)

    def lines(self, report: Report) -> list[str]:
        """The change list for ``report`` (empty when nothing was changed)."""
        out: list[str] = []
        for action in report.actions:
            if action.kind == "archive-unlocked":
                out.append(
                    self._line("archive-unlocked", name=replace_control_chars(action.detail))
                )
        count = report.count_actions("password-masked")
        if count:
            out.append(self._line("password-masked", count=count))
        # The signature names first: the reason the message was held (gateway.antivirus).
        for signature in dict.fromkeys(
            f.detail for f in report.findings if f.code == "VIRUS_FOUND"
        ):
            out.append(self._line("virus-found", name=quoted(signature)))
        for kind in ("html-to-text", "html-sanitized"):
            if report.count_actions(kind):
                out.append(self._line(kind))
        for kind in ("urls-defanged", "urls-removed"):
            count = report.count_actions(kind)
            if count:
                out.append(self._line(kind, count=count))
        for kind in (
            "mime-canonicalized",
            "tnef-unpacked",
            "uuencode-extracted",
            "binhex-extracted",
            "yenc-extracted",
        ):
            if report.count_actions(kind):
                out.append(self._line(kind))
        for record in report.attachments:
            line = self._attachment_line(record)
            if line:
                out.append(line)
        if report.count_actions("signature-removed"):
            out.append(self._line("signature-removed"))
        return out

    def _attachment_line(self, record: AttachmentRecord) -> str:
        name = quoted(
            record.untrusted_filename or "(無題)"
            if self.language == "ja"
            else record.untrusted_filename or "(unnamed)"
        )
        reason = reason_text(record.reason, self.language) or self._line("nothing-found")
        if record.action in ("rebuilt", "both"):
            line = self._line("attachment-rebuilt", name=name, reason=reason)
        elif record.action == "checked":
            line = self._line("attachment-checked", name=name, reason=reason)
        elif record.action == "rasterized":
            line = self._line("attachment-rasterized", name=name, reason=reason)
        elif record.action == "stripped":
            line = self._line("attachment-stripped", name=name, reason=reason)
        elif record.action == "held":
            line = self._line("attachment-held", name=name, reason=reason)
        else:
            return ""
        if record.output_filename and record.output_filename != record.untrusted_filename:
            renamed = self._line(
                "attachment-renamed",
                name=name,
                new_name=quoted(record.output_filename),
            )
            line = f"{line}\n{renamed}"
        return line

    def render(self, report: Report, *, original_kept: bool) -> str:
        """The whole notice block, or "" when the message was not changed.

        The reference id is quoted only when ``original_kept``: the caller promises that the
        original is stored under it before this text reaches anyone (``gateway.pipeline``
        decides it with the retention, ``gateway.relay`` keeps the promise or tempfails)."""
        changes = self.lines(report)
        if not changes:
            return ""
        parts = [self._line("title"), self._line("intro"), *changes]
        if report.reference_id and original_kept:
            parts.append(self._line("reference", reference=report.reference_id))
            if self.request_address:
                parts.append(
                    self._line(
                        "request", reference=report.reference_id, address=self.request_address
                    )
                )
        parts.append(self._line("rule"))
        return "\n".join(parts) + "\n"


def summary_headers(report: Report, *, original_kept: bool) -> list[tuple[str, str]]:
    """``X-Mugaika-*`` fields: a short, machine-readable account of what happened.

    Values are ASCII (codes and counts); each field stays well under 998 octets. Every field
    is always present, so a reader never has to guess what a missing one means: no findings
    is ``none``. ``X-Mugaika-Reference`` names the stored item only when ``original_kept``.
    """
    actions = {
        "html": report.count_actions("html-to-text") + report.count_actions("html-sanitized"),
        "urls": report.count_actions("urls-defanged") + report.count_actions("urls-removed"),
        "rebuilt": sum(1 for a in report.attachments if a.action in ("rebuilt", "both")),
        "rasterized": sum(1 for a in report.attachments if a.action == "rasterized"),
        "stripped": sum(1 for a in report.attachments if a.action == "stripped"),
    }
    headers = [
        ("X-Mugaika-Verdict", report.verdict.label),
        ("X-Mugaika-Policy", report.policy or "default"),
        ("X-Mugaika-Actions", "; ".join(f"{k}={v}" for k, v in actions.items())),
    ]
    if report.reference_id and original_kept:
        headers.append(("X-Mugaika-Reference", report.reference_id))
    value = ", ".join(sorted(report.finding_codes())) or "none"
    if len(value) > 900:
        value = value[:900].rsplit(",", 1)[0] + ", ..."
    headers.append(("X-Mugaika-Findings", value))
    if report.verdict == Verdict.TAG:
        headers.append(("X-Mugaika-Tagged", "yes"))
    return headers


# --- times for people (issue 16) ---------------------------------------------------------------
# Times are stored in UTC; people read them in the configured zone (``time_zone``, default
# Asia/Tokyo), with the zone named, in the admin UI, the CLI, notices and digests alike.


def local_time(when: datetime.datetime, zone: datetime.tzinfo, seconds: bool = False) -> str:
    """``2026-11-25 14:03 JST`` (``seconds``: ``14:03:07``). A naive ``when`` is UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    local = when.astimezone(zone)
    name = local.tzname() or local.strftime("%z")
    shown = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{shown} {name}"
