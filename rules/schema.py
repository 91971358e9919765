"""The shape of a policy file, as pydantic models: every key, its type and its default.

A policy file is YAML (see ``rules/policies/lgwan-base.yaml`` for a commented example). Its
top-level keys are the settings the sanitizers read (``attachments``, ``html``, ``urls``,
``notice``, ``signed``, ``limits``, ``sanitize``...) and the ordered ``rules``. Models use
``extra="forbid"`` and strict scalars, so a misspelt key or ``yes`` for a boolean is an error
with a line number, never a silent default (``rules/loader.py`` maps errors to lines).

Defaults are fail-closed and follow the ministry guideline for LGWAN mail (HTML to text, URLs
defanged, documents rebuilt, encrypted archives and executables quarantined, unknown types
stripped): a policy file that says nothing gets the strict behaviour.

Regular expressions are compiled here, at load, so a bad one is reported with its line and
never fails per message. This module holds no logic beyond validation.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal, Optional, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    Strict,
    create_model,
    field_validator,
    model_validator,
)

from gateway import findings
from gateway.config import Domain
from gateway.sanitizers.base import CONTENT_CLASSES

StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
StrictStr = Annotated[str, Strict()]

_KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
_FINDING = re.compile(r"^[A-Z0-9_*?]+$")


def _check_kebab(value: str) -> str:
    if not _KEBAB.match(value):
        raise ValueError("expected a kebab-case name such as spoofed-internal-from")
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _check_header_name(value: str) -> str:
    if not _HEADER_NAME.match(value):
        raise ValueError("expected a header field name such as X-Mugaika-Tag")
    return value


def _check_finding(value: str) -> str:
    if not _FINDING.match(value):
        raise ValueError("expected a finding code such as OOXML_VBA_MACRO (* and ? allowed)")
    # A code nothing emits would make a rule that never fires: refuse it (gateway/findings.py).
    problem = findings.unknown_pattern_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_reply_text(value: str) -> str:
    # It goes on an SMTP reply line: printable ASCII only (RFC 5321 section 4.2).
    if not value or len(value) > 200 or not all(" " <= c <= "~" for c in value):
        raise ValueError("expected 1-200 printable ASCII characters")
    return value


def _check_header_value(value: str) -> str:
    if len(value) > 200 or any(c in value for c in "\r\n\0"):
        raise ValueError("expected one line of at most 200 characters")
    return value


def normalise_text(value: str) -> str:
    """How subjects and keywords are compared: NFKC (full-width ＵＲＧＥＮＴ is URGENT, half-width
    ｶﾀｶﾅ is カタカナ) and case-folded."""
    return unicodedata.normalize("NFKC", value).casefold()


Name = Annotated[str, Strict(), AfterValidator(_check_kebab)]
Regex = Annotated[str, Strict(), AfterValidator(_check_regex)]
HeaderName = Annotated[str, Strict(), AfterValidator(_check_header_name)]
FindingPattern = Annotated[str, Strict(), AfterValidator(_check_finding)]
ContentClass = Literal[
    "pdf",
    "ooxml",
    "ole",
    "rtf",
    "opendocument",
    "image",
    "svg",
    "archive",
    "encrypted_archive",
    "other_archive",
    "executable",
    "script",
    "text",
    "html",
    "message",
    "unknown",
]
Size = Annotated[ByteSize, Field(ge=0)]  # 1048576, "1 MiB", "10MB"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# ---------------------------------------------------------------------------------------------
# Settings


DocumentAction = Literal["rebuild", "rasterize", "both", "strip", "quarantine"]
StripOrQuarantine = Literal["strip", "quarantine"]


class AttachmentActions(_Model):
    """What happens to an attachment of each content class (``gateway.sanitizers.base``).

    ``rebuild``: the sanitizer writes a harmless copy; ``rasterize``: an image-only copy;
    ``both``: rebuilt and image-only copies; ``strip``: removed, with a notice;
    ``quarantine``: the whole message is held. ``keep`` exists only for plain text: anything
    else reaches a recipient only rebuilt (fail closed)."""

    pdf: DocumentAction = "rebuild"
    ooxml: DocumentAction = "rebuild"
    ole: DocumentAction = "rebuild"
    rtf: DocumentAction = "rebuild"
    opendocument: DocumentAction = "rebuild"
    image: Literal["rebuild", "strip", "quarantine"] = "rebuild"
    svg: Literal["rebuild", "rasterize", "strip", "quarantine"] = "rasterize"
    archive: Literal["rebuild", "strip", "quarantine"] = "rebuild"  # rebuild: members by class
    encrypted_archive: StripOrQuarantine = "quarantine"  # PPAP: cannot be inspected
    other_archive: Literal["rebuild", "strip", "quarantine"] = "strip"
    executable: StripOrQuarantine = "quarantine"
    script: StripOrQuarantine = "quarantine"
    text: Literal["keep", "strip"] = "keep"
    html: Literal["rebuild", "strip", "quarantine"] = "rebuild"
    message: Literal["rebuild", "strip", "quarantine"] = "rebuild"  # rebuild: recurse
    unknown: StripOrQuarantine = "strip"


# The same keys, all optional: overrides for members of archives.
ArchiveMemberActions: type[_Model] = create_model(  # type: ignore[call-overload]
    "ArchiveMemberActions",
    __base__=_Model,
    __doc__="Actions for members of archives; a class not named here uses ``attachments``.",
    **{
        name: (Optional[info.annotation], None)  # noqa: UP045  (annotation is a runtime value)
        for name, info in AttachmentActions.model_fields.items()
    },
)


class SanitizeSettings(_Model):
    """Knobs for the sanitizers (``SanitizeOptions``)."""

    rasterize_dpi: StrictInt = Field(150, ge=50, le=600)
    max_pages: StrictInt = Field(300, ge=1, le=10_000)
    max_image_pixels: StrictInt = Field(64_000_000, ge=1)
    archive_max_depth: StrictInt = Field(3, ge=0, le=10)
    archive_max_members: StrictInt = Field(1000, ge=1)
    archive_max_total_size: Size = ByteSize(256 * 1024 * 1024)
    archive_max_ratio: StrictInt = Field(200, ge=1)  # uncompressed/compressed, per member
    archive_members: ArchiveMemberActions = ArchiveMemberActions()
    # .csv/.tsv cells a spreadsheet would run as formulas (=, +, -, @, tab, CR first; ＝＋－＠
    # too; plain numbers such as -5 are not formulas): neutralize puts ' in front (the cell
    # shows as text), quarantine holds the message.
    csv_formulas: Literal["neutralize", "quarantine"] = "neutralize"
    # PDF pages whose text a viewer turns into links (http://, www., mail addresses): where the
    # text cannot be rewritten exactly, rasterize-pages turns those pages (only) into images;
    # quarantine holds the message. Not applied with urls.mode: keep.
    pdf_url_text: Literal["rasterize-pages", "quarantine"] = "rasterize-pages"
    # Legacy doc/xls/ppt with macros or other active content: convert turns them into
    # docx/xlsx/pptx without it (LibreOffice, then the OOXML rebuild); without LibreOffice
    # they are withheld as with quarantine. quarantine holds the message.
    legacy_office: Literal["convert", "quarantine"] = "convert"


class UrlSettings(_Model):
    """URLs in text and HTML bodies."""

    mode: Literal["defang", "remove", "keep"] = "defang"  # defang: hxxps://example[.]com
    allow_domains: list[Domain] = Field(default_factory=list)  # left clickable (and subdomains)
    # true: leave mail addresses and mailto: links as they are; false: defang them as well
    # (taro@city[.]example[.]lg[.]jp stays readable).
    mailto: StrictBool = False


class NoticeSettings(_Model):
    """The notice that tells a recipient what was changed."""

    language: Literal["ja", "en"] = "ja"
    charset: Literal["utf-8", "iso-2022-jp"] = "utf-8"
    # Notice sentences by kind (see gateway/notice.py TEMPLATES): text with str.format fields
    # {count}, {name}, {reason}, {new_name}, {reference}; unknown kinds are ignored, logged.
    templates: dict[Name, StrictStr] = Field(default_factory=dict)


class PasswordMailSettings(_Model):
    """The partner's own password mail (PPAP, issue 17, ``gateway/ppap.py``).

    ``pair``: a mail from the same envelope sender to the same recipients, within ``window``
    seconds of a message held only for a password-protected ZIP, whose text holds a password
    line ("パスワード：…", "PW: …", "Password: …") opens that ZIP; its members go through the
    whole pipeline like any attachment and are delivered sanitized with a notice, and the
    password mail is delivered with the password masked. ``max_wrong``: after this many
    password mails that open nothing, the held message stops waiting (locked)."""

    pair: StrictBool = False
    window: StrictInt = Field(3600, ge=60, le=7 * 86400)  # seconds; default one hour
    max_wrong: StrictInt = Field(5, ge=1, le=100)


class LimitSettings(_Model):
    """MIME structure limits. The parser reports ``LIMIT_*`` findings; the base policy's
    ``limits-exceeded`` rule quarantines them."""

    max_depth: StrictInt = Field(10, ge=1, le=100)
    max_parts: StrictInt = Field(500, ge=1, le=100_000)
    max_decoded_size: Size = ByteSize(100 * 1024 * 1024)


# ---------------------------------------------------------------------------------------------
# Conditions


class _Match(_Model):
    """Number ranges: ``{over: 10}``, ``{under: 1000}``; both must hold when both given."""

    over: Size | None = None
    under: Size | None = None

    @model_validator(mode="after")
    def _one(self) -> _Match:
        if self.over is None and self.under is None:
            raise ValueError("give over, under or both")
        return self


class CountMatch(_Match):
    pass


class AddressMatch(_Model):
    """Matches when any of the addresses in the field satisfies every key given.

    ``addresses`` and ``domains`` are shell patterns, case-insensitive (``*@example.com``,
    ``*.example.com``); ``internal`` means the domain is a tenant's domain or below it;
    ``authenticated`` means the message is proven to come from the address's domain (a
    passing DKIM ``d=``, or the From: domain under DMARC pass, aligned with it, relaxed)."""

    addresses: list[StrictStr] = Field(default_factory=list)
    domains: list[StrictStr] = Field(default_factory=list)
    regex: Regex | None = None
    internal: StrictBool | None = None
    count: CountMatch | None = None  # how many addresses the field holds
    authenticated: StrictBool | None = None

    @model_validator(mode="after")
    def _some(self) -> AddressMatch:
        given = self.addresses or self.domains or self.regex or self.internal is not None
        if not given and self.count is None and self.authenticated is None:
            raise ValueError("give addresses, domains, regex, internal, authenticated or count")
        return self


class TextMatch(_Model):
    """``contains``: any keyword (NFKC, case-folded); ``regex``: searched (NFKC)."""

    contains: list[StrictStr] = Field(default_factory=list)
    regex: Regex | None = None

    @model_validator(mode="after")
    def _some(self) -> TextMatch:
        if not self.contains and self.regex is None:
            raise ValueError("give contains, regex or both")
        return self


class HeaderMatch(TextMatch):
    """A decoded header (From, To, Cc, Reply-To, Subject, Message-ID...) by name."""

    name: HeaderName
    contains: list[StrictStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> HeaderMatch:
        return self  # name alone: the header is present


class AuthMatch(_Model):
    """Sender authentication results; each key lists accepted results (all keys must match)."""

    spf: list[Literal["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"]] = (
        Field(default_factory=list)
    )
    dkim: list[Literal["none", "pass", "fail", "policy", "neutral", "temperror", "permerror"]] = (
        Field(default_factory=list)
    )
    dmarc: list[Literal["none", "pass", "fail", "temperror", "permerror"]] = Field(
        default_factory=list
    )
    arc: list[Literal["none", "pass", "fail"]] = Field(default_factory=list)
    dmarc_policy: list[Literal["none", "quarantine", "reject"]] = Field(default_factory=list)
    # The sender authenticated as one of these domains (DKIM d= that passed, or the From:
    # domain with DMARC pass); shell patterns.
    authenticated_domains: list[Domain] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> AuthMatch:
        if (
            not any(
                (self.spf, self.dkim, self.dmarc, self.arc, self.dmarc_policy),
            )
            and not self.authenticated_domains
        ):
            raise ValueError("give at least one of spf, dkim, dmarc, arc, dmarc_policy")
        return self


class AttachmentMatch(_Model):
    """Matches when one attachment satisfies every key given."""

    content_class: list[ContentClass] = Field(default_factory=list, alias="class")
    type: list[StrictStr] = Field(default_factory=list)  # detected MIME type patterns
    name: list[StrictStr] = Field(default_factory=list)  # file name shell patterns
    name_regex: Regex | None = None
    size: CountMatch | None = None

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, populate_by_name=True
    )


class DisplayNameMatch(_Model):
    """The display names of From: and Sender: (spoofing), and a quoted local part, which
    clients show as written (``"soumu@city.example.lg.jp"@x.example``)."""

    imitates_address: StrictBool | None = None  # holds an address other than the real one
    imitates_internal: StrictBool | None = None  # names an internal domain; sender is not
    contains: list[StrictStr] = Field(default_factory=list)
    regex: Regex | None = None


LookalikeField = Literal["from", "sender", "envelope_from", "reply_to"]
LOOKALIKE_FIELDS: tuple[LookalikeField, ...] = get_args(LookalikeField)


class LookalikeMatch(_Model):
    """A sender domain that looks like a protected domain but is not it (UTS #39 confusables,
    digits for letters, ``rn`` for ``m``), or an IDN label that mixes scripts."""

    fields: list[LookalikeField] = Field(default_factory=lambda: list(LOOKALIKE_FIELDS))
    protect: list[Domain] = Field(default_factory=list)  # besides tenants, protected_domains
    mixed_script: StrictBool = True


class ClientMatch(_Model):
    """The connecting client (XFORWARD ADDR behind Postfix)."""

    networks: list[StrictStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _nets(self) -> ClientMatch:
        import ipaddress

        for net in self.networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r}: {exc}") from None
        return self


class Condition(_Model):
    """One condition; several keys in one mapping must all hold. ``any``/``all``/``not``
    combine conditions. An empty mapping is an error (it would match every message)."""

    any_: list[Condition] | None = Field(None, alias="any")
    all_: list[Condition] | None = Field(None, alias="all")
    not_: Condition | None = Field(None, alias="not")
    envelope_from: AddressMatch | None = None
    recipient: AddressMatch | None = None  # envelope recipients
    from_: AddressMatch | None = Field(None, alias="from")
    sender: AddressMatch | None = None  # the Sender: field
    reply_to: AddressMatch | None = None
    to: AddressMatch | None = None
    cc: AddressMatch | None = None
    tenant: list[Domain] | None = None  # a recipient belongs to one of these tenants
    client: ClientMatch | None = None
    auth: AuthMatch | None = None
    attachment: AttachmentMatch | None = None
    attachment_count: CountMatch | None = None
    size: CountMatch | None = None  # message size in bytes as received
    finding: list[FindingPattern] | None = None  # any finding with one of these codes
    subject: TextMatch | None = None
    header: HeaderMatch | None = None
    display_name: DisplayNameMatch | None = None
    lookalike: LookalikeMatch | None = None

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, populate_by_name=True
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("an empty condition would match every message")
        for name in ("any_", "all_"):
            value = getattr(self, name)
            if value is not None and not value:
                raise ValueError(f"{name.rstrip('_')}: give at least one condition")
        return self


# ---------------------------------------------------------------------------------------------
# Rules and the policy


RuleAction = Literal["deliver", "quarantine", "reject", "tag", "skip-sanitizer"]


class Rule(_Model):
    """One rule: when ``when`` holds, ``action``. Rules are evaluated in order, all of them;
    the most severe enforced action wins (deliver < tag < quarantine < reject)."""

    name: Name
    description: StrictStr = ""
    enabled: StrictBool = True
    mode: Literal["enforce", "monitor"] = "enforce"  # monitor: recorded and counted only
    when: Condition
    action: RuleAction
    reason: StrictStr = ""  # recorded, shown to admins and in the notice; default: the name
    reject_text: Annotated[str, Strict(), AfterValidator(_check_reply_text)] | None = None
    tag: Annotated[str, Strict(), AfterValidator(_check_header_value)] | None = None
    skip: list[ContentClass] = Field(default_factory=list)  # skip-sanitizer: these classes
    # skip-sanitizer: the sender must have authenticated as one of these (DKIM d= aligned with
    # From:, or DMARC pass). A From: address alone never qualifies.
    trusted_domains: list[Domain] = Field(default_factory=list)

    @model_validator(mode="after")
    def _action_fields(self) -> Rule:
        if self.action == "skip-sanitizer":
            if not self.skip:
                raise ValueError("skip-sanitizer needs skip: [content classes]")
            if not self.trusted_domains:
                raise ValueError("skip-sanitizer needs trusted_domains (authenticated senders)")
            if "unknown" in self.skip or "executable" in self.skip or "script" in self.skip:
                raise ValueError("unknown, executable and script can never be skipped")
        else:
            if self.skip or self.trusted_domains:
                raise ValueError("skip and trusted_domains are only for skip-sanitizer")
        if self.reject_text is not None and self.action != "reject":
            raise ValueError("reject_text is only for action reject")
        if self.tag is not None and self.action != "tag":
            raise ValueError("tag is only for action tag")
        return self


class PolicyFile(_Model):
    """A whole policy after ``extends`` is applied. See module docstring."""

    description: StrictStr = ""
    extends: Name | None = None
    attachments: AttachmentActions = AttachmentActions()
    on_sanitize_failure: StripOrQuarantine = "quarantine"  # never keep (fail closed)
    sanitize: SanitizeSettings = SanitizeSettings()
    html: Literal["to-text", "sanitize"] = "to-text"
    urls: UrlSettings = UrlSettings()
    notice: NoticeSettings = NoticeSettings()
    # S/MIME and PGP/MIME: a signature cannot survive modification.
    signed: Literal["deliver-modified", "quarantine", "deliver-unmodified-if-clean"] = (
        "deliver-modified"
    )
    limits: LimitSettings = LimitSettings()
    password_mail: PasswordMailSettings = PasswordMailSettings()
    # Mail whose framing readers disagree about (gateway/framing.py: a space before a header's
    # colon, two Content-Type fields, a malformed type...): "rebuild" reads it the way that
    # shows the most structure and delivers a rebuilt copy every reader sees alike, each part
    # sanitized; "quarantine" holds it. Never delivered as received.
    ambiguous_mime: Literal["rebuild", "quarantine"] = "rebuild"
    tag_header: HeaderName = "X-Mugaika-Tag"
    # Domains lookalike checks protect besides the tenants' own (partners, the prefecture).
    protected_domains: list[Domain] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return rules


def check_classes_match() -> None:
    """``AttachmentActions`` must name exactly ``CONTENT_CLASSES`` (checked by a test)."""
    fields = tuple(AttachmentActions.model_fields)
    if fields != CONTENT_CLASSES:
        raise AssertionError(f"AttachmentActions {fields} != CONTENT_CLASSES {CONTENT_CLASSES}")


def dump_defaults() -> dict[str, Any]:
    """The defaults as plain data (for docs and tests)."""
    return PolicyFile().model_dump(by_alias=True, exclude={"rules", "extends", "description"})
