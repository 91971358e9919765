"""The admin UI shows what each code means (``gateway/findings.py``) beside the code itself."""

from __future__ import annotations

import html

import pytest

from gateway.report import AttachmentRecord
from quarantine.users import UserStore
from tests.quarantine.conftest import RunningAdmin, hold_request
from tests.quarantine.test_web import PASSWORD, login


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("ja", ["マクロを除去", "開くと中のプログラムが動くディスクイメージ等", "高"]),
        ("en", ["macros removed", "a disk image or similar that can run programs", "high"]),
    ],
)
def test_detail_page_shows_words_for_findings_and_attachment_reasons(
    admin: RunningAdmin, language: str, words: list[str]
) -> None:
    request = hold_request(reasons=("OOXML_VBA_MACRO",))
    request.report.attachments.append(
        AttachmentRecord("3", "disk.iso", "application/octet-stream", "x", "0" * 64, 10)
    )
    request.report.attachments[0].action = "stripped"
    request.report.attachments[0].reason = "DANGEROUS_CONTAINER"
    admin.store.hold(request)
    UserStore(admin.store.engine).add("boss", "superadmin", [], PASSWORD)
    session = login(admin, "boss")
    page = session.get(
        f"{admin.url}/items/{request.reference_id}",
        headers={"Accept-Language": language},
        cookies={"mugaika_lang": language},
        timeout=10,
    )
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "OOXML_VBA_MACRO" in text  # the code stays, for administrators and rules
    for expected in words:
        assert expected in text, expected
