"""Sender authentication: SPF, DKIM, DMARC and ARC, and the headers that record them.

Run ``authenticate`` on the bytes *as received*, before any stage modifies the message (a
rebuilt body breaks every DKIM signature). It returns ``AuthResults``: one result per method
with the evidence (``header.d``, ``smtp.mailfrom``...) and the RFC 8601
``Authentication-Results`` field body. After the content stages, ``add_authentication_results``
writes that header (removing any that claim our authserv-id, RFC 8601 section 5). The
signing functions (``arc_set``: an ARC set, RFC 8617, so that a downstream server can trust
our results although the body changed; ``dkim_signature``: our own DKIM signature over a
message we rebuilt) run only in ``gateway.signer``'s process, the one process that holds the
private keys (``signing_keys``); ``AuthSettings``, which workers get, holds none.

Libraries, and why:

- dkimpy verifies and signs DKIM (RFC 6376, RFC 8463 Ed25519 via PyNaCl) and ARC; ARC sealing
  needs ``authres`` to read back our own A-R header.
- pyspf evaluates SPF (RFC 7208; it passes the RFC's test suite and is what Debian and
  spf-engine use). It looks DNS up through a module-level function, which this module replaces
  once with one that asks the ``Resolver`` of the current call (a ``ContextVar``), so tests
  pass a stub and no lookup ever leaves through pyspf's own resolver.
- DMARC (RFC 7489) is evaluated here: alignment is a few lines, and the maintained DMARC
  packages either pin an old public suffix list (authheaders uses publicsuffix2, 2019) or only
  check records (checkdmarc). The organizational domain comes from ``publicsuffixlist``, which
  ships a current list and is updated often.

DNS goes through a ``Resolver`` (``DnsResolver``: dnspython with a timeout and a small TTL
cache; ``StaticResolver``: fixed answers for tests and offline use). A DNS failure is a
``temperror`` result for the method that needed it, never an exception out of this module.

What this module deliberately does not do: decide anything (policy rules read the results),
trust existing Authentication-Results headers from other hosts, or act on ARC results (an ARC
``pass`` says who handled the message, not that they are trustworthy).
"""

from __future__ import annotations

import contextvars
import email.policy
import email.utils
import ipaddress
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dkim
import dns.exception
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList

from gateway.config import Config
from gateway.errors import ConfigError, MugaikaError
from gateway.message import Envelope

log = logging.getLogger("mugaika.auth")
# dkimpy logs every bad signature at ERROR; a bad signature is an ordinary result here.
_dkimpy_log = logging.getLogger("mugaika.auth.dkimpy")
_dkimpy_log.setLevel(logging.CRITICAL)

METHODS = ("spf", "dkim", "dmarc", "arc")
# RFC 8601 section 2.7: the result words we emit, per method.
SPF_RESULTS = ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")
DKIM_RESULTS = ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror")
DMARC_RESULTS = ("none", "pass", "fail", "temperror", "permerror")
ARC_RESULTS = ("none", "pass", "fail")

# Bounds on work an untrusted message can cause (each signature costs DNS and RSA).
MAX_DKIM_SIGNATURES = 8
MAX_ARC_SETS = 10
NEGATIVE_TTL = 300  # seconds to cache NXDOMAIN/NODATA when the SOA says nothing shorter
MAX_TTL = 3600


class DnsTempError(Exception):
    """A lookup that may succeed later: timeout, SERVFAIL, no reachable nameserver."""


class SigningFailed(MugaikaError):
    """ARC sealing or DKIM signing failed (bad key, or a message dkimpy cannot parse)."""

    code = "SIGNING_FAILED"


# --------------------------------------------------------------------------------------------
# DNS


class Resolver(Protocol):
    """DNS lookups as text. TXT answers are one string per record, chunks joined (RFC 7208
    section 3.3); MX answers are ``"preference exchange"``; A/AAAA are addresses.

    Returns ``()`` when the name or the type does not exist; raises ``DnsTempError`` when the
    answer is not known now."""

    def lookup(self, name: str, rdtype: str) -> tuple[str, ...]: ...


def _normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


class StaticResolver:
    """Fixed answers, for tests and offline tools: never the network.

    ``records`` maps ``(name, rdtype)`` to answers; ``temperror`` names fail as a timeout
    would. ``queries`` records every lookup so that tests can assert what was asked."""

    def __init__(
        self,
        records: Mapping[tuple[str, str], Sequence[str]] | None = None,
        temperror: Iterable[str] = (),
    ) -> None:
        self.records: dict[tuple[str, str], tuple[str, ...]] = {}
        for (name, rdtype), answers in (records or {}).items():
            self.add(name, rdtype, *answers)
        self.temperror = {_normalise_name(n) for n in temperror}
        self.queries: list[tuple[str, str]] = []

    def add(self, name: str, rdtype: str, *answers: str) -> None:
        key = (_normalise_name(name), rdtype.upper())
        self.records[key] = (*self.records.get(key, ()), *answers)

    def lookup(self, name: str, rdtype: str) -> tuple[str, ...]:
        key = (_normalise_name(name), rdtype.upper())
        self.queries.append(key)
        if key[0] in self.temperror:
            raise DnsTempError(f"timeout looking up {key[0]} {key[1]}")
        return self.records.get(key, ())


class DnsResolver:
    """dnspython with a per-lookup timeout and a small LRU cache honouring TTLs.

    Thread-safe. NXDOMAIN and NODATA are cached (RFC 2308) for the SOA minimum, at most
    ``NEGATIVE_TTL``; temporary failures are never cached. A machine without a resolver
    configuration gets ``temperror`` for every lookup rather than a crash at start-up."""

    def __init__(
        self,
        timeout: float = 5.0,
        cache_size: int = 1024,
        nameservers: Sequence[str] = (),
        port: int = 53,
    ) -> None:
        self.timeout = timeout
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], tuple[float, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._error: str | None = None
        try:
            self._resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf
            self._resolver = dns.resolver.Resolver(configure=False)
            self._error = f"no resolver configuration: {exc}"
        if nameservers:
            self._resolver.nameservers = list(nameservers)
            self._resolver.port = port
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout

    def lookup(self, name: str, rdtype: str) -> tuple[str, ...]:
        key = (_normalise_name(name), rdtype.upper())
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                self._cache.move_to_end(key)
                return cached[1]
        if self._error is not None:
            raise DnsTempError(self._error)
        answers, ttl = self._query(*key)
        with self._lock:
            self._cache[key] = (now + ttl, answers)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return answers

    def _query(self, name: str, rdtype: str) -> tuple[tuple[str, ...], float]:
        try:
            answer = self._resolver.resolve(
                name, rdtype, search=False, raise_on_no_answer=False, lifetime=self.timeout
            )
        except dns.resolver.NXDOMAIN:
            return (), NEGATIVE_TTL
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTempError(f"{name} {rdtype}: {exc}") from None
        except dns.exception.DNSException as exc:
            # A name that cannot be a DNS name (empty label, too long) cannot exist.
            log.debug("dns %s %s: %s", name, rdtype, exc)
            return (), NEGATIVE_TTL
        if answer.rrset is None:
            return (), NEGATIVE_TTL
        out = []
        for rdata in answer.rrset:
            out.append(_rdata_text(rdata, rdtype))
        return tuple(out), float(min(max(answer.rrset.ttl, 0), MAX_TTL))


def _rdata_text(rdata: object, rdtype: str) -> str:
    if rdtype == "TXT":
        chunks = getattr(rdata, "strings", ())
        return b"".join(chunks).decode("utf-8", "replace")
    if rdtype in ("A", "AAAA"):
        return str(getattr(rdata, "address", ""))
    if rdtype == "MX":
        exchange = getattr(rdata, "exchange", None)
        target = exchange.to_text(omit_final_dot=True) if exchange is not None else ""
        return f"{getattr(rdata, 'preference', 0)} {target}"
    if rdtype == "PTR":
        target = getattr(rdata, "target", None)
        return target.to_text(omit_final_dot=True) if target is not None else ""
    return str(rdata)


# pyspf looks names up through ``spf.DNSLookup``; route it to the resolver of this call.
_SPF_RESOLVER: contextvars.ContextVar[Resolver | None] = contextvars.ContextVar(
    "mugaika_spf_resolver", default=None
)


def _spf_dns_lookup(
    name: str, qtype: str, strict: object = True, timeout: object = None
) -> list[tuple[tuple[str, str], object]]:
    resolver = _SPF_RESOLVER.get()
    if resolver is None:
        raise spf.TempError("DNS resolver not configured")
    try:
        answers = resolver.lookup(name, qtype)
    except DnsTempError as exc:
        raise spf.TempError(f"DNS {exc}") from None
    out: list[tuple[tuple[str, str], object]] = []
    for answer in answers:
        value: object
        if qtype in ("TXT", "SPF"):
            value = [answer.encode("utf-8", "replace")]
        elif qtype == "MX":
            preference, _, exchange = answer.partition(" ")
            value = (int(preference) if preference.isdigit() else 0, exchange)
        else:
            value = answer
        out.append(((name, qtype), value))
    return out


spf.DNSLookup = _spf_dns_lookup


# --------------------------------------------------------------------------------------------
# Settings and keys


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A DKIM/ARC private key with the ``d=`` domain and ``s=`` selector it signs for."""

    domain: str
    selector: str
    private_key: bytes  # PEM (PKCS#1 or PKCS#8), RSA

    def __repr__(self) -> str:  # never log key material
        return f"SigningKey(domain={self.domain!r}, selector={self.selector!r})"

    @classmethod
    def from_file(cls, domain: str, selector: str, key_file: Path) -> SigningKey:
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{key_file}: cannot read key file: {exc.strerror}") from None
        if b"PRIVATE KEY-----" not in data:
            raise ConfigError(f"{key_file}: not a PEM private key")
        return cls(domain.lower().rstrip("."), selector, data)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """What ``authenticate`` needs. Plain data: crosses into workers. It holds no key: a
    worker parses hostile content, so signing keys live only in ``gateway.signer``."""

    authserv_id: str
    dns_timeout: float = 5.0
    spf_lifetime: float = 20.0  # RFC 7208 section 4.6.4: at least 20 s for the whole check


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The private keys of ``auth.arc_seal`` and ``auth.dkim_sign``: loaded by the signer
    process only (``signing_keys``), never by a worker or the main process."""

    authserv_id: str
    arc_key: SigningKey | None = None
    dkim_keys: tuple[SigningKey, ...] = ()

    def dkim_keys_for(self, domains: Iterable[str]) -> tuple[SigningKey, ...]:
        """The keys that sign for these recipient domains: for each, the key of the domain
        itself or of its nearest parent (``city.example.lg.jp`` signs for
        ``mail.city.example.lg.jp``); each key once, in configuration order."""
        by_domain = {k.domain: k for k in self.dkim_keys}
        chosen: set[str] = set()
        for untrusted in domains:
            domain = untrusted.lower().rstrip(".")
            while domain:
                if domain in by_domain:
                    chosen.add(domain)
                    break
                domain = domain.partition(".")[2]
        return tuple(k for k in self.dkim_keys if k.domain in chosen)


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One ``method=result`` of RFC 8601 with its properties (``header.d``...) and a comment."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()
    reason: str = ""

    def prop(self, name: str) -> str:
        return dict(self.properties).get(name, "")

    def to_header(self) -> str:
        text = f"{self.method}={self.result}"
        if self.reason:
            text += f" ({_comment(self.reason)})"
        for name, value in self.properties:
            if value:
                text += f" {name}={_value(value)}"
        return text


@dataclass(frozen=True, slots=True)
class AuthResults:
    """All results for one message. ``header_value`` is the A-R field body (after the colon)."""

    authserv_id: str
    spf: MethodResult
    dkim: tuple[MethodResult, ...]
    dmarc: MethodResult
    arc: MethodResult
    header_value: str
    from_domain: str = ""  # RFC5322.From domain (lower case, A-labels), "" if not exactly one
    dmarc_policy: str = ""  # none | quarantine | reject, "" when no DMARC record applied

    @property
    def dkim_result(self) -> str:
        """The DKIM result for the message as a whole: pass if any signature passed."""
        return aggregate_dkim(self.dkim)

    @property
    def dkim_pass_domains(self) -> frozenset[str]:
        """``d=`` domains of signatures that verified: the identities DKIM authenticated."""
        return frozenset(r.prop("header.d").lower() for r in self.dkim if r.result == "pass")

    @property
    def spf_domain(self) -> str:
        return self.spf.prop("smtp.mailfrom") or self.spf.prop("smtp.helo")

    def authenticated_domains(self) -> frozenset[str]:
        """Domains this message is proven to come from: DKIM ``d=`` that passed, and the
        From: domain when DMARC passed. Never a domain merely written in From:."""
        domains = set(self.dkim_pass_domains)
        if self.dmarc.result == "pass" and self.from_domain:
            domains.add(self.from_domain)
        return frozenset(domains)

    def summary(self) -> dict[str, str]:
        """``{method: result}`` for ``Report.auth`` (bounded values: they become metric labels)."""
        return {
            "spf": self.spf.result,
            "dkim": self.dkim_result,
            "dmarc": self.dmarc.result,
            "arc": self.arc.result,
        }


def aggregate_dkim(results: Sequence[MethodResult]) -> str:
    if not results:
        return "none"
    found = {r.result for r in results}
    for result in ("pass", "fail", "temperror", "permerror", "policy", "neutral"):
        if result in found:
            return result
    return "none"


_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+$")


def _value(untrusted: str) -> str:
    """An RFC 8601 property value: a token as is, anything else as a quoted-string without
    control characters (a From: domain is attacker-chosen and must not forge results)."""
    if _TOKEN.match(untrusted) and len(untrusted) <= 255:
        return untrusted
    cleaned = "".join(c for c in untrusted[:255] if c.isprintable() and c.isascii())
    cleaned = cleaned.replace(";", ",")  # the header is folded at each ";"
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(untrusted: str) -> str:
    cleaned = "".join(c for c in untrusted[:200] if c.isprintable() and c.isascii())
    # No nesting, no escapes, no ";" (the header is folded at each ";").
    return cleaned.replace("\\", "").replace("(", "[").replace(")", "]").replace(";", ",")


# --------------------------------------------------------------------------------------------
# Header helpers (raw bytes; everything outside the header block is kept byte for byte)


def _split_message(message: bytes) -> tuple[list[bytes], bytes, bytes]:
    """Header fields (each with its folded continuation lines and line ending), the blank
    separator line, and the body."""
    fields: list[bytes] = []
    pos = 0
    length = len(message)
    while pos < length:
        end = message.find(b"\n", pos)
        line = message[pos:] if end < 0 else message[pos : end + 1]
        if line in (b"\r\n", b"\n"):
            return fields, line, message[pos + len(line) :]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos += len(line)
    return fields, b"", b""


def _linesep(message: bytes) -> bytes:
    end = message.find(b"\n")
    return b"\r\n" if end > 0 and message[end - 1 : end] == b"\r" else b"\n"


def _field_name(field_bytes: bytes) -> bytes:
    return field_bytes.partition(b":")[0].strip().lower()


def _header_values(message: bytes, name: str) -> list[str]:
    fields, _, _ = _split_message(message)
    want = name.lower().encode()
    out = []
    for f in fields:
        if _field_name(f) == want:
            value = f.partition(b":")[2]
            out.append(re.sub(r"\r?\n[ \t]", " ", value.decode("utf-8", "replace")).strip())
    return out


def _fold(name: str, value: str, linesep: bytes) -> bytes:
    """Fold an A-R header after each ``;`` (RFC 5322 section 2.2.3)."""
    parts = [p.strip() for p in value.split(";")]
    sep = ";" + linesep.decode() + "\t"
    return f"{name}: {sep.join(parts)}".encode() + linesep


# --------------------------------------------------------------------------------------------
# Identities


_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}$")


def normalise_domain(untrusted: str) -> str:
    """Lower case, IDNA A-labels, no trailing dot; ``""`` if it cannot be a domain name."""
    value = untrusted.strip().strip("[]").rstrip(".").lower()
    if not value:
        return ""
    if not value.isascii():
        try:
            value = value.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return value if _DOMAIN.match(value) else ""


def header_from_addresses(message: bytes) -> list[str]:
    """Addresses in the From: fields (all of them; DMARC needs exactly one). Parsed before
    any RFC 2047 decoding, so an encoded display name cannot add addresses.

    Each field is read by both of Python's address parsers, and every address either of them
    finds is listed: the legacy one glues a stray word to the domain
    (``soumu@city.example.lg.jp x`` gives ``…lg.jpx``) where the RFC 5322 one, like mail
    clients, shows ``soumu@city.example.lg.jp``. A field the two read differently thus
    yields two addresses, which DMARC treats as a spoofing trick (section 6.6.1). So does a
    domain written with quotes (``soumu@"city.example.lg.jp"``), read a third way
    (``_quoted_domain_addresses``)."""
    out: list[str] = []
    for value in _header_values(message, "From"):
        legacy = [address for _name, address in email.utils.getaddresses([value]) if address]
        out.extend(legacy)
        seen = {_same_address_key(address) for address in legacy}
        out.extend(a for a in _rfc5322_addresses(value) if _same_address_key(a) not in seen)
        out.extend(_quoted_domain_addresses(value))
    return out


def _same_address_key(address: str) -> str:
    """Equal for two spellings of one address: the RFC 5322 parser drops quotes a local part
    does not need (``"yamada.taro"@x`` is ``yamada.taro@x``), the legacy one keeps them."""
    return address.replace('"', "").lower()


def shown_domain(untrusted: str) -> str:
    """A domain as mail programs show it: comments, quotes, backslash escapes and white
    space removed (``"city".example.lg.jp`` shows as ``city.example.lg.jp``); case kept."""
    text = re.sub(r"\((?:[^()\\]|\\.)*\)", "", untrusted)
    return re.sub(r'[\s"\\]', "", text)


# A domain as written after the ``@``: atoms, dots and quoted strings, up to a delimiter.
_DOMAIN_TEXT = re.compile(r'(?:[^\s"@,;<>()\[\]]|"(?:[^"\\]|\\.)*")+')


def _quoted_domain_addresses(value: str) -> list[str]:
    """Addresses whose domain is written with a quoted string (``soumu@"city.example.lg.jp"``),
    read without the quotes, as clients show them. RFC 5322 has no quoted domains, so neither
    parser reads one (the legacy one lists the quoted text as an address of its own, the
    RFC 5322 one gives up): this third reading makes such a field read two ways."""
    out: list[str] = []
    quoted = escaped = False
    depth = index = 0
    while index < len(value):
        char = value[index]
        index += 1
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
        elif char == '"':
            quoted = True
        elif char == "(":
            depth = 1
        elif char == "@":
            match = _DOMAIN_TEXT.match(value, index)
            if match and '"' in match.group(0):
                out.append("@" + shown_domain(match.group(0)))
            index = match.end() if match else index
    return out


def _rfc5322_addresses(value: str) -> list[str]:
    """Addr-specs of an address-list value per ``email.policy.default`` (its ``<>`` for an
    empty address left out); ``[]`` if that parser gives up."""
    try:
        header = email.policy.default.header_factory("From", value)
        addresses = [str(a.addr_spec) for a in header.addresses]
    except Exception:  # a parser failure adds nothing; the legacy reading stands
        return []
    return [a for a in addresses if a and a != "<>"]


_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()


def organizational_domain(domain: str) -> str:
    """RFC 7489 section 3.2: the registrable domain by the public suffix list."""
    global _psl
    with _psl_lock:
        if _psl is None:
            _psl = PublicSuffixList()
        psl = _psl
    return psl.privatesuffix(domain) or domain


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 section 3.1: strict = identical; relaxed = same organizational domain."""
    if not domain or not from_domain:
        return False
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


# --------------------------------------------------------------------------------------------
# The checks


def check_spf(envelope: Envelope, resolver: Resolver, settings: AuthSettings) -> MethodResult:
    """RFC 7208 ``check_host()`` for MAIL FROM (or HELO for the null sender, section 2.4)."""
    client = envelope.client
    helo = normalise_domain(client.helo) if client.helo else ""
    mail_from = envelope.mail_from.strip("<>")
    local, _, untrusted_domain = mail_from.rpartition("@")
    domain = normalise_domain(untrusted_domain) if mail_from else ""
    props: list[tuple[str, str]] = []
    if domain:
        props.append(("smtp.mailfrom", domain))
    if helo:
        props.append(("smtp.helo", helo))
    try:
        address = ipaddress.ip_address(client.address.removeprefix("IPv6:"))
    except ValueError:
        return MethodResult("spf", "none", tuple(props), "no client address")
    if address.is_loopback and not client.forwarded:
        # Behind Postfix without XFORWARD every client would look like 127.0.0.1 and fail.
        return MethodResult("spf", "none", tuple(props), "client address not forwarded")
    if mail_from and not domain:
        return MethodResult("spf", "none", tuple(props), "MAIL FROM domain is not a domain")
    if not mail_from and not helo:
        return MethodResult("spf", "none", tuple(props), "no identity to check")
    sender = f"{local or 'postmaster'}@{domain}" if domain else ""
    token = _SPF_RESOLVER.set(resolver)
    try:
        query = spf.query(
            i=str(address),
            s=sender,
            h=helo or "unknown",
            timeout=settings.dns_timeout,
            querytime=settings.spf_lifetime,
        )
        result, _code, explanation = query.check()
    except spf.TempError as exc:
        result, explanation = "temperror", str(exc)
    except spf.PermError as exc:
        result, explanation = "permerror", str(exc)
    except Exception as exc:  # pyspf on input it was never tested with: not the sender's fault
        log.warning("spf check raised %s", type(exc).__name__)
        result, explanation = "temperror", f"internal: {type(exc).__name__}"
    finally:
        _SPF_RESOLVER.reset(token)
    if result not in SPF_RESULTS:
        result = "permerror"
    reason = "" if result in ("pass", "none") else str(explanation)
    return MethodResult("spf", result, tuple(props), reason)


_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", re.IGNORECASE)


def _signature_tags(value: bytes) -> dict[bytes, bytes]:
    return {m.group(1).lower(): re.sub(rb"\s+", b"", m.group(2)) for m in _TAG.finditer(value)}


class _DkimDns:
    """dkimpy's ``dnsfunc`` over a Resolver, remembering why a key was not found."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.temperror = False
        self.missing = False

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answers = self.resolver.lookup(name.decode("ascii", "replace"), "TXT")
        except DnsTempError as exc:
            self.temperror = True
            raise dkim.DnsTimeoutError(str(exc)) from None
        if not answers:
            self.missing = True
            return None
        return answers[0].encode("utf-8", "replace")


def check_dkim(message: bytes, resolver: Resolver, settings: AuthSettings) -> list[MethodResult]:
    """Every DKIM-Signature (up to ``MAX_DKIM_SIGNATURES``), one result each (RFC 6376)."""
    fields, _, _ = _split_message(message)
    signatures = [f for f in fields if _field_name(f) == b"dkim-signature"]
    results = []
    for index, raw in enumerate(signatures[:MAX_DKIM_SIGNATURES]):
        tags = _signature_tags(raw.partition(b":")[2])
        d = tags.get(b"d", b"").decode("ascii", "replace").lower()
        props = (
            ("header.d", d),
            ("header.s", tags.get(b"s", b"").decode("ascii", "replace")),
            ("header.b", tags.get(b"b", b"")[:8].decode("ascii", "replace")),
        )
        lookup = _DkimDns(resolver)
        try:
            verifier = dkim.DKIM(message, logger=_dkimpy_log, minkey=1024)
            verifier.timeout = settings.dns_timeout
            ok = verifier.verify(idx=index, dnsfunc=lookup)
        except dkim.ValidationError as exc:
            if "body hash" in str(exc):
                results.append(MethodResult("dkim", "fail", props, "body hash mismatch"))
            else:
                results.append(MethodResult("dkim", "permerror", props, str(exc)[:120]))
            continue
        except dkim.DKIMException as exc:
            results.append(MethodResult("dkim", "permerror", props, str(exc)[:120]))
            continue
        except Exception as exc:  # malformed input dkimpy does not expect (e.g. bad base64)
            results.append(
                MethodResult("dkim", "permerror", props, f"unverifiable: {type(exc).__name__}")
            )
            continue
        if ok:
            results.append(MethodResult("dkim", "pass", props))
        elif lookup.temperror:
            results.append(MethodResult("dkim", "temperror", props, "key lookup failed"))
        elif lookup.missing:
            results.append(MethodResult("dkim", "permerror", props, "no key for signature"))
        else:
            results.append(MethodResult("dkim", "fail", props, "signature did not verify"))
    return results


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: str  # none | quarantine | reject
    subdomain_policy: str
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    domain: str = ""  # where the record was found


def parse_dmarc_record(text: str, domain: str) -> DmarcRecord | None:
    """RFC 7489 section 6.3; ``None`` when it is not a usable DMARC record."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1":
        return None
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        # Section 6.6.3: an invalid or missing p= with a valid rua= is p=none; else no record.
        if "rua" not in tags:
            return None
        policy = "none"
    sub = tags.get("sp", "").lower()
    if sub not in ("none", "quarantine", "reject"):
        sub = policy
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() else 100
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    return DmarcRecord(policy, sub, adkim, aspf, min(pct, 100), domain)


def find_dmarc_record(from_domain: str, resolver: Resolver) -> DmarcRecord | None:
    """Section 6.6.3: the From: domain's record, else the organizational domain's.

    Raises DnsTempError when either lookup is not answered."""
    candidates = [from_domain]
    org = organizational_domain(from_domain)
    if org != from_domain:
        candidates.append(org)
    for domain in candidates:
        answers = resolver.lookup(f"_dmarc.{domain}", "TXT")
        records = [a for a in answers if a.replace(" ", "").upper().startswith("V=DMARC1")]
        if len(records) != 1:
            continue  # none, or several (which section 6.6.3 says to treat as none)
        record = parse_dmarc_record(records[0], domain)
        if record is not None:
            return record
    return None


def check_dmarc(
    from_addresses: Sequence[str],
    spf_result: MethodResult,
    dkim_results: Sequence[MethodResult],
    resolver: Resolver,
) -> tuple[MethodResult, str, str]:
    """RFC 7489 section 4.2 evaluation. Returns (result, From: domain, applied policy).

    Several From: addresses (or a display name with an unquoted ``@``, which parses as two)
    is ``permerror``: section 6.6.1 leaves such mail to local policy and it is a spoofing
    trick. No From: address, or one without a domain (``MAILER-DAEMON``), is ``none``: DMARC
    does not apply to it."""
    if not from_addresses:
        return MethodResult("dmarc", "none", (), "no From: address"), "", ""
    domains = {normalise_domain(a.rpartition("@")[2]) for a in from_addresses}
    if len(from_addresses) != 1:
        return MethodResult("dmarc", "permerror", (), "more than one From: address"), "", ""
    from_domain = domains.pop()
    if not from_domain:
        return MethodResult("dmarc", "none", (), "From: domain is not a domain"), "", ""
    props = (("header.from", from_domain),)
    try:
        record = find_dmarc_record(from_domain, resolver)
    except DnsTempError as exc:
        return MethodResult("dmarc", "temperror", props, str(exc)), from_domain, ""
    if record is None:
        return MethodResult("dmarc", "none", props), from_domain, ""
    policy = record.policy if record.domain == from_domain else record.subdomain_policy
    dkim_ok = any(
        r.result == "pass" and aligned(r.prop("header.d"), from_domain, record.adkim)
        for r in dkim_results
    )
    spf_ok = spf_result.result == "pass" and aligned(
        spf_result.prop("smtp.mailfrom") or spf_result.prop("smtp.helo"),
        from_domain,
        record.aspf,
    )
    result = "pass" if dkim_ok or spf_ok else "fail"
    reason = f"p={policy}"
    if result == "pass":
        reason += " aligned " + "+".join(n for n, ok in (("dkim", dkim_ok), ("spf", spf_ok)) if ok)
    return MethodResult("dmarc", result, props, reason), from_domain, policy


def check_arc(message: bytes, resolver: Resolver) -> MethodResult:
    """RFC 8617 section 5.2 chain validation; ``fail`` also when it cannot be validated."""
    fields, _, _ = _split_message(message)
    if not any(_field_name(f) == b"arc-seal" for f in fields):
        return MethodResult("arc", "none")
    seals = sum(1 for f in fields if _field_name(f) == b"arc-seal")
    if seals > MAX_ARC_SETS:
        return MethodResult("arc", "fail", (), "too many ARC sets")
    lookup = _DkimDns(resolver)
    try:
        cv, results, reason = dkim.arc_verify(message, logger=_dkimpy_log, dnsfunc=lookup)
    except Exception as exc:
        return MethodResult("arc", "fail", (), f"unverifiable: {type(exc).__name__}")
    if cv == dkim.CV_Pass:
        return MethodResult("arc", "pass", (), f"{len(results)} sets")
    if cv == dkim.CV_None:
        return MethodResult("arc", "none")
    why = "DNS temporary failure" if lookup.temperror else str(reason)
    return MethodResult("arc", "fail", (), why[:120])


def authenticate(
    raw: bytes, envelope: Envelope, settings: AuthSettings, resolver: Resolver
) -> AuthResults:
    """SPF, DKIM, DMARC and ARC for a message as received. Never raises for content or DNS
    reasons; bounded by ``MAX_DKIM_SIGNATURES``, ``MAX_ARC_SETS`` and the DNS timeouts."""
    spf_result = check_spf(envelope, resolver, settings)
    dkim_results = check_dkim(raw, resolver, settings)
    dmarc_result, from_domain, policy = check_dmarc(
        header_from_addresses(raw), spf_result, dkim_results, resolver
    )
    arc_result = check_arc(raw, resolver)
    parts = [settings.authserv_id]
    parts.append(spf_result.to_header())
    if dkim_results:
        parts.extend(r.to_header() for r in dkim_results)
    else:
        parts.append("dkim=none")
    parts.append(dmarc_result.to_header())
    parts.append(arc_result.to_header())
    return AuthResults(
        authserv_id=settings.authserv_id,
        spf=spf_result,
        dkim=tuple(dkim_results),
        dmarc=dmarc_result,
        arc=arc_result,
        header_value="; ".join(parts),
        from_domain=from_domain,
        dmarc_policy=policy,
    )


# --------------------------------------------------------------------------------------------
# Writing headers, sealing, signing


def _authserv_id_of(value: bytes) -> str:
    """The authserv-id an A-R field names, lower-cased. RFC 8601 section 2.2 makes it a
    ``value`` (RFC 2045): a token or a quoted-string, so ``"gw.example"`` names the same
    server as ``gw.example`` and a forged field must not pass for another's in quotes."""
    text = re.sub(rb"\([^()]*\)", b" ", value).decode("utf-8", "replace").strip()
    quoted = re.match(r'"((?:[^"\\]|\\.)*)"', text)
    if quoted:
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).strip().lower()
    words = text.split(";", 1)[0].split()
    return words[0].lower() if words else ""


def add_authentication_results(message: bytes, results: AuthResults) -> bytes:
    """Prepend our RFC 8601 header; drop existing ones that claim our authserv-id (section 5:
    they were forged or are stale). Idempotent. Other fields and the body are kept as is."""
    fields, blank, body = _split_message(message)
    ours = results.authserv_id.lower()
    kept = [
        f
        for f in fields
        if not (
            _field_name(f) == b"authentication-results"
            and _authserv_id_of(f.partition(b":")[2]) == ours
        )
    ]
    linesep = _linesep(message)
    header = _fold("Authentication-Results", results.header_value, linesep)
    return header + b"".join(kept) + (blank or linesep) + body


def _our_results_only(message: bytes, authserv_id: str) -> bytes:
    """``message`` without the Authentication-Results fields of other hosts.

    dkimpy's ARC signer parses every A-R field (with ``authres``) to find ours; the others are
    never signed (RFC 8617 section 4.1.2: A-R is not in an AMS), so the signer need not read
    them at all. Less hostile text for the process that holds the key to parse."""
    fields, blank, body = _split_message(message)
    ours = authserv_id.lower()
    kept = [
        f
        for f in fields
        if _field_name(f) != b"authentication-results"
        or _authserv_id_of(f.partition(b":")[2]) == ours
    ]
    return b"".join(kept) + blank + body


def arc_set(message: bytes, authserv_id: str, key: SigningKey) -> bytes:
    """The next ARC set (AAR, AMS, AS; RFC 8617) for ``message`` as it leaves us, to be
    prepended to it. ``message`` must be final; the AAR copies our Authentication-Results,
    and without them there is nothing to seal: ``b""``. Raises ``SigningFailed``."""
    try:
        headers = dkim.arc_sign(
            _our_results_only(message, authserv_id),
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            authserv_id.encode("ascii"),
            logger=_dkimpy_log,
            linesep=_linesep(message),
        )
    except Exception as exc:
        raise SigningFailed(f"ARC seal: {type(exc).__name__}: {exc}") from None
    return b"".join(headers)


def arc_seal(message: bytes, results: AuthResults, key: SigningKey) -> bytes:
    """``message`` with our A-R header (added if missing) and the next ARC set on top."""
    fields, _, _ = _split_message(message)
    ours = results.authserv_id.lower()
    if not any(
        _field_name(f) == b"authentication-results"
        and _authserv_id_of(f.partition(b":")[2]) == ours
        for f in fields
    ):
        message = add_authentication_results(message, results)
    headers = arc_set(message, results.authserv_id, key)
    if not headers:
        raise SigningFailed("ARC seal: dkimpy found no Authentication-Results to seal")
    return headers + message


def dkim_signature(message: bytes, key: SigningKey) -> bytes:
    """A DKIM-Signature field (rsa-sha256, relaxed/relaxed; RFC 6376) over ``message``, to be
    prepended to it. It signs the fields RFC 6376 section 5.4.1 recommends (From twice, so
    none can be added) and our ``X-Mugaika-*`` summary fields, so that a server behind us
    can trust what they say. Raises ``SigningFailed``."""
    try:
        signer = dkim.DKIM(message, logger=_dkimpy_log, linesep=_linesep(message))
        names = signer.default_sign_headers()
        names += [n for n, _ in signer.headers if n.lower().startswith(b"x-mugaika-")]
        return signer.sign(
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=names,
        )
    except Exception as exc:
        raise SigningFailed(f"DKIM sign: {type(exc).__name__}: {exc}") from None


def dkim_sign(message: bytes, key: SigningKey) -> bytes:
    """``message`` with a ``dkim_signature`` on top. Signing twice adds two signatures."""
    return dkim_signature(message, key) + message


# --------------------------------------------------------------------------------------------
# From the gateway configuration


def auth_settings(config: Config) -> AuthSettings:
    """Settings for ``authenticate`` from ``config.auth``. Reads no key file."""
    section = config.auth
    return AuthSettings(
        authserv_id=section.authserv_id or config.hostname.lower(),
        dns_timeout=section.dns_timeout,
        spf_lifetime=section.spf_lifetime,
    )


def signing_keys(config: Config) -> SigningKeys:
    """The keys of ``auth.arc_seal`` and ``auth.dkim_sign``, read now: for the signer process
    only. Raises ConfigError naming the file."""
    section = config.auth
    arc_key = None
    if section.arc_seal is not None:
        k = section.arc_seal
        arc_key = SigningKey.from_file(k.domain, k.selector, k.key_file)
    dkim_keys = tuple(
        SigningKey.from_file(k.domain, k.selector, k.key_file) for k in section.dkim_sign
    )
    return SigningKeys(
        authserv_id=section.authserv_id or config.hostname.lower(),
        arc_key=arc_key,
        dkim_keys=dkim_keys,
    )


def make_resolver(config: Config) -> DnsResolver:
    """The DNS resolver a worker uses (one per process: its cache is per process)."""
    return DnsResolver(
        timeout=config.auth.dns_timeout,
        cache_size=config.auth.dns_cache_size,
        nameservers=tuple(config.auth.nameservers),
        port=config.auth.dns_port,
    )
