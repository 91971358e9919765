"""Spreadsheet formula injection in CSV/TSV text: find the cells a spreadsheet would run.

Excel (and LibreOffice, Google Sheets) evaluate a CSV cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula: ``=cmd|'/k calc.exe'!A0`` (DDE), ``=HYPERLINK("https://…")``,
``=WEBSERVICE(…)``. OWASP's "CSV Injection" guidance adds tab and carriage return at the
start of a cell, and the fix it gives: put ``'`` in front, so the cell is shown as text.

``neutralize(text, delimiter)`` does exactly that and nothing else: every other byte of the
file (quoting, delimiters, line endings, characters) stays as it was, so the caller can encode
it back in the file's own charset (a CP932 CSV stays CP932). Decisions, each on purpose:

- A cell is read as Python's ``csv`` module and Excel read it: quoted when its first character
  is ``"`` (``""`` inside is one quote, text after the closing quote is appended), records end
  at CR, LF or CRLF outside quotes. The ``'`` goes at the start of an unquoted cell and just
  after the opening quote of a quoted one, so the cell's *value* starts with ``'`` in both.
- The value is judged after leading white space (space, tab, CR, LF, U+3000, NBSP, zero-width
  characters): `` =1+1`` counts, since spreadsheets and import dialogs differ on trimming.
- Full-width and small forms (``＝＋－＠``, ``﹦﹢﹣﹫``) count: Japanese Excel takes a cell
  typed ``＝SUM(…)`` as a formula. Compared after NFKC folding.
- A plain number is not a formula and is left alone: ``-5``, ``+3.5``, ``-1,234``, ``－５``,
  ``-2.5e3``, ``-12%``. Anything else with a trigger is neutralized, phone numbers such as
  ``+81-3-1234-5678`` included: Excel would compute them (to -1234…), with ``'`` they stay
  readable as written.
- Cells are split as Excel in a Japanese locale opens the file: ``,`` for .csv, tab for
  .tsv (the caller says which), or the character of a ``sep=X`` first line, Excel's own
  directive, which wins. Not every conceivable reading: splitting a comma file on tabs too
  would take the line ``-5,東京`` for one formula cell and corrupt the number in the
  reading that matters.

Bounded: one pass over the text, no backtracking.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_TRIGGERS = frozenset("=+-@")
_RAW_TRIGGERS = frozenset("\t\r")  # OWASP: a cell that starts with one of these
_LEADING_SPACE = " \t\r\n\u3000\u00a0\u200b\u200c\u200d\u2060\ufeff"
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?%?")
_SEP_DIRECTIVE = re.compile(r"\A(?:\ufeff)?sep=(.)(?:\r\n|\r|\n)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Neutralized:
    """The rewritten text and one short description per changed cell (row, column, start)."""

    text: str
    cells: tuple[str, ...]


def is_formula(value: str) -> bool:
    """True when a spreadsheet would take a cell with this value for a formula."""
    if value[:1] in _RAW_TRIGGERS:
        return True
    stripped = value.lstrip(_LEADING_SPACE)
    if not stripped:
        return False
    first = stripped[0]
    if first.isascii():
        if first not in _TRIGGERS:
            return False  # the common case, without Unicode normalisation
    elif unicodedata.normalize("NFKC", first) not in _TRIGGERS:
        return False
    folded = unicodedata.normalize("NFKC", stripped).strip()
    is_number = any(c.isdigit() for c in folded) and _NUMBER.fullmatch(folded) is not None
    return not is_number


def _cells(text: str, delimiter: str) -> list[tuple[int, bool, str, int, int]]:
    """(insert offset, quoted, value, row, column) of every cell, read as ``csv`` reads."""
    out: list[tuple[int, bool, str, int, int]] = []
    cell_end = re.compile(f"[{re.escape(delimiter)}\r\n]")
    index, length, row, column = 0, len(text), 1, 1
    while index <= length:
        start = index
        quoted = index < length and text[index] == '"'
        value: list[str] = []
        if quoted:
            index += 1
            while True:
                close = text.find('"', index)
                if close < 0:  # unterminated: the rest of the file is this cell
                    value.append(text[index:])
                    index = length
                    break
                value.append(text[index:close])
                if text[close + 1 : close + 2] == '"':
                    value.append('"')
                    index = close + 2
                    continue
                index = close + 1
                break
        found = cell_end.search(text, index)
        stop = found.start() if found else length
        value.append(text[index:stop])
        index = stop
        out.append((start + 1 if quoted else start, quoted, "".join(value), row, column))
        if index >= length:
            break
        if text[index] == delimiter:
            index += 1
            column += 1
            continue
        index += 2 if text[index : index + 2] == "\r\n" else 1
        row, column = row + 1, 1
        if index == length:
            break  # the final line end starts no cell
    return out


def neutralize(text: str, delimiter: str) -> Neutralized:
    """``text`` with ``'`` in front of every formula cell (see the module docstring)."""
    directive = _SEP_DIRECTIVE.match(text)
    if directive:
        delimiter = directive.group(1)
    inserts: dict[int, str] = {}
    for offset, _quoted, value, row, column in _cells(text, delimiter):
        if directive and offset < directive.end():
            continue  # the sep= line itself is no data
        if is_formula(value):
            shown = "".join(c if c.isprintable() else "?" for c in value.strip()[:40])
            inserts[offset] = f"r{row}c{column} {shown}"
    if not inserts:
        return Neutralized(text, ())
    pieces: list[str] = []
    previous = 0
    for offset in sorted(inserts):
        pieces.append(text[previous:offset])
        pieces.append("'")
        previous = offset
    pieces.append(text[previous:])
    return Neutralized("".join(pieces), tuple(inserts[o] for o in sorted(inserts)))
