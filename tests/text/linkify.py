"""An independent oracle: would a mail client still turn something in this text into a link?

Written apart from ``gateway.sanitizers.urls`` on purpose. It decodes the text the way a
client or a browser could (HTML character references, percent-encoding, NFKC folding of
full-width forms, ideographic full stops as dots) and then looks for what linkifiers key on:
a web scheme followed by ``//``, ``www.``, a dotted name whose last label is a public suffix,
a UNC path, and a script scheme.
"""

from __future__ import annotations

import html
import re
import unicodedata
import urllib.parse

from publicsuffixlist import PublicSuffixList

_psl = PublicSuffixList(accept_unknown=False)

_SCHEME = re.compile(r"(?:https?|ftp)://", re.I)
_WWW = re.compile(r"(?<![a-z0-9])www\d{0,3}\.(?=\w)", re.I)
_DOMAIN = re.compile(r"(?<![\w.-])((?:[a-z0-9-]+\.)+[a-z0-9-]+)", re.I)
_UNC = re.compile(r"(?<![\\\w])\\\\\w")
_SCRIPT = re.compile(r"(?<![a-z0-9])(?:javascript|vbscript|data|ms-msdt|search-ms):(?=\S)", re.I)


def client_view(text: str) -> str:
    decoded = urllib.parse.unquote(html.unescape(text))
    folded = unicodedata.normalize("NFKC", decoded)
    return folded.replace("\u3002", ".").replace("\uff61", ".")


def live_links(text: str, *, mail_addresses_kept: bool = False) -> list[str]:
    """Everything in ``text`` a client could still linkify, as found."""
    view = client_view(text)
    found = [m.group() for m in _SCHEME.finditer(view)]
    found += [m.group() for m in _WWW.finditer(view)]
    found += [m.group() for m in _UNC.finditer(view)]
    found += [m.group() for m in _SCRIPT.finditer(view)]
    for match in _DOMAIN.finditer(view):
        name = match.group(1).lower()
        if name.split(".")[0].isdigit() and all(p.isdigit() for p in name.split(".")):
            continue  # a bare dotted number ("1.2.3") is no link
        suffix = _psl.publicsuffix(name)
        if suffix is None or suffix == name:
            continue
        at_before = view[match.start() - 1 : match.start()] == "@"
        at_after = view[match.end() : match.end() + 1] == "@"
        if mail_addresses_kept and (at_before or at_after):
            continue
        found.append(name)
    return found
