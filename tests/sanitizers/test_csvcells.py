"""CSV formula cells: every cell a spreadsheet would evaluate gets a ' in front, nothing else
changes. Checked against Python's csv module (an independent reader), also on generated CSV."""

from __future__ import annotations

import csv
import io
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.csvcells import is_formula, neutralize
from gateway.sanitizers.text import TextSanitizer


def oracle_formulas(text: str, delimiter: str = ",") -> list[str]:
    """Cells csv.reader yields that start with a trigger (after white space, NFKC) and that
    float() does not take for a number, or that start with tab or CR."""
    found = []
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        for cell in row:
            value = unicodedata.normalize("NFKC", cell.lstrip(" \t\r\n\u3000"))
            if cell[:1] in ("\t", "\r"):
                found.append(cell)
            elif value[:1] in ("=", "+", "-", "@"):
                try:
                    float(value.replace(",", "").rstrip("%"))
                except ValueError:
                    found.append(cell)
    return found


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+A1", "-A1", "@SUM(A1)", "\t1", "\r1", " =1", "\u3000=1", "＝SUM(A1)",
     "＋1-2", "－A1", "＠x", "+81-3-1234-5678", "-", "+", "--5", "=", "\ufeff=1"],
)  # fmt: skip
def test_formulas(value: str) -> None:
    assert is_formula(value)


@pytest.mark.parametrize(
    "value", ["", "abc", "-5", "+3.5", "-1,234", "－５", "-2.5e3", "-12%", "1+1", "'=1", "a=b"]
)
def test_not_formulas(value: str) -> None:
    assert not is_formula(value)


def test_sep_directive_changes_the_delimiter() -> None:
    result = neutralize("sep=;\r\n=1;a,=2\r\n", ",")
    assert result.text == "sep=;\r\n'=1;a,=2\r\n"
    assert result.cells == ("r2c1 =1",)


def test_quoted_cells_keep_their_quoting() -> None:
    text = '"=1","a ""=b""",""=2\r\n'
    out = neutralize(text, ",").text
    assert out == '"\'=1","a ""=b""","\'"=2\r\n'
    assert oracle_formulas(out) == []


_cell = st.one_of(
    st.text(alphabet="=+-@＝＋－＠ \t\r\n\u3000\"',;abc山田0123456789.%", max_size=12),
    st.sampled_from(["-5", "+3.5", "-1,234", "=cmd|'/c calc'!A0", "+81-3-1234-5678"]),
)


@given(
    rows=st.lists(st.lists(_cell, min_size=1, max_size=5), min_size=1, max_size=6),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    terminator=st.sampled_from(["\r\n", "\n"]),
)
def test_generated_csv_has_no_formula_left_and_only_apostrophes_added(
    rows: list[list[str]], quoting: int, terminator: str
) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, quoting=quoting, lineterminator=terminator).writerows(rows)
    text = buffer.getvalue()
    out = neutralize(text, ",")
    assert oracle_formulas(out.text) == []
    assert out.text.replace("'", "") == text.replace("'", "")
    assert len(out.text) - len(text) == len(out.cells)


def test_text_sanitizer_holds_by_policy_and_leaves_txt_alone() -> None:
    data = "a,=1+1\r\n".encode("cp932")
    held = TextSanitizer().sanitize(data, "x.csv", "2", SanitizeOptions(csv_formulas="quarantine"))
    assert held.outputs == ()
    assert [f.code for f in held.findings] == ["CSV_FORMULA_HELD"]
    kept = TextSanitizer().sanitize(data, "x.txt", "2", SanitizeOptions())
    assert kept.outputs[0].data == data
    assert kept.findings == ()


def test_csv_in_a_zip_is_neutralized_and_a_hold_holds_the_archive() -> None:
    import zipfile

    from gateway.sanitizers.archive import ArchiveSanitizer
    from tests.helpers import hostile

    data = hostile.simple_zip(
        {"list.csv": b"a,=1+1\r\n", "readme.txt": b"see https://evil.example/x\r\n"}
    )
    options = SanitizeOptions(member_actions=(("text", "keep"),))
    result = ArchiveSanitizer().sanitize(data, "x.zip", "2", options)
    with zipfile.ZipFile(io.BytesIO(result.outputs[0].data)) as archive:
        # "keep" used to copy text members as they were: no formula or URL treatment at all
        assert archive.read("list.csv") == b"a,'=1+1\r\n"
        assert archive.read("readme.txt") == b"see hxxps://evil[.]example/x\r\n"
    held = ArchiveSanitizer().sanitize(
        data,
        "x.zip",
        "2",
        SanitizeOptions(member_actions=(("text", "keep"),), csv_formulas="quarantine"),
    )
    assert "CSV_FORMULA_HELD" in {f.code for f in held.findings}  # gateway.inspect holds on it
