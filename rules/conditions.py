"""Rule conditions, compiled once at load into small picklable objects.

``compile_condition(schema.Condition) -> Condition`` turns the validated YAML into a tree of
frozen dataclasses (patterns compiled, keywords normalised), and ``Condition.test(facts)``
evaluates it against ``Facts``: what is known about one message, gathered once per decision
by ``Facts.gather``. Conditions are pure: no I/O, no DNS (authentication ran before), no
state; they cross into worker processes by pickling.

Addresses and domains from the message are untrusted: they are parsed with the standard
library, lower-cased, IDNA-encoded, and compared as data, never interpreted.

This module does not choose verdicts (``rules/engine.py`` does) and does not parse MIME: the
attachment facts come from the ``Report`` the earlier stages filled in.
"""

from __future__ import annotations

import email.utils
import fnmatch
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from gateway.auth import AuthResults, aligned, normalise_domain, shown_domain
from gateway.message import Envelope
from gateway.report import Report
from rules import lookalike, schema
from rules.schema import normalise_text

# Only this much of a header is searched (regexes are admin-written; bound their input).
MAX_TEXT = 4096

# Detected MIME type -> content class. gateway/detect.py owns the real mapping when it lands;
# this table lets conditions name classes for the types the Report carries.
_CLASS_BY_TYPE = {
    "application/pdf": "pdf",
    "application/rtf": "rtf",
    "text/rtf": "rtf",
    "image/svg+xml": "svg",
    "application/zip": "archive",
    "application/x-zip-compressed": "archive",
    "application/x-7z-compressed": "other_archive",
    "application/x-rar": "other_archive",
    "application/vnd.rar": "other_archive",
    "application/x-rar-compressed": "other_archive",
    "application/x-tar": "other_archive",
    "application/gzip": "other_archive",
    "application/x-gzip": "other_archive",
    "application/x-bzip2": "other_archive",
    "application/x-xz": "other_archive",
    "application/x-iso9660-image": "other_archive",
    "application/vnd.ms-cab-compressed": "other_archive",
    "application/x-lzh-compressed": "other_archive",
    "application/x-dosexec": "executable",
    "application/vnd.microsoft.portable-executable": "executable",  # libmagic >= 5.45
    "application/x-ms-ne-executable": "executable",
    "application/x-pie-executable": "executable",
    "application/x-mach-o-executable": "executable",
    "application/x-elf": "executable",
    "application/x-ms-installer": "executable",
    "application/x-msdos-program": "executable",
    "application/x-msdownload": "executable",
    "application/x-executable": "executable",
    "application/x-sharedlib": "executable",
    "application/x-mach-binary": "executable",
    "application/x-msi": "executable",
    "application/x-ms-shortcut": "executable",
    "application/java-archive": "executable",
    "application/x-java-applet": "executable",
    "application/javascript": "script",
    "text/javascript": "script",
    "application/x-sh": "script",
    "text/x-shellscript": "script",
    "application/x-powershell": "script",
    "application/hta": "script",
    "text/vbscript": "script",
    "text/x-msdos-batch": "script",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "message/rfc822": "message",
    "text/plain": "text",
    "text/csv": "text",
    "text/calendar": "text",
    "text/vcard": "text",
    "text/x-vcard": "text",
    "application/msword": "ole",
    "application/vnd.ms-excel": "ole",
    "application/vnd.ms-powerpoint": "ole",
    "application/vnd.ms-outlook": "ole",
    "application/x-ole-storage": "ole",
    "application/cdfv2": "ole",
}


def content_class_of(detected_type: str, encrypted: bool = False) -> str:
    """The content class of a detected MIME type; ``unknown`` when not recognised."""
    mime = detected_type.split(";", 1)[0].strip().lower()
    if mime in _CLASS_BY_TYPE:
        found = _CLASS_BY_TYPE[mime]
        return "encrypted_archive" if encrypted and found == "archive" else found
    if mime.startswith("application/vnd.openxmlformats-officedocument.") or (
        mime.startswith("application/vnd.ms-") and "macroenabled" in mime
    ):
        return "ooxml"
    if mime.startswith("application/vnd.oasis.opendocument."):
        return "opendocument"
    if mime.startswith("image/"):
        return "image"
    return "unknown"


# ---------------------------------------------------------------------------------------------
# Facts


def _decode(value: str) -> str:
    """Decode RFC 2047 words left in a header value (harmless when already decoded)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError, AssertionError, HeaderParseError):
        return value


@dataclass(frozen=True, slots=True)
class Address:
    display_name: str
    address: str  # lower case
    domain: str  # lower case, A-labels; "" if it is not a domain
    shown_domain: str  # as shown (case kept, quotes and comments removed) for lookalike checks
    # The text of a quoted local part (``"soumu@city.example.lg.jp"@x.example``), which
    # clients show as written: it can imitate an address as a display name does.
    quoted_local_part: str = ""


def _split_top_level(value: str) -> list[str]:
    """Split at commas outside quotes, comments and angle brackets."""
    parts: list[str] = []
    buf: list[str] = []
    quote = escape = False
    angle = paren = 0
    for char in value:
        if escape:
            escape = False
        elif char == "\\" and quote:
            escape = True
        elif char == '"' and not paren:
            quote = not quote
        elif not quote:
            if char == "(":
                paren += 1
            elif char == ")" and paren:
                paren -= 1
            elif char == "<" and not paren:
                angle += 1
            elif char == ">" and angle and not paren:
                angle -= 1
            elif char == "," and not angle and not paren:
                parts.append("".join(buf))
                buf = []
                continue
        buf.append(char)
    parts.append("".join(buf))
    return parts


_ANGLE = re.compile(r"^(?P<name>.*)<(?P<address>[^<>]*)>[^<>]*$", re.DOTALL)
_GROUP = re.compile(r"^[^\"<>@:]*:\s*")


def parse_addresses(value: str) -> tuple[Address, ...]:
    """Addresses of an address header, tolerant of values decoded before parsing.

    The pipeline hands headers RFC 2047-decoded, so a display name can hold an unquoted
    ``@`` or comma (``総務課 soumu@city.example.lg.jp <x@attacker.example>``): the address is
    the one in the last angle brackets, and fragments without ``@`` belong to the next name
    (``Yamada, Taro <t@example.com>`` is one address)."""
    text = _decode(value)[:MAX_TEXT]
    chunks: list[str] = []
    pending = ""
    for chunk in _split_top_level(text):
        chunk = _GROUP.sub("", chunk.strip()).rstrip(";").strip()
        if not chunk:
            continue
        if "@" not in chunk and "<" not in chunk:
            pending += chunk + ", "
            continue
        chunks.append(pending + chunk)
        pending = ""
    out = []
    for chunk in chunks:
        match = _ANGLE.match(chunk)
        if match:
            name = match.group("name").strip().strip('"').strip()
            address = match.group("address").strip()
        else:
            name, address = email.utils.parseaddr(chunk)
            if not address or '"' in (_split_addr_spec(chunk)[1] or ""):
                # The legacy parser drops or truncates a quoted domain (soumu@"city.example").
                address = chunk.strip()
        local, domain_text = _split_addr_spec(address)
        shown = shown_domain(domain_text) if domain_text is not None else ""
        quoted_local = local.strip()
        out.append(
            Address(
                display_name=name,
                address=address.lower(),
                domain=normalise_domain(shown) if shown else "",
                shown_domain=shown,
                quoted_local_part=quoted_local.strip('"').replace("\\", "")
                if quoted_local.startswith('"')
                else "",
            )
        )
    return tuple(out)


def _split_addr_spec(address: str) -> tuple[str, str | None]:
    """(local part, domain as written) at the last ``@`` outside quotes; domain None if none."""
    quoted = escaped = False
    at = -1
    for index, char in enumerate(address):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "@" and not quoted:
            at = index
    if at < 0:
        return address, None
    return address[:at], address[at + 1 :]


def _envelope_address(untrusted: str) -> Address:
    address = untrusted.strip().strip("<>")
    shown = address.rpartition("@")[2]
    domain = normalise_domain(shown) if "@" in address else ""
    return Address("", address.lower(), domain, shown)


@dataclass(frozen=True, slots=True)
class AttachmentFact:
    content_class: str
    detected_type: str
    filename: str  # NFKC, case-folded
    size: int


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything conditions may look at, gathered once per message."""

    envelope_from: Address
    recipients: tuple[Address, ...]
    header_from: tuple[Address, ...]
    sender: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    headers: Mapping[str, str]  # lower-case name -> decoded value
    client_address: str
    auth: Mapping[str, str]
    auth_results: AuthResults | None
    findings: frozenset[str]
    attachments: tuple[AttachmentFact, ...]
    size: int
    internal_domains: frozenset[str]
    protected_domains: frozenset[str]

    @classmethod
    def gather(
        cls,
        report: Report,
        envelope: Envelope,
        headers: Mapping[str, str],
        *,
        auth: AuthResults | None = None,
        message_size: int = 0,
        internal_domains: Iterable[str] = (),
        protected_domains: Iterable[str] = (),
    ) -> Facts:
        lowered = {k.lower(): _decode(str(v))[:MAX_TEXT] for k, v in headers.items()}
        attachments = tuple(
            AttachmentFact(
                content_class=content_class_of(
                    record.detected_type,
                    encrypted=any(
                        f.code == "ARCHIVE_ENCRYPTED" and f.part_id == record.part_id
                        for f in report.findings
                    ),
                ),
                detected_type=record.detected_type.lower(),
                filename=normalise_text(record.untrusted_filename),
                size=record.size,
            )
            for record in report.attachments
        )
        internal = frozenset(d.lower() for d in internal_domains)
        return cls(
            envelope_from=_envelope_address(envelope.mail_from),
            recipients=tuple(_envelope_address(r.address) for r in envelope.recipients),
            header_from=parse_addresses(lowered.get("from", "")),
            sender=parse_addresses(lowered.get("sender", "")),
            reply_to=parse_addresses(lowered.get("reply-to", "")),
            to=parse_addresses(lowered.get("to", "")),
            cc=parse_addresses(lowered.get("cc", "")),
            headers=lowered,
            client_address=envelope.client.address,
            auth=dict(report.auth) if report.auth else (auth.summary() if auth else {}),
            auth_results=auth,
            findings=frozenset(f.code for f in report.findings),
            attachments=attachments,
            size=message_size,
            internal_domains=internal,
            protected_domains=internal | frozenset(d.lower() for d in protected_domains),
        )

    def is_internal(self, domain: str) -> bool:
        return any(domain == d or domain.endswith("." + d) for d in self.internal_domains if d)

    def is_authenticated(self, domain: str) -> bool:
        """The message is proven to come from ``domain``: a passing DKIM ``d=`` or the From:
        domain under DMARC pass is aligned with it (RFC 7489 relaxed). SPF alone is not proof
        (a tenant's SPF record often includes a shared provider)."""
        if not domain or self.auth_results is None:
            return False
        return any(aligned(a, domain, "r") for a in self.auth_results.authenticated_domains())


# ---------------------------------------------------------------------------------------------
# Conditions


class Condition:
    """Base: ``test(facts) -> bool``; ``describe()`` for ``mugaika rules test``."""

    def test(self, facts: Facts) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    parts: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        return all(p.test(facts) for p in self.parts)


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    parts: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        return any(p.test(facts) for p in self.parts)


@dataclass(frozen=True, slots=True)
class Not(Condition):
    part: Condition

    def test(self, facts: Facts) -> bool:
        return not self.part.test(facts)


@dataclass(frozen=True, slots=True)
class Range:
    over: int | None
    under: int | None

    def holds(self, value: int) -> bool:
        if self.over is not None and not value > self.over:
            return False
        return self.under is None or value < self.under


def _range(match: schema.CountMatch | None) -> Range | None:
    if match is None:
        return None
    return Range(
        int(match.over) if match.over is not None else None,
        int(match.under) if match.under is not None else None,
    )


@dataclass(frozen=True, slots=True)
class AddressCondition(Condition):
    """``field`` is envelope_from, recipient, from, sender, reply_to, to or cc."""

    field_name: str
    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    internal: bool | None = None
    count: Range | None = None
    authenticated: bool | None = None

    def _values(self, facts: Facts) -> tuple[Address, ...]:
        if self.field_name == "envelope_from":
            return (facts.envelope_from,)
        return {
            "recipient": facts.recipients,
            "from": facts.header_from,
            "sender": facts.sender,
            "reply_to": facts.reply_to,
            "to": facts.to,
            "cc": facts.cc,
        }[self.field_name]

    def _one(self, address: Address, facts: Facts) -> bool:
        if self.addresses and not any(
            fnmatch.fnmatchcase(address.address, p) for p in self.addresses
        ):
            return False
        if self.domains and not any(fnmatch.fnmatchcase(address.domain, p) for p in self.domains):
            return False
        if self.regex is not None and not self.regex.search(address.address):
            return False
        if self.internal is not None and facts.is_internal(address.domain) != self.internal:
            return False
        return (
            self.authenticated is None
            or facts.is_authenticated(address.domain) == self.authenticated
        )

    def test(self, facts: Facts) -> bool:
        values = self._values(facts)
        if self.count is not None and not self.count.holds(len(values)):
            return False
        if not (
            self.addresses
            or self.domains
            or self.regex
            or self.internal is not None
            or self.authenticated is not None
        ):
            return True  # count alone
        return any(self._one(a, facts) for a in values)


@dataclass(frozen=True, slots=True)
class TenantCondition(Condition):
    tenants: frozenset[str]

    def test(self, facts: Facts) -> bool:
        return any(r.domain in self.tenants for r in facts.recipients)


@dataclass(frozen=True, slots=True)
class ClientCondition(Condition):
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def test(self, facts: Facts) -> bool:
        try:
            address = ipaddress.ip_address(facts.client_address.removeprefix("IPv6:"))
        except ValueError:
            return False
        return any(address in net for net in self.networks if net.version == address.version)


@dataclass(frozen=True, slots=True)
class AuthCondition(Condition):
    results: tuple[tuple[str, frozenset[str]], ...]  # method -> accepted results
    dmarc_policy: frozenset[str] = frozenset()
    authenticated_domains: tuple[str, ...] = ()

    def test(self, facts: Facts) -> bool:
        for method, accepted in self.results:
            if facts.auth.get(method, "none") not in accepted:
                return False
        if self.dmarc_policy:
            policy = facts.auth_results.dmarc_policy if facts.auth_results else ""
            if policy not in self.dmarc_policy:
                return False
        if self.authenticated_domains:
            found = facts.auth_results.authenticated_domains() if facts.auth_results else ()
            if not any(
                d == t or d.endswith("." + t) for d in found for t in self.authenticated_domains
            ):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AttachmentCondition(Condition):
    classes: frozenset[str] = frozenset()
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    name_regex: re.Pattern[str] | None = None
    size: Range | None = None

    def _one(self, a: AttachmentFact) -> bool:
        if self.classes and a.content_class not in self.classes:
            return False
        if self.types and not any(fnmatch.fnmatchcase(a.detected_type, t) for t in self.types):
            return False
        if self.names and not any(fnmatch.fnmatchcase(a.filename, n) for n in self.names):
            return False
        if self.name_regex is not None and not self.name_regex.search(a.filename):
            return False
        return self.size is None or self.size.holds(a.size)

    def test(self, facts: Facts) -> bool:
        return any(self._one(a) for a in facts.attachments)


@dataclass(frozen=True, slots=True)
class AttachmentCountCondition(Condition):
    count: Range

    def test(self, facts: Facts) -> bool:
        return self.count.holds(len(facts.attachments))


@dataclass(frozen=True, slots=True)
class SizeCondition(Condition):
    size: Range

    def test(self, facts: Facts) -> bool:
        return self.size.holds(facts.size)


@dataclass(frozen=True, slots=True)
class FindingCondition(Condition):
    patterns: tuple[str, ...]

    def test(self, facts: Facts) -> bool:
        return any(fnmatch.fnmatchcase(code, p) for code in facts.findings for p in self.patterns)


@dataclass(frozen=True, slots=True)
class TextCondition(Condition):
    """Subject (``header_name="subject"``) or any decoded header by name."""

    header_name: str
    contains: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None

    def test(self, facts: Facts) -> bool:
        if self.header_name not in facts.headers:
            return False
        if not self.contains and self.regex is None:
            return True  # presence
        text = normalise_text(facts.headers[self.header_name])
        if self.contains and any(k in text for k in self.contains):
            return True
        return self.regex is not None and self.regex.search(text) is not None


_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\"',;:@]+@([a-z0-9.\-]+\.[a-z]{2,}|[^\s<>()\"',;:@]+)")


def _display_forms(name: str) -> str:
    # NFKC turns the full-width ＠ and letters attackers use (ｓｏｕｍｕ＠city...) into ASCII.
    return unicodedata.normalize("NFKC", name).casefold()


@dataclass(frozen=True, slots=True)
class DisplayNameCondition(Condition):
    imitates_address: bool | None = None
    imitates_internal: bool | None = None
    contains: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None

    def _one(self, sender: Address, facts: Facts) -> bool:
        # A quoted local part is shown as written, so it can imitate like a display name.
        name = _display_forms(f"{sender.display_name} {sender.quoted_local_part}".strip())
        if self.imitates_address is not None:
            shown = [m.group(0) for m in _ADDRESS_IN_TEXT.finditer(name)]
            other = any(s != sender.address for s in shown)
            if other != self.imitates_address:
                return False
        if self.imitates_internal is not None:
            mentions = any(
                d in name or normalise_text(lookalike.to_unicode(d)) in name
                for d in facts.internal_domains
            )
            imitation = mentions and not facts.is_internal(sender.domain)
            if imitation != self.imitates_internal:
                return False
        if self.contains and not any(k in name for k in self.contains):
            return False
        return self.regex is None or self.regex.search(name) is not None

    def test(self, facts: Facts) -> bool:
        # Outlook shows Sender: first ("x on behalf of y"), so its name is shown as well.
        return any(self._one(s, facts) for s in (*facts.header_from, *facts.sender))


@dataclass(frozen=True, slots=True)
class LookalikeCondition(Condition):
    field_names: tuple[str, ...]
    protect: tuple[str, ...] = ()
    suspicious_idn: bool = True

    def _shown_domains(self, facts: Facts) -> list[str]:
        out = []
        for name in self.field_names:
            if name == "from":
                out += [a.shown_domain for a in facts.header_from]
            elif name == "sender":
                out += [a.shown_domain for a in facts.sender]
            elif name == "reply_to":
                out += [a.shown_domain for a in facts.reply_to]
            elif name == "envelope_from":
                out.append(facts.envelope_from.shown_domain)
        return [d for d in out if d]

    def test(self, facts: Facts) -> bool:
        protected = facts.protected_domains | frozenset(self.protect)
        for shown in self._shown_domains(facts):
            if lookalike.imitated_domain(shown, protected) is not None:
                return True
            if self.suspicious_idn and lookalike.is_suspicious_idn(shown):
                return True
        return False


# ---------------------------------------------------------------------------------------------
# Compilation


def _patterns(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.lower() for v in values)


def _regex(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern, re.IGNORECASE) if pattern is not None else None


def _address(name: str, m: schema.AddressMatch) -> AddressCondition:
    domains = tuple(
        p if ("*" in p or "?" in p) else (normalise_domain(p) or p.lower())
        for p in _patterns(m.domains)
    )
    return AddressCondition(
        name,
        _patterns(m.addresses),
        domains,
        _regex(m.regex),
        m.internal,
        _range(m.count),
        m.authenticated,
    )


def compile_condition(c: schema.Condition) -> Condition:
    """The schema tree as condition objects: several keys in one mapping are ``all``."""
    parts: list[Condition] = []
    if c.any_ is not None:
        parts.append(AnyOf(tuple(compile_condition(x) for x in c.any_)))
    if c.all_ is not None:
        parts.append(AllOf(tuple(compile_condition(x) for x in c.all_)))
    if c.not_ is not None:
        parts.append(Not(compile_condition(c.not_)))
    for name, m in (
        ("envelope_from", c.envelope_from),
        ("recipient", c.recipient),
        ("from", c.from_),
        ("sender", c.sender),
        ("reply_to", c.reply_to),
        ("to", c.to),
        ("cc", c.cc),
    ):
        if m is not None:
            parts.append(_address(name, m))
    if c.tenant is not None:
        parts.append(TenantCondition(frozenset(c.tenant)))
    if c.client is not None:
        parts.append(
            ClientCondition(tuple(ipaddress.ip_network(n, strict=False) for n in c.client.networks))
        )
    if c.auth is not None:
        a = c.auth
        results = tuple(
            (method, frozenset(values))
            for method, values in (
                ("spf", a.spf),
                ("dkim", a.dkim),
                ("dmarc", a.dmarc),
                ("arc", a.arc),
            )
            if values
        )
        parts.append(
            AuthCondition(results, frozenset(a.dmarc_policy), tuple(a.authenticated_domains))
        )
    if c.attachment is not None:
        wanted = c.attachment
        parts.append(
            AttachmentCondition(
                frozenset(wanted.content_class),
                _patterns(wanted.type),
                tuple(normalise_text(n) for n in wanted.name),
                _regex(wanted.name_regex),
                _range(wanted.size),
            )
        )
    if c.attachment_count is not None:
        parts.append(AttachmentCountCondition(_range(c.attachment_count)))  # type: ignore[arg-type]
    if c.size is not None:
        parts.append(SizeCondition(_range(c.size)))  # type: ignore[arg-type]
    if c.finding is not None:
        parts.append(FindingCondition(tuple(c.finding)))
    if c.subject is not None:
        parts.append(
            TextCondition(
                "subject",
                tuple(normalise_text(k) for k in c.subject.contains),
                _regex(c.subject.regex),
            )
        )
    if c.header is not None:
        parts.append(
            TextCondition(
                c.header.name.lower(),
                tuple(normalise_text(k) for k in c.header.contains),
                _regex(c.header.regex),
            )
        )
    if c.display_name is not None:
        d = c.display_name
        parts.append(
            DisplayNameCondition(
                d.imitates_address,
                d.imitates_internal,
                tuple(normalise_text(k) for k in d.contains),
                _regex(d.regex),
            )
        )
    if c.lookalike is not None:
        parts.append(
            LookalikeCondition(
                tuple(c.lookalike.fields), tuple(c.lookalike.protect), c.lookalike.mixed_script
            )
        )
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def authenticated_for(facts: Facts, trusted: Iterable[str]) -> str | None:
    """The trusted domain this sender proved to be, or None (guards skip-sanitizer).

    Proof is DKIM: a passing signature whose ``d=`` is a trusted domain (or below one) *and*
    aligned with the From: domain (RFC 7489 relaxed), or DMARC pass for a trusted From:
    domain. A From: address, an envelope sender or SPF alone are never proof: all three are
    forgeable or shared."""
    results = facts.auth_results
    if results is None or not results.from_domain:
        return None
    trusted = [t.lower() for t in trusted]

    def is_trusted(domain: str) -> str | None:
        return next((t for t in trusted if domain == t or domain.endswith("." + t)), None)

    if results.dmarc.result == "pass":
        hit = is_trusted(results.from_domain)
        if hit:
            return hit
    for domain in sorted(results.dkim_pass_domains):
        hit = is_trusted(domain)
        if hit and aligned(domain, results.from_domain, "r"):
            return hit
    return None
