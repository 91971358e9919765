"""Untrusted text the notice quotes (file names, new names, malware names) is defanged the way
body URLs are: the notice is the first thing a recipient reads, and a name such as
``www.evil.jp.7z``, ``invoice.zip`` or ``\\\\10.0.0.5\\share.7z`` is a link there otherwise.
Judged by the independent linkifier of ``tests/text/linkify.py``."""

from __future__ import annotations

import pytest

from gateway.notice import Notice
from gateway.report import AttachmentRecord, Report
from tests.text.linkify import live_links

HOSTILE_NAMES = [
    "www.evil-example.jp.7z",
    "\\\\10.0.0.5\\share.7z",
    "\\\\?\\UNC\\10.0.0.5\\share\\a.7z",
    "ｈｔｔｐｓ：／／ｅｖｉｌ．ｊｐ／ａ.7z",
    "ｗｗｗ．ｅｖｉｌ．ｊｐ.7z",
    "invoice.zip",
    "https://evil.example.jp/a.exe",
    "javascript:alert(1).txt",
    "taro@evil.example.jp.eml",
]


def _report(name: str, action: str = "stripped", output: str = "") -> Report:
    report = Report("q1", reference_id="20261125-7K3QM9XD")
    report.attachments.append(
        AttachmentRecord(
            "2",
            name,
            "application/octet-stream",
            "application/x-7z-compressed",
            "0" * 64,
            38,
            action=action,
            reason="ARCHIVE_DISALLOWED",
            output_filename=output,
        )
    )
    return report


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_in_the_notice_are_not_links(name: str, language: str) -> None:
    notice = Notice(language).render(_report(name), original_kept=True)
    assert live_links(notice) == [], notice
    assert "20261125-7K3QM9XD" in notice  # the rest of the notice is whole


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_new_names_are_not_links(name: str) -> None:
    notice = Notice().render(_report("a.xlsm", "rebuilt", output=name), original_kept=False)
    assert live_links(notice) == [], notice


def test_malware_names_are_not_links() -> None:
    report = _report("a.7z")
    report.add_finding("VIRUS_FOUND", "2", "Phish.evil-example.jp.UNOFFICIAL")
    notice = Notice().render(report, original_kept=False)
    assert live_links(notice) == [], notice


def test_defanged_names_stay_readable() -> None:
    notice = Notice().render(_report("www.evil-example.jp.7z"), original_kept=False)
    assert "「www[.]evil-example[.]jp[.]7z」" in notice
    plain = Notice().render(_report("見積書 2026.pdf"), original_kept=False)
    assert "「見積書 2026.pdf」" in plain  # a name that is no link is quoted as sent
