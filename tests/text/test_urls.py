"""URL defanging: the long table of concrete forms, the policy knobs, and properties.

The oracle (``tests/text/linkify.py``) is written separately from the code under test and
decodes the output as a client could before looking for anything still clickable.
"""

from __future__ import annotations

import pickle
import quopri
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sanitizers.urls import REMOVED_PLACEHOLDER, DefangResult, UrlPolicy, defang_text
from tests.text.linkify import live_links

DEFANG = UrlPolicy()

# (input, expected output) with the default policy. Every row is also checked by the oracle.
TABLE = [
    # web schemes
    ("https://example.com/path", "hxxps://example[.]com/path"),
    ("http://example.com", "hxxp://example[.]com"),
    ("HTTPS://EXAMPLE.COM/", "HXXPS://EXAMPLE[.]COM/"),
    ("hTtP://a.example.org/x", "hXxP://a[.]example[.]org/x"),
    ("ftp://files.example.net/pub/a.tar.gz", "fxp://files[.]example[.]net/pub/a.tar.gz"),
    ("http:example.com", "hxxp:example[.]com"),
    ("https:\\\\example.com\\x", "hxxps:[\\][\\]example[.]com\\x"),
    ("https://user:pw@example.com:8443/a?b=c#d", "hxxps://user:pw@example[.]com:8443/a?b=c#d"),
    ("https://example.com@evil.jp/", "hxxps://example[.]com@evil[.]jp/"),
    # other schemes clients act on
    ("file:///C:/Users/Public/a.exe", "file[:]///C:/Users/Public/a.exe"),
    ("file://server/share/a.doc", "file[:]//server/share/a.doc"),
    ("smb://server.example.jp/share", "smb[:]//server[.]example[.]jp/share"),
    ("\\\\server\\share\\invoice.doc", "[\\][\\]server\\share\\invoice.doc"),
    ("\\\\192.168.1.5\\c$", "[\\][\\]192[.]168[.]1[.]5\\c$"),
    ("javascript:alert(document.cookie)", "javascript[:]alert(document.cookie)"),
    ("JaVaScRiPt:alert(1)", "JaVaScRiPt[:]alert(1)"),
    ("vbscript:msgbox(1)", "vbscript[:]msgbox(1)"),
    ("data:text/html;base64,PHNjcmlwdD4=", "data[:]text/html;base64,PHNjcmlwdD4="),
    ("ms-msdt:/id PCWDiagnostic /skip force", "ms-msdt[:]/id PCWDiagnostic /skip force"),
    ("search-ms:query=invoice&crumb=location:\\\\evil.jp\\s", None),
    ("ms-word:ofe|u|https://evil.jp/a.docx", "ms-word[:]ofe|u|hxxps://evil[.]jp/a.docx"),
    ("ssh://host.example.com", "ssh[:]//host[.]example[.]com"),
    ("webcal://cal.example.com/x.ics", "webcal[:]//cal[.]example[.]com/x.ics"),
    ("mailto:user@example.com", "mailto[:]user@example[.]com"),
    ("user@example.com", "user@example[.]com"),
    ("taro.tokyo@example.jp", "taro[.]tokyo@example[.]jp"),
    # www. and bare domains
    ("www.example.com", "www[.]example[.]com"),
    ("WWW.EXAMPLE.CO.JP/top", "WWW[.]EXAMPLE[.]CO[.]JP/top"),
    ("www2.example.com", "www2[.]example[.]com"),
    ("www.intranet", "www[.]intranet"),
    ("\x00www.\x00a", "\x00www[.]\x00a"),
    ("awww.x www.", "awww.x www[.]"),
    ("example.com", "example[.]com"),
    ("city.example.lg.jp", "city[.]example[.]lg[.]jp"),
    ("see example.co.jp.", "see example[.]co[.]jp."),
    ("a.github.io/page", "a[.]github[.]io/page"),
    ("setup.zip", "setup[.]zip"),
    # IDN and punycode
    ("例え.jp", "例え[.]jp"),
    ("https://例え.jp/パス", "hxxps://例え[.]jp/パス"),
    ("xn--r8jz45g.jp", "xn--r8jz45g[.]jp"),
    ("https://xn--80ak6aa92e.com/", "hxxps://xn--80ak6aa92e[.]com/"),
    ("bücher.de", "bücher[.]de"),
    ("example.みんな", "example[.]みんな"),
    # IP hosts
    ("http://192.168.0.1/admin", "hxxp://192[.]168[.]0[.]1/admin"),
    ("http://3232235777/", "hxxp://3232235777/"),
    ("http://0xC0A80001/", "hxxp://0xC0A80001/"),
    ("http://0300.0250.0.1/", "hxxp://0300[.]0250[.]0[.]1/"),
    ("10.0.0.1:8080/login", "10[.]0[.]0[.]1:8080/login"),
    ("http://[::1]/", "hxxp://[::1]/"),
    # encoded forms
    ("h&#116;tp://evil&#46;com", "hxxp://evil[&#46;]com"),
    ("&#x68;ttps://evil.com", "&#x68;xxps://evil[.]com"),
    ("http&colon;//evil.com", "hxxp&colon;//evil[.]com"),
    ("http%3A%2F%2Fevil.com", "hxxp%3A%2F%2Fevil[.]com"),
    ("https://a.example.com/?u=http%3A%2F%2Fevil.com", None),
    ("https://%65vil%2Ecom/", "hxxps://%65vil[%2E]com/"),
    # full-width and ideographic dots
    ("ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ", "ｈｘｘｐｓ：／／ｅｘａｍｐｌｅ[．]ｃｏｍ"),
    ("ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ", "ｗｗｗ[．]ｅｘａｍｐｌｅ[．]ｃｏｍ"),
    ("example。com", "example[。]com"),
    ("www｡example｡com", "www[｡]example[｡]com"),
    ("ｅｘａｍｐｌｅ．ｃｏ．ｊｐ", "ｅｘａｍｐｌｅ[．]ｃｏ[．]ｊｐ"),
    # Japanese text around URLs, no spaces
    ("詳細はhttps://example.com/をご覧", "詳細はhxxps://example[.]com/をご覧"),
    ("詳細はhttps://example.comをご覧", "詳細はhxxps://example[.]comをご覧"),
    ("詳細はwww.example.co.jpまで", "詳細はwww[.]example[.]co[.]jpまで"),
    ("詳細はexample.comをご覧", "詳細はexample[.]comをご覧"),
    ("ホームページ（https://example.com）", "ホームページ（hxxps://example[.]com）"),
    ("「https://example.com/a」", "「hxxps://example[.]com/a」"),
    ("example.com。次に", "example[.]com。次に"),
    ("連絡先：taro@example.co.jp。", "連絡先：taro@example[.]co[.]jp。"),
    # brackets and punctuation
    ("<https://example.com/a>", "<hxxps://example[.]com/a>"),
    ("(see https://example.com/a).", "(see hxxps://example[.]com/a)."),
    ("https://en.wikipedia.org/wiki/Foo_(bar)", "hxxps://en[.]wikipedia[.]org/wiki/Foo_(bar)"),
    ('"https://example.com"', '"hxxps://example[.]com"'),
    ("[https://example.com]", "[hxxps://example[.]com]"),
    # line-wrapped: every piece is defanged on its own
    ("https://example.com/very/long/pa\nth/and.example.org/x", None),
    ("<https://example.com/a/b\n c/d>", "<hxxps://example[.]com/a/b\n c/d>"),
    # nested and repeated
    ("https://a.example.com/?r=https://evil.jp", "hxxps://a[.]example[.]com/?r=hxxps://evil[.]jp"),
    ("x.www.example", "x[.]www[.]example"),
    ("連絡は。https://evil.jp", "連絡は。hxxps://evil[.]jp"),
    ("0http://example.com", "0hxxp://example[.]com"),
    ("xhttps://example.com", "xhttps[:]//example[.]com"),
    ("svn+ssh://host.example.com/r", "svn+ssh[:]//host[.]example[.]com/r"),
]

# Forms already defanged by a person or another tool: left readable and unchanged.
ALREADY_DEFANGED = [
    "hxxps://example[.]com/path",
    "hxxp://evil[.]jp",
    "hXXps://evil[.]jp",
    "fxp://files[.]example[.]net",
    "javascript[:]alert(1)",
    "user@example[.]com",
    "[\\][\\]server\\share",
]

# Text that looks a little like a URL but is not one: must come out unchanged.
NOT_URLS = [
    "file.txt",
    "ver.1.2",
    "version 1.2.3.4",
    "e.g. i.e. a.m. p.m.",
    "Node.js and index.html and setup.exe",
    "invoice.pdf report.docx data.csv",
    "Mr.Smith No.1 Fig.3",
    "3.14159",
    "192.168.1.1",
    "Subject: hello",
    "Note: data is ready",
    "よろしくお願いします。みんなで頑張りましょう。",
    "資料を送付します．よろしく．",
    "会議は10:00からです。",
    "C:\\Users\\taro\\Documents",
    "awww. that's nice",
    "",
]


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[row[0][:40] for row in TABLE])
def test_table(text: str, expected: str | None) -> None:
    result = defang_text(text, DEFANG)
    if expected is not None:
        assert result.text == expected
    assert result.text != text
    assert result.count >= 1
    assert live_links(result.text) == []


# Every path form Windows resolves to a remote host (SMB or WebDAV, and with it the user's NTLM
# hash), one row per form: the leading separators are broken and so is every dot of the host.
REMOTE_PATH_FORMS = [
    # Win32 long (file namespace) and device namespace forms of UNC
    ("\\\\?\\UNC\\10.0.0.5\\share\\a.exe", "[\\][\\]?\\UNC\\10[.]0[.]0[.]5\\share\\a.exe"),
    ("\\\\.\\UNC\\fs.example.jp\\share", "[\\][\\].\\UNC\\fs[.]example[.]jp\\share"),
    ("\\\\?\\unc\\fileserver\\share", "[\\][\\]?\\unc\\fileserver\\share"),
    ("//?/UNC/10.0.0.5/share", "[/][/]?/UNC/10[.]0[.]0[.]5/share"),
    # NT object-manager paths (what \\?\UNC\ is a link to)
    ("\\??\\UNC\\10.0.0.5\\share", "[\\]??\\UNC\\10[.]0[.]0[.]5\\share"),
    ("\\GLOBAL??\\UNC\\10.0.0.5\\share", "[\\]GLOBAL??\\UNC\\10[.]0[.]0[.]5\\share"),
    ("\\Device\\Mup\\10.0.0.5\\share", "[\\]Device\\Mup\\10[.]0[.]0[.]5\\share"),
    (
        "\\\\?\\GLOBALROOT\\Device\\Mup\\10.0.0.5\\share",
        "[\\][\\]?\\GLOBALROOT\\Device\\Mup\\10[.]0[.]0[.]5\\share",
    ),
    # redirector forms (with and without a logon-session drive component)
    (
        "\\\\;LanmanRedirector\\10.0.0.5\\share\\a.exe",
        "[\\][\\];LanmanRedirector\\10[.]0[.]0[.]5\\share\\a.exe",
    ),
    (
        "\\\\;LanmanRedirector\\;Z:00000000000003e7\\fs.example.jp\\share",
        "[\\][\\];LanmanRedirector\\;Z:00000000000003e7\\fs[.]example[.]jp\\share",
    ),
    (
        "\\\\;WebDavRedirector\\evil.example.jp\\x",
        "[\\][\\];WebDavRedirector\\evil[.]example[.]jp\\x",
    ),
    # WebDAV through the UNC syntax: host@SSL, host@port, host@SSL@port
    (
        "\\\\evil.example.jp@SSL\\DavWWWRoot\\a.exe",
        "[\\][\\]evil[.]example[.]jp@SSL\\DavWWWRoot\\a.exe",
    ),
    (
        "\\\\evil.example.jp@SSL@8443\\DavWWWRoot\\a.exe",
        "[\\][\\]evil[.]example[.]jp@SSL@8443\\DavWWWRoot\\a.exe",
    ),
    ("\\\\10.0.0.5@8080\\share", "[\\][\\]10[.]0[.]0[.]5@8080\\share"),
    # forward and mixed slashes: Windows reads / as \ in all of these
    ("//10.0.0.5/share/a.exe", "[/][/]10[.]0[.]0[.]5/share/a.exe"),
    ("//fileserver/share", "[/][/]fileserver/share"),
    ("\\/fileserver\\share", "[\\][/]fileserver\\share"),
    ("/\\fileserver\\share", "[/][\\]fileserver\\share"),
    # file: URLs with a host, in every slash count
    ("file://///10.0.0.5/share/a.exe", "file[:]/////10[.]0[.]0[.]5/share/a.exe"),
    ("file:////fs.example.jp/share", "file[:]////fs[.]example[.]jp/share"),
    ("file:\\\\10.0.0.5\\share", "file[:][\\][\\]10[.]0[.]0[.]5\\share"),
    ("FILE:///\\\\10.0.0.5\\share", "FILE[:]///[\\][\\]10[.]0[.]0[.]5\\share"),
    (
        "file://evil.example.jp@SSL/DavWWWRoot/a.exe",
        "file[:]//evil[.]example[.]jp@SSL/DavWWWRoot/a.exe",
    ),
    # full-width backslashes fold to "\" (NFKC) and stay full-width
    ("＼＼10.0.0.5＼share", "[＼][＼]10[.]0[.]0[.]5＼share"),
    # in Japanese prose, with and without a space before the path
    ("資料は\\\\10.0.0.5\\share", "資料は[\\][\\]10[.]0[.]0[.]5\\share"),
    ("共有：\\\\?\\UNC\\10.0.0.5\\s を開く", "共有：[\\][\\]?\\UNC\\10[.]0[.]0[.]5\\s を開く"),
]

# Paths that never leave the machine, and slashes that are no path: unchanged.
NOT_REMOTE_PATHS = [
    "\\\\?\\C:\\Users\\taro\\a.txt",
    "C:\\Users\\taro\\Documents",
    "5//10 と 2024//11",
    "a//b and x/\\y",
    "// コメント",
]


@pytest.mark.parametrize(
    ("text", "expected"), REMOTE_PATH_FORMS, ids=[row[0][:40] for row in REMOTE_PATH_FORMS]
)
def test_remote_path_forms(text: str, expected: str) -> None:
    result = defang_text(text, DEFANG)
    assert result.text == expected
    assert result.count == 1
    assert "10.0.0.5" not in result.text
    assert live_links(result.text) == []
    assert defang_text(result.text, DEFANG).count == 0  # idempotent


@pytest.mark.parametrize("text", NOT_REMOTE_PATHS)
def test_local_paths_and_slashes_are_left_alone(text: str) -> None:
    assert defang_text(text, DEFANG) == DefangResult(text, 0, ())


def test_double_slashes_inside_a_url_are_not_a_second_path() -> None:
    result = defang_text("https://example.com/a//b/c and file:///C:/x//y", DEFANG)
    assert result.text == "hxxps://example[.]com/a//b/c and file[:]///C:/x//y"


@pytest.mark.parametrize("text", ALREADY_DEFANGED)
def test_already_defanged_forms_are_left_alone(text: str) -> None:
    assert defang_text(text, DEFANG) == DefangResult(text, 0, ())


@pytest.mark.parametrize("text", NOT_URLS)
def test_not_urls_are_left_alone(text: str) -> None:
    result = defang_text(text, DEFANG)
    assert result == DefangResult(text, 0, ())


def test_reports_urls_in_order_with_flags() -> None:
    text = "a https://example.com/x b javascript:void(0) c \\\\srv\\s d http://1.2.3.4/ e"
    result = defang_text(text, DEFANG)
    assert result.count == 4
    assert result.urls == (
        "https://example.com/x",
        "javascript:void(0)",
        "\\\\srv\\s",
        "http://1.2.3.4/",
    )
    assert {"URL_JAVASCRIPT", "URL_UNC_PATH", "URL_IP_HOST"} <= set(result.flags)
    assert "URL_OBFUSCATED" not in result.flags


def test_obfuscated_forms_are_flagged() -> None:
    assert "URL_OBFUSCATED" in defang_text("ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ", DEFANG).flags
    assert "URL_OBFUSCATED" in defang_text("h&#116;tp://evil.com", DEFANG).flags
    assert "URL_USERINFO" in defang_text("https://bank.example@evil.jp/", DEFANG).flags
    assert "URL_PUNYCODE" in defang_text("https://xn--80ak6aa92e.com/", DEFANG).flags
    assert "URL_IDN" in defang_text("https://例え.jp/", DEFANG).flags


def test_a_url_is_counted_once() -> None:
    result = defang_text("https://www.example.com/a?b=c", DEFANG)
    assert result.count == 1
    assert result.urls == ("https://www.example.com/a?b=c",)


# --- policy knobs -------------------------------------------------------------------------

ALLOW = UrlPolicy(allow_domains=frozenset({"example.com", "例え.jp"}))


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com/a",
        "https://www.example.com/a",
        "https://deep.sub.example.com/",
        "www.example.com",
        "example.com",
        "EXAMPLE.COM",
        "ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ／",
        "https://xn--r8jz45g.jp/",
        "https://例え.jp/",
        "https://example.com./",
        "https://example.com:8443/",
    ],
)
def test_allow_listed_domains_are_kept(text: str) -> None:
    assert defang_text(text, ALLOW) == DefangResult(text, 0, ())


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com.evil.jp/",
        "https://evilexample.com/",
        "https://example.co/",
        "https://example.com@evil.jp/",
        "https://example.com\\@evil.jp/",
        "example.com.evil.jp",
        "javascript://example.com/%0aalert(1)",
        "file://example.com/share",
        "\\\\example.com\\share",
    ],
)
def test_lookalikes_of_allowed_domains_are_defanged(text: str) -> None:
    result = defang_text(text, ALLOW)
    assert result.count >= 1
    assert [link for link in live_links(result.text) if link != "example.com"] == []


def test_an_allowed_url_does_not_carry_a_live_redirect() -> None:
    result = defang_text("https://example.com/?next=https://evil.jp/", ALLOW)
    assert result.text == "https://example.com/?next=hxxps://evil[.]jp/"


def test_allow_domains_are_normalised_and_policy_pickles() -> None:
    policy = UrlPolicy(allow_domains=frozenset({"ＥＸＡＭＰＬＥ．ＣＯＭ.", "例え.JP"}))
    assert policy.allow_domains == frozenset({"example.com", "xn--r8jz45g.jp"})
    assert pickle.loads(pickle.dumps(policy)) == policy  # noqa: S301 (our own bytes)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="'strip' is not one of defang, remove, keep"):
        UrlPolicy(mode="strip")  # type: ignore[arg-type]


def test_remove_mode_replaces_whole_urls() -> None:
    policy = UrlPolicy(mode="remove")
    result = defang_text("見て https://example.com/a?b=1 と www.example.jp/x です", policy)
    assert result.text == f"見て {REMOVED_PLACEHOLDER} と {REMOVED_PLACEHOLDER} です"
    assert result.count == 2
    assert live_links(result.text) == []


def test_keep_mode_changes_nothing() -> None:
    text = "https://example.com/ www.example.jp"
    assert defang_text(text, UrlPolicy(mode="keep")) == DefangResult(text, 0, ())


def test_mail_addresses_kept_when_mailto_is_off() -> None:
    policy = UrlPolicy(mailto=False)
    text = "連絡は taro.tokyo@example.jp か mailto:hanako@example.com へ。https://evil.jp"
    result = defang_text(text, policy)
    assert result.text == (
        "連絡は taro.tokyo@example.jp か mailto:hanako@example.com へ。hxxps://evil[.]jp"
    )
    assert live_links(result.text, mail_addresses_kept=True) == []


# --- properties -----------------------------------------------------------------------------

_labels = st.sampled_from(
    ["example", "city", "a", "mail-1", "xn--r8jz45g", "WWW", "www", "evil", "例え", "test123"]
)
_tlds = st.sampled_from(["com", "jp", "co.jp", "lg.jp", "net", "org", "info", "zip", "みんな"])
_schemes = st.sampled_from(["http", "https", "HTTPS", "ftp", "hTTp"])
_paths = st.sampled_from(["", "/", "/a/b.html", "/?q=1&r=2", "/パス", ":8080/x", "/a_(b)"])
_dots = st.sampled_from([".", ".", ".", "。", "．", "｡", "&#46;", "%2E"])
_prose = st.text(
    alphabet=st.sampled_from(list("あいうえおカタカナ漢字、。「」（） abcxyzABC0123-_,;:!?\n\t")),
    max_size=12,
).filter(
    # "0。BA" reads as the domain 0.ba (ideographic full stop as a dot): not prose.
    lambda text: not re.search(r"[0-9A-Za-z][。][A-Za-z]", text)
)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@st.composite
def _url(draw: st.DrawFn) -> str:
    host_labels = draw(st.lists(_labels, min_size=1, max_size=3))
    tld = draw(_tlds)
    dot = draw(_dots)
    if not all(label.isascii() for label in host_labels) or not tld.isascii():
        dot = "."  # Japanese-script labels are joined by ASCII dots only (see module doc)
    host = dot.join([*host_labels, *tld.split(".")])
    form = draw(st.sampled_from(["scheme", "www", "bare", "mail", "wrapped"]))
    if form == "scheme":
        url = f"{draw(_schemes)}://{host}{draw(_paths)}"
    elif form == "www":
        url = f"www{dot}{host}{draw(_paths)}"
    elif form == "mail":
        url = f"taro.yamada@{host}"
    elif form == "wrapped":
        url = f"{draw(_schemes)}://{host}/long/pa\nth{dot}{draw(_labels)}{dot}com/x"
    else:
        url = f"{host}{draw(_paths)}"
    if draw(st.booleans()) and url.isascii():
        url = _fullwidth(url)
    opener, closer = draw(st.sampled_from([("", ""), ("<", ">"), ("(", ")"), ("「", "」")]))
    return opener + url + closer


_documents = st.lists(st.one_of(_prose, _url()), min_size=1, max_size=8).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_property_nothing_clickable_survives(text: str) -> None:
    result = defang_text(text, DEFANG)
    assert live_links(result.text) == [], result.text


@settings(max_examples=300, deadline=None)
@given(_documents)
def test_property_idempotent(text: str) -> None:
    once = defang_text(text, DEFANG)
    twice = defang_text(once.text, DEFANG)
    assert twice.text == once.text
    assert twice.count == 0


@settings(max_examples=300, deadline=None)
@given(_prose)
def test_property_prose_without_urls_is_untouched(text: str) -> None:
    assert defang_text(text, DEFANG).text == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_property_any_text_is_handled(text: str) -> None:
    result = defang_text(text, DEFANG)
    assert isinstance(result.text, str)
    assert result.count >= 0
    assert live_links(result.text) == []


@settings(max_examples=200, deadline=None)
@given(_documents)
def test_property_only_urls_change(text: str) -> None:
    """Everything outside the reported URLs is kept, character for character."""
    result = defang_text(text, DEFANG)
    rebuilt = result.text.replace("[", "").replace("]", "")
    # Undo the only other edit (t -> x in schemes) by comparing lengths and skeletons.
    assert len(rebuilt) == len(text)
    for before, after in zip(text, rebuilt, strict=True):
        assert before == after or (before.lower(), after.lower()) in {("t", "x"), ("ｔ", "ｘ")}


@pytest.mark.parametrize(
    "flood",
    [
        "http:" * 200_000,
        "a.com/" * 100_000,
        "@a.com" * 100_000,
        "\\\\a" * 100_000,
        "//host/share " * 100_000,
        "\\\\?\\UNC\\h\\s " * 100_000,
    ],
    ids=["schemes", "domains", "mail", "unc", "slash-unc", "long-unc"],
)
def test_floods_are_bounded_and_still_defanged(flood: str) -> None:
    started = time.monotonic()
    result = defang_text(flood, DEFANG)
    # Not a speed test: a generous bound that only a quadratic algorithm would break.
    assert time.monotonic() - started < 30
    assert live_links(result.text[:5000]) == []


def test_url_split_by_quoted_printable_soft_breaks_is_whole_after_decoding() -> None:
    """The MIME layer undoes QP first (RFC 2045 6.7 rule 5): the URL is whole again here."""

    encoded = (
        b"=E8=A9=B3=E7=B4=B0=E3=81=AFhttps://www.exa=\r\n"
        b"mple.co.jp/very/long/pa=\r\nth =E3=81=A7=E3=81=99"
    )
    text = quopri.decodestring(encoded).decode()
    assert text == "詳細はhttps://www.example.co.jp/very/long/path です"
    result = defang_text(text, DEFANG)
    assert result.text == "詳細はhxxps://www[.]example[.]co[.]jp/very/long/path です"
    assert result.urls == ("https://www.example.co.jp/very/long/path",)


@pytest.mark.parametrize("path", ["//host/share ", "\\\\?\\UNC\\host\\s "])
def test_remote_paths_in_a_flood_are_broken_too(path: str) -> None:
    """Past MAX_URLS_ANALYSED the coarse pass runs: it must break these forms as well."""
    result = defang_text(path * 100_000, DEFANG)
    assert "URL_FLOOD" in result.flags
    head = result.text[:5000]
    assert "//host" not in head, head[:80]
    assert "\\\\" not in head, head[:80]
